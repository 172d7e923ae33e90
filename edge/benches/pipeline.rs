//! Criterion benchmarks of the edge's hot path on a mixed generated corpus:
//! parse only, parse + classify, and parse + classify + all agents + spool.
//!
//! `cargo bench -p opmas-edge --bench pipeline`. Instruction counts per line,
//! which are stable on a noisy machine, come from `scripts/bench-edge.sh`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opmas_edge::classify::classify;
use opmas_edge::parse::{parse_line, Context};
use opmas_edge::pipeline::Pipeline;

#[path = "support/corpus.rs"]
mod corpus;

const LINES: usize = 100_000;

fn benches(c: &mut Criterion) {
    let lines = corpus::generate(LINES, 5_000, 42);
    let ctx = Context::at(corpus_now_ms());
    let mut g = c.benchmark_group("edge");
    g.throughput(Throughput::Elements(LINES as u64));
    g.sample_size(20);
    g.bench_function("syslog_loose", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(syslog_loose::parse_message(black_box(l), syslog_loose::Variant::Either));
            }
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(parse_line(black_box(l), ctx));
            }
        })
    });
    g.bench_function("parse_classify", |b| {
        b.iter(|| {
            for l in &lines {
                if let Ok(r) = parse_line(black_box(l), ctx) {
                    black_box(classify(&r));
                }
            }
        })
    });
    g.bench_function("pipeline", |b| {
        let mut p = Pipeline::with_defaults();
        let mut found = Vec::new();
        b.iter(|| {
            for l in &lines {
                black_box(p.feed(black_box(l), corpus_now_ms(), &mut found));
                found.clear();
            }
        })
    });
    g.finish();
}

/// A fixed "now" in the corpus's year, so the year guess is stable.
fn corpus_now_ms() -> u64 {
    1_780_000_000_000
}

criterion_group!(edge, benches);
criterion_main!(edge);
