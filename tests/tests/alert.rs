//! Alerting with real receivers: a real SMTP server (aiosmtpd, over
//! STARTTLS with a CA made here), and a real HTTP server standing in for
//! Slack, PagerDuty and a webhook endpoint. An incident is told once per
//! group to each receiver, with the webhook signed and retried after a
//! failure under the same delivery id; its resolution is told; a critical
//! one pages PagerDuty and resolves it with the same dedup_key; a silence
//! keeps a matching incident quiet; secrets never come back from the API.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use opmas_e2e::{dropbear_attack, free_addr, now_logread, wait_for, Edge, HttpSink, Hub};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};

/// aiosmtpd on loopback with STARTTLS required, delivering into a maildir.
struct Smtp {
    child: Child,
    addr: std::net::SocketAddr,
    maildir: std::path::PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Smtp {
        let addr = free_addr();
        let maildir = dir.join("maildir");
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &addr.to_string(), "--tlscert"])
            .arg(cert)
            .arg("--tlskey")
            .arg(key)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (apt-get install python3-aiosmtpd; .ci/run does)");
        wait_for(Duration::from_secs(10), "aiosmtpd listening", || std::net::TcpStream::connect(addr).ok()).unwrap();
        Smtp { child, addr, maildir }
    }

    /// The messages delivered so far, as text.
    fn messages(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files.
fn certs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let write = |n: &str, pem: String| {
        let p = dir.join(n);
        std::fs::write(&p, pem).unwrap();
        p
    };
    (write("ca.pem", ca_cert.pem()), write("smtp.pem", cert.pem()), write("smtp.key", key.serialize_pem()))
}

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    header == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn incident(hub: &Hub, query: &str, what: &str) -> Value {
    wait_for(Duration::from_secs(30), what, || {
        let (_, v) = hub.get(&format!("/incidents?{query}")).ok()?;
        v["incidents"].as_array()?.first().cloned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()))
}

#[test]
fn an_incident_is_told_once_per_group_signed_retried_resolved_paged_and_silenced() {
    let dir = tempfile::tempdir().unwrap();
    let sink = HttpSink::start().unwrap();
    sink.fail("/hook", 1);
    let (ca, cert, key) = certs(dir.path());
    let smtp = Smtp::start(dir.path(), &cert, &key);
    let alerting = dir.path().join("alerting.yaml");
    std::fs::write(
        &alerting,
        format!(
            "external_url: http://opmas.example.net
receivers:
  - name: mail
    email: {{ to: [ops@example.net], from: opmas@example.net, smarthost: '127.0.0.1:{port}', tls: starttls, ca_file: '{ca}' }}
  - name: chat
    slack: {{ url: '{slack}' }}
  - name: soc
    webhook: {{ url: '{hook}', secret: s3cret }}
  - name: pager
    pagerduty: {{ routing_key: pd-key-123, url: '{pd}' }}
route:
  receivers: [mail, chat, soc]
  group_by: [rule]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - match: {{ min_severity: critical }}
      receivers: [pager]
",
            port = smtp.addr.port(),
            ca = ca.display(),
            slack = sink.url("/slack/T0/B0/secret-path"),
            hook = sink.url("/hook"),
            pd = sink.url("/pd"),
        ),
    )
    .unwrap();
    let env = vec![(OsString::from("OPMAS_ALERTING_FILE"), alerting.into_os_string())];
    let hub = Hub::start_with_env(dir.path(), Vec::new(), env).unwrap();

    // Secrets never come back; a viewer or an operator cannot change them.
    let (_, shown) = hub.get("/alerting").unwrap();
    let text = shown.to_string();
    assert!(!text.contains("s3cret") && !text.contains("pd-key-123") && !text.contains("secret-path"), "{text}");
    assert_eq!(shown["config"]["receivers"][2]["webhook"]["secret"], "<secret>");
    let mut bad = shown["config"].clone();
    bad["route"]["receivers"] = json!(["nobody"]);
    bad["route"]["group_by"] = json!(["colour"]);
    let (status, err) = hub.request("PUT", "/alerting", None, Some(&bad)).unwrap();
    assert_eq!(status, 422, "{err}");
    let paths: Vec<&str> = err["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["route.receivers[0]", "route.group_by[0]"]);

    let rule = json!({ "name": "two-routers", "type": "threshold", "severity": "high", "window": "10m",
        "quiet": "6s", "key": "src_ip", "count": 2, "devices": 2, "match": [{ "kind": "ssh.bruteforce" }] });
    assert_eq!(hub.request("PUT", "/rules/two-routers", None, Some(&rule)).unwrap().0, 201);
    let mut edges = Vec::new();
    for id in ["gw-a", "gw-b", "gw-c"] {
        let d = hub.enrol(id).unwrap();
        edges.push(Edge::start(dir.path(), &hub, &d).unwrap());
    }
    wait_for(Duration::from_secs(30), "routers online", || {
        let (_, v) = hub.get("/devices").ok()?;
        (v["devices"].as_array()?.iter().filter(|d| d["status"] == "online").count() == 3).then_some(())
    })
    .unwrap();
    for e in &edges[..2] {
        e.append(&dropbear_attack("198.51.100.77", 5)).unwrap();
    }
    let i = incident(&hub, "rule=two-routers", "the incident");
    // Slack notifications of this rule's group.
    let chat = || -> Vec<Value> {
        sink.received("/slack/T0/B0/secret-path")
            .into_iter()
            .map(|r| r.json())
            .filter(|b| b["blocks"][2]["elements"][0]["text"].as_str().is_some_and(|t| t.contains("rule=two-routers")))
            .collect()
    };
    wait_for(Duration::from_secs(20), "the first Slack message", || (!chat().is_empty()).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    // The campaign goes on at a third router: the same incident grows, and
    // nothing more is told, within the group interval or after it.
    edges[2].append(&dropbear_attack("198.51.100.77", 5)).unwrap();
    wait_for(Duration::from_secs(15), "the incident grown", || {
        let (_, v) = hub.get(&format!("/incidents/{}", i["id"])).ok()?;
        (v["incident"]["findings"] == 3).then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(chat().len(), 1, "one message for the group: {:?}", chat());
    let id = i["id"].as_i64().unwrap();

    // The webhook: refused once, then delivered under the same id, signed.
    let hooks = wait_for(Duration::from_secs(40), "the webhook delivered after a retry", || {
        let r = sink.received("/hook");
        r.iter().any(|r| r.status == 202).then_some(r)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert_eq!((hooks[0].status, hooks[1].status), (500, 202));
    assert_eq!(hooks[0].header("x-opmas-delivery"), hooks[1].header("x-opmas-delivery"), "a retry, not a new alert");
    assert!(verify("s3cret", &hooks[1].body, hooks[1].header("x-opmas-signature").unwrap()), "signed");
    let n = hooks[1].json();
    assert_eq!((n["status"].as_str(), n["incidents"][0]["id"].as_i64()), (Some("firing"), Some(id)), "{n}");
    assert_eq!(n["incidents"][0]["link"], format!("http://opmas.example.net/incidents/{id}"));
    assert_eq!(n["subject"], "[OPMAS FIRING] high two-routers on src_ip=198.51.100.77");

    let body = chat().remove(0);
    assert_eq!(body["blocks"][0]["type"], "header", "{body}");
    assert!(body["blocks"][1]["text"]["text"].as_str().unwrap().contains("src_ip=198.51.100.77"), "{body}");

    let mail = wait_for(Duration::from_secs(20), "the e-mail", || {
        // Long header lines are folded: unfold them first.
        smtp.messages()
            .into_iter()
            .map(|m| m.replace("\r\n ", " ").replace("\n ", " "))
            .find(|m| m.contains("Subject: [OPMAS FIRING] high two-routers"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert!(mail.contains("Subject: [OPMAS FIRING] high two-routers on src_ip=198.51.100.77"), "{mail}");
    assert!(mail.contains("To: ops@example.net") && mail.contains(&format!("/incidents/{id}")), "{mail}");

    // Quiet for 6 s: resolved, and told once.
    let resolved = wait_for(Duration::from_secs(40), "the resolution told", || {
        sink.received("/hook").into_iter().find(|r| r.status == 202 && r.json()["status"] == "resolved")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert_eq!(resolved.json()["incidents"][0]["state"], "resolved");
    std::thread::sleep(Duration::from_secs(3));
    let delivered: Vec<String> = sink
        .received("/hook")
        .iter()
        .filter(|r| r.status == 202 && r.json()["group_key"] == "rule=two-routers")
        .map(|r| r.json()["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, ["firing", "resolved"], "once per change");

    // Critical: PagerDuty triggers, and resolves with the same dedup_key.
    let mut lines = dropbear_attack("192.0.2.99", 5);
    lines.push(format!(
        "{} authpriv.notice dropbear[29999]: Password auth succeeded for 'root' from 192.0.2.99:50999",
        now_logread()
    ));
    edges[0].append(&lines).unwrap();
    let c = incident(&hub, "rule=bruteforce-then-login", "the critical incident");
    let cid = c["id"].as_i64().unwrap();
    let trigger = wait_for(Duration::from_secs(20), "PagerDuty trigger", || sink.received("/pd").into_iter().next())
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()))
        .json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "pd-key-123");
    assert_eq!(trigger["dedup_key"], format!("opmas-incident-{cid}"));
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(hub.post(&format!("/incidents/{cid}/resolve"), None).unwrap().0, 200);
    let resolve = wait_for(Duration::from_secs(20), "PagerDuty resolve", || {
        sink.received("/pd").into_iter().map(|r| r.json()).find(|v| v["event_action"] == "resolve")
    })
    .unwrap();
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);

    // A silence keeps a matching incident quiet.
    let silence = json!({ "match": { "rule": ["two-routers"] }, "duration": "1h", "comment": "pen test" });
    let (status, s) = hub.request("POST", "/silences", None, Some(&silence)).unwrap();
    assert_eq!(status, 201, "{s}");
    let (status, v) = hub
        .request("POST", "/silences", None, Some(&json!({ "match": {}, "duration": "1h", "comment": "x" })))
        .unwrap();
    assert_eq!((status, v["field"].as_str()), (422, Some("match")), "an empty silence would mute everything");
    let before = sink.received("/hook").len();
    for e in &edges[..2] {
        e.append(&dropbear_attack("203.0.113.8", 5)).unwrap();
    }
    incident(&hub, "rule=two-routers&key=src_ip%3D203.0.113.8", "the silenced incident");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(sink.received("/hook").len(), before, "silenced: nothing told");
    let (_, log) = hub.get("/alerting/notifications").unwrap();
    let states: Vec<&str> =
        log["notifications"].as_array().unwrap().iter().map(|n| n["state"].as_str().unwrap()).collect();
    assert!(states.iter().all(|s| *s == "sent"), "{log}");
    assert!(!log.to_string().contains("s3cret"));
}

/// A hub whose alerts go to one webhook at `url` (grouped for 1 s), and a
/// real edge whose two attackers make one incident of rule `one`; returns
/// once the incident is open.
fn one_incident_told_to(dir: &Path, url: &str) -> (Hub, Edge) {
    let alerting = dir.join("alerting.yaml");
    std::fs::write(
        &alerting,
        format!("receivers:\n  - name: soc\n    webhook: {{ url: '{url}' }}\nroute:\n  receivers: [soc]\n  group_wait: 1s\n"),
    )
    .unwrap();
    let env = vec![(OsString::from("OPMAS_ALERTING_FILE"), alerting.into_os_string())];
    let hub = Hub::start_with_env(dir, Vec::new(), env).unwrap();
    let rule = json!({ "name": "one", "type": "threshold", "severity": "high", "window": "10m", "key": "device",
        "count": 2, "match": [{ "kind": "ssh.bruteforce" }] });
    assert_eq!(hub.request("PUT", "/rules/one", None, Some(&rule)).unwrap().0, 201);
    let d = hub.enrol("gw-a").unwrap();
    let edge = Edge::start(dir, &hub, &d).unwrap();
    wait_for(Duration::from_secs(30), "gw-a online", || {
        hub.get("/devices/gw-a").ok().filter(|(_, v)| v["status"] == "online").map(|_| ())
    })
    .unwrap();
    // Two attackers on one router: two findings of its key.
    edge.append(&dropbear_attack("198.51.100.1", 5)).unwrap();
    edge.append(&dropbear_attack("198.51.100.2", 5)).unwrap();
    incident(&hub, "rule=one", "the incident");
    (hub, edge)
}

/// A notification decided while its receiver is down, and the hub killed
/// before it could deliver it, is delivered after the restart, once.
#[test]
fn a_notification_waiting_in_the_outbox_survives_a_hub_crash() {
    let dir = tempfile::tempdir().unwrap();
    let sink = HttpSink::start().unwrap();
    sink.fail("/hook", 1000);
    let (mut hub, _edge) = one_incident_told_to(dir.path(), &sink.url("/hook"));
    wait_for(Duration::from_secs(20), "a refused delivery", || (!sink.received("/hook").is_empty()).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let (_, log) = hub.get("/alerting/notifications?state=pending").unwrap();
    assert_eq!(log["notifications"].as_array().unwrap().len(), 1, "{log}");
    hub.kill();
    sink.heal("/hook");
    hub.restart().unwrap();
    let ok = wait_for(Duration::from_secs(40), "delivered after the restart", || {
        sink.received("/hook").into_iter().find(|r| r.status == 202)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert_eq!(
        ok.header("x-opmas-delivery"),
        sink.received("/hook")[0].header("x-opmas-delivery"),
        "the same notification"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.received("/hook").iter().filter(|r| r.status == 202).count(), 1, "once");
}

/// A receiver that is down (its port closed) for a minute: the hub keeps
/// the notification, shows the receiver failing in `/metrics` and the
/// notification log, and delivers it once the receiver is back, once.
#[test]
fn a_receiver_down_for_a_minute_gets_the_alert_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on yet: connections are refused.
    let addr = free_addr();
    let (hub, _edge) = one_incident_told_to(dir.path(), &format!("http://{addr}/hook"));
    let down_since = std::time::Instant::now();
    let refused = wait_for(Duration::from_secs(20), "a refused delivery", || {
        let (_, log) = hub.get("/alerting/notifications?state=pending").ok()?;
        let n = log["notifications"].as_array()?.first()?.clone();
        (n["attempts"].as_i64()? >= 1).then_some(n)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert!(refused["last_error"].as_str().is_some_and(|e| !e.is_empty()), "the error is recorded: {refused}");
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", hub.http)).unwrap().text().unwrap();
    assert!(metrics.contains("opmas_alert_receiver_failing{receiver=\"soc\"} 1"), "{metrics}");
    // Down for a full minute, then back on the same address.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down_since.elapsed()));
    let sink = HttpSink::start_on(addr).unwrap();
    // The backoff (10 s doubling) puts the next attempt at most 40 s away.
    let ok = wait_for(Duration::from_secs(60), "delivered once the receiver is back", || {
        sink.received("/hook").into_iter().find(|r| r.status == 202)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let n = ok.json();
    assert_eq!((n["status"].as_str(), n["incidents"][0]["rule"].as_str()), (Some("firing"), Some("one")), "{n}");
    assert_eq!(ok.header("x-opmas-delivery"), refused["id"].as_i64().map(|i| i.to_string()).as_deref(), "{n}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.received("/hook").len(), 1, "delivered once");
    let (_, log) = hub.get("/alerting/notifications?state=sent").unwrap();
    assert_eq!(log["notifications"].as_array().map(Vec::len), Some(1), "{log}");
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", hub.http)).unwrap().text().unwrap();
    assert!(!metrics.contains("opmas_alert_receiver_failing{receiver=\"soc\"} 1"), "{metrics}");
}
