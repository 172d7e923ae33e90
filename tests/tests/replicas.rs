//! Two hub replicas on one PostgreSQL and one mosquitto (both Debian's,
//! started here on loopback ports). The routers' findings are split between
//! the replicas by the broker's shared subscription and each is stored
//! exactly once; one replica leads (it correlates and alerts); when the
//! leader is killed the other takes over within seconds, and every incident
//! is told to the webhook exactly once across the takeover.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opmas_e2e::cluster::{leads, Replicas};
use opmas_e2e::{dropbear_attack, wait_for, Edge, HttpSink};

const ROUTERS: usize = 4;

/// An attacker seen by two routers: an incident of `two-routers` per address.
const RULE: &str = "name: two-routers
description: One address brute-forcing two routers
type: threshold
severity: high
window: 1h
key: src_ip
count: 2
devices: 2
match:
  - kind: ssh.bruteforce
";

fn alerting(hook: &str) -> String {
    format!(
        "receivers:
  - name: soc
    webhook: {{ url: '{hook}' }}
route:
  receivers: [soc]
  group_by: [key]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
"
    )
}

/// The firing notifications the webhook accepted, by incident key.
fn told(sink: &HttpSink) -> HashMap<String, usize> {
    let mut by_key = HashMap::new();
    for r in sink.received("/hook").into_iter().filter(|r| r.status / 100 == 2) {
        let n = r.json();
        if n["status"] == "firing" {
            for i in n["incidents"].as_array().into_iter().flatten() {
                *by_key.entry(i["key"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
            }
        }
    }
    by_key
}

/// Address `i` attacks routers `i` and `i + 1` (of [`ROUTERS`]).
fn attack(edges: &[Edge], i: usize) -> String {
    let ip = format!("198.51.100.{}", 10 + i);
    for r in [i % ROUTERS, (i + 1) % ROUTERS] {
        edges[r].append(&dropbear_attack(&ip, 6)).unwrap();
    }
    ip
}

#[test]
fn two_replicas_share_the_routers_and_the_survivor_takes_over_the_leaders_duties() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sink = HttpSink::start().unwrap();
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/two-routers.yaml"), RULE).unwrap();
    std::fs::write(d.join("alerting.yaml"), alerting(&sink.url("/hook"))).unwrap();
    let extra = format!("rules_dir = \"{0}/rules\"\nalerting_file = \"{0}/alerting.yaml\"", d.display());
    let Some(mut cluster) = Replicas::start(d, 2, &extra).unwrap() else { return };
    let devices: Vec<_> = (0..ROUTERS).map(|i| cluster.enrol(&format!("gw-{i}")).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(leads(&cluster.hubs[1]), Some(false), "one leader at a time\n{}", cluster.hubs[1].log());

    let url = cluster.broker_url();
    let edges: Vec<Edge> = devices.iter().map(|dev| Edge::start_url(d, dev, &url, "").unwrap()).collect();
    let (a, b) = (&cluster.hubs[0], &cluster.hubs[1]);
    wait_for(Duration::from_secs(30), "every router online", || {
        let (_, v) = b.get("/devices").ok()?;
        let online = v["devices"].as_array()?.iter().filter(|x| x["status"] == "online").count();
        (online == ROUTERS).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log(), b.log()));

    // Phase 1: four attackers, each on two routers; replica a leads.
    let mut ips: Vec<String> = (0..4).map(|i| attack(&edges, i)).collect();
    wait_for(Duration::from_secs(40), "phase 1 told", || (told(&sink).len() == 4).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{:?}\n--- a ---\n{}\n--- b ---\n{}", told(&sink), a.log(), b.log()));
    let (sa, sb) = (a.stats().unwrap(), b.stats().unwrap());
    let stored = |s: &serde_json::Value| s["findings_stored"].as_u64().unwrap_or(0);
    assert_eq!(stored(&sa) + stored(&sb), 8, "a: {sa}\nb: {sb}");
    assert!(stored(&sa) > 0 && stored(&sb) > 0, "both replicas ingest: a {} b {}", stored(&sa), stored(&sb));

    // The leader dies; the other replica takes over its duties.
    let killed = Instant::now();
    cluster.hubs[0].kill();
    let b = &cluster.hubs[1];
    wait_for(Duration::from_secs(15), "replica b to lead", || (leads(b) == Some(true)).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    let takeover = killed.elapsed();
    eprintln!("takeover after the leader was killed: {takeover:?}");
    assert!(takeover < Duration::from_secs(10), "{takeover:?}");

    // Phase 2: four more attackers, seen by the survivor alone.
    ips.extend((4..8).map(|i| attack(&edges, i)));
    wait_for(Duration::from_secs(60), "phase 2 told", || (told(&sink).len() == 8).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{:?}\n--- b ---\n{}", told(&sink), b.log()));
    std::thread::sleep(Duration::from_secs(3));

    // Every incident told once, none twice; every finding stored once.
    let by_key = told(&sink);
    for ip in &ips {
        assert_eq!(
            by_key.get(&format!("src_ip={ip}")).copied().or_else(|| by_key.get(ip).copied()),
            Some(1),
            "{by_key:?}"
        );
    }
    let (pg, db) = (&cluster.pg, &cluster.db_url);
    assert_eq!(pg.query(db, "SELECT COUNT(*) FROM findings WHERE kind = 'ssh.bruteforce'").unwrap(), "16");
    let dup = pg
        .query(db, "SELECT COUNT(*) FROM (SELECT src_ip, device_id FROM findings GROUP BY 1, 2 HAVING COUNT(*) > 1) d")
        .unwrap();
    assert_eq!(dup, "0", "a finding stored twice");
    assert_eq!(pg.query(db, "SELECT COUNT(*) FROM incidents WHERE rule = 'two-routers'").unwrap(), "8");
}
