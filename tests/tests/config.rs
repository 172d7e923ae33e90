//! Live configuration from the hub on a real edge: a threshold changed
//! through the API is in force within seconds, in the same process, and
//! judges the next attack; an invalid change is refused whole, naming every
//! bad field; a router that was away during a change gets it when it is back;
//! tags select layers between the fleet's and the device's; a broker
//! restart loses no change.

use std::time::{Duration, Instant};

use opmas_e2e::{dropbear_attack, wait_for, Edge, Hub};
use serde_json::{json, Value};

fn put(hub: &Hub, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .put(format!("http://{}/api/v1{path}", hub.http))
        .bearer_auth(&hub.token)
        .json(&body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn in_sync(hub: &Hub, device: &str, version: i64) {
    wait_for(Duration::from_secs(20), &format!("{device} running configuration {version}"), || {
        let (_, v) = hub.get(&format!("/devices/{device}/config")).ok()?;
        (v["sync"] == "in_sync" && v["running_version"] == version).then_some(())
    })
    .unwrap();
}

#[test]
fn a_threshold_changed_at_the_hub_judges_the_next_attack_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-cfg").unwrap();
    let mut edge = Edge::start(dir.path(), &hub, &d).unwrap();
    wait_for(Duration::from_secs(30), "gw-cfg online", || {
        hub.get("/devices/gw-cfg").ok().filter(|(_, v)| v["heartbeat"].is_object()).map(|_| ())
    })
    .unwrap();
    let (_, before) = hub.get("/devices/gw-cfg/config").unwrap();
    assert_eq!((before["sync"].as_str(), before["effective"]["version"].as_i64()), (Some("local"), Some(0)));
    let pid = edge.proc.as_ref().unwrap().pid();

    // Three failures are not a brute force by default (five are).
    edge.append(&dropbear_attack("198.51.100.1", 3)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(hub.findings("kind=ssh.bruteforce").unwrap().is_empty());

    let started = Instant::now();
    let (status, change) = put(&hub, "/agents/security/config", json!({ "params": { "ssh_failures": 3 } }));
    assert_eq!(status, 200, "{change}");
    assert_eq!(change["sent_to"], 1);
    let version = change["version"].as_i64().unwrap();
    in_sync(&hub, "gw-cfg", version);
    println!("configuration change in force on the edge after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(edge.proc.as_ref().unwrap().pid(), pid, "the same process");
    let (_, cfg) = hub.get("/devices/gw-cfg/config").unwrap();
    assert_eq!(
        cfg["effective"]["agents"]["security"]["params"]["ssh_failures"],
        json!({ "value": 3, "from": "fleet" })
    );
    edge.append(&dropbear_attack("198.51.100.2", 3)).unwrap();
    wait_for(Duration::from_secs(15), "the new threshold's finding", || {
        hub.findings("kind=ssh.bruteforce").ok().filter(|f| f.iter().any(|f| f["src_ip"] == "198.51.100.2"))
    })
    .unwrap();

    // Invalid: every bad field named, nothing changed.
    let (status, err) = put(&hub, "/agents/security/config", json!({ "params": { "ssh_failures": 0, "colour": 1 } }));
    assert_eq!(status, 422, "{err}");
    let paths: Vec<&str> = err["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["params.colour", "params.ssh_failures"], "{err}");
    let (status, err) = put(&hub, "/agents/security/config", json!({ "params": { "ssh_failures": "many" } }));
    assert_eq!((status, err["field"].as_str()), (422, Some("body")), "{err}");
    let (_, cfg) = hub.get("/devices/gw-cfg/config").unwrap();
    assert_eq!(cfg["effective"]["version"], version, "nothing changed");

    // Away during a change: it gets it when it is back.
    edge.kill();
    let (status, change) = put(&hub, "/devices/gw-cfg/agents/wifi/config", json!({ "enabled": false }));
    assert_eq!(status, 200, "{change}");
    let later = change["version"].as_i64().unwrap();
    edge.restart().unwrap();
    in_sync(&hub, "gw-cfg", later);
    let (_, dev) = hub.get("/devices/gw-cfg").unwrap();
    let wifi = dev["heartbeat"]["agents"].as_array().unwrap().iter().find(|a| a["name"] == "wifi").cloned().unwrap();
    assert_eq!(wifi["state"], "stopped");

    // The history, newest first, and going back.
    let (_, h) = hub.get("/config/history?scope=fleet&agent=security").unwrap();
    let first = h["changes"][0]["id"].as_i64().unwrap();
    assert_eq!(h["changes"][0]["after"]["params"]["ssh_failures"], 3);
    let (status, restored) = hub.post(&format!("/config/history/{first}/restore"), None).unwrap();
    assert_eq!(status, 200, "{restored}");

    // Tags select a layer between the fleet's and the device's own.
    let (status, err) = put(&hub, "/devices/gw-cfg/tags", json!({ "tags": ["Bad Tag", "lab", "lab"] }));
    assert_eq!(status, 422, "{err}");
    let paths: Vec<&str> = err["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["tags[0]", "tags[2]"], "{err}");
    let (status, _) = put(&hub, "/devices/gw-cfg/tags", json!({ "tags": ["lab"] }));
    assert_eq!(status, 200);
    let (status, change) = put(&hub, "/tags/lab/agents/security/config", json!({ "params": { "ssh_failures": 4 } }));
    assert_eq!((status, change["sent_to"].as_u64()), (200, Some(1)), "{change}");
    in_sync(&hub, "gw-cfg", change["version"].as_i64().unwrap());
    let (_, cfg) = hub.get("/devices/gw-cfg/config").unwrap();
    assert_eq!(
        cfg["effective"]["agents"]["security"]["params"]["ssh_failures"],
        json!({ "value": 4, "from": "tag:lab" })
    );
    let (_, tags) = hub.get("/devices/gw-cfg/tags").unwrap();
    assert_eq!(tags, json!({ "tags": ["lab"] }));
    let (status, v) = hub.post("/agents/network/stop?tag=lab", None).unwrap();
    assert_eq!(status, 202, "{v}");
    in_sync(&hub, "gw-cfg", v["config"]["version"].as_i64().unwrap());
    let (status, v) = hub.post("/agents/network/stop", None).unwrap();
    assert_eq!((status, v["field"].as_str()), (422, Some("tag")), "{v}");
}

#[test]
fn exclude_patterns_set_at_the_hub_make_the_agent_ignore_those_lines_on_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-ex").unwrap();
    let edge = Edge::start(dir.path(), &hub, &d).unwrap();
    wait_for(Duration::from_secs(30), "gw-ex online", || {
        hub.get("/devices/gw-ex").ok().filter(|(_, v)| v["heartbeat"].is_object()).map(|_| ())
    })
    .unwrap();

    // A pattern that does not compile is named with its index; nothing changes.
    let bad = json!({ "exclude_patterns": ["*from 10.*", "*[0-9"] });
    let (status, err) = put(&hub, "/devices/gw-ex/agents/security/config", bad);
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["fields"][0]["path"], "exclude_patterns[1]", "{err}");
    assert!(err["fields"][0]["reason"].as_str().unwrap().contains("never closed"), "{err}");

    // The operator's own jump host is never a brute force on this router.
    let (status, change) =
        put(&hub, "/devices/gw-ex/agents/security/config", json!({ "exclude_patterns": ["*from 203.0.113.50:*"] }));
    assert_eq!(status, 200, "{change}");
    in_sync(&hub, "gw-ex", change["version"].as_i64().unwrap());
    let (_, cfg) = hub.get("/devices/gw-ex/config").unwrap();
    assert_eq!(
        cfg["effective"]["agents"]["security"]["exclude_patterns"],
        json!({ "value": ["*from 203.0.113.50:*"], "from": "device" })
    );
    edge.append(&dropbear_attack("203.0.113.50", 8)).unwrap();
    edge.append(&dropbear_attack("203.0.113.51", 8)).unwrap();
    wait_for(Duration::from_secs(20), "the other address's finding", || {
        hub.findings("kind=ssh.bruteforce&device=gw-ex").ok().filter(|f| !f.is_empty())
    })
    .unwrap();
    let excluded = wait_for(Duration::from_secs(10), "the excluded lines counted", || {
        let (_, v) = hub.get("/devices/gw-ex/agents").ok()?;
        let a = v["agents"].as_array()?.iter().find(|a| a["name"] == "security")?.clone();
        (a["excluded"].as_i64()? >= 8).then_some(a)
    })
    .unwrap();
    assert_eq!(excluded["state"], "running");
    let found = hub.findings("kind=ssh.bruteforce&device=gw-ex").unwrap();
    assert!(found.iter().all(|f| f["src_ip"] == "203.0.113.51"), "{found:?}");
}

/// The embedded broker keeps retained messages and session queues in memory
/// only, so a restart of the hub is a restart of the broker that forgets
/// them. Delivery does not rest on them: the hub compares every heartbeat's
/// version with the database's and sends again.
#[test]
fn a_change_survives_a_broker_restart_and_changes_after_one_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-brk").unwrap();
    let mut edge = Edge::start(dir.path(), &hub, &d).unwrap();
    let change = |hub: &Hub, n: i64| {
        let (status, c) = put(hub, "/agents/security/config", json!({ "params": { "ssh_failures": n } }));
        assert_eq!(status, 200, "{c}");
        c["version"].as_i64().unwrap()
    };
    let v = change(&hub, 7);
    in_sync(&hub, "gw-brk", v);

    // Missed while away, and the broker that held it restarted meanwhile.
    edge.kill();
    let missed = change(&hub, 4);
    hub.kill();
    hub.restart().unwrap();
    edge.restart().unwrap();
    in_sync(&hub, "gw-brk", missed);

    // The broker restarts under a running edge: it reconnects and
    // resubscribes, and the next change reaches it live, in the same process.
    let pid = edge.proc.as_ref().unwrap().pid();
    hub.kill();
    hub.restart().unwrap();
    wait_for(Duration::from_secs(30), "gw-brk back online", || {
        hub.get("/devices/gw-brk").ok().filter(|(_, v)| v["status"] == "online").map(|_| ())
    })
    .unwrap();
    let live = change(&hub, 3);
    in_sync(&hub, "gw-brk", live);
    assert_eq!(edge.proc.as_ref().unwrap().pid(), pid, "the same process");
    edge.append(&dropbear_attack("198.51.100.9", 3)).unwrap();
    wait_for(Duration::from_secs(15), "a finding judged by the last threshold", || {
        hub.findings("kind=ssh.bruteforce").ok().filter(|f| f.iter().any(|f| f["src_ip"] == "198.51.100.9"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));
}
