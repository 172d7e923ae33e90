//! The hub on PostgreSQL (Debian's server, started here on a loopback port
//! by `scripts/postgres.sh`): the first path, a brute force seen by the real
//! edge, stored once across a hub restart, with the CLI and the API on the
//! same database, and nothing written to a SQLite file.

use std::ffi::OsString;
use std::time::Duration;

use opmas_e2e::{dropbear_attack, wait_for, Edge, Hub, Postgres};

#[test]
fn a_hub_on_postgresql_stores_each_finding_once_across_a_restart() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("opmas_e2e").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(OsString::from("OPMAS_DATABASE_URL"), OsString::from(&url))];
    let mut hub = Hub::start_with_env(dir.path(), Vec::new(), env).unwrap();
    assert!(hub.log().contains("database ready"), "{}", hub.log());
    let device = hub.enrol("gw-pg-1").unwrap();
    let edge = Edge::start(dir.path(), &hub, &device).unwrap();
    wait_for(Duration::from_secs(10), "the edge to come online", || {
        let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
        (d["status"] == "online").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", hub.log(), edge.log()));

    edge.append(&dropbear_attack("203.0.113.10", 20)).unwrap();
    opmas_e2e::wait_for_bruteforce(&hub, &edge, "203.0.113.10", Duration::from_secs(10));
    let f = &hub.findings("kind=ssh.bruteforce").unwrap()[0];
    assert_eq!(f["device_id"], device.id.as_str());
    assert_eq!(f["user"], "root");

    // The hub dies; an attack happens meanwhile; the hub comes back to the
    // same database and the edge's spool delivers what it missed.
    hub.kill();
    edge.append(&dropbear_attack("198.51.100.20", 8)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    hub.restart().unwrap();
    opmas_e2e::wait_for_bruteforce(&hub, &edge, "198.51.100.20", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    for ip in ["203.0.113.10", "198.51.100.20"] {
        assert_eq!(hub.bruteforces_from(ip), 1, "findings for {ip}:\n{}", hub.log());
    }

    // What the API says is what PostgreSQL holds, and the hub made no SQLite file.
    let stored = pg.query(&url, "SELECT COUNT(*) FROM findings WHERE kind = 'ssh.bruteforce'").unwrap();
    assert_eq!(stored, "2");
    let devices = pg.query(&url, "SELECT id || ' ' || status FROM devices").unwrap();
    assert_eq!(devices, format!("{} online", device.id));
    assert!(!hub.data_dir.join("opmas.db").exists(), "a SQLite file was made beside PostgreSQL");
    // The hourly counts the dashboard reads are kept by PostgreSQL's triggers.
    let hours = pg.query(&url, "SELECT CAST(SUM(n) AS BIGINT) FROM finding_hours").unwrap();
    assert!(hours.parse::<i64>().unwrap() >= 2, "{hours}");
}
