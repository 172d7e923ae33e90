//! The `api_tokens` table and the admin token written at first start.
//!
//! Tokens are 32 random bytes shown once in hex; the database keeps only
//! their SHA-256, so a leaked database copy grants no API access. A token
//! made for a user has that user's role, read at every request, so that
//! changing or removing the user changes the token at once; the admin
//! token of the first start belongs to no user and is an admin's.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use serde::Serialize;

use super::users::Role;
use super::{Store, StoreError};

/// Who a verified token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The user it was made for (none for the admin token of the first start).
    pub user: Option<String>,
}

/// A token as listed (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub user: Option<String>,
    pub role: Role,
    pub created_ms: i64,
}

/// A token with its user, as the queries below read it.
#[derive(sqlx::FromRow)]
struct TokenJoin {
    id: i64,
    name: String,
    role: String,
    user_role: Option<String>,
    user_name: Option<String>,
    created_ms: i64,
}

const TOKEN_JOIN: &str = "SELECT t.id, t.name, t.role, u.role AS user_role, u.name AS user_name, t.created_ms
                            FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id";

/// A token's role: its user's, or the one stored with it.
fn role_of(user_role: Option<String>, own: String) -> Role {
    // The tables' CHECK and the insert paths allow no other value.
    Role::parse(user_role.as_deref().unwrap_or(&own)).unwrap_or(Role::Viewer)
}

pub(super) fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Draws a new random token from the OS RNG.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator is available");
    hex::encode(bytes)
}

impl Store {
    /// Stores a token's digest under `name` with `role`.
    pub async fn insert_token(&self, name: &str, role: Role, token: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (name, token_sha256, role, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(digest(token))
            .bind(role.as_str())
            .bind(now_ms)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Looks a presented token up by its digest.
    pub async fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row: Option<TokenJoin> = sqlx::query_as(&format!("{TOKEN_JOIN} WHERE t.token_sha256 = $1"))
            .bind(digest(token))
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|t| TokenInfo { id: t.id, name: t.name, role: role_of(t.user_role, t.role), user: t.user_name }))
    }

    /// Makes a token for `user` labelled `name`; returns it (shown once) and its id.
    pub async fn create_user_token(&self, user: &str, name: &str, now_ms: i64) -> Result<(String, i64), StoreError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(format!("{name:?} is not a token name: 1 to 64 printable characters")));
        }
        let Some((user_id, role)) = sqlx::query_as::<_, (i64, String)>("SELECT id, role FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(self.pool())
            .await?
        else {
            return Err(StoreError::NoUser(user.to_owned()));
        };
        let token = new_token();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, token_sha256, role, created_ms, user_id) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(digest(&token))
        .bind(role)
        .bind(now_ms)
        .bind(user_id)
        .fetch_one(self.writer())
        .await?;
        Ok((token, id))
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows: Vec<TokenJoin> =
            sqlx::query_as(&format!("{TOKEN_JOIN} ORDER BY t.id")).fetch_all(self.pool()).await?;
        Ok(rows
            .into_iter()
            .map(|t| TokenRow {
                id: t.id,
                name: t.name,
                role: role_of(t.user_role, t.role),
                user: t.user_name,
                created_ms: t.created_ms,
            })
            .collect())
    }

    /// Revokes token `id`: it is refused from the next request on.
    pub async fn revoke_token(&self, id: i64) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1").bind(id).execute(self.writer()).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!("no token with id {id}")));
        }
        Ok(())
    }

    /// At first start (no token in the database) creates the admin token and
    /// writes it to `DATA_DIR/admin.token` with mode 0600. Returns the file's
    /// path when it created one.
    pub async fn ensure_admin_token(&self, data_dir: &Path, now_ms: i64) -> Result<Option<PathBuf>, StoreError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_tokens").fetch_one(self.pool()).await?;
        if count > 0 {
            return Ok(None);
        }
        let token = new_token();
        let path = data_dir.join("admin.token");
        write_private(&path, format!("{token}\n").as_bytes())
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        self.insert_token("admin", Role::Admin, &token, now_ms).await?;
        Ok(Some(path))
    }
}

/// Writes `bytes` to `path`, created with mode 0600 (never briefly readable by others).
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::Role;
    use crate::store::test_store;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn first_start_writes_a_private_admin_token_that_verifies() {
        let (store, dir) = test_store().await;
        let path = store.ensure_admin_token(dir.path(), 1).await.unwrap().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let token = std::fs::read_to_string(&path).unwrap();
        let info = store.verify_token(token.trim()).await.unwrap().unwrap();
        assert_eq!((info.role, info.user), (Role::Admin, None));
        assert!(store.verify_token("nope").await.unwrap().is_none());
        // Second start: nothing new.
        assert!(store.ensure_admin_token(dir.path(), 2).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_users_token_has_the_users_role_until_it_is_revoked() {
        let (store, _dir) = test_store().await;
        store.insert_user("vera", Role::Viewer, "a long enough password", 1).await.unwrap();
        let (token, id) = store.create_user_token("vera", "laptop", 2).await.unwrap();
        let info = store.verify_token(&token).await.unwrap().unwrap();
        assert_eq!((info.role, info.user.as_deref(), info.name.as_str()), (Role::Viewer, Some("vera"), "laptop"));
        let rows = store.list_tokens().await.unwrap();
        assert_eq!(rows.iter().map(|t| (t.id, t.role)).collect::<Vec<_>>(), vec![(id, Role::Viewer)]);
        store.revoke_token(id).await.unwrap();
        assert!(store.verify_token(&token).await.unwrap().is_none(), "refused at once");
        assert!(store.revoke_token(id).await.unwrap_err().to_string().contains("no token with id"));
        assert!(store.create_user_token("nobody", "x", 3).await.unwrap_err().to_string().contains("no user"));
    }
}
