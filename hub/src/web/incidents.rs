//! `/incidents`: the incidents the correlator opened, filtered with the same
//! parameters, parsing and store query as `GET /api/v1/incidents`, newest
//! first, a page at a time; `/incidents/{id}`: one incident — its fields, a
//! timeline that merges what the correlator and people did with the
//! findings it took in, and what the hub knows about its key — with the
//! buttons and the comment form that move it. Those go through the API's
//! own code (`http::incidents::set_state`, `add_comment`), so the page
//! cannot do what the API would refuse; only operators and admins see them
//! and may post them, and the "Silence this" link to the silence form
//! filled in with the incident's rule and key.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Filter, Nav};
use super::{signed_page, PageError, Signed};
use crate::correlate::rule::SEVERITIES;
use crate::http::commands::encode_cursor;
use crate::http::incidents::{self as api, IncidentDetail};
use crate::http::{ApiError, AppState};
use crate::store::incidents::{IncidentEvent, IncidentRow, STATES};
use crate::store::now_ms;
use crate::store::users::Role;

/// Rows per page.
const PAGE: u32 = 50;
/// Longest comment, in characters (as the API's).
const COMMENT_LEN: usize = 2000;
/// The filters a page's links keep (the query's, without its page).
const FILTERS: [&str; 5] = ["state", "rule", "severity", "device", "key"];
/// What a person may do with an incident in each state, as the store
/// allows it: open → acknowledged → resolved, resolved → open.
fn actions(state: &str) -> &'static [(&'static str, &'static str)] {
    match state {
        "open" => &[("acknowledge", "Acknowledge"), ("resolve", "Resolve")],
        "acknowledged" => &[("resolve", "Resolve")],
        "resolved" => &[("reopen", "Reopen")],
        _ => &[],
    }
}

fn parse_id(id: &str) -> Result<i64, PageError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| PageError::Invalid(format!("{id:?} is not an incident id (a positive number)")))
}

/// The routers of an incident, as links.
fn device_links(devices: &[String]) -> Markup {
    html! {
        @for (i, d) in devices.iter().enumerate() {
            @if i > 0 { ", " }
            a href={ "/devices/" (d) } { (d) }
        }
        @if devices.is_empty() { span.muted { "—" } }
    }
}

/// One incident as a row of the list.
fn row(i: &IncidentRow, now: i64) -> Markup {
    html! {
        tr data-id=(i.id) data-state=(i.state) {
            td data-label="Incident" { a href={ "/incidents/" (i.id) } { "#" (i.id) } }
            td data-label="Severity" { (layout::severity_badge(i.severity)) }
            td data-label="Rule" { a href={ "/incidents?rule=" (layout::url_encode(&i.rule)) } { (i.rule) } }
            td.key-cell data-label="Key" { a href={ "/incidents/" (i.id) } { code { (i.key) } } }
            td data-label="Routers" { (device_links(&i.devices)) }
            td.num data-label="Findings" { (i.findings) }
            td data-label="State" { (layout::incident_badge(&i.state)) }
            td data-label="First" { (layout::time(i.first_ms, now)) }
            td data-label="Last" { (layout::time(i.last_ms, now)) }
        }
    }
}

/// `GET /incidents?state=&rule=&severity=&device=&key=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    params.retain(|_, v| !v.is_empty());
    params.entry("limit".into()).or_insert_with(|| PAGE.to_string());
    let q = api::parse_query(&params)?;
    let rows = state.store.query_incidents(&q).await?;
    let now = now_ms();
    let value = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let filters: Vec<(&str, &str)> = FILTERS.iter().map(|k| (*k, value(k))).collect();
    let base = format!("/incidents{}", layout::query(&filters));
    let next = (rows.len() as u32 == q.limit).then(|| rows.last()).flatten().map(|last| {
        let c = encode_cursor(last.id);
        let mut with = filters.clone();
        with.push(("cursor", &c));
        format!("/incidents{}", layout::query(&with))
    });
    let any = || (String::new(), "any".to_owned());
    let state_options = std::iter::once(any()).chain(STATES.iter().map(|s| (s.to_string(), s.to_string()))).collect();
    let mut rule_names: Vec<String> = state.store.rules().await?.into_iter().map(|r| r.spec.name).collect();
    // A deleted rule's incidents stay: its name stays choosable while shown.
    if !value("rule").is_empty() && !rule_names.iter().any(|r| r == value("rule")) {
        rule_names.push(value("rule").to_owned());
    }
    let rule_options = std::iter::once(any()).chain(rule_names.into_iter().map(|r| (r.clone(), r))).collect();
    let severity_options =
        std::iter::once(any()).chain(SEVERITIES.iter().map(|s| (s.to_string(), format!("{s} or worse")))).collect();
    let mut device_options = vec![any()];
    device_options.extend(state.store.list_devices().await?.into_iter().map(|d| (d.id, d.name)));
    let on_first_page = q.before_id.is_none();
    let body = html! {
        div.pagehead { h1 { "Incidents" } span.muted { "what the correlation rules made of the findings" } }
        (layout::filters("/incidents", &[
            Filter::Select { name: "state", label: "State", value: value("state"), options: state_options },
            Filter::Select { name: "rule", label: "Rule", value: value("rule"), options: rule_options },
            Filter::Select { name: "severity", label: "Severity", value: value("severity"), options: severity_options },
            Filter::Select { name: "device", label: "Router", value: value("device"), options: device_options },
            Filter::Text { name: "key", label: "Key", value: value("key"), placeholder: "src_ip=203.0.113.7" },
        ]))
        table #incidents {
            thead { tr {
                th { "Incident" } th { "Severity" } th { "Rule" } th { "Key" } th { "Routers" } th.num { "Findings" }
                th { "State" } th { "First" } th { "Last" }
            } }
            tbody {
                @for i in &rows { (row(i, now)) }
                @if rows.is_empty() {
                    tr.empty { td colspan="9" {
                        @if on_first_page { "No incidents match." } @else { "No incidents on this page: it is past the last one." }
                    } }
                }
            }
        }
        (layout::pager((!on_first_page).then_some(base.as_str()), next.as_deref()))
        p.muted { a href="/rules" { "The rules" } " say what makes an incident." }
    };
    Ok(signed_page(&who, "Incidents", Nav::Incidents, body))
}

/// A form that was refused: why, and what was typed into it (to keep).
#[derive(Debug, Default)]
struct Refused {
    message: String,
    /// The state form's comment.
    comment: String,
    /// The comment form's text.
    text: String,
}

/// What `?done=` says happened.
fn done_text(done: &str) -> Option<&'static str> {
    match done {
        "acknowledge" => Some("Acknowledged: the timeline says by whom."),
        "resolve" => Some("Resolved."),
        "reopen" => Some("Reopened."),
        "comment" => Some("Comment added to the timeline."),
        _ => None,
    }
}

/// `GET /incidents/{id}?done=`.
pub async fn one(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(k) = params.keys().find(|k| k.as_str() != "done") {
        return Err(PageError::Invalid(format!("unknown parameter {k:?}; known: done")));
    }
    let done =
        match params.get("done").map(String::as_str) {
            None | Some("") => None,
            Some(d) => Some(done_text(d).ok_or_else(|| {
                PageError::Invalid(format!("done {d:?} is not acknowledge, resolve, reopen or comment"))
            })?),
        };
    render(&state, &who, parse_id(&id)?, done, None).await
}

/// A time in the timeline: UTC date and time, and how long ago.
fn stamp(ms: i64, now: i64) -> Markup {
    let iso = crate::http::rfc3339(ms);
    let shown = iso.get(..19).unwrap_or(&iso).replace('T', " ");
    html! { time datetime=(iso) { (shown) } " " span.muted { (layout::ago(now - ms)) } }
}

/// The timeline's entries by time: the incident's events and its findings,
/// each rendered. A finding's time is when the hub received it (the time
/// the correlator judged it by), so the findings that opened an incident
/// come before its "opened".
fn timeline(d: &IncidentDetail, now: i64) -> Vec<Markup> {
    let findings = d.findings.iter().map(|f| {
        let m = html! {
            li.tl.tl-finding data-finding=(f.id) {
                div.tl-when { (stamp(f.received_ms, now)) }
                div.tl-what {
                    span.tl-kind { "Finding" } " "
                    a href={ "/findings/" (f.id) } { (f.kind) } " on "
                    a href={ "/devices/" (f.device_id) } { (f.device_id) } " "
                    (layout::severity_badge(f.severity))
                    div.tl-text { (f.summary) }
                }
            }
        };
        (f.received_ms, 0, m)
    });
    let events = d.timeline.iter().map(|e| (e.at_ms, 1, event(e, now)));
    let mut entries: Vec<(i64, u8, Markup)> = findings.chain(events).collect();
    entries.sort_by_key(|(t, order, _)| (*t, *order));
    entries.into_iter().map(|(_, _, m)| m).collect()
}

fn event(e: &IncidentEvent, now: i64) -> Markup {
    html! {
        li.tl.tl-event data-event=(e.kind) {
            div.tl-when { (stamp(e.at_ms, now)) }
            div.tl-what {
                span.tl-kind { (event_label(&e.kind)) } " by " (by(&e.by))
                @if !e.text.is_empty() { div.tl-text { (e.text) } }
            }
        }
    }
}

fn event_label(kind: &str) -> &str {
    match kind {
        "opened" => "Opened",
        "acknowledged" => "Acknowledged",
        "resolved" => "Resolved",
        "reopened" => "Reopened",
        "comment" => "Comment",
        other => other,
    }
}

/// Who did it: a person, the correlator, or a rule (`rule:<name>`).
fn by(who: &str) -> Markup {
    match who.strip_prefix("rule:") {
        Some(rule) => html! { "rule " a href={ "/rules/" (rule) } { (rule) } },
        None => html! { strong { (who) } },
    }
}

async fn render(
    state: &AppState,
    who: &Signed,
    id: i64,
    done: Option<&str>,
    refused: Option<Refused>,
) -> Result<Response, PageError> {
    let d = api::detail(state, id).await.map_err(|e| match e {
        ApiError::NotFound(_) => PageError::NotFound(format!("There is no incident {id}.")),
        e => e.into(),
    })?;
    let i = &d.incident.incident;
    let now = now_ms();
    let operator = who.may(Role::Operator);
    let can = actions(&i.state);
    let entries = timeline(&d, now);
    let ctx = &d.context;
    let typed = refused.as_ref();
    let body = html! {
        p { a href="/incidents" { "« Incidents" } }
        div.pagehead {
            h1 { "Incident " (i.id) ": " a href={ "/rules/" (i.rule) } title="the rule" { (i.rule) } }
            (layout::severity_badge(i.severity)) " " span #incident-state { (layout::incident_badge(&i.state)) }
            @if operator {
                // The silence form, filled in with what identifies this incident.
                a.button.secondary #silence-this href={ "/silences" (layout::query(&[("rule", &i.rule), ("key", &i.key)])) "#new-silence" } {
                    "Silence this"
                }
            }
        }
        p.summary { code #incident-key { (i.key) } span.muted { " · " } span #reason { (i.reason) } }
        @if let Some(n) = done { p.notice #done role="status" { (n) } }
        @if let Some(r) = typed { p.error #refused role="alert" { "Not done: " (r.message) } }
        div.compact-facts { (layout::facts(&[
            ("State", html! {
                (i.state)
                @if let (Some(b), Some(t)) = (&i.changed_by, i.changed_ms) { span.muted { " — " (b) ", " (layout::time(t, now)) } }
            }),
            ("Findings", html! { (i.findings) }),
            ("Routers", device_links(&i.devices)),
            ("First finding", layout::time(i.first_ms, now)),
            ("Last finding", layout::time(i.last_ms, now)),
            ("Resolves itself after", html! {
                @if let Some(q) = i.quiet_ms { (layout::duration(q / 1000)) " quiet" } @else { "the router is heard from" }
            }),
        ])) }
        div.incident-body {
            section.card #timeline {
                h2 { "Timeline" }
                @if (i.findings as usize) > d.findings.len() {
                    p.muted { "Showing the first " (d.findings.len()) " of its " (i.findings) " findings." }
                }
                ol.timeline.incident-timeline {
                    @for e in &entries { (e) }
                    @if entries.is_empty() { li.muted { "Nothing yet." } }
                }
                @if operator {
                    form.stack #comment-form method="post" action={ "/incidents/" (i.id) "/comments" } {
                        (layout::csrf_field(who))
                        label {
                            span { "Add a comment" }
                            textarea name="text" rows="2" maxlength=(COMMENT_LEN) required {
                                @if let Some(r) = typed { (r.text) }
                            }
                        }
                        div.actions { button type="submit" { "Add comment" } }
                    }
                }
            }
            div.side {
                @if operator && !can.is_empty() {
                    section.card #incident-actions {
                        h2 { "Change its state" }
                        form.stack #state-form method="post" action={ "/incidents/" (i.id) "/" (can[0].0) } {
                            (layout::csrf_field(who))
                            label {
                                span { "Comment (optional; kept in the timeline with the change)" }
                                textarea name="comment" rows="2" maxlength=(COMMENT_LEN) {
                                    @if let Some(r) = typed { (r.comment) }
                                }
                            }
                            div.actions {
                                @for (action, label) in can {
                                    button type="submit" formaction={ "/incidents/" (i.id) "/" (action) } data-action=(action)
                                        class=[(*action == "resolve").then_some("secondary")] { (label) }
                                }
                            }
                        }
                    }
                }
                section.card #context {
                    h2 { "Context" }
                    @match (&ctx.key_field, &ctx.key_value) {
                        (Some(f), Some(v)) => {
                            (layout::facts(&[("Key field", html! { code { (f) } }), ("Value", html! { code #key-value { (v) } })]))
                        }
                        _ => { p.muted { "A fleet-wide incident: no key joins its findings." } }
                    }
                    @if ctx.key_field.is_some() {
                        h3 { "Seen by" }
                        table #seen-by {
                            thead { tr { th { "Router" } th.num { "Findings" } th { "First" } th { "Last" } } }
                            tbody {
                                @for s in &ctx.seen_by {
                                    tr data-device=(s.device) {
                                        td data-label="Router" { a href={ "/devices/" (s.device) } { (s.device) } }
                                        td.num data-label="Findings" { (s.findings) }
                                        td data-label="First" { (layout::time(s.first_ms, now)) }
                                        td data-label="Last" { (layout::time(s.last_ms, now)) }
                                    }
                                }
                                @if ctx.seen_by.is_empty() {
                                    tr.empty { td colspan="4" { "No router reported a finding with this " (ctx.key_field.as_deref().unwrap_or("key")) "." } }
                                }
                            }
                        }
                    }
                    h3 { "Earlier incidents with this key" }
                    @if ctx.earlier.is_empty() { p.muted #earlier { "None." } } @else {
                        ul.plain #earlier {
                            @for e in &ctx.earlier {
                                @let e = &e.incident;
                                li {
                                    a href={ "/incidents/" (e.id) } { "#" (e.id) " " (e.rule) } " "
                                    (layout::incident_badge(&e.state)) " " (layout::time(e.last_ms, now))
                                }
                            }
                        }
                    }
                    h3 { "Routers" }
                    table #routers {
                        thead { tr { th { "Router" } th { "Tags" } } }
                        tbody {
                            @for r in &ctx.devices {
                                tr data-device=(r.id) {
                                    td data-label="Router" { a href={ "/devices/" (r.id) } { (r.id) } }
                                    td data-label="Tags" {
                                        @for t in &r.tags { span.badge { (t) } " " }
                                        @if r.tags.is_empty() { span.muted { "none" } }
                                    }
                                }
                            }
                            @if ctx.devices.is_empty() { tr.empty { td colspan="2" { "No routers yet." } } }
                        }
                    }
                }
            }
        }
        p.muted { "As JSON: " a href={ "/api/v1/incidents/" (i.id) } { "/api/v1/incidents/" (i.id) } }
    };
    let mut resp = signed_page(who, &format!("Incident {}", i.id), Nav::Incidents, body);
    if refused.is_some() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// The state buttons' form: the optional comment with the change.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    comment: String,
}

/// The comment form.
#[derive(Debug, Deserialize)]
pub struct CommentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

/// `POST /incidents/{id}/{acknowledge|resolve|reopen}` (operators): back to
/// the incident; a move the store refuses (reopening when another of the
/// rule and key is open) is shown on the page with the comment kept.
pub async fn act(
    State(state): State<AppState>,
    who: Signed,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<NoteForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "changing incidents")?;
    let n = parse_id(&id)?;
    let keep = |message: String| Refused { message, comment: f.comment.clone(), ..Refused::default() };
    if f.comment.chars().count() > COMMENT_LEN {
        let message = format!("the comment is longer than {COMMENT_LEN} characters");
        return render(&state, &who, n, None, Some(keep(message))).await;
    }
    match api::set_state(&state, n, &action, &who.session.user, f.comment.trim()).await {
        Ok(_) => Ok(Redirect::to(&format!("/incidents/{n}?done={action}#timeline")).into_response()),
        Err(ApiError::NotFound(_)) => Err(PageError::NotFound(format!("There is no incident {n}."))),
        Err(ApiError::Invalid { message, .. }) => render(&state, &who, n, None, Some(keep(message))).await,
        Err(e) => Err(e.into()),
    }
}

/// `POST /incidents/{id}/comments` (operators).
pub async fn comment(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Form(f): Form<CommentForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "commenting on incidents")?;
    let n = parse_id(&id)?;
    match api::add_comment(&state, n, &who.session.user, &f.text).await {
        Ok(()) => Ok(Redirect::to(&format!("/incidents/{n}?done=comment#timeline")).into_response()),
        Err(ApiError::NotFound(_)) => Err(PageError::NotFound(format!("There is no incident {n}."))),
        Err(ApiError::Invalid { message, .. }) => {
            let refused = Refused { message, text: f.text.clone(), ..Refused::default() };
            render(&state, &who, n, None, Some(refused)).await
        }
        Err(e) => Err(e.into()),
    }
}
