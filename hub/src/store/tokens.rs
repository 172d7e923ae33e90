//! The `api_tokens` table and the admin token written at first start.
//!
//! Tokens are 32 random bytes shown once in hex; the database keeps only
//! their SHA-256, so a leaked database copy grants no API access.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// Who a verified token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: String,
}

fn digest(token: &str) -> String {
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
    pub async fn insert_token(&self, name: &str, role: &str, token: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (name, token_sha256, role, created_ms) VALUES (?, ?, ?, ?)")
            .bind(name)
            .bind(digest(token))
            .bind(role)
            .bind(now_ms)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Looks a presented token up by its digest.
    pub async fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, name, role FROM api_tokens WHERE token_sha256 = ?")
                .bind(digest(token))
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(id, name, role)| TokenInfo { id, name, role }))
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
        self.insert_token("admin", "admin", &token, now_ms).await?;
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
    use crate::store::test_store;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn first_start_writes_a_private_admin_token_that_verifies() {
        let (store, dir) = test_store().await;
        let path = store.ensure_admin_token(dir.path(), 1).await.unwrap().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let token = std::fs::read_to_string(&path).unwrap();
        let info = store.verify_token(token.trim()).await.unwrap().unwrap();
        assert_eq!(info.role, "admin");
        assert!(store.verify_token("nope").await.unwrap().is_none());
        // Second start: nothing new.
        assert!(store.ensure_admin_token(dir.path(), 2).await.unwrap().is_none());
    }
}
