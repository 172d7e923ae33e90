//! The correlation engine alone, without the database: findings per second
//! through the rules of `scripts/bench-correlate.sh` (100 rules that all
//! look at every brute force, besides the five shipped), from 20 routers
//! x 5,000 addresses. What the engine costs per finding, apart from what
//! storing incidents costs; `scripts/bench-correlate.sh` measures both
//! together in the running hub.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opmas_hub::correlate::engine::{Engine, Fact};
use opmas_hub::correlate::rule::{parse_yaml, Rule};

/// The same mix as `opmas-load`'s `bench_rules`.
fn bench_rules(n: usize) -> String {
    let mut y = String::new();
    for i in 0..n {
        let name = format!("bench-{i:03}");
        y.push_str(&match i % 4 {
            0 if i == 0 => format!("- name: {name}\n  type: threshold\n  severity: high\n  window: 1h\n  key: src_ip\n  count: 2\n  devices: 2\n  match: [{{kind: ssh.bruteforce}}]\n"),
            0 => format!("- name: {name}\n  type: threshold\n  severity: low\n  window: 1h\n  key: src_ip\n  count: 1000\n  match: [{{kind: 'ssh.*'}}]\n"),
            1 => format!("- name: {name}\n  type: all\n  severity: medium\n  window: 30m\n  key: src_ip\n  match: [{{kind: ssh.bruteforce}}, {{kind: never.{i}}}]\n"),
            2 => format!("- name: {name}\n  type: sequence\n  severity: medium\n  window: 30m\n  key: src_ip\n  match: [{{agent: security}}, {{kind: never.{i}}}]\n"),
            _ => format!("- name: {name}\n  type: threshold\n  severity: low\n  window: 10m\n  key: device\n  count: 1000\n  devices: 2\n  match: [{{min_severity: medium}}]\n"),
        });
    }
    y
}

fn rules() -> Vec<Rule> {
    let mut specs = parse_yaml(&bench_rules(100)).expect("bench rules parse");
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rules")).expect("config/rules") {
        let f = f.expect("config/rules entry").path();
        if f.extension().is_some_and(|e| e == "yaml") {
            specs.extend(
                parse_yaml(&std::fs::read_to_string(&f).expect("a shipped rule")).expect("shipped rule parses"),
            );
        }
    }
    specs.into_iter().map(|s| Rule::compile(s).expect("rules check")).collect()
}

/// 20 routers x `sources` addresses, each address on every router in turn.
fn facts(sources: usize) -> Vec<Fact> {
    let mut out = Vec::with_capacity(sources * 20);
    for s in 0..sources {
        for e in 0..20 {
            let id = out.len() as i64 + 1;
            out.push(Fact {
                finding: id,
                device: format!("load-{e:02}"),
                time_ms: 1_000_000 + id,
                agent: "security".into(),
                kind: "ssh.bruteforce".into(),
                severity: 4,
                src_ip: Some(format!("10.{}.{}.{}", s >> 16, (s >> 8) & 255, s & 255)),
                user: Some("root".into()),
                service: Some("dropbear".into()),
                ..Fact::default()
            });
        }
    }
    out
}

fn engine(c: &mut Criterion) {
    let rules = rules();
    let facts = facts(5000);
    let mut g = c.benchmark_group("correlate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(facts.len() as u64));
    g.bench_function("105 rules, 100k brute forces", |b| {
        b.iter_batched(
            || Engine::new(rules.clone()),
            |mut e| facts.iter().map(|f| e.feed(f).len()).sum::<usize>(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
