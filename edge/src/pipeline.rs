//! The detection pipeline without I/O: parse, classify, agents.

use opmas_proto::msg::{AgentState, AgentStatus, Counters, Finding};
use tracing::debug;

use crate::agents::network::NetworkAgent;
use crate::agents::security::SecurityAgent;
use crate::agents::system::SystemAgent;
use crate::agents::wifi::WifiAgent;
use crate::agents::{Agent, Meta};
use crate::classify::classify;
use crate::config::AgentsConfig;
use crate::parse::{self, parse_line};

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
