//! Runs one stage of the edge over a corpus file, for instruction counting
//! with `valgrind --tool=callgrind` (see `scripts/bench-edge.sh`) and for
//! memory measurements.
//!
//! ```text
//! edge_lines gen LINES DISTINCT_IPS SEED > corpus.log
//! edge_lines (read | syslog_loose | parse | classify | pipeline) corpus.log
//! ```
//!
//! `read` only loads the file: its count is the baseline the other stages
//! are measured against.

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use opmas_edge::classify::classify;
use opmas_edge::parse::{parse_line, Context};
use opmas_edge::pipeline::Pipeline;

#[path = "../benches/support/corpus.rs"]
mod corpus;

/// The corpus's notion of now (mid-2026), fixed so runs are comparable.
const NOW_MS: u64 = 1_780_000_000_000;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: edge_lines gen LINES DISTINCT_IPS SEED | edge_lines MODE FILE";
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    if mode == "gen" {
        let num = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok());
        let (Some(n), Some(ips), Some(seed)) = (num(2), num(3), num(4)) else {
            eprintln!("{usage}");
            std::process::exit(2);
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for l in corpus::generate(n as usize, ips as u32, seed) {
            writeln!(out, "{l}")?;
        }
        return Ok(());
    }
    let Some(path) = args.get(2) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().collect();
    let ctx = Context::at(NOW_MS);
    let start = Instant::now();
    let mut n = 0usize;
    match mode {
        "read" => n = black_box(lines.len()),
        "syslog_loose" => {
            for l in &lines {
                let m = syslog_loose::parse_message(black_box(l), syslog_loose::Variant::Either);
                n += usize::from(m.appname.is_some());
            }
        }
        "parse" => {
            for l in &lines {
                n += usize::from(parse_line(black_box(l), ctx).is_ok_and(|r| r.program.is_some()));
            }
        }
        "classify" => {
            for l in &lines {
                if let Ok(r) = parse_line(black_box(l), ctx) {
                    n += usize::from(classify(&r).is_some());
                }
            }
        }
        "pipeline" => {
            let mut p = Pipeline::with_defaults();
            let mut found = Vec::new();
            for l in &lines {
                n += p.feed(black_box(l), NOW_MS, &mut found);
                found.clear();
            }
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{mode}: {} lines, {n} hits, {:.3} s, {:.0} lines/s",
        lines.len(),
        secs,
        lines.len() as f64 / secs.max(1e-9)
    );
    Ok(())
}
