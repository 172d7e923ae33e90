//! What the browser tests share (tests/tests/web*.rs): chromedriver on a
//! free port, a headless Chromium session, sign-in, clicks that wait for
//! the next page, form posts from the page (with its session cookie),
//! screenshots at laptop and phone widths into
//! `$CARGO_TARGET_TMPDIR/web-screens/`, and users made with the CLI.
// Each test file uses its own part of this.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use opmas_e2e::{bin, free_addr, wait_for, Hub, Proc};
use serde_json::{json, Value};

/// chromedriver on a free loopback port, or a panic that says how to get it.
pub fn chromedriver(dir: &Path) -> (Proc, SocketAddr) {
    let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromedriver is needed: apt-get install chromium chromium-driver (.ci/run does)");
    let addr = free_addr();
    let mut cmd = Command::new(path);
    cmd.arg(format!("--port={}", addr.port())).stdin(Stdio::null());
    let proc = Proc::spawn(cmd, dir.join("chromedriver.log")).unwrap();
    wait_for(Duration::from_secs(20), "chromedriver", || std::net::TcpStream::connect(addr).ok()).unwrap();
    (proc, addr)
}

pub async fn browser(driver: SocketAddr) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"] }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{driver}"))
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Where screenshots go.
pub fn screens() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the current page at laptop and phone widths (`whole`:
/// the whole page, however long); checks that nothing scrolls sideways on
/// the phone.
pub async fn shoot(c: &Client, name: &str, whole: bool) {
    for (w, h, label) in [(1280, 900, "laptop"), (390, 844, "phone")] {
        c.set_window_size(w, h).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if label == "phone" {
            let wide =
                c.execute("return [document.documentElement.scrollWidth, window.innerWidth];", vec![]).await.unwrap();
            let (sw, iw) = (wide[0].as_i64().unwrap(), wide[1].as_i64().unwrap());
            assert!(sw <= iw, "{name} scrolls sideways on a phone: {sw} px wide in a {iw} px window");
        }
        if whole {
            // A long page: the window grows to it, so the screenshot shows all of it.
            let tall = c.execute("return document.documentElement.scrollHeight;", vec![]).await.unwrap();
            let tall = tall.as_u64().unwrap_or(u64::from(h)).clamp(u64::from(h), 6000) as u32;
            c.set_window_size(w, tall + 140).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let png = c.screenshot().await.unwrap();
        let path = screens().join(format!("{name}-{label}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
    c.set_window_size(1280, 900).await.unwrap();
}

/// Clicks `css` and waits until the browser has loaded the next page.
pub async fn click_away(c: &Client, css: &str) {
    c.execute("window.stillHere = true;", vec![]).await.unwrap();
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    for _ in 0..100 {
        let here = c.execute("return window.stillHere === true && document.readyState === 'complete';", vec![]).await;
        if matches!(here, Ok(serde_json::Value::Bool(false))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("clicking {css} led nowhere");
}

pub async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/signin")).await.unwrap();
    c.find(Locator::Css("input[name=name]")).await.unwrap().send_keys(name).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    click_away(c, "form button[type=submit]").await;
}

pub async fn text(c: &Client, css: &str) -> String {
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// How many elements match `css`.
pub async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

/// The status of a POST the page itself sends with `fetch` (cookies and all),
/// with the form fields `fields` (JSON object).
pub async fn page_post(c: &Client, path: &str, fields: Value) -> i64 {
    let status = c
        .execute_async(
            "const [path, fields, done] = arguments;
             fetch(path, { method: 'POST', body: new URLSearchParams(fields), redirect: 'manual' })
               .then(r => done(r.status), e => done(String(e)));",
            vec![json!(path), fields],
        )
        .await
        .unwrap();
    status.as_i64().unwrap_or_else(|| panic!("fetch {path}: {status}"))
}

/// The page's CSRF token (the sign-out form's).
pub async fn csrf(c: &Client) -> String {
    c.find(Locator::Css("form.signout input[name=csrf]")).await.unwrap().attr("value").await.unwrap().unwrap()
}

pub fn add_user(hub: &Hub, name: &str, role: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(bin("opmas-hub"))
        .args(["user", "add", name, "--role", role, "--password-stdin", "--data-dir"])
        .arg(&hub.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
