//! The correlation engine: findings and heartbeats in, incident actions out
//! (open, add members, resolve). Pure: it reads no clock and does no I/O;
//! its caller feeds it facts in storage order with the hub's time, and
//! applies what it answers (`correlate::run` to the database, `rules test`
//! to the screen).
//!
//! State is bounded: per rule at most [`MAX_KEYS`] keys are tracked, and
//! per key and step at most [`STEP_CAP`] findings (a threshold keeps
//! `count`); older entries than the window are dropped as time goes on.
//! An open incident per rule and key takes every later matching finding as
//! a member instead of opening another, until it resolves.
//!
//! Cost per finding: the rules and steps a finding's agent, kind and
//! severity match are worked out once per such triple and cached
//! (`routes`), so a finding visits only the rules that want it; each key
//! a finding has is built once, however many rules join on it; routers'
//! names are shared (`Arc<str>`) by every window that holds them. Window
//! state lives in one table by key, each entry holding every rule's state
//! for that key side by side: a hundred rules on one address cost one
//! lookup that stays in cache, not a hundred lookups in a hundred tables
//! (which cost a cache miss each, and were most of the engine's time).

use std::collections::VecDeque;

// Seeded per process (keys are addresses attackers choose), and several
// times faster than SipHash on short keys: a finding costs a few lookups
// per rule.
use foldhash::HashMap;
use std::sync::Arc;

use super::rule::{KeyField, Rule, RuleType};

/// Keys tracked per rule; beyond it new keys wait until old ones expire.
pub const MAX_KEYS: usize = 20_000;
/// Findings kept per key and step of an `all` or `sequence` rule.
pub const STEP_CAP: usize = 16;
/// Distinct (agent, kind, severity) triples whose matching rules are kept;
/// past it the cache starts over (kinds come from a fixed set in practice).
const ROUTES_CAP: usize = 4096;

/// One stored finding, or a heartbeat, as the engine sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fact {
    /// The finding's id; 0 for a heartbeat.
    pub finding: i64,
    pub device: String,
    /// The hub's time it was stored (routers' clocks are not trusted).
    pub time_ms: i64,
    pub heartbeat: bool,
    pub agent: String,
    pub kind: String,
    pub severity: i64,
    pub src_ip: Option<String>,
    pub mac: Option<String>,
    pub user: Option<String>,
    pub host: Option<String>,
    pub iface: Option<String>,
    pub service: Option<String>,
}

impl Fact {
    fn key(&self, field: KeyField) -> Option<&str> {
        match field {
            KeyField::SrcIp => self.src_ip.as_deref(),
            KeyField::Mac => self.mac.as_deref(),
            KeyField::User => self.user.as_deref(),
            KeyField::Host => self.host.as_deref(),
            KeyField::Iface => self.iface.as_deref(),
            KeyField::Service => self.service.as_deref(),
            KeyField::Device => Some(&self.device),
        }
    }
}

/// A router the engine knows, for tags and absence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub tags: Vec<String>,
    /// When it was last heard from (any message), or its enrolment;
    /// `None`: never heard from, so not missed either.
    pub since_ms: Option<i64>,
    /// Its enrolment: the start of an absence of findings it never had.
    pub created_ms: i64,
}

/// A finding taken into an incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub finding: i64,
    pub device: Arc<str>,
    pub time_ms: i64,
}

/// A finding as a window holds it: small and `Copy` (a window holds up to
/// a threshold's count of them per key and rule), its router by number in
/// [`Engine::names`]; a [`Member`] only when an incident takes it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    finding: i64,
    time_ms: i64,
    device: u32,
}

/// What the engine decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new incident of `rule` on `key` (`src_ip=203.0.113.7`,
    /// `device=gw-1`, `fleet`), with the findings that made it.
    Open {
        rule: String,
        key: String,
        severity: i64,
        time_ms: i64,
        members: Vec<Member>,
        quiet_ms: Option<i64>,
        why: String,
    },
    /// More findings for the open incident of `rule` on `key`.
    Append { rule: String, key: String, time_ms: i64, members: Vec<Member> },
    /// The open incident of `rule` on `key` is over.
    Resolve { rule: String, key: String, time_ms: i64, why: String },
}

#[derive(Debug)]
struct Open {
    last_ms: i64,
    /// Resolve after this long without a member; `None`: by presence (absence rules).
    quiet_ms: Option<i64>,
}

#[derive(Debug)]
struct KeyState {
    steps: Vec<VecDeque<Seen>>,
    newest_ms: i64,
    /// No step's first finding is older than this (`i64::MAX`: all
    /// empty): the steps are only walked for expired findings when this
    /// says there may be some, since each step's queue is a cache miss
    /// and a hundred rules on one key would walk a hundred of them for
    /// every finding.
    oldest_ms: i64,
    /// How many of the first step's findings each router has: a threshold's
    /// distinct routers, kept as findings come and go rather than counted
    /// again per finding (a full window of 1,000 would cost 1,000 per
    /// finding). Only kept for rules that ask for several routers.
    routers: HashMap<u32, u32>,
}

impl KeyState {
    fn new(steps: usize) -> KeyState {
        KeyState {
            steps: (0..steps).map(|_| VecDeque::new()).collect(),
            newest_ms: 0,
            oldest_ms: i64::MAX,
            routers: HashMap::default(),
        }
    }

    fn pop_front(&mut self, step: usize) {
        let Some(m) = self.steps[step].pop_front() else { return };
        if step == 0 {
            if let Some(n) = self.routers.get_mut(&m.device) {
                *n -= 1;
                if *n == 0 {
                    self.routers.remove(&m.device);
                }
            }
        }
    }

    /// Drops the findings older than `window_ms` before `now_ms`.
    fn expire(&mut self, now_ms: i64, window_ms: i64) {
        if now_ms - self.oldest_ms <= window_ms {
            return;
        }
        let mut oldest = i64::MAX;
        for s in 0..self.steps.len() {
            while self.steps[s].front().is_some_and(|m| now_ms - m.time_ms > window_ms) {
                self.pop_front(s);
            }
            if let Some(m) = self.steps[s].front() {
                oldest = oldest.min(m.time_ms);
            }
        }
        self.oldest_ms = oldest;
    }
}

/// Where rule `i`'s state is in a key's entry (sorted by rule): `hint`
/// first, the place after the last rule's, since a finding visits rules
/// in order.
fn find(entry: &[(usize, KeyState)], i: usize, hint: usize) -> Result<usize, usize> {
    match entry.get(hint) {
        Some((r, _)) if *r == i => Ok(hint),
        _ => entry.binary_search_by_key(&i, |(r, _)| *r),
    }
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    /// How many keys this rule has state for (in [`Engine::keys`]).
    keys: usize,
    /// This rule's open incidents, by key.
    open: HashMap<String, Open>,
    /// Absence: when each router was last heard from (as the rule counts).
    last_seen: HashMap<Arc<str>, i64>,
    /// Routers are counted per key (`devices` above one).
    count_routers: bool,
    /// Where a fact's key for this rule is cached while it is fed.
    slot: usize,
}

/// The rules a kind of finding concerns, and which of their steps, the
/// last step first.
#[derive(Debug)]
struct Route {
    rule: usize,
    steps: Vec<usize>,
}

/// The engine: the rules and what each has seen.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Vec<RuleState>,
    /// Window state by key: each rule's, ordered by rule index.
    keys: HashMap<Box<str>, Vec<(usize, KeyState)>>,
    by_name: HashMap<String, usize>,
    devices: HashMap<String, DeviceInfo>,
    /// Open incidents of rules the engine does not run (disabled or
    /// deleted since): they still resolve when quiet.
    orphans: HashMap<(String, String), Open>,
    /// Routers' numbers, as windows hold them, and names by number,
    /// shared by every member that holds one.
    numbers: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    /// Per `agent\0kind\0severity`: the rules and steps that match it.
    routes: HashMap<String, Arc<[Route]>>,
    /// Rules of type absence (they take heartbeats, and match otherwise).
    absence: Vec<usize>,
    /// New keys not tracked because a rule had [`MAX_KEYS`] already.
    pub keys_dropped: u64,
}

/// Where a fact's key for `(key field, same_device)` is cached: 8 key
/// choices (7 fields or none) times 2.
const KEY_SLOTS: usize = 16;

fn key_slot(rule: &Rule) -> usize {
    let field = rule.key.map_or(KeyField::ALL.len(), |f| KeyField::ALL.iter().position(|(_, k)| *k == f).unwrap_or(0));
    field * 2 + usize::from(rule.spec.same_device)
}

impl Engine {
    /// An engine running `rules` (disabled ones are skipped).
    pub fn new(rules: Vec<Rule>) -> Engine {
        let rules: Vec<RuleState> = rules
            .into_iter()
            .filter(|r| r.spec.enabled)
            .map(|rule| RuleState {
                count_routers: rule.devices > 1,
                slot: key_slot(&rule),
                rule,
                keys: 0,
                open: HashMap::default(),
                last_seen: HashMap::default(),
            })
            .collect();
        let by_name = rules.iter().enumerate().map(|(i, r)| (r.rule.spec.name.clone(), i)).collect();
        let absence = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.rule.spec.rule_type == RuleType::Absence)
            .map(|(i, _)| i)
            .collect();
        Engine { rules, by_name, absence, ..Engine::default() }
    }

    /// The routers, their tags and since when each is expected to talk.
    pub fn set_devices(&mut self, devices: Vec<DeviceInfo>) {
        self.devices = devices.into_iter().map(|d| (d.id.clone(), d)).collect();
    }

    /// An incident that is open in the database (at start, or after a
    /// person resolved one: call [`Engine::forget_open`] first).
    pub fn restore_open(&mut self, rule: &str, key: &str, last_ms: i64, quiet_ms: Option<i64>) {
        let open = Open { last_ms, quiet_ms };
        match self.by_name.get(rule) {
            Some(&i) => {
                self.rules[i].open.insert(key.to_owned(), open);
            }
            None => {
                self.orphans.insert((rule.to_owned(), key.to_owned()), open);
            }
        }
    }

    /// Forgets every open incident (before restoring the database's list).
    pub fn forget_open(&mut self) {
        self.orphans.clear();
        for r in &mut self.rules {
            r.open.clear();
        }
    }

    /// How many incidents the engine holds open.
    pub fn open_count(&self) -> usize {
        self.orphans.len() + self.rules.iter().map(|r| r.open.len()).sum::<usize>()
    }

    fn tagged(&self, rule: &Rule, device: &str) -> bool {
        match &rule.spec.tag {
            None => true,
            Some(t) => self.devices.get(device).is_some_and(|d| d.tags.iter().any(|x| x == t)),
        }
    }

    /// The router's number and shared name.
    fn name(&mut self, device: &str) -> (u32, Arc<str>) {
        if let Some(&n) = self.numbers.get(device) {
            return (n, self.names[n as usize].clone());
        }
        let name: Arc<str> = device.into();
        let n = self.names.len() as u32;
        self.names.push(name.clone());
        self.numbers.insert(name.clone(), n);
        (n, name)
    }

    fn member(&self, seen: &Seen) -> Member {
        Member { finding: seen.finding, device: self.names[seen.device as usize].clone(), time_ms: seen.time_ms }
    }

    /// The rules and steps a finding of this agent, kind and severity
    /// matches (absence rules apart).
    fn routes(&mut self, fact: &Fact) -> Arc<[Route]> {
        let id = format!("{}\0{}\0{}", fact.agent, fact.kind, fact.severity);
        if let Some(r) = self.routes.get(&id) {
            return r.clone();
        }
        let routes: Arc<[Route]> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.rule.spec.rule_type != RuleType::Absence)
            .filter_map(|(i, r)| {
                let steps: Vec<usize> = (0..r.rule.matchers.len())
                    .rev()
                    .filter(|s| r.rule.matchers[*s].matches(&fact.agent, &fact.kind, fact.severity))
                    .collect();
                (!steps.is_empty()).then_some(Route { rule: i, steps })
            })
            .collect();
        if self.routes.len() >= ROUTES_CAP {
            self.routes.clear();
        }
        self.routes.insert(id, routes.clone());
        routes
    }

    /// Takes one fact; returns what it caused.
    pub fn feed(&mut self, fact: &Fact) -> Vec<Action> {
        let mut out = Vec::new();
        let (number, device) = self.name(&fact.device);
        for a in 0..self.absence.len() {
            let i = self.absence[a];
            let rule = &self.rules[i].rule;
            if !self.tagged(rule, &fact.device) {
                continue;
            }
            let counts = match rule.matchers.first() {
                None => fact.heartbeat,
                Some(m) => !fact.heartbeat && m.matches(&fact.agent, &fact.kind, fact.severity),
            };
            if !counts {
                continue;
            }
            let state = &mut self.rules[i];
            state.last_seen.insert(device.clone(), fact.time_ms);
            let key = format!("device={}", fact.device);
            if state.open.remove(&key).is_some() {
                out.push(Action::Resolve {
                    rule: state.rule.spec.name.clone(),
                    key,
                    time_ms: fact.time_ms,
                    why: "heard from again".into(),
                });
            }
        }
        if fact.heartbeat {
            return out;
        }
        let mut keys: [Option<Option<String>>; KEY_SLOTS] = Default::default();
        // Per key: where the last rule's state was in its entry.
        let mut hints = [0usize; KEY_SLOTS];
        let seen = Seen { finding: fact.finding, time_ms: fact.time_ms, device: number };
        let member = Member { finding: fact.finding, device, time_ms: fact.time_ms };
        for route in self.routes(fact).iter() {
            let i = route.rule;
            if !self.tagged(&self.rules[i].rule, &fact.device) {
                continue;
            }
            let slot = self.rules[i].slot;
            let key = keys[slot].get_or_insert_with(|| key_of(&self.rules[i].rule, fact));
            let Some(key) = key.as_deref() else { continue };
            // Later steps first: a finding that matches two steps of a
            // sequence must not complete it alone.
            for &step in &route.steps {
                let state = &mut self.rules[i];
                if let Some(open) = state.open.get_mut(key) {
                    open.last_ms = fact.time_ms;
                    out.push(Action::Append {
                        rule: state.rule.spec.name.clone(),
                        key: key.to_owned(),
                        time_ms: fact.time_ms,
                        members: vec![member.clone()],
                    });
                    break;
                }
                if let Some(action) = self.step(i, step, key, seen, &mut hints[slot]) {
                    out.push(action);
                    break;
                }
            }
        }
        out
    }

    /// Records `seen` for `step` of rule `i` on `key`; opens an incident
    /// if that completes the rule. `hint`: where in the key's entry to
    /// look first; left after this rule's place.
    fn step(&mut self, i: usize, step: usize, key: &str, seen: Seen, hint: &mut usize) -> Option<Action> {
        let now = seen.time_ms;
        let pos = match self.keys.get(key).map(|e| find(e, i, *hint)) {
            Some(Ok(pos)) => pos,
            mut at => {
                if self.rules[i].keys >= MAX_KEYS {
                    self.prune(now, Some(i));
                    if self.rules[i].keys >= MAX_KEYS {
                        self.keys_dropped += 1;
                        return None;
                    }
                    at = self.keys.get(key).map(|e| find(e, i, *hint));
                }
                let state = (i, KeyState::new(self.rules[i].rule.matchers.len()));
                self.rules[i].keys += 1;
                match (at, self.keys.get_mut(key)) {
                    (Some(Err(pos)), Some(entry)) => {
                        entry.insert(pos, state);
                        pos
                    }
                    _ => {
                        self.keys.insert(key.into(), vec![state]);
                        0
                    }
                }
            }
        };
        *hint = pos + 1;
        let entry = self.keys.get_mut(key)?;
        let state = &mut self.rules[i];
        let rule = &state.rule;
        let ks = &mut entry.get_mut(pos)?.1;
        ks.expire(now, rule.window_ms);
        let cap = if rule.spec.rule_type == RuleType::Threshold { rule.count as usize } else { STEP_CAP };
        // The same finding twice in a row (fed again): once is enough.
        if ks.steps[step].back().is_some_and(|m| m.finding == seen.finding) {
            return None;
        }
        if ks.steps[step].len() == cap {
            ks.pop_front(step);
        }
        if step == 0 && state.count_routers {
            *ks.routers.entry(seen.device).or_default() += 1;
        }
        ks.steps[step].push_back(seen);
        ks.newest_ms = now;
        ks.oldest_ms = ks.oldest_ms.min(now);
        let why = match rule.spec.rule_type {
            RuleType::All => ks
                .steps
                .iter()
                .all(|q| !q.is_empty())
                .then(|| format!("all {} steps within {}", rule.matchers.len(), rule.spec.window)),
            RuleType::Sequence => sequence_complete(&ks.steps)
                .then(|| format!("{} steps in order within {}", rule.matchers.len(), rule.spec.window)),
            RuleType::Threshold => {
                let n = ks.steps[0].len();
                let routers = || if state.count_routers { ks.routers.len() } else { distinct(&ks.steps[0]) };
                (n >= rule.count as usize)
                    .then(routers)
                    .filter(|r| *r >= rule.devices as usize)
                    .map(|r| format!("{n} findings from {r} routers within {}", rule.spec.window))
            }
            RuleType::Absence => None,
        }?;
        let mut seen: Vec<Seen> = ks.steps.iter().flatten().copied().collect();
        seen.sort_by_key(|m| (m.time_ms, m.finding));
        let (name, severity, quiet) = (rule.spec.name.clone(), rule.severity, rule.quiet_ms);
        entry.remove(pos);
        *hint = pos;
        if entry.is_empty() {
            self.keys.remove(key);
        }
        state.keys -= 1;
        state.open.insert(key.to_owned(), Open { last_ms: now, quiet_ms: Some(quiet) });
        Some(Action::Open {
            rule: name,
            key: key.to_owned(),
            severity,
            time_ms: now,
            members: seen.iter().map(|m| self.member(m)).collect(),
            quiet_ms: Some(quiet),
            why,
        })
    }

    /// Drops window state older than its rule's window: every rule's, or
    /// only rule `only`'s.
    fn prune(&mut self, now_ms: i64, only: Option<usize>) {
        let rules = &mut self.rules;
        self.keys.retain(|_, entry| {
            entry.retain(|(r, ks)| {
                let keep = only.is_some_and(|o| o != *r) || now_ms - ks.newest_ms <= rules[*r].rule.window_ms;
                if !keep {
                    rules[*r].keys -= 1;
                }
                keep
            });
            !entry.is_empty()
        });
    }

    /// Advances time to `now_ms`: incidents quiet for their rule's period
    /// resolve, routers silent for an absence rule's window open one, and
    /// expired window state is dropped.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let over = |o: &Open| o.quiet_ms.is_some_and(|q| now_ms - o.last_ms >= q);
        let mut quiet: Vec<(String, String, i64)> = Vec::new();
        for r in &mut self.rules {
            let keys: Vec<String> = r.open.iter().filter(|(_, o)| over(o)).map(|(k, _)| k.clone()).collect();
            for key in keys {
                if let Some(o) = r.open.remove(&key) {
                    quiet.push((r.rule.spec.name.clone(), key, o.quiet_ms.unwrap_or_default()));
                }
            }
        }
        let orphans: Vec<(String, String)> =
            self.orphans.iter().filter(|(_, o)| over(o)).map(|(k, _)| k.clone()).collect();
        for (rule, key) in orphans {
            if let Some(o) = self.orphans.remove(&(rule.clone(), key.clone())) {
                quiet.push((rule, key, o.quiet_ms.unwrap_or_default()));
            }
        }
        quiet.sort();
        for (rule, key, q) in quiet {
            out.push(Action::Resolve { rule, key, time_ms: now_ms, why: format!("quiet for {}", human(q)) });
        }
        self.prune(now_ms, None);
        let mut devices: Vec<&DeviceInfo> = self.devices.values().collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        for &i in &self.absence {
            let state = &mut self.rules[i];
            let rule = &state.rule;
            for d in &devices {
                let Some(since) = d.since_ms else { continue };
                if rule.spec.tag.as_ref().is_some_and(|t| !d.tags.contains(t)) {
                    continue;
                }
                let seen = state.last_seen.get(d.id.as_str()).copied();
                let last = if rule.matchers.is_empty() {
                    seen.unwrap_or(since).max(since)
                } else {
                    seen.unwrap_or(d.created_ms)
                };
                let key = format!("device={}", d.id);
                if now_ms - last >= rule.window_ms && !state.open.contains_key(&key) {
                    let what = if rule.matchers.is_empty() { "no heartbeat" } else { "no matching finding" };
                    let why = format!("{what} for {}", human(now_ms - last));
                    state.open.insert(key.clone(), Open { last_ms: now_ms, quiet_ms: None });
                    out.push(Action::Open {
                        rule: rule.spec.name.clone(),
                        key,
                        severity: rule.severity,
                        time_ms: now_ms,
                        members: Vec::new(),
                        quiet_ms: None,
                        why,
                    });
                }
            }
        }
        out
    }
}

fn key_of(rule: &Rule, fact: &Fact) -> Option<String> {
    let mut key = match rule.key {
        None => "fleet".to_owned(),
        Some(f) => format!("{}={}", f.name(), fact.key(f)?),
    };
    if rule.spec.same_device && rule.key != Some(KeyField::Device) {
        key.push_str(" on ");
        key.push_str(&fact.device);
    }
    Some(key)
}

/// How many routers a window holds (rules that need at most one).
fn distinct(q: &VecDeque<Seen>) -> usize {
    let mut seen: Vec<u32> = q.iter().map(|m| m.device).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// True if each step has a finding no earlier than the previous step's,
/// all within the window (the entries are pruned to it already).
fn sequence_complete(steps: &[VecDeque<Seen>]) -> bool {
    let mut after = i64::MIN;
    for q in steps {
        match q.iter().map(|m| m.time_ms).filter(|t| *t >= after).min() {
            Some(t) => after = t,
            None => return false,
        }
    }
    true
}

/// `90 s`, `15 min`, `2 h`.
pub fn human(ms: i64) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h", s / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::rule::{parse_yaml, Rule};

    fn rule(yaml: &str) -> Rule {
        Rule::compile(parse_yaml(yaml).unwrap().remove(0)).unwrap()
    }

    fn finding(id: i64, device: &str, t: i64, kind: &str, ip: Option<&str>) -> Fact {
        Fact {
            finding: id,
            device: device.into(),
            time_ms: t,
            agent: kind
                .split('.')
                .next()
                .map(|a| match a {
                    "wifi" => "wifi",
                    "net" => "network",
                    _ => "security",
                })
                .unwrap_or_default()
                .into(),
            kind: kind.into(),
            severity: 4,
            src_ip: ip.map(str::to_owned),
            ..Fact::default()
        }
    }

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Open { key, members, .. } => format!("open {key} {}", members.len()),
                Action::Append { key, .. } => format!("append {key}"),
                Action::Resolve { key, why, .. } => format!("resolve {key}: {why}"),
            })
            .collect()
    }

    const MIN: i64 = 60_000;

    #[test]
    fn all_joins_two_agents_on_the_same_router_within_the_window_and_dedups() {
        let mut e = Engine::new(vec![rule(
            "name: wifi-and-scan\ntype: all\nseverity: high\nwindow: 10m\nkey: device\nmatch:\n  - kind: wifi.deauth_flood\n  - kind: net.port_scan\n",
        )]);
        assert!(e.feed(&finding(1, "gw-1", 0, "wifi.deauth_flood", None)).is_empty());
        assert!(e.feed(&finding(2, "gw-2", MIN, "net.port_scan", Some("203.0.113.9"))).is_empty(), "another router");
        assert_eq!(
            kinds(&e.feed(&finding(3, "gw-1", 5 * MIN, "net.port_scan", Some("203.0.113.9")))),
            ["open device=gw-1 2"]
        );
        // The campaign goes on: one incident, growing.
        assert_eq!(kinds(&e.feed(&finding(4, "gw-1", 6 * MIN, "wifi.deauth_flood", None))), ["append device=gw-1"]);
        assert_eq!(kinds(&e.tick(15 * MIN)), Vec::<String>::new(), "quiet for 9 min only");
        assert_eq!(kinds(&e.tick(16 * MIN)), ["resolve device=gw-1: quiet for 10 min"]);
        // Too far apart: nothing.
        e.feed(&finding(5, "gw-3", 20 * MIN, "wifi.deauth_flood", None));
        assert!(e.feed(&finding(6, "gw-3", 31 * MIN, "net.port_scan", None)).is_empty());
    }

    #[test]
    fn a_sequence_needs_its_order() {
        let mut e = Engine::new(vec![rule(
            "name: brute-then-login\ntype: sequence\nseverity: critical\nwindow: 30m\nkey: src_ip\nmatch:\n  - kind: ssh.bruteforce\n  - kind: auth.success_after_failures\n",
        )]);
        let ip = Some("198.51.100.4");
        assert!(e.feed(&finding(1, "gw-1", 0, "auth.success_after_failures", ip)).is_empty(), "login first");
        assert!(e.feed(&finding(2, "gw-1", MIN, "ssh.bruteforce", ip)).is_empty());
        let a = e.feed(&finding(3, "gw-2", 2 * MIN, "auth.success_after_failures", ip));
        assert_eq!(kinds(&a), ["open src_ip=198.51.100.4 3"], "across routers, the same address");
        let Action::Open { severity, .. } = &a[0] else { unreachable!() };
        assert_eq!(*severity, 5);
        // Another address is another key.
        assert!(e.feed(&finding(4, "gw-1", 3 * MIN, "auth.success_after_failures", Some("198.51.100.5"))).is_empty());
        // A finding without the key takes no part.
        assert!(e.feed(&finding(5, "gw-1", 3 * MIN, "ssh.bruteforce", None)).is_empty());
    }

    #[test]
    fn a_threshold_counts_findings_and_routers() {
        let mut e = Engine::new(vec![rule(
            "name: many-routers\ntype: threshold\nseverity: high\nwindow: 1h\nkey: src_ip\ncount: 3\ndevices: 3\nmatch:\n  - kind: ['ssh.*', web.bruteforce]\n",
        )]);
        let ip = Some("192.0.2.66");
        assert!(e.feed(&finding(1, "gw-1", 0, "ssh.bruteforce", ip)).is_empty());
        assert!(e.feed(&finding(2, "gw-1", MIN, "ssh.user_enum", ip)).is_empty());
        assert!(e.feed(&finding(3, "gw-2", 2 * MIN, "web.bruteforce", ip)).is_empty(), "3 findings, 2 routers");
        assert_eq!(kinds(&e.feed(&finding(4, "gw-3", 3 * MIN, "ssh.bruteforce", ip))), ["open src_ip=192.0.2.66 3"]);
        // Fleet-wide, no key.
        let mut e = Engine::new(vec![rule(
            "name: fleet-wifi\ntype: threshold\nseverity: medium\nwindow: 15m\ncount: 2\nmatch:\n  - agent: wifi\n",
        )]);
        e.feed(&finding(1, "gw-1", 0, "wifi.auth_failures", None));
        assert_eq!(kinds(&e.feed(&finding(2, "gw-1", MIN, "wifi.client_churn", None))), ["open fleet 2"]);
    }

    #[test]
    fn a_window_forgets_what_is_older_than_it_and_keeps_the_newest_to_its_count() {
        let mut e = Engine::new(vec![rule(
            "name: three\ntype: threshold\nseverity: high\nwindow: 10m\nkey: src_ip\ncount: 3\nmatch:\n  - kind: ssh.bruteforce\n",
        )]);
        let ip = Some("192.0.2.9");
        assert!(e.feed(&finding(1, "gw-1", 0, "ssh.bruteforce", ip)).is_empty());
        assert!(e.feed(&finding(2, "gw-2", MIN, "ssh.bruteforce", ip)).is_empty());
        // Both are out of the window by now: one in it, not three.
        assert!(e.feed(&finding(3, "gw-1", 12 * MIN, "ssh.bruteforce", ip)).is_empty());
        assert!(e.feed(&finding(4, "gw-1", 13 * MIN, "ssh.bruteforce", ip)).is_empty());
        let a = e.feed(&finding(5, "gw-3", 14 * MIN, "ssh.bruteforce", ip));
        let [Action::Open { members, .. }] = &a[..] else { panic!("{a:?}") };
        let ids: Vec<(i64, &str)> = members.iter().map(|m| (m.finding, &*m.device)).collect();
        assert_eq!(ids, [(3, "gw-1"), (4, "gw-1"), (5, "gw-3")]);
    }

    #[test]
    fn absence_opens_for_a_silent_router_and_resolves_when_it_talks() {
        let mut e = Engine::new(vec![rule("name: quiet\ntype: absence\nseverity: high\nwindow: 15m\n")]);
        e.set_devices(vec![
            DeviceInfo { id: "gw-1".into(), tags: vec![], since_ms: Some(0), created_ms: 0 },
            DeviceInfo { id: "gw-never".into(), tags: vec![], since_ms: None, created_ms: 0 },
        ]);
        let hb = |t| Fact { device: "gw-1".into(), time_ms: t, heartbeat: true, ..Fact::default() };
        e.feed(&hb(MIN));
        assert!(e.tick(15 * MIN).is_empty());
        assert_eq!(kinds(&e.tick(16 * MIN)), ["open device=gw-1 0"]);
        assert!(e.tick(30 * MIN).is_empty(), "one incident while it lasts");
        assert_eq!(kinds(&e.feed(&hb(31 * MIN))), ["resolve device=gw-1: heard from again"]);
    }

    #[test]
    fn tags_select_routers_and_restored_incidents_take_new_members() {
        let mut e = Engine::new(vec![rule(
            "name: lab-brute\ntype: threshold\nseverity: high\nwindow: 1h\nkey: src_ip\ncount: 2\ntag: lab\nmatch:\n  - kind: ssh.bruteforce\n",
        )]);
        e.set_devices(vec![DeviceInfo {
            id: "gw-lab".into(),
            tags: vec!["lab".into()],
            since_ms: Some(0),
            created_ms: 0,
        }]);
        let ip = Some("192.0.2.1");
        assert!(e.feed(&finding(1, "gw-other", 0, "ssh.bruteforce", ip)).is_empty());
        assert!(e.feed(&finding(2, "gw-other", 0, "ssh.bruteforce", ip)).is_empty(), "untagged routers do not count");
        e.restore_open("lab-brute", "src_ip=192.0.2.1", 0, Some(3_600_000));
        assert_eq!(kinds(&e.feed(&finding(3, "gw-lab", MIN, "ssh.bruteforce", ip))), ["append src_ip=192.0.2.1"]);
    }

    #[test]
    fn keys_are_bounded() {
        let mut e = Engine::new(vec![rule(
            "name: t\ntype: threshold\nseverity: low\nwindow: 1h\nkey: src_ip\ncount: 2\nmatch:\n  - kind: ssh.bruteforce\n",
        )]);
        for i in 0..(MAX_KEYS as i64 + 10) {
            e.feed(&finding(
                i,
                "gw-1",
                0,
                "ssh.bruteforce",
                Some(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)),
            ));
        }
        assert_eq!(e.keys_dropped, 10);
        e.tick(2 * 3_600_000);
        assert!(e.feed(&finding(1, "gw-1", 2 * 3_600_000, "ssh.bruteforce", Some("192.0.2.200"))).is_empty());
        assert_eq!(e.keys_dropped, 10, "room again once the old keys expired");
    }
}
