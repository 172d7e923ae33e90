//! Actions on real routers: real edges in network namespaces with their own
//! nftables, a real dropbear whose log they follow, and an attacker in a
//! namespace of its own running a real SSH client (`dbclient`) and TCP
//! connects. Whether the attacker is blocked is whether its packets get
//! through, nothing else.

use std::ffi::OsString;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opmas_e2e::netns::{Lab, Router};
use opmas_e2e::{free_addr, wait_for, Device, Edge, Hub, Proc};
use serde_json::json;

const SSH_PORT: u16 = 2222;

/// A real dropbear on `r`, logging to stderr into `log` (which the edge
/// follows), password logins only.
fn dropbear(dir: &Path, r: &Router, log: &Path) -> Proc {
    let key = dir.join(format!("{}.key", r.ns));
    let made = Command::new("dropbearkey").args(["-t", "ed25519", "-f"]).arg(&key).output().expect("dropbearkey");
    assert!(made.status.success(), "dropbearkey: {}", String::from_utf8_lossy(&made.stderr));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &r.ns, "dropbear", "-F", "-E", "-r"]).arg(&key);
    cmd.arg("-p").arg(format!("{}:{SSH_PORT}", r.addr));
    Proc::spawn(cmd, log.to_path_buf()).expect("dropbear starts")
}

/// The attacker guesses root's password on `r` with a real SSH client
/// (cut off after 10 s: once the router drops its packets, the client
/// would wait for TCP to give up).
fn brute_force(lab: &Lab, r: &Router) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.attacker, "timeout", "10", "dbclient", "-y", "-p", &SSH_PORT.to_string()])
        .arg(format!("root@{}", r.addr))
        .arg("true")
        .env("DROPBEAR_PASSWORD", "not-the-password")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("dbclient");
    assert!(!out.status.success(), "the guess cannot succeed");
}

fn ssh(r: &Router) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(r.addr, SSH_PORT))
}

fn edge(dir: &Path, d: &Device, r: &Router, mqtt_port: u16, log: &Path, response: &str) -> Edge {
    let sections = format!("config source\n\toption type 'file'\n\toption path '{}'\n{response}", log.display());
    let url = format!("mqtt://{}:{mqtt_port}", r.hub_side);
    Edge::start_in_netns(dir, d, &r.ns, &url, &sections, log.to_path_buf()).unwrap()
}

fn set_elements(r: &Router) -> String {
    Lab::nft(&r.ns, &["list", "set", "inet", "fw4", "opmas_block4"]).unwrap_or_default()
}

#[test]
fn a_brute_force_is_dropped_at_once_by_its_router_even_cut_off_and_blocked_fleet_wide_through_the_hub() {
    if !Lab::usable() {
        return;
    }
    for tool in ["dropbear", "dbclient", "dropbearkey"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
        assert!(found, "{tool} not found (apt-get install dropbear-bin)");
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(2).unwrap();
    let (r0, r1) = (&lab.routers[0], &lab.routers[1]);
    let port = free_addr().port();
    let listen: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let mut hub = Hub::start_on(dir.path(), listen, Vec::<OsString>::new(), Vec::new()).unwrap();
    let d0 = hub.enrol("gw-0").unwrap();
    let d1 = hub.enrol("gw-1").unwrap();
    // The routers start while the hub is out of reach.
    hub.kill();

    let (log0, log1) = (dir.path().join("dropbear-0.log"), dir.path().join("dropbear-1.log"));
    let _db0 = dropbear(dir.path(), r0, &log0);
    let _db1 = dropbear(dir.path(), r1, &log1);
    let local = "config response 'response'\n\toption local_block '1'\n\toption local_block_for '600'\n";
    let e0 = edge(dir.path(), &d0, r0, port, &log0, local);
    let e1 = edge(dir.path(), &d1, r1, port, &log1, "");
    wait_for(Duration::from_secs(10), "the attacker reaches both routers", || {
        (lab.attacker_connects(ssh(r0), Duration::from_secs(1))
            && lab.attacker_connects(ssh(r1), Duration::from_secs(1)))
        .then_some(())
    })
    .unwrap();

    // gw-0, cut off from the hub, blocks the brute force itself.
    brute_force(&lab, r0);
    wait_for(Duration::from_secs(15), "gw-0 drops the attacker", || {
        (!lab.attacker_connects(ssh(r0), Duration::from_secs(1))).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", e0.log(), std::fs::read_to_string(&log0).unwrap_or_default()));
    assert!(set_elements(r0).contains(&r0.attacker.to_string()), "{}", set_elements(r0));
    assert!(lab.attacker_connects(ssh(r1), Duration::from_secs(2)), "gw-1 has not blocked anything");

    // The hub is back: gw-0 reports what it did.
    hub.restart().unwrap();
    let reported = wait_for(Duration::from_secs(30), "the local block reported", || {
        hub.findings("kind=response.ip_blocked").ok().filter(|f| !f.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", e0.log()));
    assert_eq!(reported[0]["device_id"], "gw-0");
    assert_eq!(reported[0]["agent"], "response");
    assert_eq!(reported[0]["src_ip"], r0.attacker.to_string());

    // An operator blocks the address on every router through the hub.
    let attacker = r1.attacker.to_string();
    let body = json!({ "action": "block_ip", "params": { "net": attacker, "timeout_s": 600 },
        "targets": { "all": true }, "comment": "seen brute-forcing gw-0" });
    let (status, action) = hub.request("POST", "/actions", None, Some(&body)).unwrap();
    assert_eq!(status, 202, "{action}");
    let id = action["id"].as_i64().unwrap();
    wait_for(Duration::from_secs(20), "gw-1 drops the attacker", || {
        (!lab.attacker_connects(ssh(r1), Duration::from_secs(1))).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", e1.log()));
    let done = wait_for(Duration::from_secs(20), "both routers answer", || {
        let (_, a) = hub.get(&format!("/actions/{id}")).ok()?;
        let states: Vec<String> =
            a["commands"].as_array()?.iter().map(|c| c["state"].as_str().unwrap_or("").to_owned()).collect();
        (states.len() == 2 && states.iter().all(|s| s != "pending")).then_some(a)
    })
    .unwrap();
    for c in done["commands"].as_array().unwrap() {
        assert_eq!(c["state"], "done", "{done}");
        assert!(c["message"].as_str().unwrap().starts_with(&format!("blocked {attacker} for ")), "{c}");
    }

    // fw4 rebuilds its table (fw4 restart deletes it, fw4 reload flushes
    // it): the ban comes back within seconds, with the time it had left.
    Lab::nft(&r1.ns, &["delete", "table", "inet", "fw4"]).unwrap();
    Lab::nft(&r1.ns, &["add", "table", "inet", "fw4"]).unwrap();
    Lab::nft(&r0.ns, &["flush", "table", "inet", "fw4"]).unwrap();
    wait_for(Duration::from_secs(15), "the bans re-applied after the rebuild", || {
        let back = set_elements(r1).contains(&attacker)
            && Lab::nft(&r0.ns, &["list", "chain", "inet", "fw4", "opmas_drop"]).ok()?.contains("@opmas_block4");
        back.then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", e1.log()));
    assert!(!lab.attacker_connects(ssh(r1), Duration::from_secs(2)), "dropped again on gw-1");
    assert!(!lab.attacker_connects(ssh(r0), Duration::from_secs(2)), "dropped again on gw-0");

    // Undo: the address passes on both routers again.
    let (status, undo) = hub.request("POST", &format!("/actions/{id}/undo"), None, None).unwrap();
    assert_eq!(status, 202, "{undo}");
    assert_eq!(undo["undo_of"], id);
    wait_for(Duration::from_secs(20), "the attacker passes again", || {
        (lab.attacker_connects(ssh(r0), Duration::from_secs(1))
            && lab.attacker_connects(ssh(r1), Duration::from_secs(1)))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", e0.log(), e1.log()));
    let (_, log) = hub.get("/actions").unwrap();
    assert_eq!(log["actions"].as_array().unwrap().len(), 2, "the block and its undo, in the audit log");
}

#[test]
fn actions_are_checked_whole_and_only_operators_may_ask() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    hub.enrol("gw-a").unwrap();
    let bad = json!({ "action": "block_ip", "params": { "net": "10.0.0.0/8", "timeout_s": 0 },
        "targets": { "devices": ["gw-a", "gw-nope"] }, "ttl_s": 0 });
    let (status, body) = hub.request("POST", "/actions", None, Some(&bad)).unwrap();
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    for needle in
        ["params", "timeout_s must be 1 to 604800", "targets.devices[1]", "no device \\\"gw-nope\\\"", "ttl_s"]
    {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    let (status, body) = hub
        .request(
            "POST",
            "/actions",
            None,
            Some(&json!({ "action": "shell", "params": {}, "targets": { "all": true } })),
        )
        .unwrap();
    assert_eq!(status, 422);
    assert!(body.to_string().contains("unknown action \\\"shell\\\""), "{body}");
    assert!(hub.get("/actions").unwrap().1["actions"].as_array().unwrap().is_empty(), "nothing stored");

    // A viewer reads the audit log and may not act.
    let token = hub.user_token("vera", "viewer").unwrap();
    let ok = json!({ "action": "wifi_reload", "targets": { "all": true } });
    let (status, _) = hub.request("POST", "/actions", Some(&token), Some(&ok)).unwrap();
    assert_eq!(status, 403);
    let (status, _) = hub.request("GET", "/actions", Some(&token), None).unwrap();
    assert_eq!(status, 200);
}
