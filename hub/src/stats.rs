//! Ingest and broker counters, shared by the MQTT side and the API.
//!
//! Plain atomics: they are bumped on the hot path and read rarely (`GET
//! /api/v1/stats`), so no lock and no allocation per message.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters since the hub started.
        #[derive(Debug, Default)]
        pub struct Stats { $($(#[$doc])* pub $name: AtomicU64,)* }

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
            }
        }
    };
}

counters! {
    /// MQTT connections the auth callback accepted.
    auth_accepted,
    /// MQTT connections refused: unknown device, wrong secret, client id not the device id.
    auth_refused,
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
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
