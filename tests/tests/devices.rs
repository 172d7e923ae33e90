//! Removing and rekeying a device on a running hub: the old secret is
//! refused at once (the hub's key cache is told), over MQTT and in every
//! envelope; and the device commands say which database they use and never
//! create one by accident.

use std::process::Command;
use std::time::Duration;

use opmas_e2e::{bin, wait_for, Device, Edge, Hub};
use serde_json::Value;

fn cli(hub: &Hub, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("opmas-hub"))
        .args(["device"])
        .args(args)
        .arg("--data-dir")
        .arg(&hub.data_dir)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn counter(hub: &Hub, name: &str) -> u64 {
    hub.stats().unwrap()[name].as_u64().unwrap()
}

fn status(hub: &Hub, d: &Device) -> Value {
    hub.get(&format!("/devices/{}", d.id)).map(|(_, v)| v["status"].clone()).unwrap_or_default()
}

#[test]
fn rekey_and_remove_take_effect_at_once_on_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let old = hub.enrol("gw-rekeyed").unwrap();
    let edge = Edge::start(dir.path(), &hub, &old).unwrap();
    wait_for(Duration::from_secs(10), "online", || (status(&hub, &old) == "online").then_some(())).unwrap();

    let (ok, out, err) = cli(&hub, &["rekey", &old.id, "--json", "--hub-url", &format!("mqtt://{}", hub.mqtt)]);
    assert!(ok, "{err}");
    assert!(err.contains("using the hub database") && err.contains("opmas.db"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let new = Device { id: old.id.clone(), secret: v["secret"].as_str().unwrap().to_owned() };
    assert_ne!(new.secret, old.secret);
    assert!(v["uci"].as_str().unwrap().contains(&new.secret));

    // The edge still holds the old secret: its next heartbeat (every 2 s) is
    // refused, without a hub restart.
    let bad_tags = counter(&hub, "rejected_bad_tag");
    wait_for(Duration::from_secs(10), "the old secret's envelope refused", || {
        (counter(&hub, "rejected_bad_tag") > bad_tags).then_some(())
    })
    .unwrap();
    drop(edge);
    // Reconnecting with it is refused too; with the new one the router is back.
    let refused = counter(&hub, "auth_refused");
    let stale = Edge::start(dir.path(), &hub, &old).unwrap();
    wait_for(Duration::from_secs(10), "the old secret refused at connect", || {
        (counter(&hub, "auth_refused") > refused).then_some(())
    })
    .unwrap();
    // The router says so in its own log, in words its owner understands.
    wait_for(Duration::from_secs(10), "the edge to explain the refusal", || {
        stale.log().contains("refused this router: not authorised").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", stale.log()));
    // And the hub's refusal names where the connection came from.
    let refusal = hub
        .log()
        .lines()
        .find(|l| l.contains("refused MQTT connection") && l.contains("wrong secret"))
        .map(str::to_owned);
    assert!(refusal.as_deref().is_some_and(|l| l.contains("peer=127.0.0.1:")), "{refusal:?}\n{}", hub.log());
    drop(stale);
    let edge = Edge::start(dir.path(), &hub, &new).unwrap();
    let seen = hub.get(&format!("/devices/{}", new.id)).unwrap().1["last_seen_ms"].as_i64().unwrap_or(0);
    wait_for(Duration::from_secs(10), "the new secret accepted", || {
        let v = hub.get(&format!("/devices/{}", new.id)).ok()?.1;
        (v["last_seen_ms"].as_i64()? > seen && !v["heartbeat"].is_null()).then_some(())
    })
    .unwrap();

    // Heartbeats are kept as history, with times for people.
    let (status, v) = hub.get(&format!("/devices/{}/heartbeats?limit=5", new.id)).unwrap();
    assert_eq!(status, 200, "{v}");
    let first = &v["heartbeats"][0];
    assert!(first["received"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    assert!(first["epoch"].as_str().is_some_and(|e| e.parse::<u64>().is_ok()), "{v}");
    assert_eq!(hub.get(&format!("/devices/{}/heartbeats?limit=0", new.id)).unwrap().0, 422);

    let (ok, out, err) = cli(&hub, &["remove", &new.id]);
    assert!(ok, "{err}");
    assert!(out.contains("refuses its secret from now on"), "{out}");
    assert_eq!(hub.get(&format!("/devices/{}", new.id)).unwrap().0, 404);
    let unknown = counter(&hub, "rejected_unknown_device");
    wait_for(Duration::from_secs(10), "the removed device's messages refused", || {
        (counter(&hub, "rejected_unknown_device") > unknown).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));

    // A second removal is an error that names the device.
    let (ok, _, err) = cli(&hub, &["remove", &new.id]);
    assert!(!ok && err.contains("no device \"gw-rekeyed\""), "{err}");
}

#[test]
fn two_routers_with_one_device_id_are_named_by_hub_and_edge() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-twin").unwrap();
    // Each edge its own directory: the harness names config and log by device id.
    let twin = dir.path().join("twin");
    std::fs::create_dir(&twin).unwrap();
    let first = Edge::start(dir.path(), &hub, &d).unwrap();
    let second = Edge::start(&twin, &hub, &d).unwrap();
    let line = wait_for(Duration::from_secs(60), "the hub to name the conflict", || {
        hub.log().lines().find(|l| l.contains("two routers are using device id gw-twin")).map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    // Both routers by address: here both on loopback, told apart by port.
    let field = |name: &str| line.split(&format!(" {name}=")).nth(1).and_then(|v| v.split(' ').next()).unwrap_or("");
    let (older, newer) = (field("older"), field("newer"));
    assert!(older.starts_with("127.0.0.1:") && newer.starts_with("127.0.0.1:") && older != newer, "{line}");
    assert!(line.contains(&format!("{older} and {newer} connect in turn")), "{line}");
    assert_eq!(hub.log().matches("two routers are using device id gw-twin").count(), 1, "named once");
    wait_for(Duration::from_secs(60), "an edge to suspect it", || {
        (first.log().contains("is another router configured with device id")
            || second.log().contains("is another router configured with device id"))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", first.log()));
}

#[test]
fn an_edge_whose_hub_is_not_running_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-alone").unwrap();
    hub.kill();
    let edge = Edge::start(dir.path(), &hub, &d).unwrap();
    wait_for(Duration::from_secs(10), "the edge to explain", || {
        edge.log().contains("(connection refused): is the hub running, and is this its MQTT port?").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));
}

#[test]
fn the_config_file_device_add_prints_runs_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let (ok, file, err) =
        cli(&hub, &["add", "gw-by-file", "--config-file", "--hub-url", &format!("mqtt://{}", hub.mqtt)]);
    assert!(ok, "{err}");
    assert!(file.contains("config hub 'hub'") && file.contains("option device_id 'gw-by-file'"), "{file}");
    let path = dir.path().join("opmas.uci");
    std::fs::write(&path, &file).unwrap();
    // This machine has no logread: the source retries, the uplink connects anyway.
    let log = std::fs::File::create(dir.path().join("edge.log")).unwrap();
    let mut edge = Command::new(bin("opmas-edge")).args(["run", "--config"]).arg(&path).stderr(log).spawn().unwrap();
    let d = Device { id: "gw-by-file".into(), secret: String::new() };
    let online = wait_for(Duration::from_secs(15), "the edge configured by file online", || {
        (status(&hub, &d) == "online").then_some(())
    });
    let _ = edge.kill();
    let _ = edge.wait();
    online.unwrap_or_else(|e| {
        panic!("{e}\n{}", std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default())
    });
}

#[test]
fn each_commands_help_lists_only_the_options_that_apply() {
    let help = |args: &[&str]| {
        let out = Command::new(bin("opmas-hub")).args(args).arg("--help").output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let add = help(&["device", "add"]);
    assert!(add.contains("--data-dir") && add.contains("--hub-url") && add.contains("--create-db"), "{add}");
    assert!(!add.contains("--mqtts-listen") && !add.contains("--tls-cert"), "{add}");
    let serve = help(&["serve"]);
    assert!(serve.contains("--mqtts-listen") && !serve.contains("--hub-url"), "{serve}");
}

#[test]
fn device_commands_refuse_to_create_a_database_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-hub-here");
    let run = |args: &[&str]| Command::new(bin("opmas-hub")).args(args).arg("--data-dir").arg(&empty).output().unwrap();
    let out = run(&["device", "add", "gw-1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no hub database at") && err.contains("no-hub-here"), "{err}");
    assert!(!empty.join("opmas.db").exists(), "nothing was created");
    let out = run(&["device", "list"]);
    assert!(!out.status.success());
    let out = run(&["device", "add", "gw-1", "--create-db", "--hub-url", "mqtt://hub.example:1883"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(empty.join("opmas.db").exists());
    let out = run(&["device", "add", "gw-2", "--hub-url", "http://hub.example:1883"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("use mqtt:// or mqtts://"), "{err}");
}
