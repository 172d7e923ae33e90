//! Commands from the hub to real edges over the real broker: an agent
//! stopped on one of two routers stops finding there only, and stays
//! stopped when that edge restarts; a command for a
//! router that is away waits and runs when it is back; a replayed command
//! is refused, also after the edge restarts; a forged one is refused and
//! reported; expiry holds on a router whose clock is years off.

use std::time::Duration;

use opmas_e2e::{bin, dropbear_attack, wait_for, Edge, Hub};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

fn online(hub: &Hub, id: &str) {
    wait_for(Duration::from_secs(30), &format!("{id} online"), || {
        hub.get(&format!("/devices/{id}")).ok().filter(|(_, v)| v["status"] == "online").map(|_| ())
    })
    .unwrap();
}

/// Sends a command and waits for its end; returns the command.
fn run(hub: &Hub, path: &str) -> Value {
    let (status, v) = hub.post(path, None).unwrap();
    assert_eq!(status, 202, "{path}: {v}");
    // Agent actions answer {command, config}; ping answers the command.
    let c = if v["command"].is_object() { v["command"].clone() } else { v };
    assert_eq!(c["state"], "pending");
    settled(hub, c["id"].as_i64().unwrap())
}

/// Starts or stops an agent (its desired state) and waits for the device's
/// heartbeat to show it.
fn set_agent(hub: &Hub, device: &str, agent: &str, action: &str, state: &str) {
    let (status, v) = hub.post(&format!("/devices/{device}/agents/{agent}/{action}"), None).unwrap();
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["config"]["sent_to"], 1, "{v}");
    wait_for(Duration::from_secs(10), &format!("{device}'s {agent} {state}"), || {
        (agent_state(hub, device, agent) == state).then_some(())
    })
    .unwrap();
}

fn settled(hub: &Hub, id: i64) -> Value {
    wait_for(Duration::from_secs(30), &format!("command {id} answered"), || {
        hub.get(&format!("/commands/{id}")).ok().map(|(_, v)| v).filter(|v| v["state"] != "pending")
    })
    .unwrap()
}

fn agent_state(hub: &Hub, device: &str, agent: &str) -> String {
    let (_, v) = hub.get(&format!("/devices/{device}")).unwrap();
    let agents = v["heartbeat"]["agents"].as_array().cloned().unwrap_or_default();
    agents.iter().find(|a| a["name"] == agent).map(|a| a["state"].as_str().unwrap().to_owned()).unwrap_or_default()
}

#[test]
fn an_agent_stopped_on_one_router_stops_there_only_and_commands_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let a = hub.enrol("gw-a").unwrap();
    let b = hub.enrol("gw-b").unwrap();
    let mut edge_a = Edge::start(dir.path(), &hub, &a).unwrap();
    let edge_b = Edge::start(dir.path(), &hub, &b).unwrap();
    online(&hub, "gw-a");
    online(&hub, "gw-b");

    // Mistakes first: named, and nothing sent.
    let (status, v) = hub.post("/devices/gw-a/agents/dns/stop", None).unwrap();
    assert_eq!((status, v["field"].as_str()), (422, Some("agent")), "{v}");
    let (status, _) = hub.post("/devices/gw-a/agents/security/pause", None).unwrap();
    assert_eq!(status, 422);
    let (status, _) = hub.post("/devices/gw-z/ping", None).unwrap();
    assert_eq!(status, 404);

    set_agent(&hub, "gw-a", "security", "stop", "stopped");
    assert_eq!(agent_state(&hub, "gw-b", "security"), "running");
    edge_a.append(&dropbear_attack("203.0.113.10", 8)).unwrap();
    edge_b.append(&dropbear_attack("203.0.113.11", 8)).unwrap();
    wait_for(Duration::from_secs(20), "gw-b's finding", || {
        hub.findings("kind=ssh.bruteforce&device=gw-b").ok().filter(|f| !f.is_empty())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(hub.findings("kind=ssh.bruteforce&device=gw-a").unwrap().is_empty(), "a stopped agent finds nothing");
    let (_, cfg) = hub.get("/devices/gw-a/config").unwrap();
    assert_eq!(
        (cfg["sync"].as_str(), cfg["effective"]["agents"]["security"]["enabled"]["from"].as_str()),
        (Some("in_sync"), Some("device")),
        "{cfg}"
    );

    // Stopped is desired state: it stays so when the edge restarts (and it
    // kept the configuration on disk).
    let old_epoch = hub.get("/devices/gw-a").unwrap().1["heartbeat"]["epoch"].clone();
    edge_a.kill();
    edge_a.restart().unwrap();
    wait_for(Duration::from_secs(20), "gw-a's new run, security still stopped", || {
        let (_, v) = hub.get("/devices/gw-a").ok()?;
        (v["heartbeat"]["epoch"] != old_epoch && agent_state(&hub, "gw-a", "security") == "stopped").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge_a.log()));
    assert!(edge_a.log().contains("running the hub's configuration kept on disk"), "{}", edge_a.log());
    set_agent(&hub, "gw-a", "security", "start", "running");

    let c = run(&hub, "/devices/gw-a/agents/security/restart");
    assert_eq!(c["state"], "done", "{c}");
    let c = run(&hub, "/devices/gw-a/ping");
    assert_eq!((c["state"].as_str(), c["message"].as_str()), (Some("done"), Some("pong")));

    // A router that is away gets its command when it is back.
    edge_a.kill();
    wait_for(Duration::from_secs(30), "gw-a offline", || {
        hub.get("/devices/gw-a").ok().filter(|(_, v)| v["status"] == "offline").map(|_| ())
    })
    .unwrap();
    let (status, waiting) = hub.post("/devices/gw-a/ping", None).unwrap();
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_secs(1));
    let id = waiting["id"].as_i64().unwrap();
    assert_eq!(hub.get(&format!("/commands/{id}")).unwrap().1["state"], "pending");
    edge_a.restart().unwrap();
    let c = settled(&hub, id);
    assert_eq!(c["state"], "done", "{c}");
    assert!(c["sends"].as_i64().unwrap() >= 2, "sent again on reconnect: {c}");
    // The hub's lifecycle agent saw it go and come back: one finding each,
    // the offline one closed by the return.
    // (The earlier restart may have been seen too: the newest two are this one.)
    let lifecycle = wait_for(Duration::from_secs(10), "the lifecycle findings", || {
        let f = hub.findings("agent=lifecycle&device=gw-a").ok()?;
        (f.first()?["kind"] == "device.back").then_some(f)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", hub.findings("agent=lifecycle&device=gw-a")));
    let kinds: Vec<(&str, bool)> =
        lifecycle.iter().map(|f| (f["kind"].as_str().unwrap(), f["open"].as_bool().unwrap())).collect();
    assert_eq!(kinds[..2], [("device.back", false), ("device.offline", false)], "{lifecycle:?}");
    assert!(kinds.iter().all(|(_, open)| !open), "nothing left open: {kinds:?}");

    // A command captured on the wire and sent again is refused, before and
    // after the edge restarts. The broker has no topic ACLs, so another
    // enrolled client can listen on gw-a's command topic and publish there.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sniffer = hub.enrol("gw-sniffer").unwrap();
    let (client, mut captured) = rt.block_on(async {
        let mut opts = MqttOptions::new("gw-sniffer", hub.mqtt.ip().to_string(), hub.mqtt.port());
        opts.set_credentials("gw-sniffer", &sniffer.secret);
        let (client, mut el) = AsyncClient::new(opts, 16);
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        client.subscribe("opmas/v1/gw-a/cmd", QoS::AtLeastOnce).await.unwrap();
        tokio::spawn(async move {
            while let Ok(ev) = el.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    let _ = tx.send(p.payload.to_vec()).await;
                }
            }
        });
        (client, rx)
    });
    std::thread::sleep(Duration::from_millis(500));
    let c = run(&hub, "/devices/gw-a/ping");
    assert_eq!(c["state"], "done");
    let payload =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), captured.recv()).await }).unwrap().unwrap();
    let replay = |client: &AsyncClient, payload: Vec<u8>| {
        rt.block_on(client.publish("opmas/v1/gw-a/cmd", QoS::AtLeastOnce, false, payload)).unwrap();
    };
    replay(&client, payload.clone());
    wait_for(Duration::from_secs(10), "the edge to refuse the replay", || {
        edge_a.log().contains("already seen").then_some(())
    })
    .unwrap();
    let refused = format!("command refused command={} reason=command {} already seen", c["id"], c["id"]);
    assert!(edge_a.log().contains(&refused), "{refused}: {}", edge_a.log());
    edge_a.kill();
    edge_a.restart().unwrap();
    online(&hub, "gw-a");
    // A command answered: the restarted edge listens on its command topic.
    assert_eq!(run(&hub, "/devices/gw-a/ping")["state"], "done");
    let before = edge_a.log().matches("already seen").count();
    replay(&client, payload);
    wait_for(Duration::from_secs(10), "the restarted edge to refuse the replay", || {
        (edge_a.log().matches("already seen").count() > before).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge_a.log()));

    // A forged command (not sealed with gw-a's secret) is refused unread,
    // and the edge tells the hub.
    replay(&client, vec![opmas_proto::FORMAT_VERSION, 1, 2, 3]);
    wait_for(Duration::from_secs(30), "the hub to hear of the refusal", || {
        (hub.stats().ok()?["downlink_refused_by_edge"].as_u64()? >= 1).then_some(())
    })
    .unwrap();
    assert!(hub.log().contains("the device refused downlink messages"), "{}", hub.log());

    // The log of commands, newest first, and a viewer may read it.
    let (_, log) = hub.get("/commands?device=gw-a").unwrap();
    let states: Vec<&str> = log["commands"].as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["done"; 5], "{log}");
    drop(edge_b);
}

/// The edge of `device` run under libfaketime with its wall clock set to
/// `clock` (and running from there); its monotonic clock stays true, as a
/// router's does when it boots without NTP.
fn edge_with_clock(dir: &std::path::Path, hub: &Hub, device: &opmas_e2e::Device, clock: &str) -> Edge {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(std::path::Path::new(lib).exists(), "{lib} missing: apt-get install faketime (.ci/run does)");
    // The same preload on a program that prints the wall clock: the edge,
    // linked the same way (glibc's clock_gettime), sees this year too.
    let out = std::process::Command::new("env")
        .args([format!("LD_PRELOAD={lib}"), format!("FAKETIME=@{clock}"), "date".into(), "+%Y".into()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), &clock[..4], "libfaketime sets the clock");
    let program = vec![
        "env".into(),
        format!("LD_PRELOAD={lib}").into(),
        format!("FAKETIME=@{clock}").into(),
        "DONT_FAKE_MONOTONIC=1".into(),
        bin("opmas-edge").into(),
    ];
    Edge::start_program(dir, hub, device, program).unwrap()
}

/// Routers boot without NTP. One whose clock says 2038 still runs a fresh
/// command (by its own clock it expired long ago), and one whose clock says
/// 1971 refuses a stale one (by its own clock it is valid for decades):
/// the edge judges expiry by the hub's time, learnt from signed messages.
#[test]
fn expiry_is_judged_by_the_hubs_clock_on_a_router_whose_clock_is_years_off() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();

    let late = hub.enrol("gw-2038").unwrap();
    let mut edge = edge_with_clock(dir.path(), &hub, &late, "2038-06-01 12:00:00");
    online(&hub, "gw-2038");
    let c = run(&hub, "/devices/gw-2038/ping?ttl_s=30");
    assert_eq!((c["state"].as_str(), c["message"].as_str()), (Some("done"), Some("pong")), "{c}\n{}", edge.log());
    edge.kill();

    let early = hub.enrol("gw-1971").unwrap();
    let edge = edge_with_clock(dir.path(), &hub, &early, "1971-01-01 00:00:00");
    online(&hub, "gw-1971");
    let c = run(&hub, "/devices/gw-1971/ping?ttl_s=30");
    assert_eq!(c["state"], "done", "a fresh command runs: {c}");
    // The edge is frozen while a command with 2 s to live reaches its
    // socket; when it runs again, 4 s later, the command is stale.
    let pid = edge.proc.as_ref().unwrap().pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let (status, sent) = hub.post("/devices/gw-1971/ping?ttl_s=2", None).unwrap();
    assert_eq!(status, 202, "{sent}");
    let id = sent["id"].as_i64().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let refused = format!("command {id} expired");
    wait_for(Duration::from_secs(10), "the edge to refuse the stale command", || {
        edge.log().contains(&refused).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));
    let c = settled(&hub, id);
    assert_ne!(c["state"], "done", "{c}");

    let (status, v) = hub.post("/devices/gw-1971/ping?ttl_s=0", None).unwrap();
    assert_eq!((status, v["field"].as_str()), (422, Some("ttl_s")), "{v}");
}
