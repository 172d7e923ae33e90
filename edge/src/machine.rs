//! The edge as a state machine: everything the main loop decides, without
//! I/O, clocks or sockets, in the manner of rumqttc's `MqttState` (the
//! driver in [`crate::run`] is its `EventLoop`).
//!
//! Inputs ([`Input`]): log lines, the uplink connecting and disconnecting,
//! verified downlink messages, ticks carrying the time, and the uplink's
//! refusal of a publish. Outputs: [`Publish`] requests, appended to a
//! caller's vector. The machine owns the detection [`Pipeline`], the
//! [`Spool`] and the delivery timers; the driver owns the sockets and fills
//! in what only the host knows (memory, load, source counters) before a
//! heartbeat goes out.
//!
//! Invariants:
//! - a finding batch is handed out only while the uplink is connected, and
//!   the spool counts it as sent; a refused batch is taken back at once
//!   ([`Input::Refused`]), so nothing is marked sent that did not leave;
//! - with findings in flight and no progress for the ack timeout, the spool
//!   rewinds and the timeout doubles (to [`ACK_TIMEOUT_MAX`]); any ack that
//!   frees findings resets it.

use std::time::Duration;

use opmas_proto::msg::{Ack, Finding, FindingBatch, Heartbeat};
use opmas_proto::Channel;
use tracing::{debug, info, warn};

use crate::config::AgentsConfig;
use crate::pipeline::Pipeline;
use crate::spool::Spool;

/// Largest finding batch on the wire.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Most bytes of findings sent and not yet acknowledged. The hub stores
/// what it receives in order and acks within milliseconds, so two batches in
/// flight keep a router's burst moving at the hub's pace, while a fleet's
/// bursts together stay far below what the broker buffers (the embedded
/// broker skips what overflows, and a skipped batch costs a resend).
pub const WINDOW_BYTES: usize = 2 * MAX_BATCH_BYTES;
/// Resend unacked findings after this long without an ack; doubled after
/// each timeout up to [`ACK_TIMEOUT_MAX`], so that a slow hub is not fed the
/// same findings again and again, and reset by the next ack.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(20);
pub const ACK_TIMEOUT_MAX: Duration = Duration::from_secs(160);

/// A verified, decoded message from the hub (see `uplink::Uplink::open`).
#[derive(Clone, Debug, PartialEq)]
pub enum Downlink {
    Ack(Ack),
}

/// What happened, with the time where it matters. `now` is monotonic time
/// since the edge started; `now_ms` is the wall clock (unix ms).
#[derive(Debug)]
pub enum Input<'a> {
    /// A log line, with its arrival time.
    Line {
        line: &'a str,
        now: Duration,
        now_ms: u64,
    },
    /// The uplink is connected (and subscribed).
    Connected {
        now: Duration,
    },
    Disconnected,
    Downlink {
        msg: Downlink,
        now: Duration,
    },
    /// Once a second or so.
    Tick {
        now: Duration,
        now_ms: u64,
    },
    /// The uplink did not take a publish the machine asked for.
    Refused(Publish),
}

/// A message for the hub.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    Findings(FindingBatch),
    /// Host fields (`load_milli`, `rss_kib`, source counters in `counters`)
    /// are the driver's to fill in.
    Heartbeat(Heartbeat),
}

/// A publish request.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub body: Outgoing,
}

impl Publish {
    /// The channel the body travels on.
    pub fn channel(&self) -> Channel {
        use opmas_proto::Body;
        match &self.body {
            Outgoing::Findings(_) => FindingBatch::CHANNEL,
            Outgoing::Heartbeat(_) => Heartbeat::CHANNEL,
        }
    }
}

/// The edge's state.
pub struct Edge {
    pipeline: Pipeline,
    spool: Spool,
    epoch: u64,
    version: String,
    heartbeat_interval: Duration,
    connected: bool,
    last_heartbeat: Option<Duration>,
    /// When findings last moved (sent with nothing in flight, or acked).
    last_progress: Duration,
    ack_timeout: Duration,
    found: Vec<Finding>,
}

impl Edge {
    pub fn new(agents: &AgentsConfig, epoch: u64, spool_bytes: usize, heartbeat_interval: Duration) -> Edge {
        Edge {
            pipeline: Pipeline::new(agents),
            spool: Spool::new(epoch, spool_bytes),
            epoch,
            version: env!("CARGO_PKG_VERSION").into(),
            heartbeat_interval,
            connected: false,
            last_heartbeat: None,
            last_progress: Duration::ZERO,
            ack_timeout: ACK_TIMEOUT,
            found: Vec::new(),
        }
    }

    /// Handles one input; what to publish is appended to `out`.
    pub fn handle(&mut self, input: Input<'_>, out: &mut Vec<Publish>) {
        match input {
            Input::Line { line, now, now_ms } => {
                if self.pipeline.feed(line, now_ms, &mut self.found) > 0 {
                    self.spool_found();
                    self.flush(now, out);
                }
            }
            Input::Connected { now } => {
                self.connected = true;
                // What was in flight on the old connection may be lost.
                self.spool.rewind();
                self.heartbeat(now, out);
                self.flush(now, out);
            }
            Input::Disconnected => self.connected = false,
            Input::Downlink { msg: Downlink::Ack(ack), now } => {
                if self.on_ack(&ack, now) {
                    self.ack_timeout = ACK_TIMEOUT;
                }
                self.flush(now, out);
            }
            Input::Tick { now, now_ms } => {
                if self.pipeline.tick(now_ms, &mut self.found) > 0 {
                    self.spool_found();
                }
                if self.spool.awaiting_ack() && now.saturating_sub(self.last_progress) > self.ack_timeout {
                    warn!(
                        timeout_s = self.ack_timeout.as_secs(),
                        acked_upto = self.spool.stats().acked_upto,
                        "no ack from the hub; resending unacked findings"
                    );
                    self.spool.rewind();
                    self.ack_timeout = (self.ack_timeout * 2).min(ACK_TIMEOUT_MAX);
                    self.last_progress = now;
                }
                self.flush(now, out);
                if self.last_heartbeat.is_none_or(|t| now.saturating_sub(t) >= self.heartbeat_interval) {
                    self.heartbeat(now, out);
                }
            }
            Input::Refused(Publish { body: Outgoing::Findings(b), .. }) => {
                if let Some(last) = b.findings.last() {
                    self.spool.unsend(last.seq);
                }
            }
            Input::Refused(Publish { body: Outgoing::Heartbeat(_), .. }) => {
                // The next one is due in an interval; nothing to keep.
                self.last_heartbeat = None;
            }
        }
    }

    /// The detection pipeline (counters, agents).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Moves new findings into the spool, logging each.
    fn spool_found(&mut self) {
        for f in self.found.drain(..) {
            info!(kind = %f.kind, stage = f.stage.as_str(), summary = %f.summary, "finding");
            self.spool.push(f);
        }
    }

    /// Hands out as many unsent findings as the window allows.
    fn flush(&mut self, now: Duration, out: &mut Vec<Publish>) {
        if !self.connected {
            return;
        }
        while let Some(batch) = self.spool.next_batch(MAX_BATCH_BYTES, WINDOW_BYTES) {
            let Some(last) = batch.findings.last().map(|f| f.seq) else { return };
            if !self.spool.awaiting_ack() {
                self.last_progress = now;
            }
            self.spool.mark_sent(last);
            out.push(Publish { body: Outgoing::Findings(batch) });
        }
    }

    /// Applies an ack; true if it freed findings or made the spool resend.
    fn on_ack(&mut self, ack: &Ack, now: Duration) -> bool {
        let freed = self.spool.ack(ack.epoch, ack.upto);
        if freed > 0 {
            debug!(upto = ack.upto, freed, "hub acknowledged findings");
        }
        let rewound = match ack.gap {
            Some(round) if self.spool.gap(ack.epoch, ack.upto, round) => {
                info!(upto = ack.upto, round, "the hub missed findings after the acked ones; sending them again");
                true
            }
            _ => false,
        };
        if freed > 0 || rewound {
            self.last_progress = now;
        }
        freed > 0 || rewound
    }

    fn heartbeat(&mut self, now: Duration, out: &mut Vec<Publish>) {
        if !self.connected {
            return;
        }
        self.last_heartbeat = Some(now);
        let hb = Heartbeat {
            epoch: self.epoch,
            uptime_s: now.as_secs(),
            version: self.version.clone(),
            config_version: 0,
            spool: self.spool.stats(),
            agents: self.pipeline.agent_status(),
            counters: self.pipeline.counters().clone(),
            load_milli: None,
            rss_kib: None,
        };
        out.push(Publish { body: Outgoing::Heartbeat(hb) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    fn edge() -> Edge {
        Edge::new(&AgentsConfig::default(), 7, 1 << 20, Duration::from_secs(30))
    }

    /// Five failed logins from `ip`: one brute-force finding.
    fn attack(e: &mut Edge, ip: &str, now: Duration, out: &mut Vec<Publish>) {
        for i in 0..5 {
            let line = format!(
                "Dec  5 17:43:5{i} gw dropbear[{}]: Bad password attempt for 'root' from {ip}:{}",
                100 + i,
                40000 + i
            );
            e.handle(Input::Line { line: &line, now, now_ms: 1_733_420_630_000 + i as u64 * 1000 }, out);
        }
    }

    fn batches(out: &[Publish]) -> Vec<Vec<u64>> {
        out.iter()
            .filter_map(|p| match &p.body {
                Outgoing::Findings(b) => Some(b.findings.iter().map(|f| f.seq).collect()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nothing_leaves_before_the_uplink_connects_and_all_of_it_does_after() {
        let mut e = edge();
        let mut out = Vec::new();
        attack(&mut e, "198.51.100.1", T, &mut out);
        assert!(out.is_empty(), "offline: {out:?}");
        assert_eq!(e.spool().stats().depth, 1);
        e.handle(Input::Connected { now: 2 * T }, &mut out);
        assert!(matches!(out[0].body, Outgoing::Heartbeat(_)), "a heartbeat first: {out:?}");
        assert_eq!(batches(&out), vec![vec![1]]);
    }

    #[test]
    fn an_ack_frees_findings_and_silence_resends_with_a_doubling_timeout() {
        let mut e = edge();
        let mut out = Vec::new();
        e.handle(Input::Connected { now: T }, &mut out);
        attack(&mut e, "198.51.100.1", T, &mut out);
        assert_eq!(batches(&out), vec![vec![1]]);
        out.clear();
        // No ack for the timeout: resent, and the next timeout is twice as long.
        e.handle(Input::Tick { now: T + ACK_TIMEOUT + T, now_ms: 0 }, &mut out);
        assert_eq!(batches(&out), vec![vec![1]]);
        out.clear();
        e.handle(Input::Tick { now: T + 2 * ACK_TIMEOUT + 2 * T, now_ms: 0 }, &mut out);
        assert!(batches(&out).is_empty(), "not yet: the timeout doubled");
        e.handle(Input::Tick { now: T + 3 * ACK_TIMEOUT + 3 * T, now_ms: 0 }, &mut out);
        assert_eq!(batches(&out), vec![vec![1]]);
        out.clear();
        let ack = Ack { epoch: 7, upto: 1, gap: None };
        e.handle(Input::Downlink { msg: Downlink::Ack(ack), now: 100 * T }, &mut out);
        assert_eq!(e.spool().stats().depth, 0);
        assert!(!e.spool().awaiting_ack());
        // An ack of another run frees nothing.
        attack(&mut e, "198.51.100.2", 101 * T, &mut out);
        e.handle(Input::Downlink { msg: Downlink::Ack(Ack { epoch: 8, upto: 9, gap: None }), now: 102 * T }, &mut out);
        assert_eq!(e.spool().stats().depth, 1);
    }

    #[test]
    fn a_refused_batch_is_taken_back_and_sent_again() {
        let mut e = edge();
        let mut out = Vec::new();
        e.handle(Input::Connected { now: T }, &mut out);
        out.clear();
        attack(&mut e, "198.51.100.1", T, &mut out);
        let refused = out.pop().unwrap();
        e.handle(Input::Refused(refused), &mut out);
        assert!(!e.spool().awaiting_ack(), "nothing counts as in flight");
        e.handle(Input::Tick { now: 2 * T, now_ms: 0 }, &mut out);
        assert_eq!(batches(&out), vec![vec![1]]);
    }

    #[test]
    fn a_reconnect_resends_what_was_in_flight_and_heartbeats_follow_the_interval() {
        let mut e = edge();
        let mut out = Vec::new();
        e.handle(Input::Connected { now: T }, &mut out);
        attack(&mut e, "198.51.100.1", T, &mut out);
        e.handle(Input::Disconnected, &mut out);
        out.clear();
        e.handle(Input::Tick { now: 40 * T, now_ms: 0 }, &mut out);
        assert!(out.is_empty(), "offline: no heartbeat, no findings");
        e.handle(Input::Connected { now: 41 * T }, &mut out);
        assert_eq!(batches(&out), vec![vec![1]]);
        out.clear();
        e.handle(Input::Tick { now: 50 * T, now_ms: 0 }, &mut out);
        assert!(out.is_empty(), "the heartbeat interval has not passed");
        e.handle(Input::Tick { now: 71 * T, now_ms: 0 }, &mut out);
        let hb = out.iter().find_map(|p| match &p.body {
            Outgoing::Heartbeat(hb) => Some(hb),
            _ => None,
        });
        let Some(hb) = hb else { panic!("{out:?}") };
        assert_eq!((hb.epoch, hb.uptime_s, hb.spool.depth), (7, 71, 1));
    }
}
