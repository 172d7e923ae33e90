//! The detection pipeline without I/O: parse, classify, agents.
//!
//! Two halves: [`Parser`] turns a line into a [`Parsed`] (pure: it keeps
//! only the year of the day it last saw), [`Pipeline::apply`] runs the
//! agents over it (all the state). [`Pipeline::feed`] does both; a replay
//! runs the halves on two threads. Each agent runs under the
//! [`crate::supervise`] policy: one that fails is dropped and built again
//! later, while the others run on.

use opmas_proto::msg::{AgentState, AgentStatus, Counters, Finding};

use tracing::{debug, error, info, warn};

use crate::agents::network::NetworkAgent;
use crate::agents::security::SecurityAgent;
use crate::agents::system::SystemAgent;
use crate::agents::wifi::WifiAgent;
use crate::agents::{Agent, Meta};
use crate::classify::classify;
use crate::config::AgentsConfig;
use crate::events::Event;
use crate::parse::{self, parse_line, ParseError};
use crate::supervise::{guard, Health, Phase, RestartPolicy, Verdict};
use opmas_proto::pattern::Excludes;

/// A line parsed and classified, ready for the agents.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<'a> {
    /// The raw line, for evidence.
    pub line: &'a str,
    /// The line's own time, when it has one.
    pub ts_ms: Option<u64>,
    /// The logging program and pid.
    pub program: Option<&'a str>,
    pub pid: Option<u32>,
    /// What the line means, if any agent could care.
    pub event: Option<Event<'a>>,
}

/// Parses and classifies lines: the half of the pipeline without state
/// worth the name (the year of the last day seen, so that it is worked out
/// once a day, not once a line).
#[derive(Debug, Clone, Copy)]
pub struct Parser {
    /// The UTC day (days since 1970) and year of the last arrival time.
    year_of_day: (u64, i32),
}

impl Default for Parser {
    fn default() -> Self {
        Parser { year_of_day: (0, 1970) }
    }
}

impl Parser {
    /// Parses and classifies `line`, which arrived at `arrival_ms`.
    pub fn prepare<'a>(&mut self, line: &'a str, arrival_ms: u64) -> Result<Parsed<'a>, ParseError> {
        let day = arrival_ms / 86_400_000;
        if day != self.year_of_day.0 {
            self.year_of_day = (day, crate::date::year_of(arrival_ms));
        }
        let ctx = parse::Context { year: self.year_of_day.1, now_ms: Some(arrival_ms) };
        let record = parse_line(line, ctx)?;
        Ok(Parsed { line, ts_ms: record.ts_ms, program: record.program, pid: record.pid, event: classify(&record) })
    }
}

/// An agent held by name: built from its config while running, `None`
/// while stopped, restarting or failed (its tables freed).
struct Slot {
    name: &'static str,
    agent: Option<Box<dyn Agent>>,
    health: Health,
    /// Lines this agent ignores (`exclude_patterns`), and how many it has.
    exclude: Excludes,
    excluded: u64,
}

impl Slot {
    fn new(name: &'static str, cfg: &AgentsConfig) -> Slot {
        Slot {
            name,
            agent: build(name, cfg),
            health: Health::default(),
            exclude: cfg.exclude.get(name).cloned().unwrap_or_default(),
            excluded: 0,
        }
    }
}

/// The names of the agents, in the order they see each event.
pub const AGENT_NAMES: [&str; 4] = ["security", "wifi", "network", "system"];

/// An agent name the pipeline does not have.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("no agent {0:?}; known: security, wifi, network, system")]
pub struct UnknownAgent(pub String);

/// The detection pipeline without I/O: parse, classify, agents.
pub struct Pipeline {
    /// Every agent by name, running or stopped, in [`AGENT_NAMES`] order.
    slots: Vec<Slot>,
    /// The configuration the agents are built from.
    config: AgentsConfig,
    /// Line counters for the heartbeat.
    counters: Counters,
    /// Lines that carried an event.
    events: u64,
    /// The latest timestamp seen in a line (unix ms; 0 before any).
    log_clock_ms: u64,
    /// The parsing half, for [`Pipeline::feed`].
    parser: Parser,
    /// What happens to an agent that fails.
    policy: RestartPolicy,
    /// The latest time passed in (line arrival or tick), for the supervisor.
    now_ms: u64,
}

/// Builds the agent `name` from `cfg`, or `None` if `cfg` disables it.
fn build(name: &str, cfg: &AgentsConfig) -> Option<Box<dyn Agent>> {
    match name {
        "security" => cfg.security.map(|c| Box::new(SecurityAgent::new(c)) as Box<dyn Agent>),
        "wifi" => cfg.wifi.map(|c| Box::new(WifiAgent::new(c)) as Box<dyn Agent>),
        "network" => cfg.network.map(|c| Box::new(NetworkAgent::new(c)) as Box<dyn Agent>),
        "system" => cfg.system.map(|c| Box::new(SystemAgent::new(c)) as Box<dyn Agent>),
        _ => None,
    }
}

impl Pipeline {
    /// The agents `cfg` enables, running; the others stopped.
    pub fn new(cfg: &AgentsConfig) -> Self {
        let slots = AGENT_NAMES.iter().map(|&name| Slot::new(name, cfg)).collect();
        Pipeline {
            slots,
            config: cfg.clone(),
            counters: Counters::default(),
            events: 0,
            log_clock_ms: 0,
            parser: Parser::default(),
            policy: RestartPolicy::default(),
            now_ms: 0,
        }
    }

    /// Supervises the agents by `policy` instead of the default one.
    pub fn with_policy(mut self, policy: RestartPolicy) -> Self {
        self.set_policy(policy);
        self
    }

    /// Supervises the agents by `policy` from now on.
    pub fn set_policy(&mut self, policy: RestartPolicy) {
        self.policy = policy;
    }

    fn slot(&mut self, name: &str) -> Result<&mut Slot, UnknownAgent> {
        self.slots.iter_mut().find(|s| s.name == name).ok_or_else(|| UnknownAgent(name.to_owned()))
    }

    /// Stops an agent: it sees no more events and its state is dropped.
    pub fn stop(&mut self, name: &str) -> Result<(), UnknownAgent> {
        let now_ms = self.now_ms;
        let slot = self.slot(name)?;
        slot.agent = None;
        slot.health.reset(now_ms);
        Ok(())
    }

    /// (Re)starts an agent from the current configuration, with empty
    /// tables: what "restart an agent" means (see ARCHITECTURE.md). An
    /// agent the configuration disables stays stopped.
    pub fn restart(&mut self, name: &str) -> Result<(), UnknownAgent> {
        let agent = build(name, &self.config);
        let now_ms = self.now_ms;
        let slot = self.slot(name)?;
        slot.agent = agent;
        slot.health.reset(now_ms);
        Ok(())
    }

    /// Applies a new configuration: only the agents whose settings changed
    /// are rebuilt (the others keep their windows and counts).
    pub fn reconfigure(&mut self, cfg: &AgentsConfig) {
        let old = std::mem::replace(&mut self.config, cfg.clone());
        let changed = |name: &str| match name {
            "security" => old.security != cfg.security,
            "wifi" => old.wifi != cfg.wifi,
            "network" => old.network != cfg.network,
            "system" => old.system != cfg.system,
            _ => false,
        };
        for slot in &mut self.slots {
            if changed(slot.name) {
                slot.agent = build(slot.name, cfg);
                slot.health.reset(self.now_ms);
            }
            // New patterns apply to the next line; the agent keeps its state.
            slot.exclude = cfg.exclude.get(slot.name).cloned().unwrap_or_default();
        }
    }

    /// All four agents with their default thresholds.
    pub fn with_defaults() -> Self {
        Pipeline::new(&AgentsConfig::default())
    }

    /// Parses one line and runs the agents; findings are appended to `out`.
    /// Returns how many the line produced.
    pub fn feed(&mut self, line: &str, arrival_ms: u64, out: &mut Vec<Finding>) -> usize {
        let parsed = self.parser.prepare(line, arrival_ms);
        self.apply(&parsed, arrival_ms, out)
    }

    /// Runs the agents over a line [`Parser::prepare`] made of what arrived
    /// at `arrival_ms` (counting it, and counting it unparsed if it failed);
    /// findings are appended to `out`. Returns how many the line produced.
    pub fn apply(&mut self, parsed: &Result<Parsed<'_>, ParseError>, arrival_ms: u64, out: &mut Vec<Finding>) -> usize {
        self.counters.lines += 1;
        self.now_ms = self.now_ms.max(arrival_ms);
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.counters.unparsed += 1;
                debug!(error = %e, "unparsed line");
                return 0;
            }
        };
        let now_ms = parsed.ts_ms.unwrap_or(arrival_ms);
        self.log_clock_ms = self.log_clock_ms.max(now_ms);
        let Some(event) = &parsed.event else { return 0 };
        self.events += 1;
        let meta = Meta { line: parsed.line, now_ms, program: parsed.program, pid: parsed.pid };
        let before = out.len();
        self.each_agent(arrival_ms, Some(parsed.line), out, |name, agent, out| {
            fault::inject(name, meta.line);
            agent.on_event(event, &meta, out)
        });
        self.found(out.len() - before)
    }

    /// Lets the agents close windows and expire state; appends any updates
    /// to `out`. Agents whose restart is due are built again first.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>) -> usize {
        self.now_ms = self.now_ms.max(now_ms);
        self.restart_due(now_ms);
        let before = out.len();
        self.each_agent(now_ms, None, out, |_, agent, out| agent.tick(now_ms, out));
        self.found(out.len() - before)
    }

    /// Runs `f` on every running agent under [`guard`] (for a `line`, on
    /// those that do not exclude it): one that panics is dropped and its
    /// restart scheduled by the policy; the others run on.
    fn each_agent(
        &mut self,
        now_ms: u64,
        line: Option<&str>,
        out: &mut Vec<Finding>,
        mut f: impl FnMut(&'static str, &mut dyn Agent, &mut Vec<Finding>),
    ) {
        let policy = self.policy;
        for slot in &mut self.slots {
            let Some(agent) = slot.agent.as_mut() else { continue };
            if line.is_some_and(|l| !slot.exclude.is_empty() && slot.exclude.matches(l)) {
                slot.excluded += 1;
                continue;
            }
            let name = slot.name;
            let Err(why) = guard(|| f(name, agent.as_mut(), out)) else { continue };
            slot.agent = None;
            match slot.health.failed(why.clone(), now_ms, &policy) {
                Verdict::RestartIn(d) => {
                    warn!(agent = name, error = %why, restart_in_ms = d.as_millis() as u64, "agent failed; restarting it after the backoff")
                }
                Verdict::GiveUp => error!(
                    agent = name,
                    error = %why,
                    restarts = slot.health.restarts,
                    "agent failed again; given up on until an operator starts it"
                ),
            }
        }
    }

    /// Builds again every agent whose backoff is over.
    fn restart_due(&mut self, now_ms: u64) {
        for slot in &mut self.slots {
            if !slot.health.due(now_ms, &self.policy) {
                continue;
            }
            slot.agent = build(slot.name, &self.config);
            if slot.agent.is_some() {
                slot.health.restarted(now_ms);
                info!(agent = slot.name, restarts = slot.health.restarts, "agent restarted by policy");
            } else {
                // The configuration disabled it meanwhile.
                slot.health.reset(now_ms);
            }
        }
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

    /// Each agent's line in the heartbeat, stopped ones included.
    pub fn agent_status(&self) -> Vec<AgentStatus> {
        self.slots
            .iter()
            .map(|s| {
                let c = s.agent.as_ref().map(|a| a.counters()).unwrap_or_default();
                let state = match (&s.agent, s.health.phase) {
                    (Some(_), _) => AgentState::Running,
                    (None, Phase::Restarting { .. }) => AgentState::Restarting,
                    (None, Phase::Failed) => AgentState::Failed,
                    (None, Phase::Up) => AgentState::Stopped,
                };
                AgentStatus {
                    name: s.name.into(),
                    state,
                    events: c.events,
                    findings: c.findings,
                    evicted: c.evicted,
                    restarts: s.health.restarts,
                    last_error: s.health.last_error.clone(),
                    excluded: s.excluded,
                }
            })
            .collect()
    }
}

/// Failures on demand, for the end-to-end tests of the supervisor (cargo
/// feature `fault-injection`; never in a router build): a line containing
/// `opmas-fault:<agent>` makes that agent panic while it handles the line.
mod fault {
    #[cfg(feature = "fault-injection")]
    pub fn inject(agent: &str, line: &str) {
        if let Some(rest) = line.split("opmas-fault:").nth(1) {
            if rest.split(|c: char| !c.is_ascii_alphanumeric()).next() == Some(agent) {
                panic!("injected fault (opmas-fault:{agent})");
            }
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    pub fn inject(_agent: &str, _line: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(p: &mut Pipeline, ip: &str, out: &mut Vec<Finding>) {
        for i in 0..5 {
            let line = format!("Dec  5 17:43:5{i} gw dropbear[{i}]: Bad password attempt for 'root' from {ip}:4000{i}");
            p.feed(&line, 1_733_420_630_000, out);
        }
    }

    fn state(p: &Pipeline, name: &str) -> (AgentState, u64) {
        let s = p.agent_status().into_iter().find(|s| s.name == name).unwrap();
        (s.state, s.events)
    }

    #[test]
    fn agents_stop_restart_and_reconfigure_one_at_a_time() {
        let mut p = Pipeline::new(&AgentsConfig::default());
        let mut out = Vec::new();
        brute_force(&mut p, "198.51.100.1", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(state(&p, "security"), (AgentState::Running, 5));

        p.stop("security").unwrap();
        brute_force(&mut p, "198.51.100.2", &mut out);
        assert_eq!(out.len(), 1, "a stopped agent finds nothing");
        assert_eq!(state(&p, "security"), (AgentState::Stopped, 0));
        assert_eq!(p.stop("dns"), Err(UnknownAgent("dns".into())));

        p.restart("security").unwrap();
        assert_eq!(state(&p, "security"), (AgentState::Running, 0), "restarted with empty tables");

        // A new threshold rebuilds only the security agent.
        let before_wifi = state(&p, "wifi");
        brute_force(&mut p, "198.51.100.3", &mut out);
        let cfg = AgentsConfig {
            security: Some(opmas_proto::agents::SecurityConfig { failures: 2, ..Default::default() }),
            ..AgentsConfig::default()
        };
        p.reconfigure(&cfg);
        assert_eq!(state(&p, "security"), (AgentState::Running, 0));
        assert_eq!(state(&p, "wifi"), before_wifi);
        // Disabling an agent in the configuration stops it.
        p.reconfigure(&AgentsConfig { wifi: None, ..cfg });
        assert_eq!(state(&p, "wifi").0, AgentState::Stopped);
    }

    #[cfg(all(feature = "fault-injection", panic = "unwind"))]
    #[test]
    fn a_failing_agent_is_restarted_by_policy_then_given_up_while_the_others_run_on() {
        let policy = RestartPolicy { max_restarts: 2, ..RestartPolicy::default() };
        let mut p = Pipeline::new(&AgentsConfig::default()).with_policy(policy);
        let mut out = Vec::new();
        let t0 = 1_733_420_630_000;
        let fault =
            "Dec  5 17:43:50 gw dropbear[1]: Bad password attempt for 'opmas-fault:security' from 198.51.100.9:1";
        let status = |p: &Pipeline, n: &str| p.agent_status().into_iter().find(|s| s.name == n).unwrap();
        p.feed(fault, t0, &mut out);
        let s = status(&p, "security");
        assert_eq!((s.state, s.restarts), (AgentState::Restarting, 0));
        assert_eq!(s.last_error.as_deref(), Some("panicked: injected fault (opmas-fault:security)"));
        assert_eq!(status(&p, "wifi").state, AgentState::Running, "the others run on");
        p.tick(t0 + 500, &mut out);
        assert_eq!(status(&p, "security").state, AgentState::Restarting, "still in its backoff");
        p.tick(t0 + 1000, &mut out);
        assert_eq!((status(&p, "security").state, status(&p, "security").restarts), (AgentState::Running, 1));
        // The rebuilt agent works: a brute force is found.
        brute_force(&mut p, "198.51.100.1", &mut out);
        assert_eq!(out.len(), 1);
        p.feed(fault, t0 + 2000, &mut out);
        p.tick(t0 + 4000, &mut out);
        assert_eq!(status(&p, "security").restarts, 2);
        p.feed(fault, t0 + 5000, &mut out);
        p.tick(t0 + 600_000, &mut out);
        let s = status(&p, "security");
        assert_eq!((s.state, s.restarts), (AgentState::Failed, 2), "given up after two restarts in a row");
        // An operator's start builds it again.
        p.restart("security").unwrap();
        assert_eq!(status(&p, "security").state, AgentState::Running);
    }

    #[test]
    fn exclude_patterns_keep_lines_from_one_agent_and_changing_them_keeps_its_state() {
        let mut cfg = AgentsConfig::default();
        let ex = Excludes::new(&["*from 198.51.100.1:*"]).unwrap();
        cfg.exclude.insert("security".into(), ex);
        let mut p = Pipeline::new(&cfg);
        let mut out = Vec::new();
        brute_force(&mut p, "198.51.100.1", &mut out);
        assert!(out.is_empty(), "excluded");
        let s = p.agent_status().into_iter().find(|s| s.name == "security").unwrap();
        assert_eq!((s.excluded, s.events), (5, 0));
        // Two failures from another address, then the patterns go: the window stays.
        for i in 0..2 {
            let line = format!(
                "Dec  5 17:43:5{i} gw dropbear[{i}]: Bad password attempt for 'root' from 198.51.100.2:4000{i}"
            );
            p.feed(&line, 1_733_420_630_000, &mut out);
        }
        p.reconfigure(&AgentsConfig::default());
        assert_eq!(state(&p, "security"), (AgentState::Running, 2), "not rebuilt");
    }
}
