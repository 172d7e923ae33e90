//! The `commands` table: what the hub asked devices to do, and how each
//! ended (`pending`, then `done`, `failed`, `rejected` by the edge, or
//! `expired` when no answer came in time).

use super::Conn;
use opmas_proto::msg::{Action, CommandResult, Outcome};
use serde::Serialize;

use super::{Store, StoreError};

/// A command as stored.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CommandRow {
    pub id: i64,
    pub device_id: String,
    /// The action as JSON (`{"AgentRestart": {"agent": "security"}}`, `"Ping"`).
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub action: JsonText,
    pub created_ms: i64,
    pub created_by: String,
    pub expires_ms: i64,
    /// `pending`, `done`, `failed`, `rejected` or `expired`.
    pub state: String,
    pub message: Option<String>,
    pub sent_ms: Option<i64>,
    pub sends: i64,
    pub answered_ms: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// JSON text from the database, serialized as the JSON it holds.
#[derive(Clone, Debug)]
pub struct JsonText(pub serde_json::Value);

impl TryFrom<String> for JsonText {
    type Error = serde_json::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&s).map(JsonText)
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl CommandRow {
    /// The stored action, as the wire has it.
    pub fn action(&self) -> Result<Action, StoreError> {
        serde_json::from_value(self.action.0.clone())
            .map_err(|e| StoreError::Invalid(format!("command {}: stored action unreadable: {e}", self.id)))
    }
}

/// Filters of a commands listing, newest first.
#[derive(Clone, Debug, Default)]
pub struct CommandQuery {
    pub device: Option<String>,
    pub state: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The states a command can be in.
pub const STATES: [&str; 5] = ["pending", "done", "failed", "rejected", "expired"];

pub(super) const COLUMNS: &str =
    "id, device_id, action, created_ms, created_by, expires_ms, state, message, sent_ms, sends,
     answered_ms, duration_ms";

/// Records the edge's answer to a pending command of `device` (a second
/// answer, or one for another device's command, changes nothing). Returns
/// whether it was recorded.
pub(super) async fn record_result(
    conn: &mut Conn,
    device: &str,
    r: &CommandResult,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let state = match r.outcome {
        Outcome::Done => "done",
        Outcome::Failed => "failed",
        Outcome::Rejected => "rejected",
    };
    let done = sqlx::query(
        "UPDATE commands SET state = $1, message = $2, answered_ms = $3, duration_ms = $4
          WHERE id = $5 AND device_id = $6 AND state IN ('pending', 'expired')",
    )
    .bind(state)
    .bind(&r.message)
    .bind(now_ms)
    .bind(i64::from(r.duration_ms))
    .bind(r.id as i64)
    .bind(device)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Stores a new pending command on `conn` (inside a caller's transaction).
pub(super) async fn insert_command(
    conn: &mut Conn,
    device: &str,
    action: &Action,
    by: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<CommandRow, StoreError> {
    let json = serde_json::to_string(action).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let res = sqlx::query_as::<_, CommandRow>(&format!(
        "INSERT INTO commands (device_id, action, created_ms, created_by, expires_ms) VALUES ($1, $2, $3, $4, $5)
         RETURNING {COLUMNS}"
    ))
    .bind(device)
    .bind(json)
    .bind(now_ms)
    .bind(by)
    .bind(now_ms.saturating_add(ttl_ms))
    .fetch_one(&mut *conn)
    .await;
    match res {
        Ok(row) => Ok(row),
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(StoreError::NoDevice(device.to_owned())),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Stores a new pending command; returns it (its id is the wire id).
    pub async fn insert_command(
        &self,
        device: &str,
        action: &Action,
        by: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<CommandRow, StoreError> {
        let mut conn = self.writer().acquire().await?;
        insert_command(&mut conn, device, action, by, now_ms, ttl_ms).await
    }

    /// Notes that command `id` was published (again) at `now_ms`.
    pub async fn command_sent(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE commands SET sent_ms = $1, sends = sends + 1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Records an answer to `device`'s command that did not come over MQTT
    /// (the SSH transport's); as for the edge's, only the first counts.
    pub async fn record_command_result(
        &self,
        device: &str,
        r: &CommandResult,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.writer().acquire().await?;
        record_result(&mut conn, device, r, now_ms).await
    }

    /// Notes on a pending command why it has not reached its router yet
    /// (shown until it is answered or expires).
    pub async fn command_note(&self, id: i64, message: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE commands SET message = $1 WHERE id = $2 AND state = 'pending'")
            .bind(message)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The device's pending commands that have not expired, oldest first
    /// (sent again, in order, when it reconnects).
    pub async fn pending_commands(&self, device: &str, now_ms: i64) -> Result<Vec<CommandRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM commands WHERE device_id = $1 AND state = 'pending' AND expires_ms > $2 ORDER BY id"
        ))
        .bind(device)
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// Marks pending commands past their expiry `expired`; returns how many.
    pub async fn expire_commands(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE commands SET state = 'expired',
                    message = 'no answer from the device before it expired'
                              || COALESCE(' (last try: ' || message || ')', '')
              WHERE state = 'pending' AND expires_ms <= $1",
        )
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn command(&self, id: i64) -> Result<Option<CommandRow>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM commands WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Commands, newest first.
    pub async fn query_commands(&self, q: &CommandQuery) -> Result<Vec<CommandRow>, StoreError> {
        let mut b = super::Sql::new(self.dialect(), format!("SELECT {COLUMNS} FROM commands WHERE 1 = 1"));
        if let Some(d) = &q.device {
            b.push(" AND device_id = ").push_bind(d);
        }
        if let Some(s) = &q.state {
            b.push(" AND state = ").push_bind(s);
        }
        if let Some(c) = q.before_id {
            b.push(" AND id < ").push_bind(c);
        }
        b.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit as i64);
        let (sql, args) = b.finish()?;
        Ok(sqlx::query_as_with(&sql, args).fetch_all(self.pool()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn a_command_goes_from_pending_to_its_answer_once() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let c = store.insert_command("gw-1", &Action::Ping, "alice", 1000, 60_000).await.unwrap();
        assert_eq!((c.state.as_str(), c.expires_ms), ("pending", 61_000));
        assert!(matches!(
            store.insert_command("gw-9", &Action::Ping, "alice", 1, 1).await,
            Err(StoreError::NoDevice(_))
        ));
        assert_eq!(store.pending_commands("gw-1", 2000).await.unwrap().len(), 1);
        let answer = CommandResult { id: c.id as u64, outcome: Outcome::Done, message: "pong".into(), duration_ms: 3 };
        let mut conn = store.writer().acquire().await.unwrap();
        assert!(!record_result(&mut conn, "gw-2", &answer, 3000).await.unwrap(), "another device's answer");
        assert!(record_result(&mut conn, "gw-1", &answer, 3000).await.unwrap());
        let rejected = CommandResult { outcome: Outcome::Rejected, ..answer.clone() };
        assert!(!record_result(&mut conn, "gw-1", &rejected, 4000).await.unwrap(), "only the first answer counts");
        drop(conn);
        let row = store.command(c.id).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.message.as_deref(), row.answered_ms), ("done", Some("pong"), Some(3000)));
        assert_eq!(row.action().unwrap(), Action::Ping);

        // Unanswered past its expiry: expired, and no longer sent.
        let late = store
            .insert_command("gw-1", &Action::AgentRestart { agent: "wifi".into() }, "bob", 1000, 10)
            .await
            .unwrap();
        assert_eq!(store.expire_commands(5000).await.unwrap(), 1);
        assert!(store.pending_commands("gw-1", 5000).await.unwrap().is_empty());
        let q = CommandQuery { device: Some("gw-1".into()), limit: 10, ..Default::default() };
        let all = store.query_commands(&q).await.unwrap();
        assert_eq!(
            all.iter().map(|c| (c.id, c.state.as_str())).collect::<Vec<_>>(),
            [(late.id, "expired"), (c.id, "done")]
        );
        assert_eq!(
            serde_json::to_value(&all[0].action).unwrap(),
            serde_json::json!({"AgentRestart": {"agent": "wifi"}})
        );
    }
}
