//! The MQTT side of the hub: the embedded rumqttd broker, device
//! authentication, and the channels that connect it to ingest.
//!
//! Ingest never sees rumqttd types: it reads [`Inbound`] messages from a
//! channel and publishes through a [`Publisher`] (both in [`crate::mqtt`],
//! broker-neutral), so an external broker can feed the same ingest later.
//!
//! What rumqttd 0.20 does and does not do shapes this module:
//! - its auth callback is async and sees client id, username and password, so
//!   devices are checked against the database at connect; it does not see
//!   the peer's address, so rumqttd listens on loopback only and the hub's
//!   own listeners relay every connection to it ([`relay`]), noting who
//!   connects from where;
//! - a refused client gets no CONNACK, just a closed socket, so every refusal
//!   is logged with its reason here and counted in [`Stats::auth_refused`];
//! - it reports no connects or disconnects, so presence comes from the status
//!   topic (Last Will) and heartbeat silence (see `ingest::presence`);
//! - it has no topic ACLs, so the envelope tag and the device/topic check in
//!   ingest are the integrity boundary, not the broker;
//! - the in-process link stops receiving unless `ready()` is called after
//!   `Notification::Unschedule`.
//!
//! MQTT over TLS settings are in [`tls`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use opmas_proto::{Channel, DeviceId, Secret};
use rumqttd::{Broker, Config, ConnectionSettings, Notification, RouterConfig, ServerSettings};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, info, warn};

pub mod external;
pub mod mosquitto;
mod relay;
mod tls;

use crate::config::HubConfig;
use crate::keys::{constant_time_eq, Keys};
pub use crate::mqtt::{Inbound, Outbound, Publisher};
use crate::stats::{bump, Stats};
use relay::{Peers, Relay};
use tls::TlsSettings;

/// How many received messages may wait for ingest before the link pauses.
const INBOUND_CAPACITY: usize = 16_384;
/// How many outgoing messages may wait for the broker.
const OUTBOUND_CAPACITY: usize = 16_384;

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
    // The listeners are bound before anything starts, so that a taken port
    // or a typo in a TLS path fails the start, naming it.
    let plain = bind(cfg.mqtt_listen).with_context(|| format!("MQTT listen address {}", cfg.mqtt_listen))?;
    let tls = match cfg.mqtts_listen {
        None => None,
        Some(addr) => {
            let tls = TlsSettings::from_config(cfg)?;
            let listener = bind(addr).with_context(|| format!("MQTTS listen address {addr} (--mqtts-listen)"))?;
            Some((listener, tls))
        }
    };
    // rumqttd's own listener, which only the relays reach. rumqttd binds it
    // itself, so the port is picked here and released; another process
    // taking it in between makes the start fail below ("did not start
    // listening").
    let backend = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .and_then(|l| l.local_addr())
        .context("picking a loopback port for the embedded broker")?;

    let peers = Arc::new(Peers::default());
    let runtime = tokio::runtime::Handle::current();
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: cfg.broker.max_payload_size,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let auth_stats = stats.clone();
    let auth_peers = peers.clone();
    connections.set_auth_handler(move |client_id: String, username: String, password: String| {
        let keys = keys.clone();
        let stats = auth_stats.clone();
        let runtime = runtime.clone();
        let peer = auth_peers.judging(&client_id).map_or_else(|| "an unknown address".to_owned(), |p| p.to_string());
        async move {
            // The lookup runs on the hub's runtime, where the database pool lives.
            let verdict = runtime
                .spawn(async move { check_device(&keys, &client_id, &username, &password).await.map(|()| client_id) })
                .await;
            match verdict {
                Ok(Ok(id)) => {
                    bump(&stats.auth_accepted);
                    info!(device = %id, %peer, "device authenticated");
                    true
                }
                Ok(Err(refusal)) => {
                    bump(&stats.auth_refused);
                    warn!(client_id = %refusal.client_id, %peer, reason = %refusal.reason, "refused MQTT connection");
                    false
                }
                Err(e) => {
                    bump(&stats.auth_refused);
                    warn!(%peer, error = %e, "refused MQTT connection: auth check failed");
                    false
                }
            }
        }
    });
    let servers = vec![(
        "1".to_string(),
        ServerSettings {
            name: "opmas-v4-relayed".into(),
            listen: backend,
            tls: None,
            next_connection_delay_ms: cfg.broker.next_connection_delay_ms,
            connections,
        },
    )];
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: cfg.broker.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: cfg.broker.max_segment_size,
            max_segment_count: cfg.broker.max_segment_count,
            ..RouterConfig::default()
        },
        v4: Some(servers.into_iter().collect()),
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
    #[cfg(feature = "fault-injection")]
    let mut fault = Fault::from_env();
    tokio::spawn(async move {
        loop {
            match link_rx.next().await {
                Ok(Some(Notification::Forward(fwd))) => {
                    let msg = Inbound {
                        topic: String::from_utf8_lossy(&fwd.publish.topic).into_owned(),
                        payload: fwd.publish.payload.to_vec(),
                    };
                    #[cfg(feature = "fault-injection")]
                    if fault.drops(&msg.topic) {
                        continue;
                    }
                    // Waiting here pauses the link. rumqttd does not pass that
                    // back to publishers: it keeps appending to its log and,
                    // past its segments, skips ahead. The edges' send window
                    // keeps that rare and the ack watermark makes it harmless
                    // (see `ingest`).
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

    // rumqttd's `LinkTx::publish` blocks the thread while the router's queue
    // is full, so it runs on a thread of its own, not on the runtime.
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
    std::thread::Builder::new().name("mqtt-publish".into()).spawn(move || {
        while let Some(msg) = out_rx.blocking_recv() {
            if let Err(e) = link_tx.publish(msg.topic, msg.payload) {
                warn!(error = %e, "publishing through the embedded broker failed");
            }
        }
    })?;

    wait_until_listening(backend).await?;
    // The relays connect to rumqttd as fast as routers arrive; its own
    // backlog of 128 would drop the rest of a reconnect storm.
    if let Err(e) = widen_backlog(backend, MQTT_BACKLOG) {
        warn!(error = %e, %backend, "could not raise the broker's accept backlog; reconnect storms will be slower");
    }
    let relay = Relay {
        backend,
        slots: Arc::new(Semaphore::new(cfg.broker.max_connections)),
        stats,
        peers,
        max_packet: cfg.broker.max_payload_size,
    };
    info!(%listen, "MQTT listening");
    tokio::spawn(relay.clone().serve(plain, None));
    if let Some((listener, tls)) = tls {
        info!(
            listen = %listener.local_addr()?,
            mutual_tls = tls.mutual,
            "MQTT over TLS listening{}",
            if tls.mutual { " (client certificates required)" } else { "" }
        );
        tokio::spawn(relay.serve(listener, Some(tls.acceptor)));
    }
    Ok(BrokerHandle { inbound, publisher: Publisher::new(out_tx), stopped })
}

/// A router-facing listener: SO_REUSEADDR, so that sockets in TIME_WAIT
/// from a previous run do not make the port look taken, and a backlog that
/// holds a whole fleet reconnecting at once.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(MQTT_BACKLOG as u32)
}

/// Waits until rumqttd's listener holds `listen`.
///
/// It looks for the listening socket in the kernel's table instead of
/// connecting (rumqttd would log an aborted MQTT connection at every start)
/// or binding a probe socket: a probe that holds the port for a moment, while
/// rumqttd binds it, makes rumqttd fail with "address in use", which is what
/// a restart under a reconnect storm ran into.
async fn wait_until_listening(listen: SocketAddr) -> Result<()> {
    for _ in 0..250 {
        if is_listening(listen) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the embedded MQTT broker did not start listening on {listen} within 5 s")
}

/// True if some socket listens on `addr` (Linux: `/proc/net/tcp`, `tcp6`).
fn is_listening(addr: SocketAddr) -> bool {
    listening_inode(addr).is_some()
}

/// The inode of the socket listening on `addr`, from the kernel's table.
fn listening_inode(addr: SocketAddr) -> Option<u64> {
    let (path, want) = match addr {
        SocketAddr::V4(a) => ("/proc/net/tcp", format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port())),
        SocketAddr::V6(a) => {
            let o = a.ip().octets();
            let words: String =
                o.chunks(4).map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).collect();
            ("/proc/net/tcp6", format!("{words}:{:04X}", a.port()))
        }
    };
    let table = std::fs::read_to_string(path).ok()?;
    listening_in(&table, &want)
}

/// The inode of the LISTEN (state 0A) row for `local` in `/proc/net/tcp` text.
fn listening_in(table: &str, local: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        (cols.get(1) == Some(&local) && cols.get(3) == Some(&"0A")).then(|| cols.get(9)?.parse().ok())?
    })
}

/// Accept backlog asked for rumqttd's listener (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default).
const MQTT_BACKLOG: i32 = 4096;

/// Raises the accept backlog of rumqttd's listener on `addr`.
///
/// rumqttd binds its listener itself, with the standard library's backlog
/// of 128. When thousands of routers reconnect at once after a hub restart,
/// the kernel drops every SYN beyond those 128 and each router waits a
/// second or more for its retransmit, so the fleet trickles back. Linux
/// lets `listen` be called again on a listening socket to change its
/// backlog; the socket is found by its inode among this process's files.
#[cfg(target_os = "linux")]
fn widen_backlog(addr: SocketAddr, backlog: i32) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let inode = listening_inode(addr)
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no listening socket on {addr}")))?;
    let want = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        if !std::fs::read_link(entry.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
            continue;
        }
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // SAFETY: `listen` only reads its arguments. The descriptor is
        // rumqttd's listening socket (matched by inode just now), which
        // stays open as long as the broker runs, so it cannot have been
        // closed and reused for another file in between.
        if unsafe { libc::listen(fd, backlog) } != 0 {
            return Err(Error::last_os_error());
        }
        return Ok(());
    }
    Err(Error::new(ErrorKind::NotFound, format!("the socket listening on {addr} is not this process's")))
}

#[cfg(not(target_os = "linux"))]
fn widen_backlog(_addr: SocketAddr, _backlog: i32) -> std::io::Result<()> {
    Ok(())
}

/// Faults a test can inject between broker and ingest (cargo feature
/// `fault-injection`, which release builds do not have):
/// `OPMAS_FAULT_DROP_FINDINGS=3,7` drops the 3rd and 7th finding message the
/// broker delivers, as a broker that skipped them would.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
struct Fault {
    drop_findings: Vec<u64>,
    findings_seen: u64,
}

#[cfg(feature = "fault-injection")]
impl Fault {
    fn from_env() -> Fault {
        let spec = std::env::var("OPMAS_FAULT_DROP_FINDINGS").unwrap_or_default();
        let drop_findings: Vec<u64> = spec.split(',').filter_map(|n| n.trim().parse().ok()).collect();
        if !drop_findings.is_empty() {
            warn!(?drop_findings, "fault injection enabled: these finding messages will be dropped");
        }
        Fault { drop_findings, findings_seen: 0 }
    }

    /// True if the message on `topic` is to be dropped (and says so).
    fn drops(&mut self, topic: &str) -> bool {
        if !topic.ends_with(Channel::Finding.as_str()) {
            return false;
        }
        self.findings_seen += 1;
        let drop = self.drop_findings.contains(&self.findings_seen);
        if drop {
            warn!(topic, n = self.findings_seen, "fault injection: finding message dropped between broker and ingest");
        }
        drop
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_in_the_kernel_table_and_a_closed_one_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(is_listening(addr));
        drop(l);
        assert!(!is_listening(addr));
        let l6 = std::net::TcpListener::bind("[::1]:0");
        if let Ok(l6) = l6 {
            assert!(is_listening(l6.local_addr().unwrap()));
        }
    }

    #[test]
    fn only_listen_rows_count() {
        let table =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     0: 0100007F:075B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4711 1\n\
                     1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4712 1\n";
        assert_eq!(listening_in(table, "0100007F:075B"), None, "an established connection is not a listener");
        assert_eq!(listening_in(table, "00000000:1F90"), Some(4712));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_backlog_of_a_listener_bound_elsewhere_in_the_process_is_raised() {
        use std::net::TcpStream;
        // Bound as rumqttd binds: the standard library's backlog of 128. Nothing accepts.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let connect = |n: usize| {
            (0..n)
                .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok())
                .collect::<Vec<_>>()
        };
        let mut held = connect(135);
        assert!(held.len() < 135, "the standard backlog overflows ({} connected)", held.len());
        widen_backlog(addr, 4096).unwrap();
        held.extend(connect(300));
        assert!(held.len() >= 400, "only {} connections queued after widening", held.len());
        drop(l);
        assert!(widen_backlog(addr, 4096).is_err(), "nothing listens there any more");
    }
}
