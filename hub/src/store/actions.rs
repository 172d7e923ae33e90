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
    pub comment: Option<String>,
    /// The action this one takes back.
    pub undo_of: Option<i64>,
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

/// What to store: the action, who asked, and the routers it goes to.
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
}

const COLUMNS: &str = "id, created_ms, created_by, action, targets, comment, undo_of";

impl Store {
    /// Stores an action and one pending command per device, in one
    /// transaction; returns it with its commands.
    pub async fn insert_action(&self, a: &NewAction<'_>) -> Result<ActionRow, StoreError> {
        let json = serde_json::to_string(a.action).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        let mut row: ActionRow = sqlx::query_as(&format!(
            "INSERT INTO actions (created_ms, created_by, action, targets, comment, undo_of) VALUES (?, ?, ?, ?, ?, ?)
             RETURNING {COLUMNS}"
        ))
        .bind(a.now_ms)
        .bind(a.by)
        .bind(json)
        .bind(a.targets.to_string())
        .bind(a.comment)
        .bind(a.undo_of)
        .fetch_one(&mut *tx)
        .await?;
        for d in a.devices {
            let c = insert_command(&mut tx, d, a.action, a.by, a.now_ms, a.ttl_ms).await?;
            sqlx::query("INSERT INTO action_commands (action_id, command_id) VALUES (?, ?)")
                .bind(row.id)
                .bind(c.id)
                .execute(&mut *tx)
                .await?;
            row.commands.push(c);
        }
        tx.commit().await?;
        Ok(row)
    }

    /// One action with its commands.
    pub async fn action(&self, id: i64) -> Result<Option<ActionRow>, StoreError> {
        let row: Option<ActionRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM actions WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(mut row) = row else { return Ok(None) };
        row.commands = self.action_commands(&[row.id]).await?.into_iter().map(|(_, c)| c).collect();
        Ok(Some(row))
    }

    /// Actions, newest first, with their commands (two queries a page).
    pub async fn query_actions(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<ActionRow>, StoreError> {
        let mut rows: Vec<ActionRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM actions WHERE id < ? ORDER BY id DESC LIMIT ?"))
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
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

    /// The commands of `actions`, by command id.
    async fn action_commands(&self, actions: &[i64]) -> Result<Vec<(i64, CommandRow)>, StoreError> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let cols = COMMAND_COLUMNS.split(',').map(|c| format!("c.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let mut b: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(format!(
            "SELECT ac.action_id, {cols} FROM action_commands ac JOIN commands c ON c.id = ac.command_id
              WHERE ac.action_id IN ("
        ));
        let mut sep = b.separated(", ");
        for id in actions {
            sep.push_bind(*id);
        }
        b.push(") ORDER BY c.id");
        let rows = b.build().fetch_all(self.pool()).await?;
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
        let new = NewAction {
            action: &action,
            targets: &targets,
            devices: &devices,
            by: "user:alice",
            comment: Some("seen on gw-1"),
            undo_of: None,
            now_ms: 1000,
            ttl_ms: 60_000,
        };
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
        let all = store.query_actions(None, 10).await.unwrap();
        assert_eq!(all.len(), 1, "the failed one left nothing");
        assert_eq!(all[0].commands.iter().map(|c| c.device_id.as_str()).collect::<Vec<_>>(), ["gw-1", "gw-2"]);
        assert_eq!(store.action(a.id).await.unwrap().unwrap().commands.len(), 2);
    }
}
