//! One edge reading a UDP syslog source (as OpenWRT's logd sends with
//! `log_ip`/`log_port`) reports findings of all four agents to the hub.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use opmas_e2e::{free_udp_addr, wait_for, Edge, Hub};

/// Now as RFC 3164 prints it: `Nov 25 17:43:57`.
fn rfc3164_now() -> String {
    let out = Command::new("date").args(["-u", "+%b %e %H:%M:%S"]).output().expect("date(1)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn findings_of_all_four_agents_arrive_from_one_udp_source() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let device = hub.enrol("gw-udp-1").unwrap();
    let listen = free_udp_addr();
    let sections = format!("config source\n\toption type 'udp'\n\toption listen '{listen}'\n");
    let edge = Edge::start_with(dir.path(), &hub, &device, &sections, dir.path().join("unused.log")).unwrap();
    wait_for(Duration::from_secs(10), "the edge online", || {
        let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
        (d["status"] == "online").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));

    let ts = rfc3164_now();
    let mut frames = Vec::new();
    // Security: an SSH brute force.
    for i in 0..8 {
        frames.push(format!(
            "<84>{ts} OpenWrt dropbear[{}]: Bad password attempt for 'root' from 203.0.113.50:{}",
            3000 + i,
            40000 + i
        ));
    }
    // WiFi: one station failing to authenticate again and again, and a deauth storm across stations.
    for _ in 0..12 {
        frames.push(format!("<29>{ts} OpenWrt hostapd: wlan1: STA 9e:e8:69:72:c4:54 IEEE 802.11: did not acknowledge authentication response"));
    }
    for i in 0..60 {
        frames.push(format!("<30>{ts} OpenWrt hostapd: wlan0: STA 5c:cf:7f:94:f6:{i:02x} IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)"));
    }
    // Network: a port scan from one address.
    for port in 1..=120 {
        frames.push(format!("<4>{ts} OpenWrt kernel: [311432.069497] reject wan in: IN=eth1 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=198.51.100.77 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=56 ID=13625 PROTO=TCP SPT=51515 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0"));
    }
    // System: the OOM killer.
    frames.push(format!("<3>{ts} OpenWrt kernel: [ 4242.123456] Out of memory: Killed process 4541 (v2ray) total-vm:812345kB, anon-rss:301234kB, file-rss:0kB, shmem-rss:0kB"));

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Several frames per datagram, as some senders batch them.
    for chunk in frames.chunks(3) {
        sock.send_to(chunk.join("\n").as_bytes(), listen).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }

    let agents = wait_for(Duration::from_secs(10), "findings of all four agents", || {
        let findings = hub.findings(&format!("device={}", device.id)).ok()?;
        let agents: BTreeSet<String> = findings.iter().filter_map(|f| f["agent"].as_str().map(str::to_owned)).collect();
        (agents.len() == 4).then_some(findings)
    })
    .unwrap_or_else(|e| {
        panic!("{e}\nfindings: {:#?}\n--- edge ---\n{}", hub.findings("limit=100").unwrap(), edge.log())
    });
    let kinds: BTreeSet<&str> = agents.iter().filter_map(|f| f["kind"].as_str()).collect();
    for kind in ["ssh.bruteforce", "net.port_scan", "sys.oom_kill"] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    let scan = agents.iter().find(|f| f["kind"] == "net.port_scan").unwrap();
    assert_eq!(scan["src_ip"], "198.51.100.77");
    let oom = agents.iter().find(|f| f["kind"] == "sys.oom_kill").unwrap();
    assert_eq!(oom["service"], "v2ray");
}
