//! Detection agents: synchronous state machines fed with typed events and
//! their line's time, producing findings. No I/O, no clock of their own, so
//! they are tested with plain line sequences.
//!
//! Four agents, each its own module behind [`Agent`]: [`security`],
//! [`wifi`], [`network`], [`system`]. Their thresholds come from
//! `opmas_proto::agents` (defaults in `config/agents/<agent>.yaml`).
//!
//! What they share, one module each: `table` (bounded maps, hashing,
//! fixed strings), `window` (the clock, bursts, distinct counts),
//! `evidence` (quoted lines and building a finding) and `suppress` (one
//! finding per subject while its window is open). The kinds catalogue is
//! `opmas_proto::kinds`, re-exported here.
//!
//! # Finding kinds
//!
//! The kinds are stable, dotted, and part of the operator-facing contract
//! (the hub stores and filters by them). [`ALL_KINDS`] (in `opmas_proto::kinds`) lists them.
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
//! | `net.distributed_scan` | network | 3 | iface | 50 distinct sources dropped on one interface in 60 s; a campaign while it lasts |
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
//! # One finding per attack or campaign
//!
//! Every agent routes its findings through one [`Suppressor`], keyed by
//! (kind, subject). When a detector's condition holds:
//!
//! 1. No finding open for the key: the finding is emitted now
//!    (`Stage::New`) and stays open.
//! 2. While it is open, every further event of that kind and subject is
//!    added to it ([`Suppressor::note`]: count, `last_ms`, evidence while
//!    there is room, distinct values in its [`Tally`]) and the detector for
//!    that key starts over, so events are counted once. Each event keeps it
//!    open for another `suppress` seconds.
//! 3. While events keep coming, an update (`Stage::Update`) with the same
//!    agent, kind, subject and `first_ms`, the total `count` and the latest
//!    `last_ms` is emitted at most once per [`UPDATE_EVERY_MS`] (a minute),
//!    at the next event or [`Agent::tick`] after it is due: a person
//!    watching sees the count grow while it happens.
//! 4. After `suppress` seconds without an event it closes (`Stage::Closed`,
//!    the last update, "(ended)"). After that the detector must cross its
//!    threshold again for a new finding (a new `first_ms`).
//!
//! So an attack or campaign of any size and length is one finding with at
//! most one update a minute, and one closing update. Aggregate detectors
//! (many sources against one router) key their findings by the service or
//! interface, not by the source, so the internet's background knocking is
//! one ongoing finding, not one per window.
//! The table of open findings is bounded ([`MAX_OPEN`] in each agent); when
//! it is full the one that would close soonest is closed early and counted
//! as evicted. The quiet period is `ssh_suppress` (security) or `suppress`
//! (the others) seconds.
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
//! lines from 100,000 sources (`cargo bench -p opmas-edge --bench agents_memory`).
//!
//! Known limit: table keys are hashed with unseeded FNV (heapless), so an
//! attacker who can choose many source addresses could aim them at one
//! bucket and slow insertions down (memory stays bounded).

mod evidence;
pub mod network;
pub mod security;
mod suppress;
pub mod system;
mod table;
pub mod wifi;
mod window;

use std::hash::Hash;
use std::net::IpAddr;

use heapless::{FnvIndexMap, String as HString};
use opmas_proto::msg::{Finding, Stage, Subject};

use crate::events::Event;

pub use evidence::*;
/// The finding kinds: the catalogue lives in `opmas-proto`, shared with the hub.
pub use opmas_proto::kinds::*;
pub use suppress::*;
pub use table::*;
pub use window::*;

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

/// Seconds of `ms`, saturating in the year 2106.
pub fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
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

    /// Kinds of `findings` with their stage (`new`, `update`, `closed`), in order.
    pub fn kinds(findings: &[Finding]) -> Vec<(&str, &'static str)> {
        findings.iter().map(|f| (f.kind.as_str(), f.stage.as_str())).collect()
    }

    /// The new findings among `findings` (not their updates).
    pub fn news(findings: &[Finding]) -> Vec<&Finding> {
        findings.iter().filter(|f| f.stage == Stage::New).collect()
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
    fn an_ongoing_attack_is_one_finding_updated_once_a_minute_and_closed_when_quiet() {
        let mut s = Suppressor::<8>::new(600);
        let mut out = Vec::new();
        assert!(!s.note(&SSH_BRUTEFORCE, 1, 0, 1, "l", &mut out));
        s.emit(&SSH_BRUTEFORCE, 1, 0, f(5, 0), &mut out);
        // An event every 100 ms for 100 s: updates at 60 s only.
        for i in 1..=1000 {
            assert!(s.note(&SSH_BRUTEFORCE, 1, i * 100, 1, "l", &mut out));
        }
        assert_eq!(stages(&out), ["new", "update"]);
        assert_eq!((out[1].count, out[1].last_ms), (605, 60_000), "the count so far");
        assert!(out[1].summary.contains("605 events") && out[1].summary.ends_with("(ongoing)"), "{}", out[1].summary);
        // The events after the update go out at the next tick once due ...
        s.expire(119_999, &mut out);
        assert_eq!(out.len(), 2, "not due yet");
        s.expire(120_000, &mut out);
        assert_eq!(stages(&out), ["new", "update", "update"]);
        assert_eq!(out[2].count, 1005);
        // ... and each event keeps it open: it closes 600 s after the last one.
        s.expire(699_999, &mut out);
        assert_eq!(out.len(), 3, "still open");
        s.expire(700_000, &mut out);
        assert_eq!(stages(&out), ["new", "update", "update", "closed"]);
        let c = &out[3];
        assert_eq!((c.count, c.first_ms, c.last_ms), (1005, 0, 100_000));
        assert_eq!((&c.kind, &c.subject, &c.agent), (&out[0].kind, &out[0].subject, &out[0].agent));
        assert_eq!(out[1].evidence.len(), MAX_EVIDENCE, "the first update carries the evidence so far");
        assert!(out[2].evidence.is_empty() && c.evidence.is_empty(), "later ones only when it changed");
        assert!(c.summary.ends_with("over 100 s (ended)"), "{}", c.summary);
        assert!(s.is_empty());
        // A finding without further events still closes, so the hub knows it is over.
        s.emit(&SSH_BRUTEFORCE, 2, 0, f(5, 0), &mut out);
        s.expire(700_000, &mut out);
        assert_eq!(stages(&out[4..]), ["new", "closed"]);
        assert_eq!(s.emitted(), 6);
    }

    #[test]
    fn a_campaign_lasting_a_week_is_one_finding() {
        let mut s = Suppressor::<8>::new(600);
        let mut out = Vec::new();
        s.emit_tally(&SSH_BRUTEFORCE, 1, 0, f(5, 0), Tally::new(["sources", ""], [5, 0]), &mut out);
        let week = 7 * 86_400_000;
        // An event every five minutes, each from a new source.
        for (n, at) in (300_000..week).step_by(300_000).enumerate() {
            assert!(s.note_items(&SSH_BRUTEFORCE, 1, at, 1, [Some(n as u64), None], "l", &mut out));
        }
        s.expire(week + 600_000, &mut out);
        assert_eq!(out.iter().filter(|f| f.stage == Stage::New).count(), 1);
        let last = out.last().unwrap();
        assert_eq!(last.stage, Stage::Closed);
        assert!(last.summary.contains("over 6 d 23 h (ended)"), "{}", last.summary);
        let sources: u64 =
            last.summary.split(", about ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
        assert!((1_700..2_300).contains(&sources), "about 2,015 sources: {}", last.summary);
    }

    #[test]
    fn suppressor_closes_the_soonest_window_when_full() {
        let mut s = Suppressor::<4>::new(10);
        let mut out = Vec::new();
        s.emit(&SSH_BRUTEFORCE, 1, 0, f(5, 0), &mut out);
        s.emit(&SSH_BRUTEFORCE, 2, 1000, f(5, 1000), &mut out);
        assert!(s.note(&SSH_BRUTEFORCE, 1, 2000, 3, "l", &mut out));
        s.emit(&SSH_BRUTEFORCE, 3, 2000, f(5, 2000), &mut out);
        assert_eq!(stages(&out), ["new", "new", "closed", "new"], "subject 1 was closed early");
        assert_eq!((s.len(), s.evicted()), (2, 1));
    }

    fn stages(v: &[Finding]) -> Vec<&'static str> {
        v.iter().map(|f| f.stage.as_str()).collect()
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
}
