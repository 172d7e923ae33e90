//! The hub's own findings about its devices (agent `lifecycle`: a device
//! offline, a device back, an agent failed or restarted by policy; the
//! subject's service is `opmas-edge` or the agent's name) and each device's presence timeline
//! (`presence_changes`, kept by a trigger on `devices.status`). Lifecycle
//! findings live in the `findings` table like the edges', under epoch 0
//! (no edge run has it: epochs are drawn at random with the top bit clear
//! and are never 0 in practice), so alerting and correlation later treat
//! them alike.

use opmas_proto::kinds::Kind;
use opmas_proto::msg::{Finding, Stage, Subject};
use serde::Serialize;

use super::{Store, StoreError};

/// The agent name of the hub's own findings.
pub const AGENT: &str = opmas_proto::kinds::LIFECYCLE_AGENT;
/// The epoch lifecycle findings are stored under.
pub const EPOCH: u64 = 0;
/// The subject service of findings about the device as a whole.
pub const EDGE: &str = "opmas-edge";

/// One change of presence.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PresenceRow {
    pub status: String,
    pub at_ms: i64,
}

impl Store {
    /// The device's presence changes, newest first.
    pub async fn presence_history(&self, device: &str, limit: u32) -> Result<Vec<PresenceRow>, StoreError> {
        Ok(sqlx::query_as("SELECT status, at_ms FROM presence_changes WHERE device_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(device)
            .bind(limit as i64)
            .fetch_all(self.pool())
            .await?)
    }

    /// Stores a lifecycle finding of `kind` about `service` ([`EDGE`] or an
    /// agent) on `device`; returns it as stored (its sequence the next of
    /// epoch 0).
    pub async fn lifecycle_finding(
        &self,
        device: &str,
        kind: &Kind,
        service: &str,
        summary: String,
        open: bool,
        now_ms: i64,
    ) -> Result<Finding, StoreError> {
        let mut tx = self.begin_write().await?;
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM findings WHERE device_id = $1 AND epoch = 0")
                .bind(device)
                .fetch_one(&mut *tx)
                .await?;
        let f = Finding {
            seq: seq as u64,
            agent: AGENT.into(),
            kind: kind.name.into(),
            severity: kind.severity,
            subject: Subject { service: Some(service.into()), ..Default::default() },
            count: 1,
            first_ms: now_ms as u64,
            last_ms: now_ms as u64,
            summary,
            evidence: Vec::new(),
            stage: if open { Stage::New } else { Stage::Closed },
        };
        super::findings::insert_batch(&mut tx, device, EPOCH, &[&f], now_ms, &mut Vec::new()).await?;
        tx.commit().await?;
        Ok(f)
    }

    /// Closes the device's open lifecycle findings of `kind` about
    /// `service` as of `now_ms`; returns how long the oldest had been open
    /// (ms), if any was.
    pub async fn close_lifecycle(
        &self,
        device: &str,
        kind: &Kind,
        service: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let first: Option<i64> = sqlx::query_scalar(
            "UPDATE findings SET open = 0, last_ms = $1
              WHERE device_id = $2 AND epoch = 0 AND kind = $3 AND service = $4 AND open = 1
             RETURNING first_ms",
        )
        .bind(now_ms)
        .bind(device)
        .bind(kind.name)
        .bind(service)
        .fetch_all(self.writer())
        .await?
        .into_iter()
        .min();
        Ok(first.map(|f| now_ms - f))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store;
    use opmas_proto::kinds::{DEVICE_BACK, DEVICE_OFFLINE};

    #[tokio::test]
    async fn offline_then_back_is_one_open_finding_closed_and_a_timeline() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        store.mark_silent_offline(i64::MAX, 5).await.unwrap();
        let off = store
            .lifecycle_finding("gw-1", &DEVICE_OFFLINE, super::EDGE, "gw-1 went offline".into(), true, 1000)
            .await
            .unwrap();
        assert_eq!(off.seq, 1);
        assert_eq!(store.close_lifecycle("gw-1", &DEVICE_OFFLINE, super::EDGE, 61_000).await.unwrap(), Some(60_000));
        assert_eq!(
            store.close_lifecycle("gw-1", &DEVICE_OFFLINE, super::EDGE, 62_000).await.unwrap(),
            None,
            "closed once"
        );
        let back =
            store.lifecycle_finding("gw-1", &DEVICE_BACK, super::EDGE, "back".into(), false, 61_000).await.unwrap();
        assert_eq!(back.seq, 2);
        let q = crate::store::FindingQuery { device: Some("gw-1".into()), limit: 10, ..Default::default() };
        let rows = store.query_findings(&q).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.kind.as_str(), r.open)).collect::<Vec<_>>(),
            [("device.back", false), ("device.offline", false)]
        );
        assert_eq!(rows[0].agent, "lifecycle");
    }
}
