//! The edge's main loop: the one place that owns the sources' channel, the
//! MQTT connection, the agents and the spool, and reacts to one event at a time.

use std::future::Future;
use std::time::{Duration, Instant};

use opmas_proto::msg::{Ack, AgentState, AgentStatus, Counters, Finding, Heartbeat};
use opmas_proto::Channel;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::agents::security::SecurityAgent;
use crate::agents::{Agent, Input};
use crate::config::EdgeConfig;
use crate::parse::{self, parse_line};
use crate::spool::Spool;
use crate::uplink::{now_ms, Uplink, UplinkEvent};

/// Largest finding batch on the wire.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Resend unacked findings after this long without an ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(20);

/// The detection pipeline without I/O: parse, agents, spool.
pub struct Pipeline {
    agents: Vec<Box<dyn Agent>>,
    pub spool: Spool,
    counters: Counters,
    /// Findings produced by the last call, reused to avoid allocation.
    scratch: Vec<Finding>,
}

impl Pipeline {
    pub fn new(cfg: &EdgeConfig, epoch: u64) -> Self {
        Pipeline {
            agents: vec![Box::new(SecurityAgent::new(cfg.security))],
            spool: Spool::new(epoch, cfg.hub.spool_bytes),
            counters: Counters::default(),
            scratch: Vec::new(),
        }
    }

    /// Parses one line and runs the agents; new findings go to the spool.
    /// Returns how many findings the line produced.
    pub fn feed(&mut self, line: &str, arrival_ms: u64) -> usize {
        self.counters.lines += 1;
        let ctx = parse::Context { year: parse::year_of(arrival_ms) };
        let record = match parse_line(line, ctx) {
            Ok(r) => r,
            Err(e) => {
                self.counters.unparsed += 1;
                debug!(error = %e, "unparsed line");
                return 0;
            }
        };
        let input = Input { record: &record, line, now_ms: record.ts_ms.unwrap_or(arrival_ms) };
        for agent in &mut self.agents {
            agent.on_record(input, &mut self.scratch);
        }
        self.drain()
    }

    /// Lets the agents expire state.
    pub fn tick(&mut self, now_ms: u64) -> usize {
        for agent in &mut self.agents {
            agent.tick(now_ms, &mut self.scratch);
        }
        self.drain()
    }

    fn drain(&mut self) -> usize {
        let n = self.scratch.len();
        for f in self.scratch.drain(..) {
            info!(kind = %f.kind, summary = %f.summary, "finding");
            self.counters.findings += 1;
            self.spool.push(f);
        }
        n
    }

    fn agent_status(&self) -> Vec<AgentStatus> {
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
pub async fn run(cfg: EdgeConfig, mut lines: mpsc::Receiver<String>, shutdown: impl Future<Output = ()>) {
    let started = Instant::now();
    let epoch = new_epoch();
    let mut pipeline = Pipeline::new(&cfg, epoch);
    let (ev_tx, mut events) = mpsc::channel(64);
    let mut uplink = Uplink::start(&cfg.hub, ev_tx);
    info!(device = %cfg.hub.device_id, hub = %format!("{}:{}", cfg.hub.host, cfg.hub.port), epoch, "opmas-edge running");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut lines_open = true;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            line = lines.recv(), if lines_open => match line {
                Some(line) => {
                    if pipeline.feed(&line, now_ms()) > 0 {
                        flush(&mut pipeline.spool, &mut uplink, &mut last_progress);
                    }
                }
                None => lines_open = false,
            },
            ev = events.recv() => match ev {
                Some(UplinkEvent::Connected) => {
                    uplink.on_connected();
                    pipeline.spool.rewind();
                    send_heartbeat(&pipeline, &mut uplink, started, epoch);
                    last_heartbeat = Some(Instant::now());
                    flush(&mut pipeline.spool, &mut uplink, &mut last_progress);
                }
                Some(UplinkEvent::Disconnected(_)) => uplink.on_disconnected(),
                Some(UplinkEvent::Message { topic, payload }) => {
                    on_downlink(&topic, &payload, &mut pipeline.spool, &uplink, &mut last_progress);
                    flush(&mut pipeline.spool, &mut uplink, &mut last_progress);
                }
                None => break,
            },
            _ = tick.tick() => {
                pipeline.tick(now_ms());
                if pipeline.spool.awaiting_ack() && last_progress.elapsed() > ACK_TIMEOUT {
                    warn!(timeout_s = ACK_TIMEOUT.as_secs(), "no ack from the hub; resending unacked findings");
                    pipeline.spool.rewind();
                    last_progress = Instant::now();
                }
                flush(&mut pipeline.spool, &mut uplink, &mut last_progress);
                if uplink.is_connected() && last_heartbeat.is_none_or(|t| t.elapsed() >= cfg.hub.heartbeat_interval) {
                    send_heartbeat(&pipeline, &mut uplink, started, epoch);
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
        let Some(batch) = spool.next_batch(MAX_BATCH_BYTES) else { return };
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

fn on_downlink(topic: &str, payload: &[u8], spool: &mut Spool, uplink: &Uplink, last_progress: &mut Instant) {
    let (channel, env) = match uplink.open(topic, payload) {
        Ok(v) => v,
        Err(e) => {
            warn!(topic, error = %e, "dropped downlink message");
            return;
        }
    };
    match channel {
        Channel::Ack => match env.body::<Ack>() {
            Ok(ack) => {
                let freed = spool.ack(ack.epoch, ack.upto);
                if freed > 0 {
                    *last_progress = Instant::now();
                    debug!(upto = ack.upto, freed, "hub acknowledged findings");
                }
            }
            Err(e) => warn!(error = %e, "malformed ack"),
        },
        other => debug!(channel = %other, "downlink channel not handled yet"),
    }
}

fn send_heartbeat(p: &Pipeline, uplink: &mut Uplink, started: Instant, epoch: u64) {
    let hb = Heartbeat {
        epoch,
        uptime_s: started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").into(),
        config_version: 0,
        spool: p.spool.stats(),
        agents: p.agent_status(),
        counters: p.counters.clone(),
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
