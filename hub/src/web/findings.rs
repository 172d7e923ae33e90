//! `/findings`: the findings table with its filters (the same parameters,
//! parsing and store query as `GET /api/v1/findings`), cursor pagination
//! and new rows arriving live; `/findings/{id}`: one finding.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};

use super::layout::{self, Filter, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::findings::{next_cursor, parse_id, parse_query, PARAMS, SEVERITIES};
use crate::http::AppState;
use crate::store::{now_ms, FindingRow};

/// Rows per page.
const PAGE: u32 = 50;

/// Which columns a findings table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// Everything (the findings page).
    All,
    /// Without the device (a device's own page).
    NoDevice,
}

/// The table's header row.
pub fn head(cols: Columns) -> Markup {
    html! {
        thead { tr {
            th { "When" }
            @if cols == Columns::All { th { "Device" } }
            th { "Severity" } th { "Kind" } th { "Subject" } th.num { "Count" } th { "Summary" }
        } }
    }
}

/// One finding as a table row (also what the live view sends).
pub fn row(f: &FindingRow, cols: Columns, now: i64) -> Markup {
    let subject = [f.src_ip.as_deref(), f.host.as_deref(), f.user.as_deref(), f.mac.as_deref(), f.iface.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    html! {
        tr data-id=(f.id) {
            td data-label="When" { a href={ "/findings/" (f.id) } { (layout::time(f.last_ms, now)) } }
            @if cols == Columns::All {
                td data-label="Device" { a href={ "/devices/" (f.device_id) } { (f.device_id) } }
            }
            td data-label="Severity" { (layout::severity_badge(f.severity)) }
            td data-label="Kind" {
                a href={ "/findings?kind=" (f.kind) } { (f.kind) }
                @if f.open { " " span.badge.state-stale title="the edge may still update it" { "open" } }
            }
            td data-label="Subject" { (subject) }
            td.num data-label="Count" { (f.count) }
            td.summary-cell data-label="Summary" { (f.summary) }
        }
    }
}

/// A table body with no rows yet.
pub fn empty_row(cols: Columns, text: &str) -> Markup {
    let span = if cols == Columns::All { 7 } else { 6 };
    html! { tr.empty { td colspan=(span) { (text) } } }
}

/// `GET /findings?device=&agent=&kind=&severity=&open=&since=&until=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    params.retain(|_, v| !v.is_empty());
    if !params.contains_key("limit") {
        params.insert("limit".into(), PAGE.to_string());
    }
    let q = parse_query(&params)?;
    let rows = state.store.query_findings(&q).await?;
    let now = now_ms();
    let devices = state.store.list_devices().await?;
    let value = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let filters: Vec<(&str, &str)> =
        PARAMS.iter().filter(|k| **k != "cursor" && **k != "limit").map(|k| (*k, value(k))).collect();
    let base = format!("/findings{}", layout::query(&filters));
    let next = next_cursor(&q, &rows).map(|c| {
        let mut with = filters.clone();
        with.push(("cursor", &c));
        format!("/findings{}", layout::query(&with))
    });
    let on_first_page = q.before_id.is_none();
    let live = format!("/live/findings{}", layout::query(&filters));
    let mut device_options = vec![(String::new(), "any".to_owned())];
    device_options.extend(devices.iter().map(|d| (d.id.clone(), d.name.clone())));
    let agent_options = std::iter::once((String::new(), "any".to_owned()))
        .chain(opmas_proto::agents::AGENTS.iter().map(|a| (a.name.to_owned(), a.name.to_owned())))
        .chain(std::iter::once((
            opmas_proto::kinds::RESPONSE_AGENT.to_owned(),
            "response (the router's own)".to_owned(),
        )))
        .chain(std::iter::once((crate::store::lifecycle::AGENT.to_owned(), "lifecycle (the hub)".to_owned())))
        .collect();
    let kind_options = std::iter::once((String::new(), "any".to_owned()))
        .chain(opmas_proto::kinds::ALL_KINDS.iter().map(|k| (k.name.to_owned(), k.name.to_owned())))
        .collect();
    let severity_options = std::iter::once((String::new(), "any".to_owned()))
        .chain(SEVERITIES.iter().map(|s| (s.to_string(), format!("{s} or worse"))))
        .collect();
    let open_options = vec![
        (String::new(), "any".to_owned()),
        ("true".to_owned(), "open".to_owned()),
        ("false".to_owned(), "closed".to_owned()),
    ];
    let archive = crate::http::archive::ArchiveView::of(&state).await?;
    let body = html! {
        div.pagehead { h1 { "Findings" } span.live #live-status data-state="off" {} }
        p.muted #archive {
            @if archive.hot_days == 0 { "Every finding stays here (no archiving)." }
            @else { "Findings of the last " (archive.hot_days) " days are here" }
            @if let Some(t) = archive.oldest_hot_ms { " (the oldest from " (layout::time(t, now)) ")" }
            "."
            @if let (Some(first), Some(last)) = (archive.days.first(), archive.days.last()) {
                " Archived: " (archive.days.len()) " day(s), " (first.day) " to " (last.day) ", in "
                code { (archive.archive_dir) } " (" code { "opmas-hub archive import FILE" } " brings a day back)."
            }
            @if let Some(e) = &archive.error { " The archive's manifest cannot be read: " (e) }
        }
        (layout::filters("/findings", &[
            Filter::Select { name: "device", label: "Device", value: value("device"), options: device_options },
            Filter::Select { name: "agent", label: "Agent", value: value("agent"), options: agent_options },
            Filter::Select { name: "kind", label: "Kind", value: value("kind"), options: kind_options },
            Filter::Select { name: "severity", label: "Severity", value: value("severity"), options: severity_options },
            Filter::Select { name: "open", label: "State", value: value("open"), options: open_options },
            Filter::Time { name: "since", label: "Last seen after", value: value("since") },
            Filter::Time { name: "until", label: "First seen before", value: value("until") },
        ]))
        table #findings {
            (head(Columns::All))
            @if on_first_page {
                tbody data-live=(live) data-live-status="live-status" data-live-max=(PAGE) {
                    @for f in &rows { (row(f, Columns::All, now)) }
                    @if rows.is_empty() { (empty_row(Columns::All, "No findings match.")) }
                }
            } @else {
                tbody {
                    @for f in &rows { (row(f, Columns::All, now)) }
                    @if rows.is_empty() { (empty_row(Columns::All, "No findings on this page: it is past the last one.")) }
                }
            }
        }
        (layout::pager((!on_first_page).then_some(base.as_str()), next.as_deref()))
    };
    Ok(signed_page(&who, "Findings", Nav::Findings, body))
}

/// `GET /findings/{id}`.
pub async fn one(State(state): State<AppState>, who: Signed, Path(id): Path<String>) -> Result<Response, PageError> {
    let n = parse_id(&id)?;
    let f = state.store.finding(n).await?.ok_or_else(|| PageError::NotFound(format!("There is no finding {n}.")))?;
    let now = now_ms();
    let text = |v: &Option<String>| html! { @if let Some(v) = v { (v) } @else { span.muted { "—" } } };
    let body = html! {
        p { a href="/findings" { "« Findings" } }
        h1 { (f.kind) " on " a href={ "/devices/" (f.device_id) } { (f.device_id) } }
        p.summary { (f.summary) }
        (layout::facts(&[
            ("Severity", layout::severity_badge(f.severity)),
            ("State", html! { @if f.open { "open: the edge may still update it" } @else { "closed" } }),
            ("Count", html! { (f.count) }),
            ("Agent", html! { (f.agent) }),
            ("First event", layout::time(f.first_ms, now)),
            ("Last event", layout::time(f.last_ms, now)),
            ("Received", layout::time(f.received_ms, now)),
            ("Source address", text(&f.src_ip)),
            ("Source host", text(&f.host)),
            ("User", text(&f.user)),
            ("Station (MAC)", text(&f.mac)),
            ("Interface", text(&f.iface)),
            ("Service", text(&f.service)),
            ("Edge run, sequence", html! { (f.epoch) ", " (f.seq) }),
        ]))
        h2 { "Evidence" }
        @if f.evidence.is_empty() { p.muted { "No log lines were kept with this finding." } }
        @else { pre.evidence { @for line in &f.evidence { (line) "\n" } } }
        p.muted { "As JSON: " a href={ "/api/v1/findings/" (f.id) } { "/api/v1/findings/" (f.id) } }
    };
    Ok(signed_page(&who, &format!("Finding {}", f.id), Nav::None, body))
}
