//! The alerting pages in a real browser (headless Chromium over WebDriver,
//! as tests/tests/web_incidents.rs) against a real hub fed by a real edge:
//! a brute force and a login from one address open an incident of the
//! shipped rule bruteforce-then-login, told to the hub's log and to a
//! webhook nobody answers, so the Alerting page has
//! a receiver that works and one failing now. An admin reads their health
//! and the notifications, edits the alerting YAML with a mistake (named by
//! its path, the text kept), fixes it and saves, and the API shows the
//! change with the secrets still hidden; on Silences adds a silence,
//! sees it listed by the page and the API, and ends it with its button;
//! adds a maintenance window; fills a silence in from an incident's
//! "Silence this". A viewer sees no forms and is refused the posts.
//! Screenshots at laptop and phone widths go to
//! `$CARGO_TARGET_TMPDIR/web-screens/`, named `alerting-*`, and are named
//! in the log.

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::{Client, Locator};
use opmas_e2e::{dropbear_attack, free_addr, now_logread, wait_for, Edge, Hub};
use serde_json::json;

mod support;
use support::browser::*;

/// The address brute-forcing the router.
const ATTACKER: &str = "198.51.100.99";
/// Secrets of the alerting document: never in a page, nor in the API's answers.
const SLACK_URL: &str = "https://hooks.example.net/T000/B000/slack-very-secret";
const HOOK_SECRET: &str = "hook-secret-never-shown";

/// The value of the form field `css`, as the browser holds it.
async fn value(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

/// Types `text` into the field `css` in place of what is there.
async fn fill(c: &Client, css: &str, text: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
    assert_eq!(value(c, css).await, text, "{css} holds what was typed");
}

/// Checks that neither secret is anywhere in the page's HTML.
async fn no_secrets(c: &Client, page: &str) {
    let html = c.source().await.unwrap();
    for secret in [SLACK_URL, HOOK_SECRET] {
        assert!(!html.contains(secret), "{page} shows a secret: {secret}");
    }
}

/// What the browser part found, for the checks through the API after it.
struct Seen {
    /// The silence ended with its button.
    ended: i64,
}

#[test]
fn an_admin_edits_alerting_and_silences_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let base = format!("http://{}", hub.http);
    // The shipped rule bruteforce-then-login's incidents go to the log and
    // to a webhook on a port nobody listens on: one receiver that works,
    // one failing now.
    let nobody = free_addr();
    let alerting = json!({
        "external_url": base,
        "receivers": [
            { "name": "hub-log", "log": {} },
            { "name": "chat", "slack": { "url": SLACK_URL } },
            { "name": "soc", "webhook": { "url": format!("http://{nobody}/opmas"), "secret": HOOK_SECRET } },
        ],
        "route": { "receivers": ["hub-log"], "group_by": ["rule"], "group_wait": "1s",
            "routes": [{ "match": { "rule": ["bruteforce-then-login"] }, "receivers": ["soc", "hub-log"] }] },
    });
    let (status, v) = hub.request("PUT", "/alerting", None, Some(&alerting)).unwrap();
    assert_eq!(status, 200, "{v}");

    let d = hub.enrol("gw-a").unwrap();
    let edge = Edge::start(dir.path(), &hub, &d).unwrap();
    wait_for(Duration::from_secs(60), "the router online", || {
        let (_, v) = hub.get("/devices").ok()?;
        (v["devices"].as_array()?.iter().any(|d| d["status"] == "online")).then_some(())
    })
    .unwrap();
    // A brute force, then a login from the same address.
    let mut lines = dropbear_attack(ATTACKER, 5);
    lines.push(format!(
        "{} authpriv.notice dropbear[29999]: Password auth succeeded for 'root' from {ATTACKER}:50999",
        now_logread()
    ));
    edge.append(&lines).unwrap();
    let key = format!("src_ip={ATTACKER}");
    let incident = wait_for(Duration::from_secs(60), "the incident", || {
        let (_, v) = hub.get("/incidents?rule=bruteforce-then-login").ok()?;
        v["incidents"].as_array()?.iter().find(|i| i["key"] == key.as_str()).cloned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let id = incident["id"].as_i64().unwrap();
    wait_for(Duration::from_secs(30), "told to the log, and the webhook failing", || {
        let (_, v) = hub.get("/alerting/notifications").ok()?;
        let n = v["notifications"].as_array()?;
        let sent = n.iter().any(|n| n["receiver"] == "hub-log" && n["state"] == "sent");
        let failing =
            n.iter().any(|n| n["receiver"] == "soc" && n["state"] == "pending" && n["last_error"].is_string());
        (sent && failing).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let admin_password = std::fs::read_to_string(hub.data_dir.join("admin.password")).unwrap().trim().to_owned();
    add_user(&hub, "vera", "viewer", "viewer password 1");

    let (_driver, driver_addr) = chromedriver(dir.path());
    // The hub's helpers block; the browser's client is async: it runs on a
    // runtime of its own, and the hub and edge outlive it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = rt.block_on(in_the_browser(driver_addr, &hub, &base, id, &admin_password));

    // The silences as the API has them: the one ended is gone, the one
    // filled in from the incident is there, and so is the window.
    let (_, v) = hub.get("/silences").unwrap();
    let silences = v["silences"].as_array().unwrap();
    assert!(silences.iter().all(|s| s["id"] != seen.ended), "the ended silence is not listed: {v}");
    assert!(
        silences
            .iter()
            .any(|s| s["matchers"]["rule"] == json!(["bruteforce-then-login"]) && s["matchers"]["key"] == json!([key])),
        "{v}"
    );
    let (_, v) = hub.get("/maintenance").unwrap();
    let w = &v["windows"][0];
    assert_eq!(
        (&w["name"], &w["days"], &w["start_min"]),
        (&json!("backup window"), &json!(["sun"]), &json!(120)),
        "{v}"
    );
    drop(edge);
}

async fn in_the_browser(driver_addr: SocketAddr, hub: &Hub, base: &str, id: i64, admin_password: &str) -> Seen {
    let c = browser(driver_addr).await;
    sign_in(&c, base, "admin", admin_password).await;

    // Receivers with their health, and the notifications.
    click_away(&c, "header nav a[href='/alerting']").await;
    assert_eq!(text(&c, "h1").await, "Alerting");
    let soc = text(&c, "#receivers tr[data-receiver=soc]").await;
    assert!(soc.contains("webhook") && soc.contains("failing") && soc.contains("attempt"), "{soc}");
    let log = text(&c, "#receivers tr[data-receiver=hub-log]").await;
    assert!(log.contains("log") && log.contains("ok"), "{log}");
    assert_eq!(count(&c, "#receivers tr[data-receiver=soc][data-failing=true]").await, 1);
    let chat = text(&c, "#receivers tr[data-receiver=chat]").await;
    assert!(chat.contains("slack") && chat.contains("nothing sent yet"), "{chat}");
    let told = text(&c, "#notifications tbody").await;
    assert!(told.contains("bruteforce-then-login") && told.contains("firing") && told.contains("sent"), "{told}");
    assert!(count(&c, "#notifications tr[data-state=pending]").await >= 1, "{told}");
    let yaml = value(&c, "#yaml").await;
    assert!(yaml.contains("url: <secret>") && yaml.contains("secret: <secret>"), "{yaml}");
    no_secrets(&c, "/alerting").await;
    shoot(&c, "alerting", true).await;

    // A route to a receiver that does not exist: named by its path, the text kept.
    assert_eq!(yaml.matches("- soc\n").count(), 1, "the route's receiver, once: {yaml}");
    let bad = yaml.replace("- soc\n", "- pager\n");
    fill(&c, "#yaml", &bad).await;
    click_away(&c, "#save").await;
    let error = text(&c, "#errors li[data-path='route.routes[0].receivers[0]']").await;
    assert!(error.contains("no receiver \"pager\"") && error.contains("soc"), "{error}");
    assert_eq!(value(&c, "#yaml").await, bad, "the text is kept as typed");
    no_secrets(&c, "/alerting (refused)").await;
    shoot(&c, "alerting-error", true).await;
    // Fixed, with a second log receiver: saved.
    let good =
        yaml.replace("receivers:\n  - name: hub-log", "receivers:\n  - name: audit\n    log: {}\n  - name: hub-log");
    assert_ne!(good, yaml, "{yaml}");
    fill(&c, "#yaml", &good).await;
    click_away(&c, "#save").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/alerting");
    assert!(text(&c, "#saved").await.starts_with("Saved"));
    assert!(text(&c, "#receivers tr[data-receiver=audit]").await.contains("log"));
    assert!(text(&c, "#changed").await.contains("admin"));
    let (status, v) = tokio::task::block_in_place(|| hub.get("/alerting")).unwrap();
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> =
        v["config"]["receivers"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["audit", "hub-log", "chat", "soc"], "{v}");
    assert_eq!((&v["config"]["receivers"][2]["slack"]["url"], &v["updated_by"]), (&json!("<secret>"), &json!("admin")));
    assert_eq!(v["config"]["receivers"][3]["webhook"]["secret"], "<secret>", "{v}");
    for secret in [SLACK_URL, HOOK_SECRET] {
        assert!(!v.to_string().contains(secret), "the API shows {secret}: {v}");
    }

    // A silence: added, listed by the page and the API, ended with its button.
    click_away(&c, "header nav a[href='/silences']").await;
    assert_eq!(text(&c, "h1").await, "Silences");
    fill(&c, "#silence-form input[name=rule]", "bruteforce-then-login").await;
    fill(&c, "#silence-form input[name=duration]", "2x").await;
    fill(&c, "#silence-form input[name=comment]", "Re-cabling the lab").await;
    click_away(&c, "#add-silence").await;
    let error = text(&c, "#silence-error").await;
    assert!(error.contains("Duration") && error.contains("2x"), "{error}");
    assert_eq!(value(&c, "#silence-form input[name=rule]").await, "bruteforce-then-login", "kept as typed");
    assert_eq!(value(&c, "#silence-form input[name=comment]").await, "Re-cabling the lab");
    shoot(&c, "alerting-silence-error", true).await;
    fill(&c, "#silence-form input[name=duration]", "2h").await;
    click_away(&c, "#add-silence").await;
    assert!(text(&c, "#done").await.starts_with("Added silence"), "{}", text(&c, "main").await);
    let row = text(&c, "#silences tbody tr[data-state=active]").await;
    assert!(
        row.contains("bruteforce-then-login") && row.contains("Re-cabling the lab") && row.contains("admin"),
        "{row}"
    );
    assert!(row.contains("in 1 h") || row.contains("in 2 h"), "ends in 2 h: {row}");
    let ended: i64 = c
        .find(Locator::Css("#silences tbody tr[data-state=active]"))
        .await
        .unwrap()
        .attr("data-silence")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let (_, v) = tokio::task::block_in_place(|| hub.get("/silences")).unwrap();
    let s = v["silences"].as_array().unwrap().iter().find(|s| s["id"] == ended).cloned().unwrap_or_default();
    assert_eq!(
        (&s["matchers"]["rule"], &s["comment"]),
        (&json!(["bruteforce-then-login"]), &json!("Re-cabling the lab"))
    );
    assert_eq!(s["ends_ms"].as_i64().unwrap() - s["starts_ms"].as_i64().unwrap(), 7_200_000, "{s}");

    // A weekly maintenance window, from its form.
    fill(&c, "#window-form input[name=name]", "backup window").await;
    c.find(Locator::Css("#window-form input[name=days][value=sun]")).await.unwrap().click().await.unwrap();
    fill(&c, "#window-form input[name=start]", "02:00").await;
    fill(&c, "#window-form input[name=rule]", "router-gone-quiet").await;
    click_away(&c, "#add-window").await;
    assert!(text(&c, "#done").await.starts_with("Added maintenance window"));
    let window = text(&c, "#windows tbody tr[data-window]").await;
    assert!(
        window.contains("backup window") && window.contains("sun, 02:00 UTC") && window.contains("2 h"),
        "{window}"
    );

    // "Silence this" on the incident fills the form in with its rule and key.
    c.goto(&format!("{base}/incidents/{id}")).await.unwrap();
    click_away(&c, "#silence-this").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/silences");
    assert_eq!(value(&c, "#silence-form input[name=rule]").await, "bruteforce-then-login");
    assert_eq!(value(&c, "#silence-form input[name=key]").await, format!("src_ip={ATTACKER}"));
    fill(&c, "#silence-form input[name=comment]", "A known scanner; blocked upstream").await;
    click_away(&c, "#add-silence").await;
    assert_eq!(count(&c, "#silences tbody tr[data-state=active]").await, 2);
    shoot(&c, "alerting-silences", true).await;

    // Ended with its button: gone from the list.
    click_away(&c, &format!("#silences tr[data-silence='{ended}'] button")).await;
    assert!(text(&c, "#done").await.starts_with(&format!("Ended silence {ended}")));
    assert_eq!(count(&c, &format!("#silences tr[data-silence='{ended}']")).await, 0, "ended");
    assert_eq!(count(&c, "#silences tbody tr[data-state=active]").await, 1);
    let (_, v) = tokio::task::block_in_place(|| hub.get("/silences")).unwrap();
    assert!(v["silences"].as_array().unwrap().iter().all(|s| s["id"] != ended), "the API agrees: {v}");
    let open = c.find(Locator::Css("#silences tbody tr[data-state=active]")).await.unwrap();
    let open: i64 = open.attr("data-silence").await.unwrap().unwrap().parse().unwrap();
    let window: i64 = c
        .find(Locator::Css("#windows tr[data-window]"))
        .await
        .unwrap()
        .attr("data-window")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();

    // A viewer: reads it all, no forms, and every post refused.
    click_away(&c, "form.signout button").await;
    sign_in(&c, base, "vera", "viewer password 1").await;
    c.goto(&format!("{base}/alerting")).await.unwrap();
    assert!(text(&c, "#receivers").await.contains("audit"));
    let area = c.find(Locator::Css("#yaml")).await.unwrap();
    assert!(area.attr("readonly").await.unwrap().is_some(), "read-only for a viewer");
    assert_eq!(count(&c, "#save, main form[method=post]").await, 0, "no save for a viewer");
    no_secrets(&c, "/alerting (viewer)").await;
    c.goto(&format!("{base}/silences")).await.unwrap();
    assert_eq!(count(&c, &format!("#silences tr[data-silence='{open}']")).await, 1, "a viewer reads the silences");
    assert_eq!(count(&c, "main form, main button").await, 0, "no forms for a viewer");
    c.goto(&format!("{base}/incidents/{id}")).await.unwrap();
    assert_eq!(count(&c, "#silence-this").await, 0);
    let token = csrf(&c).await;
    let new_silence = json!({ "csrf": token, "rule": "x", "duration": "1h", "comment": "mine" });
    for (path, fields) in [
        ("/alerting".to_owned(), json!({ "csrf": token, "yaml": good })),
        ("/silences".to_owned(), new_silence),
        (format!("/silences/{open}/expire"), json!({ "csrf": token })),
        (
            "/maintenance".to_owned(),
            json!({ "csrf": token, "name": "w", "days": "sun", "start": "01:00", "duration": "1h", "rule": "x" }),
        ),
        (format!("/maintenance/{window}/delete"), json!({ "csrf": token })),
    ] {
        assert_eq!(page_post(&c, &path, fields).await, 403, "{path}");
    }
    c.goto(&format!("{base}/silences")).await.unwrap();
    assert_eq!(count(&c, "#silences tbody tr[data-state=active]").await, 1, "nothing changed");
    assert_eq!(count(&c, "#windows tbody tr[data-window]").await, 1);

    c.close().await.unwrap();
    Seen { ended }
}
