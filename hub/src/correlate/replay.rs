//! `opmas-hub rules test FILE --since 7d`: the stored findings and
//! heartbeats of a period, fed through rules in storage order by a fresh
//! engine with simulated time, and what it would have done, printed.
//! Nothing is stored.

use std::collections::HashMap;
use std::fmt::Write;

use super::engine::{Action, DeviceInfo, Engine, Fact};
use super::rule::Rule;
use crate::http::rfc3339;
use crate::store::{Store, StoreError};

/// Findings or heartbeats read per query.
const PAGE: u32 = 5000;
/// Simulated time advances in ticks this long between facts (quiet and
/// absence are judged at each).
const TICK_MS: i64 = 60_000;

/// What a replay saw and would have done.
#[derive(Debug, Default)]
pub struct Replay {
    pub findings: u64,
    pub heartbeats: u64,
    pub actions: Vec<Action>,
}

impl Replay {
    /// The report people read: one line per incident opened or resolved.
    pub fn report(&self, rules: &[Rule], since_ms: i64) -> String {
        let mut out = String::new();
        for r in rules {
            let s = &r.spec;
            let state = if s.enabled { "" } else { " (disabled: tested anyway)" };
            let _ = writeln!(out, "rule {} ({:?}, {}, window {}){state}", s.name, s.rule_type, s.severity, s.window);
        }
        let _ = writeln!(
            out,
            "replayed {} findings and {} heartbeats stored since {}",
            self.findings,
            self.heartbeats,
            rfc3339(since_ms)
        );
        let mut members: HashMap<(&str, &str), usize> = HashMap::new();
        let (mut opened, mut resolved) = (0, 0);
        for a in &self.actions {
            match a {
                Action::Open { rule, key, time_ms, members: m, why, .. } => {
                    opened += 1;
                    members.insert((rule, key), m.len());
                    let mut devices: Vec<&str> = m.iter().map(|m| &*m.device).collect();
                    devices.sort();
                    devices.dedup();
                    let on = if devices.is_empty() { String::new() } else { format!(" on {}", devices.join(", ")) };
                    let _ = writeln!(
                        out,
                        "  {}  open     {rule}  {key}: {why}; {} findings{on}",
                        rfc3339(*time_ms),
                        m.len()
                    );
                }
                Action::Append { rule, key, members: m, .. } => {
                    *members.entry((rule, key)).or_default() += m.len();
                }
                Action::Resolve { rule, key, time_ms, why } => {
                    resolved += 1;
                    let n = members.remove(&(rule.as_str(), key.as_str())).unwrap_or_default();
                    let _ =
                        writeln!(out, "  {}  resolve  {rule}  {key}: {why}; {n} findings in all", rfc3339(*time_ms));
                }
            }
        }
        let _ = writeln!(out, "would have opened {opened} incidents ({} still open at the end)", opened - resolved);
        out
    }
}

/// Replays what was stored from `since_ms` to `now_ms` through `rules`
/// (disabled ones too: testing one is the point).
pub async fn replay(store: &Store, mut rules: Vec<Rule>, since_ms: i64, now_ms: i64) -> Result<Replay, StoreError> {
    for r in &mut rules {
        r.spec.enabled = true;
    }
    let mut engine = Engine::new(rules);
    // As the routers were at the start: expected to talk from then on (or
    // from their enrolment), heard from only through the heartbeats replayed.
    let devices = store.correlation_devices().await?;
    engine.set_devices(
        devices
            .into_iter()
            .filter(|d| d.created_ms <= now_ms)
            .map(|d| DeviceInfo { since_ms: d.since_ms.map(|_| d.created_ms.max(since_ms)), ..d })
            .collect(),
    );
    let mut out = Replay::default();
    let mut clock = since_ms;
    let (mut after_finding, mut after_beat) = (0i64, (since_ms, String::new()));
    let mut findings: Vec<Fact> = Vec::new();
    let mut beats: Vec<Fact> = Vec::new();
    loop {
        if findings.is_empty() {
            findings = store.facts_since(since_ms, after_finding, PAGE).await?;
            findings.reverse();
        }
        if beats.is_empty() {
            beats = store.heartbeat_facts_page(&after_beat, PAGE).await?;
            beats.reverse();
        }
        // The earlier of the two streams' next facts (findings first on a tie).
        let take_beat = match (findings.last(), beats.last()) {
            (None, None) => break,
            (Some(f), Some(b)) => b.time_ms < f.time_ms,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        let fact = if take_beat { beats.pop() } else { findings.pop() }.expect("one of them has a fact");
        if take_beat {
            out.heartbeats += 1;
            after_beat = (fact.time_ms, fact.device.clone());
        } else {
            out.findings += 1;
            after_finding = fact.finding;
        }
        while clock + TICK_MS <= fact.time_ms {
            clock += TICK_MS;
            out.actions.extend(engine.tick(clock));
        }
        out.actions.extend(engine.feed(&fact));
    }
    while clock + TICK_MS <= now_ms {
        clock += TICK_MS;
        out.actions.extend(engine.tick(clock));
    }
    Ok(out)
}
