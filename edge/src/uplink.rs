//! The MQTT connection to the hub.
//!
//! A task owns rumqttc's event loop and turns what happens into
//! [`UplinkEvent`]s for the main loop; the main loop publishes through
//! [`Uplink`]. Reconnects wait with capped exponential backoff and full
//! jitter, so a fleet that lost its hub does not reconnect in lockstep.
//!
//! The Last Will is the `offline` status, retained: the broker publishes it
//! when the connection dies without a clean goodbye.
//!
//! With the `tls` feature, an `mqtts://` hub is reached over rustls with the
//! ring provider ([`tls`]); the rustls configuration is built once, when the
//! configuration file is read.

use std::time::Duration;

use crate::machine::Downlink;
use opmas_proto::msg::{Ack, Command, ConfigDoc, Status};
use opmas_proto::{Body, Channel, DeviceId, Envelope, Secret, Topic};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
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
    #[error(transparent)]
    Encode(#[from] opmas_proto::EncodeError),
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
        match Envelope::sealed(cfg.device_id.clone(), 0, now_ms(), &Status::Offline, &cfg.secret) {
            Ok(will) => {
                opts.set_last_will(LastWill::new(topic(&cfg.device_id, Channel::Status), will, QoS::AtLeastOnce, true));
            }
            // The hub then notices silence instead (presence timeout).
            Err(e) => warn!(error = %e, "no Last Will"),
        };
        let scheme = match &cfg.tls {
            None => "mqtt",
            #[cfg(feature = "tls")]
            Some(tls) => {
                opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
                    tls.client.clone(),
                )));
                "mqtts"
            }
            #[cfg(not(feature = "tls"))]
            Some(tls) => tls.unreachable(),
        };
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_QUEUE);
        let addr = format!("{scheme}://{}:{}", cfg.host, cfg.port);
        tokio::spawn(drive(eventloop, events, cfg.backoff_max, addr, cfg.device_id.clone()));
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
        if let Err(e) = self.publish(&Status::Online, true) {
            warn!(error = %e, "announcing online failed");
        }
    }

    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// Seals `body` and queues it at QoS 1 on its channel.
    pub fn publish<B: Body>(&mut self, body: &B, retain: bool) -> Result<(), UplinkError> {
        if !self.connected {
            return Err(UplinkError::NotConnected);
        }
        self.seq += 1;
        let payload = Envelope::sealed(self.device.clone(), self.seq, now_ms(), body, &self.secret)?;
        self.client
            .try_publish(topic(&self.device, B::CHANNEL), QoS::AtLeastOnce, retain, payload)
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

    /// Opens and decodes a downlink message: the one place where what the
    /// hub sends is verified (topic, device, tag) and turned into a
    /// [`Downlink`], with the hub's time when it sealed it.
    pub fn receive(&self, topic: &str, payload: &[u8]) -> Result<(Downlink, u64), String> {
        let (channel, env) = self.open(topic, payload)?;
        let msg = match channel {
            Channel::Ack => env.body::<Ack>().map(Downlink::Ack).map_err(|e| format!("malformed ack: {e}")),
            Channel::Cmd => env.body::<Command>().map(Downlink::Command).map_err(|e| format!("malformed command: {e}")),
            Channel::Config => {
                env.body::<ConfigDoc>().map(Downlink::Config).map_err(|e| format!("malformed configuration: {e}"))
            }
            other => Err(format!("downlink channel {other} is not handled yet")),
        }?;
        Ok((msg, env.ts_ms))
    }

    /// Publishes the `offline` status and disconnects cleanly.
    pub async fn goodbye(&mut self) {
        if self.connected {
            let _ = self.publish(&Status::Offline, true);
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
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    events: mpsc::Sender<UplinkEvent>,
    max: Duration,
    addr: String,
    device: DeviceId,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), max);
    // When the current connection was accepted, and how many in a row the
    // hub closed soon after accepting them.
    let mut connected_at: Option<std::time::Instant> = None;
    let mut short_lived = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(hub = %addr, code = ?ack.code, "connected to hub");
                connected_at = Some(std::time::Instant::now());
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
                let lasted = connected_at.take().map(|t| t.elapsed());
                short_lived = if lasted.is_some_and(|l| l < SHORT_LIVED) { short_lived + 1 } else { 0 };
                let trouble = Trouble::of(&e, lasted, short_lived);
                if trouble == Trouble::Refused {
                    // Retrying at once cannot help: the operator must act.
                    backoff.give_up();
                }
                let wait = backoff.next(jitter());
                let retry_in_s = wait.as_secs_f32().ceil() as u64;
                let what = trouble.explain(&addr, &device);
                match hint(&e) {
                    Some(hint) => warn!(hub = %addr, error = %e, hint, retry_in_s, "{what}"),
                    None => warn!(hub = %addr, error = %e, retry_in_s, "{what}"),
                }
                if events.send(UplinkEvent::Disconnected(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A connection accepted and closed within this is suspect (see
/// [`Trouble::Displaced`]).
const SHORT_LIVED: Duration = Duration::from_secs(10);

/// What went wrong with the hub connection, in the router owner's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// Nothing listens at the address (connection refused).
    NoHub,
    /// No answer at all (a firewall, a wrong address).
    NoAnswer,
    /// Something answered, but not in MQTT: the wrong port.
    NotMqtt,
    /// The hub closed the connection before accepting it: it does not
    /// know this device id or the secret is wrong.
    Refused,
    /// The hub keeps closing the connection soon after accepting it, as it
    /// does when another router connects with the same device id.
    Displaced,
    /// Anything else (a connection lost after working, a TLS failure).
    Other,
}

impl Trouble {
    /// Classifies a connection error. `lasted` is how long the connection
    /// had been accepted (`None`: it never was); `short_lived` counts the
    /// accepted connections in a row that ended within [`SHORT_LIVED`].
    pub fn of(e: &rumqttc::ConnectionError, lasted: Option<Duration>, short_lived: u32) -> Trouble {
        use rumqttc::{ConnectionError as C, StateError as S};
        let io_kind = match e {
            C::Io(io) | C::MqttState(S::Io(io)) => Some(io.kind()),
            _ => None,
        };
        match (e, io_kind, lasted) {
            (_, Some(std::io::ErrorKind::ConnectionRefused), _) => Trouble::NoHub,
            (C::NetworkTimeout, _, None) | (_, Some(std::io::ErrorKind::TimedOut), None) => Trouble::NoAnswer,
            (C::NotConnAck(_) | C::MqttState(S::Deserialization(_)), _, None) => Trouble::NotMqtt,
            (C::MqttState(S::ConnectionAborted), _, None)
            | (_, Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof), None) => {
                Trouble::Refused
            }
            (_, _, Some(_)) if short_lived >= 3 => Trouble::Displaced,
            _ => Trouble::Other,
        }
    }

    /// The log message.
    pub fn explain(self, addr: &str, device: &DeviceId) -> String {
        match self {
            Trouble::NoHub => format!(
                "nothing listens at {addr} (connection refused): is the hub running, and is this its MQTT port?"
            ),
            Trouble::NoAnswer => {
                format!("no answer from {addr}: is the address right, and does a firewall let the router reach it?")
            }
            Trouble::NotMqtt => {
                format!("{addr} answered, but not in MQTT: is the port right (1883 for mqtt://, 8883 for mqtts://)?")
            }
            Trouble::Refused => format!(
                "the hub at {addr} refused this router: not authorised (device id {device:?} is not enrolled there, \
                 or the secret is wrong). On the hub, `opmas-hub device list` shows the enrolled ids and \
                 `opmas-hub device rekey {device}` prints a new secret; retrying slowly"
            ),
            Trouble::Displaced => format!(
                "the hub at {addr} keeps closing this connection soon after accepting it: is another router \
                 configured with device id {device:?}? The hub keeps only the newest connection of a device"
            ),
            Trouble::Other => format!("hub connection to {addr} failed"),
        }
    }
}

/// What a connection error means for the operator, where the error itself
/// is terse (TLS failures).
fn hint(e: &rumqttc::ConnectionError) -> Option<&'static str> {
    #[cfg(feature = "tls")]
    return crate::tls::hint(e);
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        None
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

    /// Goes straight to the longest wait (for failures that retrying soon
    /// cannot mend).
    pub fn give_up(&mut self) {
        self.attempt = 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_troubles_are_told_apart() {
        use rumqttc::{ConnectionError as C, StateError as S};
        use std::io::{Error, ErrorKind};
        let secs = |s| Some(Duration::from_secs(s));
        let cases = [
            (C::Io(Error::from(ErrorKind::ConnectionRefused)), None, 0, Trouble::NoHub),
            (C::NetworkTimeout, None, 0, Trouble::NoAnswer),
            (C::NotConnAck(rumqttc::Packet::PingResp), None, 0, Trouble::NotMqtt),
            (C::MqttState(S::ConnectionAborted), None, 0, Trouble::Refused),
            (C::Io(Error::from(ErrorKind::ConnectionReset)), None, 0, Trouble::Refused),
            // Closed after working: lost, unless it keeps happening soon after each accept.
            (C::MqttState(S::ConnectionAborted), secs(3600), 0, Trouble::Other),
            (C::MqttState(S::ConnectionAborted), secs(1), 2, Trouble::Other),
            (C::MqttState(S::ConnectionAborted), secs(1), 3, Trouble::Displaced),
        ];
        for (e, lasted, short, want) in cases {
            assert_eq!(Trouble::of(&e, lasted, short), want, "{e:?}");
        }
        let id = DeviceId::new("gw-1").unwrap();
        assert!(Trouble::Refused.explain("mqtt://hub:1883", &id).contains("not authorised"));
        assert!(Trouble::NoHub.explain("mqtt://hub:1883", &id).contains("is the hub running"));
    }

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
