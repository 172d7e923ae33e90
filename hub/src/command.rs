//! Commands and configuration down to devices.
//!
//! Configuration: each device's effective configuration
//! (`Store::effective_config`) is sealed and published on
//! `opmas/v1/{device}/config` when it changes, and again whenever the
//! device's heartbeat reports another version than its effective one (at
//! most every [`CONFIG_RESEND`]), so delivery never rests on the broker
//! keeping a retained message (the embedded one keeps them in memory only).
//! A device whose effective version is 0 (nothing configured at the hub)
//! runs its own UCI configuration and is sent nothing.
//!
//! Commands: stored first (the database is the record),
//! then sealed under the device's secret and published on
//! `opmas/v1/{device}/cmd`. A pending command is published again, in id
//! order, whenever its device connects (it announces itself online on every
//! new connection; its MQTT session is clean, so nothing waits for it in the
//! broker, and a restarted edge may never have been seen to go); the edge runs each id at
//! most once, so a second send is harmless. Unanswered commands expire at
//! their deadline. Answers arrive on the uplink and are recorded by
//! `Store::apply_uplink`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opmas_proto::msg::{Action, Command};
use opmas_proto::{Channel, DeviceId, Envelope, Topic};
use tracing::{info, warn};

use crate::act::ssh::SshTransport;
use crate::events::{Bus, Event};
use crate::keys::Keys;
use crate::mqtt::Publisher;
use crate::stats::{bump, Stats};
use crate::store::commands::CommandRow;
use crate::store::config::Effective;
use crate::store::{now_ms, Store, StoreError};

/// How long a command may wait for its device, unless asked otherwise.
pub const DEFAULT_TTL_MS: i64 = 5 * 60 * 1000;
/// Least time between two sends of a configuration to one device that
/// reports another version.
pub const CONFIG_RESEND: Duration = Duration::from_secs(5);

/// Sends commands; cheap to clone.
#[derive(Clone)]
pub struct Commander {
    pub store: Store,
    pub keys: Keys,
    pub publisher: Publisher,
    pub stats: Arc<Stats>,
    /// Envelope sequence numbers of everything the hub sends down (shared
    /// with ingest's acks).
    pub down_seq: Arc<AtomicU64>,
    /// Runs the commands of routers reached over SSH instead.
    pub ssh: Option<SshTransport>,
}

impl Commander {
    /// Stores `action` for `device` as a pending command by `by` and
    /// publishes it. Not reaching the device now is not an error: the
    /// command waits (pending) for it to come back, until it expires.
    pub async fn send(
        &self,
        device: &DeviceId,
        action: Action,
        by: &str,
        ttl_ms: i64,
    ) -> Result<CommandRow, StoreError> {
        let row = self.store.insert_command(device.as_str(), &action, by, now_ms(), ttl_ms).await?;
        info!(device = %device, command = row.id, action = ?action, by, "command");
        self.publish(device, &row).await?;
        Ok(self.store.command(row.id).await?.unwrap_or(row))
    }

    /// Publishes `row` to its device (sealed now), and notes the send.
    pub(crate) async fn publish(&self, device: &DeviceId, row: &CommandRow) -> Result<(), StoreError> {
        if let Some(ssh) = &self.ssh {
            if ssh.handles(device.as_str()).await {
                ssh.wake();
                return Ok(());
            }
        }
        let Some(key) = self.keys.get(device).await? else { return Ok(()) };
        let cmd = Command { id: row.id as u64, expires_ms: row.expires_ms as u64, action: row.action()? };
        let seq = self.down_seq.fetch_add(1, Ordering::Relaxed);
        let payload = match Envelope::sealed(device.clone(), seq, now_ms() as u64, &cmd, &key) {
            Ok(p) => p,
            Err(e) => {
                warn!(device = %device, command = row.id, error = %e, "command not sealed");
                return Ok(());
            }
        };
        match self.publisher.publish(Topic::new(device.clone(), Channel::Cmd).to_string(), payload) {
            Ok(()) => {
                bump(&self.stats.commands_sent);
                self.store.command_sent(row.id, now_ms()).await
            }
            Err(e) => {
                bump(&self.stats.commands_unsent);
                warn!(device = %device, command = row.id, error = %e, "command not published now; sent when the device is next online");
                Ok(())
            }
        }
    }

    /// Publishes `device`'s effective configuration, unless it is version 0;
    /// returns the version sent.
    pub async fn push_config(&self, device: &DeviceId) -> Result<Option<i64>, StoreError> {
        let effective = self.store.effective_config(device.as_str()).await?;
        self.send_config(device, &effective).await
    }

    /// Seals and publishes `effective` for `device`; its version if sent.
    async fn send_config(&self, device: &DeviceId, effective: &Effective) -> Result<Option<i64>, StoreError> {
        if effective.version == 0 {
            return Ok(None);
        }
        let Some(key) = self.keys.get(device).await? else { return Ok(None) };
        let seq = self.down_seq.fetch_add(1, Ordering::Relaxed);
        let payload = match Envelope::sealed(device.clone(), seq, now_ms() as u64, &effective.doc(), &key) {
            Ok(p) => p,
            Err(e) => {
                warn!(device = %device, error = %e, "configuration not sealed");
                return Ok(None);
            }
        };
        match self.publisher.publish(Topic::new(device.clone(), Channel::Config).to_string(), payload) {
            Ok(()) => {
                bump(&self.stats.configs_sent);
                Ok(Some(effective.version))
            }
            Err(e) => {
                warn!(device = %device, error = %e, "configuration not published now; sent again at its next heartbeat");
                Ok(None)
            }
        }
    }

    /// Publishes the effective configuration of every device (after a
    /// fleet-wide change); returns how many were sent.
    pub async fn push_config_all(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for (d, effective) in self.store.effective_configs().await? {
            let Ok(id) = DeviceId::new(&d) else { continue };
            n += usize::from(self.send_config(&id, &effective).await?.is_some());
        }
        Ok(n)
    }

    /// Sends `device`'s pending commands again, oldest first.
    pub async fn resend(&self, device: &DeviceId) -> Result<usize, StoreError> {
        let pending = self.store.pending_commands(device.as_str(), now_ms()).await?;
        for row in &pending {
            self.publish(device, row).await?;
        }
        Ok(pending.len())
    }

    /// Runs until the bus closes: resends pending commands to each device
    /// that connects, and expires overdue ones every `sweep`.
    pub async fn run(self, bus: Bus, sweep: Duration) {
        let mut events = bus.subscribe();
        let mut tick = tokio::time::interval(sweep);
        // When each device was last sent its configuration for being behind.
        let mut resent: std::collections::HashMap<DeviceId, tokio::time::Instant> = Default::default();
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) => match &*e {
                        Event::Connected { device } => match self.resend(device).await {
                            Ok(0) => {}
                            Ok(n) => info!(device = %device, commands = n, "pending commands sent again"),
                            Err(e) => warn!(device = %device, error = %e, "pending commands not sent again"),
                        },
                        Event::Heartbeat { device, heartbeat } => {
                            if resent.get(device).is_some_and(|t| t.elapsed() < CONFIG_RESEND) {
                                continue;
                            }
                            let want = match self.store.effective_version(device.as_str()).await {
                                Ok(v) => v,
                                Err(e) => {
                                    warn!(device = %device, error = %e, "effective configuration unreadable");
                                    continue;
                                }
                            };
                            let refused = heartbeat.config_error.as_deref().is_some_and(|e| e.starts_with(&format!("version {want}:")));
                            if want != 0 && heartbeat.config_version as i64 != want && !refused {
                                info!(device = %device, running = heartbeat.config_version, want, "configuration behind; sending it");
                                resent.insert(device.clone(), tokio::time::Instant::now());
                                if let Err(e) = self.push_config(device).await {
                                    warn!(device = %device, error = %e, "configuration not sent");
                                }
                            }
                        }
                        _ => {}
                    },
                    // Missed events: the device's next connection resends.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => match self.store.expire_commands(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => info!(commands = n, "commands expired unanswered"),
                    Err(e) => warn!(error = %e, "expiring commands failed"),
                },
            }
        }
    }
}

/// A commander for tests, publishing into a channel nobody reads.
#[cfg(test)]
pub fn test_commander(store: &Store) -> Commander {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::mem::forget(rx);
    Commander {
        store: store.clone(),
        keys: Keys::new(store.clone()),
        publisher: Publisher::new(tx),
        stats: Arc::default(),
        down_seq: Arc::new(AtomicU64::new(1)),
        ssh: None,
    }
}
