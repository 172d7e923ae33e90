//! Ingest: turns what devices publish into database rows and acks.
//!
//! One loop drains the inbound channel in batches, verifies every envelope,
//! applies the whole batch in one transaction and, only after it commits,
//! publishes an ack per (device, epoch) for the highest finding sequence
//! stored. Because the edge publishes findings in sequence order and resends
//! from its oldest unacked finding after a reconnect or an ack timeout, "the
//! highest sequence of a committed batch" means "everything up to it".
//!
//! Anything that fails verification is dropped, logged with its reason and
//! counted; it never stops the loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opmas_proto::msg::{Ack, CommandResult, FindingBatch, Heartbeat, Status};
use opmas_proto::{Channel, DecodeError, DeviceId, Envelope, Secret, Topic};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::broker::{Inbound, Publisher};
use crate::keys::Keys;
use crate::stats::{add, bump, Stats};
use crate::store::{self, devices, findings, now_ms, StatusChange, Store, StoreError};

/// Most messages applied in one transaction.
const BATCH: usize = 512;

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

impl Ingest {
    /// Runs until the inbound channel closes.
    pub async fn run(self, mut rx: mpsc::Receiver<Inbound>) {
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            buf.clear();
            if rx.recv_many(&mut buf, BATCH).await == 0 {
                info!("ingest stopped: broker link closed");
                return;
            }
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
            match self.apply(&verified).await {
                Ok(acks) => self.send_acks(acks).await,
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

    /// Applies verified messages in one transaction; returns the acks to send.
    async fn apply(&self, batch: &[(DeviceId, Verified)]) -> Result<BTreeMap<(DeviceId, u64), u64>, StoreError> {
        let now = now_ms();
        let mut acks = BTreeMap::new();
        let mut tx = self.store.pool().begin().await?;
        for (device, msg) in batch {
            let id = device.as_str();
            match msg {
                Verified::Status(status) => {
                    if devices::set_status(&mut tx, id, status.as_str(), now).await? == StatusChange::Changed {
                        info!(device = id, status = status.as_str(), "device status");
                    }
                    if *status == Status::Online {
                        devices::touch(&mut tx, id, now).await?;
                    }
                }
                Verified::Heartbeat(hb) => {
                    touch(&mut tx, id, now).await?;
                    let json = serde_json::to_string(hb).unwrap_or_default();
                    devices::record_heartbeat(&mut tx, id, hb.epoch, &json).await?;
                    bump(&self.stats.heartbeats);
                }
                Verified::Findings(b) => {
                    touch(&mut tx, id, now).await?;
                    let n = findings::insert_batch(&mut tx, id, b.epoch, &b.findings, now).await?;
                    add(&self.stats.findings_stored, n.stored);
                    add(&self.stats.findings_duplicate, n.duplicates);
                    add(&self.stats.findings_updated, n.updated);
                    if n.stored + n.updated > 0 {
                        info!(
                            device = id,
                            stored = n.stored,
                            updated = n.updated,
                            duplicates = n.duplicates,
                            "findings stored"
                        );
                    }
                    if let Some(max) = b.findings.iter().map(|f| f.seq).max() {
                        let e = acks.entry((device.clone(), b.epoch)).or_insert(0);
                        *e = max.max(*e);
                    }
                }
                Verified::Result(r) => {
                    touch(&mut tx, id, now).await?;
                    info!(device = id, command = r.id, ok = r.ok, message = %r.message, "command result");
                }
            }
        }
        tx.commit().await?;
        Ok(acks)
    }

    async fn send_acks(&self, acks: BTreeMap<(DeviceId, u64), u64>) {
        for ((device, epoch), upto) in acks {
            let Ok(Some(key)) = self.keys.get(&device).await else { continue };
            let payload = self.seal(&device, Channel::Ack, &Ack { epoch, upto }, &key);
            if self.publisher.publish(Topic::new(device.clone(), Channel::Ack).to_string(), payload) {
                bump(&self.stats.acks_sent);
                debug!(device = %device, epoch, upto, "ack sent");
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
