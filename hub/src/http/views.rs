//! The API's own response types, built from the store's rows, so that
//! neither a wire change nor a schema change alters the API by accident.
//!
//! Conventions: times are unix milliseconds (`*_ms`) and also RFC 3339 UTC
//! (the same name without `_ms`); severities are a number and a name; run
//! epochs are decimal strings (a `u64` does not fit JSON numbers safely).

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::delivery::DeliveryRow;
use crate::store::heartbeats::{AgentRow, HeartbeatRow};
use crate::store::{DeviceRow, FindingRow};

/// Unix milliseconds as RFC 3339 UTC (`2024-12-05T17:43:57.5Z`).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The name of a severity from 1 to 5.
pub fn severity_name(s: i64) -> &'static str {
    match s {
        ..=1 => "info",
        2 => "low",
        3 => "medium",
        4 => "high",
        _ => "critical",
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub created: String,
    /// `never`, `online` or `offline`.
    pub status: String,
    pub status_ms: Option<i64>,
    pub status_at: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub last_seen: Option<String>,
    pub epoch: Option<String>,
    /// `mqtt` (an OPMAS agent runs there) or `ssh` (reached over SSH, no
    /// agent: it never reports, so it is never seen online).
    pub transport: String,
    /// The latest heartbeat, if any.
    pub heartbeat: Option<HeartbeatView>,
    /// Only on `GET /devices/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryView>>,
}

impl DeviceView {
    pub fn new(d: DeviceRow, heartbeat: Option<HeartbeatView>) -> DeviceView {
        DeviceView {
            created: rfc3339(d.created_ms),
            status_at: d.status_ms.map(rfc3339),
            last_seen: d.last_seen_ms.map(rfc3339),
            id: d.id,
            name: d.name,
            created_ms: d.created_ms,
            status: d.status,
            status_ms: d.status_ms,
            last_seen_ms: d.last_seen_ms,
            epoch: d.epoch,
            transport: d.transport,
            heartbeat,
            deliveries: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatView {
    pub received_ms: i64,
    pub received: String,
    pub epoch: String,
    pub uptime_s: i64,
    pub version: String,
    pub config_version: i64,
    pub spool: SpoolView,
    pub counters: CountersView,
    /// Empty in history listings.
    pub agents: Vec<AgentView>,
    pub load_milli: Option<i64>,
    pub rss_kib: Option<i64>,
    /// Why the device refused its last configuration.
    pub config_error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SpoolView {
    pub depth: i64,
    pub bytes: i64,
    pub budget: i64,
    pub dropped: i64,
    pub acked_upto: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CountersView {
    pub lines: i64,
    pub unparsed: i64,
    pub shed: i64,
    pub truncated: i64,
    pub findings: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentView {
    pub name: String,
    pub state: String,
    pub events: i64,
    pub findings: i64,
    pub evicted: i64,
    /// Restarts by the edge's supervisor in its current run.
    pub restarts: i64,
    pub last_error: Option<String>,
    /// Lines the agent ignored through its `exclude_patterns`.
    pub excluded: i64,
}

impl HeartbeatView {
    pub fn new(h: HeartbeatRow, agents: Vec<AgentRow>) -> HeartbeatView {
        HeartbeatView {
            received: rfc3339(h.received_ms),
            received_ms: h.received_ms,
            epoch: (h.epoch as u64).to_string(),
            uptime_s: h.uptime_s,
            version: h.version,
            config_version: h.config_version,
            spool: SpoolView {
                depth: h.spool_depth,
                bytes: h.spool_bytes,
                budget: h.spool_budget,
                dropped: h.spool_dropped,
                acked_upto: h.spool_acked_upto,
            },
            counters: CountersView {
                lines: h.lines,
                unparsed: h.unparsed,
                shed: h.shed,
                truncated: h.truncated,
                findings: h.findings,
            },
            agents: agents
                .into_iter()
                .map(|a| AgentView {
                    name: a.name,
                    state: a.state,
                    events: a.events,
                    findings: a.findings,
                    evicted: a.evicted,
                    restarts: a.restarts,
                    last_error: a.last_error,
                    excluded: a.excluded,
                })
                .collect(),
            load_milli: h.load_milli,
            rss_kib: h.rss_kib,
            config_error: h.config_error,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub epoch: String,
    pub acked_upto: u64,
    pub dropped_by_edge: u64,
    pub unstorable: u64,
    pub updated_ms: i64,
    pub updated: String,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(d: DeliveryRow) -> Self {
        DeliveryView {
            updated: rfc3339(d.updated_ms),
            epoch: d.epoch,
            acked_upto: d.acked_upto,
            dropped_by_edge: d.dropped_by_edge,
            unstorable: d.unstorable,
            updated_ms: d.updated_ms,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingView {
    pub id: i64,
    pub device_id: String,
    pub epoch: String,
    pub seq: i64,
    pub agent: String,
    pub kind: String,
    pub severity: i64,
    pub severity_name: &'static str,
    pub src_ip: Option<String>,
    pub mac: Option<String>,
    pub iface: Option<String>,
    pub user: Option<String>,
    pub service: Option<String>,
    /// The source as a host name, when the router's log named no address.
    pub host: Option<String>,
    pub count: i64,
    pub first_ms: i64,
    pub first: String,
    pub last_ms: i64,
    pub last: String,
    pub summary: String,
    pub evidence: Vec<String>,
    pub received_ms: i64,
    pub received: String,
    /// The attack or campaign goes on: the edge may still update it.
    pub open: bool,
}

impl From<FindingRow> for FindingView {
    fn from(f: FindingRow) -> Self {
        FindingView {
            severity_name: severity_name(f.severity),
            first: rfc3339(f.first_ms),
            last: rfc3339(f.last_ms),
            received: rfc3339(f.received_ms),
            id: f.id,
            device_id: f.device_id,
            epoch: f.epoch,
            seq: f.seq,
            agent: f.agent,
            kind: f.kind,
            severity: f.severity,
            src_ip: f.src_ip,
            mac: f.mac,
            iface: f.iface,
            user: f.user,
            service: f.service,
            host: f.host,
            count: f.count,
            first_ms: f.first_ms,
            last_ms: f.last_ms,
            summary: f.summary,
            evidence: f.evidence,
            received_ms: f.received_ms,
            open: f.open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_severities_read_for_people() {
        assert_eq!(rfc3339(1_733_420_637_500), "2024-12-05T17:43:57.5Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!([1, 2, 3, 4, 5].map(severity_name), ["info", "low", "medium", "high", "critical"]);
    }
}

/// `GET /devices`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

/// `GET /devices/{id}/heartbeats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatList {
    pub heartbeats: Vec<HeartbeatView>,
}

/// `GET /findings`: a page, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingPage {
    pub findings: Vec<FindingView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
    /// This replica runs the duties one hub must run (always, on SQLite).
    pub leader: bool,
}

/// A signed-in session (`POST` and `GET /session`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub user: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Send as `X-CSRF-Token` with every cookie-authenticated request that
    /// changes something.
    pub csrf: String,
    /// RFC 3339.
    pub expires: String,
}

/// Every error: what went wrong, and for a bad parameter which one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub field: Option<String>,
}
