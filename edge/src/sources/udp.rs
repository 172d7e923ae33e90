//! Syslog over UDP: OpenWRT logd's remote logging (`log_ip`/`log_port`, RFC 3164
//! `<PRI>Mmm dd HH:MM:SS host tag: msg`) and other senders (RFC 5424 `<PRI>1 2024-...`).
//!
//! This module owns the socket, splitting a datagram into frames ([`split_frames`]) and what
//! happens when the line channel is full. Frames are passed on as text lines; `parse` parses
//! them.
//!
//! UDP has no flow control: a sender never waits for us. If the receive loop waited for room
//! in the line channel, the kernel's socket buffer would overflow and drop datagrams without
//! anyone counting them. So a frame that finds the channel full is dropped here and counted
//! in [`SourceStats::shed`], and the loop goes back to draining the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{bump, SourceStats};

/// Largest datagram kept whole, in bytes. logd sends at most about 1 KiB and RFC 5426 asks
/// senders to stay under 2048 bytes over IPv4, so this leaves room for relays that batch
/// several frames. The kernel cuts longer datagrams to the buffer; they are counted in
/// [`SourceStats::truncated`].
pub const MAX_DATAGRAM: usize = 8 * 1024;

/// Highest valid PRI: facility 23 (local7) × 8 + severity 7 (debug).
const MAX_PRI: u16 = 191;

/// Shortest time between two warnings about dropped frames.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after a failed receive, so that an error that repeats cannot spin the runtime thread.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// Why the UDP source cannot run.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// The address cannot be bound (in use, not local, no permission).
    #[error("cannot listen for syslog on udp {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
}

/// A bound syslog UDP socket; [`UdpSource::run`] receives on it.
#[derive(Debug)]
pub struct UdpSource {
    socket: UdpSocket,
    /// The bound address (the real port when the configured one was 0).
    local: SocketAddr,
}

impl UdpSource {
    /// Binds `listen`. Errors name the address.
    pub async fn bind(listen: SocketAddr) -> Result<UdpSource, UdpError> {
        let bind_error = |source| UdpError::Bind { addr: listen, source };
        let socket = UdpSocket::bind(listen).await.map_err(bind_error)?;
        let local = socket.local_addr().map_err(bind_error)?;
        Ok(UdpSource { socket, local })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives datagrams and sends their frames into `tx` until the receiver is dropped.
    ///
    /// Never waits for room in `tx`: frames that find it full are counted in
    /// [`SourceStats::shed`]. Receive errors are logged and receiving goes on.
    pub async fn run(self, tx: mpsc::Sender<String>, stats: Arc<SourceStats>) {
        // One byte more than kept: a datagram that fills it was longer than MAX_DATAGRAM and
        // has been cut by the kernel (plain recv has no MSG_TRUNC flag to tell us).
        let mut buf = vec![0; MAX_DATAGRAM + 1];
        // Frames dropped since the last "dropping" warning, and when that warning was.
        let mut shed_unlogged = 0u64;
        let mut last_shed_log: Option<Instant> = None;
        let mut truncation_logged = false;
        // No explicit yield between datagrams: tokio's cooperative budget makes a socket that
        // stays readable give the other tasks (the main loop) their turn.
        loop {
            let received = tokio::select! {
                received = self.socket.recv_from(&mut buf) => received,
                () = tx.closed() => return,
            };
            let (len, peer) = match received {
                Ok(received) => received,
                Err(e) => {
                    warn!(listen = %self.local, error = %e, "receiving a syslog datagram failed");
                    tokio::select! {
                        () = tokio::time::sleep(ERROR_PAUSE) => continue,
                        () = tx.closed() => return,
                    }
                }
            };
            bump(&stats.datagrams, 1);
            if len > MAX_DATAGRAM {
                bump(&stats.truncated, 1);
                // Once at warn level so a misconfigured sender is noticed; the counter
                // keeps the total.
                if !truncation_logged {
                    warn!(listen = %self.local, %peer, max = MAX_DATAGRAM, "syslog datagram too long; its end is lost");
                    truncation_logged = true;
                } else {
                    debug!(%peer, "syslog datagram too long; its end is lost");
                }
            }
            let text = String::from_utf8_lossy(&buf[..len.min(MAX_DATAGRAM)]);
            for frame in split_frames(&text) {
                match tx.try_send(frame.to_owned()) {
                    Ok(()) => bump(&stats.lines, 1),
                    Err(TrySendError::Full(_)) => {
                        bump(&stats.shed, 1);
                        shed_unlogged += 1;
                        // Under overload the channel flips between full and not full with
                        // every line, so warn at most once per interval, with the count.
                        if last_shed_log.is_none_or(|at| at.elapsed() >= SHED_LOG_INTERVAL) {
                            warn!(
                                listen = %self.local,
                                dropped = shed_unlogged,
                                "line queue full; dropping syslog frames (counted as shed)"
                            );
                            shed_unlogged = 0;
                            last_shed_log = Some(Instant::now());
                        }
                    }
                    Err(TrySendError::Closed(_)) => return,
                }
            }
        }
    }
}

/// Splits the (lossily decoded) text of one datagram into syslog frames.
///
/// Frames end at a newline, a NUL, and where a new frame starts in the middle of a line: a
/// `<PRI>` (1 to 3 digits, value at most 191) followed by an RFC 3164 timestamp (month name,
/// space, then the day's first character, a digit or a padding space) or by an RFC 5424
/// version (`1`, space, then a digit or `-` for a timestamp that is absent). Anything else
/// that looks like `<N>` stays in the message. A `\r` before a newline is dropped and blank
/// frames are skipped; otherwise concatenating the frames of a line gives the line back.
pub fn split_frames(datagram: &str) -> impl Iterator<Item = &str> {
    datagram
        .split(['\n', '\0'])
        .flat_map(|line| Frames { rest: line.strip_suffix('\r').unwrap_or(line) })
        .filter(|frame| !frame.trim().is_empty())
}

/// The frames of one line; see [`split_frames`].
struct Frames<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = next_frame_start(self.rest).unwrap_or(self.rest.len());
        let (frame, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(frame)
    }
}

/// Byte offset of the first `<` after the start of `line` that begins a new frame. It is
/// always a character boundary because `<` is ASCII.
fn next_frame_start(line: &str) -> Option<usize> {
    // Offset 0 is the start of the current frame, not a new one.
    line.match_indices('<').map(|(i, _)| i).filter(|&i| i > 0).find(|&i| starts_frame(&line.as_bytes()[i..]))
}

/// Whether `s` starts with `<PRI>` followed by the start of an RFC 3164 or RFC 5424 header.
fn starts_frame(s: &[u8]) -> bool {
    let Some(after) = strip_pri(s) else {
        return false;
    };
    let rfc3164 = after.len() >= 5
        && MONTHS.iter().any(|month| after.starts_with(*month))
        && after[3] == b' '
        && (after[4].is_ascii_digit() || after[4] == b' ');
    let rfc5424 = after.len() >= 3 && after.starts_with(b"1 ") && (after[2].is_ascii_digit() || after[2] == b'-');
    rfc3164 || rfc5424
}

/// The bytes after a leading `<PRI>` with 1 to 3 digits and a value of at most [`MAX_PRI`].
fn strip_pri(s: &[u8]) -> Option<&[u8]> {
    let s = s.strip_prefix(b"<")?;
    // Looking at 4 bytes is enough to reject a 4-digit number.
    let digits = s.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || s.get(digits) != Some(&b'>') {
        return None;
    }
    let value = s[..digits].iter().fold(0u16, |value, d| value * 10 + u16::from(d - b'0'));
    (value <= MAX_PRI).then(|| &s[digits + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdpSocket;
    use tokio::time::timeout;

    /// Upper bound for anything a test waits for; a bug fails instead of hanging.
    const WAIT: Duration = Duration::from_secs(5);

    /// Real lines, one frame or several per line; `tests/data/README.md` says where each is from.
    const REAL: &str = include_str!("../../tests/data/syslog-frames.log");

    fn real_line(index: usize) -> &'static str {
        REAL.lines().nth(index).expect("line in tests/data/syslog-frames.log")
    }

    fn frames(datagram: &str) -> Vec<&str> {
        split_frames(datagram).collect()
    }

    #[test]
    fn split_frames_drops_separators_and_empty_frames() {
        let frame = "<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m";
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("\n\r\n\0\0 \n", &[]),
            ("<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m", &[frame]),
            ("<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m\n", &[frame]),
            ("<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m\r\n", &[frame]),
            ("<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m\0\0", &[frame]),
            ("<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m\0\n\n", &[frame]),
            (
                "\n<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m\n\n<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m",
                &[frame, frame],
            ),
            // The samples keep trailing spaces that routers print; so do frames.
            ("<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m  ", &["<13>Jun 10 10:39:51 OpenWrt dropbear[1]: m  "]),
        ];
        for (datagram, expected) in cases {
            assert_eq!(frames(datagram), *expected, "datagram {datagram:?}");
        }
    }

    #[test]
    fn split_frames_splits_where_a_header_starts_mid_line() {
        // Each case is the frames expected; the datagram is them run together.
        let cases: &[&[&str]] = &[
            &[
                "<30>Jun 10 10:39:51 OpenWrt netifd: Interface 'lan' is now up",
                "<30>Jun 10 10:39:51 OpenWrt netifd: Interface 'lan' has link connectivity",
            ],
            &["<1>May  2 00:00:00 h t: padded day", "<2>May 2 00:00:00 h t: unpadded day"],
            &[
                "<30>1 2024-05-27T17:26:51-04:00 h a - - - x",
                "<11>1 - h a - - - no timestamp",
                "<0>Jan  1 00:00:00 h t: y",
            ],
            &["<0>Jan  1 00:00:00 h t: a", "<191>Dec 31 23:59:59 h t: b", "<000>Feb  1 00:00:00 h t: c"],
            &["Jun 10 10:39:51 h t: a line need not start with PRI", "<13>Jun 10 10:39:52 h t: b"],
            &["<13>Jun 10 10:39:51 h t: ends in a space ", "<13>Jun 10 10:39:52 h t: b"],
        ];
        for expected in cases {
            assert_eq!(frames(&expected.concat()), *expected);
        }
    }

    #[test]
    fn split_frames_keeps_other_angle_brackets_in_the_message() {
        let lines = [
            "<13>Jun 10 10:39:51 h t: PRI above 191 <192>Jun 10 10:39:51",
            "<13>Jun 10 10:39:51 h t: four digits <0013>Jun 10 10:39:51",
            "<13>Jun 10 10:39:51 h t: no digits <>Jun 10 or <x>Jun 10",
            "<13>Jun 10 10:39:51 h t: not a month <1>June 10, <1>Jux 10, <1>jun 10",
            "<13>Jun 10 10:39:51 h t: month without day <1>Dec sale, <2>Jun",
            "<13>Jun 10 10:39:51 h t: not a version <1>1 x, <1>2 2024, <1>1",
            "<13>Jun 10 10:39:51 h t: unclosed <13 Jun 10 10:39:51",
            "<4>[ 1771.485552] Free swap  = 0kB <6>[ 1.0] kernel lines have no timestamp",
        ];
        for line in lines {
            assert_eq!(frames(line), [line]);
        }
    }

    #[test]
    fn split_frames_real_lines() {
        let counts: Vec<usize> = REAL.lines().map(|line| frames(line).len()).collect();
        assert_eq!(counts, [3, 14, 1, 1, 1, 1]);
        for line in REAL.lines() {
            assert_eq!(frames(line).concat(), line, "nothing lost or added");
        }
        assert_eq!(
            frames(real_line(0)),
            [
                "<30>May  2 12:15:20 OpenWrt ipsec: 07[KNL] interface eth1 deactivated",
                "<6>May  2 12:15:20 OpenWrt kernel: [  272.870532] br-lan: port 1(eth1) entered disabled state",
                "<30>May  2 12:15:20 OpenWrt ipsec: 02[NET] using forecast interface eth0",
            ]
        );
        let long = frames(real_line(1));
        assert_eq!(long[1], "<29>May  2 12:15:31 OpenWrt netifd: Network device 'eth1' link is up");
        assert_eq!(long[11], "<29>May  2 12:18:27 OpenWrt netifd: Interface 'lan' has link connectivity");
        for frame in long {
            let pri = ["<6>May  2 ", "<29>May  2 ", "<30>May  2 "];
            assert!(pri.iter().any(|p| frame.starts_with(p)), "{frame}");
        }
        // The whole sample file as one datagram.
        assert_eq!(frames(REAL).len(), 21);
    }

    #[test]
    fn split_frames_after_lossy_decoding() {
        let bytes = b"<30>Jun 10 10:39:51 h t: caf\xe9<29>Jun 10 10:39:52 h t: \xff\xfe\n";
        let text = String::from_utf8_lossy(bytes);
        assert_eq!(
            frames(&text),
            ["<30>Jun 10 10:39:51 h t: caf\u{fffd}", "<29>Jun 10 10:39:52 h t: \u{fffd}\u{fffd}"]
        );
        // A PRI right after an invalid byte is still found.
        let text = String::from_utf8_lossy(b"\xc3<1>Jan  1 00:00:00 h t: x");
        assert_eq!(frames(&text), ["\u{fffd}", "<1>Jan  1 00:00:00 h t: x"]);
    }

    /// A bound source running on the current runtime, with its channel and counters.
    struct Running {
        addr: SocketAddr,
        rx: mpsc::Receiver<String>,
        stats: Arc<SourceStats>,
        task: tokio::task::JoinHandle<()>,
        sender: StdUdpSocket,
    }

    async fn start(queue: usize) -> Running {
        let source = UdpSource::bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
        let addr = source.local_addr();
        assert_ne!(addr.port(), 0);
        let (tx, rx) = mpsc::channel(queue);
        let stats = Arc::new(SourceStats::default());
        let task = tokio::spawn(source.run(tx, Arc::clone(&stats)));
        let sender = StdUdpSocket::bind("127.0.0.1:0").expect("bind sender");
        Running { addr, rx, stats, task, sender }
    }

    impl Running {
        fn send(&self, datagram: &[u8]) {
            let sent = self.sender.send_to(datagram, self.addr).expect("send datagram");
            assert_eq!(sent, datagram.len());
        }

        async fn recv(&mut self) -> String {
            timeout(WAIT, self.rx.recv()).await.expect("a line in time").expect("source alive")
        }

        /// Waits until the source has received `n` datagrams in total.
        async fn wait_for_datagrams(&self, n: u64) {
            let deadline = tokio::time::Instant::now() + WAIT;
            while self.stats.snapshot().datagrams < n {
                assert!(tokio::time::Instant::now() < deadline, "only {:?}", self.stats.snapshot());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    #[tokio::test]
    async fn datagrams_become_lines() {
        let mut src = start(16).await;
        src.send(b"<13>Jun 10 10:39:51 OpenWrt dropbear[1]: one\n");
        src.send(real_line(0).as_bytes());
        src.send(b"<14>1 2024-05-27T17:26:51Z h app - - - five\0");
        src.send(b"");
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(src.recv().await);
        }
        assert_eq!(got[0], "<13>Jun 10 10:39:51 OpenWrt dropbear[1]: one");
        assert_eq!(got[1..4].concat(), real_line(0));
        assert_eq!(got[4], "<14>1 2024-05-27T17:26:51Z h app - - - five");
        src.wait_for_datagrams(4).await;
        let stats = src.stats.snapshot();
        assert_eq!((stats.lines, stats.shed, stats.truncated), (5, 0, 0), "{stats:?}");
    }

    #[tokio::test]
    async fn a_full_channel_sheds_frames_instead_of_blocking() {
        let mut src = start(2).await;
        for i in 0..5 {
            src.send(format!("<13>Jun 10 10:39:51 h t: {i}").as_bytes());
        }
        src.wait_for_datagrams(5).await;
        let stats = src.stats.snapshot();
        assert_eq!((stats.lines, stats.shed), (2, 3), "{stats:?}");
        assert_eq!(src.recv().await, "<13>Jun 10 10:39:51 h t: 0");
        assert_eq!(src.recv().await, "<13>Jun 10 10:39:51 h t: 1");

        // Still receiving after shedding.
        src.send(b"<13>Jun 10 10:39:52 h t: after");
        assert_eq!(src.recv().await, "<13>Jun 10 10:39:52 h t: after");
        assert_eq!(src.stats.snapshot().shed, 3);
    }

    #[tokio::test]
    async fn oversized_datagrams_are_cut_and_counted() {
        let mut src = start(4).await;
        let mut big = b"<13>Jun 10 10:39:51 h t: ".to_vec();
        big.resize(MAX_DATAGRAM + 500, b'x');
        src.send(&big);
        let exact = vec![b'y'; MAX_DATAGRAM];
        src.send(&exact);
        let line = src.recv().await;
        assert_eq!(line.len(), MAX_DATAGRAM);
        assert!(big.starts_with(line.as_bytes()));
        assert_eq!(src.recv().await.len(), MAX_DATAGRAM);
        src.wait_for_datagrams(2).await;
        assert_eq!(src.stats.snapshot().truncated, 1, "a datagram of exactly MAX_DATAGRAM is whole");
    }

    #[tokio::test]
    async fn run_returns_when_the_receiver_is_dropped() {
        let src = start(4).await;
        drop(src.rx);
        timeout(WAIT, src.task).await.expect("run returns").expect("run task");
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let taken = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("local addr");
        let err = UdpSource::bind(addr).await.expect_err("address in use");
        let message = err.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(message.starts_with("cannot listen for syslog on udp "), "{message}");
    }
}
