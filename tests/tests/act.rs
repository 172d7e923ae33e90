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

mod support;
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
    let by_people = log["actions"].as_array().unwrap().iter().filter(|a| a["playbook"].is_null()).count();
    assert_eq!(by_people, 2, "the block and its undo, in the audit log: {log}");
    // The shipped playbook saw the brute force too, and left the private
    // address alone, saying why.
    let shipped = log["actions"].as_array().unwrap().iter().find(|a| a["playbook"] == "block-bruteforce").cloned();
    let shipped = shipped.unwrap_or_else(|| panic!("{log}"));
    assert_eq!(shipped["state"], "skipped");
    assert!(shipped["reason"].as_str().unwrap().contains("never-block list (172.16.0.0/12)"), "{shipped}");

    // The hub switches the local response on for gw-1, whose UCI leaves it
    // off; cut off from the hub again, gw-1 now blocks by itself too.
    let body = json!({ "local_block": true, "local_block_for": 600 });
    let (status, change) = hub.request("PUT", "/devices/gw-1/agents/security/config", None, Some(&body)).unwrap();
    assert_eq!(status, 200, "{change}");
    let version = change["version"].as_i64().unwrap();
    let (_, cfg) = hub.get("/devices/gw-1/config").unwrap();
    assert_eq!(cfg["effective"]["agents"]["security"]["local_block"]["from"], "device", "{cfg}");
    wait_for(Duration::from_secs(20), "gw-1 runs the hub's local response", || {
        let (_, v) = hub.get("/devices/gw-1/config").ok()?;
        (v["running_version"] == version).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", e1.log()));
    hub.kill();
    brute_force(&lab, r1);
    wait_for(Duration::from_secs(15), "gw-1 drops the attacker by itself", || {
        (!lab.attacker_connects(ssh(r1), Duration::from_secs(1))).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", e1.log()));
    // For the hub's 10 minutes, not the router's default hour.
    let e = set_elements(r1);
    assert!(e.contains("timeout 10m") || e.contains("timeout 9m"), "{e}");
    hub.restart().unwrap();
    wait_for(Duration::from_secs(30), "gw-1's local block reported", || {
        let f = hub.findings("kind=response.ip_blocked&device=gw-1").ok()?;
        f.iter().any(|f| f["src_ip"] == attacker.as_str()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", e1.log()));
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

    // gw-a never connected: its command waits, until an operator cancels it.
    let (status, sent) = hub.request("POST", "/actions", None, Some(&ok)).unwrap();
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["commands"][0]["state"], "pending");
    let cancel = format!("/actions/{}/cancel", sent["id"]);
    let (status, _) = hub.request("POST", &cancel, Some(&token), None).unwrap();
    assert_eq!(status, 403, "a viewer may not cancel");
    let (status, cancelled) = hub.request("POST", &cancel, None, None).unwrap();
    assert_eq!(status, 200, "{cancelled}");
    let command = &cancelled["commands"][0];
    assert_eq!(command["state"], "expired", "{cancelled}");
    assert!(command["message"].as_str().unwrap().starts_with("cancelled by "), "{command}");
    let (status, again) = hub.request("POST", &cancel, None, None).unwrap();
    assert_eq!(status, 409);
    assert!(again.to_string().contains("nothing is left to cancel"), "{again}");
}

/// A lab of `n` routers with dropbear, an edge each (no local response),
/// and a hub they are connected to.
struct Fleet {
    lab: Lab,
    hub: Hub,
    edges: Vec<Edge>,
    _dropbears: Vec<Proc>,
    _dir: tempfile::TempDir,
}

fn fleet(n: usize) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(n).unwrap();
    let port = free_addr().port();
    let listen: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let hub = Hub::start_on(dir.path(), listen, Vec::<OsString>::new(), Vec::new()).unwrap();
    let mut edges = Vec::new();
    let mut dropbears = Vec::new();
    for (i, r) in lab.routers.iter().enumerate() {
        let d = hub.enrol(&format!("gw-{i}")).unwrap();
        let log = dir.path().join(format!("dropbear-{i}.log"));
        dropbears.push(dropbear(dir.path(), r, &log));
        edges.push(edge(dir.path(), &d, r, port, &log, ""));
    }
    wait_for(Duration::from_secs(30), "every router online", || {
        let (_, v) = hub.get("/devices").ok()?;
        let online = v["devices"].as_array()?.iter().filter(|d| d["status"] == "online").count();
        (online == n).then_some(())
    })
    .unwrap();
    Fleet { lab, hub, edges, _dropbears: dropbears, _dir: dir }
}

fn put_playbook(hub: &Hub, spec: serde_json::Value) {
    let name = spec["name"].as_str().unwrap().to_owned();
    let (status, body) = hub.request("PUT", &format!("/playbooks/{name}"), None, Some(&spec)).unwrap();
    assert!(status == 200 || status == 201, "{status} {body}");
}

/// The actions of playbook `name`, newest first.
fn actions_of(hub: &Hub, name: &str) -> Vec<serde_json::Value> {
    let (_, v) = hub.get("/actions").unwrap();
    v["actions"].as_array().unwrap().iter().filter(|a| a["playbook"] == name).cloned().collect()
}

fn reaches(f: &Fleet, i: usize) -> bool {
    f.lab.attacker_connects(ssh(&f.lab.routers[i]), Duration::from_secs(1))
}

#[test]
fn a_playbook_blocks_the_brute_forcer_on_every_router_spares_a_protected_address_and_takes_the_block_back() {
    if !Lab::usable() {
        return;
    }
    let f = fleet(2);
    let attacker = f.lab.routers[0].attacker.to_string();
    let playbook = |never: &str, undo: &str| {
        json!({ "name": "fleet-block", "mode": "auto",
            "trigger": { "finding": { "kind": "ssh.bruteforce" } },
            "conditions": { "never_block": [never] },
            "steps": [{ "action": "block_ip", "params": { "net": "{{ src_ip }}", "timeout_s": 600 }, "targets": "all" }],
            "undo_after": undo })
    };
    // The attacker's address is protected: the playbook matches, records
    // why it did not act, and nothing is blocked.
    put_playbook(&f.hub, playbook(&format!("{attacker}/32"), "20s"));
    brute_force(&f.lab, &f.lab.routers[1]);
    let skipped = wait_for(Duration::from_secs(20), "the skipped decision", || {
        actions_of(&f.hub, "fleet-block").into_iter().find(|a| a["state"] == "skipped")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", f.hub.log()));
    assert_eq!(skipped["reason"], format!("{attacker} is on the never-block list ({attacker})"));
    assert!(skipped["commands"].as_array().unwrap().is_empty());
    assert!(reaches(&f, 0) && reaches(&f, 1), "nothing blocked");

    // Unprotected: the brute force on gw-0 blocks the address on both.
    put_playbook(&f.hub, playbook("192.0.2.0/24", "20s"));
    brute_force(&f.lab, &f.lab.routers[0]);
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(20), "both routers drop the attacker", || {
        (!reaches(&f, 0) && !reaches(&f, 1)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", f.hub.log(), f.edges[1].log()));
    let sent = actions_of(&f.hub, "fleet-block").into_iter().find(|a| a["state"] == "sent").unwrap();
    assert_eq!(sent["created_by"], "playbook:fleet-block");
    assert!(sent["finding_id"].as_i64().is_some(), "{sent}");
    assert_eq!(sent["devices"], json!(["gw-0", "gw-1"]));
    // From the finding stored to the last router's answer (its element is
    // in its set by then), by the hub's clock.
    let (_, finding) = f.hub.get(&format!("/findings/{}", sent["finding_id"])).unwrap();
    let answered = wait_for(Duration::from_secs(10), "both answers", || {
        let (_, a) = f.hub.get(&format!("/actions/{}", sent["id"])).ok()?;
        let times: Vec<i64> = a["commands"].as_array()?.iter().filter_map(|c| c["answered_ms"].as_i64()).collect();
        (times.len() == 2).then(|| times.into_iter().max().unwrap_or_default())
    })
    .unwrap();
    eprintln!(
        "finding stored to blocked on both routers: {} ms (the attack began {:?} before the test saw both drop it)",
        answered - finding["received_ms"].as_i64().unwrap(),
        started.elapsed()
    );

    // undo_after: the hub takes the block back by itself.
    let undo = wait_for(Duration::from_secs(40), "the auto-undo", || {
        let (_, v) = f.hub.get("/actions").ok()?;
        v["actions"].as_array()?.iter().find(|a| a["undo_of"] == sent["id"]).cloned()
    })
    .unwrap();
    assert_eq!(undo["created_by"], "playbook:fleet-block");
    wait_for(Duration::from_secs(20), "the attacker passes again", || (reaches(&f, 0) && reaches(&f, 1)).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", f.edges[0].log()));
}

/// The playbook `ask-first` (approval mode, block the brute-forcer on the
/// router that saw it), a brute force on router 0, and the id of the
/// decision it then waits with.
fn awaiting_block(f: &Fleet) -> i64 {
    put_playbook(
        &f.hub,
        json!({ "name": "ask-first", "mode": "approval", "description": "Block a brute-forcer here, once approved",
            "trigger": { "finding": { "kind": "ssh.bruteforce" } },
            "steps": [{ "action": "block_ip", "params": { "net": "{{ src_ip }}", "timeout_s": 600 }, "targets": "reporting" }] }),
    );
    brute_force(&f.lab, &f.lab.routers[0]);
    let waiting = wait_for(Duration::from_secs(20), "the decision awaiting approval", || {
        actions_of(&f.hub, "ask-first").into_iter().find(|a| a["state"] == "awaiting_approval")
    })
    .unwrap();
    waiting["id"].as_i64().unwrap()
}

#[test]
fn a_playbook_that_asks_for_approval_waits_for_an_operator_and_a_viewer_cannot_approve() {
    if !Lab::usable() {
        return;
    }
    let f = fleet(1);
    let id = awaiting_block(&f);
    std::thread::sleep(Duration::from_secs(2));
    assert!(reaches(&f, 0), "nothing happens before someone approves");
    let viewer = f.hub.user_token("vic", "viewer").unwrap();
    let (status, _) = f.hub.request("POST", &format!("/actions/{id}/approve"), Some(&viewer), None).unwrap();
    assert_eq!(status, 403);
    let (status, body) = f.hub.request("POST", &format!("/actions/{id}/approve"), None, None).unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decided_by"], "admin");
    wait_for(Duration::from_secs(20), "the router drops the attacker", || (!reaches(&f, 0)).then_some(())).unwrap();
    let (status, _) = f.hub.request("POST", &format!("/actions/{id}/approve"), None, None).unwrap();
    assert_eq!(status, 409, "approved once");
}

/// The approval in a real browser: a playbook that asks first, a brute
/// force, and an operator who finds the decision on the actions page and
/// clicks Approve; then the router drops the attacker. Screenshots
/// `actions-*`.
#[test]
fn an_operator_approves_a_block_in_the_browser_and_the_router_drops_the_attacker() {
    if !Lab::usable() {
        return;
    }
    use support::browser::*;
    let f = fleet(1);
    let id = awaiting_block(&f);
    let password = std::fs::read_to_string(f.hub.data_dir.join("admin.password")).unwrap().trim().to_owned();
    let base = format!("http://{}", f.hub.http);
    let (_driver, driver_addr) = chromedriver(f._dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser(driver_addr).await;
        sign_in(&c, &base, "admin", &password).await;
        click_away(&c, "header nav a[href='/actions']").await;
        assert_eq!(text(&c, "h1").await, "Actions");
        let row = text(&c, &format!("tr[data-action='{id}']")).await;
        for want in ["playbook:ask-first", "block", "for 600 s", "awaiting approval", "gw-0", "finding"] {
            assert!(row.contains(want), "the row shows {want}: {row}");
        }
        shoot(&c, "actions-awaiting", false).await;
        click_away(&c, &format!("tr[data-action='{id}'] button[data-verb=approve]")).await;
        assert!(text(&c, "#done").await.contains(&format!("Approved action {id}: sent to 1 router(s).")));
        let answered = async {
            for _ in 0..40 {
                c.goto(&format!("{base}/actions")).await.unwrap();
                let row = text(&c, &format!("tr[data-action='{id}']")).await;
                if row.contains("done") {
                    return row;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            panic!("the router never answered");
        };
        let row = answered.await;
        assert!(row.contains("decided by admin"), "{row}");
        shoot(&c, "actions-approved", false).await;
        c.goto(&format!("{base}/playbooks")).await.unwrap();
        assert!(text(&c, "tr[data-playbook='ask-first']").await.contains("approval"));
        shoot(&c, "actions-playbooks", false).await;

        // The administrator switches it to dry run in the editor; a typo is
        // named by its path and the text stays as typed.
        click_away(&c, "tr[data-playbook='ask-first'] a[href='/playbooks/ask-first']").await;
        let area = c.find(fantoccini::Locator::Css("#yaml")).await.unwrap();
        let yaml = area.prop("value").await.unwrap().unwrap_or_default();
        assert!(yaml.contains("mode: approval"), "{yaml}");
        area.clear().await.unwrap();
        area.send_keys(&yaml.replace("mode: approval", "mode: dryrun")).await.unwrap();
        click_away(&c, "#save").await;
        assert!(text(&c, "#errors").await.contains("dryrun"), "{}", text(&c, "#errors").await);
        shoot(&c, "playbook-editor-mistake", false).await;
        let area = c.find(fantoccini::Locator::Css("#yaml")).await.unwrap();
        area.clear().await.unwrap();
        area.send_keys(&yaml.replace("mode: approval", "mode: dry_run")).await.unwrap();
        click_away(&c, "#save").await;
        assert!(text(&c, "#saved").await.contains("ask-first"));
        assert!(text(&c, "tr[data-playbook='ask-first']").await.contains("dry run"));
    });
    let (_, p) = f.hub.get("/playbooks/ask-first").unwrap();
    assert_eq!((p["spec"]["mode"].as_str(), p["updated_by"].as_str()), (Some("dry_run"), Some("admin")), "{p}");
    assert!(!reaches(&f, 0), "the approved block drops the attacker");
}

/// Five failed logins from `ip` as dropbear writes them to stderr, now.
fn dropbear_stderr_attack(ip: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (h, m, s) = ((now / 3600) % 24, (now / 60) % 60, now % 60);
    // The month and day do not matter to the agents, only the clock.
    (0..5)
        .map(|i| {
            format!("[4242] Dec 07 {h:02}:{m:02}:{s:02} Bad password attempt for 'root' from {ip}:{}\n", 40000 + i)
        })
        .collect()
}

/// Fleet-wide response time with ROUTERS (default 100) real edges, each in
/// its own namespace with its own nftables: an address brute-forces one
/// router, an `auto` playbook blocks it on all, and the time from the
/// finding stored to the last router's answer (sent after its nft
/// transaction) is measured, ROUNDS (default 20) times. Run by
/// `scripts/bench-act.sh`; prints p50, p99 and max.
#[test]
#[ignore = "a benchmark: scripts/bench-act.sh"]
fn fleet_wide_block_latency() {
    if !Lab::usable() {
        return;
    }
    let n: usize = std::env::var("ROUTERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let started = std::time::Instant::now();
    let f = fleet(n);
    eprintln!("{n} routers online in {:?}", started.elapsed());
    put_playbook(
        &f.hub,
        json!({ "name": "fleet-block", "mode": "auto", "trigger": { "finding": { "kind": "ssh.bruteforce" } },
            "steps": [{ "action": "block_ip", "params": { "net": "{{ src_ip }}", "timeout_s": 600 }, "targets": "all" }] }),
    );
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let ip = format!("198.51.100.{}", round + 1);
        let log = f._dir.path().join(format!("dropbear-{}.log", round % n));
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut file, dropbear_stderr_attack(&ip).as_bytes()).unwrap();
        let action = wait_for(Duration::from_secs(60), "the fleet-wide block answered by every router", || {
            let (_, v) = f.hub.get("/actions?state=sent").ok()?;
            let a = v["actions"].as_array()?.iter().find(|a| a["action"]["BlockIp"]["net"] == ip.as_str())?.clone();
            let (_, full) = f.hub.get(&format!("/actions/{}", a["id"])).ok()?;
            let cmds = full["commands"].as_array()?;
            (cmds.len() == n && cmds.iter().all(|c| c["state"] != "pending")).then_some(full)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", f.hub.log()));
        let cmds = action["commands"].as_array().unwrap();
        assert!(cmds.iter().all(|c| c["state"] == "done"), "{action}");
        let last = cmds.iter().filter_map(|c| c["answered_ms"].as_i64()).max().unwrap();
        let (_, finding) = f.hub.get(&format!("/findings/{}", action["finding_id"])).unwrap();
        let ms = last - finding["received_ms"].as_i64().unwrap();
        eprintln!("round {round}: {ip} blocked on {n} routers {ms} ms after the finding was stored");
        latencies.push(ms);
    }
    let last = &f.lab.routers[n - 1];
    assert!(set_elements(last).contains(&format!("198.51.100.{rounds}")), "{}", set_elements(last));
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "fleet-wide block, {n} routers, {rounds} rounds: p50 {} ms, p99 {} ms, max {} ms (finding stored to the last router's answer)",
        pick(0.5),
        pick(0.99),
        latencies.last().unwrap()
    );
}

/// A real dropbear as all `r` runs (no OPMAS agent), listening on every
/// address at port 22 with `key` as its host key, public-key logins only.
/// Root's home is `home` (bind-mounted over /root in a mount namespace of
/// dropbear's own, so the test's machine keeps its own /root).
fn dropbear_alone(r: &Router, key: &Path, home: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &r.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c"]);
    cmd.arg(r#"mount --bind "$1" /root && exec dropbear -F -E -s -p 22 -r "$2""#).arg("sh").arg(home).arg(key);
    let p = Proc::spawn(cmd, log.to_path_buf()).expect("dropbear starts");
    let addr = SocketAddr::V4(SocketAddrV4::new(r.up, 22));
    wait_for(Duration::from_secs(10), "dropbear listens", || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(log).unwrap_or_default()));
    p
}

/// A new ed25519 host key at `path` (replacing one there); its fingerprint.
fn host_key(path: &Path) -> String {
    let _ = std::fs::remove_file(path);
    let made = Command::new("dropbearkey").args(["-t", "ed25519", "-f"]).arg(path).output().expect("dropbearkey");
    assert!(made.status.success(), "dropbearkey: {}", String::from_utf8_lossy(&made.stderr));
    let text = String::from_utf8_lossy(&made.stdout).into_owned();
    let line = text.lines().find_map(|l| l.strip_prefix("Fingerprint: ")).unwrap_or_else(|| panic!("{text}"));
    line.trim().to_owned()
}

fn hub_cli(hub: &Hub, args: &[&str]) -> std::process::Output {
    Command::new(opmas_e2e::bin("opmas-hub")).args(args).arg("--data-dir").arg(&hub.data_dir).output().unwrap()
}

/// Posts a block of the attacker on `device`; waits for its one command to
/// be answered and returns it.
fn block_and_wait(hub: &Hub, device: &str, attacker: &str, within: Duration) -> serde_json::Value {
    let body = json!({ "action": "block_ip", "params": { "net": attacker, "timeout_s": 600 },
        "targets": { "devices": [device] } });
    let (status, action) = hub.request("POST", "/actions", None, Some(&body)).unwrap();
    assert_eq!(status, 202, "{action}");
    let id = action["id"].as_i64().unwrap();
    wait_for(within, "the router's answer", || {
        let (_, a) = hub.get(&format!("/actions/{id}")).ok()?;
        let c = a["commands"].as_array()?.first()?.clone();
        (c["state"] != "pending").then_some(a)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()))
}

#[test]
fn the_ssh_transport_blocks_on_a_router_without_an_agent_and_refuses_a_router_with_another_host_key() {
    if !Lab::usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(1).unwrap();
    let r = &lab.routers[0];
    let hub = Hub::start(dir.path()).unwrap();

    // The router trusts the hub's key, and nothing of OPMAS runs on it.
    let hub_key = hub_cli(&hub, &["device", "ssh-key"]);
    assert!(hub_key.status.success(), "{}", String::from_utf8_lossy(&hub_key.stderr));
    let home = dir.path().join("root-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/authorized_keys"), &hub_key.stdout).unwrap();
    let key = dir.path().join("router.key");
    let fingerprint = host_key(&key);
    let log = dir.path().join("dropbear.log");
    let mut dropbear = dropbear_alone(r, &key, &home, &log);

    // Enrolment pins the host key, checked against what the router's console says.
    let address = format!("root@{}:22", r.up);
    let wrong = hub_cli(&hub, &["device", "add", "gw-ssh", "--ssh", &address, "--host-key-fingerprint", "SHA256:abc"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not SHA256:abc as expected"), "{wrong:?}");
    let added = hub_cli(
        &hub,
        &["device", "add", "gw-ssh", "--ssh", &address, "--host-key-fingerprint", &fingerprint, "--json"],
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let enrolled: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(enrolled["host_key_fingerprint"], fingerprint.as_str());
    assert_eq!(enrolled["login_ok"], true, "{enrolled}");
    let (_, device) = hub.get("/devices/gw-ssh").unwrap();
    assert_eq!(device["transport"], "ssh", "{device}");

    // A block through the API reaches it over SSH: the attacker is dropped.
    let attacker = r.attacker.to_string();
    let to_router = SocketAddr::V4(SocketAddrV4::new(r.addr, 22));
    assert!(lab.attacker_connects(to_router, Duration::from_secs(2)), "nothing blocked yet");
    let action = block_and_wait(&hub, "gw-ssh", &attacker, Duration::from_secs(20));
    let command = &action["commands"][0];
    assert_eq!(command["state"], "done", "{action}\n{}", hub.log());
    assert!(command["message"].as_str().unwrap().contains("done over SSH"), "{command}");
    assert!(set_elements(r).contains(&attacker), "{}", set_elements(r));
    assert!(!lab.attacker_connects(to_router, Duration::from_secs(2)), "the attacker is dropped");

    // fw4 restarts on the router (its table deleted and made again): with no
    // edge there, the hub puts the block back within its ensure interval.
    Lab::nft(&r.ns, &["delete", "table", "inet", "fw4"]).unwrap();
    Lab::nft(&r.ns, &["add", "table", "inet", "fw4"]).unwrap();
    assert!(lab.attacker_connects(to_router, Duration::from_secs(2)), "the rebuild lost the block");
    wait_for(Duration::from_secs(45), "the hub puts the block back", || {
        set_elements(r).contains(&attacker).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert!(!lab.attacker_connects(to_router, Duration::from_secs(2)), "dropped again after the rebuild");

    // The undo goes the same way.
    let id = action["id"].as_i64().unwrap();
    let (status, undo) = hub.request("POST", &format!("/actions/{id}/undo"), None, None).unwrap();
    assert_eq!(status, 202, "{undo}");
    wait_for(Duration::from_secs(20), "the attacker passes again", || {
        lab.attacker_connects(to_router, Duration::from_secs(1)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));

    // The router is away: the command waits, saying why, and runs when it is back.
    dropbear.kill();
    let body = json!({ "action": "block_ip", "params": { "net": attacker, "timeout_s": 600 },
        "targets": { "devices": ["gw-ssh"] } });
    let (status, action) = hub.request("POST", "/actions", None, Some(&body)).unwrap();
    assert_eq!(status, 202, "{action}");
    let id = action["id"].as_i64().unwrap();
    let waiting = wait_for(Duration::from_secs(20), "the reason it waits", || {
        let (_, a) = hub.get(&format!("/actions/{id}")).ok()?;
        let c = a["commands"][0].clone();
        (c["state"] == "pending" && c["message"].as_str()?.contains("cannot reach")).then_some(c)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert!(waiting["message"].as_str().unwrap().contains(&r.up.to_string()), "{waiting}");
    let mut dropbear = dropbear_alone(r, &key, &home, &log);
    wait_for(Duration::from_secs(30), "the waiting block runs", || {
        let (_, a) = hub.get(&format!("/actions/{id}")).ok()?;
        (a["commands"][0]["state"] == "done").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert!(!lab.attacker_connects(to_router, Duration::from_secs(2)), "dropped again");
    // Taken back, so that nothing is in force for the hub to put back below.
    let (status, undo) = hub.request("POST", &format!("/actions/{id}/undo"), None, None).unwrap();
    assert_eq!(status, 202, "{undo}");
    wait_for(Duration::from_secs(20), "the unblock runs", || {
        let (_, a) = hub.get(&format!("/actions/{}", undo["id"])).ok()?;
        (a["commands"][0]["state"] == "done").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));

    // Someone else answers at the router's address, with another host key:
    // refused, nothing runs there.
    dropbear.kill();
    let other = host_key(&dir.path().join("impostor.key"));
    assert_ne!(other, fingerprint);
    let _impostor = dropbear_alone(r, &dir.path().join("impostor.key"), &home, &log);
    let refused = block_and_wait(&hub, "gw-ssh", &attacker, Duration::from_secs(20));
    let command = &refused["commands"][0];
    assert_eq!(command["state"], "failed", "{refused}");
    let message = command["message"].as_str().unwrap();
    assert!(message.contains(&other) && message.contains(&fingerprint) && message.contains("pinned"), "{message}");
    assert!(lab.attacker_connects(to_router, Duration::from_secs(2)), "nothing was blocked");
}
