//! Retention of the history tables besides findings (which are archived
//! first, see `crate::archive`): resolved incidents, and the audit trail
//! (actions and their commands, configuration changes, presence changes,
//! delivered notifications). Nothing still in use goes: open incidents,
//! pending commands, actions awaiting approval, notifications still being
//! retried, and each scope's latest configuration change (its number is the
//! configuration version routers compare against) stay whatever their age.

use serde::Serialize;

use super::{Store, StoreError};

/// Rows deleted by one [`Store::prune_history`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Resolved incidents (with their events and member lists).
    pub incidents: u64,
    pub actions: u64,
    pub commands: u64,
    pub config_changes: u64,
    pub presence_changes: u64,
    pub notifications: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.incidents + self.actions + self.commands + self.config_changes + self.presence_changes + self.notifications
    }
}

impl Store {
    /// Deletes resolved incidents resolved before `incidents_before_ms`, and
    /// audit rows older than `audit_before_ms` (`None`: keep that kind).
    /// Each table in its own short transaction.
    pub async fn prune_history(
        &self,
        incidents_before_ms: Option<i64>,
        audit_before_ms: Option<i64>,
    ) -> Result<Pruned, StoreError> {
        let mut out = Pruned::default();
        if let Some(t) = incidents_before_ms {
            out.incidents = self
                .delete_before(
                    "DELETE FROM incidents WHERE state = 'resolved' AND COALESCE(resolved_ms, last_ms) < $1",
                    t,
                )
                .await?;
        }
        let Some(t) = audit_before_ms else { return Ok(out) };
        // An action stays while a newer one undoes it (`undo_of` points at it).
        out.actions = self
            .delete_before(
                "DELETE FROM actions WHERE created_ms < $1 AND state != 'awaiting_approval'
                   AND NOT EXISTS (SELECT 1 FROM actions u WHERE u.undo_of = actions.id AND u.created_ms >= $1)",
                t,
            )
            .await?;
        out.commands =
            self.delete_before("DELETE FROM commands WHERE created_ms < $1 AND state != 'pending'", t).await?;
        out.config_changes = self
            .delete_before(
                "DELETE FROM config_changes WHERE changed_ms < $1
                   AND id NOT IN (SELECT MAX(id) FROM config_changes GROUP BY scope)",
                t,
            )
            .await?;
        out.presence_changes = self.delete_before("DELETE FROM presence_changes WHERE at_ms < $1", t).await?;
        out.notifications =
            self.delete_before("DELETE FROM alert_outbox WHERE state != 'pending' AND created_ms < $1", t).await?;
        Ok(out)
    }

    async fn delete_before(&self, sql: &str, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(sql).bind(before_ms).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store;

    /// A row count of `table`.
    async fn count(store: &crate::store::Store, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(store.pool()).await.unwrap()
    }

    #[tokio::test]
    async fn old_history_goes_and_what_is_in_use_stays() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let w = store.writer();
        let run = |sql: &'static str| sqlx::query(sql).execute(w);
        // Incidents: one resolved long ago, one resolved recently, one open since long ago.
        run("INSERT INTO incidents (rule, key, severity, state, reason, first_ms, last_ms, resolved_ms)
             VALUES ('r', 'a', 3, 'resolved', 'x', 100, 200, 300), ('r', 'b', 3, 'resolved', 'x', 100, 200, 5000),
                    ('r', 'c', 3, 'open', 'x', 100, 200, NULL)")
        .await
        .unwrap();
        run("INSERT INTO incident_events (incident_id, at_ms, kind, by) SELECT id, 300, 'resolved', 'hub' FROM incidents")
            .await
            .unwrap();
        // Commands: an old answered one, an old pending one.
        run("INSERT INTO commands (device_id, action, created_ms, created_by, expires_ms, state)
             VALUES ('gw-1', '{}', 100, 't', 200, 'done'), ('gw-1', '{}', 100, 't', 999999, 'pending')")
        .await
        .unwrap();
        // Actions: an old one undone by a recent one; an old one alone; one awaiting approval.
        run("INSERT INTO actions (id, created_ms, created_by, action, targets, state)
             VALUES (1, 100, 't', '{}', '[]', 'sent'), (3, 100, 't', '{}', '[]', 'sent'),
                    (4, 100, 't', '{}', '[]', 'awaiting_approval')")
        .await
        .unwrap();
        run("INSERT INTO actions (id, created_ms, created_by, action, targets, state, undo_of)
             VALUES (2, 5000, 't', '{}', '[]', 'sent', 1)")
        .await
        .unwrap();
        // Configuration changes: two old ones of one scope (the latest stays).
        run("INSERT INTO config_changes (scope, agent, after, changed_by, changed_ms)
             VALUES ('fleet', 'wifi', '{}', 't', 100), ('fleet', 'wifi', '{}', 't', 200)")
        .await
        .unwrap();
        run("INSERT INTO alert_outbox (receiver, payload, state, next_attempt_ms, created_ms)
             VALUES ('r', '{}', 'sent', 0, 100), ('r', '{}', 'pending', 0, 100)")
        .await
        .unwrap();

        let p = store.prune_history(Some(1000), Some(1000)).await.unwrap();
        assert_eq!((p.incidents, p.actions, p.commands, p.config_changes, p.notifications), (1, 1, 1, 1, 1), "{p:?}");
        assert_eq!(count(&store, "incidents").await, 2, "the open and the recent one stay");
        assert_eq!(count(&store, "incident_events").await, 2, "the deleted incident's events went with it");
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM actions ORDER BY id").fetch_all(store.pool()).await.unwrap();
        assert_eq!(ids, [1, 2, 4], "undone by a recent action, the recent one, and one awaiting approval");
        let pending: Vec<String> =
            sqlx::query_scalar("SELECT state FROM commands").fetch_all(store.pool()).await.unwrap();
        assert_eq!(pending, ["pending"]);
        let version: i64 =
            sqlx::query_scalar("SELECT MAX(changed_ms) FROM config_changes").fetch_one(store.pool()).await.unwrap();
        assert_eq!((count(&store, "config_changes").await, version), (1, 200), "the latest change stays");
        assert_eq!(store.prune_history(None, None).await.unwrap().total(), 0, "nothing asked, nothing done");
    }
}
