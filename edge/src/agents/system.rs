//! System agent: kernel and procd health.
//!
//! - `sys.oom_kill`: the kernel's OOM killer killed one process `oom_kills`
//!   times within `oom_window` (default: the first kill). The kernel logs a
//!   kill twice (`oom-kill:... task=X,pid=N` and `Killed process N (X)`): a
//!   second line for the same pid within 10 s is the same kill.
//! - `sys.crash_loop`: procd reports that it gave up on a service instance
//!   ("Instance X::Y s in a crash loop"); procd has already applied its own
//!   threshold, so every report counts. Subject: the service (`X`).
//! - `sys.watchdog`: a watchdog, soft-lockup or hung-task line. No subject:
//!   the detail differs on every line, so all of them form one finding.
//! - `sys.unexpected_reboot`: a boot line (`sys.boot`: the kernel banner or
//!   procd's start) arrives after the agent had seen at least
//!   `reboot_min_uptime` seconds of log (line time from its first event, or
//!   from the previous boot, to its latest). What the edge can know: it
//!   runs on the router it watches and starts after each boot, reading the
//!   log from the boot on, so the boot lines of its own start come first and
//!   fire nothing. A boot in the middle of a stream it has been following is
//!   a system that restarted under it: the router of a remote log (`udp`
//!   source), or a persistent log read from the start holding several boots.
//!   A boot after a clean shutdown line (`sys.shutdown`: procd's `- shutdown
//!   -`, the kernel's `reboot: Restarting system`) is planned and fires
//!   nothing.
//!
//! Findings are suppressed per subject for `suppress` (default an hour: a
//! service that crash-loops all day is one finding per hour with its count).

use heapless::String as HString;
use opmas_proto::msg::{Finding, Subject};

use super::{
    evidence, finding, hash_str, short, Agent, AgentCounters, AgentSuppressor, BoundedMap, Burst, Clock, EvidencePool,
    Meta, SYS_CRASH_LOOP, SYS_OOM_KILL, SYS_UNEXPECTED_REBOOT, SYS_WATCHDOG,
};
use crate::events::Event;

pub use opmas_proto::agents::SystemConfig;

/// The agent's name in findings and the heartbeat.
const AGENT: &str = "system";
/// Processes tracked for OOM kills: a router runs a few dozen.
pub const MAX_PROCESSES: usize = 32;
/// Largest allowed `oom_kills`: each process keeps this many latest kill times.
pub const MAX_OOM_EVENTS: usize = 32;
/// Evidence lines waiting for a finding.
const EVIDENCE_SLOTS: usize = 16;
/// Bytes of a process name kept: the kernel's `comm` holds 15.
const COMM_LEN: usize = 16;
/// A second OOM line for the same pid within this long is the same kill.
const SAME_KILL_MS: u64 = 10_000;

/// The system agent.
pub struct SystemAgent {
    /// Thresholds and windows.
    cfg: SystemConfig,
    /// Line time for ticks.
    clock: Clock,
    /// OOM kills by process name.
    processes: Box<BoundedMap<HString<COMM_LEN>, Burst<MAX_OOM_EVENTS>, MAX_PROCESSES, { 2 * MAX_PROCESSES }>>,
    /// Evidence lines of runs in progress.
    pool: Box<EvidencePool<EVIDENCE_SLOTS>>,
    /// The latest OOM kill: pid and line time.
    last_kill: Option<(u32, u64)>,
    /// Line time of the first event since start or the latest boot.
    since_ms: Option<u64>,
    /// Line time of the latest event.
    latest_ms: u64,
    /// A clean shutdown was logged since the last boot: the next boot is planned.
    shutdown_seen: bool,
    /// Suppression windows.
    sup: AgentSuppressor,
    /// Events consumed.
    events: u64,
}

impl SystemAgent {
    /// An agent with `cfg` (validated by the caller; out-of-range values
    /// make a detector never or always fire, never panic).
    pub fn new(cfg: SystemConfig) -> Self {
        SystemAgent {
            cfg,
            clock: Clock::default(),
            processes: Box::default(),
            pool: Box::default(),
            last_kill: None,
            since_ms: None,
            latest_ms: 0,
            shutdown_seen: false,
            sup: AgentSuppressor::new(cfg.suppress_s),
            events: 0,
        }
    }

    /// The kernel killed `process`.
    fn oom_kill(&mut self, process: &str, pid: Option<u32>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        if let Some(pid) = pid {
            let same = self.last_kill.is_some_and(|(p, t)| p == pid && now.saturating_sub(t) <= SAME_KILL_MS);
            self.last_kill = Some((pid, now));
            if same {
                return;
            }
        }
        let window_ms = u64::from(cfg.oom_window_s) * 1000;
        let stale = |b: &Burst<MAX_OOM_EVENTS>| now.saturating_sub(b.last_ms()) > window_ms;
        let Some(b) = self.processes.entry(short(process), stale, Burst::default) else { return };
        b.push(now, 1, cfg.oom_window_s, &mut self.pool, line);
        let key = hash_str(process);
        if self.sup.note(&SYS_OOM_KILL, key, now, 1, line, out) {
            b.reset_run();
        } else if b.hits(cfg.oom_kills, cfg.oom_window_s, now) {
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let times = if b.count() == 1 { "once".to_owned() } else { format!("{} times in {secs} s", b.count()) };
            let f = finding(
                AGENT,
                &SYS_OOM_KILL,
                Subject { service: Some(process.into()), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!("out of memory: the kernel killed {process} {times}"),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&SYS_OOM_KILL, key, now, f, out);
            b.reset_run();
        }
    }

    /// Emits `kind` about `subject` now, or adds to its open window.
    fn single(
        &mut self,
        kind: &super::Kind,
        subject: Subject,
        summary: String,
        meta: &Meta<'_>,
        out: &mut Vec<Finding>,
    ) {
        let now = meta.now_ms;
        let key = subject.service.as_deref().map_or(0, hash_str);
        if !self.sup.note(kind, key, now, 1, meta.line, out) {
            let f = finding(AGENT, kind, subject, 1, now, now, summary, vec![evidence(meta.line)]);
            self.sup.emit(kind, key, now, f, out);
        }
    }

    /// A boot line: unexpected if the log had been running long enough.
    fn boot(&mut self, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let ran_ms = self.since_ms.map_or(0, |s| self.latest_ms.saturating_sub(s));
        let planned = std::mem::take(&mut self.shutdown_seen);
        if !planned && self.since_ms.is_some() && ran_ms >= u64::from(self.cfg.reboot_min_uptime_s) * 1000 {
            let summary =
                format!("the system booted after {} min of log without a clean shutdown line", ran_ms / 60_000);
            self.single(&SYS_UNEXPECTED_REBOOT, Subject::default(), summary, meta, out);
        }
        // The new boot starts a new count; its own lines arrive next.
        self.since_ms = Some(meta.now_ms);
        self.latest_ms = meta.now_ms;
    }
}

impl Agent for SystemAgent {
    fn name(&self) -> &'static str {
        AGENT
    }

    fn on_event(&mut self, event: &Event<'_>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        self.clock.observe(meta.now_ms);
        if let Event::SysBoot = event {
            self.events += 1;
            self.boot(meta, out);
            return;
        }
        if let Event::SysShutdown = event {
            self.events += 1;
            self.shutdown_seen = true;
            return;
        }
        // Any event shows the system running.
        self.since_ms.get_or_insert(meta.now_ms);
        self.latest_ms = self.latest_ms.max(meta.now_ms);
        match *event {
            Event::SysOomKill { process, pid } => {
                self.events += 1;
                self.oom_kill(process, pid, meta, out);
            }
            Event::SysCrashLoop { service } => {
                self.events += 1;
                let subject = Subject { service: Some(service.into()), ..Subject::default() };
                let summary = format!("procd gave up on {service}: it is in a crash loop");
                self.single(&SYS_CRASH_LOOP, subject, summary, meta, out);
            }
            Event::SysWatchdog { detail } => {
                self.events += 1;
                self.single(&SYS_WATCHDOG, Subject::default(), format!("watchdog: {detail}"), meta, out);
            }
            _ => {}
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        let now = self.clock.at_tick(now_ms);
        self.sup.expire(now, out);
    }

    fn counters(&self) -> AgentCounters {
        AgentCounters {
            events: self.events,
            findings: self.sup.emitted(),
            evicted: self.processes.evicted() + self.sup.evicted(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real kernel and procd lines (system.log; the watchdog and boot lines
    //! in the kernel's format, the samples have none) through the parser and
    //! classifier; the 100k flood feeds events.

    use super::super::testing::{feed, kinds, line, news, t, tick_after};
    use super::*;
    use opmas_proto::msg::Stage;

    /// One kill as the kernel logs it: twice (system.log, Aug 7 2026).
    fn oom(agent: &mut SystemAgent, process: &str, pid: u32, at: u64, out: &mut Vec<Finding>) {
        let l1 = format!("Fri Aug  7 08:24:06 2026 kern.info kernel: [13579.902296] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task={process},pid={pid},uid=0");
        line(agent, &l1, at, out);
        let l2 = format!("Fri Aug  7 08:24:06 2026 kern.err kernel: [13579.902481] Out of memory: Killed process {pid} ({process}) total-vm:3726576kB, anon-rss:875928kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:7328kB oom_score_adj:0");
        line(agent, &l2, at + 1, out);
    }

    #[test]
    fn an_oom_kill_is_a_finding_and_repeats_update_it() {
        let mut agent = SystemAgent::new(SystemConfig::default());
        let mut out = Vec::new();
        oom(&mut agent, "smartdns", 1247, t(0), &mut out);
        assert_eq!(kinds(&out), vec![("sys.oom_kill", "new")]);
        assert_eq!(out[0].count, 1, "two lines, one kill");
        assert_eq!(out[0].subject.service.as_deref(), Some("smartdns"));
        assert_eq!(out[0].severity.get(), 4);
        assert_eq!(out[0].summary, "out of memory: the kernel killed smartdns once");
        oom(&mut agent, "smartdns", 1300, t(60), &mut out);
        oom(&mut agent, "dnsmasq", 15486, t(70), &mut out);
        assert_eq!(
            kinds(&out),
            vec![("sys.oom_kill", "new"), ("sys.oom_kill", "update"), ("sys.oom_kill", "new")],
            "a repeat a minute later updates it; another process is another finding"
        );
        assert_eq!(out[1].count, 2);
        out.extend(tick_after(&mut agent, t(70), 3_600_000));
        assert_eq!(kinds(&out[3..]), vec![("sys.oom_kill", "closed"), ("sys.oom_kill", "closed")]);
        let smartdns = out[3..].iter().find(|f| f.subject.service.as_deref() == Some("smartdns")).unwrap();
        assert_eq!(smartdns.count, 2);
    }

    #[test]
    fn a_higher_oom_threshold_needs_more_kills() {
        let mut agent = SystemAgent::new(SystemConfig { oom_kills: 3, ..Default::default() });
        let mut out = Vec::new();
        oom(&mut agent, "xray", 1, t(0), &mut out);
        oom(&mut agent, "xray", 2, t(100), &mut out);
        assert!(out.is_empty());
        oom(&mut agent, "xray", 3, t(200), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].count, 3);
    }

    #[test]
    fn crash_loops_are_one_finding_per_service() {
        let mut agent = SystemAgent::new(SystemConfig::default());
        let mut out = Vec::new();
        for i in 0..50 {
            for l in [
                "Fri Oct 20 09:19:54 2023 daemon.info procd: Instance https-dns-proxy::instance1 s in a crash loop 969 crashes, 284 seconds since last crash",
                "Fri Oct 20 09:19:54 2023 daemon.info procd: Instance https-dns-proxy::instance2 s in a crash loop 969 crashes, 284 seconds since last crash",
                "Sat Feb  1 17:55:45 2020 daemon.info procd: Instance smartdns::smartdns s in a crash loop 6 crashes, 0 seconds since last crash",
            ] {
                line(&mut agent, l, t(i * 10), &mut out);
            }
        }
        let new = news(&out);
        assert_eq!(new.len(), 2);
        assert_eq!(new[0].subject.service.as_deref(), Some("https-dns-proxy"));
        assert_eq!(new[1].subject.service.as_deref(), Some("smartdns"));
        assert!(out.iter().filter(|f| f.stage == Stage::Update).count() <= 2 * 9, "at most one update a minute each");
        out.extend(tick_after(&mut agent, t(490), 3_600_000));
        let closed: Vec<u32> = out.iter().filter(|f| f.stage == Stage::Closed).map(|f| f.count).collect();
        assert_eq!(closed, vec![100, 50], "the last updates count every report");
    }

    #[test]
    fn watchdog_lines_are_one_finding() {
        let mut agent = SystemAgent::new(SystemConfig::default());
        let mut out = Vec::new();
        for i in 0..5u64 {
            let l = format!("Sat Jul  9 20:50:17 2016 kern.emerg kernel: [ 4012.500000] watchdog: BUG: soft lockup - CPU#0 stuck for {}s! [kworker/0:1:123]", 22 + i);
            line(&mut agent, &l, t(i), &mut out);
        }
        line(&mut agent, "Sat Jul  9 20:50:17 2016 kern.err kernel: [ 4012.500000] INFO: task jffs2_gcd_mtd6:512 blocked for more than 120 seconds.", t(6), &mut out);
        assert_eq!(kinds(&out), vec![("sys.watchdog", "new")]);
        assert!(out[0].summary.contains("soft lockup"));
        assert_eq!(out[0].subject, Subject::default());
    }

    const BANNER: &str = "Sat Jul  9 20:50:17 2016 kern.notice kernel: [    0.000000] Linux version 5.15.134 (builder@buildhost) (mipsel-openwrt-linux-musl-gcc 12.3.0 r23497-6637af95aa) #0 SMP Mon Oct 9 21:45:35 2023";
    const LINK_UP: &str =
        "Sun Jun 29 12:12:56 2025 kern.info kernel: [  421.994988] bcmgenet fd580000.ethernet eth0: Link is Up - 10Mbps/Full - flow control off";
    const WAN_UP: &str = "Mon May 18 01:11:47 2026 daemon.notice netifd: Interface 'WLAN3' is now up";

    #[test]
    fn the_boot_at_the_start_of_the_log_is_expected() {
        let mut agent = SystemAgent::new(SystemConfig::default());
        let mut out = Vec::new();
        // logread at the edge's start: the boot, then the system coming up.
        line(&mut agent, BANNER, t(0), &mut out);
        line(&mut agent, LINK_UP, t(20), &mut out);
        line(&mut agent, WAN_UP, t(3600), &mut out);
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn a_boot_after_a_clean_shutdown_is_planned() {
        let mut agent = SystemAgent::new(SystemConfig::default());
        let mut out = Vec::new();
        line(&mut agent, LINK_UP, t(0), &mut out);
        line(&mut agent, WAN_UP, t(86_400), &mut out);
        line(
            &mut agent,
            "Mon May 18 01:11:48 2026 user.info kernel: [86400.1] procd: - shutdown -",
            t(86_401),
            &mut out,
        );
        line(
            &mut agent,
            "Mon May 18 01:11:49 2026 kern.emerg kernel: [86401.2] reboot: Restarting system",
            t(86_402),
            &mut out,
        );
        line(&mut agent, BANNER, t(86_500), &mut out);
        line(&mut agent, LINK_UP, t(86_520), &mut out);
        assert!(out.is_empty(), "{out:#?}");
        // The flag is spent: a later crash-reboot still counts.
        line(&mut agent, WAN_UP, t(200_000), &mut out);
        line(&mut agent, BANNER, t(200_100), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
    }

    #[test]
    fn a_boot_in_the_middle_of_a_running_log_is_an_unexpected_reboot() {
        for (ran_s, want) in [(299u64, 0usize), (300, 1), (86_400, 1)] {
            let mut agent = SystemAgent::new(SystemConfig::default());
            let mut out = Vec::new();
            line(&mut agent, LINK_UP, t(0), &mut out);
            line(&mut agent, WAN_UP, t(ran_s), &mut out);
            // The router comes back; without an RTC its clock starts in the past.
            line(&mut agent, BANNER, t(0) - 3_600_000, &mut out);
            line(&mut agent, LINK_UP, t(0) - 3_590_000, &mut out);
            assert_eq!(out.len(), want, "after {ran_s} s: {out:#?}");
            if let Some(f) = out.first() {
                assert_eq!(f.kind, "sys.unexpected_reboot");
                assert_eq!(f.evidence, vec![BANNER.to_owned()]);
                assert_eq!(f.subject, Subject::default());
            }
        }
    }

    #[test]
    fn a_flood_of_100k_process_names_stays_within_the_table() {
        let mut agent = SystemAgent::new(SystemConfig { oom_kills: 2, ..Default::default() });
        let mut out = Vec::new();
        for i in 0..100_000u32 {
            let name = format!("p{i}");
            feed(&mut agent, Event::SysOomKill { process: &name, pid: Some(i) }, "oom", t(0) + u64::from(i), &mut out);
        }
        assert!(agent.processes.len() <= MAX_PROCESSES);
        assert_eq!(agent.counters().evicted, 100_000 - MAX_PROCESSES as u64);
        assert!(out.is_empty());
    }
}
