//! Detection agents: synchronous state machines fed with parsed records and
//! a clock, producing findings. No I/O, no time of their own, so they are
//! tested with plain line sequences.
//!
//! Architecture invariant: every table an agent keeps has a fixed capacity;
//! what it evicts when full is counted and reported in the heartbeat.

pub mod security;

use opmas_proto::msg::Finding;

use crate::parse::Record;

/// Longest evidence line kept in a finding, in bytes.
pub const MAX_EVIDENCE_LEN: usize = 240;
/// Evidence lines kept per finding: enough to show the pattern, small on the wire.
pub const MAX_EVIDENCE: usize = 3;

/// A record plus the raw line and the time to use for windows.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub record: &'a Record<'a>,
    pub line: &'a str,
    /// The record's timestamp, or the arrival time when it has none.
    pub now_ms: u64,
}

/// Counters every agent reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentCounters {
    pub events: u64,
    pub findings: u64,
    pub evicted: u64,
}

/// One detection agent. `seq` of emitted findings is left 0: the spool
/// numbers them.
pub trait Agent {
    /// `security`, `wifi`, `network` or `system`.
    fn name(&self) -> &'static str;
    /// Feeds one record; pushes any finding it completes onto `out`.
    fn on_record(&mut self, input: Input<'_>, out: &mut Vec<Finding>);
    /// Called about once a second with the wall clock, to expire state.
    fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>);
    fn counters(&self) -> AgentCounters;
}

/// Truncates `line` to at most [`MAX_EVIDENCE_LEN`] bytes at a character boundary.
pub fn evidence(line: &str) -> String {
    if line.len() <= MAX_EVIDENCE_LEN {
        return line.to_owned();
    }
    let mut end = MAX_EVIDENCE_LEN - 3;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}
