//! `/alerting`: where incidents go. The alerting document (receivers,
//! templates, the route tree) as YAML with its secrets shown as
//! `<secret>`; admins edit and save it through the API's own code
//! (`http::alerts::save_config`: `<secret>` sent back keeps the stored
//! secret, and every bad field is named by its path, the text kept as
//! typed), everyone else reads it. Beside it, each receiver's health from
//! the outbox (pending, sent and failed notifications; failing now, and
//! why), and below, the newest notifications: the outbox as a log.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Filter, Nav};
use super::{signed_page, PageError, Signed};
use crate::alert::config::{parse_yaml, AlertConfig, Receiver, GROUP_LABELS, REDACTED};
use crate::http::alerts::save_config;
use crate::http::{ApiError, AppState};
use crate::store::alerts::{OutboxRow, ReceiverError};
use crate::store::now_ms;
use crate::store::users::Role;

/// Longest document a form may send, in bytes (a large one is a few KiB).
const YAML_LEN: usize = 256 * 1024;
/// Notifications shown.
const SHOWN: u32 = 50;
/// The outbox states, as the store writes them.
const OUTBOX_STATES: [&str; 3] = ["pending", "sent", "failed"];

/// What the editor starts from when no document is stored (the hub seeds
/// one at start, so only a database whose document no longer reads).
const STARTER: &str = "receivers:
  - name: hub-log
    log: {}
route:
  receivers: [hub-log]
  group_by: [rule]
";

/// The document as the YAML a person edits, secrets redacted: the fields
/// in the order of [`AlertConfig`], lists indented under their key.
pub fn to_yaml(cfg: &AlertConfig) -> Result<String, PageError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = false;
    serde_saphyr::to_string_with_options(&cfg.redacted(), options)
        .map_err(|e| PageError::Internal(format!("the alerting document as YAML: {e}")))
}

/// A receiver's kind and, in a few words, where it sends (never a secret:
/// a webhook's host only, since its URL's path or query may carry a token).
fn kind(r: &Receiver) -> (&'static str, String) {
    if let Some(e) = &r.email {
        ("email", e.to.join(", "))
    } else if r.slack.is_some() {
        ("slack", "an incoming webhook".into())
    } else if let Some(w) = &r.webhook {
        let host = reqwest::Url::parse(&w.url).ok().and_then(|u| u.host_str().map(str::to_owned));
        ("webhook", host.unwrap_or_else(|| "—".into()))
    } else if r.pagerduty.is_some() {
        ("pagerduty", "Events API v2".into())
    } else if r.log.is_some() {
        ("log", "the hub's own log".into())
    } else {
        ("—", String::new())
    }
}

/// A receiver's record in the outbox.
#[derive(Debug, Default)]
struct Health {
    pending: i64,
    sent: i64,
    failed: i64,
    /// Its oldest pending notification failed its last attempt.
    failing: bool,
    /// Its newest notification with an error.
    error: Option<ReceiverError>,
}

/// The outbox's record of every receiver that has one, by name.
fn health(
    counts: Vec<(String, String, i64)>,
    failing: Vec<(String, bool)>,
    errors: Vec<ReceiverError>,
) -> BTreeMap<String, Health> {
    let mut by: BTreeMap<String, Health> = BTreeMap::new();
    for (receiver, state, n) in counts {
        let h = by.entry(receiver).or_default();
        match state.as_str() {
            "pending" => h.pending = n,
            "sent" => h.sent = n,
            _ => h.failed += n,
        }
    }
    for (receiver, f) in failing {
        by.entry(receiver).or_default().failing = f;
    }
    for e in errors {
        let h = by.entry(e.receiver.clone()).or_default();
        h.error = Some(e);
    }
    by
}

/// A receiver's state in a word with its symbol, and the error behind it.
fn health_cell(h: Option<&Health>, now: i64) -> Markup {
    let Some(h) = h else { return html! { span.muted { "nothing sent yet" } } };
    html! {
        @if h.failing {
            (layout::state_badge_as("failing", "offline"))
        } @else if h.pending > 0 {
            (layout::state_badge_as("sending", "stale"))
        } @else {
            (layout::state_badge_as("ok", "online"))
        }
        @if let Some(e) = &h.error {
            @if h.failing || e.state == "failed" {
                div.receiver-error {
                    @if e.state == "pending" {
                        "Notification " (e.id) ", attempt " (e.attempts) "; next " (layout::time(e.next_attempt_ms, now)) ": "
                    } @else {
                        "Gave up on notification " (e.id) " after " (e.attempts) " attempt" @if e.attempts != 1 { "s" } ": "
                    }
                    span.reason { (e.error) }
                }
            }
        }
    }
}

/// A notification's delivery state as a word with a symbol.
fn outbox_badge(state: &str) -> Markup {
    match state {
        "sent" => layout::state_badge_as("sent", "online"),
        "pending" => layout::state_badge_as("pending", "stale"),
        "failed" => layout::state_badge_as("failed", "offline"),
        other => layout::state_badge_as(other, "never"),
    }
}

/// One notification as a row of the log.
fn notification_row(n: &OutboxRow, now: i64) -> Markup {
    let p = &n.payload.0;
    let status = p["status"].as_str().unwrap_or("");
    html! {
        tr data-notification=(n.id) data-state=(n.state) {
            td.num data-label="Id" { (n.id) }
            td data-label="Time" { (layout::time(n.created_ms, now)) }
            td data-label="Receiver" { (n.receiver) }
            td data-label="Status" {
                @match status {
                    "firing" => { span.badge.inc-open { span aria-hidden="true" { "● " } "firing" } }
                    "resolved" => { span.badge.inc-resolved { span aria-hidden="true" { "✓ " } "resolved" } }
                    other => { (other) }
                }
            }
            td.subject-cell data-label="Subject" { span.cell-text { (p["subject"].as_str().unwrap_or("")) } }
            td data-label="State" {
                (outbox_badge(&n.state))
                @if let Some(t) = n.sent_ms { " " span.muted { (layout::time(t, now)) } }
            }
            td.num data-label="Attempts" { (n.attempts) }
            td.error-cell data-label="Last error" {
                @if let Some(e) = &n.last_error { span.reason.cell-text { (e) } } @else { span.muted { "—" } }
            }
        }
    }
}

/// What the editor shows: the stored document, or what was typed and the
/// problems with it.
struct Typed<'a> {
    yaml: &'a str,
    problems: &'a [(String, String)],
}

async fn render(
    state: &AppState,
    who: &Signed,
    params: &HashMap<String, String>,
    typed: Option<Typed<'_>>,
) -> Result<Response, PageError> {
    let admin = who.may(Role::Admin);
    let now = now_ms();
    let stored = state.store.alert_config().await?;
    let stored_yaml = match &stored {
        Some((cfg, _, _)) => to_yaml(cfg)?,
        None => STARTER.to_owned(),
    };
    let (yaml, problems) = match &typed {
        Some(t) => (t.yaml, t.problems),
        None => (stored_yaml.as_str(), &[][..]),
    };
    // The whole document in view, within reason: it is what the page is for.
    let rows = (yaml.lines().count() + 2).clamp(16, 48);
    let filter = params.get("state").map(String::as_str).unwrap_or("");
    let health = health(
        state.store.outbox_counts().await?,
        state.store.receiver_health().await?,
        state.store.receiver_errors().await?,
    );
    let notifications = state.store.notifications(Some(filter).filter(|s| !s.is_empty()), SHOWN).await?;
    let receivers: &[Receiver] = stored.as_ref().map(|(c, _, _)| c.receivers.as_slice()).unwrap_or_default();
    // Receivers the outbox still has notifications of, no longer configured.
    let gone: Vec<&String> = health.keys().filter(|n| !receivers.iter().any(|r| &r.name == *n)).collect();
    let state_options = std::iter::once((String::new(), "any".to_owned()))
        .chain(OUTBOX_STATES.iter().map(|s| (s.to_string(), s.to_string())))
        .collect();
    let body = html! {
        div.pagehead {
            h1 { "Alerting" }
            span.muted { "where incidents go: receivers, templates and routes" }
            a.button.secondary href="/silences" { "Silences" }
        }
        @if params.contains_key("saved") {
            p.notice #saved role="status" { "Saved the alerting document; new notifications follow it from now on." }
        }
        section #receivers-section {
            h2 { "Receivers" }
            table #receivers {
                thead { tr {
                    th { "Receiver" } th { "Kind" } th { "Sends to" } th.num { "Pending" } th.num { "Sent" }
                    th.num { "Failed" } th { "Health" }
                } }
                tbody {
                    @for r in receivers {
                        @let (k, to) = kind(r);
                        @let h = health.get(&r.name);
                        tr data-receiver=(r.name) data-failing=(h.is_some_and(|h| h.failing)) {
                            td data-label="Receiver" { strong { (r.name) } }
                            td data-label="Kind" { span.badge { (k) } }
                            td.to-cell data-label="Sends to" { span.cell-text { (to) } }
                            td.num data-label="Pending" { (h.map_or(0, |h| h.pending)) }
                            td.num data-label="Sent" { (h.map_or(0, |h| h.sent)) }
                            td.num data-label="Failed" { (h.map_or(0, |h| h.failed)) }
                            td.health-cell data-label="Health" { (health_cell(h, now)) }
                        }
                    }
                    @for name in &gone {
                        @let h = health.get(*name);
                        tr data-receiver=(name) data-failing=(h.is_some_and(|h| h.failing)) {
                            td data-label="Receiver" { strong { (name) } }
                            td data-label="Kind" { span.muted { "no longer configured" } }
                            td.to-cell data-label="Sends to" { span.muted { "—" } }
                            td.num data-label="Pending" { (h.map_or(0, |h| h.pending)) }
                            td.num data-label="Sent" { (h.map_or(0, |h| h.sent)) }
                            td.num data-label="Failed" { (h.map_or(0, |h| h.failed)) }
                            td.health-cell data-label="Health" { (health_cell(h, now)) }
                        }
                    }
                    @if receivers.is_empty() && gone.is_empty() {
                        tr.empty { td colspan="7" { "No receivers: incidents are not told to anyone." } }
                    }
                }
            }
        }
        section #document {
            h2 { "The document" }
            @if let Some((_, by, at)) = &stored {
                p.muted #changed { "Changed by " (layout::changed_by(by)) " " (layout::time(*at, now)) "." }
            }
            (super::editor::problems_box(problems))
            div.rule-editor {
                @if admin {
                    form.stack.rule #alerting-form method="post" action="/alerting" {
                        (layout::csrf_field(who))
                        label for="yaml" { "The alerting document as YAML" }
                        textarea #yaml name="yaml" rows=(rows) spellcheck="false" autocomplete="off"
                            aria-describedby="alerting-help" { (yaml) }
                        div.actions {
                            button #save type="submit" { "Save" }
                            a href="/alerting" { "Cancel" }
                        }
                    }
                } @else {
                    // Read-only: no form at all, so nothing to post.
                    div.stack.rule #alerting-form {
                        label for="yaml" { "The alerting document as YAML" }
                        textarea #yaml rows=(rows) spellcheck="false" readonly aria-describedby="alerting-help" {
                            (yaml)
                        }
                        p.muted { "Admins change alerting: receivers hold credentials. Secrets are shown as "
                            code { (REDACTED) } "." }
                    }
                }
                aside.card #alerting-help {
                    h2 { "Fields" }
                    dl.help {
                        dt { code { "external_url" } } dd { "the hub's address as people reach it, for links in notifications" }
                        dt { code { "receivers" } } dd {
                            "each a " code { "name" } " and one of " code { "email" } ", " code { "slack" } ", "
                            code { "webhook" } ", " code { "pagerduty" } ", " code { "log" }
                        }
                        dt { code { (REDACTED) } } dd { "left as it is, keeps the stored secret of that receiver" }
                        dt { code { "templates" } } dd {
                            code { "subject" } " and " code { "body" } ": minijinja over the notification ("
                            code { "{{ title }}" } ", " code { "{% for i in incidents %}" } "); empty: the built-in ones"
                        }
                        dt { code { "route" } } dd {
                            "the root takes every incident; its " code { "routes" } " are tried in order, the first that "
                            "matches takes it unless it says " code { "continue: true" }
                        }
                        dt { code { "match" } } dd {
                            code { "severity" } " (a list), " code { "min_severity" } ", " code { "rule" } ", "
                            code { "agent" } ", " code { "kind" } ", " code { "tag" } ", " code { "device" } ", " code { "key" }
                        }
                        dt { code { "group_by" } } dd {
                            @for (i, l) in GROUP_LABELS.iter().enumerate() { @if i > 0 { ", " } code { (l) } }
                        }
                        dt { code { "group_wait" } ", " code { "group_interval" } ", " code { "repeat_interval" } } dd {
                            "default 30s, 5m, 4h; inherited by a route's children"
                        }
                    }
                }
            }
        }
        section #notifications-section {
            div.pagehead {
                h2 { "Notifications" }
                span.muted { "the outbox, newest first: each is delivered at least once, retried for a day" }
            }
            (layout::filters("/alerting#notifications-section", &[
                Filter::Select { name: "state", label: "State", value: filter, options: state_options },
            ]))
            table #notifications {
                thead { tr {
                    th.num { "Id" } th { "Time" } th { "Receiver" } th { "Status" } th { "Subject" } th { "State" }
                    th.num { "Attempts" } th { "Last error" }
                } }
                tbody {
                    @for n in &notifications { (notification_row(n, now)) }
                    @if notifications.is_empty() { tr.empty { td colspan="8" { "No notifications." } } }
                }
            }
            p.muted {
                @if notifications.len() as u32 == SHOWN { "The newest " (SHOWN) " are shown; all: " } @else { "As JSON: " }
                a href="/api/v1/alerting/notifications" { "/api/v1/alerting/notifications" }
            }
        }
    };
    let mut resp = signed_page(who, "Alerting", Nav::Alerting, body);
    if !problems.is_empty() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET /alerting?saved=&state=`.
pub async fn page(
    State(state): State<AppState>,
    who: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(k) = params.keys().find(|k| !["saved", "state"].contains(&k.as_str())) {
        return Err(PageError::Invalid(format!("unknown parameter {k:?}; known: saved, state")));
    }
    if let Some(s) = params.get("state").filter(|s| !s.is_empty() && !OUTBOX_STATES.contains(&s.as_str())) {
        return Err(PageError::Invalid(format!("state {s:?} is not one of {}", OUTBOX_STATES.join(", "))));
    }
    render(&state, &who, &params, None).await
}

/// The editor's form.
#[derive(Debug, Deserialize)]
pub struct YamlForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    yaml: String,
}

/// The document in `text` (the form's lines are CR LF), or why not, by path.
fn read(text: &str) -> Result<AlertConfig, Vec<(String, String)>> {
    if text.len() > YAML_LEN {
        return Err(vec![("yaml".into(), format!("longer than {YAML_LEN} bytes"))]);
    }
    parse_yaml(text).map_err(|e| vec![("yaml".into(), e)])
}

/// `POST /alerting` (admins): saves the document, or shows it again as
/// typed with every problem (422).
pub async fn save(State(state): State<AppState>, who: Signed, Form(f): Form<YamlForm>) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "changing alerting (receivers hold credentials)")?;
    let text = f.yaml.replace("\r\n", "\n");
    let problems = match read(&text) {
        Ok(mut cfg) => match save_config(&state, &mut cfg, &who.session.user).await {
            Ok(()) => return Ok(Redirect::to("/alerting?saved=1").into_response()),
            Err(ApiError::InvalidFields(fields)) => fields.into_iter().map(|f| (f.path, f.reason)).collect(),
            Err(e) => return Err(e.into()),
        },
        Err(problems) => problems,
    };
    render(&state, &who, &HashMap::new(), Some(Typed { yaml: &text, problems: &problems })).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_document_goes_to_yaml_and_back_unchanged_with_secrets_hidden() {
        let (_, shipped) = crate::seed::load_alerting(None).unwrap();
        let yaml = to_yaml(&shipped).unwrap();
        assert_eq!(parse_yaml(&yaml).unwrap(), shipped, "{yaml}");

        let full = "external_url: https://opmas.example.net
receivers:
  - name: mail
    email: { to: [ops@example.net], from: opmas@example.net, smarthost: 'mail.example.net:587', username: u, password: pw1 }
  - name: chat
    slack: { url: 'https://hooks.example.net/T/B/slack-secret' }
  - name: soc
    webhook: { url: 'https://soc.example.net/in?token=t', secret: hook-secret }
  - name: pager
    pagerduty: { routing_key: pd-secret }
  - name: log
    log: {}
templates:
  subject: '[{{ status }}] {{ title }}'
  body: |
    {% for i in incidents %}
    - {{ i.rule }}: {{ i.key }}
    {% endfor %}
route:
  receivers: [log]
  group_by: [rule, key]
  routes:
    - match: { min_severity: high, tag: [lab] }
      receivers: [pager, chat]
      continue: true
      repeat_interval: 1h
";
        let cfg = parse_yaml(full).unwrap();
        assert_eq!(cfg.check(), []);
        let yaml = to_yaml(&cfg).unwrap();
        for secret in ["pw1", "slack-secret", "hook-secret", "pd-secret"] {
            assert!(!yaml.contains(secret), "{secret} in {yaml}");
        }
        let back = parse_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(back, cfg.redacted(), "{yaml}");
        let mut restored = back;
        restored.unredact(&cfg);
        assert_eq!(restored, cfg, "saved as shown, the secrets are kept");
        assert_eq!(kind(&cfg.receivers[2]), ("webhook", "soc.example.net".to_owned()), "no path, no token");
    }

    #[test]
    fn text_that_is_not_the_document_is_named_as_yaml() {
        let e = read("receivers: [").unwrap_err();
        assert_eq!(e[0].0, "yaml");
        let e = read("route: { receivers: [a] }\ncolour: red\n").unwrap_err();
        assert!(e[0].1.contains("colour"), "{e:?}");
        assert!(read(&"#".repeat(YAML_LEN + 1)).unwrap_err()[0].1.contains("longer than"));
    }

    #[test]
    fn health_joins_counts_failing_and_errors_by_receiver() {
        let err = |r: &str, state: &str| ReceiverError {
            receiver: r.into(),
            id: 3,
            state: state.into(),
            error: "refused".into(),
            attempts: 2,
            next_attempt_ms: 10,
        };
        let h = health(
            vec![("a".into(), "pending".into(), 2), ("a".into(), "sent".into(), 5), ("b".into(), "failed".into(), 1)],
            vec![("a".into(), true)],
            vec![err("a", "pending"), err("b", "failed")],
        );
        let a = &h["a"];
        assert_eq!((a.pending, a.sent, a.failed, a.failing), (2, 5, 0, true));
        let b = &h["b"];
        assert_eq!((b.failed, b.failing, b.error.as_ref().map(|e| e.state.as_str())), (1, false, Some("failed")));
        let cell = health_cell(Some(a), 0).into_string();
        assert!(cell.contains("failing") && cell.contains("refused") && cell.contains("attempt 2"), "{cell}");
        let cell = health_cell(Some(b), 0).into_string();
        assert!(cell.contains("ok") && cell.contains("Gave up"), "{cell}");
    }
}
