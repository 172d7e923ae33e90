//! What the hub refuses: unknown devices, wrong secrets, forged envelopes,
//! and API calls without a valid token.

use std::time::Duration;

use opmas_e2e::{wait_for, Hub};
use opmas_proto::msg::{Finding, FindingBatch, Severity, Subject};
use opmas_proto::{Channel, DeviceId, Envelope, Secret, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Connects as `id` with `password`; returns the client once CONNACK came,
/// or the error if the hub closed the connection.
async fn connect(hub: &Hub, id: &str, password: &str) -> Result<(AsyncClient, tokio::task::JoinHandle<()>), String> {
    let (client, mut el) = opmas_e2e::mqtt_connect(hub.mqtt, id, id, password).await?;
    let driver = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    Ok((client, driver))
}

fn batch() -> FindingBatch {
    FindingBatch {
        epoch: 1,
        floor: 1,
        round: 0,
        findings: vec![Finding {
            seq: 1,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::HIGH,
            subject: Subject { src_ip: Some("203.0.113.66".parse().unwrap()), ..Subject::default() },
            count: 99,
            first_ms: 1,
            last_ms: 2,
            summary: "forged".into(),
            evidence: vec![],
            stage: opmas_proto::msg::Stage::New,
        }],
    }
}

fn stat(hub: &Hub, name: &str) -> u64 {
    hub.stats().unwrap()[name].as_u64().unwrap()
}

/// A runtime whose workers keep driving MQTT clients while the test thread
/// makes blocking API calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn wrong_secret_and_unknown_device_are_refused_and_counted() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let device = hub.enrol("gw-sec-1").unwrap();
    let wrong = "ff".repeat(32);

    assert!(rt.block_on(connect(&hub, &device.id, &wrong)).is_err(), "wrong secret accepted");
    assert!(rt.block_on(connect(&hub, "gw-nobody", &device.secret)).is_err(), "unknown device accepted");
    // The right secret under another client id than the device id.
    let mut opts = MqttOptions::new("other-client", hub.mqtt.ip().to_string(), hub.mqtt.port());
    opts.set_credentials(&device.id, &device.secret);
    let _entered = rt.enter();
    let (_c, mut el) = AsyncClient::new(opts, 4);
    let refused = rt
        .block_on(tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return false,
                    Ok(_) => {}
                    Err(_) => return true,
                }
            }
        }))
        .unwrap();
    assert!(refused, "client id other than the device id accepted");

    let refusals = wait_for(Duration::from_secs(5), "three refusals", || {
        let n = stat(&hub, "auth_refused");
        (n >= 3).then_some(n)
    });
    assert_eq!(refusals.unwrap(), 3);
    assert!(hub.log().contains("refused MQTT connection"), "refusal not logged:\n{}", hub.log());
    // The right credentials still work.
    assert!(rt.block_on(connect(&hub, &device.id, &device.secret)).is_ok());
}

#[test]
fn forged_envelopes_are_dropped_and_counted() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let a = hub.enrol("gw-sec-a").unwrap();
    let b = hub.enrol("gw-sec-b").unwrap();
    let (client, _driver) = rt.block_on(connect(&hub, &a.id, &a.secret)).unwrap();
    let publish = |topic: Topic, payload: Vec<u8>| {
        rt.block_on(client.publish(topic.to_string(), QoS::AtLeastOnce, false, payload)).unwrap()
    };
    let a_id = DeviceId::new(a.id.clone()).unwrap();
    let b_id = DeviceId::new(b.id.clone()).unwrap();
    let a_key = Secret::from_hex(&a.secret).unwrap();

    // A's envelope signed with a key that is not A's.
    let bad = Envelope::sealed(a_id.clone(), 1, 1, &batch(), &Secret::from_bytes([7; 32])).unwrap();
    publish(Topic::new(a_id.clone(), Channel::Finding), bad);
    // A, correctly signed, but on B's topic (no topic ACLs in the broker).
    let spoof = Envelope::sealed(a_id.clone(), 2, 1, &batch(), &a_key).unwrap();
    publish(Topic::new(b_id, Channel::Finding), spoof);
    // Garbage, and a future format version.
    publish(Topic::new(a_id.clone(), Channel::Finding), vec![opmas_proto::FORMAT_VERSION, 0xff, 0xff]);
    publish(Topic::new(a_id.clone(), Channel::Heartbeat), vec![9, 0, 0]);

    wait_for(Duration::from_secs(5), "rejections", || {
        let s = hub.stats().ok()?;
        (s["rejected_bad_tag"] == 1
            && s["rejected_device_mismatch"] == 1
            && s["rejected_malformed"] == 1
            && s["rejected_version"] == 1)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", hub.stats().unwrap(), hub.log()));
    assert!(hub.findings("limit=10").unwrap().is_empty(), "a forged finding was stored");

    // A valid envelope from A on A's topic is stored and the hub keeps running.
    let good = Envelope::sealed(a_id.clone(), 3, 1, &batch(), &a_key).unwrap();
    publish(Topic::new(a_id, Channel::Finding), good);
    wait_for(Duration::from_secs(5), "the valid finding", || (hub.findings("limit=10").ok()?.len() == 1).then_some(()))
        .unwrap();
}

#[test]
fn the_api_wants_a_valid_token_and_names_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path()).unwrap();
    let token_path = hub.data_dir.join("admin.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);

    let real = std::mem::replace(&mut hub.token, "not-a-token".into());
    let (status, body) = hub.get("/devices").unwrap();
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("token"));
    hub.token = real;
    let (status, _) = hub.get("/devices").unwrap();
    assert_eq!(status, 200);
    let (status, body) = hub.get("/findings?limit=0").unwrap();
    assert_eq!(status, 422);
    assert_eq!(body["field"], "limit");
    let (status, _) = hub.get("/devices/nope").unwrap();
    assert_eq!(status, 404);
}
