//! The first end-to-end path: an SSH brute force seen by the real edge
//! arrives exactly once in the real hub, across hub and edge restarts.

use std::time::Duration;

use opmas_e2e::{dropbear_attack, wait_for, Edge, Hub};
use serde_json::Value;

#[test]
fn brute_force_arrives_exactly_once_across_hub_and_edge_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path()).unwrap();
    let device = hub.enrol("gw-e2e-1").unwrap();
    let mut edge = Edge::start(dir.path(), &hub, &device).unwrap();
    wait_for(Duration::from_secs(10), "the edge to come online", || {
        let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
        (d["status"] == "online").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));

    // 1. Twenty failures from one address: one finding within 5 s.
    edge.append(&dropbear_attack("203.0.113.10", 20)).unwrap();
    opmas_e2e::wait_for_bruteforce(&hub, &edge, "203.0.113.10", Duration::from_secs(5));
    let f = &hub.findings("kind=ssh.bruteforce").unwrap()[0];
    assert_eq!(f["device_id"], Value::from(device.id.as_str()));
    assert_eq!(f["agent"], "security");
    assert_eq!(f["user"], "root");
    assert!(f["count"].as_i64().unwrap() >= 5);
    assert!(!f["evidence"].as_array().unwrap().is_empty());

    // 2. The hub dies; an attack happens meanwhile; the hub comes back.
    hub.kill();
    edge.append(&dropbear_attack("198.51.100.20", 8)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    hub.restart().unwrap();
    opmas_e2e::wait_for_bruteforce(&hub, &edge, "198.51.100.20", Duration::from_secs(15));

    // 3. The edge restarts; a third attack.
    edge.kill();
    edge.restart().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    edge.append(&dropbear_attack("192.0.2.30", 6)).unwrap();
    opmas_e2e::wait_for_bruteforce(&hub, &edge, "192.0.2.30", Duration::from_secs(10));

    // Give any resend a chance to show up as a duplicate before counting.
    std::thread::sleep(Duration::from_secs(1));
    for ip in ["203.0.113.10", "198.51.100.20", "192.0.2.30"] {
        assert_eq!(hub.bruteforces_from(ip), 1, "findings for {ip}:\n{}", hub.log());
    }
    // The restarted edge reports the third attack's 12 lines in a heartbeat.
    wait_for(Duration::from_secs(6), "a heartbeat counting the lines", || {
        let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
        (d["status"] == "online" && d["heartbeat"]["counters"]["lines"].as_u64()? >= 12).then_some(())
    })
    .unwrap();
}

#[test]
fn stopping_the_edge_marks_the_device_offline() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let device = hub.enrol("gw-e2e-2").unwrap();
    let mut edge = Edge::start(dir.path(), &hub, &device).unwrap();
    let status = |hub: &Hub| hub.get(&format!("/devices/{}", device.id)).ok().map(|(_, d)| d["status"].clone());
    wait_for(Duration::from_secs(10), "online", || (status(&hub)? == "online").then_some(())).unwrap();
    let exit = edge.proc.as_mut().unwrap().terminate().unwrap();
    assert!(exit.success(), "edge exit status {exit:?}");
    wait_for(Duration::from_secs(10), "offline", || (status(&hub)? == "offline").then_some(())).unwrap();
}
