//! The edge's main loop: the one place that owns the sources' channel, the
//! MQTT connection, the agents and the spool, and reacts to one event at a time.

use std::future::Future;
use std::time::{Duration, Instant};

use opmas_proto::msg::{Ack, AgentState, AgentStatus, Counters, Finding, Heartbeat};
use opmas_proto::Channel;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::agents::network::NetworkAgent;
use crate::agents::security::SecurityAgent;
use crate::agents::system::SystemAgent;
use crate::agents::wifi::WifiAgent;
use crate::agents::{Agent, Meta};
use crate::classify::classify;
use crate::config::{AgentsConfig, EdgeConfig};
use crate::parse::{self, parse_line};
use crate::sources::SourceStats;
use crate::spool::Spool;
use crate::uplink::{now_ms, Uplink, UplinkEvent};

/// Largest finding batch on the wire.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Most bytes of findings sent and not yet acknowledged. The hub stores
/// what it receives in order and acks within milliseconds, so two batches in
/// flight keep a router's burst moving at the hub's pace, while a fleet's
/// bursts together stay far below what the broker buffers (the embedded
/// broker skips what overflows, and a skipped batch costs a resend).
const WINDOW_BYTES: usize = 2 * MAX_BATCH_BYTES;
/// Resend unacked findings after this long without an ack; doubled after
/// each timeout up to `ACK_TIMEOUT_MAX`, so that a slow hub is not fed the
/// same findings again and again, and reset by the next ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(20);
const ACK_TIMEOUT_MAX: Duration = Duration::from_secs(160);

/// The detection pipeline without I/O: parse, classify, agents.
pub struct Pipeline {
    agents: Vec<Box<dyn Agent>>,
    /// Line counters for the heartbeat.
    counters: Counters,
    /// Lines that carried an event.
    events: u64,
    /// The latest timestamp seen in a line (unix ms; 0 before any).
    log_clock_ms: u64,
}

impl Pipeline {
    /// The enabled agents of `cfg`.
    pub fn new(cfg: &AgentsConfig) -> Self {
        let mut agents: Vec<Box<dyn Agent>> = Vec::new();
        if let Some(c) = &cfg.security {
            agents.push(Box::new(SecurityAgent::new(*c)));
        }
        if let Some(c) = &cfg.wifi {
            agents.push(Box::new(WifiAgent::new(*c)));
        }
        if let Some(c) = &cfg.network {
            agents.push(Box::new(NetworkAgent::new(*c)));
        }
        if let Some(c) = &cfg.system {
            agents.push(Box::new(SystemAgent::new(*c)));
        }
        Pipeline { agents, counters: Counters::default(), events: 0, log_clock_ms: 0 }
    }

    /// All four agents with their default thresholds.
    pub fn with_defaults() -> Self {
        Pipeline::new(&AgentsConfig::default())
    }

    /// Parses one line and runs the agents; findings are appended to `out`.
    /// Returns how many the line produced.
    pub fn feed(&mut self, line: &str, arrival_ms: u64, out: &mut Vec<Finding>) -> usize {
        self.counters.lines += 1;
        let record = match parse_line(line, parse::Context::at(arrival_ms)) {
            Ok(r) => r,
            Err(e) => {
                self.counters.unparsed += 1;
                debug!(error = %e, "unparsed line");
                return 0;
            }
        };
        self.log_clock_ms = self.log_clock_ms.max(record.ts_ms.unwrap_or(arrival_ms));
        let Some(event) = classify(&record) else { return 0 };
        self.events += 1;
        let meta = Meta { line, now_ms: record.ts_ms.unwrap_or(arrival_ms), program: record.program, pid: record.pid };
        let before = out.len();
        for agent in &mut self.agents {
            agent.on_event(&event, &meta, out);
        }
        self.found(out.len() - before)
    }

    /// Lets the agents close windows and expire state; appends any updates to `out`.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>) -> usize {
        let before = out.len();
        for agent in &mut self.agents {
            agent.tick(now_ms, out);
        }
        self.found(out.len() - before)
    }

    fn found(&mut self, n: usize) -> usize {
        self.counters.findings += n as u64;
        n
    }

    /// Lines read, unparsed, findings produced.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The latest time any line said (or its arrival time), never going back:
    /// the clock a replay ticks the agents by.
    pub fn log_clock_ms(&self) -> u64 {
        self.log_clock_ms
    }

    /// Lines that carried an event.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Each agent's line in the heartbeat.
    pub fn agent_status(&self) -> Vec<AgentStatus> {
        self.agents
            .iter()
            .map(|a| {
                let c = a.counters();
                AgentStatus {
                    name: a.name().into(),
                    state: AgentState::Running,
                    events: c.events,
                    findings: c.findings,
                    evicted: c.evicted,
                }
            })
            .collect()
    }
}

/// Draws the run epoch from the OS RNG (top bit clear, so it survives a
/// round trip through signed 64-bit database columns unchanged in meaning).
pub fn new_epoch() -> u64 {
    let mut b = [0u8; 8];
    // Falling back to the clock keeps the edge running on a system without
    // getrandom; uniqueness then rests on restarts being apart in time.
    if getrandom::getrandom(&mut b).is_err() {
        return now_ms() >> 1;
    }
    u64::from_le_bytes(b) >> 1
}

/// Runs the edge until `shutdown` resolves, reading lines from `lines`.
pub async fn run(
    cfg: EdgeConfig,
    mut lines: mpsc::Receiver<String>,
    sources: Arc<SourceStats>,
    shutdown: impl Future<Output = ()>,
) {
    let started = Instant::now();
    let epoch = new_epoch();
    let mut pipeline = Pipeline::new(&cfg.agents);
    let mut spool = Spool::new(epoch, cfg.hub.spool_bytes);
    let mut found: Vec<Finding> = Vec::new();
    let (ev_tx, mut events) = mpsc::channel(64);
    let mut uplink = Uplink::start(&cfg.hub, ev_tx);
    info!(device = %cfg.hub.device_id, hub = %format!("{}:{}", cfg.hub.host, cfg.hub.port), epoch, "opmas-edge running");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut ack_timeout = ACK_TIMEOUT;
    let mut lines_open = true;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            line = lines.recv(), if lines_open => match line {
                Some(line) => {
                    if pipeline.feed(&line, now_ms(), &mut found) > 0 {
                        spool_findings(&mut found, &mut spool);
                        flush(&mut spool, &mut uplink, &mut last_progress);
                    }
                }
                None => lines_open = false,
            },
            ev = events.recv() => match ev {
                Some(UplinkEvent::Connected) => {
                    uplink.on_connected();
                    spool.rewind();
                    send_heartbeat(&pipeline, &spool, &sources, &mut uplink, started, epoch);
                    last_heartbeat = Some(Instant::now());
                    flush(&mut spool, &mut uplink, &mut last_progress);
                }
                Some(UplinkEvent::Disconnected(_)) => uplink.on_disconnected(),
                Some(UplinkEvent::Message { topic, payload }) => {
                    if on_downlink(&topic, &payload, &mut spool, &uplink, &mut last_progress) {
                        ack_timeout = ACK_TIMEOUT;
                    }
                    flush(&mut spool, &mut uplink, &mut last_progress);
                }
                None => break,
            },
            _ = tick.tick() => {
                if pipeline.tick(now_ms(), &mut found) > 0 {
                    spool_findings(&mut found, &mut spool);
                }
                if spool.awaiting_ack() && last_progress.elapsed() > ack_timeout {
                    warn!(
                        timeout_s = ack_timeout.as_secs(),
                        acked_upto = spool.stats().acked_upto,
                        "no ack from the hub; resending unacked findings"
                    );
                    spool.rewind();
                    ack_timeout = (ack_timeout * 2).min(ACK_TIMEOUT_MAX);
                    last_progress = Instant::now();
                }
                flush(&mut spool, &mut uplink, &mut last_progress);
                if uplink.is_connected() && last_heartbeat.is_none_or(|t| t.elapsed() >= cfg.hub.heartbeat_interval) {
                    send_heartbeat(&pipeline, &spool, &sources, &mut uplink, started, epoch);
                    last_heartbeat = Some(Instant::now());
                }
            },
            _ = &mut shutdown => break,
        }
    }
    info!("opmas-edge stopping");
    uplink.goodbye().await;
}

/// Publishes as many unsent findings as the uplink takes.
fn flush(spool: &mut Spool, uplink: &mut Uplink, last_progress: &mut Instant) {
    while uplink.is_connected() {
        let Some(batch) = spool.next_batch(MAX_BATCH_BYTES, WINDOW_BYTES) else { return };
        let Some(last) = batch.findings.last().map(|f| f.seq) else { return };
        match uplink.publish(Channel::Finding, &batch, false) {
            Ok(()) => {
                if !spool.awaiting_ack() {
                    *last_progress = Instant::now();
                }
                spool.mark_sent(last);
            }
            Err(e) => {
                debug!(error = %e, "finding batch deferred");
                return;
            }
        }
    }
}

/// Handles one downlink message; returns true if an ack freed findings or
/// made the spool resend (progress, for the ack timeout).
fn on_downlink(topic: &str, payload: &[u8], spool: &mut Spool, uplink: &Uplink, last_progress: &mut Instant) -> bool {
    let (channel, env) = match uplink.open(topic, payload) {
        Ok(v) => v,
        Err(e) => {
            warn!(topic, error = %e, "dropped downlink message");
            return false;
        }
    };
    match channel {
        Channel::Ack => match env.body::<Ack>() {
            Ok(ack) => {
                let freed = spool.ack(ack.epoch, ack.upto);
                if freed > 0 {
                    debug!(upto = ack.upto, freed, "hub acknowledged findings");
                }
                let rewound = match ack.gap {
                    Some(round) if spool.gap(ack.epoch, ack.upto, round) => {
                        info!(
                            upto = ack.upto,
                            round, "the hub missed findings after the acked ones; sending them again"
                        );
                        true
                    }
                    _ => false,
                };
                if freed > 0 || rewound {
                    *last_progress = Instant::now();
                    return true;
                }
                false
            }
            Err(e) => {
                warn!(error = %e, "malformed ack");
                false
            }
        },
        other => {
            debug!(channel = %other, "downlink channel not handled yet");
            false
        }
    }
}

/// Moves new findings into the spool, logging each.
fn spool_findings(found: &mut Vec<Finding>, spool: &mut Spool) {
    for f in found.drain(..) {
        info!(kind = %f.kind, update = f.update, summary = %f.summary, "finding");
        spool.push(f);
    }
}

fn send_heartbeat(
    p: &Pipeline,
    spool: &Spool,
    sources: &SourceStats,
    uplink: &mut Uplink,
    started: Instant,
    epoch: u64,
) {
    let src = sources.snapshot();
    let counters = Counters { shed: src.shed, truncated: src.truncated, ..p.counters().clone() };
    let hb = Heartbeat {
        epoch,
        uptime_s: started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").into(),
        config_version: 0,
        spool: spool.stats(),
        agents: p.agent_status(),
        counters,
        load_milli: load_milli(),
        rss_kib: rss_kib(),
    };
    if let Err(e) = uplink.publish(Channel::Heartbeat, &hb, false) {
        debug!(error = %e, "heartbeat skipped");
    }
}

/// 1-minute load average × 1000 from `/proc/loadavg`.
fn load_milli() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let first: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some((first * 1000.0) as u32)
}

/// Resident set size from `/proc/self/status`.
fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
