//! The hub's MQTT listeners. rumqttd listens on a loopback port only; every
//! router's connection, plain (`mqtt_listen`) or TLS (`mqtts_listen`, see
//! [`super::tls`]), is accepted here and relayed to it byte for byte.
//!
//! rumqttd's auth callback sees a client id, username and password, but not
//! the peer's address, and rumqttd reports no connects. The relay reads each
//! connection's CONNECT packet and the broker's CONNACK as they pass, so it
//! knows which address each device connects from and whether the broker let
//! it in. With that the hub can name both routers when two are configured
//! with one device id ([`Peers`]), and say where a refused connection came
//! from. It also bounds what a silent client can hold: a connection that
//! sends no CONNECT within [`CONNECT_TIMEOUT`] is closed before it reaches
//! the broker.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttd::protocol::{v4::V4, Error as ProtoError, Packet, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::stats::{bump, Stats};

/// How long a client may take to send its CONNECT after the TCP (and TLS)
/// handshake, and the broker to answer it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS client may take for its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the router closed its side, how long rumqttd may take to close its own.
const LINGER: Duration = Duration::from_secs(5);

/// Bytes buffered per direction of a relayed connection.
const RELAY_BUFFER: usize = 2048;

/// A device displaced this often within [`FLAP_WINDOW`] has two routers.
const FLAP_DISPLACED: usize = 3;
const FLAP_WINDOW: Duration = Duration::from_secs(60);
/// How long after a warning the same device is not warned about again.
const FLAP_QUIET: Duration = Duration::from_secs(600);
/// Device ids tracked at most in each table (a bound on memory when
/// clients with made-up ids keep connecting).
const TRACKED: usize = 100_000;

/// What every relayed connection shares.
#[derive(Clone)]
pub(super) struct Relay {
    /// rumqttd's loopback listener.
    pub(super) backend: SocketAddr,
    /// One permit per open connection (the broker's `max_connections`).
    pub(super) slots: Arc<Semaphore>,
    pub(super) stats: Arc<Stats>,
    pub(super) peers: Arc<Peers>,
    /// The largest CONNECT accepted (the broker's `max_payload_size`).
    pub(super) max_packet: usize,
}

impl Relay {
    /// Accepts connections on `listener` for ever, each in its own task;
    /// with `tls`, each does its TLS handshake first.
    pub(super) async fn serve(self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, typically: wait instead of spinning.
                    warn!(error = %e, "accepting an MQTT connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                if tls.is_some() {
                    bump(&self.stats.tls_refused);
                } else {
                    bump(&self.stats.auth_refused);
                }
                warn!(%peer, "refused MQTT connection: max_connections reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let relay = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => relay.relay(tcp, peer).await,
                    Some(acceptor) => {
                        if let Some(stream) = relay.handshake(tcp, peer, acceptor).await {
                            relay.relay(stream, peer).await;
                        }
                    }
                }
                drop(slot);
            });
        }
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        acceptor: TlsAcceptor,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                bump(&self.stats.tls_refused);
                warn!(%peer, error = %e, "refused MQTTS connection: TLS handshake failed");
                None
            }
            Err(_) => {
                bump(&self.stats.tls_refused);
                warn!(%peer, "refused MQTTS connection: no TLS handshake within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs());
                None
            }
        }
    }

    /// One router's connection: its CONNECT, the broker's verdict, then bytes
    /// both ways until either side closes.
    async fn relay<S: AsyncRead + AsyncWrite + Unpin>(&self, client: S, peer: SocketAddr) {
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let (connect, id) =
            match tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut client_rx, self.max_packet)).await {
                Ok(Ok(Some(c))) => c,
                Ok(Ok(None)) => {
                    debug!(%peer, "connection closed before its MQTT CONNECT");
                    return;
                }
                Ok(Err(why)) => {
                    bump(&self.stats.auth_refused);
                    warn!(%peer, "refused MQTT connection: {why}");
                    return;
                }
                Err(_) => {
                    bump(&self.stats.auth_refused);
                    warn!(%peer, "refused MQTT connection: no CONNECT within {} s", CONNECT_TIMEOUT.as_secs());
                    return;
                }
            };
        let back = match TcpStream::connect(self.backend).await {
            Ok(b) => b,
            Err(e) => {
                warn!(%peer, error = %e, "MQTT connection dropped: the broker's listener {} is unreachable", self.backend);
                return;
            }
        };
        let _ = back.set_nodelay(true);
        let (mut back_rx, mut back_tx) = back.into_split();
        self.peers.connecting(&id, peer);
        if back_tx.write_all(&connect).await.is_err() {
            return;
        }
        // The broker answers an accepted CONNECT with CONNACK and a refused
        // one by closing (see the auth callback, which logs why).
        let (answer, accepted) =
            tokio::time::timeout(CONNECT_TIMEOUT, read_connack(&mut back_rx)).await.unwrap_or_default();
        if !answer.is_empty() && client_tx.write_all(&answer).await.is_err() {
            return;
        }
        if !accepted {
            let _ = client_tx.shutdown().await;
            return;
        }
        let token = self.peers.accepted(&id, peer, Instant::now());
        // Small buffers: a router's traffic is a heartbeat and a few batches
        // a minute, and a fleet holds thousands of connections
        // (`tokio::io::copy` would keep 8 KiB each way per router).
        let mut client_rx = tokio::io::BufReader::with_capacity(RELAY_BUFFER, client_rx);
        let mut back_rx = tokio::io::BufReader::with_capacity(RELAY_BUFFER, back_rx);
        let up = async {
            let _ = tokio::io::copy_buf(&mut client_rx, &mut back_tx).await;
            let _ = back_tx.shutdown().await;
        };
        let down = async {
            let _ = tokio::io::copy_buf(&mut back_rx, &mut client_tx).await;
            let _ = client_tx.shutdown().await;
        };
        tokio::pin!(up, down);
        tokio::select! {
            // The router closed (after DISCONNECT, or it died): let rumqttd read
            // what is left and close its side, so a clean goodbye stays clean.
            () = &mut up => {
                let _ = tokio::time::timeout(LINGER, down).await;
            }
            // rumqttd closed (keep-alive timeout, a newer connection with the
            // same client id): the router's connection ends with it, even if
            // the router itself has gone silent.
            () = &mut down => {}
        }
        self.peers.closed(&id, token);
    }
}

/// Reads up to the end of the client's first packet, which must be an MQTT
/// 3.1.1 CONNECT. Returns the bytes read (to be passed on unchanged) and
/// the client id; `None` if the client closed first.
async fn read_connect<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<(BytesMut, String)>, String> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        let n = r.read_buf(&mut buf).await.map_err(|e| format!("reading its CONNECT: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        match client_id(&buf, max) {
            Ok(Some(id)) => return Ok(Some((buf, id))),
            Ok(None) => {}
            Err(why) => return Err(why),
        }
    }
}

/// The client id of the CONNECT packet at the start of `buf`; `Ok(None)`
/// while the packet is incomplete.
fn client_id(buf: &[u8], max: usize) -> Result<Option<String>, String> {
    // Judged on the first byte, so that a client speaking another protocol
    // (HTTP to the wrong port) is told at once, not after a timeout.
    match buf.first() {
        None => return Ok(None),
        Some(0x10) => {}
        Some(&b) => return Err(format!("its first packet is not an MQTT CONNECT but {}", packet_name(b))),
    }
    let mut copy = BytesMut::from(buf);
    match V4.read_mut(&mut copy, max) {
        Ok(Packet::Connect(connect, ..)) => Ok(Some(connect.client_id)),
        Ok(_) => Err("its first packet is not an MQTT CONNECT".into()),
        Err(ProtoError::InsufficientBytes(_)) => Ok(None),
        Err(ProtoError::InvalidProtocolLevel(level)) => {
            Err(format!("MQTT protocol level {level}; this hub speaks MQTT 3.1.1 (level 4)"))
        }
        Err(e) => Err(format!("not an MQTT CONNECT: {e}")),
    }
}

/// What a packet's first byte says it is.
fn packet_name(first: u8) -> String {
    match first >> 4 {
        3 => "PUBLISH".into(),
        8 => "SUBSCRIBE".into(),
        12 => "PINGREQ".into(),
        14 => "DISCONNECT".into(),
        _ if first.is_ascii_alphabetic() => format!("text ({:?}…): another protocol on the MQTT port", first as char),
        _ => format!("byte 0x{first:02x}"),
    }
}

/// Reads the broker's first bytes: a CONNACK (4 bytes in MQTT 3.1.1) with
/// return code 0 means accepted. Returns what was read, to pass on.
async fn read_connack<R: AsyncRead + Unpin>(r: &mut R) -> (Vec<u8>, bool) {
    let mut head = Vec::with_capacity(4);
    let mut byte = [0u8; 64];
    while head.len() < 4 {
        match r.read(&mut byte).await {
            Ok(0) | Err(_) => return (head, false),
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    let accepted = head[0] == 0x20 && head[1] == 0x02 && head[3] == 0;
    (head, accepted)
}

/// Which address each device connects from, and what that reveals.
#[derive(Debug, Default)]
pub(super) struct Peers {
    inner: Mutex<PeersInner>,
}

#[derive(Debug, Default)]
struct PeersInner {
    /// CONNECTs passed to the broker and not yet judged by its auth callback.
    pending: HashMap<String, SocketAddr>,
    /// The accepted connection of each device: a number telling it from
    /// later ones, and its peer.
    open: HashMap<String, (u64, SocketAddr)>,
    /// When each device's connection was displaced by a newer one from
    /// another peer, and when it was last warned about.
    displaced: HashMap<String, (VecDeque<Instant>, Option<Instant>)>,
    next: u64,
}

/// Two peers taking turns with one device id.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Conflict {
    pub(super) older: SocketAddr,
    pub(super) newer: SocketAddr,
    /// Displacements within [`FLAP_WINDOW`].
    pub(super) times: usize,
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, PeersInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A CONNECT for `id` from `peer` is on its way to the broker.
    fn connecting(&self, id: &str, peer: SocketAddr) {
        let mut p = self.lock();
        if p.pending.len() >= TRACKED {
            // Only entries whose auth callback never ran (the broker failed
            // before it) stay behind; forgetting them costs a log address.
            p.pending.clear();
        }
        p.pending.insert(id.to_owned(), peer);
    }

    /// The peer of the CONNECT for `id` that the broker is judging (for the
    /// auth callback's log line).
    pub(super) fn judging(&self, id: &str) -> Option<SocketAddr> {
        self.lock().pending.remove(id)
    }

    /// The broker accepted `id` from `peer`. Warns, once per [`FLAP_QUIET`],
    /// when it keeps displacing another peer's connection. Returns the
    /// token for [`Peers::closed`].
    fn accepted(&self, id: &str, peer: SocketAddr, now: Instant) -> u64 {
        let (token, conflict) = self.accept_at(id, peer, now);
        if let Some(c) = conflict {
            warn!(
                device = %id,
                older = %c.older,
                newer = %c.newer,
                displaced = c.times,
                "two routers are using device id {id}: {} and {} connect in turn, each displacing the other \
                 ({} times within {} s; the broker keeps only the newest connection of a device). Give each \
                 router its own id with `opmas-hub device add`",
                c.older,
                c.newer,
                c.times,
                FLAP_WINDOW.as_secs()
            );
        }
        token
    }

    fn accept_at(&self, id: &str, peer: SocketAddr, now: Instant) -> (u64, Option<Conflict>) {
        let mut p = self.lock();
        p.next += 1;
        let token = p.next;
        if p.open.len() >= TRACKED && !p.open.contains_key(id) {
            // More devices than tracked are connected: this one goes unwatched.
            return (token, None);
        }
        let older = p.open.insert(id.to_owned(), (token, peer)).map(|(_, older)| older);
        // Also a router's own stale connection (it lost its link and came
        // back before the broker noticed) is displaced, but hardly three
        // times a minute.
        let Some(older) = older.filter(|o| *o != peer) else { return (token, None) };
        if p.displaced.len() >= TRACKED && !p.displaced.contains_key(id) {
            p.displaced.retain(|_, (times, _)| times.back().is_some_and(|t| now.duration_since(*t) < FLAP_WINDOW));
        }
        let (times, warned) = p.displaced.entry(id.to_owned()).or_default();
        times.push_back(now);
        while times.front().is_some_and(|t| now.duration_since(*t) >= FLAP_WINDOW) {
            times.pop_front();
        }
        if times.len() < FLAP_DISPLACED || warned.is_some_and(|w| now.duration_since(w) < FLAP_QUIET) {
            return (token, None);
        }
        *warned = Some(now);
        (token, Some(Conflict { older, newer: peer, times: times.len() }))
    }

    /// The connection `token` of `id` ended.
    fn closed(&self, id: &str, token: u64) {
        let mut p = self.lock();
        if p.open.get(id).is_some_and(|(t, _)| *t == token) {
            p.open.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MQTT 3.1.1 CONNECT for `id`, as rumqttc writes it.
    fn connect(id: &str) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b0000_0010, 0, 30];
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        packet
    }

    #[test]
    fn the_client_id_is_read_once_the_connect_is_complete() {
        let packet = connect("gw-1");
        for cut in 0..packet.len() {
            assert_eq!(client_id(&packet[..cut], 1024), Ok(None), "{cut} bytes are not enough");
        }
        assert_eq!(client_id(&packet, 1024), Ok(Some("gw-1".into())));
        let mut more = packet.clone();
        more.extend_from_slice(&[0x30, 0x00]);
        assert_eq!(client_id(&more, 1024), Ok(Some("gw-1".into())), "what follows the CONNECT does not matter");
    }

    #[test]
    fn what_is_not_a_connect_is_refused_saying_what_it_was() {
        let http = client_id(b"GET / HTTP/1.1\r\n\r\n", 1024).unwrap_err();
        assert!(http.contains("not an MQTT CONNECT") && http.contains("another protocol"), "{http}");
        assert!(client_id(&[0xC0, 0x00], 1024).unwrap_err().contains("PINGREQ"));
        let mut v5 = connect("gw-1");
        v5[8] = 5;
        assert!(client_id(&v5, 1024).unwrap_err().contains("level 5"), "{:?}", client_id(&v5, 1024));
        assert!(client_id(&connect("gw-1"), 4).is_err(), "larger than allowed");
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn two_peers_taking_turns_are_named_once_per_quiet_period() {
        let peers = Peers::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // One router reconnecting from new ports after blips is fine, even often.
        for i in 0..10 {
            let port = 40_000 + i as u16;
            let (t, c) = peers.accept_at("gw-ok", addr(&format!("192.0.2.1:{port}")), at(i * 3));
            assert_eq!(c, None);
            peers.closed("gw-ok", t);
        }
        // Two routers: each connect displaces the other's open connection.
        let mut conflicts = Vec::new();
        for i in 0..40u64 {
            let peer = if i % 2 == 0 { "192.0.2.1:5000" } else { "198.51.100.7:6000" };
            conflicts.extend(peers.accept_at("gw-twin", addr(peer), at(i * 3)).1);
        }
        assert_eq!(
            conflicts,
            vec![Conflict { older: addr("192.0.2.1:5000"), newer: addr("198.51.100.7:6000"), times: 3 }],
            "the third displacement within a minute names both, once in ten minutes"
        );
        assert!(peers.accept_at("gw-twin", addr("192.0.2.1:5000"), at(40 * 3 + 601)).1.is_none(), "window restarts");
    }

    #[test]
    fn a_closed_connection_is_not_displaced_by_the_next_one() {
        let peers = Peers::default();
        let now = Instant::now();
        for port in 0..10u16 {
            let (t, c) = peers.accept_at("gw-1", addr(&format!("192.0.2.1:{}", 1000 + port)), now);
            assert_eq!(c, None);
            peers.closed("gw-1", t);
        }
        // A connection closed after a newer one took its place leaves the newer one open.
        let (old, _) = peers.accept_at("gw-2", addr("192.0.2.2:1"), now);
        let (_new, _) = peers.accept_at("gw-2", addr("192.0.2.3:1"), now);
        peers.closed("gw-2", old);
        assert_eq!(peers.lock().open.get("gw-2").map(|(_, p)| *p), Some(addr("192.0.2.3:1")));
    }

    #[test]
    fn the_auth_callback_learns_the_peer_of_the_connect_it_judges() {
        let peers = Peers::default();
        peers.connecting("gw-1", addr("192.0.2.9:1234"));
        assert_eq!(peers.judging("gw-1"), Some(addr("192.0.2.9:1234")));
        assert_eq!(peers.judging("gw-1"), None, "taken once");
    }
}
