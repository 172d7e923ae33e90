//! The `sessions` table: browser sign-ins, kept on the server so that
//! signing out, expiry or removing the user really ends them.

use super::tokens::{digest, new_token};
use super::users::Role;
use super::{Store, StoreError};

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub user: String,
    /// The user's role now (read at every request).
    pub role: Role,
    /// The token every state-changing request of this session must carry.
    pub csrf: String,
    pub expires_ms: i64,
}

impl Store {
    /// Starts a session for user `user_id` lasting `ttl_ms`; returns the
    /// cookie's token and the session's CSRF token.
    pub async fn create_session(&self, user_id: i64, now_ms: i64, ttl_ms: i64) -> Result<(String, String), StoreError> {
        let (token, csrf) = (new_token(), new_token());
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest(&token))
        .bind(user_id)
        .bind(&csrf)
        .bind(now_ms)
        .bind(now_ms.saturating_add(ttl_ms))
        .execute(self.writer())
        .await?;
        // Ended sessions go as new ones come (indexed by expiry).
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1").bind(now_ms).execute(self.writer()).await?;
        Ok((token, csrf))
    }

    /// The session of cookie token `token`, if it has not ended.
    pub async fn session(&self, token: &str, now_ms: i64) -> Result<Option<SessionInfo>, StoreError> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT u.name, u.role, s.csrf, s.expires_ms FROM sessions s JOIN users u ON u.id = s.user_id
              WHERE s.token_sha256 = $1 AND s.expires_ms > $2",
        )
        .bind(digest(token))
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(user, role, csrf, expires_ms)| SessionInfo {
            user,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            csrf,
            expires_ms,
        }))
    }

    /// Ends the session of `token`; true if there was one.
    pub async fn end_session(&self, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(digest(token))
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn a_session_lives_until_it_expires_or_ends() {
        let (store, _dir) = test_store().await;
        let id = store.insert_user("vera", Role::Viewer, "a long enough password", 1).await.unwrap();
        let (token, csrf) = store.create_session(id, 1_000, 60_000).await.unwrap();
        let s = store.session(&token, 2_000).await.unwrap().unwrap();
        assert_eq!((s.user.as_str(), s.role, s.csrf.as_str()), ("vera", Role::Viewer, csrf.as_str()));
        assert!(store.session(&token, 61_000).await.unwrap().is_none(), "expired");
        assert!(store.session("not a session", 2_000).await.unwrap().is_none());
        let (token, _) = store.create_session(id, 100_000, 60_000).await.unwrap();
        assert!(store.end_session(&token).await.unwrap());
        assert!(store.session(&token, 100_001).await.unwrap().is_none(), "signed out");
        assert!(!store.end_session(&token).await.unwrap());
    }
}
