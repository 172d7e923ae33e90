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
//! Anything that fails verification is dropped, logged with its reason and
//! counted; it never stops the loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opmas_proto::msg::{Ack, CommandResult, Finding, FindingBatch, Heartbeat, Status};
use opmas_proto::{Channel, DecodeError, DeviceId, Envelope, Secret, Topic};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

mod fair;

use crate::broker::{Inbound, Publisher};
use crate::keys::Keys;
use crate::stats::{add, bump, Stats};
use crate::store::{self, delivery, devices, findings, now_ms, StatusChange, Store, StoreError};
use crate::watermark::{Verdict, Watermark};
use fair::FairQueue;

/// Most messages applied in one transaction.
pub const TX_MESSAGES: usize = 1024;
/// Most payload bytes applied in one transaction: about 5,000 findings. A
/// commit that takes long holds every device's ack back, so transactions are
/// kept to a few tens of milliseconds even when the queue is deep.
pub const TX_BYTES: usize = 2 << 20;
/// Most payload bytes moved out of the broker's channel into the per-device
/// queues. Past this they wait in the channel, which pushes back on the
/// broker; every edge's send window (128 KiB) keeps a fleet's share small.
const INTAKE_BYTES: usize = 16 << 20;
/// Watermarks kept in memory (one per device, its latest epoch); past this
/// the cache is cleared and refilled from the database as devices speak.
const WATERMARK_CACHE: usize = 100_000;

/// The ingest loop's dependencies.
pub struct Ingest {
    pub store: Store,
    pub keys: Keys,
    pub publisher: Publisher,
    pub stats: Arc<Stats>,
    /// Sequence counter of the hub's downlink envelopes. Seeded from the
    /// clock so it keeps increasing across hub restarts.
    pub down_seq: Arc<AtomicU64>,
}

/// A verified message, ready to apply.
enum Verified {
    Status(Status),
    Heartbeat(Heartbeat),
    Findings(FindingBatch),
    Result(CommandResult),
}

/// The ack to send a device after commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AckOut {
    epoch: u64,
    upto: u64,
    gap: Option<u32>,
}

impl Ingest {
    /// Runs until the inbound channel closes.
    pub async fn run(self, mut rx: mpsc::Receiver<Inbound>) {
        let mut buf: Vec<Inbound> = Vec::with_capacity(TX_MESSAGES);
        let mut queue = FairQueue::default();
        let mut marks: HashMap<DeviceId, (u64, Watermark)> = HashMap::new();
        loop {
            buf.clear();
            if queue.is_empty() {
                let Some(first) = rx.recv().await else {
                    info!("ingest stopped: broker link closed");
                    return;
                };
                queue.push(first);
            }
            // Take in what is waiting, then one transaction's worth, fairly.
            while queue.bytes() < INTAKE_BYTES {
                match rx.try_recv() {
                    Ok(m) => queue.push(m),
                    Err(_) => break,
                }
            }
            queue.take(TX_MESSAGES, TX_BYTES, &mut buf);
            add(&self.stats.messages, buf.len() as u64);
            let mut verified = Vec::with_capacity(buf.len());
            for msg in buf.drain(..) {
                if let Some(v) = self.verify(msg).await {
                    verified.push(v);
                }
            }
            if verified.is_empty() {
                continue;
            }
            match self.apply(&verified, &marks).await {
                Ok((acks, moved)) => {
                    if marks.len() > WATERMARK_CACHE {
                        marks.clear();
                    }
                    marks.extend(moved);
                    self.send_acks(acks).await;
                }
                Err(e) => {
                    bump(&self.stats.store_errors);
                    // No ack: the edge keeps the findings and resends them.
                    error!(error = %e, messages = verified.len(), "storing a batch failed; not acknowledged");
                }
            }
        }
    }

    /// Parses the topic, finds the device's key, opens and decodes the body.
    async fn verify(&self, msg: Inbound) -> Option<(DeviceId, Verified)> {
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

    /// Applies verified messages in one transaction. Returns the acks to
    /// send and the watermarks that moved, for the caller to keep once the
    /// transaction committed (`marks` is not changed, so a failed commit
    /// leaves it as the database is).
    async fn apply(
        &self,
        batch: &[(DeviceId, Verified)],
        marks: &HashMap<DeviceId, (u64, Watermark)>,
    ) -> Result<(BTreeMap<DeviceId, AckOut>, HashMap<DeviceId, (u64, Watermark)>), StoreError> {
        let now = now_ms();
        let mut acks: BTreeMap<DeviceId, AckOut> = BTreeMap::new();
        // Watermarks per device and epoch as this transaction found them
        // and as it leaves them.
        let mut watermarks: BTreeMap<(&DeviceId, u64), (Watermark, Watermark)> = BTreeMap::new();
        // The findings each device's batches add, in order: one insert per
        // device and epoch however many batches it sent (a burst's first
        // batches carry one finding each).
        let mut to_store: BTreeMap<(&DeviceId, u64), Vec<&Finding>> = BTreeMap::new();
        // Devices heard from in this transaction: touched once each, at the end.
        let mut heard: BTreeMap<&str, bool> = BTreeMap::new();
        let mut tx = self.store.begin_write().await?;
        for (device, msg) in batch {
            let id = device.as_str();
            match msg {
                Verified::Status(status) => {
                    if devices::set_status(&mut tx, id, status.as_str(), now).await? == StatusChange::Changed {
                        info!(device = id, status = status.as_str(), "device status");
                    }
                    // An `offline` status is the device's word, not a sign of life.
                    let alive = *status == Status::Online;
                    let e = heard.entry(id).or_insert(alive);
                    *e = alive;
                }
                Verified::Heartbeat(hb) => {
                    heard.insert(id, true);
                    let json = serde_json::to_string(hb).unwrap_or_default();
                    devices::record_heartbeat(&mut tx, id, hb.epoch, &json).await?;
                    bump(&self.stats.heartbeats);
                }
                Verified::Findings(b) => {
                    heard.insert(id, true);
                    let key = (device, b.epoch);
                    let current = match watermarks.get(&key) {
                        Some(&(_, w)) => w,
                        None => {
                            let w = match marks.get(device) {
                                Some(&(epoch, w)) if epoch == b.epoch => w,
                                _ => delivery::load(&mut tx, id, b.epoch).await?,
                            };
                            watermarks.insert(key, (w, w));
                            w
                        }
                    };
                    let (verdict, next) = match current.judge(b.floor, b.findings.iter().map(|f| f.seq)) {
                        Ok(v) => v,
                        Err(e) => {
                            bump(&self.stats.rejected_malformed);
                            warn!(device = id, epoch = b.epoch, error = %e, "dropped invalid finding batch");
                            continue;
                        }
                    };
                    if next.dropped > current.dropped {
                        add(&self.stats.findings_dropped_by_edge, next.dropped - current.dropped);
                        warn!(
                            device = id,
                            epoch = b.epoch,
                            dropped = next.dropped - current.dropped,
                            "the edge dropped findings from its full spool before sending them"
                        );
                    }
                    let mut gap = None;
                    match verdict {
                        Verdict::Store { skip } => {
                            add(&self.stats.findings_duplicate, skip as u64);
                            to_store.entry(key).or_default().extend(&b.findings[skip..]);
                        }
                        Verdict::Duplicate => {
                            bump(&self.stats.batches_duplicate);
                            add(&self.stats.findings_duplicate, b.findings.len() as u64);
                        }
                        Verdict::Gap => {
                            bump(&self.stats.batches_gap);
                            warn!(
                                device = id,
                                epoch = b.epoch,
                                acked_upto = next.upto,
                                batch_starts = b.findings.first().map_or(0, |f| f.seq),
                                "finding batch after a gap not stored; asking the edge to resend"
                            );
                            gap = Some(b.round);
                        }
                    }
                    if let Some(w) = watermarks.get_mut(&key) {
                        w.1 = next;
                    }
                    let ack = acks.entry(device.clone()).or_insert(AckOut { epoch: b.epoch, upto: 0, gap: None });
                    if ack.epoch != b.epoch {
                        *ack = AckOut { epoch: b.epoch, upto: 0, gap: None };
                    }
                    ack.upto = next.upto;
                    ack.gap = gap.or(ack.gap);
                }
                Verified::Result(r) => {
                    heard.insert(id, true);
                    info!(device = id, command = r.id, ok = r.ok, message = %r.message, "command result");
                }
            }
        }
        for ((device, epoch), found) in &to_store {
            let n = findings::insert_batch(&mut tx, device.as_str(), *epoch, found, now).await?;
            add(&self.stats.findings_stored, n.stored);
            add(&self.stats.findings_duplicate, n.duplicates);
            add(&self.stats.findings_updated, n.updated);
            debug!(device = %device, stored = n.stored, updated = n.updated, "findings stored");
        }
        let mut moved: HashMap<DeviceId, (u64, Watermark)> = HashMap::new();
        for (&(device, epoch), &(was, now_w)) in &watermarks {
            if now_w != was {
                delivery::save(&mut tx, device.as_str(), epoch, now_w, now).await?;
            }
            // The epoch the device's last batch belongs to is the one cached.
            if acks.get(device).is_some_and(|a| a.epoch == epoch) {
                moved.insert(device.clone(), (epoch, now_w));
            }
        }
        for (id, alive) in heard {
            if alive {
                touch(&mut tx, id, now).await?;
            }
        }
        tx.commit().await?;
        Ok((acks, moved))
    }

    async fn send_acks(&self, acks: BTreeMap<DeviceId, AckOut>) {
        for (device, AckOut { epoch, upto, gap }) in acks {
            let Ok(Some(key)) = self.keys.get(&device).await else { continue };
            let payload = self.seal(&device, Channel::Ack, &Ack { epoch, upto, gap }, &key);
            if self.publisher.publish(Topic::new(device.clone(), Channel::Ack).to_string(), payload) {
                bump(&self.stats.acks_sent);
                debug!(device = %device, epoch, upto, ?gap, "ack sent");
            }
        }
    }

    fn seal<T: serde::Serialize>(&self, device: &DeviceId, channel: Channel, body: &T, key: &Secret) -> Vec<u8> {
        let seq = self.down_seq.fetch_add(1, Ordering::Relaxed);
        Envelope::new(device.clone(), seq, now_ms() as u64, body).seal(channel, key)
    }
}

async fn touch(conn: &mut sqlx::SqliteConnection, id: &str, now: i64) -> Result<(), StoreError> {
    if devices::touch(conn, id, now).await? == StatusChange::Changed {
        info!(device = id, status = "online", "device status");
    }
    Ok(())
}

/// Opens the envelope and decodes the body its channel carries; `None` for
/// a downlink channel, which ingest does not consume.
fn decode(topic: &Topic, payload: &[u8], key: &Secret) -> Result<Option<Verified>, DecodeError> {
    if !topic.channel.is_uplink() {
        return Ok(None);
    }
    let env = Envelope::open(topic, payload, key)?;
    Ok(Some(match topic.channel {
        Channel::Status => Verified::Status(env.body()?),
        Channel::Heartbeat => Verified::Heartbeat(env.body()?),
        Channel::Finding => Verified::Findings(env.body()?),
        Channel::Result => Verified::Result(env.body()?),
        Channel::Ack | Channel::Config | Channel::Cmd => return Ok(None),
    }))
}

/// Marks devices offline that have been silent for `timeout`, every few seconds.
pub async fn presence(store: Store, timeout: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(5).min(timeout));
    loop {
        tick.tick().await;
        let now = store::now_ms();
        match store.mark_silent_offline(now - timeout.as_millis() as i64, now).await {
            Ok(ids) => {
                for id in ids {
                    info!(device = %id, status = "offline", silent_s = timeout.as_secs(), "device status (silent)");
                }
            }
            Err(e) => error!(error = %e, "presence sweep failed"),
        }
    }
}
