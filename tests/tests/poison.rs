//! One bad row holds back nobody: the hub's database refuses every finding
//! about one address (a trigger installed on the live database, as a
//! constraint or a corrupt index would). The router that sent it still gets
//! its other findings stored and its spool acked, the refused one is counted
//! and logged with its reason, and another router's findings are not
//! delayed.

use std::time::Duration;

use opmas_e2e::{dropbear_attack, wait_for, Device, Edge, Hub};
use serde_json::Value;

const POISON: &str = "198.51.100.66";

fn device(hub: &Hub, d: &Device) -> Value {
    hub.get(&format!("/devices/{}", d.id)).map(|(_, v)| v).unwrap_or_default()
}

fn stored_ips(hub: &Hub, d: &Device) -> Vec<String> {
    let rows = hub.findings(&format!("device={}&kind=ssh.bruteforce&limit=100", d.id)).unwrap_or_default();
    rows.iter().filter_map(|f| f["src_ip"].as_str().map(String::from)).collect()
}

#[test]
fn a_row_the_database_refuses_is_skipped_and_counted_and_delays_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let bad = hub.enrol("gw-poisoned").unwrap();
    let good = hub.enrol("gw-healthy").unwrap();
    let bad_edge = Edge::start(dir.path(), &hub, &bad).unwrap();
    let good_edge = Edge::start(dir.path(), &hub, &good).unwrap();
    for d in [&bad, &good] {
        wait_for(Duration::from_secs(10), "edges online", || (device(&hub, d)["status"] == "online").then_some(()))
            .unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", hub.data_dir.join("opmas.db").display());
        let db = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(&format!(
            "CREATE TRIGGER poison BEFORE INSERT ON findings WHEN NEW.src_ip = '{POISON}'
             BEGIN SELECT RAISE(ABORT, 'refused by the test''s trigger'); END"
        ))
        .execute(&db)
        .await
        .unwrap();
        db.close().await;
    });

    // The poisoned router: the refused finding between two good ones, all
    // appended at once so they travel together; the healthy router at the
    // same moment.
    let mut lines = dropbear_attack("198.51.100.1", 5);
    lines.extend(dropbear_attack(POISON, 5));
    lines.extend(dropbear_attack("198.51.100.2", 5));
    bad_edge.append(&lines).unwrap();
    good_edge.append(&dropbear_attack("203.0.113.5", 5)).unwrap();

    // Ack timeouts are 20 s: storing within 10 s means nobody waited for a resend.
    wait_for(Duration::from_secs(10), "the healthy router's finding", || {
        stored_ips(&hub, &good).contains(&"203.0.113.5".to_string()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    wait_for(Duration::from_secs(10), "the poisoned router's good findings", || {
        let ips = stored_ips(&hub, &bad);
        (ips.contains(&"198.51.100.1".to_string()) && ips.contains(&"198.51.100.2".to_string())).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    assert!(!stored_ips(&hub, &bad).contains(&POISON.to_string()));
    // Severity by name and times in RFC 3339 beside the numbers.
    let f = &hub.findings(&format!("device={}&kind=ssh.bruteforce&limit=1", good.id)).unwrap()[0];
    assert_eq!(f["severity_name"], "high", "{f}");
    assert!(f["first"].as_str().is_some_and(|t| t.ends_with('Z')) && f["first_ms"].is_i64(), "{f}");

    // Counted, logged with the reason, and the edge's spool is empty: it
    // does not resend the refused finding forever.
    let stats = hub.stats().unwrap();
    assert_eq!(stats["findings_unstorable"], 1, "{stats}");
    assert_eq!(stats["store_errors"], 0, "{stats}");
    let log = hub.log();
    assert!(log.contains("the database refused a finding") && log.contains("refused by the test's trigger"), "{log}");
    wait_for(Duration::from_secs(10), "the poisoned router's spool to drain", || {
        let v = device(&hub, &bad);
        let deliveries = v["deliveries"].as_array()?.clone();
        (v["heartbeat"]["spool"]["depth"] == 0 && deliveries.iter().any(|d| d["unstorable"] == 1)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", device(&hub, &bad)));
}
