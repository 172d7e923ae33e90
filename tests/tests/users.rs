//! Accounts from the command line, as an operator meets them: the first
//! start creates `admin` with a private password file, `user add|passwd|list`
//! work on the running hub's database, and mistakes are named.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use opmas_e2e::{bin, Hub};

/// `opmas-hub user ARGS --data-dir <hub's>`, with `stdin` as its input.
fn user(hub: &Hub, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(bin("opmas-hub"))
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(&hub.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_first_start_creates_admin_and_users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let file = hub.data_dir.join("admin.password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the hub's user may read it");
    assert!(std::fs::read_to_string(&file).unwrap().trim().len() >= 20);
    assert!(hub.log().contains("created the user admin (first start); its password is in this file"), "{}", hub.log());

    let (ok, out, err) = user(&hub, &["add", "alice", "--role", "viewer"], "");
    assert!(ok, "{err}");
    assert!(err.contains("using the hub database"), "{err}");
    let password = out.lines().find_map(|l| l.strip_prefix("password: ")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(password.len(), 24, "{out}");

    let (ok, out, err) =
        user(&hub, &["add", "bob", "--role", "operator", "--password-stdin"], "a long enough password\n");
    assert!(ok && !out.contains("password:"), "a given password is not printed: {out}{err}");

    let (ok, out, _) = user(&hub, &["list"], "");
    assert!(ok);
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(names, vec![("admin", "admin"), ("alice", "viewer"), ("bob", "operator")], "{out}");

    // Mistakes are named, and change nothing.
    let (ok, _, err) = user(&hub, &["add", "carol", "--role", "root"], "");
    assert!(!ok && err.contains("unknown role \"root\"; roles are admin, operator, viewer"), "{err}");
    let (ok, _, err) = user(&hub, &["add", "alice", "--role", "admin"], "");
    assert!(!ok && err.contains("user \"alice\" already exists"), "{err}");
    let (ok, _, err) = user(&hub, &["add", "Dave", "--role", "viewer"], "");
    assert!(!ok && err.contains("not a user name"), "{err}");
    let (ok, _, err) = user(&hub, &["passwd", "alice", "--password-stdin"], "short\n");
    assert!(!ok && err.contains("too short (5 characters; at least 12)"), "{err}");
    let (ok, _, err) = user(&hub, &["passwd", "nobody"], "");
    assert!(!ok && err.contains("no user \"nobody\""), "{err}");
    let (ok, out, err) = user(&hub, &["passwd", "alice"], "");
    assert!(ok && out.contains("password: "), "{out}{err}");
}

#[test]
fn user_commands_refuse_to_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("opmas-hub"))
        .args(["user", "list", "--data-dir"])
        .arg(dir.path().join("nothing-here"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no hub database at"), "{err}");
}

#[test]
fn a_token_acts_with_its_users_role_and_stops_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let d = hub.enrol("gw-roles").unwrap();
    assert!(user(&hub, &["add", "vera", "--role", "viewer"], "").0);
    let token_cmd = |args: &[&str]| {
        let out = Command::new(bin("opmas-hub"))
            .arg("token")
            .args(args)
            .arg("--data-dir")
            .arg(&hub.data_dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = token_cmd(&["create", "--user", "vera", "--name", "laptop"]);
    assert!(ok, "{err}");
    let token = out
        .lines()
        .find(|l| l.len() == 64 && l.bytes().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("{out}"));
    let id: String = out.split_whitespace().nth(1).unwrap().to_owned();

    let http = reqwest::blocking::Client::new();
    let api = |method: reqwest::Method, path: &str, token: &str| {
        let resp = http.request(method, format!("http://{}/api/v1{path}", hub.http)).bearer_auth(token).send().unwrap();
        (resp.status().as_u16(), resp.json::<serde_json::Value>().unwrap_or_default())
    };
    // A viewer reads ...
    assert_eq!(api(reqwest::Method::GET, "/devices", token).0, 200);
    // ... and is refused a write, with a JSON body that says why.
    let (status, body) = api(reqwest::Method::DELETE, &format!("/devices/{}", d.id), token);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("role viewer"), "{body}");
    assert_eq!(
        api(reqwest::Method::GET, &format!("/devices/{}", d.id), &hub.token).0,
        200,
        "the device is still there"
    );

    let (ok, out, _) = token_cmd(&["list"]);
    assert!(ok && out.contains("laptop") && out.contains("vera") && out.contains("viewer"), "{out}");
    assert!(!out.contains(token), "tokens are never listed");
    assert!(token_cmd(&["revoke", &id]).0);
    assert_eq!(api(reqwest::Method::GET, "/devices", token).0, 401, "a revoked token is refused at once");
    let (ok, _, err) = token_cmd(&["create", "--user", "nobody"]);
    assert!(!ok && err.contains("no user \"nobody\""), "{err}");
}
