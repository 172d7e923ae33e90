//! The command lines as people meet them: counts in words, standard input,
//! a closed pipe, no colour codes in a file, and an edge pointed at a port
//! that is not MQTT.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use opmas_e2e::{bin, wait_for, Edge, Hub};

const LINE: &str =
    "Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Bad password attempt for 'root' from 203.0.113.7:52144\n";

#[test]
fn replay_and_explain_read_standard_input_and_count_in_words() {
    for (cmd, want) in [("replay", "1 line, 1 event, 0 findings"), ("explain", "1 line: 1 event")] {
        let mut child = Command::new(bin("opmas-edge"))
            .args([cmd, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(LINE.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd}: {err}");
        assert!(err.starts_with(want), "{cmd}: {err}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_explain_quietly() {
    let mut child = Command::new(bin("opmas-edge"))
        .arg("explain")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A writer of its own, as a shell pipeline has: the edge's output is
    // buffered, so it shows only after many lines.
    let writer = std::thread::spawn(move || {
        for _ in 0..200 {
            if stdin.write_all(LINE.repeat(1000).as_bytes()).is_err() {
                return;
            }
        }
    });
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    // The reader closes (as `| head -1` does); the writer keeps going.
    drop(stdout);
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}

#[test]
fn logs_written_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("opmas-hub"))
        .args(["device", "add", "gw-1", "--create-db", "--hub-url", "mqtt://hub:1883", "--data-dir"])
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.is_empty() && !err.contains('\x1b'), "{err:?}");
}

#[test]
fn an_edge_pointed_at_a_port_that_is_not_mqtt_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-wrong-port").unwrap();
    // The hub's HTTP port: something answers, but not in MQTT.
    let edge = Edge::start_url(dir.path(), &d, &format!("mqtt://{}", hub.http), "").unwrap();
    wait_for(Duration::from_secs(15), "the edge to explain", || {
        edge.log().contains("answered, but not in MQTT: is the port right").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.log()));
}

#[test]
fn hub_demo_runs_the_demo_binary_beside_it_or_says_where_it_is() {
    // Beside the workspace's binaries, `opmas-hub demo` is the demo.
    let out = Command::new(bin("opmas-hub")).args(["demo", "--", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("simulated routers"), "{text}");
    // A hub installed alone says what to run instead.
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("opmas-hub");
    std::fs::copy(bin("opmas-hub"), &alone).unwrap();
    let out = Command::new(&alone).arg("demo").env_remove("RUST_BACKTRACE").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the demo is its own binary, opmas-demo") && err.contains("cargo run --release -p opmas-demo"),
        "{err}"
    );
}
