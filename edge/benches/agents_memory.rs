//! Resident memory after 100k and after 1M lines from 100k distinct
//! sources: the agents' tables are allocated when they are built, so it
//! must not grow (the process exits non-zero if it does). A process of its
//! own, since anything else allocating in it would blur the figure.
//!
//! `cargo bench -p opmas-edge --bench agents_memory` (release).

use opmas_edge::agents::{Agent, Meta, NetworkAgent, SecurityAgent, SystemAgent, WifiAgent};

fn main() {
    use opmas_edge::classify::classify;
    use opmas_edge::parse::{parse_line, Context};
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
    println!("VmRSS: built {built} KiB, after 100k lines {at_100k} KiB, after 1M lines {end} KiB; {evicted} evicted");
    assert!(end <= at_100k + 256, "resident memory grew from {at_100k} to {end} KiB");
}
