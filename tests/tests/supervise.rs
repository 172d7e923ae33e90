//! The edge's supervisor and the hub's view of it, with real processes: an
//! agent that fails (a panic injected by a log line, in the test build's
//! `fault-injection` feature) is restarted by policy in the same process
//! while the other agents run on; the hub turns that into an
//! `agent.restarted` finding of its `lifecycle` agent; an agent that keeps
//! failing is given up on (`agent.failed`, open) until an operator restarts
//! it. A device that stops heartbeating goes `stale` in its timeline.

use std::time::Duration;

use opmas_e2e::{dropbear_attack, now_logread, wait_for, Edge, Hub};
use serde_json::Value;

fn agent(hub: &Hub, device: &str, name: &str) -> Value {
    let (status, v) = hub.get(&format!("/devices/{device}/agents")).unwrap();
    assert_eq!(status, 200, "{v}");
    v["agents"].as_array().unwrap().iter().find(|a| a["name"] == name).cloned().unwrap()
}

fn fault(agent: &str) -> Vec<String> {
    let now = now_logread();
    vec![format!(
        "{now} authpriv.warn dropbear[77]: Bad password attempt for 'opmas-fault:{agent}' from 198.51.100.7:4000"
    )]
}

/// Waits until the device's `name` agent is `state` with `restarts` restarts.
fn wait_agent(hub: &Hub, edge: &Edge, name: &str, state: &str, restarts: i64) -> Value {
    wait_for(Duration::from_secs(20), &format!("{name} {state} after {restarts} restarts"), || {
        let a = agent(hub, "gw-s", name);
        (a["state"] == state && a["restarts"] == restarts).then_some(a)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()))
}

#[test]
fn a_failing_agent_is_restarted_by_policy_then_given_up_and_the_hub_tells() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let dev = hub.enrol("gw-s").unwrap();
    // Two restarts in a row, then given up; backoff of 1 s at most.
    let opts = "\toption agent_restarts '2'\n\toption agent_backoff_max '1'\n";
    let edge = Edge::start_opts(dir.path(), &hub, &dev, opts).unwrap();
    let pid = edge.proc.as_ref().unwrap().pid();
    let a = wait_agent(&hub, &edge, "security", "running", 0);
    assert_eq!((a["desired"].as_str(), a["last_error"].as_null()), (Some("running"), Some(())), "{a}");

    edge.append(&fault("security")).unwrap();
    let a = wait_agent(&hub, &edge, "security", "running", 1);
    assert!(a["last_error"].as_str().unwrap().contains("injected fault"), "{a}");
    assert_eq!(agent(&hub, "gw-s", "wifi")["state"], "running", "the others ran on");
    let restarted = wait_for(Duration::from_secs(10), "an agent.restarted finding", || {
        hub.findings("kind=agent.restarted&device=gw-s").ok().filter(|f| !f.is_empty())
    })
    .unwrap();
    assert_eq!(restarted[0]["agent"], "lifecycle");
    assert_eq!(restarted[0]["service"], "security", "{}", restarted[0]);
    assert!(restarted[0]["summary"].as_str().unwrap().contains("restarted by policy"), "{}", restarted[0]);
    assert!(edge.log().contains("agent restarted by policy"), "{}", edge.log());

    // The rebuilt agent judges the next attack.
    edge.append(&dropbear_attack("203.0.113.40", 8)).unwrap();
    wait_for(Duration::from_secs(20), "a brute force found by the restarted agent", || {
        hub.findings("kind=ssh.bruteforce&device=gw-s").ok().filter(|f| !f.is_empty())
    })
    .unwrap();

    // Failing again and again: restarted once more, then given up on.
    edge.append(&fault("security")).unwrap();
    wait_agent(&hub, &edge, "security", "running", 2);
    edge.append(&fault("security")).unwrap();
    let a = wait_agent(&hub, &edge, "security", "failed", 2);
    assert_eq!(a["desired"], "running", "still wanted: the hub shows the difference");
    let failed = wait_for(Duration::from_secs(10), "an open agent.failed finding", || {
        hub.findings("kind=agent.failed&device=gw-s").ok().filter(|f| !f.is_empty())
    })
    .unwrap();
    assert_eq!(failed[0]["open"], true, "{}", failed[0]);
    assert_eq!(hub.findings("kind=agent.restarted&device=gw-s").unwrap().len(), 2, "one per restart, no more");
    assert_eq!(edge.proc.as_ref().unwrap().pid(), pid, "all in the same process");

    // An operator's restart brings it back and closes the failure.
    let (status, v) = hub.post("/devices/gw-s/agents/security/restart", None).unwrap();
    assert_eq!(status, 202, "{v}");
    wait_agent(&hub, &edge, "security", "running", 2);
    wait_for(Duration::from_secs(10), "agent.failed closed", || {
        let f = hub.findings("kind=agent.failed&device=gw-s").ok()?;
        (f[0]["open"] == false).then_some(())
    })
    .unwrap();
}

#[test]
fn a_device_that_stops_heartbeating_goes_stale_then_online_in_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let dev = hub.enrol("gw-s").unwrap();
    let edge = Edge::start(dir.path(), &hub, &dev).unwrap();
    wait_agent(&hub, &edge, "security", "running", 0);
    let pid = edge.proc.as_ref().unwrap().pid().to_string();
    // Frozen, not gone: the connection stays up (keepalive 30 s), the
    // heartbeats (every 2 s) stop.
    let signal = |s: &str| assert!(std::process::Command::new("kill").args([s, &pid]).status().unwrap().success());
    signal("-STOP");
    let stale = wait_for(Duration::from_secs(20), "gw-s stale", || {
        hub.get("/devices/gw-s").ok().filter(|(_, v)| v["status"] == "stale").map(|(_, v)| v)
    });
    signal("-CONT");
    stale.unwrap();
    wait_for(Duration::from_secs(20), "gw-s online again", || {
        hub.get("/devices/gw-s").ok().filter(|(_, v)| v["status"] == "online").map(|_| ())
    })
    .unwrap();
    let (_, v) = hub.get("/devices/gw-s/presence").unwrap();
    let timeline: Vec<&str> = v["changes"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(timeline, ["online", "stale", "online"], "newest first: {v}");
    assert!(hub.findings("kind=device.offline&device=gw-s").unwrap().is_empty(), "stale is not offline");
}
