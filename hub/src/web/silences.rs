//! `/silences`: what keeps incidents from being told. The silences not
//! ended yet (active, or to come) with an "end now" button, a form to add
//! one (`?rule=&key=` fill it in: an incident's "Silence this" link), and
//! the weekly maintenance windows with a form of theirs and delete. Both
//! forms go through the API's own code (`http::alerts::create_silence`,
//! `create_maintenance`), so the page stores nothing the API would refuse;
//! a refusal shows the form again as typed, with the reason (422).
//! Operators change them; viewers read them.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};

use super::layout::{self, Nav};
use super::{signed_page, CsrfOnly, PageError, Signed};
use crate::alert::config::Match;
use crate::correlate::rule::SEVERITIES;
use crate::http::alerts::{create_maintenance, create_silence, NewMaintenance, NewSilence};
use crate::http::{ApiError, AppState};
use crate::store::alerts::{Maintenance, Silence, DAYS};
use crate::store::now_ms;
use crate::store::users::Role;

/// Longest value of a form field, in characters (a comment's limit, the API's).
const FIELD_LEN: usize = 500;
/// The matcher fields both forms have, and `?` may fill in.
const MATCH_FIELDS: [&str; 5] = ["rule", "severity", "key", "device", "tag"];
/// What `?` may say: the silence form's fields, and what was just done.
const PARAMS: [&str; 11] =
    ["rule", "severity", "key", "device", "tag", "duration", "comment", "created", "ended", "added", "deleted"];

/// A form as the browser sent it: pairs, since the days of a window are
/// one checkbox each under one name.
type Pairs = Vec<(String, String)>;

/// The first value of `name`, or empty.
fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

/// A comma-separated list, trimmed, without empty items.
fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The matcher fields as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MatchForm {
    rule: String,
    /// The minimum severity (one name, or empty).
    severity: String,
    key: String,
    device: String,
    tag: String,
}

impl MatchForm {
    fn from_pairs(pairs: &[(String, String)]) -> MatchForm {
        MatchForm {
            rule: field(pairs, "rule").to_owned(),
            severity: field(pairs, "severity").trim().to_owned(),
            key: field(pairs, "key").to_owned(),
            device: field(pairs, "device").to_owned(),
            tag: field(pairs, "tag").to_owned(),
        }
    }

    fn to_match(&self) -> Match {
        Match {
            rule: list(&self.rule),
            min_severity: Some(self.severity.clone()).filter(|s| !s.is_empty()),
            key: list(&self.key),
            device: list(&self.device),
            tag: list(&self.tag),
            ..Match::default()
        }
    }
}

/// The silence form as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SilenceForm {
    m: MatchForm,
    duration: String,
    comment: String,
}

impl Default for SilenceForm {
    fn default() -> Self {
        SilenceForm { m: MatchForm::default(), duration: "2h".into(), comment: String::new() }
    }
}

/// The maintenance window form as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WindowForm {
    name: String,
    m: MatchForm,
    days: Vec<String>,
    start: String,
    duration: String,
}

impl Default for WindowForm {
    fn default() -> Self {
        WindowForm {
            name: String::new(),
            m: MatchForm::default(),
            days: Vec::new(),
            start: "02:00".into(),
            duration: "2h".into(),
        }
    }
}

/// Why a form was refused: the field to point at, and the API's reason.
#[derive(Debug)]
struct Refusal {
    field: &'static str,
    message: String,
}

impl Refusal {
    /// The API's refusal, with its field as the form names it.
    fn from_api(e: ApiError) -> Result<Refusal, PageError> {
        match e {
            ApiError::Invalid { field, message } => {
                // A silence's end is the form's duration.
                let field = match field {
                    "ends_ms" | "duration" => "duration",
                    f @ ("match" | "comment" | "name" | "days" | "start") => f,
                    _ => "form",
                };
                Ok(Refusal { field, message })
            }
            e => Err(e.into()),
        }
    }

    /// The field as a person reads it.
    fn label(&self) -> &'static str {
        match self.field {
            "match" => "What it matches",
            "duration" => "Duration",
            "comment" => "Comment",
            "name" => "Name",
            "days" => "Days",
            "start" => "Start",
            _ => "The form",
        }
    }
}

/// Refuses a form with a field longer than [`FIELD_LEN`] before the API
/// sees it (a matcher is a few words).
fn too_long(pairs: &[(String, String)]) -> Option<Refusal> {
    pairs.iter().find(|(k, v)| k != "csrf" && v.chars().count() > FIELD_LEN).map(|(k, _)| Refusal {
        field: if MATCH_FIELDS.contains(&k.as_str()) { "match" } else { "form" },
        message: format!("{k} is longer than {FIELD_LEN} characters"),
    })
}

/// Everything the page shows besides the stored lists.
#[derive(Debug, Default)]
struct View {
    notice: Option<String>,
    silence: SilenceForm,
    silence_refused: Option<Refusal>,
    window: WindowForm,
    window_refused: Option<Refusal>,
}

/// A duration in milliseconds as `2 h`, `1 d 6 h`, `90 min`, `45 s`.
fn span_text(ms: i64) -> String {
    let s = ms / 1000;
    let parts = [(s / 86_400, "d"), (s % 86_400 / 3600, "h"), (s % 3600 / 60, "min"), (s % 60, "s")];
    let shown: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n} {u}")).collect();
    if shown.is_empty() {
        "0 s".into()
    } else {
        shown.join(" ")
    }
}

/// How far `ms` is from now: `5 min ago`, or to the minute for what is to
/// come (`in 1 h 59 min`: a two-hour silence must not read as one hour).
fn relative(ms: i64, now: i64) -> String {
    if ms <= now {
        return layout::ago(now - ms);
    }
    let ahead = ms - now;
    if ahead < 60_000 {
        format!("in {} s", ahead / 1000)
    } else {
        format!("in {}", span_text(ahead / 60_000 * 60_000))
    }
}

/// A time as UTC date and minute, with how far from now below it.
fn when(ms: i64, now: i64) -> Markup {
    let iso = crate::http::rfc3339(ms);
    let shown = iso.get(..16).unwrap_or(&iso).replace('T', " ");
    html! { time datetime=(iso) { (shown) } " " span.muted.rel { (relative(ms, now)) } }
}

/// What a silence or window matches, readably: each field with its values.
fn matchers(m: &Match) -> Markup {
    let lists: [(&str, &[String]); 7] = [
        ("rule", &m.rule),
        ("severity", &m.severity),
        ("key", &m.key),
        ("router", &m.device),
        ("tag", &m.tag),
        ("agent", &m.agent),
        ("kind", &m.kind),
    ];
    html! {
        ul.matchers {
            @if let Some(s) = &m.min_severity { li { span.muted { "severity" } " ≥ " code { (s) } } }
            @for (name, values) in lists {
                @if !values.is_empty() {
                    li {
                        span.muted { (name) } " "
                        @if values.len() > 1 { span.muted { "any of " } }
                        @for (i, v) in values.iter().enumerate() { @if i > 0 { ", " } code { (v) } }
                    }
                }
            }
        }
    }
}

/// A window's weekdays: `every day`, or the list.
fn days_text(days: &[String]) -> String {
    if DAYS.iter().all(|d| days.iter().any(|x| x == d)) {
        "every day".into()
    } else {
        // In week order, whatever order they were stored in.
        DAYS.iter().filter(|d| days.iter().any(|x| x == *d)).copied().collect::<Vec<_>>().join(", ")
    }
}

/// One text field of a form, marked when it is what was refused.
fn text_field(name: &str, label: &str, value: &str, placeholder: &str, invalid: bool) -> Markup {
    html! {
        label {
            span { (label) }
            input type="text" name=(name) value=(value) placeholder=(placeholder) maxlength=(FIELD_LEN)
                autocomplete="off" aria-invalid=[invalid.then_some("true")];
        }
    }
}

/// The matcher fields of either form.
fn match_fields(m: &MatchForm, invalid: bool) -> Markup {
    html! {
        fieldset.matchers.invalid[invalid] {
            legend { "What it matches" }
            p.muted.hint { "Every field given must match; a comma-separated list matches any of its values." }
            div.fields {
                (text_field("rule", "Rule", &m.rule, "e.g. two-routers", invalid))
                label {
                    span { "Severity, at least" }
                    select name="severity" aria-invalid=[invalid.then_some("true")] {
                        option value="" selected[m.severity.is_empty()] { "any" }
                        @for s in SEVERITIES { option value=(s) selected[m.severity == s] { (s) } }
                    }
                }
                (text_field("key", "Key", &m.key, "e.g. src_ip=203.0.113.7", invalid))
                (text_field("device", "Router", &m.device, "e.g. gw-a, gw-b", invalid))
                (text_field("tag", "Tag", &m.tag, "e.g. lab", invalid))
            }
        }
    }
}

/// The reason a form was refused, above it.
fn refusal(id: &str, r: &Option<Refusal>) -> Markup {
    html! {
        @if let Some(r) = r {
            p.error.refused id=(id) role="alert" { "Not added. " (r.label()) ": " span.reason { (r.message) } }
        }
    }
}

fn silence_row(who: &Signed, s: &Silence, now: i64, operator: bool) -> Markup {
    let active = s.starts_ms <= now;
    html! {
        tr data-silence=(s.id) data-state=(if active { "active" } else { "upcoming" }) {
            td.num data-label="Silence" { (s.id) }
            td data-label="State" {
                @if active { (layout::state_badge_as("active", "online")) } @else { (layout::state_badge_as("upcoming", "stale")) }
            }
            td data-label="Matches" { (matchers(&s.matchers)) }
            td data-label="Starts" { (when(s.starts_ms, now)) }
            td data-label="Ends" { (when(s.ends_ms, now)) }
            td data-label="By" { (s.created_by) }
            td.comment-cell data-label="Comment" { span.cell-text { (s.comment) } }
            @if operator {
                td data-label="End" {
                    form method="post" action={ "/silences/" (s.id) "/expire" } {
                        (layout::csrf_field(who))
                        button.small.secondary type="submit" aria-label={ "End silence " (s.id) " now" } { "End now" }
                    }
                }
            }
        }
    }
}

fn window_row(who: &Signed, w: &Maintenance, now: i64, operator: bool) -> Markup {
    let on = w.active(now);
    html! {
        tr data-window=(w.id) data-active=(on) {
            td data-label="Window" { strong { (w.name) } }
            td data-label="Matches" { (matchers(&w.matchers)) }
            td data-label="When" {
                (days_text(&w.days)) ", " (format!("{:02}:{:02}", w.start_min / 60, w.start_min % 60)) " UTC"
                span.muted { " for " (span_text(w.duration_ms)) }
            }
            td data-label="Now" {
                @if on { (layout::state_badge_as("on now", "online")) } @else { (layout::state_badge_as("off", "never")) }
            }
            td data-label="By" { (w.created_by) }
            @if operator {
                td data-label="Delete" {
                    form method="post" action={ "/maintenance/" (w.id) "/delete" } {
                        (layout::csrf_field(who))
                        button.small.secondary type="submit" aria-label={ "Delete maintenance window " (w.name) } { "Delete" }
                    }
                }
            }
        }
    }
}

async fn render(state: &AppState, who: &Signed, view: View) -> Result<Response, PageError> {
    let now = now_ms();
    let operator = who.may(Role::Operator);
    let silences = state.store.silences(Some(now)).await?;
    let windows = state.store.maintenance().await?;
    let refused = view.silence_refused.is_some() || view.window_refused.is_some();
    let (s, w) = (&view.silence, &view.window);
    let s_bad = |f: &str| view.silence_refused.as_ref().is_some_and(|r| r.field == f);
    let w_bad = |f: &str| view.window_refused.as_ref().is_some_and(|r| r.field == f);
    let body = html! {
        div.pagehead {
            h1 { "Silences" }
            span.muted { "incidents that match one, or a maintenance window that is on, are not notified" }
            a.button.secondary href="/alerting" { "Alerting" }
        }
        @if let Some(n) = &view.notice { p.notice #done role="status" { (n) } }
        section #active {
            h2 { "Active and upcoming" }
            table #silences {
                thead { tr {
                    th.num { "Silence" } th { "State" } th { "Matches" } th { "Starts (UTC)" } th { "Ends (UTC)" } th { "By" }
                    th { "Comment" }
                    @if operator { th { "End" } }
                } }
                tbody {
                    @for x in &silences { (silence_row(who, x, now, operator)) }
                    @if silences.is_empty() { tr.empty { td colspan="8" { "No silences: every incident a route takes is told." } } }
                }
            }
        }
        @if operator {
            section.card.form-card #new-silence {
                h2 { "New silence" }
                (refusal("silence-error", &view.silence_refused))
                form.stack #silence-form method="post" action="/silences" {
                    (layout::csrf_field(who))
                    (match_fields(&s.m, s_bad("match")))
                    div.fields {
                        (text_field("duration", "For", &s.duration, "2h", s_bad("duration")))
                        label.wide {
                            span { "Comment (why; shown with the silence)" }
                            input type="text" name="comment" value=(s.comment) maxlength=(FIELD_LEN) required
                                placeholder="e.g. re-cabling the lab" aria-invalid=[s_bad("comment").then_some("true")];
                        }
                    }
                    p.muted.hint { "From now, for " code { "90m" } ", " code { "2h" } ", " code { "1d" } "…" }
                    div.actions { button #add-silence type="submit" { "Silence" } }
                }
            }
        }
        section #maintenance {
            h2 { "Maintenance windows" }
            p.muted { "Every week on their days, from their start (UTC) for their duration." }
            table #windows {
                thead { tr {
                    th { "Window" } th { "Matches" } th { "When" } th { "Now" } th { "By" }
                    @if operator { th { "Delete" } }
                } }
                tbody {
                    @for x in &windows { (window_row(who, x, now, operator)) }
                    @if windows.is_empty() { tr.empty { td colspan="6" { "No maintenance windows." } } }
                }
            }
        }
        @if operator {
            section.card.form-card #new-window {
                h2 { "New maintenance window" }
                (refusal("window-error", &view.window_refused))
                form.stack #window-form method="post" action="/maintenance" {
                    (layout::csrf_field(who))
                    div.fields {
                        label.wide {
                            span { "Name" }
                            input type="text" name="name" value=(w.name) maxlength="100" required placeholder="e.g. backup window"
                                aria-invalid=[w_bad("name").then_some("true")];
                        }
                    }
                    fieldset.days.invalid[w_bad("days")] {
                        legend { "Days" }
                        @for d in DAYS {
                            label.check {
                                input type="checkbox" name="days" value=(d) checked[w.days.iter().any(|x| x == d)];
                                " " (d)
                            }
                        }
                    }
                    div.fields {
                        label {
                            span { "Start (HH:MM, UTC)" }
                            input type="text" name="start" value=(w.start) maxlength="5" inputmode="numeric"
                                placeholder="02:00" aria-invalid=[w_bad("start").then_some("true")];
                        }
                        (text_field("duration", "For", &w.duration, "2h", w_bad("duration")))
                    }
                    (match_fields(&w.m, w_bad("match")))
                    div.actions { button #add-window type="submit" { "Add window" } }
                }
            }
        }
        p.muted { a href="/alerting" { "Alerting" } " says where incidents go; " a href="/incidents" { "the incidents" } " are what is told." }
    };
    let mut resp = signed_page(who, "Silences", Nav::Silences, body);
    if refused {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// A positive id from the path or the query, or 422.
fn parse_id(id: &str, what: &str) -> Result<i64, PageError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| PageError::Invalid(format!("{id:?} is not a {what} id (a positive number)")))
}

/// `GET /silences?rule=&severity=&key=&device=&tag=&duration=&comment=`
/// (the silence form filled in) `&created=&ended=&added=&deleted=` (what was done).
pub async fn page(
    State(state): State<AppState>,
    who: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(k) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(PageError::Invalid(format!("unknown parameter {k:?}; known: {}", PARAMS.join(", "))));
    }
    if let Some((k, _)) = params.iter().find(|(_, v)| v.chars().count() > FIELD_LEN) {
        return Err(PageError::Invalid(format!("{k} is longer than {FIELD_LEN} characters")));
    }
    let mut notice = None;
    for (k, what, says) in [
        ("created", "silence", "Added silence {}: matching incidents are not notified until it ends."),
        ("ended", "silence", "Ended silence {}: matching incidents are notified again."),
        ("added", "maintenance window", "Added maintenance window {}."),
        ("deleted", "maintenance window", "Deleted maintenance window {}."),
    ] {
        if let Some(v) = params.get(k) {
            notice = Some(says.replace("{}", &parse_id(v, what)?.to_string()));
        }
    }
    let value = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut silence = SilenceForm {
        m: MatchForm {
            rule: value("rule"),
            severity: value("severity"),
            key: value("key"),
            device: value("device"),
            tag: value("tag"),
        },
        ..SilenceForm::default()
    };
    if params.contains_key("duration") {
        silence.duration = value("duration");
    }
    silence.comment = value("comment");
    render(&state, &who, View { notice, silence, ..View::default() }).await
}

/// `POST /silences` (operators): adds a silence from now for the duration,
/// or shows the form again as typed with the reason (422).
pub async fn create(
    State(state): State<AppState>,
    who: Signed,
    Form(pairs): Form<Pairs>,
) -> Result<Response, PageError> {
    who.check_csrf(field(&pairs, "csrf"))?;
    who.require(Role::Operator, "silencing alerts")?;
    let typed = SilenceForm {
        m: MatchForm::from_pairs(&pairs),
        duration: field(&pairs, "duration").trim().to_owned(),
        comment: field(&pairs, "comment").to_owned(),
    };
    let refused = match too_long(&pairs) {
        Some(r) => r,
        None => {
            let new = NewSilence {
                matchers: typed.m.to_match(),
                starts_ms: None,
                ends_ms: None,
                duration: Some(typed.duration.clone()),
                comment: typed.comment.clone(),
            };
            match create_silence(&state, new, &who.session.user).await {
                Ok(s) => return Ok(Redirect::to(&format!("/silences?created={}", s.id)).into_response()),
                Err(e) => Refusal::from_api(e)?,
            }
        }
    };
    render(&state, &who, View { silence: typed, silence_refused: Some(refused), ..View::default() }).await
}

/// `POST /silences/{id}/expire` (operators): ends a silence now.
pub async fn expire(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "ending silences")?;
    let id = parse_id(&id, "silence")?;
    if !state.store.expire_silence(id, now_ms()).await? {
        return Err(PageError::NotFound(format!("There is no running silence {id}.")));
    }
    tracing::info!(silence = id, by = %who.session.user, "silence ended from the web UI");
    Ok(Redirect::to(&format!("/silences?ended={id}")).into_response())
}

/// `POST /maintenance` (operators): adds a weekly window, or shows the
/// form again as typed with the reason (422).
pub async fn add_window(
    State(state): State<AppState>,
    who: Signed,
    Form(pairs): Form<Pairs>,
) -> Result<Response, PageError> {
    who.check_csrf(field(&pairs, "csrf"))?;
    who.require(Role::Operator, "planning maintenance")?;
    let typed = WindowForm {
        name: field(&pairs, "name").to_owned(),
        m: MatchForm::from_pairs(&pairs),
        days: pairs.iter().filter(|(k, _)| k == "days").map(|(_, v)| v.clone()).collect(),
        start: field(&pairs, "start").trim().to_owned(),
        duration: field(&pairs, "duration").trim().to_owned(),
    };
    let refused = match too_long(&pairs) {
        Some(r) => r,
        None => {
            let new = NewMaintenance {
                name: typed.name.clone(),
                matchers: typed.m.to_match(),
                days: typed.days.clone(),
                start: typed.start.clone(),
                duration: typed.duration.clone(),
            };
            match create_maintenance(&state, new, &who.session.user).await {
                Ok(w) => return Ok(Redirect::to(&format!("/silences?added={}#maintenance", w.id)).into_response()),
                Err(e) => Refusal::from_api(e)?,
            }
        }
    };
    render(&state, &who, View { window: typed, window_refused: Some(refused), ..View::default() }).await
}

/// `POST /maintenance/{id}/delete` (operators).
pub async fn delete_window(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "planning maintenance")?;
    let id = parse_id(&id, "maintenance window")?;
    if !state.store.delete_maintenance(id).await? {
        return Err(PageError::NotFound(format!("There is no maintenance window {id}.")));
    }
    tracing::info!(maintenance = id, by = %who.session.user, "maintenance window deleted from the web UI");
    Ok(Redirect::to(&format!("/silences?deleted={id}#maintenance")).into_response())
}

/// `GET /maintenance`: the windows are on the silences page (where a
/// refused form's page, reloaded, would come).
pub async fn windows() -> Redirect {
    Redirect::to("/silences#maintenance")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Pairs {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matcher_fields_are_lists_and_a_minimum_severity() {
        let f = MatchForm::from_pairs(&pairs(&[
            ("rule", " a, b ,,"),
            ("severity", "high"),
            ("key", "src_ip=192.0.2.1"),
            ("device", ""),
            ("tag", "lab"),
        ]));
        let m = f.to_match();
        assert_eq!(m.rule, ["a", "b"]);
        assert_eq!(m.min_severity.as_deref(), Some("high"));
        assert_eq!((m.key.len(), m.device.len(), m.tag.len()), (1, 0, 1));
        assert_eq!(MatchForm::default().to_match(), Match::default(), "nothing typed matches everything: refused");
    }

    #[test]
    fn spans_days_and_matchers_read_as_people_say_them() {
        assert_eq!(span_text(7_200_000), "2 h");
        assert_eq!(span_text(90 * 60_000), "1 h 30 min");
        assert_eq!(span_text(86_400_000 + 6 * 3_600_000), "1 d 6 h");
        assert_eq!(span_text(45_000), "45 s");
        assert_eq!(relative(7_199_000, 0), "in 1 h 59 min", "to the minute, never rounded up");
        assert_eq!(relative(30_000, 0), "in 30 s");
        assert_eq!(relative(0, 300_000), "5 min ago");
        assert_eq!(days_text(&["sun".into(), "sat".into()]), "sat, sun");
        assert_eq!(days_text(&DAYS.iter().map(|d| d.to_string()).collect::<Vec<_>>()), "every day");
        let m = Match {
            rule: vec!["r".into()],
            min_severity: Some("high".into()),
            device: vec!["gw-a".into(), "gw-b".into()],
            ..Match::default()
        };
        let text = matchers(&m).into_string();
        assert!(text.contains("severity</span> ≥ <code>high"), "{text}");
        assert!(
            text.contains("router</span> <span class=\"muted\">any of </span><code>gw-a</code>, <code>gw-b"),
            "{text}"
        );
    }

    #[test]
    fn a_field_too_long_is_refused_before_the_api() {
        let long = "x".repeat(FIELD_LEN + 1);
        let r = too_long(&pairs(&[("csrf", &long), ("rule", &long)])).unwrap();
        assert_eq!(r.field, "match");
        assert!(r.message.starts_with("rule is longer"));
        assert!(too_long(&pairs(&[("csrf", &long), ("rule", "ok")])).is_none(), "the CSRF token is not typed");
    }
}
