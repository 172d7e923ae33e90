//! The README's first command: `opmas-demo` on embedded defaults keeps
//! to loopback and its own data directory, and its simulated routers'
//! findings reach the API; it opens onto the web UI.

use std::process::{Command, Stdio};
use std::time::Duration;

use opmas_e2e::{bin, free_addr, wait_for};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_keeps_to_loopback_and_its_own_data_directory_and_shows_findings() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_addr();
    let log = dir.path().join("demo.log");
    let mut cmd = Command::new(bin("opmas-demo"));
    cmd.current_dir(dir.path())
        .args(["--http-listen", &http.to_string()])
        .env_remove("OPMAS_DATA_DIR")
        .env_remove("OPMAS_MQTT_LISTEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("demo.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    // The default MQTT address is 127.0.0.1:1883; when something else holds
    // it on this machine, only the data directory default is checked.
    let default_free = std::net::TcpListener::bind("127.0.0.1:1883").is_ok();
    if !default_free {
        eprintln!("127.0.0.1:1883 is taken here: the demo gets another port and its default address is not checked");
        cmd.args(["--mqtt-listen", &free_addr().to_string()]);
    }
    let _demo = Killed(cmd.spawn().unwrap());
    let data = dir.path().join("opmas-demo-data");
    let client = reqwest::blocking::Client::new();
    let token = wait_for(Duration::from_secs(30), "the demo's admin token", || {
        std::fs::read_to_string(data.join("admin.token")).ok().filter(|t| !t.trim().is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    let findings = wait_for(Duration::from_secs(90), "the demo fleet's first findings", || {
        let v: serde_json::Value = client
            .get(format!("http://{http}/api/v1/findings?limit=5"))
            .bearer_auth(token.trim())
            .send()
            .ok()?
            .json()
            .ok()?;
        v["findings"].as_array().filter(|f| !f.is_empty()).map(|f| f.len())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    assert!(findings > 0);
    assert!(!dir.path().join("opmas-data").exists(), "nothing left where a real hub would look");
    let text = std::fs::read_to_string(&log).unwrap();
    if default_free {
        assert!(text.contains("embedded MQTT broker listening listen=127.0.0.1:1883"), "{text}");
    }
    // It opens onto the web UI: the URL and where the password is.
    let out = std::fs::read_to_string(dir.path().join("demo.out")).unwrap();
    assert!(out.contains(&format!("web UI: http://{http}/")), "{out}");
    assert!(out.contains("sign in as admin, with the password in opmas-demo-data/admin.password"), "{out}");
    assert!(data.join("admin.password").exists());
    let no_redirect = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect.get(format!("http://{http}/")).send().unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/signin?next=%2F");
}
