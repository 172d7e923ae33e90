//! The detection pipeline without I/O: parse, classify, agents.
//!
//! Two halves: [`Parser`] turns a line into a [`Parsed`] (pure: it keeps
//! only the year of the day it last saw), [`Pipeline::apply`] runs the
//! agents over it (all the state). [`Pipeline::feed`] does both; a replay
//! runs the halves on two threads.

use opmas_proto::msg::{AgentState, AgentStatus, Counters, Finding};

use tracing::debug;

use crate::agents::network::NetworkAgent;
use crate::agents::security::SecurityAgent;
use crate::agents::system::SystemAgent;
use crate::agents::wifi::WifiAgent;
use crate::agents::{Agent, Meta};
use crate::classify::classify;
use crate::config::AgentsConfig;
use crate::events::Event;
use crate::parse::{self, parse_line, ParseError};

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
/// while stopped (its tables freed).
struct Slot {
    name: &'static str,
    agent: Option<Box<dyn Agent>>,
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
        let slots = AGENT_NAMES.iter().map(|&name| Slot { name, agent: build(name, cfg) }).collect();
        Pipeline {
            slots,
            config: cfg.clone(),
            counters: Counters::default(),
            events: 0,
            log_clock_ms: 0,
            parser: Parser::default(),
        }
    }

    fn slot(&mut self, name: &str) -> Result<&mut Slot, UnknownAgent> {
        self.slots.iter_mut().find(|s| s.name == name).ok_or_else(|| UnknownAgent(name.to_owned()))
    }

    /// Stops an agent: it sees no more events and its state is dropped.
    pub fn stop(&mut self, name: &str) -> Result<(), UnknownAgent> {
        self.slot(name)?.agent = None;
        Ok(())
    }

    /// (Re)starts an agent from the current configuration, with empty
    /// tables: what "restart an agent" means (see ARCHITECTURE.md). An
    /// agent the configuration disables stays stopped.
    pub fn restart(&mut self, name: &str) -> Result<(), UnknownAgent> {
        let agent = build(name, &self.config);
        self.slot(name)?.agent = agent;
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
            }
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
        for agent in self.slots.iter_mut().filter_map(|s| s.agent.as_mut()) {
            agent.on_event(event, &meta, out);
        }
        self.found(out.len() - before)
    }

    /// Lets the agents close windows and expire state; appends any updates to `out`.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>) -> usize {
        let before = out.len();
        for agent in self.slots.iter_mut().filter_map(|s| s.agent.as_mut()) {
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

    /// Each agent's line in the heartbeat, stopped ones included.
    pub fn agent_status(&self) -> Vec<AgentStatus> {
        self.slots
            .iter()
            .map(|s| {
                let c = s.agent.as_ref().map(|a| a.counters()).unwrap_or_default();
                AgentStatus {
                    name: s.name.into(),
                    state: if s.agent.is_some() { AgentState::Running } else { AgentState::Stopped },
                    events: c.events,
                    findings: c.findings,
                    evicted: c.evicted,
                }
            })
            .collect()
    }
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
}
