//! The MQTT side of the hub: the embedded rumqttd broker, device
//! authentication, and the channels that connect it to ingest.
//!
//! Ingest never sees rumqttd types: it reads [`Inbound`] messages from a
//! channel and publishes through a [`Publisher`], so an external broker can
//! feed the same ingest later.
//!
//! What rumqttd 0.20 does and does not do shapes this module:
//! - its auth callback is async and sees client id, username and password, so
//!   devices are checked against the database at connect;
//! - a refused client gets no CONNACK, just a closed socket, so every refusal
//!   is logged with its reason here and counted in [`Stats::auth_refused`];
//! - it reports no connects or disconnects, so presence comes from the status
//!   topic (Last Will) and heartbeat silence (see `ingest::presence`);
//! - it has no topic ACLs, so the envelope tag and the device/topic check in
//!   ingest are the integrity boundary, not the broker;
//! - the in-process link stops receiving unless `ready()` is called after
//!   `Notification::Unschedule`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use opmas_proto::{Channel, DeviceId, Secret};
use rumqttd::{Broker, Config, ConnectionSettings, Notification, RouterConfig, ServerSettings};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::HubConfig;
use crate::keys::{constant_time_eq, Keys};
use crate::stats::{bump, Stats};

/// How many received messages may wait for ingest before the link pauses.
const INBOUND_CAPACITY: usize = 16_384;
/// How many outgoing messages may wait for the broker.
const OUTBOUND_CAPACITY: usize = 16_384;

/// A message a device published.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A message for a device.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Publishes to devices through whichever broker the hub uses.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Outbound>,
}

impl Publisher {
    /// Queues a message; returns false (and logs) if the queue is full or the
    /// broker is gone. Callers treat publishes as best effort: a lost ack only
    /// makes the edge resend.
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> bool {
        match self.tx.try_send(Outbound { topic, payload }) {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "outgoing MQTT queue unavailable; message dropped");
                false
            }
        }
    }
}

/// The running broker's ends.
pub struct BrokerHandle {
    pub inbound: mpsc::Receiver<Inbound>,
    pub publisher: Publisher,
    /// Resolves if the broker's listener thread ends (for example bind failure).
    pub stopped: oneshot::Receiver<String>,
}

/// Starts the embedded broker on `cfg.mqtt_listen`, authenticating devices
/// with `keys`, and waits until it accepts TCP connections.
pub async fn start_embedded(cfg: &HubConfig, keys: Keys, stats: Arc<Stats>) -> Result<BrokerHandle> {
    // Fail with a clear message on a taken port instead of a broker thread
    // that logs and exits. SO_REUSEADDR as rumqttd's own listener uses, so
    // that sockets in TIME_WAIT from a previous run do not count as taken.
    check_bindable(cfg.mqtt_listen).with_context(|| format!("MQTT listen address {}", cfg.mqtt_listen))?;

    let runtime = tokio::runtime::Handle::current();
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: cfg.broker.max_payload_size,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, username: String, password: String| {
        let keys = keys.clone();
        let stats = stats.clone();
        let runtime = runtime.clone();
        async move {
            // The lookup runs on the hub's runtime, where the database pool lives.
            let verdict = runtime
                .spawn(async move { check_device(&keys, &client_id, &username, &password).await.map(|()| client_id) })
                .await;
            match verdict {
                Ok(Ok(id)) => {
                    bump(&stats.auth_accepted);
                    info!(device = %id, "device authenticated");
                    true
                }
                Ok(Err(refusal)) => {
                    bump(&stats.auth_refused);
                    warn!(client_id = %refusal.client_id, reason = %refusal.reason, "refused MQTT connection");
                    false
                }
                Err(e) => {
                    bump(&stats.auth_refused);
                    warn!(error = %e, "refused MQTT connection: auth check failed");
                    false
                }
            }
        }
    });
    let server = ServerSettings {
        name: "opmas-v4".into(),
        listen: cfg.mqtt_listen,
        tls: None,
        next_connection_delay_ms: cfg.broker.next_connection_delay_ms,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: cfg.broker.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: cfg.broker.max_segment_size,
            max_segment_count: cfg.broker.max_segment_count,
            ..RouterConfig::default()
        },
        v4: Some([("1".to_string(), server)].into_iter().collect()),
        ..Config::default()
    };

    let mut broker = Broker::new(config);
    let (mut link_tx, mut link_rx) = broker.link("opmas-hub").context("linking ingest to the embedded broker")?;
    for ch in Channel::ALL.into_iter().filter(|c| c.is_uplink()) {
        link_tx.subscribe(ch.filter_all_devices()).context("subscribing the ingest link")?;
    }

    let (stopped_tx, stopped) = oneshot::channel();
    let listen = cfg.mqtt_listen;
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        let why = match broker.start() {
            Ok(()) => format!("MQTT listener on {listen} stopped"),
            Err(e) => format!("MQTT broker on {listen} failed: {e}"),
        };
        let _ = stopped_tx.send(why);
    })?;

    let (in_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    tokio::spawn(async move {
        loop {
            match link_rx.next().await {
                Ok(Some(Notification::Forward(fwd))) => {
                    let msg = Inbound {
                        topic: String::from_utf8_lossy(&fwd.publish.topic).into_owned(),
                        payload: fwd.publish.payload.to_vec(),
                    };
                    // Waiting here pauses the link, which backs up into the
                    // broker rather than growing memory without bound.
                    if in_tx.send(msg).await.is_err() {
                        break;
                    }
                }
                Ok(Some(Notification::Unschedule)) => {
                    if let Err(e) = link_rx.ready() {
                        warn!(error = %e, "embedded broker link closed");
                        break;
                    }
                }
                Ok(Some(other)) => debug!(notification = ?other, "ignored broker notification"),
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "embedded broker link closed");
                    break;
                }
            }
        }
    });

    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if let Err(e) = link_tx.publish(msg.topic, msg.payload) {
                warn!(error = %e, "publishing through the embedded broker failed");
            }
        }
    });

    wait_until_listening(listen).await?;
    Ok(BrokerHandle { inbound, publisher: Publisher { tx: out_tx }, stopped })
}

fn check_bindable(addr: SocketAddr) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1).map(drop)
}

async fn wait_until_listening(listen: SocketAddr) -> Result<()> {
    let probe = if listen.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    };
    for _ in 0..100 {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(probe)).await
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the embedded MQTT broker did not start listening on {listen} within 5 s")
}

/// Why a connection was refused.
struct Refusal {
    client_id: String,
    reason: String,
}

/// Accepts only an enrolled device whose client id and username are its
/// device id and whose password is its secret.
async fn check_device(keys: &Keys, client_id: &str, username: &str, password: &str) -> Result<(), Refusal> {
    let refuse = |reason: String| Refusal { client_id: client_id.to_owned(), reason };
    let id = DeviceId::new(username).map_err(|e| refuse(format!("username is not a device id: {e}")))?;
    if client_id != username {
        return Err(refuse(format!("client id must equal the device id {username:?}")));
    }
    let secret = match keys.get(&id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(refuse(format!("unknown device {username:?}"))),
        Err(e) => return Err(refuse(format!("database error: {e}"))),
    };
    let presented = Secret::from_hex(password).map_err(|_| refuse("wrong secret".into()))?;
    if !constant_time_eq(presented.as_bytes(), secret.as_bytes()) {
        return Err(refuse("wrong secret".into()));
    }
    Ok(())
}
