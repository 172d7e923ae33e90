//! The MQTT connection to the hub.
//!
//! A task owns rumqttc's event loop and turns what happens into
//! [`UplinkEvent`]s for the main loop; the main loop publishes through
//! [`Uplink`]. Reconnects wait with capped exponential backoff and full
//! jitter, so a fleet that lost its hub does not reconnect in lockstep.
//!
//! The Last Will is the `offline` status, retained: the broker publishes it
//! when the connection dies without a clean goodbye.

use std::time::Duration;

use opmas_proto::msg::Status;
use opmas_proto::{Channel, DeviceId, Envelope, Secret, Topic};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::HubConfig;

/// Requests that may wait in rumqttc's queue. Findings are re-sent from the
/// spool, so a small queue loses nothing.
const REQUEST_QUEUE: usize = 64;

/// What the connection reports to the main loop.
#[derive(Debug)]
pub enum UplinkEvent {
    Connected,
    Disconnected(String),
    /// A message on one of our downlink topics.
    Message {
        topic: String,
        payload: Vec<u8>,
    },
}

/// Why a publish did not go out.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("not connected")]
    NotConnected,
    #[error("MQTT request queue full")]
    Busy(#[source] rumqttc::ClientError),
}

/// Publishing side of the connection.
pub struct Uplink {
    client: AsyncClient,
    device: DeviceId,
    secret: Secret,
    /// Envelope sequence for this run.
    seq: u64,
    connected: bool,
}

/// Wall clock in unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Uplink {
    /// Configures the client and spawns its event loop on the current runtime.
    pub fn start(cfg: &HubConfig, events: mpsc::Sender<UplinkEvent>) -> Uplink {
        let id = cfg.device_id.as_str();
        let mut opts = MqttOptions::new(id, cfg.host.clone(), cfg.port);
        opts.set_credentials(id, cfg.secret.to_hex());
        opts.set_keep_alive(cfg.keepalive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(256 * 1024, 256 * 1024);
        let will =
            Envelope::new(cfg.device_id.clone(), 0, now_ms(), &Status::Offline).seal(Channel::Status, &cfg.secret);
        opts.set_last_will(LastWill::new(topic(&cfg.device_id, Channel::Status), will, QoS::AtLeastOnce, true));
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_QUEUE);
        tokio::spawn(drive(eventloop, events, cfg.backoff_max, format!("{}:{}", cfg.host, cfg.port)));
        Uplink { client, device: cfg.device_id.clone(), secret: cfg.secret.clone(), seq: 0, connected: false }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Called by the main loop on [`UplinkEvent::Connected`]: announces
    /// presence and subscribes to the downlink.
    pub fn on_connected(&mut self) {
        self.connected = true;
        for ch in [Channel::Ack, Channel::Cmd, Channel::Config] {
            if let Err(e) = self.client.try_subscribe(topic(&self.device, ch), QoS::AtLeastOnce) {
                warn!(error = %e, channel = %ch, "subscribing failed");
            }
        }
        if let Err(e) = self.publish(Channel::Status, &Status::Online, true) {
            warn!(error = %e, "announcing online failed");
        }
    }

    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// Seals `body` and queues it at QoS 1.
    pub fn publish<T: Serialize>(&mut self, channel: Channel, body: &T, retain: bool) -> Result<(), UplinkError> {
        if !self.connected {
            return Err(UplinkError::NotConnected);
        }
        self.seq += 1;
        let payload = Envelope::new(self.device.clone(), self.seq, now_ms(), body).seal(channel, &self.secret);
        self.client
            .try_publish(topic(&self.device, channel), QoS::AtLeastOnce, retain, payload)
            .map_err(UplinkError::Busy)
    }

    /// Opens a downlink envelope addressed to us.
    pub fn open(&self, topic: &str, payload: &[u8]) -> Result<(Channel, Envelope), String> {
        let t = Topic::parse(topic).map_err(|e| e.to_string())?;
        if t.device != self.device {
            return Err(format!("message for device {} on our subscription", t.device));
        }
        let env = Envelope::open(&t, payload, &self.secret).map_err(|e| e.to_string())?;
        Ok((t.channel, env))
    }

    /// Publishes the `offline` status and disconnects cleanly.
    pub async fn goodbye(&mut self) {
        if self.connected {
            let _ = self.publish(Channel::Status, &Status::Offline, true);
            // Give the event loop a moment to flush before DISCONNECT.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = self.client.try_disconnect();
        }
    }
}

fn topic(device: &DeviceId, channel: Channel) -> String {
    Topic::new(device.clone(), channel).to_string()
}

/// Polls the event loop forever, reporting connects, disconnects and
/// downlink messages, and sleeping with backoff between failed attempts.
async fn drive(mut eventloop: rumqttc::EventLoop, events: mpsc::Sender<UplinkEvent>, max: Duration, addr: String) {
    let mut backoff = Backoff::new(Duration::from_millis(500), max);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(hub = %addr, code = ?ack.code, "connected to hub");
                backoff.reset();
                if events.send(UplinkEvent::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let msg = UplinkEvent::Message { topic: p.topic, payload: p.payload.to_vec() };
                if events.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(other) => debug!(event = ?other, "mqtt"),
            Err(e) => {
                let wait = backoff.next(jitter());
                // The hub refuses unknown devices and wrong secrets by closing
                // the socket without CONNACK, which shows up here as an I/O
                // error right after connecting.
                warn!(hub = %addr, error = %e, retry_in_ms = wait.as_millis() as u64, "hub connection failed");
                if events.send(UplinkEvent::Disconnected(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A random fraction in [0, 1) from the OS RNG, for jitter.
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

/// Capped exponential backoff with full jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max, attempt: 0 }
    }

    /// The next wait: uniform in [cap/2, cap] where cap doubles per attempt
    /// up to `max`. `r` is a random fraction in [0, 1).
    pub fn next(&mut self, r: f64) -> Duration {
        let cap = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        cap.mul_f64(0.5 + r.clamp(0.0, 1.0) / 2.0)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let waits: Vec<u128> = (0..8).map(|_| b.next(0.999_999).as_millis()).collect();
        assert_eq!(waits, vec![499, 999, 1999, 3999, 7999, 9999, 9999, 9999]);
        assert_eq!(b.next(0.0), Duration::from_secs(5));
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(250));
    }
}
