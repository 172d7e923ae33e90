//! The cross-built router binaries, run under qemu user-mode emulation
//! against a real hub: enrol, follow a file with a dropbear brute force, the
//! finding arrives. Big-endian MIPS and 32-bit ARM catch byte-order and
//! alignment bugs that x86 tests cannot.
//!
//! The binaries come from `scripts/build-openwrt.sh` (`dist/<target>/opmas-edge`).
//! With `OPMAS_REQUIRE_QEMU=1` (set by `.ci/run`) a missing binary or
//! emulator fails the test; otherwise it is skipped with a message, so a
//! developer without cross builds can still run `scripts/test`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use opmas_e2e::{dropbear_attack, wait_for, Edge, Hub};

fn dist(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist").join(target).join("opmas-edge")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(program)).find(|p| p.is_file())
}

/// Runs the brute-force scenario with `target`'s binary under `emulator`.
fn check(target: &str, emulator: &str, device_name: &str) {
    let required = std::env::var_os("OPMAS_REQUIRE_QEMU").is_some();
    let binary = dist(target);
    let Some(qemu) = which(emulator) else {
        assert!(!required, "{emulator} not found (apt-get install qemu-user-static)");
        eprintln!("skipped: {emulator} not installed");
        return;
    };
    if !binary.is_file() {
        assert!(!required, "{} missing: run scripts/build-openwrt.sh --target {target}", binary.display());
        eprintln!("skipped: {} not built", binary.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let device = hub.enrol(device_name).unwrap();
    let program: Vec<OsString> = vec![qemu.into(), binary.into()];
    let edge = Edge::start_program(dir.path(), &hub, &device, program).unwrap();
    wait_for(Duration::from_secs(30), "the emulated edge online", || {
        let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
        (d["status"] == "online").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n--- edge ---\n{}", edge.log()));
    edge.append(&dropbear_attack("203.0.113.99", 12)).unwrap();
    let found = wait_for(Duration::from_secs(20), "the finding from the emulated edge", || {
        let f = hub.findings(&format!("device={}&kind=ssh.bruteforce", device.id)).ok()?;
        (!f.is_empty()).then_some(f)
    })
    .unwrap_or_else(|e| panic!("{e}\n--- edge ---\n{}\n--- hub ---\n{}", edge.log(), hub.log()));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["src_ip"], "203.0.113.99");
    assert_eq!(found[0]["user"], "root");
    // The heartbeat, decoded from the big-endian/32-bit edge, makes sense.
    wait_for(Duration::from_secs(10), "a heartbeat counting the lines", || {
        let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
        (d["heartbeat"]["counters"]["lines"].as_u64()? >= 24).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));
}

#[test]
fn mips_big_endian_edge_delivers_a_brute_force_under_qemu() {
    check("mips-unknown-linux-musl", "qemu-mips-static", "gw-qemu-mips");
}

#[test]
fn armv7_edge_delivers_a_brute_force_under_qemu() {
    check("armv7-unknown-linux-musleabihf", "qemu-arm-static", "gw-qemu-armv7");
}
