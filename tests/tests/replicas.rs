//! Two hub replicas on one PostgreSQL and one mosquitto (both Debian's,
//! started here on loopback ports). The routers' findings are split between
//! the replicas by the broker's shared subscription and each is stored
//! exactly once; one replica leads (it correlates and alerts); when the
//! leader is killed the other takes over within seconds, and every incident
//! is told to the webhook exactly once across the takeover.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use opmas_e2e::{bin, dropbear_attack, free_addr, wait_for, Device, Edge, HttpSink, Hub, Postgres, Proc};

const HUB_PASSWORD: &str = "hub-broker-password-for-the-replicas";
const ROUTERS: usize = 4;

fn hub_toml(d: &Path, broker: SocketAddr, client_id: &str) -> String {
    format!(
        "rules_dir = \"{d}/rules\"\nalerting_file = \"{d}/alerting.yaml\"\n\
         [broker]\nmode = \"external\"\nurl = \"mqtt://{broker}\"\nusername = \"opmas-hub\"\npassword_file = \"{d}/broker.password\"\n\
         client_id = \"{client_id}\"\nmosquitto_password_file = \"{d}/opmas.passwd\"\nmosquitto_acl_file = \"{d}/opmas.acl\"\n\
         mosquitto_pid_file = \"{d}/mosquitto.pid\"\n",
        d = d.display()
    )
}

fn mosquitto_conf(d: &Path, broker: SocketAddr) -> String {
    let me = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    format!(
        "user {me}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/opmas.passwd\nacl_file {d}/opmas.acl\n\
         pid_file {d}/mosquitto.pid\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n",
        me = me.unwrap_or_else(|_| "mosquitto".into()),
        port = broker.port(),
        d = d.display()
    )
}

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

fn leads(hub: &Hub) -> Option<bool> {
    let (status, v) = hub.get("/health").ok()?;
    (status == 200).then(|| v["leader"].as_bool()).flatten()
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
    let Some(pg) = Postgres::start() else { return };
    let found = Command::new("sh").args(["-c", "command -v mosquitto"]).output().unwrap().status.success();
    assert!(found, "mosquitto not found (apt-get install mosquitto)");
    let url = pg.database("opmas_replicas").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = free_addr();
    let sink = HttpSink::start().unwrap();
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/two-routers.yaml"), RULE).unwrap();
    std::fs::write(d.join("alerting.yaml"), alerting(&sink.url("/hook"))).unwrap();
    std::fs::write(d.join("broker.password"), format!("{HUB_PASSWORD}\n")).unwrap();
    for name in ["a", "b"] {
        std::fs::create_dir_all(d.join(name).join("hub-data")).unwrap();
        std::fs::write(d.join(format!("hub-{name}.toml")), hub_toml(d, broker, &format!("opmas-hub-{name}"))).unwrap();
    }
    std::fs::write(d.join("mosquitto.conf"), mosquitto_conf(d, broker)).unwrap();
    let env = vec![(OsString::from("OPMAS_DATABASE_URL"), OsString::from(&url))];

    // Routers enrolled before anything runs, into PostgreSQL; mosquitto's files written.
    let devices: Vec<Device> = (0..ROUTERS)
        .map(|i| {
            let out = Command::new(bin("opmas-hub"))
                .args(["device", "add", &format!("gw-{i}"), "--json", "--config"])
                .arg(d.join("hub-a.toml"))
                .arg("--data-dir")
                .arg(d.join("a/hub-data"))
                .args(["--hub-url", &format!("mqtt://{broker}")])
                .envs(env.clone())
                .output()
                .unwrap();
            assert!(out.status.success(), "device add: {}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            Device { id: v["id"].as_str().unwrap().to_owned(), secret: v["secret"].as_str().unwrap().to_owned() }
        })
        .collect();

    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(d.join("mosquitto.conf"));
    let _mosquitto = Proc::spawn(cmd, d.join("mosquitto.log")).unwrap();
    wait_for(Duration::from_secs(10), "mosquitto listening", || std::net::TcpStream::connect(broker).ok()).unwrap();

    let args = |name: &str| -> Vec<OsString> { vec!["--config".into(), d.join(format!("hub-{name}.toml")).into()] };
    let mut a = Hub::start_with_env(&d.join("a"), args("a"), env.clone()).unwrap();
    wait_for(Duration::from_secs(10), "replica a to lead", || (leads(&a) == Some(true)).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    // The second replica finds the admin token in the database already; it
    // gets a copy of the file, as an operator would copy it.
    std::fs::copy(a.data_dir.join("admin.token"), d.join("b/hub-data/admin.token")).unwrap();
    let b = Hub::start_with_env(&d.join("b"), args("b"), env.clone()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leads(&b), Some(false), "one leader at a time\n{}", b.log());

    let broker_url = format!("mqtt://{broker}");
    let edges: Vec<Edge> = devices.iter().map(|dev| Edge::start_url(d, dev, &broker_url, "").unwrap()).collect();
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
    a.kill();
    wait_for(Duration::from_secs(15), "replica b to lead", || (leads(&b) == Some(true)).then_some(()))
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
    let findings = pg.query(&url, "SELECT COUNT(*) FROM findings WHERE kind = 'ssh.bruteforce'").unwrap();
    assert_eq!(findings, "16");
    let dup = pg
        .query(
            &url,
            "SELECT COUNT(*) FROM (SELECT src_ip, device_id FROM findings GROUP BY 1, 2 HAVING COUNT(*) > 1) d",
        )
        .unwrap();
    assert_eq!(dup, "0", "a finding stored twice");
    let incidents = pg.query(&url, "SELECT COUNT(*) FROM incidents WHERE rule = 'two-routers'").unwrap();
    assert_eq!(incidents, "8");
}
