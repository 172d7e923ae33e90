//! The correlation pages in a real browser (headless Chromium over
//! WebDriver, as tests/tests/web.rs) against a real hub fed by two real
//! edges: one address brute-forcing both routers opens an incident of a
//! rule PUT through the API. An admin finds it in the incidents list, sees
//! its two findings and which routers saw the address, and acknowledges it
//! with a comment that lands in its timeline; edits a rule's YAML with a
//! mistake (named by its path, the text kept), then fixes and saves it. A
//! viewer sees no buttons and is refused the posts. Screenshots at laptop
//! and phone widths go to `$CARGO_TARGET_TMPDIR/web-screens/`, named
//! `correlation-*`, and are named in the log.

use std::net::SocketAddr;
use std::time::Duration;

use fantoccini::{Client, Locator};
use opmas_e2e::{dropbear_attack, wait_for, Edge, Hub};
use serde_json::json;

mod support;
use support::browser::*;

/// The attacker both routers see.
const ATTACKER: &str = "198.51.100.77";

/// The rule editor's text, as the browser holds it.
async fn yaml(c: &Client) -> String {
    c.find(Locator::Css("#yaml")).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

/// Types `text` into the rule editor in place of what is there.
async fn type_yaml(c: &Client, text: &str) {
    let area = c.find(Locator::Css("#yaml")).await.unwrap();
    area.clear().await.unwrap();
    area.send_keys(text).await.unwrap();
    assert_eq!(yaml(c).await, text, "the editor holds what was typed");
}

#[test]
fn an_admin_works_an_incident_and_edits_a_rule_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let base = format!("http://{}", hub.http);
    let rule = json!({ "name": "two-routers", "description": "One address brute-forcing two routers",
        "type": "threshold", "severity": "high", "window": "10m", "key": "src_ip", "count": 2, "devices": 2,
        "match": [{ "kind": "ssh.bruteforce" }] });
    let (status, v) = hub.request("PUT", "/rules/two-routers", None, Some(&rule)).unwrap();
    assert_eq!(status, 201, "{v}");

    let mut edges = Vec::new();
    for id in ["gw-a", "gw-b"] {
        let d = hub.enrol(id).unwrap();
        edges.push(Edge::start(dir.path(), &hub, &d).unwrap());
    }
    wait_for(Duration::from_secs(60), "both routers online", || {
        let (_, v) = hub.get("/devices").ok()?;
        (v["devices"].as_array()?.iter().filter(|d| d["status"] == "online").count() == 2).then_some(())
    })
    .unwrap();
    for e in &edges {
        e.append(&dropbear_attack(ATTACKER, 5)).unwrap();
    }
    let key = format!("src_ip={ATTACKER}");
    let incident = wait_for(Duration::from_secs(60), "the two-router incident with both findings", || {
        let (_, v) = hub.get("/incidents?rule=two-routers").ok()?;
        v["incidents"].as_array()?.iter().find(|i| i["key"] == key.as_str() && i["findings"] == 2).cloned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.log()));
    let id = incident["id"].as_i64().unwrap();
    let admin_password = std::fs::read_to_string(hub.data_dir.join("admin.password")).unwrap().trim().to_owned();
    add_user(&hub, "vera", "viewer", "viewer password 1");

    let (_driver, driver_addr) = chromedriver(dir.path());
    // The hub's helpers block; the browser's client is async: it runs on a
    // runtime of its own, and the hub and edges outlive it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(in_the_browser(driver_addr, &base, id, &admin_password));
    let (_, stored) = hub.get("/rules/two-routers").unwrap();
    assert_eq!(stored["spec"]["severity"], "critical", "the fixed rule is what the hub runs: {stored}");
    assert_eq!(stored["updated_by"], "admin");
    drop(edges);
}

async fn in_the_browser(driver_addr: SocketAddr, base: &str, id: i64, admin_password: &str) {
    let c = browser(driver_addr).await;
    sign_in(&c, base, "admin", admin_password).await;

    // The list: the incident, with its rule, key, routers and state.
    click_away(&c, "header nav a[href='/incidents']").await;
    assert_eq!(text(&c, "h1").await, "Incidents");
    let row = text(&c, &format!("#incidents tr[data-id='{id}']")).await;
    for want in ["two-routers", &format!("src_ip={ATTACKER}"), "gw-a", "gw-b", "open", "high"] {
        assert!(row.contains(want), "the row shows {want}: {row}");
    }
    shoot(&c, "correlation-incidents", false).await;
    c.goto(&format!("{base}/incidents?state=resolved")).await.unwrap();
    assert_eq!(count(&c, &format!("#incidents tr[data-id='{id}']")).await, 0, "the filter applies");

    // The incident: its two findings in the timeline, who saw the address.
    c.goto(&format!("{base}/incidents")).await.unwrap();
    click_away(&c, &format!("#incidents tr[data-id='{id}'] td a[href='/incidents/{id}']")).await;
    assert_eq!(text(&c, "h1").await, format!("Incident {id}: two-routers"));
    assert_eq!(count(&c, "#timeline li.tl-finding").await, 2, "{}", text(&c, "#timeline").await);
    assert!(text(&c, "#timeline li.tl-finding").await.contains("ssh.bruteforce"));
    assert!(text(&c, "#timeline li.tl-event[data-event=opened]").await.contains("rule two-routers"));
    let seen = text(&c, "#seen-by tbody").await;
    assert_eq!(count(&c, "#seen-by tbody tr[data-device]").await, 2, "{seen}");
    assert!(seen.contains("gw-a") && seen.contains("gw-b"), "{seen}");
    assert_eq!(text(&c, "#key-value").await, ATTACKER);
    assert_eq!(count(&c, "#routers tbody tr[data-device]").await, 2);
    assert!(c.find(Locator::Css("#timeline a[href^='/findings/']")).await.is_ok(), "findings link");
    shoot(&c, "correlation-incident", false).await;

    // Acknowledged with a comment: the state and the timeline say so.
    c.find(Locator::Css("#state-form textarea[name=comment]"))
        .await
        .unwrap()
        .send_keys("Blocking the address at the firewall.")
        .await
        .unwrap();
    click_away(&c, "#state-form button[data-action=acknowledge]").await;
    assert!(text(&c, "#done").await.starts_with("Acknowledged"));
    assert_eq!(text(&c, "#incident-state").await, "◐ acknowledged");
    let ack = text(&c, "#timeline li.tl-event[data-event=acknowledged]").await;
    assert!(ack.contains("admin") && ack.contains("Blocking the address at the firewall."), "{ack}");
    assert_eq!(count(&c, "#state-form button[data-action=acknowledge]").await, 0, "acknowledged once");
    c.find(Locator::Css("#comment-form textarea[name=text]")).await.unwrap().send_keys("Ticket NET-42.").await.unwrap();
    click_away(&c, "#comment-form button").await;
    assert!(text(&c, "#timeline li.tl-event[data-event=comment]").await.contains("Ticket NET-42."));
    shoot(&c, "correlation-incident-acknowledged", false).await;

    // A rule edited as YAML: a mistake is named by its path, the text kept;
    // fixed, it is saved.
    click_away(&c, "header nav a[href='/rules']").await;
    let row = text(&c, "#rules tr[data-rule=two-routers]").await;
    assert!(row.contains("threshold") && row.contains("10m") && row.contains("admin"), "{row}");
    assert!(c.find(Locator::Css("#rules tr[data-rule=bruteforce-then-login]")).await.is_ok(), "shipped rules");
    click_away(&c, "#rules a[href='/rules/two-routers']").await;
    let stored = yaml(&c).await;
    assert!(stored.contains("name: two-routers") && stored.contains("severity: high"), "{stored}");
    shoot(&c, "correlation-rule-edit", false).await;
    // Text that is not YAML of a rule: the reader's message, with the line.
    type_yaml(&c, &stored.replace("match:", "match: [")).await;
    click_away(&c, "#save").await;
    let error = text(&c, "#errors li[data-path=yaml] pre").await;
    assert!(error.contains("line "), "{error}");
    shoot(&c, "correlation-rule-yaml-error", false).await;
    let bad = stored.replace("severity: high", "severity: urgent");
    type_yaml(&c, &bad).await;
    click_away(&c, "#save").await;
    let error = text(&c, "#errors li[data-path=severity]").await;
    assert!(error.starts_with("severity:") && error.contains("urgent"), "{error}");
    assert_eq!(yaml(&c).await, bad, "the text is kept as typed");
    shoot(&c, "correlation-rule-error", false).await;
    type_yaml(&c, &bad.replace("severity: urgent", "severity: critical")).await;
    click_away(&c, "#save").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/rules");
    assert!(text(&c, "#saved").await.contains("two-routers"));
    assert!(text(&c, "#rules tr[data-rule=two-routers]").await.contains("critical"));
    shoot(&c, "correlation-rules", false).await;

    // A viewer: no buttons, and the posts are refused.
    click_away(&c, "form.signout button").await;
    sign_in(&c, base, "vera", "viewer password 1").await;
    c.goto(&format!("{base}/incidents/{id}")).await.unwrap();
    assert!(text(&c, "#timeline").await.contains("Ticket NET-42."), "a viewer reads the timeline");
    assert_eq!(count(&c, "#state-form, #comment-form, main button").await, 0, "no buttons for a viewer");
    c.goto(&format!("{base}/rules")).await.unwrap();
    assert_eq!(count(&c, "#rules form, #new-rule").await, 0, "no switches for a viewer");
    c.goto(&format!("{base}/rules/two-routers")).await.unwrap();
    let area = c.find(Locator::Css("#yaml")).await.unwrap();
    assert!(area.attr("readonly").await.unwrap().is_some(), "read-only for a viewer");
    assert_eq!(count(&c, "#save, #delete").await, 0);
    let token = csrf(&c).await;
    for (path, fields) in [
        (format!("/incidents/{id}/resolve"), json!({ "csrf": token })),
        (format!("/incidents/{id}/comments"), json!({ "csrf": token, "text": "mine" })),
        ("/rules/two-routers".to_owned(), json!({ "csrf": token, "yaml": bad })),
        ("/rules/two-routers/disable".to_owned(), json!({ "csrf": token })),
        ("/rules/two-routers/delete".to_owned(), json!({ "csrf": token })),
    ] {
        assert_eq!(page_post(&c, &path, fields).await, 403, "{path}");
    }
    c.goto(&format!("{base}/incidents/{id}")).await.unwrap();
    assert_eq!(text(&c, "#incident-state").await, "◐ acknowledged", "nothing changed");

    c.close().await.unwrap();
}
