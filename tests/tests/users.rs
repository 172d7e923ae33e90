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

#[test]
fn a_browser_session_signs_in_needs_its_csrf_token_is_throttled_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let admin_password = std::fs::read_to_string(hub.data_dir.join("admin.password")).unwrap().trim().to_owned();
    let d = hub.enrol("gw-session").unwrap();
    let http = reqwest::blocking::Client::new();
    let url = |path: &str| format!("http://{}/api/v1{path}", hub.http);
    let sign_in = |name: &str, password: &str| {
        http.post(url("/session")).json(&serde_json::json!({ "name": name, "password": password })).send().unwrap()
    };

    let resp = sign_in("admin", &admin_password);
    assert_eq!(resp.status().as_u16(), 200);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: serde_json::Value = resp.json().unwrap();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    assert_eq!((body["user"].as_str(), body["role"].as_str()), (Some("admin"), Some("admin")), "{body}");

    let with_cookie = |req: reqwest::blocking::RequestBuilder| req.header("cookie", &cookie).send().unwrap();
    assert_eq!(with_cookie(http.get(url("/devices"))).status().as_u16(), 200);
    // A write with the cookie alone (what a forged cross-site form would send) is refused.
    let resp = with_cookie(http.delete(url(&format!("/devices/{}", d.id))));
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().unwrap().contains("CSRF"));
    let resp = with_cookie(http.delete(url(&format!("/devices/{}", d.id))).header("x-csrf-token", &csrf));
    assert_eq!(resp.status().as_u16(), 204, "with its CSRF token the admin's session may");

    // Wrong passwords: one generic answer, whether the name exists or not; then throttled.
    let unknown = sign_in("nobody", "whatever it is here");
    let wrong = sign_in("admin", "not the password at all");
    assert_eq!((unknown.status().as_u16(), wrong.status().as_u16()), (401, 401));
    let (a, b) = (unknown.text().unwrap(), wrong.text().unwrap());
    assert_eq!(a, b, "the answer does not tell which was wrong");
    for _ in 0..4 {
        sign_in("admin", "not the password at all");
    }
    let resp = sign_in("admin", &admin_password);
    assert_eq!(resp.status().as_u16(), 429, "five failures lock the name, even for the right password");
    assert!(resp.headers().get("retry-after").is_some());

    // Signing out ends the session on the server: the same cookie is refused.
    let resp = with_cookie(http.delete(url("/session")).header("x-csrf-token", &csrf));
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(with_cookie(http.get(url("/devices"))).status().as_u16(), 401);
}

#[test]
fn metrics_are_open_to_the_hubs_own_machine() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    hub.enrol("gw-metrics").unwrap();
    let resp = reqwest::blocking::get(format!("http://{}/metrics", hub.http)).unwrap();
    assert_eq!(resp.status().as_u16(), 200, "from loopback without a token");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().unwrap();
    assert!(text.contains("opmas_devices{status=\"never\"} 1"), "{text}");
    assert!(text.contains("opmas_auth_refused_total 0"), "{text}");
}
