//! Ingest: turns what devices publish into database rows and acks.
//!
//! One loop moves what the broker delivered into per-device queues
//! ([`fair`]), takes transactions of at most [`TX_MESSAGES`] messages or
//! [`TX_BYTES`] bytes from them round-robin, verifies every envelope,
//! applies them in one write transaction and, only after it commits,
//! publishes per device an ack of its watermark (see [`crate::watermark`]):
//! the highest sequence up to which every finding is stored or was dropped by
//! the edge. A finding batch that does not continue the watermark is not
//! stored; the ack then reports the gap and the edge sends again from the
//! watermark. So an ack never frees a finding that is not in the database,
//! whatever the broker skipped.
//!
//! The database work is one domain operation, [`Store::apply_uplink`];
//! ingest owns the queue, verification, the watermark cache, the stats, the
//! acks and publishing the committed [`Event`]s on the [`Bus`].
//!
//! Anything that fails verification is dropped, logged with its reason and
//! counted; it never stops the loop. A transaction the database refuses is
//! retried device by device, and a device whose messages still fail is
//! applied row by row ([`Apply::Isolated`]): a row that cannot be stored is
//! skipped and counted, and never holds back anyone else's findings.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opmas_proto::msg::Ack;
use opmas_proto::{Channel, DecodeError, DeviceId, Envelope, Secret, Topic};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

mod fair;

use crate::broker::{Inbound, Publisher};
use crate::events::{Bus, Event};
use crate::keys::Keys;
use crate::stats::{add, bump, Stats};
use crate::store::uplink::{AckOut, Applied, Apply, Uplink};
use crate::store::{self, now_ms, Store};
use crate::watermark::Watermark;
use fair::FairQueue;

/// Most messages applied in one transaction.
pub const TX_MESSAGES: usize = 1024;
/// Most payload bytes applied in one transaction: about 2,800 findings. A
/// transaction that takes long holds every device's ack back, and the
/// correlator's writes wait for it: at 2 MiB (5,000 findings) the
/// correlator waited 200-600 ms for the writer at 10,000 findings/s and
/// the incident latency's p99 was 2.1-2.4 s; at 512 KiB, 0.95-1.2 s
/// (`scripts/bench-correlate.sh`).
pub const TX_BYTES: usize = 512 << 10;
/// Most payload bytes moved out of the broker's channel into the per-device
/// queues. Past this they wait in the channel, which pushes back on the
/// broker; every edge's send window (128 KiB) keeps a fleet's share small.
const INTAKE_BYTES: usize = 16 << 20;
/// Watermarks kept in memory (one per device, its latest epoch); past this
/// the cache is cleared and refilled from the database as devices speak.
const WATERMARK_CACHE: usize = 100_000;
/// How long a finding batch after a gap may be held for another try before
/// the edge is told of the gap (PostgreSQL replicas; see
/// `Store::apply_uplink_holding`).
const HOLD_FOR: Duration = Duration::from_secs(2);
/// How soon held batches are tried again when nothing else arrives.
const HOLD_RETRY: Duration = Duration::from_millis(50);

/// A finding batch held after a gap, since when.
type Held = (std::time::Instant, DeviceId, Uplink);

/// The ingest loop's dependencies.
pub struct Ingest {
    pub store: Store,
    pub keys: Keys,
    pub publisher: Publisher,
    pub stats: Arc<Stats>,
    /// Where committed events go.
    pub bus: Bus,
    /// Sequence counter of the hub's downlink envelopes. Seeded from the
    /// clock so it keeps increasing across hub restarts.
    pub down_seq: Arc<AtomicU64>,
}

impl Ingest {
    /// Runs until the inbound channel closes.
    pub async fn run(self, mut rx: mpsc::Receiver<Inbound>) {
        let mut buf: Vec<Inbound> = Vec::with_capacity(TX_MESSAGES);
        let mut queue = FairQueue::default();
        let mut marks: HashMap<DeviceId, (u64, Watermark)> = HashMap::new();
        let mut held: Vec<Held> = Vec::new();
        loop {
            buf.clear();
            if queue.is_empty() {
                // Held batches are tried again soon, with whatever came meanwhile.
                let first = if held.is_empty() {
                    rx.recv().await.map(Some)
                } else {
                    match tokio::time::timeout(HOLD_RETRY, rx.recv()).await {
                        Ok(m) => m.map(Some),
                        Err(_) => Some(None),
                    }
                };
                match first {
                    Some(Some(m)) => queue.push(m),
                    Some(None) => {}
                    None => {
                        info!("ingest stopped: broker link closed");
                        return;
                    }
                }
            }
            // Take in what is waiting, then one transaction's worth, fairly.
            while queue.bytes() < INTAKE_BYTES {
                match rx.try_recv() {
                    Ok(m) => queue.push(m),
                    Err(_) => break,
                }
            }
            queue.take(TX_MESSAGES, TX_BYTES, &mut buf);
            let started = std::time::Instant::now();
            add(&self.stats.messages, buf.len() as u64);
            // Held batches first: they came before the new ones.
            let mut since = Vec::with_capacity(held.len() + buf.len());
            let mut verified = Vec::with_capacity(held.len() + buf.len());
            for (t, device, msg) in held.drain(..) {
                since.push(Some(t));
                verified.push((device, msg));
            }
            for msg in buf.drain(..) {
                if let Some(v) = self.verify(msg).await {
                    since.push(None);
                    verified.push(v);
                }
            }
            if !verified.is_empty() {
                let messages = verified.len();
                let applying = std::time::Instant::now();
                self.apply(verified, &since, &mut marks, &mut held).await;
                self.stats.metrics.ingest(started.elapsed());
                debug!(
                    messages,
                    ms = applying.elapsed().as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    "applied"
                );
            }
        }
    }

    /// Applies verified messages: all in one transaction if the database
    /// takes them; otherwise device by device, and a device that still fails
    /// row by row. Acks and events follow each commit.
    /// `since[i]` is when message `i` was first held (`None`: new); a
    /// batch the store holds again goes back into `held`.
    async fn apply(
        &self,
        verified: Vec<(DeviceId, Uplink)>,
        since: &[Option<std::time::Instant>],
        marks: &mut HashMap<DeviceId, (u64, Watermark)>,
        held: &mut Vec<Held>,
    ) {
        let may_hold = |i: usize| since.get(i).copied().flatten().is_none_or(|t| t.elapsed() < HOLD_FOR);
        let first = match self.store.apply_uplink_holding(&verified, marks, Apply::Together, None, &may_hold).await {
            Ok(applied) => {
                for &i in &applied.held {
                    let (device, msg) = &verified[i];
                    let t = since.get(i).copied().flatten().unwrap_or_else(std::time::Instant::now);
                    held.push((t, device.clone(), msg.clone()));
                }
                return self.committed(applied, marks).await;
            }
            Err(e) => e,
        };
        let mut by_device: BTreeMap<&DeviceId, Vec<(DeviceId, Uplink)>> = BTreeMap::new();
        for (device, msg) in &verified {
            by_device.entry(device).or_default().push((device.clone(), msg.clone()));
        }
        warn!(
            messages = verified.len(),
            devices = by_device.len(),
            error = %first,
            "a transaction failed; applying device by device"
        );
        for (device, msgs) in by_device {
            let e = match self.store.apply_uplink(&msgs, marks, Apply::Together, None).await {
                Ok(applied) => {
                    self.committed(applied, marks).await;
                    continue;
                }
                Err(e) => e,
            };
            if !e.is_row_error() {
                bump(&self.stats.store_errors);
                // No ack: the edge keeps the findings and resends them.
                error!(device = %device, error = %e, messages = msgs.len(), "storing failed; not acknowledged");
                continue;
            }
            match self.store.apply_uplink(&msgs, marks, Apply::Isolated, None).await {
                Ok(applied) => self.committed(applied, marks).await,
                Err(e) => {
                    bump(&self.stats.store_errors);
                    error!(device = %device, error = %e, messages = msgs.len(), "storing failed; not acknowledged");
                }
            }
        }
    }

    /// After a commit: counts, the watermark cache, acks, events.
    async fn committed(&self, applied: Applied, marks: &mut HashMap<DeviceId, (u64, Watermark)>) {
        let Applied { acks, marks: moved, counts: c, events, held: _ } = applied;
        let s = &self.stats;
        add(&s.findings_stored, c.findings_stored);
        add(&s.findings_duplicate, c.findings_duplicate);
        add(&s.findings_updated, c.findings_updated);
        add(&s.findings_dropped_by_edge, c.findings_dropped_by_edge);
        add(&s.findings_unstorable, c.findings_unstorable);
        add(&s.messages_unstorable, c.messages_unstorable);
        add(&s.batches_duplicate, c.batches_duplicate);
        add(&s.batches_gap, c.batches_gap);
        add(&s.batches_held, c.batches_held);
        add(&s.rejected_malformed, c.batches_invalid);
        add(&s.heartbeats, c.heartbeats);
        add(&s.downlink_refused_by_edge, c.downlink_refused_by_edge);
        if marks.len() > WATERMARK_CACHE {
            marks.clear();
        }
        marks.extend(moved);
        for e in &events {
            if let crate::events::Event::Findings { findings, .. } = e {
                s.metrics.findings(findings);
            }
        }
        self.send_acks(acks).await;
        self.bus.publish(events);
    }

    /// Parses the topic, finds the device's key, opens and decodes the body.
    async fn verify(&self, msg: Inbound) -> Option<(DeviceId, Uplink)> {
        let topic = match Topic::parse(&msg.topic) {
            Ok(t) => t,
            Err(e) => {
                bump(&self.stats.rejected_topic);
                warn!(error = %e, "dropped message on a foreign topic");
                return None;
            }
        };
        if !topic.channel.is_uplink() {
            return None;
        }
        let key = match self.keys.get(&topic.device).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                bump(&self.stats.rejected_unknown_device);
                warn!(device = %topic.device, "dropped message from a device that is not enrolled");
                return None;
            }
            Err(e) => {
                bump(&self.stats.store_errors);
                error!(error = %e, device = %topic.device, "looking up the device key failed");
                return None;
            }
        };
        match decode(&topic, &msg.payload, &key) {
            Ok(Some(v)) => Some((topic.device, v)),
            // A downlink channel: our own acks, configs and commands.
            Ok(None) => None,
            Err(e) => {
                let counter = match &e {
                    DecodeError::BadTag { .. } => &self.stats.rejected_bad_tag,
                    DecodeError::DeviceMismatch { .. } => &self.stats.rejected_device_mismatch,
                    DecodeError::UnknownVersion { .. } => &self.stats.rejected_version,
                    _ => &self.stats.rejected_malformed,
                };
                bump(counter);
                warn!(topic = %msg.topic, bytes = msg.payload.len(), error = %e, "dropped invalid envelope");
                None
            }
        }
    }

    async fn send_acks(&self, acks: BTreeMap<DeviceId, AckOut>) {
        for (device, AckOut { epoch, upto, gap }) in acks {
            let Ok(Some(key)) = self.keys.get(&device).await else { continue };
            let seq = self.down_seq.fetch_add(1, Ordering::Relaxed);
            let payload = match Envelope::sealed(device.clone(), seq, now_ms() as u64, &Ack { epoch, upto, gap }, &key)
            {
                Ok(p) => p,
                Err(e) => {
                    bump(&self.stats.acks_dropped);
                    error!(device = %device, error = %e, "ack not sealed");
                    continue;
                }
            };
            match self.publisher.publish(Topic::new(device.clone(), Channel::Ack).to_string(), payload) {
                Ok(()) => {
                    bump(&self.stats.acks_sent);
                    debug!(device = %device, epoch, upto, ?gap, "ack sent");
                }
                Err(e) => {
                    // The findings are stored; the edge resends after its ack
                    // timeout and the hub acks the duplicate.
                    bump(&self.stats.acks_dropped);
                    warn!(device = %device, epoch, upto, error = %e, "ack not sent; the edge will resend and be acked then");
                }
            }
        }
    }
}

/// Opens the envelope and decodes the body its channel carries; `None` for
/// a downlink channel, which ingest does not consume.
fn decode(topic: &Topic, payload: &[u8], key: &Secret) -> Result<Option<Uplink>, DecodeError> {
    if !topic.channel.is_uplink() {
        return Ok(None);
    }
    let env = Envelope::open(topic, payload, key)?;
    Ok(Some(match topic.channel {
        Channel::Status => Uplink::Status(env.body()?),
        Channel::Heartbeat => Uplink::Heartbeat(env.body()?),
        Channel::Finding => Uplink::Findings(env.body()?),
        Channel::Result => Uplink::Result(env.body()?),
        Channel::Ack | Channel::Config | Channel::Cmd => return Ok(None),
    }))
}

/// Marks devices stale that missed three of their heartbeats and offline
/// those silent for `timeout`, every few seconds, and publishes each going
/// offline on `bus` (stale is recorded in the timeline, not an event: the
/// device has not been given up on). Heartbeats older than `heartbeats_ms`
/// are deleted as it goes.
pub async fn presence(store: Store, bus: Bus, timeout: Duration, heartbeats_ms: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(5).min(timeout));
    loop {
        tick.tick().await;
        let now = store::now_ms();
        if let Err(e) = store.prune_heartbeats(now - heartbeats_ms).await {
            error!(error = %e, "pruning old heartbeats failed");
        }
        match store.mark_stale(now).await {
            Ok(ids) => {
                for id in ids {
                    info!(device = %id, status = "stale", "device status (three heartbeats missed)");
                }
            }
            Err(e) => error!(error = %e, "presence sweep failed"),
        }
        match store.mark_silent_offline(now - timeout.as_millis() as i64, now).await {
            Ok(ids) => {
                for id in ids {
                    info!(device = %id, status = "offline", silent_s = timeout.as_secs(), "device status (silent)");
                    if let Ok(device) = DeviceId::new(id) {
                        bus.publish([Event::Presence { device, online: false }]);
                    }
                }
            }
            Err(e) => error!(error = %e, "presence sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opmas_proto::msg::{Finding, FindingBatch, Severity, Stage, Subject};

    fn batch(ip_of: impl Fn(u64) -> &'static str, seqs: std::ops::RangeInclusive<u64>) -> FindingBatch {
        let findings = seqs
            .clone()
            .map(|seq| Finding {
                seq,
                agent: "security".into(),
                kind: "ssh.bruteforce".into(),
                severity: Severity::HIGH,
                subject: Subject { src_ip: Some(ip_of(seq).parse().unwrap()), ..Default::default() },
                count: 5,
                first_ms: 1000 + seq,
                last_ms: 2000,
                summary: "s".into(),
                evidence: vec![],
                stage: Stage::New,
            })
            .collect();
        FindingBatch { epoch: 7, floor: *seqs.start(), round: 0, findings }
    }

    /// Ingest as the hub wires it, on a real database and a real channel
    /// standing where the broker's outgoing queue is.
    async fn ingest() -> (Ingest, mpsc::Receiver<crate::mqtt::Outbound>, tempfile::TempDir) {
        let (store, dir) = crate::store::test_store().await;
        for d in ["gw-bad", "gw-good"] {
            store.insert_device(d, d, &"ab".repeat(32), 1).await.unwrap();
        }
        let (tx, rx) = mpsc::channel(16);
        let ingest = Ingest {
            keys: Keys::new(store.clone()),
            store,
            publisher: Publisher::new(tx),
            stats: Arc::default(),
            bus: Bus::default(),
            down_seq: Arc::default(),
        };
        (ingest, rx, dir)
    }

    #[tokio::test]
    async fn a_refused_row_is_isolated_and_both_devices_are_acked() {
        let (ingest, mut acks, _dir) = ingest().await;
        crate::store::refuse_findings_from(&ingest.store, "198.51.100.66").await;
        let mut events = ingest.bus.subscribe();
        let id = |d: &str| DeviceId::new(d).unwrap();
        let msgs = vec![
            (id("gw-bad"), Uplink::Findings(batch(|s| if s == 2 { "198.51.100.66" } else { "203.0.113.1" }, 1..=3))),
            (id("gw-good"), Uplink::Findings(batch(|_| "203.0.113.2", 1..=2))),
        ];
        let mut marks = HashMap::new();
        ingest.apply(msgs, &[], &mut marks, &mut Vec::new()).await;
        let s = ingest.stats.snapshot();
        assert_eq!((s.findings_stored, s.findings_unstorable, s.store_errors), (4, 1, 0));
        assert_eq!((s.acks_sent, s.acks_dropped), (2, 0), "each device acked once");
        let topics: Vec<String> = [acks.recv().await.unwrap(), acks.recv().await.unwrap()].map(|m| m.topic).into();
        assert!(
            topics.contains(&"opmas/v1/gw-bad/ack".to_string()) && topics.contains(&"opmas/v1/gw-good/ack".to_string())
        );
        assert_eq!(marks[&id("gw-bad")].1.upto, 3, "the watermark moved past the refused row");
        // Events only for what was stored.
        let mut stored = 0;
        while let Ok(e) = events.try_recv() {
            if let Event::Findings { findings, .. } = &*e {
                stored += findings.len();
            }
        }
        assert_eq!(stored, 4);
    }
}
