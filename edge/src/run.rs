//! The edge's main loop: the driver of the [`Edge`] state machine
//! ([`crate::machine`]). It owns the sources' channel and the MQTT
//! connection, turns what happens into the machine's inputs one at a time,
//! and performs the publishes the machine asks for.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::commands::{ConfigFile, StateFile};
use crate::config::EdgeConfig;
use crate::machine::{Edge, Input, Outgoing, Publish};
use crate::sources::SourceStats;
use crate::uplink::{now_ms, Uplink, UplinkEvent};

pub use crate::pipeline::Pipeline;

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

/// Runs the edge until `shutdown` resolves, reading lines from `lines`: the
/// thin driver around [`Edge`]. It turns channel events and ticks into
/// inputs, seals and publishes what the machine asks for, and tells it
/// when the uplink did not take something.
pub async fn run(
    cfg: EdgeConfig,
    mut lines: mpsc::Receiver<String>,
    sources: Arc<SourceStats>,
    shutdown: impl Future<Output = ()>,
) {
    let started = Instant::now();
    let epoch = new_epoch();
    let state = StateFile::new(&cfg.hub.state_dir);
    let last_command = state.load().unwrap_or_else(|e| {
        warn!(error = %e, "the last command id is unreadable; starting from 0 (replays of older commands are refused only by their expiry)");
        0
    });
    let mut edge = Edge::new(&cfg.agents, epoch, cfg.hub.spool_bytes, cfg.hub.heartbeat_interval)
        .with_restart_policy(cfg.hub.restart)
        .with_last_command(last_command)
        .with_actions(cfg.act.clone());
    let mut kept_command = last_command;
    let config_file = ConfigFile::new(&cfg.hub.state_dir);
    match config_file.load() {
        Ok(Some(doc)) => edge = edge.with_config(&doc),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "the kept configuration is unreadable; running the router's own"),
    }
    let (ev_tx, mut events) = mpsc::channel(64);
    let mut uplink = Uplink::start(&cfg.hub, ev_tx);
    info!(device = %cfg.hub.device_id, hub = %format!("{}:{}", cfg.hub.host, cfg.hub.port), epoch, "opmas-edge running");

    // The executor: one task, one job at a time, in order.
    let (job_tx, job_rx) = mpsc::channel(crate::act::exec::QUEUE);
    let (done_tx, mut done_rx) = mpsc::channel(crate::act::exec::QUEUE);
    tokio::spawn(crate::act::exec::run(job_rx, done_tx, cfg.act.tools.ubus.clone()));

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lines_open = true;
    let mut out: Vec<Publish> = Vec::new();
    tokio::pin!(shutdown);

    loop {
        let now = started.elapsed();
        tokio::select! {
            line = lines.recv(), if lines_open => match line {
                Some(line) => edge.handle(Input::Line { line: &line, now, now_ms: now_ms() }, &mut out),
                None => lines_open = false,
            },
            ev = events.recv() => match ev {
                Some(UplinkEvent::Connected) => {
                    uplink.on_connected();
                    edge.handle(Input::Connected { now }, &mut out);
                }
                Some(UplinkEvent::Disconnected(_)) => {
                    uplink.on_disconnected();
                    edge.handle(Input::Disconnected, &mut out);
                }
                Some(UplinkEvent::Message { topic, payload }) => match uplink.receive(&topic, &payload) {
                    Ok((msg, hub_ms)) => edge.handle(Input::Downlink { msg, now, hub_ms }, &mut out),
                    Err(e) => edge.handle(Input::DownlinkRejected { reason: format!("on {topic}: {e}"), now }, &mut out),
                },
                None => break,
            },
            Some(done) = done_rx.recv() => edge.handle(Input::JobDone { done, now, now_ms: now_ms() }, &mut out),
            _ = tick.tick() => edge.handle(Input::Tick { now, now_ms: now_ms() }, &mut out),
            _ = &mut shutdown => break,
        }
        for job in edge.take_jobs() {
            if let Err(e) = job_tx.try_send(job) {
                // The queue is full: the job is answered as not run.
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                let result = Err(format!("{} actions are waiting already; not run", crate::act::exec::QUEUE));
                let done = crate::act::JobDone { job, result, duration_ms: 0 };
                edge.handle(Input::JobDone { done, now: started.elapsed(), now_ms: now_ms() }, &mut out);
            }
        }
        if let Some(doc) = edge.take_config_to_keep() {
            if let Err(e) = config_file.store(&doc) {
                warn!(error = %e, version = doc.version, "the configuration could not be kept; a reboot without the hub runs the router's own");
            }
        }
        if edge.last_command() != kept_command {
            kept_command = edge.last_command();
            if let Err(e) = state.store(kept_command) {
                warn!(error = %e, "the last command id could not be kept; a replay after a restart is refused only by its expiry");
            }
        }
        publish(&mut edge, &mut uplink, &sources, &mut out);
    }
    info!("opmas-edge stopping");
    uplink.goodbye().await;
}

/// Seals and queues what the machine asked for, and hands back what the
/// uplink did not take. Once one finding batch is refused, the ones after
/// it are not tried (the hub must get them in order), and all of them go
/// back to the machine, last first.
fn publish(edge: &mut Edge, uplink: &mut Uplink, sources: &SourceStats, out: &mut Vec<Publish>) {
    let mut refused: Vec<Publish> = Vec::new();
    let mut findings_stuck = false;
    for p in out.drain(..) {
        let findings = matches!(p.body, Outgoing::Findings(_));
        if findings && findings_stuck {
            refused.push(p);
            continue;
        }
        let sent = match &p.body {
            Outgoing::Findings(b) => uplink.publish(b, false).map_err(|e| e.to_string()),
            Outgoing::Result(r) => uplink.publish(r, false).map_err(|e| e.to_string()),
            Outgoing::Heartbeat(hb) => {
                let src = sources.snapshot();
                let mut hb = hb.clone();
                hb.counters.shed = src.shed;
                hb.counters.truncated = src.truncated;
                hb.load_milli = load_milli();
                hb.rss_kib = rss_kib();
                uplink.publish(&hb, false).map_err(|e| e.to_string())
            }
        };
        if let Err(e) = sent {
            debug!(channel = %p.channel(), error = %e, "publish deferred");
            findings_stuck |= findings;
            refused.push(p);
        }
    }
    // Refusals ask for nothing new; what they take back goes at the next input.
    let mut none = Vec::new();
    for p in refused.into_iter().rev() {
        edge.handle(Input::Refused(p), &mut none);
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
