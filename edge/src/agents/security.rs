//! Security agent: SSH (dropbear, OpenSSH) and LuCI logins.
//!
//! - `ssh.bruteforce`: `ssh_failures` failed logins from one source within
//!   `ssh_window`. A pause longer than the window starts the count over.
//! - `ssh.user_enum`: `user_enum_names` distinct user names tried from one
//!   source within `user_enum_window`. Only lines that name the user count:
//!   dropbear's "Login attempt for nonexistent user" leaves the name out on
//!   purpose (it may be a password typed into the user field).
//! - `ssh.distributed_bruteforce`: `distributed_sources` distinct sources
//!   failing as one user within `distributed_window`: a brute force spread
//!   over many addresses to stay under the per-source threshold.
//!
//! Those two are campaigns against the router, not one source's act: an
//! internet-facing router meets them all week. Each is one finding for the
//! router (subject: service `ssh`), opened when its condition first holds;
//! while it is open every failure that names a user, from any source, is
//! part of it, counted with its distinct sources and user names, and it
//! closes after `ssh_suppress` seconds without one. The source that crossed
//! the threshold is named in the first summary and the evidence; each
//! brute-forcing source still gets its own `ssh.bruteforce`.
//! - `web.bruteforce`: `web_failures` failed LuCI logins from one source
//!   within `web_window` (a LuCI line without an address counts as one
//!   unknown source).
//! - `auth.success_after_failures`: an SSH or LuCI login succeeds from a
//!   source that failed `success_failures` times (SSH and LuCI together)
//!   within `success_window` before it: a guessed password, most likely.
//!
//! All five are suppressed per subject for `ssh_suppress` (see
//! [`super`]): a long attack is one finding and an update, not thousands.
//!
//! dropbear often leaves the address out of the failure line ("Login attempt
//! for nonexistent user") and names it only in the connection line of the
//! same pid ("Child connection from 1.2.3.4:5678"), so the agent keeps a small
//! pid → address table. Its "Exit before auth (user 'root', 3 fails)" line
//! gives the real count for a connection whose individual failures were not
//! all logged; only the difference is added, never a double count.

use std::net::IpAddr;

use heapless::String as HString;
use opmas_proto::msg::{Finding, Subject};

use super::{
    finding, hash_ip, hash_str, mix, opt, short, Agent, AgentCounters, AgentSuppressor, BoundedMap, Burst, Clock,
    Distinct, EvidencePool, Meta, Tally, AUTH_SUCCESS_AFTER_FAILURES, SSH_BRUTEFORCE, SSH_DISTRIBUTED_BRUTEFORCE,
    SSH_USER_ENUM, WEB_BRUTEFORCE,
};
use crate::events::Event;

pub use opmas_proto::agents::SecurityConfig;

/// The agent's name in findings and the heartbeat.
const AGENT: &str = "security";
/// Sources tracked at once: an internet-facing router sees a few dozen SSH
/// scanners a day, so 512 leaves room for a burst; a flood from more
/// addresses evicts the ones not seen lately (about 480 bytes each).
pub const MAX_SOURCES: usize = 512;
/// dropbear connections tracked at once (pid → address): dropbear's own
/// limit of unauthenticated connections is 10 (`MAX_UNAUTH_CLIENTS`), so
/// 256 only runs out when lines arrive from many routers at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest allowed `ssh_failures` / `web_failures` / `success_failures`: each
/// source keeps the times of this many latest failures.
pub const MAX_FAILURES: usize = 64;
/// User names tracked for distributed brute force: bots try a few dozen
/// common names; random names beyond this evict the ones not seen lately.
pub const MAX_USERS: usize = 128;
/// LuCI sources tracked: LuCI is normally reachable from the LAN only.
pub const MAX_WEB_SOURCES: usize = 128;
/// Evidence lines waiting for a finding: two per subject whose run has
/// started, for the subjects active at once in a normal attack.
const EVIDENCE_SLOTS: usize = 64;
/// The suppression key of the router-wide SSH campaigns (user enumeration
/// and distributed brute force): one open finding each, whatever the sources.
const SSH_CAMPAIGN: u64 = 0x5353_4800;
/// Bytes of a user name kept for a finding's subject.
const NAME_LEN: usize = 32;

/// Bytes of a host name kept for a finding's subject.
const HOST_LEN: usize = 64;

/// Where an SSH attempt came from: an address, or a host name when the log
/// names one instead (sshd with `UseDNS yes`, PAM's `rhost=`), hashed; the
/// name itself is kept in the source's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Src {
    Ip(IpAddr),
    Host(u64),
}

impl Src {
    fn of(ip: Option<IpAddr>, host: Option<&str>) -> Option<Src> {
        ip.map(Src::Ip).or_else(|| host.map(|h| Src::Host(hash_str(h))))
    }

    /// The key of its findings and distinct counts.
    fn hash(self) -> u64 {
        match self {
            Src::Ip(ip) => hash_ip(ip),
            Src::Host(h) => mix(h ^ 0x686f_7374),
        }
    }

    fn ip(self) -> Option<IpAddr> {
        match self {
            Src::Ip(ip) => Some(ip),
            Src::Host(_) => None,
        }
    }
}

/// One SSH source: an address or a host name.
#[derive(Debug, Default)]
struct SshSource {
    /// Its host name, when it is one.
    host: HString<HOST_LEN>,
    /// Its failures: the brute-force run and the history for a success.
    fails: Burst<MAX_FAILURES>,
    /// The first user name of the run.
    user: HString<NAME_LEN>,
    /// Distinct user names it tried.
    users: Distinct,
}

/// One dropbear connection (pid).
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// The client address from "Child connection from".
    ip: IpAddr,
    /// Failures already counted for this connection.
    counted: u32,
    /// Line time of its latest line.
    last_ms: u64,
    /// Its "Exit before auth" line was seen: the pid is done.
    closed: bool,
}

/// One user name that sources fail to log in as.
#[derive(Debug, Default)]
struct Target {
    /// Distinct sources failing as this user.
    sources: Distinct,
}

/// One LuCI source address (or the unknown one).
#[derive(Debug, Default)]
struct WebSource {
    /// Its failures.
    fails: Burst<MAX_FAILURES>,
    /// The first user name of the run.
    user: HString<NAME_LEN>,
}

/// The security agent.
pub struct SecurityAgent {
    /// Thresholds and windows.
    cfg: SecurityConfig,
    /// `user_enum_names` as a bit count of [`Distinct`].
    user_enum_bits: u16,
    /// `distributed_sources` as a bit count of [`Distinct`].
    distributed_bits: u16,
    /// Line time for ticks.
    clock: Clock,
    /// SSH sources by address or host name.
    ssh: Box<BoundedMap<Src, SshSource, MAX_SOURCES, { 2 * MAX_SOURCES }>>,
    /// dropbear connections by pid.
    conns: Box<BoundedMap<u32, Conn, MAX_CONNECTIONS, { 2 * MAX_CONNECTIONS }>>,
    /// Targeted user names by hash.
    users: Box<BoundedMap<u64, Target, MAX_USERS, { 2 * MAX_USERS }>>,
    /// LuCI sources by address.
    web: Box<BoundedMap<Option<IpAddr>, WebSource, MAX_WEB_SOURCES, { 2 * MAX_WEB_SOURCES }>>,
    /// Evidence lines of runs in progress.
    pool: Box<EvidencePool<EVIDENCE_SLOTS>>,
    /// Suppression windows.
    sup: AgentSuppressor,
    /// Events consumed.
    events: u64,
}

impl SecurityAgent {
    /// An agent with `cfg` (validated by the caller; out-of-range values
    /// make a detector never or always fire, never panic).
    pub fn new(cfg: SecurityConfig) -> Self {
        SecurityAgent {
            cfg,
            user_enum_bits: Distinct::bits_for(cfg.user_enum_names),
            distributed_bits: Distinct::bits_for(cfg.distributed_sources),
            clock: Clock::default(),
            ssh: Box::default(),
            conns: Box::default(),
            users: Box::default(),
            web: Box::default(),
            pool: Box::default(),
            sup: AgentSuppressor::new(cfg.suppress_s),
            events: 0,
        }
    }

    fn remember_conn(&mut self, pid: u32, ip: IpAddr, now: u64) {
        let fresh = Conn { ip, counted: 0, last_ms: now, closed: false };
        // Connections idle for longer than any sane login are over.
        let stale = |c: &Conn| c.closed || now.saturating_sub(c.last_ms) > 600_000;
        if let Some(c) = self.conns.entry(pid, stale, || fresh) {
            // A reused pid is a new connection.
            *c = fresh;
        }
    }

    /// Adds `n` failures from `from` (named `host` when it is a host name)
    /// as `user`; emits what they complete.
    #[allow(clippy::too_many_arguments)]
    fn ssh_fail(
        &mut self,
        from: Src,
        host: Option<&str>,
        user: Option<&str>,
        n: u32,
        meta: &Meta<'_>,
        out: &mut Vec<Finding>,
    ) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let keep_ms = u64::from(cfg.window_s.max(cfg.success_window_s).max(cfg.user_enum_window_s)) * 1000;
        let stale = |s: &SshSource| now.saturating_sub(s.fails.last_ms()) > keep_ms;
        let make = || SshSource { host: host.map(short).unwrap_or_default(), ..SshSource::default() };
        let Some(src) = self.ssh.entry(from, stale, make) else { return };
        let ip = from.ip();
        // Only formatted when a finding is made.
        let shown = |src: &SshSource| match ip {
            Some(ip) => ip.to_string(),
            None => src.host.as_str().to_owned(),
        };
        if src.fails.push(now, n, cfg.window_s, &mut self.pool, line) {
            src.user.clear();
        }
        if let (true, Some(u)) = (src.user.is_empty(), user) {
            src.user = short(u);
        }
        let key = from.hash();

        if self.sup.note(&SSH_BRUTEFORCE, key, now, n, line, out) {
            src.fails.reset_run();
        } else if src.fails.hits(cfg.failures, cfg.window_s, now) {
            let b = &src.fails;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let f = finding(
                AGENT,
                &SSH_BRUTEFORCE,
                Subject {
                    src_ip: ip,
                    host: opt(&src.host),
                    user: opt(&src.user),
                    service: Some("ssh".into()),
                    ..Subject::default()
                },
                b.count(),
                b.first_ms(),
                now,
                format!("{} failed SSH logins from {} in {secs} s", b.count(), shown(src)),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&SSH_BRUTEFORCE, key, now, f, out);
            src.fails.reset_run();
        }

        let Some(user) = user else { return };
        // One campaign per router: while it is open every named failure,
        // from any source, is part of it (see the module docs).
        let items = [Some(key), Some(hash_str(user))];
        src.users.insert(hash_str(user), now, cfg.user_enum_window_s, &mut self.pool, line);
        if self.sup.note_items(&SSH_USER_ENUM, SSH_CAMPAIGN, now, 1, items, line, out) {
            src.users.reset();
        } else if src.users.bits() >= self.user_enum_bits {
            let d = &src.users;
            let secs = now.saturating_sub(d.first_ms()) / 1000;
            let names = d.estimate();
            let f = finding(
                AGENT,
                &SSH_USER_ENUM,
                Subject { service: Some("ssh".into()), ..Subject::default() },
                d.events(),
                d.first_ms(),
                now,
                format!("{names} user names tried over SSH from {} in {secs} s ({} attempts)", shown(src), d.events()),
                d.ev().lines(&self.pool, line),
            );
            let tally = Tally::new(["sources", "user names"], [1, names]);
            self.sup.emit_tally(&SSH_USER_ENUM, SSH_CAMPAIGN, now, f, tally, out);
            src.users.reset();
        }

        self.target_fail(key, user, meta, out);
    }

    /// Counts the source `src` (its hash) among the sources failing as `user`.
    fn target_fail(&mut self, src: u64, user: &str, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let window_ms = u64::from(cfg.distributed_window_s) * 1000;
        let key = hash_str(user);
        let stale = |t: &Target| now.saturating_sub(t.sources.last_ms()) > window_ms;
        let make = Target::default;
        let Some(t) = self.users.entry(key, stale, make) else { return };
        t.sources.insert(src, now, cfg.distributed_window_s, &mut self.pool, line);
        let items = [Some(src), Some(key)];
        if self.sup.note_items(&SSH_DISTRIBUTED_BRUTEFORCE, SSH_CAMPAIGN, now, 1, items, line, out) {
            t.sources.reset();
        } else if t.sources.bits() >= self.distributed_bits {
            let d = &t.sources;
            let secs = now.saturating_sub(d.first_ms()) / 1000;
            let sources = d.estimate();
            let f = finding(
                AGENT,
                &SSH_DISTRIBUTED_BRUTEFORCE,
                Subject { service: Some("ssh".into()), ..Subject::default() },
                d.events(),
                d.first_ms(),
                now,
                format!("{sources} sources failed SSH logins as {user} in {secs} s ({} attempts)", d.events()),
                d.ev().lines(&self.pool, line),
            );
            let tally = Tally::new(["sources", "user names"], [sources, 1]);
            self.sup.emit_tally(&SSH_DISTRIBUTED_BRUTEFORCE, SSH_CAMPAIGN, now, f, tally, out);
            t.sources.reset();
        }
    }

    /// A failed LuCI login from `src_ip` (unknown when `None`).
    fn web_fail(&mut self, src_ip: Option<IpAddr>, user: Option<&str>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let keep_ms = u64::from(cfg.web_window_s.max(cfg.success_window_s)) * 1000;
        let stale = |w: &WebSource| now.saturating_sub(w.fails.last_ms()) > keep_ms;
        let Some(w) = self.web.entry(src_ip, stale, WebSource::default) else { return };
        if w.fails.push(now, 1, cfg.web_window_s, &mut self.pool, line) {
            w.user.clear();
        }
        if let (true, Some(u)) = (w.user.is_empty(), user) {
            w.user = short(u);
        }
        let key = src_ip.map_or(0, hash_ip);
        if self.sup.note(&WEB_BRUTEFORCE, key, now, 1, line, out) {
            w.fails.reset_run();
        } else if w.fails.hits(cfg.web_failures, cfg.web_window_s, now) {
            let b = &w.fails;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let from = src_ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
            let f = finding(
                AGENT,
                &WEB_BRUTEFORCE,
                Subject { src_ip, user: opt(&w.user), service: Some("luci".into()), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!("{} failed LuCI logins from {from} in {secs} s", b.count()),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&WEB_BRUTEFORCE, key, now, f, out);
            w.fails.reset_run();
        }
    }

    /// A successful `service` login from `from`: a finding if it failed enough just before.
    fn success(&mut self, from: Src, user: Option<&str>, service: &str, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let ssh = self.ssh.get(&from);
        let ip = from.ip();
        let web = ip.and_then(|ip| self.web.get(&Some(ip)));
        let (n_ssh, first_ssh) = ssh.map_or((0, None), |s| s.fails.count_within(cfg.success_window_s, now));
        let (n_web, first_web) = web.map_or((0, None), |w| w.fails.count_within(cfg.success_window_s, now));
        let failures = n_ssh + n_web;
        if failures < cfg.success_failures {
            return;
        }
        let key = from.hash();
        if self.sup.note(&AUTH_SUCCESS_AFTER_FAILURES, key, now, 1, line, out) {
            return;
        }
        let first_ms = first_ssh.into_iter().chain(first_web).min().unwrap_or(now);
        let secs = now.saturating_sub(first_ms) / 1000;
        let as_user = user.map(|u| format!(" as {u}")).unwrap_or_default();
        let shown = match (ip, ssh) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(s)) => s.host.as_str().to_owned(),
            (None, None) => "a host".to_owned(),
        };
        // The failures' first lines when still kept, then the success.
        let evidence = match (ssh, web) {
            (Some(s), _) if n_ssh > 0 => s.fails.ev().lines_then(&self.pool, line),
            (_, Some(w)) => w.fails.ev().lines_then(&self.pool, line),
            _ => vec![super::evidence(line)],
        };
        let f = finding(
            AGENT,
            &AUTH_SUCCESS_AFTER_FAILURES,
            Subject {
                src_ip: ip,
                host: ssh.and_then(|s| opt(&s.host)),
                user: user.map(|u| short::<NAME_LEN>(u).as_str().to_owned()),
                service: Some(service.into()),
                ..Subject::default()
            },
            failures + 1,
            first_ms,
            now,
            format!("{service} login{as_user} from {shown} succeeded after {failures} failed logins in {secs} s"),
            evidence,
        );
        self.sup.emit(&AUTH_SUCCESS_AFTER_FAILURES, key, now, f, out);
    }

    /// Counts a failure on the connection `pid` (the server's process for
    /// it): its address if the failure line names none (dropbear often names
    /// it only in the connection line), and the connection is remembered
    /// from the first failure that names one, so that its closing line is
    /// not counted again.
    fn count_on_conn(&mut self, pid: Option<u32>, src_ip: Option<IpAddr>, now: u64) -> Option<IpAddr> {
        if let Some(c) = self.conn(pid) {
            c.counted += 1;
            c.last_ms = now;
            return Some(c.ip);
        }
        if let (Some(pid), Some(ip)) = (pid, src_ip) {
            self.remember_conn(pid, ip, now);
            if let Some(c) = self.conn(Some(pid)) {
                c.counted = 1;
            }
        }
        None
    }

    /// The connection `pid`, if open.
    fn conn(&mut self, pid: Option<u32>) -> Option<&mut Conn> {
        pid.and_then(|p| self.conns.get_mut(&p)).filter(|c| !c.closed)
    }
}

impl Agent for SecurityAgent {
    fn name(&self) -> &'static str {
        AGENT
    }

    fn on_event(&mut self, event: &Event<'_>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        self.clock.observe(meta.now_ms);
        let now = meta.now_ms;
        match *event {
            Event::SshConnection { src_ip, .. } => {
                self.events += 1;
                if let Some(pid) = meta.pid {
                    self.remember_conn(pid, src_ip, now);
                }
            }
            Event::SshAuthFailed { src_ip, src_host, user, .. }
            | Event::SshInvalidUser { src_ip, src_host, user, .. } => {
                self.events += 1;
                let conn_ip = self.count_on_conn(meta.pid, src_ip, now);
                if let Some(from) = Src::of(src_ip.or(conn_ip), src_host) {
                    self.ssh_fail(from, src_host, user, 1, meta, out);
                }
            }
            Event::SshPreauthClosed { src_ip, src_host, user, .. } => {
                self.events += 1;
                // The end of a connection that failed before login. OpenSSH
                // logs each failed attempt before it: a failure of its own
                // only when none of the connection's lines was counted (a
                // client that offered keys and left, say).
                let counted = self.conn(meta.pid).map(|c| {
                    c.closed = true;
                    c.counted
                });
                if counted.unwrap_or(0) == 0 {
                    if let Some(from) = Src::of(src_ip, src_host) {
                        self.ssh_fail(from, src_host, user, 1, meta, out);
                    }
                }
            }
            // Scanners that never try a login (no identification, kex
            // failures): shown by `explain`, counted as events, no finding.
            Event::SshProbe { .. } => self.events += 1,
            Event::SshMaxTries { src_ip, src_host, user, fails, .. } => {
                self.events += 1;
                let conn = self.conn(meta.pid).map(|c| {
                    c.closed = true;
                    (c.ip, c.counted)
                });
                let from = Src::of(src_ip.or(conn.map(|c| c.0)), src_host);
                let extra = fails.unwrap_or(0).saturating_sub(conn.map_or(0, |c| c.1));
                if let (Some(from), true) = (from, extra > 0) {
                    self.ssh_fail(from, src_host, user, extra, meta, out);
                }
            }
            Event::SshLoginOk { src_ip, src_host, user, .. } => {
                self.events += 1;
                let conn_ip = self.conn(meta.pid).map(|c| c.ip);
                if let Some(from) = Src::of(src_ip.or(conn_ip), src_host) {
                    self.success(from, user, "ssh", meta, out);
                }
            }
            Event::WebLoginFailed { user, src_ip } => {
                self.events += 1;
                self.web_fail(src_ip, user, meta, out);
            }
            Event::WebLoginOk { user, src_ip } => {
                self.events += 1;
                if let Some(ip) = src_ip {
                    self.success(Src::Ip(ip), user, "luci", meta, out);
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        // Tables need no sweep: entries whose windows are over are reused
        // uncounted when room is needed.
        let now = self.clock.at_tick(now_ms);
        self.sup.expire(now, out);
    }

    fn counters(&self) -> AgentCounters {
        AgentCounters {
            events: self.events,
            findings: self.sup.emitted(),
            evicted: self.ssh.evicted()
                + self.conns.evicted()
                + self.users.evicted()
                + self.web.evicted()
                + self.sup.evicted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{feed, feed_line, kinds, line, news, t, tick_after};
    use super::super::MAX_EVIDENCE;
    use super::*;
    use opmas_proto::msg::Stage;

    /// Feeds `lines` (logread format) and returns the findings.
    fn check(cfg: SecurityConfig, lines: &[&str]) -> Vec<Finding> {
        let mut agent = SecurityAgent::new(cfg);
        let mut out = Vec::new();
        for line in lines {
            feed_line(&mut agent, line, None, &mut out);
        }
        out
    }

    fn bad_pw(sec: u32, ip: &str) -> String {
        format!("Thu Dec  5 17:43:{sec:02} 2024 authpriv.warn dropbear[100]: Bad password attempt for 'root' from {ip}:5000")
    }

    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn five_failures_in_a_minute_is_one_finding_and_twenty_still_one() {
        let lines: Vec<String> = (0..20).map(|i| bad_pw(i * 2, "203.0.113.5")).collect();
        let f = check(SecurityConfig::default(), &refs(&lines));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].kind, "ssh.bruteforce");
        assert_eq!(f[0].subject.src_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(f[0].subject.user.as_deref(), Some("root"));
        assert_eq!(f[0].count, 5);
        assert_eq!(f[0].evidence.len(), MAX_EVIDENCE);
        assert!(!f[0].is_update());
    }

    #[test]
    fn four_failures_are_not_a_brute_force() {
        let lines: Vec<String> = (0..4).map(|i| bad_pw(i, "203.0.113.5")).collect();
        assert!(check(SecurityConfig::default(), &refs(&lines)).is_empty());
    }

    #[test]
    fn failures_spread_wider_than_the_window_are_not_a_brute_force() {
        let cfg = SecurityConfig { failures: 3, window_s: 10, ..Default::default() };
        let lines =
            [bad_pw(0, "203.0.113.5"), bad_pw(8, "203.0.113.5"), bad_pw(16, "203.0.113.5"), bad_pw(24, "203.0.113.5")];
        assert!(check(cfg, &refs(&lines)).is_empty());
    }

    #[test]
    fn two_sources_are_counted_apart() {
        let mut lines = Vec::new();
        for i in 0..5 {
            lines.push(bad_pw(i, "203.0.113.5"));
            lines.push(bad_pw(i, "198.51.100.7"));
        }
        assert_eq!(check(SecurityConfig::default(), &refs(&lines)).len(), 2);
    }

    #[test]
    fn dropbear_lines_without_address_are_joined_to_their_connection() {
        // Real sequence (dropbear.log lines 3-13): failures name no address.
        let log = "\
Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Login attempt for nonexistent user
Thu Dec  5 17:43:58 2024 authpriv.info dropbear[12388]: Exit before auth from <125.70.52.249:61400>: Max auth tries reached - user 'is invalid'
Thu Dec  5 17:43:59 2024 authpriv.info dropbear[12392]: Child connection from 125.70.52.249:61426
Thu Dec  5 17:43:59 2024 authpriv.warn dropbear[12392]: Login attempt for nonexistent user
Thu Dec  5 17:44:00 2024 authpriv.info dropbear[12396]: Child connection from 125.70.52.249:61446
Thu Dec  5 17:44:00 2024 authpriv.warn dropbear[12396]: Login attempt for nonexistent user
Thu Dec  5 17:44:01 2024 authpriv.info dropbear[12400]: Child connection from 125.70.52.249:61478
Thu Dec  5 17:44:02 2024 authpriv.warn dropbear[12400]: Login attempt for nonexistent user
Thu Dec  5 17:44:02 2024 authpriv.info dropbear[12404]: Child connection from 125.70.52.249:61500
Thu Dec  5 17:44:03 2024 authpriv.warn dropbear[12404]: Login attempt for nonexistent user
Thu Dec  5 17:44:03 2024 authpriv.info dropbear[12408]: Child connection from 125.70.52.249:61510
Thu Dec  5 17:44:04 2024 authpriv.warn dropbear[12408]: Login attempt for nonexistent user";
        let lines: Vec<&str> = log.lines().collect();
        let f = check(SecurityConfig::default(), &lines);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].subject.src_ip, Some("125.70.52.249".parse().unwrap()));
    }

    #[test]
    fn exit_line_fail_count_adds_only_what_was_not_seen() {
        let cfg = SecurityConfig { failures: 5, ..Default::default() };
        // Two connections each reporting 3 fails, of which 1 was logged: 6 in all.
        let log = "\
Mon Sep 15 15:57:09 2025 authpriv.info dropbear[6862]: Child connection from 192.168.9.204:59200
Mon Sep 15 15:57:10 2025 authpriv.warn dropbear[6862]: Bad password attempt for 'root' from 192.168.9.204:59200
Mon Sep 15 15:57:16 2025 authpriv.info dropbear[6862]: Exit before auth from <192.168.9.204:59200>: (user 'root', 3 fails): Max auth tries reached - user 'root'
Mon Sep 15 15:57:17 2025 authpriv.info dropbear[6863]: Child connection from 192.168.9.204:59201
Mon Sep 15 15:57:18 2025 authpriv.warn dropbear[6863]: Bad password attempt for 'root' from 192.168.9.204:59201
Mon Sep 15 15:57:19 2025 authpriv.info dropbear[6863]: Exit before auth from <192.168.9.204:59201>: (user 'root', 3 fails): Max auth tries reached - user 'root'";
        let lines: Vec<&str> = log.lines().collect();
        let f = check(cfg, &lines);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].count, 6);
    }

    #[test]
    fn openssh_failures_count() {
        let lines: Vec<String> = (0..5)
            .map(|i| format!("<38>Dec  5 17:43:{i:02} gw sshd[9]: Failed password for invalid user admin from 2001:db8::7 port 4{i} ssh2"))
            .collect();
        let f = check(SecurityConfig::default(), &refs(&lines));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subject.src_ip, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(f[0].subject.user.as_deref(), Some("admin"));
    }

    #[test]
    fn a_flood_from_many_sources_stays_within_the_table() {
        let mut agent = SecurityAgent::new(SecurityConfig::default());
        let mut out = Vec::new();
        for i in 0..5000u32 {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            feed_line(&mut agent, &bad_pw(0, &ip), Some(i as u64), &mut out);
        }
        assert!(agent.ssh.len() <= MAX_SOURCES);
        assert_eq!(agent.counters().evicted, 5000 - MAX_SOURCES as u64);
        // One failure per source is no brute force; 5000 sources on `root` are
        // one distributed brute force.
        assert_eq!(kinds(&out), vec![("ssh.distributed_bruteforce", "new")], "{out:#?}");
    }

    #[test]
    fn config_out_of_range_is_refused() {
        assert!(SecurityConfig { failures: 1, ..Default::default() }.validate().is_err());
        assert!(SecurityConfig { failures: 65, ..Default::default() }.validate().is_err());
        assert!(SecurityConfig { window_s: 0, ..Default::default() }.validate().is_err());
        assert!(SecurityConfig::default().validate().is_ok());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn openssh_invalid(sec: u64, user: &str, from: &str) -> String {
        let (m, s) = (sec / 60, sec % 60);
        format!("<38>Dec  5 17:{m:02}:{s:02} gw sshd[9]: Failed password for invalid user {user} from {from} port 4000 ssh2")
    }

    /// An OpenSSH line from `sshd[pid]` at `sec` seconds past 17:43.
    fn sshd(sec: u64, pid: u32, msg: &str) -> String {
        format!("<38>Dec  5 17:{:02}:{:02} gw sshd[{pid}]: {msg}", 43 + sec / 60, sec % 60)
    }

    #[test]
    fn the_lines_of_one_openssh_attempt_count_as_the_attempts_they_report() {
        // One connection, two attempts of an unknown user: "Invalid user",
        // two failures, the closing line. Counted: the three announcing or
        // failing lines, not the close.
        let mut lines = Vec::new();
        for (i, pid) in [(0u64, 500u32), (10, 501)] {
            lines.push(sshd(i, pid, "Invalid user oracle from 203.0.113.50 port 41000"));
            lines.push(sshd(i + 1, pid, "Failed password for invalid user oracle from 203.0.113.50 port 41000 ssh2"));
            lines.push(sshd(i + 2, pid, "Failed password for invalid user oracle from 203.0.113.50 port 41000 ssh2"));
            lines.push(sshd(i + 3, pid, "Connection closed by invalid user oracle 203.0.113.50 port 41000 [preauth]"));
        }
        let f = check(SecurityConfig::default(), &refs(&lines));
        assert_eq!(kinds(&f), vec![("ssh.bruteforce", "new")], "{f:#?}");
        assert_eq!(f[0].count, 5, "the fifth counted line, in the second connection");
        assert_eq!(f[0].evidence.iter().filter(|e| e.contains("Connection closed")).count(), 0, "{:#?}", f[0].evidence);
    }

    #[test]
    fn connections_that_end_before_login_are_failures_when_nothing_else_was_logged() {
        // A client offering wrong keys logs only the close, one per connection.
        let lines: Vec<String> = (0..5)
            .map(|i| {
                sshd(
                    i * 5,
                    600 + i as u32,
                    "Connection closed by authenticating user root 198.51.100.60 port 5000 [preauth]",
                )
            })
            .collect();
        let f = check(SecurityConfig::default(), &refs(&lines));
        assert_eq!(kinds(&f), vec![("ssh.bruteforce", "new")]);
        assert_eq!((f[0].subject.src_ip, f[0].subject.user.as_deref()), (Some(ip("198.51.100.60")), Some("root")));
        // Scanners that never log in are no brute force.
        let probes: Vec<String> = (0..20)
            .map(|i| sshd(i, 700 + i as u32, "Did not receive identification string from 198.51.100.61 port 22"))
            .collect();
        assert!(check(SecurityConfig::default(), &refs(&probes)).is_empty());
    }

    #[test]
    fn a_source_named_by_host_is_a_host_subject() {
        let lines: Vec<String> = (0..5)
            .map(|i| sshd(i * 5, 800 + i as u32, "Failed password for root from ws2.example.org port 22 ssh2"))
            .collect();
        let f = check(SecurityConfig::default(), &refs(&lines));
        assert_eq!(kinds(&f), vec![("ssh.bruteforce", "new")], "{f:#?}");
        assert_eq!((f[0].subject.src_ip, f[0].subject.host.as_deref()), (None, Some("ws2.example.org")));
        assert!(f[0].summary.contains("from ws2.example.org"), "{}", f[0].summary);
    }

    #[test]
    fn dropbear_exit_before_auth_counts_only_the_failures_not_yet_seen() {
        let bad = |s: u64| {
            format!("Thu Dec  5 17:43:{s:02} 2024 authpriv.warn dropbear[900]: Bad password attempt for 'root' from 192.0.2.90:5000")
        };
        let exit = "Thu Dec  5 17:43:09 2024 authpriv.info dropbear[900]: Exit before auth from <192.0.2.90:5000>: (user 'root', 4 fails): Max auth tries reached - user 'root'";
        // Two failures logged, the exit says four: two more, five in all with the next connection's one.
        let next = "Thu Dec  5 17:43:20 2024 authpriv.warn dropbear[901]: Bad password attempt for 'root' from 192.0.2.90:5002";
        let lines = [bad(1), bad(2), exit.to_owned(), next.to_owned()];
        let f = check(SecurityConfig::default(), &refs(&lines));
        assert_eq!(kinds(&f), vec![("ssh.bruteforce", "new")], "{f:#?}");
        assert_eq!(f[0].count, 5);
        // Without the last line it is four: no finding.
        assert!(check(SecurityConfig::default(), &refs(&lines[..3])).is_empty());
    }

    #[test]
    fn many_user_names_from_one_source_are_an_enumeration() {
        // 20 s apart: never 5 failures within a minute, so no brute force.
        let names = ["admin", "ubnt", "pi", "oracle", "test", "guest"];
        let cases: [(usize, &[(&str, &str)]); 2] = [(4, &[]), (6, &[("ssh.user_enum", "new")])];
        for (n, want) in cases {
            let lines: Vec<String> =
                names[..n].iter().enumerate().map(|(i, u)| openssh_invalid(i as u64 * 20, u, "198.51.100.9")).collect();
            let f = check(SecurityConfig::default(), &refs(&lines));
            assert_eq!(kinds(&f), want, "{n} names");
            if let Some(f) = f.first() {
                // A campaign against the router: the source is in the summary.
                assert_eq!((f.subject.src_ip, f.subject.service.as_deref()), (None, Some("ssh")));
                assert_eq!(f.count, 5);
                assert!(f.summary.starts_with("5 user names tried over SSH from 198.51.100.9"), "{}", f.summary);
            }
        }
        // The same name again and again is a brute force, not an enumeration.
        let lines: Vec<String> = (0..8).map(|i| openssh_invalid(i * 20, "admin", "198.51.100.9")).collect();
        assert!(check(SecurityConfig::default(), &refs(&lines)).is_empty());
    }

    #[test]
    fn the_internet_knocking_all_day_is_one_campaign_per_detector() {
        let mut agent = SecurityAgent::new(SecurityConfig::default());
        let mut out = Vec::new();
        let names = ["root", "admin", "ubnt", "pi", "oracle", "test", "guest", "user"];
        // A new source every 20 s for 12 hours, each trying three names once.
        for i in 0..2_160u64 {
            let src = IpAddr::from([198, 51, 100 + (i / 250) as u8, (i % 250 + 1) as u8]);
            for k in 0..3 {
                let user = names[((i * 3 + k) % 8) as usize];
                let ev = Event::SshInvalidUser { src_ip: Some(src), src_host: None, src_port: None, user: Some(user) };
                feed(&mut agent, ev, "sshd[9]: Failed password for invalid user", t(i * 20 + k), &mut out);
            }
        }
        out.extend(tick_after(&mut agent, t(2_160 * 20), 700_000));
        let of_kind: Vec<&Finding> = out.iter().filter(|f| f.kind == "ssh.distributed_bruteforce").collect();
        assert_eq!(of_kind.iter().filter(|f| f.stage == Stage::New).count(), 1, "{of_kind:#?}");
        let last = of_kind.last().unwrap();
        assert_eq!(last.stage, Stage::Closed);
        assert!(last.summary.contains("8 user names") && last.summary.contains("about "), "{}", last.summary);
        let updates = of_kind.iter().filter(|f| f.stage == Stage::Update).count();
        assert!(updates <= 12 * 60, "at most one update a minute: {updates}");
        assert!(out.iter().all(|f| f.kind != "ssh.bruteforce"), "no source failed five times");
        assert!(out.iter().all(|f| f.kind != "ssh.user_enum"), "no source tried five names");
    }

    #[test]
    fn many_sources_failing_as_one_user_are_a_distributed_brute_force() {
        // 12, not 10: two of ten addresses may share a bit of the estimate.
        for (sources, want) in [(9u64, 0usize), (12, 1)] {
            let lines: Vec<String> =
                (0..sources).map(|i| openssh_invalid(i * 30, "admin", &format!("192.0.2.{}", i + 1))).collect();
            let f = check(SecurityConfig::default(), &refs(&lines));
            assert_eq!(f.len(), want, "{sources} sources: {f:#?}");
            if let Some(f) = f.first() {
                assert_eq!(f.kind, "ssh.distributed_bruteforce");
                assert_eq!((f.subject.user.as_deref(), f.subject.service.as_deref()), (None, Some("ssh")));
                assert!(f.summary.contains("failed SSH logins as admin"), "{}", f.summary);
                assert_eq!(f.subject.src_ip, None);
                assert!((10..=12).contains(&f.count), "{}", f.count);
            }
        }
    }

    /// LuCI lines as uhttpd logs them (web.log), from `from`.
    fn luci(agent: &mut SecurityAgent, ok: bool, from: &str, sec: u64, out: &mut Vec<Finding>) {
        let what = if ok { "accepted" } else { "failed" };
        let l = format!(
            "Sun Jun 29 12:30:19 2025 daemon.err uhttpd[5648]: [info] luci: {what} login on / for root from {from}"
        );
        line(agent, &l, t(sec), out);
    }

    #[test]
    fn luci_failures_from_one_source_are_a_web_brute_force() {
        for (n, want) in [(4u64, 0usize), (5, 1), (40, 1)] {
            let mut agent = SecurityAgent::new(SecurityConfig::default());
            let mut out = Vec::new();
            for i in 0..n {
                luci(&mut agent, false, "192.168.9.204", i, &mut out);
            }
            assert_eq!(out.len(), want, "{n} failures");
            if let Some(f) = out.first() {
                assert_eq!(f.kind, "web.bruteforce");
                assert_eq!(f.subject.service.as_deref(), Some("luci"));
                assert_eq!(f.count, 5);
                assert!(f.evidence[0].contains("luci: failed login"));
            }
        }
    }

    #[test]
    fn a_login_after_failures_from_the_same_source_is_critical() {
        let ok = "Mon Sep 15 15:57:20 2025 authpriv.notice dropbear[6864]: Password auth succeeded for 'root' from 192.168.9.204:59300";
        for (failures, want) in
            [(4u32, vec![]), (5, vec![("ssh.bruteforce", "new"), ("auth.success_after_failures", "new")])]
        {
            let mut lines: Vec<String> = (0..failures)
                .map(|i| format!("Mon Sep 15 15:57:{:02} 2025 authpriv.warn dropbear[6862]: Bad password attempt for 'root' from 192.168.9.204:59200", 10 + i))
                .collect();
            lines.push(ok.to_owned());
            let f = check(SecurityConfig::default(), &refs(&lines));
            assert_eq!(kinds(&f), want, "{failures} failures");
            if let Some(s) = f.last() {
                assert_eq!(s.severity.get(), 5);
                assert_eq!(s.subject.src_ip, Some(ip("192.168.9.204")));
                assert_eq!(s.subject.user.as_deref(), Some("root"));
                assert_eq!(s.subject.service.as_deref(), Some("ssh"));
                assert_eq!(s.count, 6);
                assert_eq!(s.evidence.last().map(String::as_str), Some(ok));
            }
        }
        // A success from another address is nobody's business.
        let mut lines: Vec<String> = (0..8).map(|i| bad_pw(i, "203.0.113.5")).collect();
        lines.push(ok.to_owned());
        assert_eq!(kinds(&check(SecurityConfig::default(), &refs(&lines))), vec![("ssh.bruteforce", "new")]);
    }

    #[test]
    fn ssh_and_luci_failures_add_up_before_a_luci_login() {
        let mut agent = SecurityAgent::new(SecurityConfig::default());
        let mut out = Vec::new();
        for i in 0..3u32 {
            feed_line(&mut agent, &bad_pw(i * 20, "192.168.9.204"), Some(t(u64::from(i) * 20)), &mut out);
        }
        luci(&mut agent, false, "192.168.9.204", 70, &mut out);
        luci(&mut agent, false, "192.168.9.204", 80, &mut out);
        assert!(out.is_empty());
        luci(&mut agent, true, "192.168.9.204", 90, &mut out);
        assert_eq!(kinds(&out), vec![("auth.success_after_failures", "new")]);
        assert_eq!(out[0].subject.service.as_deref(), Some("luci"));
        assert_eq!(out[0].count, 6);
        // Ten minutes later the failures are history.
        luci(&mut agent, true, "192.168.9.204", 700, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_long_attack_is_one_finding_and_one_update_per_window() {
        let mut agent = SecurityAgent::new(SecurityConfig::default());
        let mut out = Vec::new();
        let fail =
            Event::SshInvalidUser { src_ip: Some(ip("203.0.113.5")), src_host: None, src_port: None, user: None };
        // 1000 failures over 100 s.
        for i in 0..1000u64 {
            feed(&mut agent, fail, "dropbear[1]: Login attempt for nonexistent user", t(0) + i * 100, &mut out);
        }
        // The count grows while it happens: an update a minute in.
        assert_eq!(kinds(&out), vec![("ssh.bruteforce", "new"), ("ssh.bruteforce", "update")]);
        assert_eq!(out[1].count, 605);
        let last = t(0) + 999 * 100;
        // The rest at the next tick; it stays open for 600 s after the last failure.
        out.extend(tick_after(&mut agent, last, 500_000));
        assert_eq!(kinds(&out[2..]), vec![("ssh.bruteforce", "update")], "still open");
        out.extend(tick_after(&mut agent, last, 601_000));
        assert_eq!(kinds(&out[3..]), vec![("ssh.bruteforce", "closed")]);
        let (new, closed) = (&out[0], &out[3]);
        assert_eq!((closed.first_ms, &closed.subject), (new.first_ms, &new.subject));
        assert_eq!((new.count, closed.count), (5, 1000));
        assert_eq!(closed.last_ms, last);
        // After it closed, the threshold must be crossed again.
        let later = t(0) + 800_000;
        for i in 0..4 {
            feed(&mut agent, fail, "dropbear[1]: Login attempt for nonexistent user", later + i, &mut out);
        }
        assert_eq!(out.len(), 4);
        feed(&mut agent, fail, "dropbear[1]: Login attempt for nonexistent user", later + 4, &mut out);
        assert_eq!(out.len(), 5);
        assert!(!out[4].is_update() && out[4].first_ms == later && out[4].count == 5);
        assert_eq!(agent.counters().findings, 5);
    }

    #[test]
    fn an_attacker_is_caught_through_a_flood_of_100k_sources() {
        let mut agent = SecurityAgent::new(SecurityConfig::default());
        let mut out = Vec::new();
        let attacker = ip("198.51.100.66");
        for i in 0..100_000u32 {
            let src = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let ev = Event::SshInvalidUser { src_ip: Some(src), src_host: None, src_port: None, user: None };
            feed(&mut agent, ev, "dropbear[1]: Login attempt for nonexistent user", t(0) + u64::from(i), &mut out);
            if i % 200 == 0 {
                let ev = Event::SshInvalidUser { src_ip: Some(attacker), src_host: None, src_port: None, user: None };
                feed(&mut agent, ev, "dropbear[2]: Login attempt for nonexistent user", t(0) + u64::from(i), &mut out);
            }
        }
        assert!(agent.ssh.len() <= MAX_SOURCES);
        assert!(agent.counters().evicted >= 100_000 - MAX_SOURCES as u64);
        assert_eq!(kinds(&news(&out).into_iter().cloned().collect::<Vec<_>>()), vec![("ssh.bruteforce", "new")]);
        assert_eq!(out[0].subject.src_ip, Some(attacker));
    }
}
