//! The hub on an external broker: Debian's mosquitto 2, started here on a
//! loopback port with the password and ACL files the hub writes. Routers
//! log in to mosquitto as themselves; the hub is its client, with the
//! uplinks on shared subscriptions.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opmas_e2e::{bin, dropbear_attack, free_addr, wait_for, Device, Edge, Hub, Proc};
use rumqttc::{AsyncClient, Event, Packet, QoS};

const HUB_PASSWORD: &str = "hub-broker-password-for-the-test";

/// The hub's settings for the external broker at `broker`.
fn hub_toml(dir: &Path, broker: SocketAddr) -> String {
    format!(
        "[broker]\nmode = \"external\"\nurl = \"mqtt://{broker}\"\nusername = \"opmas-hub\"\npassword_file = \"{d}/broker.password\"\n\
         client_id = \"opmas-hub-a\"\nmosquitto_password_file = \"{d}/opmas.passwd\"\nmosquitto_acl_file = \"{d}/opmas.acl\"\n\
         mosquitto_pid_file = \"{d}/mosquitto.pid\"\n",
        d = dir.display()
    )
}

fn mosquitto_conf(dir: &Path, broker: SocketAddr) -> String {
    // Started as root, mosquitto runs as `user`; as anyone else it stays who it is.
    let me = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    format!(
        "user {me}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/opmas.passwd\nacl_file {d}/opmas.acl\n\
         pid_file {d}/mosquitto.pid\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
        me = me.unwrap_or_else(|_| "mosquitto".into()),
        port = broker.port(),
        d = dir.display()
    )
}

/// `opmas-hub device add NAME` with the test's settings, before any hub runs.
fn enrol(dir: &Path, data: &Path, name: &str, broker: SocketAddr) -> Device {
    let out = Command::new(bin("opmas-hub"))
        .args(["device", "add", name, "--json", "--create-db", "--config"])
        .arg(dir.join("hub.toml"))
        .arg("--data-dir")
        .arg(data)
        .args(["--hub-url", &format!("mqtt://{broker}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "device add: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mosquitto: ") && stderr.contains("routers in"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Device { id: v["id"].as_str().unwrap().to_owned(), secret: v["secret"].as_str().unwrap().to_owned() }
}

/// An MQTT client of mosquitto as `user`; the error if it is refused.
async fn connect(broker: SocketAddr, user: &str, password: &str) -> Result<(AsyncClient, rumqttc::EventLoop), String> {
    opmas_e2e::mqtt_connect(broker, &format!("{user}-probe"), user, password).await
}

#[test]
fn routers_reach_the_hub_through_mosquitto_each_confined_to_its_own_topics() {
    let found = Command::new("sh").args(["-c", "command -v mosquitto"]).output().unwrap().status.success();
    assert!(found, "mosquitto not found (apt-get install mosquitto)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = free_addr();
    std::fs::write(d.join("broker.password"), format!("{HUB_PASSWORD}\n")).unwrap();
    std::fs::write(d.join("hub.toml"), hub_toml(d, broker)).unwrap();
    std::fs::write(d.join("mosquitto.conf"), mosquitto_conf(d, broker)).unwrap();
    let data = d.join("hub-data");
    // Enrolled before anything runs: the hub writes mosquitto's files.
    let a = enrol(d, &data, "gw-a", broker);
    let b = enrol(d, &data, "gw-b", broker);
    let passwd = std::fs::read_to_string(d.join("opmas.passwd")).unwrap();
    assert!(passwd.contains("\nopmas-hub:$7$101$") && passwd.contains("\ngw-a:$7$") && passwd.contains("\ngw-b:$7$"));
    assert!(!passwd.contains(&a.secret), "hashed, not the secret");

    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(d.join("mosquitto.conf"));
    let _mosquitto = Proc::spawn(cmd, d.join("mosquitto.log")).unwrap();
    wait_for(Duration::from_secs(10), "mosquitto listening", || std::net::TcpStream::connect(broker).ok())
        .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(d.join("mosquitto.log")).unwrap_or_default()));

    let args: Vec<OsString> = vec!["--config".into(), d.join("hub.toml").into()];
    let hub = Hub::start_with(d, args).unwrap();
    assert!(hub.log().contains("connected to the external MQTT broker"), "{}", hub.log());
    let url = format!("mqtt://{broker}");
    let ea = Edge::start_url(d, &a, &url, "").unwrap();
    let _eb = Edge::start_url(d, &b, &url, "").unwrap();
    wait_for(Duration::from_secs(30), "both routers online through mosquitto", || {
        let (_, v) = hub.get("/devices").ok()?;
        let online = v["devices"].as_array()?.iter().filter(|d| d["status"] == "online").count();
        (online == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", hub.log(), ea.log()));

    // A brute force on gw-a is stored once, through the shared subscription.
    ea.append(&dropbear_attack("198.51.100.23", 5)).unwrap();
    let f = wait_for(Duration::from_secs(20), "the finding stored", || {
        hub.findings("kind=ssh.bruteforce&device=gw-a").ok().filter(|f| !f.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", hub.log(), ea.log()));
    assert_eq!((f.len(), f[0]["src_ip"].as_str()), (1, Some("198.51.100.23")));

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Unknown routers and wrong secrets are refused at connect.
        let nobody = connect(broker, "gw-nobody", &"ab".repeat(32)).await;
        assert!(nobody.is_err(), "an unknown router got in");
        let wrong = connect(broker, "gw-a", &"cd".repeat(32)).await;
        assert!(wrong.is_err(), "a wrong secret got in");

        // gw-a may not publish on gw-b's topics nor read gw-b's commands:
        // the hub's own user, watching everything, sees only gw-a's own.
        let (watch, mut watch_el) = connect(broker, "opmas-hub", HUB_PASSWORD).await.unwrap();
        watch.subscribe("opmas/v1/#", QoS::AtLeastOnce).await.unwrap();
        let (spoof, mut spoof_el) = connect(broker, "gw-a", &a.secret).await.unwrap();
        let seen = tokio::spawn(async move {
            let mut topics = Vec::new();
            while let Ok(ev) = watch_el.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = ev {
                    let done = p.topic == "opmas/v1/gw-a/hb" && p.payload.as_ref() == b"mine";
                    topics.push((p.topic.clone(), p.payload.to_vec()));
                    if done {
                        break;
                    }
                }
            }
            topics
        });
        tokio::spawn(async move { while spoof_el.poll().await.is_ok() {} });
        tokio::time::sleep(Duration::from_millis(500)).await;
        spoof.publish("opmas/v1/gw-b/finding", QoS::AtLeastOnce, false, b"not mine".to_vec()).await.unwrap();
        spoof.publish("opmas/v1/gw-a/cmd", QoS::AtLeastOnce, false, b"a command".to_vec()).await.unwrap();
        spoof.publish("opmas/v1/gw-a/hb", QoS::AtLeastOnce, false, b"mine".to_vec()).await.unwrap();
        let topics = tokio::time::timeout(Duration::from_secs(10), seen).await.expect("gw-a's own message").unwrap();
        let spoofed: Vec<&(String, Vec<u8>)> =
            topics.iter().filter(|(_, p)| p.as_slice() == b"not mine" || p.as_slice() == b"a command").collect();
        assert!(spoofed.is_empty(), "mosquitto let gw-a publish where it may not: {spoofed:?}");
    });

    // gw-b is removed: mosquitto refuses it from now on.
    let (status, _) = hub.request("DELETE", "/devices/gw-b", None, None).unwrap();
    assert_eq!(status, 204);
    assert!(!std::fs::read_to_string(d.join("opmas.passwd")).unwrap().contains("\ngw-b:"));
    rt.block_on(async {
        let refused = wait_for_async(|| async { connect(broker, "gw-b", &b.secret).await.is_err() }).await;
        assert!(refused, "mosquitto still admits a removed router");
    });
    let _ = hub;
}

/// Polls `f` for up to 10 s.
async fn wait_for_async<F, Fut>(f: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..20 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}
