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

use opmas_proto::msg::{
    Ack, Action, Command, CommandResult, ConfigDoc, Finding, FindingBatch, Heartbeat, Outcome, Stage,
};
use opmas_proto::Channel;
use tracing::{debug, info, warn};

use crate::act::{ActConfig, Job, JobDone, Origin, Plan, Responder};
use crate::commands::Commands;
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
/// Results kept while the hub is out of reach (the oldest go first).
pub const MAX_PENDING_RESULTS: usize = 32;
/// Downlink messages that did not verify are reported at most this often
/// (with their count), so that a flood of them is not echoed back.
pub const REJECTION_REPORT_EVERY: Duration = Duration::from_secs(60);

/// A verified, decoded message from the hub (see `uplink::Uplink::open`).
#[derive(Clone, Debug, PartialEq)]
pub enum Downlink {
    Ack(Ack),
    Command(Command),
    Config(ConfigDoc),
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
    /// A verified message from the hub, sealed at `hub_ms` by the hub's clock.
    Downlink {
        msg: Downlink,
        now: Duration,
        hub_ms: u64,
    },
    /// A downlink message that did not open (bad tag, another device,
    /// malformed): reported to the hub, rate-limited.
    DownlinkRejected {
        reason: String,
        now: Duration,
    },
    /// The executor finished a job ([`crate::act::exec`]).
    JobDone {
        done: JobDone,
        now: Duration,
        now_ms: u64,
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
    Result(CommandResult),
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
            Outgoing::Result(_) => CommandResult::CHANNEL,
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
    /// Which commands ran; the hub's clock.
    commands: Commands,
    /// Results not yet handed out (the hub was out of reach).
    results: std::collections::VecDeque<CommandResult>,
    /// Downlink messages rejected since the last report, the last reason,
    /// and when the last report went out.
    rejected: (u32, String, Option<Duration>),
    /// The version of the hub's configuration in force (0: the router's
    /// own UCI configuration), and why the last one was refused.
    config_version: u64,
    config_error: Option<String>,
    /// A configuration applied and not yet written to disk by the driver.
    config_to_keep: Option<ConfigDoc>,
    /// Actions: the router's rules and the bans in force.
    act: Responder,
    /// Jobs for the executor, not yet taken by the driver.
    jobs: Vec<Job>,
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
            commands: Commands::default(),
            results: std::collections::VecDeque::new(),
            rejected: (0, String::new(), None),
            config_version: 0,
            config_error: None,
            config_to_keep: None,
            act: Responder::new(ActConfig::default()),
            jobs: Vec::new(),
        }
    }

    /// Runs actions by `cfg` (UCI `config response`).
    pub fn with_actions(mut self, cfg: ActConfig) -> Edge {
        self.act = Responder::new(cfg);
        self
    }

    /// Jobs for the executor (the driver runs them and reports each with
    /// [`Input::JobDone`]).
    pub fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// The action state (bans in force).
    pub fn responder(&self) -> &Responder {
        &self.act
    }

    /// Starts with the hub's configuration a previous run kept (the router
    /// rebooted without the hub): applied over the UCI one if valid.
    pub fn with_config(mut self, doc: &ConfigDoc) -> Edge {
        match AgentsConfig::from_doc(doc) {
            Ok(cfg) => {
                self.pipeline.reconfigure(&cfg);
                self.set_hub_local(&cfg.local);
                self.config_version = doc.version;
                info!(version = doc.version, "running the hub's configuration kept on disk");
            }
            Err(e) => {
                warn!(version = doc.version, error = %e, "the configuration kept on disk is invalid; running the router's own")
            }
        }
        self
    }

    /// The hub's local response settings over the router's, said in the
    /// log when what is in force changes.
    fn set_hub_local(&mut self, hub: &crate::act::LocalOverride) {
        let before = self.act.local().cloned();
        let now = self.act.set_hub_local(hub);
        if now != before.as_ref() {
            match now {
                Some(l) => info!(kinds = ?l.kinds, block_s = l.block_s, "local response on"),
                None => info!("local response off"),
            }
        }
    }

    /// The configuration to write to disk, once per change.
    pub fn take_config_to_keep(&mut self) -> Option<ConfigDoc> {
        self.config_to_keep.take()
    }

    /// The version of the hub's configuration in force (0: none).
    pub fn config_version(&self) -> u64 {
        self.config_version
    }

    /// Supervises the agents by `policy` (UCI `agent_restarts`, `agent_backoff_max`).
    pub fn with_restart_policy(mut self, policy: crate::supervise::RestartPolicy) -> Edge {
        self.pipeline.set_policy(policy);
        self
    }

    /// Continues from the last command id a previous run accepted.
    pub fn with_last_command(mut self, id: u64) -> Edge {
        self.commands = Commands::new(id);
        self
    }

    /// The highest command id accepted (for the driver to keep on disk).
    pub fn last_command(&self) -> u64 {
        self.commands.last_id()
    }

    /// Handles one input; what to publish is appended to `out`.
    pub fn handle(&mut self, input: Input<'_>, out: &mut Vec<Publish>) {
        match input {
            Input::Line { line, now, now_ms } => {
                if self.pipeline.feed(line, now_ms, &mut self.found) > 0 {
                    self.spool_found(now);
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
            Input::Downlink { msg: Downlink::Ack(ack), now, hub_ms } => {
                self.commands.clock.observe(hub_ms, now);
                if self.on_ack(&ack, now) {
                    self.ack_timeout = ACK_TIMEOUT;
                }
                self.flush(now, out);
            }
            Input::Downlink { msg: Downlink::Command(cmd), now, hub_ms } => {
                let result = match self.commands.accept(&cmd, hub_ms, now) {
                    Err(why) => {
                        warn!(command = cmd.id, reason = %why, "command refused");
                        CommandResult { id: cmd.id, outcome: Outcome::Rejected, message: why, duration_ms: 0 }
                    }
                    Ok(()) if Responder::handles(&cmd.action) => match self.act.plan(cmd.id, &cmd.action, now) {
                        Plan::Job(job) => {
                            // Answered when the executor is done.
                            info!(command = cmd.id, action = cmd.action.name(), "running");
                            self.jobs.push(job);
                            return;
                        }
                        Plan::Answer(outcome, message) => {
                            info!(command = cmd.id, action = cmd.action.name(), outcome = outcome.as_str(), %message, "command");
                            CommandResult { id: cmd.id, outcome, message, duration_ms: 0 }
                        }
                    },
                    Ok(()) => {
                        let (outcome, message) = self.run_command(&cmd.action);
                        info!(command = cmd.id, action = ?cmd.action, outcome = outcome.as_str(), %message, "command");
                        CommandResult { id: cmd.id, outcome, message, duration_ms: 0 }
                    }
                };
                self.queue_result(result);
                self.flush(now, out);
            }
            Input::JobDone { done, now, now_ms } => {
                let more = self.act.finished(&done, now);
                self.jobs.extend(more);
                let message = match &done.result {
                    Ok(()) => done.job.done.clone(),
                    Err(e) => e.clone(),
                };
                match &done.job.origin {
                    Origin::Command(id) => {
                        let outcome = if done.result.is_ok() { Outcome::Done } else { Outcome::Failed };
                        info!(command = id, outcome = outcome.as_str(), %message, ms = done.duration_ms, "command");
                        self.queue_result(CommandResult { id: *id, outcome, message, duration_ms: done.duration_ms });
                    }
                    Origin::Local { kind } => {
                        let finding = crate::act::local_finding(&done.job, kind, done.result.as_ref().err(), now_ms);
                        if let Some(f) = finding {
                            self.found.push(f);
                            self.spool_found(now);
                        }
                    }
                    Origin::Ensure => {
                        if let Err(e) = &done.result {
                            warn!(error = %e, "the bans in force could not be re-applied");
                        }
                    }
                }
                self.flush(now, out);
            }
            Input::Downlink { msg: Downlink::Config(doc), now, hub_ms } => {
                self.commands.clock.observe(hub_ms, now);
                if doc.version == self.config_version {
                    // Sent again (the hub resends until heartbeats agree).
                    return;
                }
                if doc.version < self.config_version {
                    // The hub is the source of truth; a lower version means
                    // its history was reset, not that this one is stale.
                    warn!(
                        version = doc.version,
                        running = self.config_version,
                        "configuration version went down; applying it"
                    );
                }
                match AgentsConfig::from_doc(&doc) {
                    Ok(cfg) => {
                        // Only agents whose settings changed start afresh.
                        self.pipeline.reconfigure(&cfg);
                        self.set_hub_local(&cfg.local);
                        info!(version = doc.version, "configuration from the hub applied");
                        self.config_version = doc.version;
                        self.config_error = None;
                        self.config_to_keep = Some(doc);
                    }
                    Err(e) => {
                        warn!(version = doc.version, error = %e, "configuration from the hub refused; keeping the one in force");
                        self.config_error = Some(format!("version {}: {e}", doc.version));
                    }
                }
                // Tell the hub now, not at the next interval.
                self.heartbeat(now, out);
            }
            Input::DownlinkRejected { reason, now } => {
                warn!(%reason, "downlink message refused");
                self.rejected.0 += 1;
                self.rejected.1 = reason;
                self.report_rejections(now);
                self.flush(now, out);
            }
            Input::Tick { now, now_ms } => {
                self.report_rejections(now);
                if let Some(job) = self.act.tick(now) {
                    self.jobs.push(job);
                }
                if self.pipeline.tick(now_ms, &mut self.found) > 0 {
                    self.spool_found(now);
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
            Input::Refused(Publish { body: Outgoing::Result(r), .. }) => {
                // Sent again at the next input, first.
                self.results.push_front(r);
            }
        }
    }

    /// Runs an accepted command's action on this edge.
    fn run_command(&mut self, action: &Action) -> (Outcome, String) {
        let running = |p: &Pipeline, name: &str| {
            p.agent_status().iter().any(|s| s.name == name && s.state == opmas_proto::msg::AgentState::Running)
        };
        let result = match action {
            Action::Ping => Ok("pong".to_owned()),
            Action::AgentStart { agent } if running(&self.pipeline, agent) => Ok(format!("agent {agent} was running")),
            Action::AgentStart { agent } | Action::AgentRestart { agent } => {
                self.pipeline.restart(agent).map_err(|e| e.to_string()).and_then(|()| {
                    if running(&self.pipeline, agent) {
                        Ok(format!("agent {agent} started with empty tables"))
                    } else {
                        Err(format!("agent {agent} is disabled in this router's configuration"))
                    }
                })
            }
            Action::AgentStop { agent } => {
                self.pipeline.stop(agent).map(|()| format!("agent {agent} stopped")).map_err(|e| e.to_string())
            }
            other => Err(format!("this edge ({}) does not run {other:?} yet", self.version)),
        };
        match result {
            Ok(m) => (Outcome::Done, m),
            Err(m) => (Outcome::Failed, m),
        }
    }

    fn queue_result(&mut self, r: CommandResult) {
        if self.results.len() == MAX_PENDING_RESULTS {
            self.results.pop_front();
        }
        self.results.push_back(r);
    }

    /// Reports the rejected downlink messages counted so far, unless a
    /// report went out less than [`REJECTION_REPORT_EVERY`] ago.
    fn report_rejections(&mut self, now: Duration) {
        let (n, reason, last) = &self.rejected;
        if *n == 0 || last.is_some_and(|t| now.saturating_sub(t) < REJECTION_REPORT_EVERY) {
            return;
        }
        let message = format!("{n} downlink message(s) refused; the last: {reason}");
        self.queue_result(CommandResult { id: 0, outcome: Outcome::Rejected, message, duration_ms: 0 });
        self.rejected = (0, String::new(), Some(now));
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

    /// Moves new findings into the spool, logging each, and starts the
    /// local response to those it is configured for.
    fn spool_found(&mut self, now: Duration) {
        for f in self.found.drain(..) {
            info!(kind = %f.kind, stage = f.stage.as_str(), summary = %f.summary, "finding");
            if let (Stage::New, Some(src)) = (f.stage, f.subject.src_ip) {
                match self.act.respond(&f.kind, src, now) {
                    Ok(Some(job)) => self.jobs.push(job),
                    Ok(None) => {}
                    Err(why) => warn!(kind = %f.kind, %src, reason = %why, "local response: not blocking"),
                }
            }
            self.spool.push(f);
        }
    }

    /// Hands out as many unsent findings as the window allows.
    fn flush(&mut self, now: Duration, out: &mut Vec<Publish>) {
        if !self.connected {
            return;
        }
        while let Some(r) = self.results.pop_front() {
            out.push(Publish { body: Outgoing::Result(r) });
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
            interval_s: self.heartbeat_interval.as_secs().min(u32::MAX as u64) as u32,
            version: self.version.clone(),
            config_version: self.config_version,
            config_error: self.config_error.clone(),
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
        e.handle(Input::Downlink { msg: Downlink::Ack(ack), now: 100 * T, hub_ms: 1 }, &mut out);
        assert_eq!(e.spool().stats().depth, 0);
        assert!(!e.spool().awaiting_ack());
        // An ack of another run frees nothing.
        attack(&mut e, "198.51.100.2", 101 * T, &mut out);
        e.handle(
            Input::Downlink { msg: Downlink::Ack(Ack { epoch: 8, upto: 9, gap: None }), now: 102 * T, hub_ms: 1 },
            &mut out,
        );
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

    fn results(out: &[Publish]) -> Vec<(u64, Outcome, String)> {
        out.iter()
            .filter_map(|p| match &p.body {
                Outgoing::Result(r) => Some((r.id, r.outcome, r.message.clone())),
                _ => None,
            })
            .collect()
    }

    const HUB: u64 = 1_780_000_000_000;

    fn command(e: &mut Edge, id: u64, action: Action, now: Duration, out: &mut Vec<Publish>) {
        let cmd = Command { id, expires_ms: HUB + 60_000, action };
        e.handle(Input::Downlink { msg: Downlink::Command(cmd), now, hub_ms: HUB }, out);
    }

    #[test]
    fn commands_stop_and_restart_one_agent_and_each_is_answered_once() {
        let mut e = edge();
        let mut out = Vec::new();
        e.handle(Input::Connected { now: T }, &mut out);
        out.clear();
        command(&mut e, 1, Action::AgentStop { agent: "security".into() }, 2 * T, &mut out);
        assert_eq!(results(&out), [(1, Outcome::Done, "agent security stopped".to_owned())]);
        // A stopped security agent finds no brute force; the others run on.
        out.clear();
        attack(&mut e, "203.0.113.9", 3 * T, &mut out);
        assert!(batches(&out).is_empty());
        let state = |e: &Edge, n: &str| e.pipeline().agent_status().into_iter().find(|s| s.name == n).unwrap().state;
        assert_eq!(state(&e, "wifi"), opmas_proto::msg::AgentState::Running);
        command(&mut e, 2, Action::AgentStart { agent: "security".into() }, 4 * T, &mut out);
        command(&mut e, 3, Action::AgentRestart { agent: "dns".into() }, 4 * T, &mut out);
        command(&mut e, 3, Action::Ping, 5 * T, &mut out);
        command(&mut e, 4, Action::ReloadWifi, 5 * T, &mut out);
        let got = results(&out);
        assert_eq!(got[0], (2, Outcome::Done, "agent security started with empty tables".to_owned()));
        assert_eq!((got[1].0, got[1].1), (3, Outcome::Failed));
        assert!(got[1].2.contains("no agent \"dns\""), "{got:?}");
        assert_eq!(got[2], (3, Outcome::Rejected, "command 3 already seen (the last one run was 3)".to_owned()));
        assert_eq!(got.len(), 3, "the WiFi reload is answered when it has run: {got:?}");
        let jobs = e.take_jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            jobs[0].steps,
            [crate::act::Step::Run { argv: vec!["/sbin/wifi".into(), "reload".into()], stdin: None }]
        );
        out.clear();
        let done = JobDone { job: jobs[0].clone(), result: Err("wifi not found at /sbin/wifi".into()), duration_ms: 2 };
        e.handle(Input::JobDone { done, now: 6 * T, now_ms: HUB }, &mut out);
        assert_eq!(results(&out), [(4, Outcome::Failed, "wifi not found at /sbin/wifi".to_owned())]);
        assert_eq!(e.last_command(), 4);
        // After a restart that kept the id, the same command is refused.
        let mut again = edge().with_last_command(e.last_command());
        let mut out = Vec::new();
        again.handle(Input::Connected { now: T }, &mut out);
        out.clear();
        command(&mut again, 4, Action::Ping, 2 * T, &mut out);
        assert_eq!(results(&out)[0].1, Outcome::Rejected);
    }

    #[test]
    fn results_wait_for_the_hub_and_rejected_downlinks_are_reported_sparingly() {
        let mut e = edge();
        let mut out = Vec::new();
        command(&mut e, 1, Action::Ping, T, &mut out);
        assert!(results(&out).is_empty(), "not connected");
        e.handle(Input::Connected { now: 2 * T }, &mut out);
        assert_eq!(results(&out), [(1, Outcome::Done, "pong".to_owned())]);
        out.clear();
        for i in 0..50 {
            let reason = format!("bad tag {i}");
            e.handle(Input::DownlinkRejected { reason, now: 3 * T + i * T / 10 }, &mut out);
        }
        let first = results(&out);
        assert_eq!(first.len(), 1, "one report, then quiet: {first:?}");
        assert_eq!(first[0].0, 0);
        out.clear();
        e.handle(Input::Tick { now: 70 * T, now_ms: HUB }, &mut out);
        let later = results(&out);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].2, "49 downlink message(s) refused; the last: bad tag 49");
    }

    fn doc(version: u64, failures: i64, wifi: bool) -> ConfigDoc {
        use opmas_proto::msg::AgentConfig;
        use opmas_proto::msg::Value;
        let mut agents = std::collections::BTreeMap::new();
        let params = [("ssh_failures".to_owned(), Value::Int(failures))].into_iter().collect();
        agents.insert("security".to_owned(), AgentConfig { enabled: true, params });
        agents.insert("wifi".to_owned(), AgentConfig { enabled: wifi, params: Default::default() });
        ConfigDoc { version, agents }
    }

    fn heartbeat_of(out: &[Publish]) -> Heartbeat {
        out.iter()
            .rev()
            .find_map(|p| match &p.body {
                Outgoing::Heartbeat(h) => Some(h.clone()),
                _ => None,
            })
            .expect("a heartbeat")
    }

    #[test]
    fn a_configuration_from_the_hub_applies_at_once_and_a_bad_one_changes_nothing() {
        let mut e = edge();
        let mut out = Vec::new();
        e.handle(Input::Connected { now: T }, &mut out);
        out.clear();
        e.handle(Input::Downlink { msg: Downlink::Config(doc(7, 2, false)), now: 2 * T, hub_ms: HUB }, &mut out);
        let hb = heartbeat_of(&out);
        assert_eq!((hb.config_version, hb.config_error.as_deref()), (7, None), "reported at once");
        assert_eq!(e.take_config_to_keep().map(|d| d.version), Some(7), "kept on disk once");
        assert!(e.take_config_to_keep().is_none());
        let wifi = e.pipeline().agent_status().into_iter().find(|s| s.name == "wifi").unwrap();
        assert_eq!(wifi.state, opmas_proto::msg::AgentState::Stopped);
        // Two failures are now a brute force.
        out.clear();
        for i in 0..2 {
            let line = format!("Thu Dec  5 17:43:0{i} 2024 authpriv.warn dropbear[{i}]: Bad password attempt for 'root' from 198.51.100.4:4000{i}");
            e.handle(Input::Line { line: &line, now: 3 * T, now_ms: HUB }, &mut out);
        }
        assert_eq!(batches(&out).len(), 1, "the new threshold judged the attack");
        // Out of range: refused, reported, the old one stays.
        out.clear();
        e.handle(Input::Downlink { msg: Downlink::Config(doc(8, 0, true)), now: 4 * T, hub_ms: HUB }, &mut out);
        let hb = heartbeat_of(&out);
        assert_eq!(hb.config_version, 7);
        assert!(hb.config_error.as_deref().unwrap().starts_with("version 8: "), "{:?}", hb.config_error);
        assert!(e.take_config_to_keep().is_none());
        // The same version again is nothing new.
        out.clear();
        e.handle(Input::Downlink { msg: Downlink::Config(doc(7, 2, false)), now: 5 * T, hub_ms: HUB }, &mut out);
        assert!(out.is_empty());
        // A restart with the kept configuration runs it.
        let again = edge().with_config(&doc(7, 2, false));
        assert_eq!(again.config_version(), 7);
    }

    #[test]
    fn the_local_response_blocks_a_brute_force_at_once_and_reports_it_as_a_finding() {
        let act = ActConfig {
            local: crate::act::LocalSettings { block: true, kinds: vec!["ssh.bruteforce".into()], block_s: 900 },
            ..ActConfig::default()
        };
        let mut e = edge().with_actions(act);
        let mut out = Vec::new();
        // The hub is out of reach: the router defends itself anyway.
        attack(&mut e, "198.51.100.9", T, &mut out);
        let jobs = e.take_jobs();
        assert_eq!(jobs.len(), 1, "one block for one brute force");
        assert_eq!(jobs[0].origin, Origin::Local { kind: "ssh.bruteforce".into() });
        let done = JobDone { job: jobs[0].clone(), result: Ok(()), duration_ms: 4 };
        e.handle(Input::JobDone { done, now: 2 * T, now_ms: HUB }, &mut out);
        assert_eq!(e.responder().blocks(2 * T).len(), 1);
        assert!(out.is_empty(), "nothing leaves while offline");
        assert_eq!(e.spool().stats().depth, 2, "the brute force and the block wait in the spool");
        e.handle(Input::Connected { now: 3 * T }, &mut out);
        let reported: Vec<Finding> = out
            .iter()
            .filter_map(|p| match &p.body {
                Outgoing::Findings(b) => Some(b.findings.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(reported.len(), 2);
        assert_eq!((reported[1].agent.as_str(), reported[1].kind.as_str()), ("response", "response.ip_blocked"));
        assert_eq!(reported[1].subject.src_ip, Some("198.51.100.9".parse().unwrap()));
        assert!(reported[1].summary.contains("blocked 198.51.100.9 for 900 s"), "{}", reported[1].summary);
        // The same attacker again is not blocked twice.
        attack(&mut e, "198.51.100.9", 4 * T, &mut out);
        assert!(e.take_jobs().is_empty());
    }

    #[test]
    fn the_hub_switches_the_local_response_on_and_what_it_leaves_alone_stays_the_routers() {
        use opmas_proto::local_response::LocalOverride;
        // The router's own: off, but 300 s and port scans if it were on.
        let act = ActConfig {
            local: crate::act::LocalSettings { block: false, kinds: vec!["ssh.bruteforce".into()], block_s: 300 },
            ..ActConfig::default()
        };
        let mut e = edge().with_actions(act);
        let mut out = Vec::new();
        let with_local = |version, set: LocalOverride| {
            let mut d = doc(version, 5, true);
            set.put(&mut d.agents.get_mut("security").unwrap().params);
            d
        };
        e.handle(Input::Connected { now: T }, &mut out);
        let on = LocalOverride { block: Some(true), ..Default::default() };
        e.handle(Input::Downlink { msg: Downlink::Config(with_local(2, on)), now: T, hub_ms: HUB }, &mut out);
        assert_eq!(e.config_version(), 2, "{:?}", heartbeat_of(&out).config_error);
        attack(&mut e, "198.51.100.9", 2 * T, &mut out);
        let jobs = e.take_jobs();
        assert_eq!(jobs.len(), 1, "the hub switched it on");
        assert!(format!("{:?}", jobs[0].steps).contains("timeout 300s"), "the router's duration: {:?}", jobs[0].steps);

        // A document without the settings hands them back to the router (off).
        e.handle(Input::Downlink { msg: Downlink::Config(doc(3, 5, true)), now: 3 * T, hub_ms: HUB }, &mut out);
        attack(&mut e, "198.51.100.10", 4 * T, &mut out);
        assert!(e.take_jobs().is_empty(), "off again, as the router says");

        // A bad setting refuses the whole document, naming it.
        let bad = with_local(4, LocalOverride { kinds: Some(vec!["ssh.nope".into()]), ..Default::default() });
        e.handle(Input::Downlink { msg: Downlink::Config(bad), now: 5 * T, hub_ms: HUB }, &mut out);
        assert_eq!(e.config_version(), 3);
        let err = heartbeat_of(&out).config_error.unwrap_or_default();
        assert!(err.contains("security agent: local_kinds[0]: unknown finding kind \"ssh.nope\""), "{err}");
    }
}
