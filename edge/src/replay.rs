//! `opmas-edge replay`: the agents over a log file, as fast as they go, with
//! the findings printed: the offline way to test thresholds against old logs.
//!
//! Time comes from the lines (lines without a timestamp take `now_ms`), so a
//! day of logs replays in seconds and detects what live reading would have.
//! Ticks are driven by the log's own clock; at the end every open window is
//! closed, so the final counts of floods come out as updates.

use std::io::{self, BufRead, Write};
use std::time::Instant;

use opmas_proto::msg::{Finding, Stage};

use crate::config::AgentsConfig;
use crate::events::JsonObject;
use crate::pipeline::Pipeline;

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplayStats {
    pub lines: u64,
    pub events: u64,
    pub findings: u64,
    pub seconds: f64,
}

/// How far apart, in log time, the agents' ticks are.
const TICK_MS: u64 = 1_000;

/// Replays `input` through agents configured by `cfg`, writing findings to
/// `out` (JSON lines if `json`, else one readable line each).
pub fn replay(
    mut input: impl BufRead,
    mut out: impl Write,
    cfg: &AgentsConfig,
    now_ms: u64,
    json: bool,
) -> io::Result<ReplayStats> {
    let started = Instant::now();
    let mut pipeline = Pipeline::new(cfg);
    let mut found: Vec<Finding> = Vec::new();
    let mut buf = Vec::new();
    let mut text = String::new();
    let mut last_tick: Option<u64> = None;
    let mut stats = ReplayStats::default();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        stats.lines += 1;
        pipeline.feed(line, now_ms, &mut found);
        let clock = pipeline.log_clock_ms();
        if last_tick.is_none_or(|t| clock >= t + TICK_MS) {
            pipeline.tick(clock, &mut found);
            last_tick = Some(clock);
        }
        write_findings(&mut found, &mut out, &mut text, json, &mut stats)?;
    }
    // Close every window: a day later in log time.
    pipeline.tick(pipeline.log_clock_ms().saturating_add(86_400_000 * 8), &mut found);
    write_findings(&mut found, &mut out, &mut text, json, &mut stats)?;
    out.flush()?;
    stats.events = pipeline.events();
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

fn write_findings(
    found: &mut Vec<Finding>,
    out: &mut impl Write,
    text: &mut String,
    json: bool,
    stats: &mut ReplayStats,
) -> io::Result<()> {
    for f in found.drain(..) {
        stats.findings += 1;
        text.clear();
        if json {
            finding_json(&f, text);
        } else {
            let what = match f.stage {
                Stage::New => "finding",
                Stage::Update => "update",
                Stage::Closed => "closed",
            };
            text.push_str(&format!("{what} {} sev={} count={}: {}", f.kind, f.severity.get(), f.count, f.summary));
        }
        text.push('\n');
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// One finding as a JSON object.
pub fn finding_json(f: &Finding, out: &mut String) {
    let mut j = JsonObject::open(out);
    j.str("agent", Some(&f.agent));
    j.str("kind", Some(&f.kind));
    j.num("severity", Some(f.severity.get().into()));
    j.ip("src_ip", f.subject.src_ip);
    j.str("mac", f.subject.mac.as_deref());
    j.str("iface", f.subject.iface.as_deref());
    j.str("user", f.subject.user.as_deref());
    j.str("service", f.subject.service.as_deref());
    j.str("host", f.subject.host.as_deref());
    j.num("count", Some(f.count.into()));
    j.num("first_ms", Some(f.first_ms));
    j.num("last_ms", Some(f.last_ms));
    j.str("summary", Some(&f.summary));
    let mut ev = String::from("[");
    for (i, e) in f.evidence.iter().enumerate() {
        if i > 0 {
            ev.push(',');
        }
        crate::events::push_json_str(&mut ev, e);
    }
    ev.push(']');
    j.raw("evidence", &ev);
    j.str("stage", Some(f.stage.as_str()));
    j.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brute_force_in_an_old_log_is_found_once_with_its_final_count() {
        let mut log = String::new();
        for i in 0..30 {
            log.push_str(&format!(
                "Thu Dec  5 17:43:{:02} 2024 authpriv.warn dropbear[{}]: Bad password attempt for 'root' from 203.0.113.9:{}\n",
                i,
                100 + i,
                4000 + i
            ));
        }
        let mut out = Vec::new();
        let s = replay(log.as_bytes(), &mut out, &AgentsConfig::default(), 1_780_000_000_000, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(s.lines, 30);
        assert_eq!(s.events, 30);
        let brute: Vec<&str> = text.lines().filter(|l| l.contains("\"ssh.bruteforce\"")).collect();
        assert!(!brute.is_empty(), "{text}");
        assert!(brute[0].contains("\"stage\":\"new\""), "{text}");
        // The last word on the brute force carries all 30 failures.
        assert!(brute.last().unwrap().contains("\"count\":30"), "{text}");
    }
}
