//! The `actions` audit log: every action on routers, who or what asked for
//! it, on which routers, and (through `action_commands`) each router's
//! answer. An action and its commands are stored in one transaction, so the
//! log never names a command that does not exist, nor misses one that does.

use opmas_proto::msg::Action;
use serde::Serialize;

use super::commands::{insert_command, CommandRow, JsonText, COLUMNS as COMMAND_COLUMNS};
use super::{Store, StoreError};

/// An action as stored, with its commands.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ActionRow {
    pub id: i64,
    pub created_ms: i64,
    /// `user:alice`, `token:ci`, `playbook:<name>`.
    pub created_by: String,
    /// The action as JSON (`{"BlockIp": {"net": "198.51.100.7", "timeout_s": 600}}`).
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub action: JsonText,
    /// The targets as asked.
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub targets: JsonText,
    /// The routers those targets named when it was decided.
    #[schema(value_type = Vec<String>)]
    #[sqlx(try_from = "String")]
    pub devices: JsonText,
    /// `sent`, `awaiting_approval`, `rejected`, `dry_run` or `skipped`.
    pub state: String,
    /// Why it was skipped, or what a playbook saw.
    pub reason: Option<String>,
    pub comment: Option<String>,
    /// The playbook that decided it, and what set the playbook off.
    pub playbook: Option<String>,
    pub finding_id: Option<i64>,
    pub incident_id: Option<i64>,
    /// Who approved or rejected it, and when.
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    /// The action this one takes back.
    pub undo_of: Option<i64>,
    /// Taken back by itself this long after it was sent.
    pub undo_after_ms: Option<i64>,
    /// One command per router, with its answer.
    #[sqlx(skip)]
    pub commands: Vec<CommandRow>,
}

impl ActionRow {
    /// The stored action, as the wire has it.
    pub fn action(&self) -> Result<Action, StoreError> {
        serde_json::from_value(self.action.0.clone())
            .map_err(|e| StoreError::Invalid(format!("action {}: stored action unreadable: {e}", self.id)))
    }
}

/// An incident that opened: (event id, incident id, rule, key, severity, devices JSON).
pub type OpenedIncident = (i64, i64, String, String, i64, String);

/// What to store: the action, who asked, the routers it goes to, and how
/// it was decided. Only a `sent` one makes commands.
#[derive(Clone, Debug)]
pub struct NewAction<'a> {
    pub action: &'a Action,
    pub targets: &'a serde_json::Value,
    pub devices: &'a [String],
    pub by: &'a str,
    pub comment: Option<&'a str>,
    pub undo_of: Option<i64>,
    pub now_ms: i64,
    pub ttl_ms: i64,
    pub state: &'a str,
    pub reason: Option<&'a str>,
    pub playbook: Option<&'a str>,
    pub finding_id: Option<i64>,
    pub incident_id: Option<i64>,
    pub undo_after_ms: Option<i64>,
}

impl<'a> NewAction<'a> {
    /// A person's action, sent at once.
    pub fn sent(action: &'a Action, targets: &'a serde_json::Value, devices: &'a [String], by: &'a str) -> Self {
        NewAction {
            action,
            targets,
            devices,
            by,
            comment: None,
            undo_of: None,
            now_ms: super::now_ms(),
            ttl_ms: crate::command::DEFAULT_TTL_MS,
            state: "sent",
            reason: None,
            playbook: None,
            finding_id: None,
            incident_id: None,
            undo_after_ms: None,
        }
    }
}

/// The states of an action.
pub const STATES: [&str; 5] = ["sent", "awaiting_approval", "rejected", "dry_run", "skipped"];

const COLUMNS: &str = "id, created_ms, created_by, action, targets, devices, state, reason, comment, playbook,
     finding_id, incident_id, decided_by, decided_ms, undo_of, undo_after_ms";

/// Inserts `a` (and, if it is sent, its commands) on `conn`.
async fn insert(conn: &mut super::Conn, a: &NewAction<'_>) -> Result<ActionRow, StoreError> {
    let json = serde_json::to_string(a.action).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let devices = serde_json::to_string(a.devices).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut row: ActionRow = sqlx::query_as(&format!(
        "INSERT INTO actions (created_ms, created_by, action, targets, devices, state, reason, comment, playbook,
                              finding_id, incident_id, undo_of, undo_after_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {COLUMNS}"
    ))
    .bind(a.now_ms)
    .bind(a.by)
    .bind(json)
    .bind(a.targets.to_string())
    .bind(devices)
    .bind(a.state)
    .bind(a.reason)
    .bind(a.comment)
    .bind(a.playbook)
    .bind(a.finding_id)
    .bind(a.incident_id)
    .bind(a.undo_of)
    .bind(a.undo_after_ms)
    .fetch_one(&mut *conn)
    .await?;
    if a.state == "sent" {
        row.commands = send_commands(conn, row.id, a.action, a.devices, a.by, a.now_ms, a.ttl_ms).await?;
    }
    Ok(row)
}

/// One pending command per device for action `id`.
async fn send_commands(
    conn: &mut super::Conn,
    id: i64,
    action: &Action,
    devices: &[String],
    by: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Vec<CommandRow>, StoreError> {
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        let c = insert_command(&mut *conn, d, action, by, now_ms, ttl_ms).await?;
        sqlx::query("INSERT INTO action_commands (action_id, command_id) VALUES ($1, $2)")
            .bind(id)
            .bind(c.id)
            .execute(&mut *conn)
            .await?;
        out.push(c);
    }
    Ok(out)
}

impl Store {
    /// Stores an action and one pending command per device, in one
    /// transaction; returns it with its commands.
    pub async fn insert_action(&self, a: &NewAction<'_>) -> Result<ActionRow, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = insert(&mut tx, a).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Stores what playbooks decided and how far they have read, in one
    /// transaction: a crash leaves both or neither, so nothing is decided
    /// twice or forgotten.
    pub async fn record_decisions(
        &self,
        decisions: &[NewAction<'_>],
        cursor: (i64, i64),
    ) -> Result<Vec<ActionRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut rows = Vec::with_capacity(decisions.len());
        for d in decisions {
            rows.push(insert(&mut tx, d).await?);
        }
        sqlx::query(
            "INSERT INTO act_cursor (id, finding_id, incident_event) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET finding_id = excluded.finding_id, incident_event = excluded.incident_event",
        )
        .bind(cursor.0)
        .bind(cursor.1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// How far playbooks have read (finding id, incident event id).
    pub async fn act_cursor(&self) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT finding_id, incident_event FROM act_cursor WHERE id = 1")
            .fetch_optional(self.pool())
            .await?)
    }

    /// The newest incident event's id (where playbooks start on a new hub).
    pub async fn last_incident_event(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM incident_events").fetch_one(self.pool()).await?)
    }

    /// Incidents opened after event `after`: (event id, incident id, rule,
    /// key, severity, devices), oldest first.
    pub async fn incidents_opened_after(&self, after: i64, limit: u32) -> Result<Vec<OpenedIncident>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT e.id, i.id, i.rule, i.key, i.severity, i.devices FROM incident_events e
               JOIN incidents i ON i.id = e.incident_id
              WHERE e.id > $1 AND e.kind = 'opened' ORDER BY e.id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?)
    }

    /// Actions a playbook decided since `since_ms` (its rate limit), not
    /// counting skipped ones.
    pub async fn playbook_actions_since(&self, playbook: &str, since_ms: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM actions WHERE playbook = $1 AND created_ms >= $2 AND state != 'skipped'",
        )
        .bind(playbook)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?)
    }

    /// Whether `playbook` decided this very action since `since_ms`, and it
    /// was not rejected or taken back: the same attacker seen again, on the
    /// same or another router, is one action.
    pub async fn playbook_did(
        &self,
        playbook: &str,
        action: &Action,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let json = serde_json::to_string(action).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(sqlx::query_scalar(
            "SELECT MAX(a.created_ms) FROM actions a WHERE a.playbook = $1 AND a.action = $2 AND a.created_ms >= $3
                AND a.state IN ('sent', 'awaiting_approval', 'dry_run')
                AND NOT EXISTS (SELECT 1 FROM actions u WHERE u.undo_of = a.id)",
        )
        .bind(playbook)
        .bind(json)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?)
    }

    /// Every device's tags, for playbook conditions.
    pub async fn all_device_tags(&self) -> Result<std::collections::HashMap<String, Vec<String>>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT device_id, tag FROM device_tags ORDER BY device_id, position")
                .fetch_all(self.pool())
                .await?;
        let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (d, t) in rows {
            out.entry(d).or_default().push(t);
        }
        Ok(out)
    }

    /// Approves an action that waits for it: its commands are made now.
    /// `None` if it was not waiting (approved, rejected, or no such action).
    pub async fn approve_action(
        &self,
        id: i64,
        by: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<ActionRow>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<ActionRow> = sqlx::query_as(&format!(
            "UPDATE actions SET state = 'sent', decided_by = $1, decided_ms = $2
              WHERE id = $3 AND state = 'awaiting_approval' RETURNING {COLUMNS}"
        ))
        .bind(by)
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut row) = row else { return Ok(None) };
        let devices: Vec<String> = serde_json::from_value(row.devices.0.clone()).unwrap_or_default();
        let action = row.action()?;
        row.commands = send_commands(&mut tx, id, &action, &devices, by, now_ms, ttl_ms).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Rejects an action that waits for approval; `false` if it was not waiting.
    pub async fn reject_action(&self, id: i64, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE actions SET state = 'rejected', decided_by = $1, decided_ms = $2
              WHERE id = $3 AND state = 'awaiting_approval'",
        )
        .bind(by)
        .bind(now_ms)
        .bind(id)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Cancels what is still pending of action `id`: its commands that no
    /// router has answered end (`expired`, saying who cancelled), so they
    /// are not sent again when their routers come back. A router that got
    /// one already may still run it; its answer is recorded then. Returns
    /// how many were cancelled.
    pub async fn cancel_action_commands(&self, id: i64, by: &str, now_ms: i64) -> Result<u64, StoreError> {
        let min = self.dialect().least();
        let n = sqlx::query(&format!(
            "UPDATE commands SET state = 'expired', expires_ms = {min}(expires_ms, $1),
                    message = 'cancelled by ' || $2 || ' before the router answered'
              WHERE state = 'pending' AND id IN (SELECT command_id FROM action_commands WHERE action_id = $3)",
        ))
        .bind(now_ms)
        .bind(by)
        .bind(id)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Sent actions whose undo_after has passed and that nothing took back yet.
    pub async fn undos_due(&self, now_ms: i64) -> Result<Vec<ActionRow>, StoreError> {
        let mut rows: Vec<ActionRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM actions a WHERE a.undo_after_ms IS NOT NULL AND a.state = 'sent'
                AND COALESCE(a.decided_ms, a.created_ms) + a.undo_after_ms <= $1
                AND NOT EXISTS (SELECT 1 FROM actions u WHERE u.undo_of = a.id) ORDER BY a.id LIMIT 100"
        ))
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        for (action_id, c) in self.action_commands(&ids).await? {
            if let Some(r) = rows.iter_mut().find(|r| r.id == action_id) {
                r.commands.push(c);
            }
        }
        Ok(rows)
    }

    /// One action with its commands.
    pub async fn action(&self, id: i64) -> Result<Option<ActionRow>, StoreError> {
        let row: Option<ActionRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM actions WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(mut row) = row else { return Ok(None) };
        row.commands = self.action_commands(&[row.id]).await?.into_iter().map(|(_, c)| c).collect();
        Ok(Some(row))
    }

    /// Actions, newest first, with their commands (two queries a page).
    pub async fn query_actions(
        &self,
        state: Option<&str>,
        playbook: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ActionRow>, StoreError> {
        let mut b = super::Sql::new(self.dialect(), format!("SELECT {COLUMNS} FROM actions WHERE id < "));
        b.push_bind(before_id.unwrap_or(i64::MAX));
        if let Some(s) = state {
            b.push(" AND state = ").push_bind(s.to_owned());
        }
        if let Some(p) = playbook {
            b.push(" AND playbook = ").push_bind(p.to_owned());
        }
        b.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let (sql, args) = b.finish()?;
        let mut rows: Vec<ActionRow> = sqlx::query_as_with(&sql, args).fetch_all(self.pool()).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        for (action_id, c) in self.action_commands(&ids).await? {
            if let Some(r) = rows.iter_mut().find(|r| r.id == action_id) {
                r.commands.push(c);
            }
        }
        Ok(rows)
    }

    /// The commands of `actions`, by command id.
    async fn action_commands(&self, actions: &[i64]) -> Result<Vec<(i64, CommandRow)>, StoreError> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let cols = COMMAND_COLUMNS.split(',').map(|c| format!("c.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let mut b = super::Sql::new(
            self.dialect(),
            format!(
                "SELECT ac.action_id, {cols} FROM action_commands ac JOIN commands c ON c.id = ac.command_id
              WHERE ac.action_id IN ("
            ),
        );
        b.push_list(actions.iter().copied());
        b.push(") ORDER BY c.id");
        let (sql, args) = b.finish()?;
        let rows = sqlx::query_with(&sql, args).fetch_all(self.pool()).await?;
        use sqlx::{FromRow, Row};
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("action_id")?, CommandRow::from_row(r)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn an_action_and_its_commands_are_stored_together_or_not_at_all() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        store.insert_device("gw-2", "gw-2", "bb", 1).await.unwrap();
        let action = Action::BlockIp { net: "198.51.100.7".parse().unwrap(), timeout_s: 600 };
        let targets = serde_json::json!({"all": true});
        let devices = ["gw-1".to_owned(), "gw-2".to_owned()];
        let new =
            NewAction { comment: Some("seen on gw-1"), ..NewAction::sent(&action, &targets, &devices, "user:alice") };
        let a = store.insert_action(&new).await.unwrap();
        assert_eq!(a.commands.len(), 2);
        assert_eq!(a.action().unwrap(), action);
        assert_eq!(
            serde_json::to_value(&a.action).unwrap(),
            serde_json::json!({"BlockIp": {"net": "198.51.100.7", "timeout_s": 600}})
        );
        // A device that does not exist: nothing is stored.
        let bad = ["gw-1".to_owned(), "gw-9".to_owned()];
        let err = store.insert_action(&NewAction { devices: &bad, ..new.clone() }).await.unwrap_err();
        assert!(matches!(err, StoreError::NoDevice(d) if d == "gw-9"));
        let all = store.query_actions(None, None, None, 10).await.unwrap();
        assert_eq!(all.len(), 1, "the failed one left nothing");
        assert_eq!(all[0].commands.iter().map(|c| c.device_id.as_str()).collect::<Vec<_>>(), ["gw-1", "gw-2"]);
        assert_eq!(store.action(a.id).await.unwrap().unwrap().commands.len(), 2);

        // Awaiting approval: no command until someone approves; once only.
        let waiting = NewAction { state: "awaiting_approval", playbook: Some("pb"), ..new.clone() };
        let w = store.record_decisions(&[waiting], (5, 0)).await.unwrap().remove(0);
        assert!(w.commands.is_empty());
        assert_eq!(store.act_cursor().await.unwrap(), Some((5, 0)));
        assert!(store.playbook_did("pb", &action, 0).await.unwrap().is_some());
        let approved = store.approve_action(w.id, "user:bob", 2000, 60_000).await.unwrap().unwrap();
        assert_eq!((approved.state.as_str(), approved.commands.len()), ("sent", 2));
        assert!(store.approve_action(w.id, "user:bob", 2000, 60_000).await.unwrap().is_none(), "once");
        assert!(!store.reject_action(w.id, "user:bob", 2000).await.unwrap());
        assert_eq!(store.playbook_actions_since("pb", 0).await.unwrap(), 1);
    }
}
