//! The `users` table: people who sign in, each with one [`Role`], their
//! passwords stored as argon2id hashes only.
//!
//! Hashing is deliberately slow (about 20 MiB and a few tens of
//! milliseconds per attempt, OWASP's argon2id minimum), so it runs on the
//! blocking pool, never on the runtime's threads.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;

use super::tokens::write_private;
use super::{Store, StoreError};

/// What a user (and the tokens made for them) may do. Each role includes
/// the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Acknowledge, run actions, edit rules and configuration.
    Operator,
    /// Everything, users and tokens included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `operator` or `viewer`.
    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; roles are admin, operator, viewer"))
    }

    /// True if this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A user as listed (never with the hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub password_changed_ms: i64,
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 12;
/// Longest password accepted (argon2 takes any length; a limit keeps a
/// form post from making the hub hash megabytes).
pub const MAX_PASSWORD: usize = 1024;

/// Checks a user name: 1 to 64 of a-z, 0-9, `.`, `-`, `_`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a user name: 1 to 64 of a-z, 0-9, '.', '-', '_', starting with a letter or digit"))
    }
}

/// Checks a password's length.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(format!("the password is too short ({n} characters; at least {MIN_PASSWORD})"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!("the password is too long (at most {MAX_PASSWORD} bytes)"));
    }
    Ok(())
}

/// A random password for people to copy: 24 characters of a-z and 2-9
/// (no 0/1/l/o to misread), about 120 bits.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator is available");
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// The argon2id hash of `password` with a fresh salt, as a PHC string.
async fn hash(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| StoreError::Password(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Password(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Password(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::Password(e.to_string()))?
}

/// True if `password` matches the PHC string `phc`.
async fn verify(password: &str, phc: String) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Hashed once per process, to spend the same time on an unknown user's
/// sign-in as on a known one's (so the time does not tell which is wrong).
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

impl Store {
    /// Adds a user. Errors name a taken name.
    pub async fn insert_user(&self, name: &str, role: Role, password: &str, now_ms: i64) -> Result<i64, StoreError> {
        check_name(name).map_err(StoreError::Invalid)?;
        check_password(password).map_err(StoreError::Invalid)?;
        let phc = hash(password).await?;
        let res = sqlx::query_scalar(
            "INSERT INTO users (name, role, password_hash, created_ms, password_changed_ms) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(phc)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_one(self.writer())
        .await;
        match res {
            Ok(id) => Ok(id),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::UserExists(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets `name`'s password.
    pub async fn set_password(&self, name: &str, password: &str, now_ms: i64) -> Result<(), StoreError> {
        check_password(password).map_err(StoreError::Invalid)?;
        let phc = hash(password).await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1, password_changed_ms = $2 WHERE name = $3")
            .bind(phc)
            .bind(now_ms)
            .bind(name)
            .execute(self.writer())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoUser(name.to_owned()));
        }
        Ok(())
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows: Vec<(i64, String, String, i64, i64)> =
            sqlx::query_as("SELECT id, name, role, created_ms, password_changed_ms FROM users ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, role, created_ms, password_changed_ms)| UserRow {
                id,
                name,
                // The table's CHECK allows no other value.
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                created_ms,
                password_changed_ms,
            })
            .collect())
    }

    /// The user `name` if `password` is theirs. An unknown name costs the
    /// same hashing time as a wrong password.
    pub async fn check_user(&self, name: &str, password: &str) -> Result<Option<UserRow>, StoreError> {
        if password.len() > MAX_PASSWORD {
            return Ok(None);
        }
        let row: Option<(i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, role, password_hash, created_ms, password_changed_ms FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        let Some((id, role, phc, created_ms, password_changed_ms)) = row else {
            let dummy = DUMMY_HASH.get_or_try_init(|| hash("not a password of anyone")).await?;
            let _ = verify(password, dummy.clone()).await;
            return Ok(None);
        };
        if !verify(password, phc).await {
            return Ok(None);
        }
        let role = Role::parse(&role).unwrap_or(Role::Viewer);
        Ok(Some(UserRow { id, name: name.to_owned(), role, created_ms, password_changed_ms }))
    }

    /// At first start (no user yet) creates `admin` with a random password,
    /// written to `DATA_DIR/admin.password` with mode 0600. Returns the
    /// file's path when it created the user.
    pub async fn ensure_admin_user(&self, data_dir: &Path, now_ms: i64) -> Result<Option<PathBuf>, StoreError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(self.pool()).await?;
        if count > 0 {
            return Ok(None);
        }
        let password = new_password();
        let path = data_dir.join("admin.password");
        write_private(&path, format!("{password}\n").as_bytes())
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        self.insert_user("admin", Role::Admin, &password, now_ms).await?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_user_signs_in_with_their_password_and_no_other() {
        let (store, _dir) = test_store().await;
        store.insert_user("alice", Role::Operator, "correct horse battery", 1).await.unwrap();
        let u = store.check_user("alice", "correct horse battery").await.unwrap().unwrap();
        assert_eq!((u.name.as_str(), u.role), ("alice", Role::Operator));
        assert!(store.check_user("alice", "wrong horse battery").await.unwrap().is_none());
        assert!(store.check_user("bob", "correct horse battery").await.unwrap().is_none());
        // The hash, never the password, is stored.
        let (phc,): (String,) =
            sqlx::query_as("SELECT password_hash FROM users").fetch_one(store.pool()).await.unwrap();
        assert!(phc.starts_with("$argon2id$") && !phc.contains("horse"), "{phc}");
        store.set_password("alice", "a new long password", 2).await.unwrap();
        assert!(store.check_user("alice", "correct horse battery").await.unwrap().is_none());
        assert!(store.check_user("alice", "a new long password").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn bad_names_short_passwords_and_taken_names_are_refused_saying_why() {
        let (store, _dir) = test_store().await;
        let err = |r: Result<i64, StoreError>| r.unwrap_err().to_string();
        assert!(err(store.insert_user("Alice", Role::Viewer, "long enough pass", 1).await).contains("not a user name"));
        assert!(err(store.insert_user("bob", Role::Viewer, "short", 1).await).contains("too short (5 characters"));
        store.insert_user("bob", Role::Viewer, "long enough pass", 1).await.unwrap();
        assert!(err(store.insert_user("bob", Role::Admin, "long enough pass", 1).await).contains("already exists"));
        assert!(store.set_password("carol", "long enough pass", 1).await.unwrap_err().to_string().contains("no user"));
    }

    #[tokio::test]
    async fn first_start_creates_admin_with_a_private_password_file() {
        let (store, dir) = test_store().await;
        let path = store.ensure_admin_user(dir.path(), 1).await.unwrap().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let password = std::fs::read_to_string(&path).unwrap();
        let u = store.check_user("admin", password.trim()).await.unwrap().unwrap();
        assert_eq!(u.role, Role::Admin);
        assert!(store.ensure_admin_user(dir.path(), 2).await.unwrap().is_none(), "only once");
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Operator) && Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator) && !Role::Operator.allows(Role::Admin));
        assert_eq!(Role::parse("operator"), Ok(Role::Operator));
        assert!(Role::parse("root").unwrap_err().contains("admin, operator, viewer"));
        assert_eq!(new_password().len(), 24);
        assert_ne!(new_password(), new_password());
    }
}
