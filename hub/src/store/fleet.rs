//! The fleet at a glance: every device with its latest heartbeat, its
//! agents' states and its findings of the last day, in a fixed number of
//! queries however many devices there are (the overview page and
//! `GET /fleet` read the same rows).

use std::collections::HashMap;

use serde::Serialize;

use super::{Store, StoreError};

/// How long after its last message an online device counts as stale: two
/// missed heartbeats (the edge sends one every 30 s), before the presence
/// sweep calls it offline.
pub const STALE_MS: i64 = 75_000;

/// One device of the fleet overview.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct FleetRow {
    pub id: String,
    pub name: String,
    /// `never`, `online` or `offline` as stored; see [`FleetRow::state`].
    pub status: String,
    pub last_seen_ms: Option<i64>,
    /// From the latest heartbeat.
    pub heartbeat_ms: Option<i64>,
    pub version: Option<String>,
    pub uptime_s: Option<i64>,
    /// New findings whose first event is in the last 24 hours.
    pub findings_24h: i64,
    /// Findings the edge may still update.
    pub open_findings: i64,
    /// Each agent's name and state, by name.
    #[sqlx(skip)]
    pub agents: Vec<(String, String)>,
}

impl FleetRow {
    /// `online`, `stale` (as the presence sweep stored it after three missed
    /// heartbeats, or online but silent for [`STALE_MS`] between sweeps), `offline`
    /// or `never` (enrolled, never heard).
    pub fn state(&self, now_ms: i64) -> &'static str {
        match self.status.as_str() {
            "online" if self.last_seen_ms.is_some_and(|t| now_ms - t > STALE_MS) => "stale",
            "online" => "online",
            "stale" => "stale",
            "offline" => "offline",
            _ => "never",
        }
    }
}

/// Totals over the fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FleetTotals {
    pub devices: i64,
    pub online: i64,
    pub stale: i64,
    pub offline: i64,
    pub never: i64,
    pub findings_24h: i64,
    pub open_findings: i64,
}

impl FleetTotals {
    /// Adds up `rows` as of `now_ms`.
    pub fn of(rows: &[FleetRow], now_ms: i64) -> FleetTotals {
        let mut t = FleetTotals { devices: rows.len() as i64, ..Default::default() };
        for r in rows {
            match r.state(now_ms) {
                "online" => t.online += 1,
                "stale" => t.stale += 1,
                "offline" => t.offline += 1,
                _ => t.never += 1,
            }
            t.findings_24h += r.findings_24h;
            t.open_findings += r.open_findings;
        }
        t
    }
}

impl Store {
    /// Every device (by id) with its latest heartbeat, agents and counts.
    pub async fn fleet(&self, now_ms: i64) -> Result<Vec<FleetRow>, StoreError> {
        let from_hour = (now_ms - 24 * 3_600_000) / 3_600_000;
        let mut rows: Vec<FleetRow> = sqlx::query_as(
            "SELECT d.id, d.name, d.status, d.last_seen_ms,
                    h.received_ms AS heartbeat_ms, h.version, h.uptime_s,
                    (SELECT COALESCE(CAST(SUM(n) AS BIGINT), 0) FROM finding_hours f
                      WHERE f.device_id = d.id AND f.hour > $1) AS findings_24h,
                    (SELECT COUNT(*) FROM findings o WHERE o.device_id = d.id AND o.open = 1) AS open_findings
               FROM devices d
               LEFT JOIN heartbeats h ON h.device_id = d.id
                    AND h.received_ms = (SELECT MAX(received_ms) FROM heartbeats WHERE device_id = d.id)
              ORDER BY d.id",
        )
        .bind(from_hour)
        .fetch_all(self.pool())
        .await?;
        // Two heartbeats of one router stored in the same millisecond would
        // both match the join.
        rows.dedup_by(|a, b| a.id == b.id);
        let agents: Vec<(String, String, String)> =
            sqlx::query_as("SELECT device_id, name, state FROM device_agents ORDER BY device_id, name")
                .fetch_all(self.pool())
                .await?;
        let mut by_device: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (device, name, state) in agents {
            by_device.entry(device).or_default().push((name, state));
        }
        for r in &mut rows {
            r.agents = by_device.remove(&r.id).unwrap_or_default();
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store;

    #[tokio::test]
    async fn the_fleet_has_every_device_with_its_day_of_findings() {
        let (store, _dir) = test_store().await;
        let now = 1_780_000_000_000;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        store.insert_device("gw-2", "gw-2", "aa", 1).await.unwrap();
        let f = opmas_proto::msg::Finding {
            seq: 1,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: opmas_proto::msg::Severity::HIGH,
            subject: Default::default(),
            count: 5,
            first_ms: (now - 3_600_000) as u64,
            last_ms: now as u64,
            summary: "s".into(),
            evidence: vec![],
            stage: opmas_proto::msg::Stage::New,
        };
        let old = opmas_proto::msg::Finding { seq: 2, first_ms: (now - 48 * 3_600_000) as u64, ..f.clone() };
        let mut conn = store.writer().acquire().await.unwrap();
        crate::store::findings::insert_batch(&mut conn, "gw-1", 7, &[&f, &old], now, &mut Vec::new()).await.unwrap();
        drop(conn);
        let rows = store.fleet(now).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["gw-1", "gw-2"]);
        assert_eq!((rows[0].findings_24h, rows[1].findings_24h), (1, 0), "only the last day");
        assert_eq!(rows[0].state(now), "never");
        let hours = store.finding_hours(None, (now - 72 * 3_600_000) / 3_600_000).await.unwrap();
        assert_eq!(hours.iter().map(|h| h.2).sum::<i64>(), 2);
        // Removing the device takes its counts with it.
        store.delete_device("gw-1").await.unwrap();
        assert!(store.finding_hours(None, 0).await.unwrap().is_empty());
        assert!(store.finding_hours(Some("gw-1"), 0).await.unwrap().is_empty());
    }
}
