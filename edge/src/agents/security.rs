//! Security agent: SSH brute force from dropbear and OpenSSH lines.
//!
//! A brute force is `failures` failed logins from one source address within
//! `window`. It yields one `ssh.bruteforce` finding, then the source is quiet
//! for `suppress` so that a long attack is one finding, not thousands.
//!
//! dropbear often leaves the address out of the failure line ("Login attempt
//! for nonexistent user") and names it only in the connection line of the
//! same pid ("Child connection from 1.2.3.4:5678"), so the agent keeps a small
//! pid → address table. Its "Exit before auth (user 'root', 3 fails)" line
//! gives the real count for a connection whose individual failures were not
//! all logged; only the difference is added, never a double count.

use std::net::IpAddr;

use heapless::{Deque, FnvIndexMap, Vec as HVec};
use opmas_proto::msg::{Finding, Severity, Subject};

use super::{evidence, Agent, AgentCounters, Input, MAX_EVIDENCE};

/// Sources tracked at once. Power of two (FnvIndexMap). A flood from more
/// addresses evicts the least recently seen.
pub const MAX_SOURCES: usize = 512;
/// dropbear connections tracked at once (pid → address).
pub const MAX_CONNECTIONS: usize = 256;
/// Largest allowed `failures` threshold: the per-source ring holds this many times.
pub const MAX_FAILURES: usize = 64;

/// Thresholds of the security agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Failed logins from one source that make a brute force.
    pub failures: u32,
    /// Window for `failures`, in seconds.
    pub window_s: u32,
    /// Quiet time per source after a finding, in seconds.
    pub suppress_s: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig { failures: 5, window_s: 60, suppress_s: 600 }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("security agent: {0}")]
pub struct ConfigError(pub String);

impl SecurityConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failures < 2 || self.failures as usize > MAX_FAILURES {
            return Err(ConfigError(format!("ssh_failures must be 2 to {MAX_FAILURES}, got {}", self.failures)));
        }
        if self.window_s == 0 || self.window_s > 86_400 {
            return Err(ConfigError(format!("ssh_window must be 1 to 86400 seconds, got {}", self.window_s)));
        }
        if self.suppress_s > 7 * 86_400 {
            return Err(ConfigError(format!("ssh_suppress must be at most 604800 seconds, got {}", self.suppress_s)));
        }
        Ok(())
    }
}

/// What one SSH log line says, if anything the agent uses.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SshLine<'a> {
    /// dropbear "Child connection from ip:port".
    Connection { ip: IpAddr },
    /// A failed login; `ip` when the line names it.
    Failure { ip: Option<IpAddr>, user: Option<&'a str> },
    /// dropbear "Exit before auth ... (user 'u', N fails)".
    ExitFails { ip: Option<IpAddr>, user: Option<&'a str>, fails: u32 },
}

/// Per-source state.
#[derive(Debug)]
struct Source {
    /// Times of the latest failures, oldest first.
    times: Deque<u64, MAX_FAILURES>,
    /// Total failures in the current window run (for the finding's count).
    count: u32,
    first_ms: u64,
    last_ms: u64,
    /// First user names tried.
    user: Option<String>,
    /// The first lines of the run.
    evidence: HVec<String, MAX_EVIDENCE>,
    /// No new finding for this source before this time.
    quiet_until_ms: u64,
}

/// Per-connection state (dropbear pid).
#[derive(Debug, Clone, Copy)]
struct Conn {
    ip: IpAddr,
    /// Failures already counted for this connection.
    counted: u32,
    last_ms: u64,
}

/// The security agent.
#[derive(Debug)]
pub struct SecurityAgent {
    cfg: SecurityConfig,
    sources: FnvIndexMap<IpAddr, Source, MAX_SOURCES>,
    conns: FnvIndexMap<u32, Conn, MAX_CONNECTIONS>,
    counters: AgentCounters,
}

impl SecurityAgent {
    pub fn new(cfg: SecurityConfig) -> Self {
        SecurityAgent {
            cfg,
            sources: FnvIndexMap::new(),
            conns: FnvIndexMap::new(),
            counters: AgentCounters::default(),
        }
    }

    fn remember_conn(&mut self, pid: u32, ip: IpAddr, now: u64) {
        if self.conns.len() == MAX_CONNECTIONS && !self.conns.contains_key(&pid) {
            if let Some(oldest) = self.conns.iter().min_by_key(|(_, c)| c.last_ms).map(|(k, _)| *k) {
                self.conns.remove(&oldest);
                self.counters.evicted += 1;
            }
        }
        let _ = self.conns.insert(pid, Conn { ip, counted: 0, last_ms: now });
    }

    /// Adds `n` failures from `ip`; emits a finding when the threshold is crossed.
    fn fail(&mut self, ip: IpAddr, user: Option<&str>, n: u32, input: Input<'_>, out: &mut Vec<Finding>) {
        let now = input.now_ms;
        let window_ms = self.cfg.window_s as u64 * 1000;
        if !self.sources.contains_key(&ip) && self.sources.len() == MAX_SOURCES {
            // Evict the source seen least recently: an active attacker stays.
            if let Some(oldest) = self.sources.iter().min_by_key(|(_, s)| s.last_ms).map(|(k, _)| *k) {
                self.sources.remove(&oldest);
                self.counters.evicted += 1;
            }
        }
        if !self.sources.contains_key(&ip) {
            let fresh = Source {
                times: Deque::new(),
                count: 0,
                first_ms: now,
                last_ms: now,
                user: None,
                evidence: HVec::new(),
                quiet_until_ms: 0,
            };
            // Cannot fail: a slot was freed above.
            let _ = self.sources.insert(ip, fresh);
        }
        let Some(src) = self.sources.get_mut(&ip) else { return };
        // A gap longer than the window starts a new run.
        if now.saturating_sub(src.last_ms) > window_ms {
            src.times.clear();
            src.count = 0;
            src.first_ms = now;
            src.user = None;
            src.evidence.clear();
        }
        for _ in 0..n {
            if src.times.is_full() {
                src.times.pop_front();
            }
            let _ = src.times.push_back(now);
        }
        src.count = src.count.saturating_add(n);
        src.last_ms = now;
        if src.user.is_none() {
            src.user = user.map(str::to_owned);
        }
        if !src.evidence.is_full() {
            let _ = src.evidence.push(evidence(input.line));
        }
        while src.times.len() > self.cfg.failures as usize {
            src.times.pop_front();
        }
        let in_window = src.times.len() as u32 >= self.cfg.failures
            && src.times.front().is_some_and(|&t| now.saturating_sub(t) <= window_ms);
        if !in_window || now < src.quiet_until_ms {
            return;
        }
        src.quiet_until_ms = now + self.cfg.suppress_s as u64 * 1000;
        let secs = (src.last_ms - src.first_ms) / 1000;
        out.push(Finding {
            seq: 0,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::HIGH,
            subject: Subject { src_ip: Some(ip), user: src.user.clone(), ..Subject::default() },
            count: src.count,
            first_ms: src.first_ms,
            last_ms: src.last_ms,
            summary: format!("{} failed SSH logins from {ip} in {secs} s", src.count),
            evidence: src.evidence.iter().cloned().collect(),
        });
        self.counters.findings += 1;
    }
}

impl Agent for SecurityAgent {
    fn name(&self) -> &'static str {
        "security"
    }

    fn on_record(&mut self, input: Input<'_>, out: &mut Vec<Finding>) {
        let r = input.record;
        let Some(program) = r.program else { return };
        let Some(line) = classify(program, r.msg) else { return };
        self.counters.events += 1;
        let now = input.now_ms;
        match (line, r.pid) {
            (SshLine::Connection { ip }, Some(pid)) => self.remember_conn(pid, ip, now),
            (SshLine::Connection { .. }, None) => {}
            (SshLine::Failure { ip, user }, pid) => {
                let conn_ip = pid.and_then(|p| self.conns.get_mut(&p)).map(|c| {
                    c.counted += 1;
                    c.last_ms = now;
                    c.ip
                });
                if let Some(ip) = ip.or(conn_ip) {
                    self.fail(ip, user, 1, input, out);
                }
            }
            (SshLine::ExitFails { ip, user, fails }, pid) => {
                let conn = pid.and_then(|p| self.conns.remove(&p));
                let ip = ip.or(conn.map(|c| c.ip));
                let extra = fails.saturating_sub(conn.map_or(0, |c| c.counted));
                if let (Some(ip), true) = (ip, extra > 0) {
                    self.fail(ip, user, extra, input, out);
                }
            }
        }
    }

    fn tick(&mut self, now_ms: u64, _out: &mut Vec<Finding>) {
        // Forget sources whose run and quiet time are over, and connections
        // idle for longer than any sane login, so tables hold live state only.
        let window_ms = self.cfg.window_s as u64 * 1000;
        let stale: HVec<IpAddr, MAX_SOURCES> = self
            .sources
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.last_ms) > window_ms && now_ms >= s.quiet_until_ms)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &stale {
            self.sources.remove(ip);
        }
        let idle: HVec<u32, MAX_CONNECTIONS> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ms.saturating_sub(c.last_ms) > 600_000)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in &idle {
            self.conns.remove(pid);
        }
    }

    fn counters(&self) -> AgentCounters {
        self.counters
    }
}

/// Recognises the SSH lines the agent uses.
fn classify<'a>(program: &str, msg: &'a str) -> Option<SshLine<'a>> {
    match program {
        "dropbear" => dropbear(msg),
        "sshd" => openssh(msg),
        _ => None,
    }
}

fn dropbear(msg: &str) -> Option<SshLine<'_>> {
    if let Some(rest) = msg.strip_prefix("Child connection from ") {
        return Some(SshLine::Connection { ip: parse_ip_port(rest)? });
    }
    // Old dropbear logs in lower case, newer capitalised.
    let lower_first = |p: &str| msg.strip_prefix(p).or_else(|| msg.strip_prefix(&p.to_ascii_lowercase()[..]));
    if let Some(rest) = lower_first("Bad password attempt for '") {
        let (user, rest) = rest.split_once('\'')?;
        let ip = rest.strip_prefix(" from ").and_then(parse_ip_port);
        return Some(SshLine::Failure { ip, user: Some(user) });
    }
    if let Some(rest) = lower_first("Login attempt for nonexistent user") {
        let ip = rest.strip_prefix(" from ").and_then(parse_ip_port);
        return Some(SshLine::Failure { ip, user: None });
    }
    if let Some(rest) = lower_first("Exit before auth") {
        // "Exit before auth from <1.2.3.4:5>: (user 'root', 3 fails): ..."
        // "exit before auth (user 'root', 5 fails): ..."
        let ip = rest.strip_prefix(" from <").and_then(|r| r.split_once('>')).and_then(|(a, _)| parse_ip_port(a));
        let (user, fails) = match rest.split_once("(user '") {
            Some((_, r)) => {
                let (user, r) = r.split_once("', ")?;
                let (n, _) = r.split_once(" fails)")?;
                (Some(user), n.parse().ok()?)
            }
            None => return None,
        };
        return Some(SshLine::ExitFails { ip, user, fails });
    }
    None
}

fn openssh(msg: &str) -> Option<SshLine<'_>> {
    // "Failed password for [invalid user ]U from IP port P ssh2"
    let rest = msg.strip_prefix("Failed ")?;
    let (_, rest) = rest.split_once(" for ")?;
    let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
    let (user, rest) = rest.rsplit_once(" from ")?;
    let ip = rest.split(' ').next()?.parse().ok()?;
    Some(SshLine::Failure { ip: Some(ip), user: Some(user) })
}

/// Parses `1.2.3.4:5678`, `[2001:db8::1]:22` or a bare address.
fn parse_ip_port(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line, Context};

    /// Feeds `lines` (logread format) and returns the findings.
    fn check(cfg: SecurityConfig, lines: &[&str]) -> Vec<Finding> {
        let mut agent = SecurityAgent::new(cfg);
        let mut out = Vec::new();
        for line in lines {
            let rec = parse_line(line, Context { year: 2024 }).unwrap();
            let now = rec.ts_ms.unwrap_or(0);
            agent.on_record(Input { record: &rec, line, now_ms: now }, &mut out);
        }
        out
    }

    fn bad_pw(sec: u32, ip: &str) -> String {
        format!("Thu Dec  5 17:43:{sec:02} 2024 authpriv.warn dropbear[100]: Bad password attempt for 'root' from {ip}:5000")
    }

    #[test]
    fn five_failures_in_a_minute_is_one_finding_and_twenty_still_one() {
        let lines: Vec<String> = (0..20).map(|i| bad_pw(i * 2, "203.0.113.5")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = check(SecurityConfig::default(), &refs);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].kind, "ssh.bruteforce");
        assert_eq!(f[0].subject.src_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(f[0].subject.user.as_deref(), Some("root"));
        assert_eq!(f[0].count, 5);
        assert_eq!(f[0].evidence.len(), MAX_EVIDENCE);
    }

    #[test]
    fn four_failures_are_not_a_brute_force() {
        let lines: Vec<String> = (0..4).map(|i| bad_pw(i, "203.0.113.5")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(check(SecurityConfig::default(), &refs).is_empty());
    }

    #[test]
    fn failures_spread_wider_than_the_window_are_not_a_brute_force() {
        let cfg = SecurityConfig { failures: 3, window_s: 10, suppress_s: 600 };
        let lines =
            [bad_pw(0, "203.0.113.5"), bad_pw(8, "203.0.113.5"), bad_pw(16, "203.0.113.5"), bad_pw(24, "203.0.113.5")];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(check(cfg, &refs).is_empty());
    }

    #[test]
    fn two_sources_are_counted_apart() {
        let mut lines = Vec::new();
        for i in 0..5 {
            lines.push(bad_pw(i, "203.0.113.5"));
            lines.push(bad_pw(i, "198.51.100.7"));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(check(SecurityConfig::default(), &refs).len(), 2);
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
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = check(SecurityConfig::default(), &refs);
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
            let line = bad_pw(0, &ip);
            let rec = parse_line(&line, Context { year: 2024 }).unwrap();
            agent.on_record(Input { record: &rec, line: &line, now_ms: i as u64 }, &mut out);
        }
        assert!(agent.sources.len() <= MAX_SOURCES);
        assert_eq!(agent.counters().evicted, 5000 - MAX_SOURCES as u64);
        assert!(out.is_empty());
    }

    #[test]
    fn config_out_of_range_is_refused() {
        assert!(SecurityConfig { failures: 1, ..Default::default() }.validate().is_err());
        assert!(SecurityConfig { failures: 65, ..Default::default() }.validate().is_err());
        assert!(SecurityConfig { window_s: 0, ..Default::default() }.validate().is_err());
        assert!(SecurityConfig::default().validate().is_ok());
    }
}
