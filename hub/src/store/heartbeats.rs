//! The `heartbeats` and `device_agents` tables: each device's health as
//! columns (see migration 0004), the latest heartbeat and a day of history.

use super::{Conn, Dialect, Sql};
use opmas_proto::msg::{AgentState, Heartbeat};

use super::{Store, StoreError};

/// One stored heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HeartbeatRow {
    pub received_ms: i64,
    pub epoch: i64,
    pub uptime_s: i64,
    pub version: String,
    pub config_version: i64,
    pub spool_depth: i64,
    pub spool_bytes: i64,
    pub spool_budget: i64,
    pub spool_dropped: i64,
    pub spool_acked_upto: i64,
    pub lines: i64,
    pub unparsed: i64,
    pub shed: i64,
    pub truncated: i64,
    pub findings: i64,
    pub load_milli: Option<i64>,
    pub rss_kib: Option<i64>,
    /// Why the device refused its last configuration.
    pub config_error: Option<String>,
}

/// An agent's state and counters as of the latest heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentRow {
    pub name: String,
    /// `running`, `stopped`, `restarting` or `failed`.
    pub state: String,
    pub events: i64,
    pub findings: i64,
    pub evicted: i64,
    /// Restarts by the edge's supervisor in its current run.
    pub restarts: i64,
    /// The agent's last failure.
    pub last_error: Option<String>,
    /// Lines the agent ignored through its `exclude_patterns`.
    pub excluded: i64,
}

/// A change in an agent's supervision between two heartbeats, for the
/// hub's `lifecycle` agent. Worked out inside the heartbeat's transaction
/// against what the previous one stored, so a hub restart neither misses
/// nor repeats one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentChange {
    /// The edge's supervisor restarted the agent after a failure
    /// (`restarts` in this run so far).
    Restarted { agent: String, restarts: u32, error: Option<String> },
    /// The supervisor gave up on the agent.
    Failed { agent: String, restarts: u32, error: Option<String> },
    /// Running again after it had failed (an operator's start, a new
    /// configuration, or a new run of the edge).
    Recovered { agent: String },
}

const AGENT_COLUMNS: &str = "name, state, events, findings, evicted, restarts, last_error, excluded";

const COLUMNS: &str = "received_ms, epoch, uptime_s, version, config_version, spool_depth, spool_bytes, spool_budget,
     spool_dropped, spool_acked_upto, lines, unparsed, shed, truncated, findings, load_milli, rss_kib, config_error";

fn state_name(s: AgentState) -> &'static str {
    match s {
        AgentState::Running => "running",
        AgentState::Stopped => "stopped",
        AgentState::Failed => "failed",
        AgentState::Restarting => "restarting",
    }
}

/// What changed in the supervision of the device's agents since the
/// heartbeat stored before (`old`, of run `old_epoch`).
fn agent_changes(old: &[(String, String, i64)], old_epoch: Option<i64>, hb: &Heartbeat) -> Vec<AgentChange> {
    let same_run = old_epoch == Some(hb.epoch.min(i64::MAX as u64) as i64);
    let mut changes = Vec::new();
    for a in &hb.agents {
        let before = old.iter().find(|(name, _, _)| *name == a.name);
        let was_failed = before.is_some_and(|(_, state, _)| state == "failed");
        // A new run counts its restarts from zero.
        let restarts_before = before.filter(|_| same_run).map_or(0, |(_, _, n)| *n);
        if i64::from(a.restarts) > restarts_before {
            changes.push(AgentChange::Restarted {
                agent: a.name.clone(),
                restarts: a.restarts,
                error: a.last_error.clone(),
            });
        }
        match a.state {
            AgentState::Failed if !was_failed || !same_run => changes.push(AgentChange::Failed {
                agent: a.name.clone(),
                restarts: a.restarts,
                error: a.last_error.clone(),
            }),
            AgentState::Failed => {}
            _ if was_failed => changes.push(AgentChange::Recovered { agent: a.name.clone() }),
            _ => {}
        }
    }
    changes
}

/// Stores a heartbeat, the device's agents, its current epoch and its
/// heartbeat interval; returns what changed in its agents' supervision.
pub(super) async fn record(
    conn: &mut Conn,
    id: &str,
    hb: &Heartbeat,
    now_ms: i64,
) -> Result<Vec<AgentChange>, StoreError> {
    let big = |v: u64| v.min(i64::MAX as u64) as i64;
    let old: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT name, state, restarts FROM device_agents WHERE device_id = $1")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let old_epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    let changes = agent_changes(&old, old_epoch, hb);
    sqlx::query(&format!(
        "INSERT INTO heartbeats (device_id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    ))
    .bind(id)
    .bind(now_ms)
    .bind(big(hb.epoch))
    .bind(big(hb.uptime_s))
    .bind(&hb.version)
    .bind(big(hb.config_version))
    .bind(hb.spool.depth as i64)
    .bind(hb.spool.bytes as i64)
    .bind(hb.spool.budget as i64)
    .bind(big(hb.spool.dropped))
    .bind(big(hb.spool.acked_upto))
    .bind(big(hb.counters.lines))
    .bind(big(hb.counters.unparsed))
    .bind(big(hb.counters.shed))
    .bind(big(hb.counters.truncated))
    .bind(big(hb.counters.findings))
    .bind(hb.load_milli.map(i64::from))
    .bind(hb.rss_kib.map(big))
    .bind(&hb.config_error)
    .execute(&mut *conn)
    .await?;
    // The agents an edge reports replace those it reported before.
    sqlx::query("DELETE FROM device_agents WHERE device_id = $1").bind(id).execute(&mut *conn).await?;
    if !hb.agents.is_empty() {
        let mut b = Sql::new(
            Dialect::of(conn),
            "INSERT INTO device_agents (device_id, name, state, events, findings, evicted, restarts, last_error, excluded, updated_ms) ",
        );
        b.push_values(&hb.agents, |row, a| {
            row.bind(id)
                .bind(&a.name)
                .bind(state_name(a.state))
                .bind(big(a.events))
                .bind(big(a.findings))
                .bind(big(a.evicted))
                .bind(i64::from(a.restarts))
                .bind(&a.last_error)
                .bind(big(a.excluded))
                .bind(now_ms);
        });
        b.push(" ON CONFLICT (device_id, name) DO NOTHING");
        let (sql, args) = b.finish()?;
        sqlx::query_with(&sql, args).execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE devices SET epoch = $1, heartbeat_ms = $2 WHERE id = $3")
        .bind(big(hb.epoch))
        .bind(i64::from(hb.interval_s.max(1)) * 1000)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(changes)
}

impl Store {
    /// The device's latest heartbeat and its agents, if it sent one.
    pub async fn latest_heartbeat(&self, id: &str) -> Result<Option<(HeartbeatRow, Vec<AgentRow>)>, StoreError> {
        let row: Option<HeartbeatRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM heartbeats WHERE device_id = $1 ORDER BY received_ms DESC LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let agents: Vec<AgentRow> =
            sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} FROM device_agents WHERE device_id = $1 ORDER BY name"))
                .bind(id)
                .fetch_all(self.pool())
                .await?;
        Ok(Some((row, agents)))
    }

    /// Over every device's latest heartbeat: how many report spool drops,
    /// and the drops they report in all.
    pub async fn reported_spool_drops(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(CASE WHEN h.spool_dropped > 0 THEN 1 END), COALESCE(CAST(SUM(h.spool_dropped) AS BIGINT), 0)
               FROM devices d JOIN heartbeats h ON h.device_id = d.id
                AND h.received_ms = (SELECT MAX(received_ms) FROM heartbeats WHERE device_id = d.id)",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// The device's heartbeats, newest first, at most `limit`.
    pub async fn heartbeats(&self, id: &str, limit: u32) -> Result<Vec<HeartbeatRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM heartbeats WHERE device_id = $1 ORDER BY received_ms DESC LIMIT $2"
        ))
        .bind(id)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes heartbeats received before `cutoff_ms`; returns how many.
    pub async fn prune_heartbeats(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let res =
            sqlx::query("DELETE FROM heartbeats WHERE received_ms < $1").bind(cutoff_ms).execute(self.writer()).await?;
        Ok(res.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use opmas_proto::msg::{AgentStatus, Counters, SpoolStats};

    fn hb(epoch: u64, lines: u64) -> Heartbeat {
        Heartbeat {
            epoch,
            uptime_s: 5,
            interval_s: 30,
            version: "0.1.0".into(),
            config_version: 0,
            config_error: None,
            spool: SpoolStats { depth: 1, bytes: 2, budget: 3, dropped: 4, acked_upto: 5 },
            agents: vec![AgentStatus {
                name: "security".into(),
                state: AgentState::Stopped,
                events: 6,
                findings: 7,
                evicted: 8,
                restarts: 0,
                last_error: None,
                excluded: 0,
            }],
            counters: Counters { lines, unparsed: 0, shed: 0, truncated: 0, findings: 1 },
            load_milli: Some(250),
            rss_kib: None,
        }
    }

    #[tokio::test]
    async fn heartbeats_are_columns_the_latest_wins_and_old_ones_go() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        record(&mut conn, "gw-1", &hb(u64::MAX >> 1, 10), 1_000).await.unwrap();
        record(&mut conn, "gw-1", &hb(9, 20), 2_000).await.unwrap();
        drop(conn);
        let (latest, agents) = store.latest_heartbeat("gw-1").await.unwrap().unwrap();
        assert_eq!((latest.epoch, latest.lines, latest.load_milli, latest.rss_kib), (9, 20, Some(250), None));
        assert_eq!(agents[0].state, "stopped");
        assert_eq!(store.heartbeats("gw-1", 10).await.unwrap().len(), 2);
        assert_eq!(store.prune_heartbeats(1_500).await.unwrap(), 1);
        assert_eq!(store.heartbeats("gw-1", 10).await.unwrap()[0].received_ms, 2_000);
        assert!(store.latest_heartbeat("gw-9").await.unwrap().is_none());
    }

    #[test]
    fn supervision_changes_are_told_once_and_a_new_run_counts_afresh() {
        let with = |epoch: u64, state: AgentState, restarts: u32| {
            let mut h = hb(epoch, 1);
            h.agents[0].state = state;
            h.agents[0].restarts = restarts;
            h.agents[0].last_error = Some("panicked: boom".into());
            h
        };
        let old = |state: &str, n: i64| vec![("security".to_owned(), state.to_owned(), n)];
        let restarted =
            AgentChange::Restarted { agent: "security".into(), restarts: 2, error: Some("panicked: boom".into()) };
        assert_eq!(agent_changes(&old("running", 1), Some(9), &with(9, AgentState::Running, 2)), [restarted]);
        assert!(agent_changes(&old("running", 2), Some(9), &with(9, AgentState::Running, 2)).is_empty(), "told once");
        let failed = agent_changes(&old("restarting", 2), Some(9), &with(9, AgentState::Failed, 2));
        assert!(matches!(&failed[..], [AgentChange::Failed { restarts: 2, .. }]), "{failed:?}");
        assert!(agent_changes(&old("failed", 2), Some(9), &with(9, AgentState::Failed, 2)).is_empty());
        // A new run of the edge: its agent runs again, the failure is over.
        assert_eq!(
            agent_changes(&old("failed", 2), Some(9), &with(10, AgentState::Running, 0)),
            [AgentChange::Recovered { agent: "security".into() }]
        );
        assert_eq!(agent_changes(&[], None, &with(10, AgentState::Running, 1)).len(), 1, "first heartbeat of a run");
    }
}
