//! Nothing lost under load: four real edges burst 2,000 brute-forcing
//! sources each at once, while the hub drops chosen finding messages between
//! its broker and ingest (as rumqttd does when its buffers overflow). Every
//! finding must end up stored exactly once, or counted as dropped.

use std::ffi::OsString;
use std::time::Duration;

use opmas_e2e::{dropbear_burst, wait_for, Device, Edge, Hub};
use serde_json::Value;

const EDGES: usize = 4;
const SOURCES: usize = 2_000;

/// The device's latest heartbeat and delivery account.
fn device(hub: &Hub, d: &Device) -> Option<Value> {
    let (status, v) = hub.get(&format!("/devices/{}", d.id)).ok()?;
    (status == 200).then_some(v)
}

/// True once the edge says everything it produced is acked and the hub's
/// watermark agrees.
fn settled(v: &Value) -> bool {
    let hb = &v["heartbeat"];
    let produced = hb["counters"]["findings"].as_u64().unwrap_or(0);
    let epoch = hb["epoch"].as_str();
    let delivery = v["deliveries"].as_array().and_then(|ds| ds.iter().find(|d| d["epoch"].as_str() == epoch));
    produced > 0
        && hb["spool"]["depth"] == 0
        && hb["spool"]["acked_upto"].as_u64() == Some(produced)
        && delivery.is_some_and(|d| d["acked_upto"].as_u64() == Some(produced))
}

#[test]
fn a_burst_with_messages_lost_between_broker_and_ingest_is_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // Drop the 2nd, 5th and 9th finding message the broker delivers.
    let env = vec![(OsString::from("OPMAS_FAULT_DROP_FINDINGS"), OsString::from("2,5,9"))];
    let hub = Hub::start_with_env(dir.path(), Vec::new(), env).unwrap();
    let mut edges = Vec::new();
    for i in 0..EDGES {
        let d = hub.enrol(&format!("gw-burst-{i}")).unwrap();
        // Room for the whole burst: this test is about the hub's side.
        let e = Edge::start_opts(dir.path(), &hub, &d, "\toption spool_bytes '8388608'\n").unwrap();
        edges.push((d, e));
    }
    for (d, e) in &edges {
        wait_for(Duration::from_secs(10), "edges online", || (device(&hub, d)?["status"] == "online").then_some(()))
            .unwrap_or_else(|err| panic!("{err}\n{}", e.log()));
    }
    let burst = dropbear_burst(SOURCES, 5);
    for (_, e) in &edges {
        e.append(&burst).unwrap();
    }

    for (d, e) in &edges {
        wait_for(Duration::from_secs(120), &format!("{} to settle", d.id), || {
            device(&hub, d).filter(settled).map(drop)
        })
        .unwrap_or_else(|err| {
            panic!(
                "{err}\n{}\n--- hub log (tail) ---\n{}\n--- edge log (tail) ---\n{}",
                device(&hub, d).unwrap_or_default(),
                tail(&hub.log()),
                tail(&e.log())
            )
        });
    }

    // Every finding and update each edge produced is stored exactly once:
    // new ones as rows, updates applied to them (duplicates are counted apart).
    wait_for(Duration::from_secs(90), "the hub's counts to match the edges'", || {
        let mut produced = 0;
        for (d, _) in &edges {
            produced += device(&hub, d).filter(settled)?["heartbeat"]["counters"]["findings"].as_u64()?;
        }
        let s = hub.stats().ok()?;
        (s["findings_stored"].as_u64()? + s["findings_updated"].as_u64()? == produced).then_some(())
    })
    .unwrap_or_else(|err| panic!("{err}\n{}", hub.stats().unwrap()));
    let stats = hub.stats().unwrap();
    assert!(stats["batches_gap"].as_u64().unwrap() >= 1, "the dropped messages were noticed: {stats}");
    assert_eq!(stats["findings_dropped_by_edge"], 0, "{stats}");
    assert!(hub.log().contains("fault injection: finding message dropped"), "the fault was injected");
    for (d, _) in &edges {
        let v = device(&hub, d).unwrap();
        let produced = v["heartbeat"]["counters"]["findings"].as_u64().unwrap();
        assert_eq!(v["heartbeat"]["spool"]["dropped"], 0);
        let rows = hub.findings(&format!("device={}&limit=1000", d.id)).unwrap();
        // No sequence twice; the sequences that are not rows are updates of
        // the router-wide campaigns (counted below).
        let mut seqs: Vec<u64> = rows.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), rows.len(), "{} stored a sequence twice", d.id);
        assert!(seqs.iter().all(|&s| s <= produced), "{}", d.id);
        let mut ips: Vec<&str> =
            rows.iter().filter(|f| f["kind"] == "ssh.bruteforce").filter_map(|f| f["src_ip"].as_str()).collect();
        ips.sort_unstable();
        ips.dedup();
        assert_eq!(ips.len(), SOURCES, "one brute-force finding per source on {}", d.id);
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
