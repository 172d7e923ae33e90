//! Ingest and broker counters, shared by the MQTT side and the API.
//!
//! Plain atomics: they are bumped on the hot path and read rarely (`GET
//! /api/v1/stats`), so no lock and no allocation per message. Two things
//! beside them, for `/metrics`: [`Metrics`] (findings by agent and kind,
//! once per committed batch under a lock, and the ingest transaction time
//! histogram).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters since the hub started.
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Labelled series and the latency histogram.
            pub metrics: Metrics,
        }

        /// A point-in-time copy of [`Stats`] for the API.
        #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
        pub struct Snapshot { $(pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// Every counter in the Prometheus text format, as `opmas_<name>_total`.
            pub fn prometheus(&self, out: &mut String) {
                use std::fmt::Write;
                $(
                    let name = concat!("opmas_", stringify!($name), "_total");
                    let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", self.$name.load(Ordering::Relaxed));
                )*
                self.refusals(out);
                self.metrics.prometheus(out);
            }
        }
    };
}

counters! {
    /// MQTT connections the auth callback accepted.
    auth_accepted,
    /// MQTT connections refused: unknown device, wrong secret, client id not the device id.
    auth_refused,
    /// Connection losses to the external MQTT broker (`[broker] mode = "external"`),
    /// counted per failed attempt while it is away.
    broker_disconnects,
    /// MQTTS connections refused before MQTT: failed or missing TLS handshake
    /// (wrong CA, no client certificate), or the connection limit.
    tls_refused,
    /// Messages the ingest loop received from the broker.
    messages,
    /// Findings newly stored.
    findings_stored,
    /// Findings received again after a lost ack (already stored, ignored).
    findings_duplicate,
    /// Finding batches entirely at or below the device's watermark: a resend
    /// recognised without touching the database, acked again.
    batches_duplicate,
    /// Finding batches not stored because findings before them never arrived
    /// (the broker skipped them); the ack reported the gap and the edge resends.
    batches_gap,
    /// Finding batches after a gap held for another try (PostgreSQL
    /// replicas: the batch before it may be committing on another replica).
    batches_held,
    /// Finding sequences the edges dropped from full spools before sending
    /// them, as the batches' floors revealed (the edges count them too).
    findings_dropped_by_edge,
    /// Updates (a flood's growing count) applied to stored findings.
    findings_updated,
    /// Findings the database refused to store (a constraint or trigger on
    /// the row): skipped, logged with the reason, and counted per device in
    /// `deliveries.unstorable`.
    findings_unstorable,
    /// Status and heartbeat messages the database refused (skipped, logged).
    messages_unstorable,
    /// Heartbeats recorded.
    heartbeats,
    /// Acks published to edges.
    acks_sent,
    /// Acks the broker's outgoing queue did not take (full or gone).
    acks_dropped,
    /// Dropped: topic not of the form `opmas/v1/{device}/{channel}`.
    rejected_topic,
    /// Dropped: the topic names a device that is not enrolled.
    rejected_unknown_device,
    /// Dropped: the envelope's tag did not verify under the device's secret.
    rejected_bad_tag,
    /// Dropped: the envelope names another device than its topic.
    rejected_device_mismatch,
    /// Dropped: unknown envelope format version.
    rejected_version,
    /// Dropped: truncated or malformed envelope or body.
    rejected_malformed,
    /// Batches whose database transaction failed (not acked, so the edge resends).
    store_errors,
    /// Downlink messages (commands, acks) that edges reported refusing
    /// unread: a bad tag, another device's, malformed.
    downlink_refused_by_edge,
    /// Commands published to devices (first sends and resends).
    commands_sent,
    /// Commands that could not be published (the broker's queue).
    commands_unsent,
    /// Configuration documents published to devices.
    configs_sent,
    /// Stored findings the correlator has taken (its cursor moved past them).
    findings_correlated,
    /// Incidents the correlator opened.
    incidents_opened,
}

/// Upper bounds (seconds) of the ingest histogram's buckets.
pub const INGEST_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Most (agent, kind, stage) series kept; later ones count as `other`.
const MAX_SERIES: usize = 512;

/// What `/metrics` shows beyond the plain counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Findings committed, by (agent, kind, `new` or `update`).
    findings: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// Ingest transactions by time taken: counts per bucket of
    /// [`INGEST_BUCKETS`] (the last is +Inf), and the sum in microseconds.
    ingest_buckets: [AtomicU64; INGEST_BUCKETS.len() + 1],
    ingest_sum_us: AtomicU64,
}

impl Metrics {
    /// Counts committed findings.
    pub fn findings<'a>(&self, found: impl IntoIterator<Item = &'a opmas_proto::msg::Finding>) {
        let Ok(mut m) = self.findings.lock() else { return };
        for f in found {
            let stage = if f.is_update() { "update" } else { "new" };
            let mut key = (f.agent.clone(), f.kind.clone(), stage);
            // A device may name any kind: the series stay bounded.
            if !m.contains_key(&key) && m.len() >= MAX_SERIES {
                key = ("other".into(), "other".into(), stage);
            }
            *m.entry(key).or_default() += 1;
        }
    }

    /// Records one ingest transaction (verify to commit) that took `d`.
    pub fn ingest(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = INGEST_BUCKETS.iter().position(|b| s <= *b).unwrap_or(INGEST_BUCKETS.len());
        self.ingest_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.ingest_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP opmas_findings_committed_total Findings and updates stored, by agent and kind.\n");
        out.push_str("# TYPE opmas_findings_committed_total counter\n");
        if let Ok(m) = self.findings.lock() {
            for ((agent, kind, stage), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "opmas_findings_committed_total{{agent=\"{}\",kind=\"{}\",stage=\"{stage}\"}} {n}",
                    escape(agent),
                    escape(kind)
                );
            }
        }
        out.push_str("# HELP opmas_ingest_transaction_seconds Time from a batch of messages taken off the broker to its commit.\n");
        out.push_str("# TYPE opmas_ingest_transaction_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in self.ingest_buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = INGEST_BUCKETS.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "opmas_ingest_transaction_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.ingest_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "opmas_ingest_transaction_seconds_sum {sum}");
        let _ = writeln!(out, "opmas_ingest_transaction_seconds_count {cumulative}");
    }
}

/// A label value as the Prometheus text format wants it.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Stats {
    /// Refusals as one family per side, labelled by reason.
    fn refusals(&self, out: &mut String) {
        use std::fmt::Write;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP opmas_mqtt_refused_total Connections refused, by reason.\n# TYPE opmas_mqtt_refused_total counter\n");
        for (reason, n) in [("auth", get(&self.auth_refused)), ("tls", get(&self.tls_refused))] {
            let _ = writeln!(out, "opmas_mqtt_refused_total{{reason=\"{reason}\"}} {n}");
        }
        out.push_str("# HELP opmas_envelopes_refused_total Messages dropped unread, by reason.\n# TYPE opmas_envelopes_refused_total counter\n");
        for (reason, n) in [
            ("topic", get(&self.rejected_topic)),
            ("unknown_device", get(&self.rejected_unknown_device)),
            ("bad_tag", get(&self.rejected_bad_tag)),
            ("device_mismatch", get(&self.rejected_device_mismatch)),
            ("version", get(&self.rejected_version)),
            ("malformed", get(&self.rejected_malformed)),
        ] {
            let _ = writeln!(out, "opmas_envelopes_refused_total{{reason=\"{reason}\"}} {n}");
        }
    }
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opmas_proto::msg::{Finding, Severity, Stage};

    fn finding(kind: &str, stage: Stage) -> Finding {
        Finding {
            seq: 1,
            agent: "security".into(),
            kind: kind.into(),
            severity: Severity::HIGH,
            subject: Default::default(),
            count: 1,
            first_ms: 1,
            last_ms: 1,
            summary: String::new(),
            evidence: vec![],
            stage,
        }
    }

    #[test]
    fn findings_by_kind_and_the_latency_histogram_read_as_prometheus_does() {
        let s = Stats::default();
        s.metrics.findings(&[finding("ssh.bruteforce", Stage::New), finding("ssh.bruteforce", Stage::Update)]);
        // A device naming kinds without end does not grow the series without end.
        let many: Vec<Finding> = (0..2 * MAX_SERIES).map(|i| finding(&format!("k{i}"), Stage::New)).collect();
        s.metrics.findings(&many);
        s.metrics.ingest(Duration::from_millis(3));
        s.metrics.ingest(Duration::from_secs(9));
        let mut out = String::new();
        s.prometheus(&mut out);
        assert!(
            out.contains(
                "opmas_findings_committed_total{agent=\"security\",kind=\"ssh.bruteforce\",stage=\"update\"} 1"
            ),
            "{out}"
        );
        assert!(out.lines().filter(|l| l.starts_with("opmas_findings_committed_total{")).count() <= MAX_SERIES + 1);
        assert!(out.contains("opmas_findings_committed_total{agent=\"other\",kind=\"other\",stage=\"new\"}"), "{out}");
        assert!(out.contains("opmas_ingest_transaction_seconds_bucket{le=\"0.0025\"} 0\n"), "{out}");
        assert!(out.contains("opmas_ingest_transaction_seconds_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("opmas_ingest_transaction_seconds_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("opmas_ingest_transaction_seconds_count 2"), "{out}");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
