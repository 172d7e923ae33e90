//! Throughput of parse + classify + all four agents, and of each agent and
//! the agents alone, on a million lines of floods that stress their tables.
//!
//! `cargo bench -p opmas-edge --bench agents_throughput` (release).

use opmas_edge::agents::{Agent, Meta, NetworkAgent, SecurityAgent, SystemAgent, WifiAgent};
use opmas_edge::events::Event;

fn main() {
    use opmas_edge::classify::classify;
    use opmas_edge::parse::{parse_line, Context};
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
