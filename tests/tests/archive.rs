//! Retention and archival with the real binaries: findings a real edge
//! reported leave the database for a day file once older than the hot
//! window (the hub's clock moved 40 days on with Debian's faketime), and
//! `archive import` brings them back as they were.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

use opmas_e2e::{bin, dropbear_attack, wait_for, Edge, Hub};

fn hub_cli(hub: &Hub, faketime: Option<&str>, args: &[&OsStr]) -> Output {
    let mut cmd = match faketime {
        // libfaketime moves the wall clock only; the hub's timers keep the true one.
        Some(offset) => {
            let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
            assert!(std::path::Path::new(lib).exists(), "{lib} missing: apt-get install faketime (.ci/run does)");
            let mut c = Command::new(bin("opmas-hub"));
            c.env("LD_PRELOAD", lib).env("FAKETIME", offset).env("DONT_FAKE_MONOTONIC", "1");
            c
        }
        None => Command::new(bin("opmas-hub")),
    };
    cmd.args(args).arg("--data-dir").arg(&hub.data_dir).output().expect("opmas-hub")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_day_past_the_hot_window_is_archived_deleted_and_imported_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-arch").unwrap();
    let edge = Edge::start(dir.path(), &hub, &d).unwrap();
    wait_for(Duration::from_secs(30), "gw-arch online", || {
        hub.get("/devices/gw-arch").ok().filter(|(_, v)| v["heartbeat"].is_object()).map(|_| ())
    })
    .unwrap();
    edge.append(&dropbear_attack("198.51.100.71", 5)).unwrap();
    edge.append(&dropbear_attack("198.51.100.72", 5)).unwrap();
    let before = wait_for(Duration::from_secs(20), "two findings stored", || {
        hub.findings("kind=ssh.bruteforce").ok().filter(|f| f.len() == 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));
    let (_, a) = hub.get("/archive").unwrap();
    assert_eq!((a["hot_days"].as_u64(), a["days"].as_array().map(Vec::len)), (Some(30), Some(0)), "{a}");
    hub.kill();

    // Today is still hot: nothing to do.
    let now = hub_cli(&hub, None, &["archive".as_ref(), "retire".as_ref()]);
    assert!(now.status.success(), "{}", text(&now));
    assert!(text(&now).contains("0 day(s) archived"), "{}", text(&now));

    // 40 days on, today's findings are past the 30-day window.
    let later = hub_cli(&hub, Some("+40d"), &["archive".as_ref(), "retire".as_ref()]);
    assert!(later.status.success(), "{}", text(&later));
    assert!(
        text(&later).contains("1 day(s) archived") && text(&later).contains("findings older than 30 days deleted"),
        "{}",
        text(&later)
    );
    let archive = hub.data_dir.join("archive");
    let files: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.zst"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let list = hub_cli(&hub, None, &["archive".as_ref(), "list".as_ref()]);
    assert!(text(&list).contains("findings-") && text(&list).contains("        2 "), "{}", text(&list));

    hub.restart().unwrap();
    assert!(hub.findings("kind=ssh.bruteforce").unwrap().is_empty(), "deleted from the database");
    let (_, a) = hub.get("/archive").unwrap();
    assert_eq!(a["days"][0]["findings"], 2, "{a}");
    hub.kill();

    let import = hub_cli(&hub, None, &["archive".as_ref(), "import".as_ref(), files[0].as_os_str()]);
    assert!(text(&import).contains("imported 2 findings; 0 were there already"), "{}", text(&import));
    hub.restart().unwrap();
    let after = hub.findings("kind=ssh.bruteforce").unwrap();
    let key =
        |f: &serde_json::Value| (f["id"].clone(), f["src_ip"].clone(), f["summary"].clone(), f["evidence"].clone());
    let mut b: Vec<_> = before.iter().map(key).collect();
    let mut a: Vec<_> = after.iter().map(key).collect();
    b.sort_by_key(|k| k.0.as_i64());
    a.sort_by_key(|k| k.0.as_i64());
    assert_eq!(a, b, "the same findings, ids and evidence included");
}
