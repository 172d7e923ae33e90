//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`) against a real hub fed by a
//! real edge. Sign in, see the fleet, watch a finding arrive without a
//! reload and open it; a viewer is refused writes; forms without their CSRF
//! token are rejected; wrong passwords are throttled; sign-out ends the
//! session. Screenshots at laptop and phone widths go to
//! `$CARGO_TARGET_TMPDIR/web-screens/` and are named in the log.

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::Locator;
use opmas_e2e::{dropbear_attack, wait_for, Edge, Hub};
use serde_json::json;

mod support;
use support::browser::*;

#[test]
fn an_operator_watches_the_fleet_live_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let base = format!("http://{}", hub.http);
    let device = hub.enrol("gw-lab").unwrap();
    let edge = Edge::start(dir.path(), &hub, &device).unwrap();
    wait_for(Duration::from_secs(60), "the device online, with a heartbeat", || {
        hub.get("/devices/gw-lab").ok().filter(|(_, v)| v["status"] == "online" && v["heartbeat"].is_object())
    })
    .unwrap();
    // One finding before anyone looks, so the pages have something to show.
    edge.append(&dropbear_attack("198.51.100.7", 6)).unwrap();
    wait_for(Duration::from_secs(30), "the first finding", || {
        hub.findings("kind=ssh.bruteforce").ok().filter(|f| !f.is_empty())
    })
    .unwrap();
    let admin_password = std::fs::read_to_string(hub.data_dir.join("admin.password")).unwrap().trim().to_owned();
    add_user(&hub, "vera", "viewer", "viewer password 1");
    add_user(&hub, "tess", "viewer", "throttled password");

    let (_driver, driver_addr) = chromedriver(dir.path());
    // The hub's helpers block; the browser's client is async: it runs on a
    // runtime of its own, and the hub and edge outlive it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(in_the_browser(driver_addr, &base, &edge, &admin_password));
    drop(edge);
}

async fn in_the_browser(driver_addr: SocketAddr, base: &str, edge: &Edge, admin_password: &str) {
    let base = base.to_owned();
    let c = browser(driver_addr).await;

    // Signed out, a page sends the person to sign in, and back afterwards.
    c.goto(&format!("{base}/findings")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/signin"));
    shoot(&c, "signin", false).await;
    sign_in(&c, &base, "admin", "not the password").await;
    assert_eq!(text(&c, "#signin-error").await, "wrong user name or password");
    sign_in(&c, &base, "admin", admin_password).await;
    assert_eq!(text(&c, "h1").await, "Fleet");

    // The fleet: the device, its state, its agents, totals, a chart.
    let row = text(&c, "#device-table tbody tr").await;
    assert!(row.contains("gw-lab"), "{row}");
    let totals = text(&c, "section.totals").await;
    assert!(totals.contains("devices"), "{totals}");
    assert!(c.find(Locator::Css("figure.chart svg rect.s-security")).await.is_ok(), "the chart shows the finding");
    shoot(&c, "overview", false).await;

    // The device page.
    click_away(&c, "#device-table a[href='/devices/gw-lab']").await;
    assert!(text(&c, "h1").await.starts_with("gw-lab"));
    shoot(&c, "device", false).await;

    // Findings: a new one appears without a reload.
    c.goto(&format!("{base}/findings")).await.unwrap();
    c.wait().for_element(Locator::Css("#live-status[data-state=live]")).await.unwrap();
    c.execute("window.notReloaded = true;", vec![]).await.unwrap();
    let before = c.find_all(Locator::Css("#findings tbody tr[data-id]")).await.unwrap().len();
    edge.append(&dropbear_attack("203.0.113.99", 6)).unwrap();
    let live = c
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("#findings tbody tr.fresh[data-id]"))
        .await
        .expect("a new finding row, live");
    assert!(live.text().await.unwrap().contains("203.0.113.99"));
    let after = c.find_all(Locator::Css("#findings tbody tr[data-id]")).await.unwrap().len();
    assert_eq!(after, before + 1);
    assert_eq!(c.execute("return window.notReloaded === true;", vec![]).await.unwrap(), json!(true));
    shoot(&c, "findings", false).await;
    let id = live.attr("data-id").await.unwrap().unwrap();
    click_away(&c, &format!("#findings tr[data-id='{id}'] a")).await;
    assert!(text(&c, "h1").await.starts_with("ssh.bruteforce on gw-lab"));
    assert!(text(&c, "pre.evidence").await.contains("203.0.113.99"));
    shoot(&c, "finding", false).await;

    // An agent stopped with its button (its desired state, in the device's
    // configuration): the next heartbeat shows it stopped; started again
    // the same way.
    for (action, after) in [("stop", "stopped"), ("start", "running")] {
        c.goto(&format!("{base}/devices/gw-lab")).await.unwrap();
        click_away(&c, &format!("#agents tr[data-agent=security] form[action$='/{action}'] button")).await;
        let notice = text(&c, "#command-notice").await;
        assert!(notice.starts_with("Configuration version "), "a notice names the change: {notice}");
        let mut seen = String::new();
        for _ in 0..40 {
            c.goto(&format!("{base}/devices/gw-lab")).await.unwrap();
            let row = text(&c, "#agents tr[data-agent=security]").await;
            if row.contains(after) {
                seen.clear();
                break;
            }
            seen = row;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(seen.is_empty(), "{action}: the agent did not become {after}: {seen}");
        let sync = text(&c, "#config-sync").await;
        assert!(sync.contains("in sync"), "the device runs its configuration: {sync}");
    }
    shoot(&c, "device-commands", false).await;

    // A threshold edited in the form built from the schema: a bad value is
    // named and nothing is stored; a good one is previewed as a diff, then
    // saved. The router is frozen meanwhile, so the page shows the device
    // pending until it runs the change, then in sync.
    c.goto(&format!("{base}/config/security?scope=device:gw-lab")).await.unwrap();
    let field = c.find(Locator::Css("input[name='p.ssh_failures']")).await.unwrap();
    assert_eq!(field.attr("max").await.unwrap().as_deref(), Some("64"), "the schema's range");
    field.clear().await.unwrap();
    field.send_keys("1").await.unwrap();
    // The browser holds an out-of-range value back (the range is the
    // schema's); the hub would refuse it too (unit-tested in web/config.rs).
    let check = "return document.querySelector(\"input[name='p.ssh_failures']\").validity.rangeUnderflow;";
    assert_eq!(c.execute(check, vec![]).await.unwrap(), json!(true));
    assert!(c.find(Locator::Css("#save")).await.is_err(), "nothing to save before a preview");
    let field = c.find(Locator::Css("input[name='p.ssh_failures']")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("3").await.unwrap();
    click_away(&c, "button[value=preview]").await;
    let diff = text(&c, "#preview tr[data-field=ssh_failures]").await;
    assert!(diff.contains("inherited") && diff.contains('3'), "{diff}");
    shoot(&c, "config-preview", true).await;
    let pid = edge.proc.as_ref().unwrap().pid().to_string();
    let signal = |s: &str| assert!(std::process::Command::new("kill").args([s, &pid]).status().unwrap().success());
    signal("-STOP");
    click_away(&c, "#save").await;
    let saved = text(&c, "#saved").await;
    let pending = c.find(Locator::Css("#sync tr[data-device=gw-lab]")).await.unwrap().attr("data-sync").await.unwrap();
    signal("-CONT");
    assert!(saved.starts_with("Saved as version "), "{saved}");
    assert_eq!(pending.as_deref(), Some("pending"), "a frozen router has not run it yet");
    shoot(&c, "config-pending", false).await;
    let mut sync = None;
    for _ in 0..60 {
        c.refresh().await.unwrap();
        sync = c.find(Locator::Css("#sync tr[data-device=gw-lab]")).await.unwrap().attr("data-sync").await.unwrap();
        if sync.as_deref() == Some("in_sync") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(sync.as_deref(), Some("in_sync"), "the router runs the new threshold");
    assert!(text(&c, "#history").await.contains("ssh_failures"), "the change is in the history");
    shoot(&c, "config-in-sync", false).await;
    c.goto(&format!("{base}/config")).await.unwrap();
    let fleet = text(&c, "#fleet-agents tr[data-device=gw-lab]").await;
    assert!(fleet.contains("running"), "{fleet}");
    shoot(&c, "config-fleet", false).await;

    // A form post without the CSRF token is refused, and changes nothing.
    assert_eq!(page_post(&c, "/admin/users", json!({ "name": "mallory", "role": "admin" })).await, 403);
    assert_eq!(page_post(&c, "/signout", json!({})).await, 403);
    c.goto(&format!("{base}/admin/users")).await.unwrap();
    let users = text(&c, "#users").await;
    assert!(!users.contains("mallory") && users.contains("vera"), "{users}");

    // Sign-out ends the session: the old cookie no longer opens anything.
    let cookie = c.get_named_cookie("opmas_session").await.unwrap().value().to_owned();
    click_away(&c, "form.signout button").await;
    assert!(c.current_url().await.unwrap().path().starts_with("/signin"));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let old = http.get(format!("{base}/")).header("cookie", format!("opmas_session={cookie}")).send().await.unwrap();
    assert_eq!(old.status(), 303, "a signed-out session's cookie is sent to sign in");
    let api = http.get(format!("{base}/api/v1/devices")).header("cookie", format!("opmas_session={cookie}"));
    assert_eq!(api.send().await.unwrap().status(), 401);

    // A viewer sees no admin pages and is refused writes, in the UI and the API.
    sign_in(&c, &base, "vera", "viewer password 1").await;
    assert_eq!(text(&c, "h1").await, "Fleet");
    assert!(c.find(Locator::Css("header nav a[href='/admin/users']")).await.is_err(), "no Users link for a viewer");
    c.goto(&format!("{base}/devices/gw-lab")).await.unwrap();
    assert!(c.find(Locator::Css("#agents form")).await.is_err(), "no lifecycle buttons for a viewer");
    c.goto(&format!("{base}/config/security?scope=device:gw-lab")).await.unwrap();
    assert!(text(&c, "#layer-form").await.contains("Viewers see the configuration"));
    assert!(c.find(Locator::Css("button[value=preview]")).await.is_err(), "no preview for a viewer");
    assert!(c.find(Locator::Css("#history form")).await.is_err(), "no restore for a viewer");
    c.goto(&format!("{base}/")).await.unwrap();
    let token = csrf(&c).await;
    assert_eq!(page_post(&c, "/admin/users", json!({ "csrf": token, "name": "eve", "role": "admin" })).await, 403);
    assert_eq!(page_post(&c, "/admin/tokens", json!({ "csrf": token, "name": "mine" })).await, 403);
    assert_eq!(page_post(&c, "/devices/gw-lab/agents/security/stop", json!({ "csrf": token })).await, 403);
    let api_status = c
        .execute_async(
            "const [csrf, done] = arguments;
             fetch('/api/v1/devices/gw-lab', { method: 'DELETE', headers: { 'X-CSRF-Token': csrf } })
               .then(r => r.json().then(b => done([r.status, b.error])));",
            vec![json!(token)],
        )
        .await
        .unwrap();
    assert_eq!(api_status[0], json!(403), "{api_status}");
    assert!(api_status[1].as_str().unwrap().contains("role viewer"), "{api_status}");
    c.goto(&format!("{base}/admin/users")).await.unwrap();
    assert_eq!(text(&c, "h1").await, "Not allowed");
    c.goto(&format!("{base}/")).await.unwrap();
    click_away(&c, "form.signout button").await;

    // Wrong passwords are throttled: after five, even the right one waits.
    for _ in 0..5 {
        sign_in(&c, &base, "tess", "wrong password!").await;
        assert_eq!(text(&c, "#signin-error").await, "wrong user name or password");
    }
    sign_in(&c, &base, "tess", "throttled password").await;
    assert!(text(&c, "#signin-error").await.starts_with("Too many failed sign-ins"));

    c.close().await.unwrap();
}
