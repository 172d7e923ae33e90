//! Detection agents: synchronous state machines fed with typed events and
//! their line's time, producing findings. No I/O, no clock of their own, so
//! they are tested with plain line sequences.
//!
//! Four agents, each its own module behind [`Agent`]: [`security`],
//! [`wifi`], [`network`], [`system`]. Their thresholds come from
//! `opmas_proto::agents` (defaults in `config/agents/<agent>.yaml`).
//!
//! # Finding kinds
//!
//! The kinds are stable, dotted, and part of the operator-facing contract
//! (the hub stores and filters by them). [`ALL_KINDS`] lists them.
//!
//! | kind | agent | severity | subject | fires when (defaults) |
//! | --- | --- | --- | --- | --- |
//! | `ssh.bruteforce` | security | 4 | src_ip, user, service=ssh | 5 failed logins from one source in 60 s |
//! | `ssh.user_enum` | security | 3 | src_ip, service=ssh | 5 distinct user names from one source in 600 s |
//! | `ssh.distributed_bruteforce` | security | 4 | user, service=ssh | 10 distinct sources failing as one user in 600 s |
//! | `web.bruteforce` | security | 4 | src_ip, user, service=luci | 5 failed LuCI logins from one source in 60 s |
//! | `auth.success_after_failures` | security | 5 | src_ip, user, service | a login succeeds after 5 failures (SSH and LuCI together) from its source in 600 s |
//! | `wifi.deauth_flood` | wifi | 4 | iface | 20 disconnects of 5 distinct stations on one interface in 60 s |
//! | `wifi.auth_failures` | wifi | 3 | mac, iface | 5 failed authentications of one station in 60 s |
//! | `wifi.client_churn` | wifi | 2 | mac, iface | 10 connections of one station in 600 s |
//! | `net.port_scan` | network | 3 | src_ip, iface | 20 distinct destination ports dropped from one source in 60 s |
//! | `net.sweep` | network | 3 | src_ip, iface | 10 distinct destination hosts dropped from one source in 60 s |
//! | `dhcp.pool_exhausted` | network | 3 | iface, service=dnsmasq | 1 "no address available" on an interface in 300 s |
//! | `net.link_flapping` | network | 3 | iface | 4 up→down changes of one interface or link in 600 s |
//! | `ppp.session_drops` | network | 3 | iface, service=pppd | 3 PPP sessions ended in 3600 s |
//! | `sys.oom_kill` | system | 4 | service=the process | 1 OOM kill of a process in 600 s |
//! | `sys.crash_loop` | system | 4 | service (procd's instance without `::name`) | procd reports a crash loop |
//! | `sys.watchdog` | system | 4 | — | a watchdog, soft-lockup or hung-task line |
//! | `sys.unexpected_reboot` | system | 4 | — | a boot line after 300 s of log from a running system (see [`system`]) |
//!
//! Every finding carries `agent`, `kind`, `severity`, the subject keys that
//! apply, `count` (the events behind it), `first_ms`/`last_ms` (line times)
//! and at most [`MAX_EVIDENCE`] evidence lines of at most
//! [`MAX_EVIDENCE_LEN`] bytes.
//!
//! # Suppression: one finding per kind and subject per window
//!
//! Every agent routes its findings through one [`Suppressor`], keyed by
//! (kind, subject). When a detector's condition holds:
//!
//! 1. No window open for the key: the finding is emitted now
//!    (`update: false`) and a window of `suppress` seconds opens.
//! 2. While the window is open, every further event of that kind and subject
//!    is added to it ([`Suppressor::note`]: count, `last_ms`, evidence while
//!    there is room) and emits nothing; the detector for that key starts over,
//!    so events are counted once, either in a window or towards the next finding.
//! 3. When the window ends (seen at the next event for the key or at
//!    [`Agent::tick`]), one update is emitted if anything was added:
//!    `update: true` with the same agent, kind, subject and `first_ms`, the
//!    total `count` and the latest `last_ms`. Nothing is emitted otherwise.
//! 4. After that the detector must cross its threshold again, with events
//!    after the window, for a new finding (a new `first_ms`).
//!
//! So a flood of any size yields one finding and one update per window.
//! The table of open windows is bounded ([`MAX_OPEN`] in each agent); when it
//! is full the window that ends soonest is closed early (its update emitted
//! at once) and counted as evicted. Suppression windows are `ssh_suppress`
//! (security) or `suppress` (the others) seconds long.
//!
//! # Time
//!
//! Windows run on line time (`Meta::now_ms`), so a replayed log detects what
//! live reading would. [`Agent::tick`] gets the wall clock, which may differ
//! from line time by the router's time zone (syslog lines carry local time
//! without a zone) or, in a replay, by years. Each agent's [`Clock`] maps the
//! wall clock to line time by the offset measured at the first tick after
//! lines arrived, so windows end `suppress` seconds of line time after they
//! opened, and then advance with the wall clock while the log is quiet.
//!
//! # Bounded state, few instructions per event
//!
//! Every table has a fixed capacity (heapless, allocated once when the agent
//! is built) and evicts by the clock (second-chance) algorithm
//! ([`BoundedMap`]): amortised O(1) per insertion, even under a flood of new
//! keys against a full table, and an entry hit since the hand last passed
//! stays, so an active attacker survives a spoofed flood. Entries whose
//! windows are over are reused without counting; live ones evicted are
//! counted and reported in the heartbeat (`AgentStatus::evicted`).
//!
//! The hot path allocates nothing: counters are rings of `u32` seconds
//! ([`Burst`]), distinct values are 256-bit linear-counting bitmaps over two
//! half-windows ([`Distinct`]), names are inline `heapless::String`s, and
//! evidence lines wait in a small ring of inline buffers ([`EvidencePool`]).
//! Allocation happens only when a finding is emitted.
//!
//! Measured (release, one x86_64 core, `tests::throughput`): parse, classify
//! and all four agents run at 2.4 to 3.6 million lines a second on a flood
//! where half the lines come from a new source each and every table is full;
//! the agents alone take about 135 ns per event for all four. Their state,
//! allocated once, is about 430 KiB (security), 250 KiB (network), 175 KiB
//! (WiFi) and 50 KiB (system); resident memory stays flat through a million
//! lines from 100,000 sources (`tests::resident_memory_...`).
//!
//! Known limit: table keys are hashed with unseeded FNV (heapless), so an
//! attacker who can choose many source addresses could aim them at one
//! bucket and slow insertions down (memory stays bounded).

pub mod network;
pub mod security;
pub mod system;
pub mod wifi;

use std::hash::Hash;
use std::net::IpAddr;

use heapless::{FnvIndexMap, String as HString};
use opmas_proto::msg::{Finding, Severity, Subject};

use crate::events::Event;

pub use network::NetworkAgent;
pub use security::SecurityAgent;
pub use system::SystemAgent;
pub use wifi::WifiAgent;

/// Longest evidence line kept in a finding, in bytes.
pub const MAX_EVIDENCE_LEN: usize = 240;
/// Evidence lines kept per finding: enough to show the pattern, small on the wire.
pub const MAX_EVIDENCE: usize = 3;
/// Open suppression windows per agent. A finding is about one subject, and
/// more than this many subjects in trouble at once within one agent is
/// itself a flood: the soonest-ending window is then closed early (its
/// update emitted at once). About 300 bytes each.
pub const MAX_OPEN: usize = 64;

/// Every agent's suppressor: its map has twice [`MAX_OPEN`] room, so that
/// heapless's Robin Hood probes stay short (see [`BoundedMap`]).
pub type AgentSuppressor = Suppressor<{ 2 * MAX_OPEN }>;

/// What an agent knows about the line behind an event.
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    /// The raw line, for evidence.
    pub line: &'a str,
    /// The line's timestamp, or its arrival time when it has none: the
    /// clock for windows, so replaying old logs detects what live reading would.
    pub now_ms: u64,
    /// The logging program and its pid (dropbear logs one connection per pid).
    pub program: Option<&'a str>,
    /// The logging process, when the line names it.
    pub pid: Option<u32>,
}

/// Counters every agent reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentCounters {
    /// Events the agent consumed.
    pub events: u64,
    /// Findings emitted, new ones and updates.
    pub findings: u64,
    /// Live entries evicted from full tables, and windows closed early.
    pub evicted: u64,
}

/// One detection agent. `seq` of emitted findings is left 0: the spool
/// numbers them.
pub trait Agent {
    /// `security`, `wifi`, `network` or `system`.
    fn name(&self) -> &'static str;
    /// Feeds one event; pushes any finding it completes onto `out`.
    fn on_event(&mut self, event: &Event<'_>, meta: &Meta<'_>, out: &mut Vec<Finding>);
    /// Called about once a second with the wall clock, to end suppression
    /// windows (emitting their updates).
    fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>);
    /// The agent's counters since it was built.
    fn counters(&self) -> AgentCounters;
}

/// A finding kind: stable name, severity, and words for summaries.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// Unique among [`ALL_KINDS`]; part of the suppression key.
    pub id: u8,
    /// The dotted name, e.g. `ssh.bruteforce`.
    pub name: &'static str,
    /// 1 (informational) to 5 (critical).
    pub severity: Severity,
    /// What it is, for summaries ("SSH brute force").
    pub title: &'static str,
}

/// Failed SSH logins from one source.
pub const SSH_BRUTEFORCE: Kind =
    Kind { id: 0, name: "ssh.bruteforce", severity: Severity::HIGH, title: "SSH brute force" };
/// Many user names tried from one source.
pub const SSH_USER_ENUM: Kind =
    Kind { id: 1, name: "ssh.user_enum", severity: Severity::MEDIUM, title: "SSH user enumeration" };
/// Many sources failing as one user.
pub const SSH_DISTRIBUTED_BRUTEFORCE: Kind =
    Kind { id: 2, name: "ssh.distributed_bruteforce", severity: Severity::HIGH, title: "distributed SSH brute force" };
/// Failed LuCI logins from one source.
pub const WEB_BRUTEFORCE: Kind =
    Kind { id: 3, name: "web.bruteforce", severity: Severity::HIGH, title: "LuCI login brute force" };
/// A successful login from a source that just failed many times: likely a
/// guessed password, so above the brute force itself.
pub const AUTH_SUCCESS_AFTER_FAILURES: Kind = Kind {
    id: 4,
    name: "auth.success_after_failures",
    severity: Severity::CRITICAL,
    title: "login succeeded after failures",
};
/// Many stations disconnected on one interface.
pub const WIFI_DEAUTH_FLOOD: Kind =
    Kind { id: 5, name: "wifi.deauth_flood", severity: Severity::HIGH, title: "WiFi deauthentication flood" };
/// Repeated authentication failures of one station.
pub const WIFI_AUTH_FAILURES: Kind =
    Kind { id: 6, name: "wifi.auth_failures", severity: Severity::MEDIUM, title: "WiFi authentication failures" };
/// One station connecting again and again.
pub const WIFI_CLIENT_CHURN: Kind =
    Kind { id: 7, name: "wifi.client_churn", severity: Severity::LOW, title: "WiFi client churn" };
/// One source probing many ports.
pub const NET_PORT_SCAN: Kind = Kind { id: 8, name: "net.port_scan", severity: Severity::MEDIUM, title: "port scan" };
/// One source probing many hosts.
pub const NET_SWEEP: Kind = Kind { id: 9, name: "net.sweep", severity: Severity::MEDIUM, title: "host sweep" };
/// The DHCP server ran out of addresses.
pub const DHCP_POOL_EXHAUSTED: Kind =
    Kind { id: 10, name: "dhcp.pool_exhausted", severity: Severity::MEDIUM, title: "DHCP pool exhausted" };
/// An interface or link going down again and again.
pub const NET_LINK_FLAPPING: Kind =
    Kind { id: 11, name: "net.link_flapping", severity: Severity::MEDIUM, title: "link flapping" };
/// PPP sessions ending again and again.
pub const PPP_SESSION_DROPS: Kind =
    Kind { id: 12, name: "ppp.session_drops", severity: Severity::MEDIUM, title: "PPP session drops" };
/// The kernel killed a process for lack of memory.
pub const SYS_OOM_KILL: Kind = Kind { id: 13, name: "sys.oom_kill", severity: Severity::HIGH, title: "OOM kill" };
/// procd gave up respawning a service.
pub const SYS_CRASH_LOOP: Kind =
    Kind { id: 14, name: "sys.crash_loop", severity: Severity::HIGH, title: "service crash loop" };
/// A watchdog, soft lockup or hung task.
pub const SYS_WATCHDOG: Kind = Kind { id: 15, name: "sys.watchdog", severity: Severity::HIGH, title: "watchdog event" };
/// A boot in the middle of a running system's log.
pub const SYS_UNEXPECTED_REBOOT: Kind =
    Kind { id: 16, name: "sys.unexpected_reboot", severity: Severity::HIGH, title: "unexpected reboot" };

/// Every finding kind, in id order.
pub const ALL_KINDS: &[&Kind] = &[
    &SSH_BRUTEFORCE,
    &SSH_USER_ENUM,
    &SSH_DISTRIBUTED_BRUTEFORCE,
    &WEB_BRUTEFORCE,
    &AUTH_SUCCESS_AFTER_FAILURES,
    &WIFI_DEAUTH_FLOOD,
    &WIFI_AUTH_FAILURES,
    &WIFI_CLIENT_CHURN,
    &NET_PORT_SCAN,
    &NET_SWEEP,
    &DHCP_POOL_EXHAUSTED,
    &NET_LINK_FLAPPING,
    &PPP_SESSION_DROPS,
    &SYS_OOM_KILL,
    &SYS_CRASH_LOOP,
    &SYS_WATCHDOG,
    &SYS_UNEXPECTED_REBOOT,
];

/// Truncates `line` to at most [`MAX_EVIDENCE_LEN`] bytes at a character boundary.
pub fn evidence(line: &str) -> String {
    let (head, dots) = cut(line);
    let mut s = String::with_capacity(head.len() + dots.len());
    s.push_str(head);
    s.push_str(dots);
    s
}

/// `line` as evidence: its head and `...` when the head had to be cut to
/// fit [`MAX_EVIDENCE_LEN`] bytes.
fn cut(line: &str) -> (&str, &'static str) {
    if line.len() <= MAX_EVIDENCE_LEN {
        return (line, "");
    }
    let mut end = MAX_EVIDENCE_LEN - 3;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    (&line[..end], "...")
}

/// A new finding (`seq` 0, `update` false) from `agent` of `kind`.
#[allow(clippy::too_many_arguments)]
pub fn finding(
    agent: &str,
    kind: &Kind,
    subject: Subject,
    count: u32,
    first_ms: u64,
    last_ms: u64,
    summary: String,
    evidence: Vec<String>,
) -> Finding {
    Finding {
        seq: 0,
        agent: agent.into(),
        kind: kind.name.into(),
        severity: kind.severity,
        subject,
        count,
        first_ms,
        last_ms: last_ms.max(first_ms),
        summary,
        evidence,
        update: false,
    }
}

/// The subject in words: `from 192.0.2.1, user root, on wlan0`.
pub fn describe(s: &Subject) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(ip) = s.src_ip {
        parts.push(format!("from {ip}"));
    }
    if let Some(m) = &s.mac {
        parts.push(format!("station {m}"));
    }
    if let Some(u) = &s.user {
        parts.push(format!("user {u}"));
    }
    if let Some(i) = &s.iface {
        parts.push(format!("on {i}"));
    }
    if let Some(v) = &s.service {
        parts.push(format!("service {v}"));
    }
    parts.join(", ")
}

/// Seconds of `ms`, saturating in the year 2106.
pub fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

/// The splitmix64 finaliser: spreads any input over all 64 bits, so that the
/// low bits index bitmaps evenly even for sequential ports or addresses.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-bit hash of an address.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => mix(u64::from(u32::from(a))),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            mix(v as u64 ^ mix((v >> 64) as u64))
        }
    }
}

/// A 64-bit hash of a name (user, interface, process), exactly as written.
pub fn hash_str(s: &str) -> u64 {
    fnv(s.bytes())
}

/// A 64-bit hash of a MAC address, ASCII case folded: hostapd and dnsmasq
/// log them in lower case, other tools in upper.
pub fn hash_mac(s: &str) -> u64 {
    fnv(s.bytes().map(|b| b.to_ascii_lowercase()))
}

/// FNV-1a over `bytes`, then [`mix`].
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// `s` cut to at most `N` bytes at a character boundary: names are kept
/// inline so that tracking one allocates nothing.
pub fn short<const N: usize>(s: &str) -> HString<N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = HString::new();
    let _ = out.push_str(&s[..end]);
    out
}

/// The text of an inline name, or `None` when it is empty.
pub fn opt<const N: usize>(s: &HString<N>) -> Option<String> {
    (!s.is_empty()).then(|| s.as_str().to_owned())
}

/// Maps the wall clock of [`Agent::tick`] to line time.
///
/// Every event's line time is observed; at the first tick after new lines
/// the offset between the newest line time and the wall clock is measured,
/// and later ticks return the wall clock plus that offset (never less than
/// the newest line time). Live, the offset is the time zone error plus the
/// delivery delay; in a replay it is the age of the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Newest line time seen.
    latest_ms: u64,
    /// Lines were seen since the last tick.
    fresh: bool,
    /// Line time minus wall time, as last measured.
    offset_ms: i64,
    /// An offset has been measured.
    synced: bool,
}

impl Clock {
    /// Notes the line time of an event.
    pub fn observe(&mut self, line_ms: u64) {
        self.latest_ms = self.latest_ms.max(line_ms);
        self.fresh = true;
    }

    /// Line time now, given the wall clock.
    pub fn at_tick(&mut self, wall_ms: u64) -> u64 {
        let wall = i64::try_from(wall_ms).unwrap_or(i64::MAX);
        if self.fresh {
            self.offset_ms = i64::try_from(self.latest_ms).unwrap_or(i64::MAX).saturating_sub(wall);
            self.fresh = false;
            self.synced = true;
        }
        if !self.synced {
            return self.latest_ms;
        }
        let mapped = u64::try_from(wall.saturating_add(self.offset_ms)).unwrap_or(0);
        mapped.max(self.latest_ms)
    }
}

/// A reference to a line kept in an [`EvidencePool`]; stale once the slot is reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvRef {
    /// The slot.
    slot: u16,
    /// The slot's generation when kept; 0 for none.
    gen: u32,
}

/// A ring of inline line buffers for evidence, so that keeping the first
/// lines of every subject's run costs a copy, not an allocation.
///
/// Under a flood of new subjects the ring turns over quickly and an older
/// subject's lines may be gone when it fires: its finding then carries only
/// the lines still here plus the line that fired it.
pub struct EvidencePool<const N: usize> {
    /// The kept lines, truncated like [`evidence`]; raw bytes so that a copy
    /// is one `memcpy` (heapless's `push_str` copies byte by byte).
    slots: [[u8; MAX_EVIDENCE_LEN]; N],
    /// Bytes used in each slot.
    lens: [u8; N],
    /// Generation of each slot's line.
    gens: [u32; N],
    /// Next slot to reuse.
    next: usize,
    /// Last generation handed out.
    gen: u32,
}

impl<const N: usize> Default for EvidencePool<N> {
    fn default() -> Self {
        EvidencePool { slots: [[0; MAX_EVIDENCE_LEN]; N], lens: [0; N], gens: [0; N], next: 0, gen: 0 }
    }
}

impl<const N: usize> EvidencePool<N> {
    /// Copies `line` (truncated) into the oldest slot.
    pub fn keep(&mut self, line: &str) -> EvRef {
        let slot = self.next;
        let (Some(buf), Some(len), Some(gen)) =
            (self.slots.get_mut(slot), self.lens.get_mut(slot), self.gens.get_mut(slot))
        else {
            return EvRef::default();
        };
        self.next = (slot + 1) % N;
        self.gen = self.gen.wrapping_add(1).max(1);
        *gen = self.gen;
        let (head, dots) = cut(line);
        buf[..head.len()].copy_from_slice(head.as_bytes());
        buf[head.len()..head.len() + dots.len()].copy_from_slice(dots.as_bytes());
        *len = (head.len() + dots.len()) as u8;
        EvRef { slot: slot as u16, gen: self.gen }
    }

    /// The line behind `r`, if its slot was not reused since.
    pub fn get(&self, r: EvRef) -> Option<&str> {
        let i = usize::from(r.slot);
        if r.gen == 0 || self.gens.get(i) != Some(&r.gen) {
            return None;
        }
        let len = usize::from(*self.lens.get(i)?);
        core::str::from_utf8(self.slots.get(i)?.get(..len)?).ok()
    }
}

/// The first lines of a run: [`MAX_EVIDENCE`] − 1 of them, the last
/// evidence line being the one that fires the finding.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvList {
    /// Kept lines, unused ones default.
    refs: [EvRef; MAX_EVIDENCE - 1],
    /// Lines offered since the last clear (saturating).
    seen: u8,
}

impl EvList {
    /// Offers `line`; kept if there is room.
    pub fn note<const N: usize>(&mut self, pool: &mut EvidencePool<N>, line: &str) {
        if let Some(r) = self.refs.get_mut(usize::from(self.seen)) {
            *r = pool.keep(line);
        }
        self.seen = self.seen.saturating_add(1);
    }

    /// Forgets the kept lines.
    pub fn clear(&mut self) {
        *self = EvList::default();
    }

    /// The kept lines still in `pool`.
    fn kept<const N: usize>(&self, pool: &EvidencePool<N>) -> Vec<String> {
        self.refs.iter().filter_map(|r| pool.get(*r)).map(str::to_owned).collect()
    }

    /// The evidence of a finding fired by `current`, the line offered last:
    /// the kept lines, then `current` unless it is one of them.
    pub fn lines<const N: usize>(&self, pool: &EvidencePool<N>, current: &str) -> Vec<String> {
        let mut v = self.kept(pool);
        if usize::from(self.seen) > self.refs.len() || v.is_empty() {
            v.push(evidence(current));
        }
        v.truncate(MAX_EVIDENCE);
        v
    }

    /// The kept lines, then `other`, a line that was not offered.
    pub fn lines_then<const N: usize>(&self, pool: &EvidencePool<N>, other: &str) -> Vec<String> {
        let mut v = self.kept(pool);
        v.truncate(MAX_EVIDENCE - 1);
        v.push(evidence(other));
        v
    }
}

/// Events of one kind for one subject: the times of the latest `N` (a ring
/// of `u32` seconds, so `N` bounds the largest threshold) and the current
/// run (since the first event, a gap longer than the window, or the last
/// report), which gives a finding its count, first time and evidence.
#[derive(Clone, Copy, Debug)]
pub struct Burst<const N: usize> {
    /// Unix seconds of the latest events; `head` is where the next goes.
    times: [u32; N],
    /// Next write position in `times`.
    head: u16,
    /// Times held, at most `N`.
    len: u16,
    /// Events in the current run.
    count: u32,
    /// Line time of the run's first event.
    first_ms: u64,
    /// Line time of the latest event.
    last_ms: u64,
    /// The run's first lines.
    ev: EvList,
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        let () = Self::SIZE_OK;
        Burst { times: [0; N], head: 0, len: 0, count: 0, first_ms: 0, last_ms: 0, ev: EvList::default() }
    }
}

impl<const N: usize> Burst<N> {
    /// Checked when a burst is built (at compile time): the ring indexes by `% N` in `u16`.
    const SIZE_OK: () = assert!(N > 0 && N <= u16::MAX as usize);

    /// Adds `n` events at `now_ms`. A gap longer than `window_s` since the
    /// last event starts a new run; returns true when a run started.
    pub fn push<const P: usize>(
        &mut self,
        now_ms: u64,
        n: u32,
        window_s: u32,
        pool: &mut EvidencePool<P>,
        line: &str,
    ) -> bool {
        if self.count > 0 && now_ms.saturating_sub(self.last_ms) > u64::from(window_s) * 1000 {
            self.reset_run();
        }
        let started = self.count == 0;
        if started {
            self.first_ms = now_ms;
        }
        let t = secs(now_ms);
        for _ in 0..(n as usize).min(N) {
            self.times[usize::from(self.head)] = t;
            self.head = ((usize::from(self.head) + 1) % N) as u16;
            self.len = (usize::from(self.len) + 1).min(N) as u16;
        }
        self.count = self.count.saturating_add(n);
        self.last_ms = self.last_ms.max(now_ms);
        self.ev.note(pool, line);
        started
    }

    /// Time of the `k`-th latest event (1 = the latest).
    fn kth_latest(&self, k: u32) -> Option<u32> {
        let k = k as usize;
        if k == 0 || k > usize::from(self.len) {
            return None;
        }
        Some(self.times[(usize::from(self.head) + N - k) % N])
    }

    /// True when the run holds `threshold` events within `window_s` of `now_ms`.
    pub fn hits(&self, threshold: u32, window_s: u32, now_ms: u64) -> bool {
        self.count >= threshold && self.within(threshold, window_s, now_ms)
    }

    /// True when the latest `k` events, run or not, fall within `window_s` of `now_ms`.
    pub fn within(&self, k: u32, window_s: u32, now_ms: u64) -> bool {
        self.kth_latest(k).is_some_and(|t| u64::from(t) + u64::from(window_s) >= u64::from(secs(now_ms)))
    }

    /// Events, run or not, within `window_s` of `now_ms` (at most `N`), and
    /// the time of the earliest of them. Walks the ring: for rare events only.
    pub fn count_within(&self, window_s: u32, now_ms: u64) -> (u32, Option<u64>) {
        let now = u64::from(secs(now_ms));
        let mut n = 0;
        let mut first = None;
        for k in 1..=u32::from(self.len) {
            match self.kth_latest(k) {
                Some(t) if u64::from(t) + u64::from(window_s) >= now => {
                    n += 1;
                    first = Some(u64::from(t) * 1000);
                }
                _ => break,
            }
        }
        (n, first)
    }

    /// Ends the run: the next event starts a new one. The ring is kept.
    pub fn reset_run(&mut self) {
        self.count = 0;
        self.ev.clear();
    }

    /// Events in the current run.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Line time of the run's first event.
    pub fn first_ms(&self) -> u64 {
        self.first_ms
    }

    /// Line time of the latest event.
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// The run's first lines.
    pub fn ev(&self) -> &EvList {
        &self.ev
    }
}

/// Bits in a [`Distinct`] bitmap.
const DISTINCT_BITS: u32 = 256;

/// Distinct values of one kind for one subject within a window, estimated
/// by linear counting over a 256-bit bitmap, in two half-window buckets.
///
/// A value sets one bit of the current bucket; the estimate counts the set
/// bits of both buckets (kept incrementally, O(1) per value). When the
/// current bucket is half a window old it becomes the previous one and the
/// oldest is dropped, so the count covers between half a window and a
/// window of history: it never counts values older than the window.
/// Below about 24 the bit count equals the number of distinct values unless
/// two collide; up to 128 (the largest threshold allowed) the estimate is
/// within a few percent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Distinct {
    /// The current bucket's bitmap.
    cur: [u64; 4],
    /// The previous bucket's bitmap.
    prev: [u64; 4],
    /// Bits set in `cur | prev`.
    bits: u16,
    /// Events in the current bucket.
    cur_events: u32,
    /// Events in the previous bucket.
    prev_events: u32,
    /// Unix seconds when the current bucket started.
    cur_start_s: u32,
    /// Line time of the current bucket's first event.
    cur_first_ms: u64,
    /// Line time of the previous bucket's first event.
    prev_first_ms: u64,
    /// Line time of the latest event.
    last_ms: u64,
    /// The first lines since the last reset.
    ev: EvList,
}

impl Distinct {
    /// The bit count at which the estimate reaches `threshold` distinct values.
    pub fn bits_for(threshold: u32) -> u16 {
        let m = f64::from(DISTINCT_BITS);
        let t = f64::from(threshold.clamp(1, DISTINCT_BITS / 2));
        // Linear counting: n = -m ln(1 - k/m), so k = m (1 - e^(-n/m)).
        (m * (1.0 - (-t / m).exp())).ceil() as u16
    }

    /// Moves the buckets on to `now_s`.
    fn rotate(&mut self, now_s: u32, window_s: u32) {
        let half = (window_s / 2).max(1);
        if self.cur_events == 0 && self.prev_events == 0 {
            self.cur_start_s = now_s;
        } else if now_s >= self.cur_start_s.saturating_add(half.saturating_mul(2)) {
            *self = Distinct { ev: EvList::default(), cur_start_s: now_s, ..Distinct::default() };
        } else if now_s >= self.cur_start_s.saturating_add(half) {
            self.prev = self.cur;
            self.prev_events = self.cur_events;
            self.prev_first_ms = self.cur_first_ms;
            self.cur = [0; 4];
            self.cur_events = 0;
            self.cur_start_s += half;
            self.bits = self.prev.iter().map(|w| w.count_ones() as u16).sum();
        }
    }

    /// Adds one event with value hash `value` (see [`mix`]) at `now_ms`.
    pub fn insert<const P: usize>(
        &mut self,
        value: u64,
        now_ms: u64,
        window_s: u32,
        pool: &mut EvidencePool<P>,
        line: &str,
    ) {
        self.rotate(secs(now_ms), window_s);
        let bit = (value % u64::from(DISTINCT_BITS)) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.cur[word] & mask == 0 {
            self.cur[word] |= mask;
            if self.prev[word] & mask == 0 {
                self.bits += 1;
            }
        }
        if self.cur_events == 0 {
            self.cur_first_ms = now_ms;
        }
        self.cur_events = self.cur_events.saturating_add(1);
        self.last_ms = self.last_ms.max(now_ms);
        self.ev.note(pool, line);
    }

    /// Bits set: compare with [`Distinct::bits_for`].
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// The estimated number of distinct values.
    pub fn estimate(&self) -> u32 {
        let m = f64::from(DISTINCT_BITS);
        let k = f64::from(self.bits).min(m - 1.0);
        (-m * (1.0 - k / m).ln()).round() as u32
    }

    /// Events in the window.
    pub fn events(&self) -> u32 {
        self.cur_events.saturating_add(self.prev_events)
    }

    /// Line time of the window's first event.
    pub fn first_ms(&self) -> u64 {
        if self.prev_events > 0 {
            self.prev_first_ms
        } else {
            self.cur_first_ms
        }
    }

    /// Line time of the latest event.
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// The first lines since the last reset.
    pub fn ev(&self) -> &EvList {
        &self.ev
    }

    /// Forgets everything: the next event starts afresh.
    pub fn reset(&mut self) {
        *self = Distinct::default();
    }
}

/// One entry of a [`BoundedMap`].
#[derive(Debug)]
struct Slot<K, V> {
    /// Its key, to unlink it from the index when the slot is reused.
    key: K,
    /// The entry.
    value: V,
    /// Hit since the clock hand last passed.
    referenced: bool,
}

/// A map of fixed capacity `N` that evicts by the clock (second-chance)
/// algorithm when full. `M`, the size of its key index, must be a power of
/// two of at least `2 N`: heapless's Robin Hood index slows down badly near
/// full load (measured: 2.3 times slower per insertion into a full table),
/// so it is kept at most half full.
///
/// Entries live in `N` fixed slots. To make room, the hand walks the slots:
/// an entry that is stale (the caller's predicate: its windows are over) is
/// replaced uncounted; one hit since the hand last passed loses its mark and
/// is skipped; otherwise it is replaced and counted as evicted. Each mark is
/// cleared once per hit, so an insertion costs O(1) amortised, and a flood
/// of one-off keys evicts one-off keys, not the busy ones. A slot is reused
/// in place: nothing moves, and entries are never removed otherwise.
pub struct BoundedMap<K, V, const N: usize, const M: usize> {
    /// Key → slot.
    index: FnvIndexMap<K, u16, M>,
    /// The entries; grows to `N`, then slots are reused.
    slots: heapless::Vec<Slot<K, V>, N>,
    /// The clock hand: the next slot to consider.
    hand: usize,
    /// Live entries evicted.
    evicted: u64,
}

impl<K: Eq + Hash + Clone, V, const N: usize, const M: usize> Default for BoundedMap<K, V, N, M> {
    fn default() -> Self {
        let () = Self::SIZES_OK;
        BoundedMap { index: FnvIndexMap::new(), slots: heapless::Vec::new(), hand: 0, evicted: 0 }
    }
}

impl<K: Eq + Hash + Clone, V, const N: usize, const M: usize> BoundedMap<K, V, N, M> {
    /// Checked when a map is built (at compile time).
    const SIZES_OK: () = assert!(N > 0 && N <= u16::MAX as usize && M >= 2 * N && M.is_power_of_two());

    /// The entry for `key`, marked as hit.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = usize::from(*self.index.get(key)?);
        let s = self.slots.get_mut(i)?;
        s.referenced = true;
        Some(&mut s.value)
    }

    /// The entry for `key` without marking it.
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = usize::from(*self.index.get(key)?);
        self.slots.get(i).map(|s| &s.value)
    }

    /// The entry for `key`, marked as hit, or a new one from `make`, in a
    /// slot freed by the clock when the map is full. `stale` tells entries
    /// that may go uncounted. `None` only if the index is inconsistent,
    /// which the construction rules out.
    pub fn entry(&mut self, key: K, stale: impl Fn(&V) -> bool, make: impl FnOnce() -> V) -> Option<&mut V> {
        if let Some(&i) = self.index.get(&key) {
            let s = self.slots.get_mut(usize::from(i))?;
            s.referenced = true;
            return Some(&mut s.value);
        }
        let fresh = Slot { key: key.clone(), value: make(), referenced: false };
        let i = if self.slots.len() < N {
            self.slots.push(fresh).ok()?;
            self.slots.len() - 1
        } else {
            let i = self.victim(&stale);
            let old = self.slots.get_mut(i)?;
            let old_key = core::mem::replace(old, fresh).key;
            self.index.remove(&old_key);
            i
        };
        self.index.insert(key, i as u16).ok()?;
        self.slots.get_mut(i).map(|s| &mut s.value)
    }

    /// The slot to reuse, by the clock algorithm; counts a live eviction.
    fn victim(&mut self, stale: &impl Fn(&V) -> bool) -> usize {
        // Two turns at most: the first clears every mark.
        for _ in 0..2 * N {
            let i = self.hand;
            self.hand = (self.hand + 1) % N;
            let Some(s) = self.slots.get_mut(i) else { continue };
            if stale(&s.value) {
                return i;
            }
            if !s.referenced {
                self.evicted += 1;
                return i;
            }
            s.referenced = false;
        }
        self.evicted += 1;
        self.hand
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Live entries evicted since the map was built.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// An open suppression window.
#[derive(Debug)]
struct Window {
    /// The finding as emitted, then as updated.
    finding: Finding,
    /// The kind's title, for the update's summary.
    title: &'static str,
    /// Line time at which the window ends.
    until_ms: u64,
    /// Events added since the finding was emitted.
    pending: u32,
}

/// The suppression windows of one agent: see the module docs for the
/// semantics. Keyed by (kind id, subject hash); `N`, a power of two, is the
/// map's capacity, and at most `N / 2` windows are open at once (a Robin
/// Hood map near full load probes long).
pub struct Suppressor<const N: usize> {
    /// Window length in ms.
    window_ms: u64,
    /// Open windows.
    open: FnvIndexMap<(u8, u64), Window, N>,
    /// Findings emitted, new and updates.
    emitted: u64,
    /// Windows closed early because the table was full.
    evicted: u64,
}

impl<const N: usize> Suppressor<N> {
    /// Windows of `suppress_s` seconds.
    pub fn new(suppress_s: u32) -> Self {
        Suppressor { window_ms: u64::from(suppress_s) * 1000, open: FnvIndexMap::new(), emitted: 0, evicted: 0 }
    }

    /// Adds `n` events at `now_ms` to the open window of (`kind`, `subject`).
    /// Returns false when there is none (an ended one is closed first, its
    /// update emitted): the caller then checks its threshold.
    pub fn note(&mut self, kind: &Kind, subject: u64, now_ms: u64, n: u32, line: &str, out: &mut Vec<Finding>) -> bool {
        if self.open.is_empty() {
            return false;
        }
        let key = (kind.id, subject);
        let Some(w) = self.open.get_mut(&key) else { return false };
        if now_ms >= w.until_ms {
            if let Some(w) = self.open.remove(&key) {
                self.close(w, out);
            }
            return false;
        }
        w.pending = w.pending.saturating_add(n);
        w.finding.count = w.finding.count.saturating_add(n);
        w.finding.last_ms = w.finding.last_ms.max(now_ms);
        if w.finding.evidence.len() < MAX_EVIDENCE {
            w.finding.evidence.push(evidence(line));
        }
        true
    }

    /// Emits `finding` (new) and opens its window at `now_ms`. Call when
    /// [`Suppressor::note`] returned false and the threshold is crossed.
    pub fn emit(&mut self, kind: &Kind, subject: u64, now_ms: u64, finding: Finding, out: &mut Vec<Finding>) {
        let key = (kind.id, subject);
        if let Some(w) = self.open.remove(&key) {
            self.close(w, out);
        }
        if self.open.len() >= N / 2 {
            // Rare (N / 2 subjects in trouble at once), so a scan is fine here.
            let soonest = self.open.iter().min_by_key(|(_, w)| w.until_ms).map(|(k, _)| *k);
            if let Some(w) = soonest.and_then(|k| self.open.remove(&k)) {
                self.close(w, out);
                self.evicted += 1;
            }
        }
        out.push(finding.clone());
        self.emitted += 1;
        let until_ms = now_ms.saturating_add(self.window_ms);
        let _ = self.open.insert(key, Window { finding, title: kind.title, until_ms, pending: 0 });
    }

    /// Closes every window that ended by `now_ms` (line time).
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        if self.open.is_empty() {
            return;
        }
        let ended: heapless::Vec<(u8, u64), N> =
            self.open.iter().filter(|(_, w)| now_ms >= w.until_ms).map(|(k, _)| *k).collect();
        for key in &ended {
            if let Some(w) = self.open.remove(key) {
                self.close(w, out);
            }
        }
    }

    /// Emits the update of a closing window if events were added to it.
    fn close(&mut self, w: Window, out: &mut Vec<Finding>) {
        if w.pending == 0 {
            return;
        }
        let mut f = w.finding;
        let secs = f.last_ms.saturating_sub(f.first_ms) / 1000;
        f.summary = format!("{} {}: {} events in {secs} s (update)", w.title, describe(&f.subject), f.count);
        f.update = true;
        out.push(f);
        self.emitted += 1;
    }

    /// Windows open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no window is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Findings emitted since start, new and updates.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Windows closed early because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the agents' tests.

    use super::*;
    use crate::classify::classify;
    use crate::parse::{parse_line, Context};

    /// Parses and classifies `line` and feeds its event, if any, at its own
    /// time (or `now_ms` when given). Returns whether it was an event.
    pub fn feed_line(agent: &mut dyn Agent, line: &str, now_ms: Option<u64>, out: &mut Vec<Finding>) -> bool {
        let Ok(rec) = parse_line(line, Context { year: 2024, now_ms: None }) else { return false };
        let meta = Meta { line, now_ms: now_ms.or(rec.ts_ms).unwrap_or(0), program: rec.program, pid: rec.pid };
        match classify(&rec) {
            Some(ev) => {
                agent.on_event(&ev, &meta, out);
                true
            }
            None => false,
        }
    }

    /// Feeds a real log line at `now_ms` (its own timestamp ignored, so that
    /// sample lines can be replayed at any time), asserting it is an event.
    pub fn line(agent: &mut dyn Agent, line: &str, now_ms: u64, out: &mut Vec<Finding>) {
        assert!(feed_line(agent, line, Some(now_ms), out), "not classified: {line}");
    }

    /// Feeds `event` as if `line` had said it at `now_ms`: for floods, where
    /// parsing would only slow the test down.
    pub fn feed(agent: &mut dyn Agent, event: Event<'_>, line: &str, now_ms: u64, out: &mut Vec<Finding>) {
        let meta = Meta { line, now_ms, program: None, pid: None };
        agent.on_event(&event, &meta, out);
    }

    /// Ticks at `line_ms` (so the agent's clock maps wall time to line time
    /// one to one) and then `later_ms` after it; returns what the ticks emitted.
    pub fn tick_after(agent: &mut dyn Agent, line_ms: u64, later_ms: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        agent.tick(line_ms, &mut out);
        agent.tick(line_ms + later_ms, &mut out);
        out
    }

    /// Kinds of `findings` with their update flag, in order.
    pub fn kinds(findings: &[Finding]) -> Vec<(&str, bool)> {
        findings.iter().map(|f| (f.kind.as_str(), f.update)).collect()
    }

    /// A unix time in 2024, in ms, plus `s` seconds.
    pub fn t(s: u64) -> u64 {
        1_733_420_000_000 + s * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_dotted_and_in_id_order() {
        for (i, k) in ALL_KINDS.iter().enumerate() {
            assert_eq!(usize::from(k.id), i, "{}", k.name);
            assert!(k.name.contains('.') && k.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'));
        }
        let mut names: Vec<&str> = ALL_KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL_KINDS.len());
    }

    #[test]
    fn evidence_is_truncated_at_a_char_boundary() {
        let long = "é".repeat(200);
        let e = evidence(&long);
        assert!(e.len() <= MAX_EVIDENCE_LEN && e.ends_with("..."));
        let mut pool = EvidencePool::<2>::default();
        let r = pool.keep(&long);
        assert_eq!(pool.get(r), Some(e.as_str()));
        pool.keep("a");
        pool.keep("b");
        assert_eq!(pool.get(r), None, "reused slots invalidate old references");
    }

    #[test]
    fn burst_counts_a_run_within_its_window() {
        let mut pool = EvidencePool::<4>::default();
        let mut b = Burst::<8>::default();
        for s in [0, 8, 16, 24] {
            b.push(s * 1000, 1, 10, &mut pool, "x");
            assert!(!b.hits(3, 10, s * 1000), "three never within 10 s");
        }
        assert!(b.hits(2, 10, 24_000));
        assert_eq!(b.count(), 4);
        b.push(100_000, 1, 10, &mut pool, "y");
        assert_eq!((b.count(), b.first_ms()), (1, 100_000), "a gap starts a new run");
        assert_eq!(b.count_within(200, 100_000), (5, Some(0)));
        b.reset_run();
        assert!(!b.hits(1, 10, 100_000), "after a report the run starts over");
        assert!(b.within(1, 10, 100_000), "but the ring remembers");
    }

    #[test]
    fn distinct_counts_values_not_events_and_forgets_old_halves() {
        let mut pool = EvidencePool::<4>::default();
        let mut d = Distinct::default();
        for _ in 0..50 {
            d.insert(mix(7), 0, 60, &mut pool, "x");
        }
        assert_eq!((d.bits(), d.events()), (1, 50));
        for p in 0..19u64 {
            d.insert(mix(p + 100), 1000, 60, &mut pool, "x");
        }
        assert!(d.bits() <= 20);
        assert!(d.bits() < Distinct::bits_for(21));
        // 30 s later the first half is the previous bucket; 60 s later it is gone.
        d.insert(mix(1), 31_000, 60, &mut pool, "x");
        assert!(d.bits() >= 19);
        d.insert(mix(1), 61_000, 60, &mut pool, "x");
        assert_eq!(d.bits(), 1);
        d.insert(mix(1), 200_000, 60, &mut pool, "x");
        assert_eq!((d.bits(), d.events()), (1, 1), "a long gap forgets everything");
    }

    #[test]
    fn distinct_estimate_is_close_up_to_128() {
        assert_eq!(Distinct::bits_for(1), 1);
        assert_eq!(Distinct::bits_for(10), 10);
        assert_eq!(Distinct::bits_for(20), 20);
        let mut pool = EvidencePool::<1>::default();
        for n in [20u64, 64, 128] {
            let mut d = Distinct::default();
            for v in 0..n {
                d.insert(mix(v * 7919), 0, 60, &mut pool, "x");
            }
            let e = d.estimate() as f64;
            assert!((e - n as f64).abs() <= n as f64 * 0.15, "{n}: {e}");
        }
    }

    #[test]
    fn bounded_map_keeps_busy_keys_through_a_flood_of_new_ones() {
        let mut m: BoundedMap<u32, u32, 64, 128> = BoundedMap::default();
        let never = |_: &u32| false;
        for k in 0..10 {
            m.entry(k, never, || 0);
        }
        for k in 1000..101_000u32 {
            m.entry(k, never, || 0);
            // The busy keys are hit between every few new ones.
            if k % 8 == 0 {
                for b in 0..10 {
                    *m.entry(b, never, || 0).unwrap() += 1;
                }
            }
        }
        assert!(m.len() <= 64);
        for b in 0..10 {
            assert!(m.get(&b).is_some(), "busy key {b} was evicted");
        }
        assert!(m.evicted() >= 100_000 - 64);
    }

    #[test]
    fn bounded_map_reuses_stale_entries_uncounted() {
        let mut m: BoundedMap<u32, u32, 4, 8> = BoundedMap::default();
        for k in 0..100 {
            m.entry(k, |_| true, || k);
        }
        assert_eq!((m.len(), m.evicted()), (4, 0));
    }

    fn f(count: u32, first_ms: u64) -> Finding {
        finding(
            "security",
            &SSH_BRUTEFORCE,
            Subject { src_ip: Some("192.0.2.1".parse().unwrap()), ..Subject::default() },
            count,
            first_ms,
            first_ms,
            "x".into(),
            vec![],
        )
    }

    #[test]
    fn suppressor_emits_once_per_window_then_one_update() {
        let mut s = Suppressor::<8>::new(600);
        let mut out = Vec::new();
        assert!(!s.note(&SSH_BRUTEFORCE, 1, 0, 1, "l", &mut out));
        s.emit(&SSH_BRUTEFORCE, 1, 0, f(5, 0), &mut out);
        for i in 1..=1000 {
            assert!(s.note(&SSH_BRUTEFORCE, 1, i * 100, 1, "l", &mut out));
        }
        assert_eq!(out.len(), 1);
        s.expire(599_999, &mut out);
        assert_eq!(out.len(), 1, "still open");
        s.expire(600_000, &mut out);
        assert_eq!(out.len(), 2);
        let u = &out[1];
        assert!(u.update && !out[0].update);
        assert_eq!((u.count, u.first_ms, u.last_ms), (1005, 0, 100_000));
        assert_eq!((&u.kind, &u.subject, &u.agent), (&out[0].kind, &out[0].subject, &out[0].agent));
        assert_eq!(u.evidence.len(), MAX_EVIDENCE);
        assert!(s.is_empty());
        // A quiet window ends without an update.
        s.emit(&SSH_BRUTEFORCE, 2, 0, f(5, 0), &mut out);
        s.expire(700_000, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(s.emitted(), 3);
    }

    #[test]
    fn suppressor_closes_the_soonest_window_when_full() {
        let mut s = Suppressor::<4>::new(10);
        let mut out = Vec::new();
        s.emit(&SSH_BRUTEFORCE, 1, 0, f(5, 0), &mut out);
        s.emit(&SSH_BRUTEFORCE, 2, 1000, f(5, 1000), &mut out);
        assert!(s.note(&SSH_BRUTEFORCE, 1, 2000, 3, "l", &mut out));
        s.emit(&SSH_BRUTEFORCE, 3, 2000, f(5, 2000), &mut out);
        assert_eq!(kinds_of(&out), vec![false, false, true, false], "subject 1's update went out early");
        assert_eq!((s.len(), s.evicted()), (2, 1));
    }

    fn kinds_of(v: &[Finding]) -> Vec<bool> {
        v.iter().map(|f| f.update).collect()
    }

    #[test]
    fn clock_maps_wall_time_to_line_time() {
        let mut c = Clock::default();
        assert_eq!(c.at_tick(5_000), 0, "no lines, no time");
        let line = 1_733_420_000_000;
        let wall = line - 7_200_000;
        c.observe(line);
        // The router logs two hours ahead of the wall clock.
        assert_eq!(c.at_tick(wall), line);
        assert_eq!(c.at_tick(wall + 30_000), line + 30_000);
        c.observe(line + 40_000);
        assert_eq!(c.at_tick(wall + 31_000), line + 40_000, "new lines set the offset again");
        assert_eq!(c.at_tick(wall + 32_000), line + 41_000);
    }

    /// Throughput of parse + classify + all four agents, and of the agents
    /// alone, on floods that stress their tables. Run in release:
    /// `cargo test --release -p opmas-edge agents::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run in release"]
    fn throughput() {
        use crate::classify::classify;
        use crate::parse::{parse_line, Context};
        use std::time::Instant;

        let mut lines: Vec<String> = Vec::with_capacity(1_000_000);
        for i in 0..1_000_000u32 {
            let (a, b, c) = ((i >> 16) as u8, (i >> 8) as u8, i as u8);
            lines.push(match i % 8 {
                // Distinct-source firewall flood: table churn.
                0..=2 => format!("Thu Mar 26 00:00:12 2026 kern.warn kernel: [522600.718238] reject wan in: IN=eth1 OUT= MAC= SRC=100.{a}.{b}.{c} DST=203.0.113.1 LEN=40 TOS=0x00 PREC=0x00 TTL=234 ID=9806 PROTO=TCP SPT=46844 DPT={} WINDOW=1024 RES=0x00 SYN URGP=0 MARK=0x1", 1 + (i % 1000)),
                // Distinct-source SSH failures.
                3 => format!("Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[{}]: Bad password attempt for 'root' from 10.{a}.{b}.{c}:5000", i % 30000),
                // One source's brute force: the suppressed path.
                4 => "Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[100]: Bad password attempt for 'admin' from 203.0.113.5:5000".to_owned(),
                5 => format!("Tue Mar 13 21:56:47 2018 daemon.notice hostapd: wlan1: AP-STA-DISCONNECTED 02:00:{a:02x}:{b:02x}:{c:02x}:01"),
                6 => "Wed Apr 15 11:20:01 2020 daemon.notice netifd: Interface 'wan' is now down".to_owned(),
                // A line no agent uses.
                _ => "Fri Jun 21 15:39:52 2024 daemon.info dnsmasq[1]: read /etc/hosts - 12 names".to_owned(),
            });
        }
        let mut agents: Vec<Box<dyn Agent>> = vec![
            Box::new(SecurityAgent::new(Default::default())),
            Box::new(WifiAgent::new(Default::default())),
            Box::new(NetworkAgent::new(Default::default())),
            Box::new(SystemAgent::new(Default::default())),
        ];
        let base = 1_733_420_000_000u64;
        let mut out = Vec::new();
        let mut findings = 0;
        let started = Instant::now();
        for (i, line) in lines.iter().enumerate() {
            let Ok(rec) = parse_line(line, Context { year: 2024, now_ms: None }) else { continue };
            let meta = Meta { line, now_ms: base + i as u64 / 10, program: rec.program, pid: rec.pid };
            if let Some(ev) = classify(&rec) {
                for a in &mut agents {
                    a.on_event(&ev, &meta, &mut out);
                }
            }
            findings += out.len();
            out.clear();
        }
        let all = started.elapsed();

        let parsed: Vec<_> =
            lines.iter().map(|l| (l.as_str(), parse_line(l, Context { year: 2024, now_ms: None }).ok())).collect();
        let events: Vec<(Event<'_>, Meta<'_>)> = parsed
            .iter()
            .enumerate()
            .filter_map(|(i, (line, rec))| {
                let rec = rec.as_ref()?;
                let meta = Meta { line, now_ms: base + i as u64 / 10, program: rec.program, pid: rec.pid };
                Some((classify(rec)?, meta))
            })
            .collect();
        let mut agents: Vec<Box<dyn Agent>> = vec![
            Box::new(SecurityAgent::new(Default::default())),
            Box::new(WifiAgent::new(Default::default())),
            Box::new(NetworkAgent::new(Default::default())),
            Box::new(SystemAgent::new(Default::default())),
        ];
        let mut per_agent = Vec::new();
        for a in &mut agents {
            let started = Instant::now();
            for (ev, meta) in &events {
                a.on_event(ev, meta, &mut out);
                out.clear();
            }
            per_agent.push(format!("{} {:.0} ns", a.name(), started.elapsed().as_nanos() as f64 / events.len() as f64));
        }
        println!("per event: {}", per_agent.join(", "));
        let mut agents: Vec<Box<dyn Agent>> = vec![
            Box::new(SecurityAgent::new(Default::default())),
            Box::new(WifiAgent::new(Default::default())),
            Box::new(NetworkAgent::new(Default::default())),
            Box::new(SystemAgent::new(Default::default())),
        ];
        let started = Instant::now();
        for (ev, meta) in &events {
            for a in &mut agents {
                a.on_event(ev, meta, &mut out);
            }
            out.clear();
        }
        let only = started.elapsed();
        let evicted: u64 = agents.iter().map(|a| a.counters().evicted).sum();
        println!(
            "{} lines: parse+classify+agents {:.0} lines/s ({} findings); agents alone {:.0} events/s ({} events, {} evicted)",
            lines.len(),
            lines.len() as f64 / all.as_secs_f64(),
            findings,
            events.len() as f64 / only.as_secs_f64(),
            events.len(),
            evicted,
        );
    }

    /// Resident memory after 100k and after 1M lines from 100k distinct
    /// sources: the tables are allocated when the agents are built, so it
    /// must not grow. Alone, since other tests allocate in the same process:
    /// `cargo test --release -p opmas-edge agents::tests::resident_memory -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement of this process; run alone"]
    fn resident_memory_stays_flat_under_a_flood_of_distinct_sources() {
        use crate::classify::classify;
        use crate::parse::{parse_line, Context};
        use std::fmt::Write as _;

        fn rss_kib() -> u64 {
            let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
        }
        let mut agents: Vec<Box<dyn Agent>> = vec![
            Box::new(SecurityAgent::new(Default::default())),
            Box::new(WifiAgent::new(Default::default())),
            Box::new(NetworkAgent::new(Default::default())),
            Box::new(SystemAgent::new(Default::default())),
        ];
        let built = rss_kib();
        let (mut line, mut out, mut at_100k) = (String::new(), Vec::new(), 0);
        for i in 0..1_000_000u32 {
            let n = i % 100_000;
            let (a, b, c) = ((n >> 16) as u8, (n >> 8) as u8, n as u8);
            line.clear();
            let _ = match i % 3 {
                0 => write!(line, "Thu Mar 26 00:00:12 2026 kern.warn kernel: [522600.718238] reject wan in: IN=eth1 OUT= MAC= SRC=100.{a}.{b}.{c} DST=203.0.113.1 LEN=40 PROTO=TCP SPT=46844 DPT={} SYN", i % 1000),
                1 => write!(line, "Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[{}]: Bad password attempt for 'u{}' from 10.{a}.{b}.{c}:5000", i % 30000, i % 5000),
                _ => write!(line, "Tue Mar 13 21:56:47 2018 daemon.notice hostapd: wlan1: AP-STA-CONNECTED 02:00:{a:02x}:{b:02x}:{c:02x}:01"),
            };
            if let Ok(rec) = parse_line(&line, Context { year: 2024, now_ms: None }) {
                let meta =
                    Meta { line: &line, now_ms: 1_733_420_000_000 + u64::from(i), program: rec.program, pid: rec.pid };
                if let Some(ev) = classify(&rec) {
                    for a in &mut agents {
                        a.on_event(&ev, &meta, &mut out);
                    }
                }
            }
            out.clear();
            if i == 100_000 {
                at_100k = rss_kib();
            }
        }
        let end = rss_kib();
        let evicted: u64 = agents.iter().map(|a| a.counters().evicted).sum();
        println!(
            "VmRSS: built {built} KiB, after 100k lines {at_100k} KiB, after 1M lines {end} KiB; {evicted} evicted"
        );
        assert!(end <= at_100k + 256, "resident memory grew from {at_100k} to {end} KiB");
    }
}
