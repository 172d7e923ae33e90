//! `/`: the fleet at a glance. Totals (live), findings over time (24 h or
//! 7 d, stacked by agent), the newest findings (live) and every device with
//! its state, last heartbeat, agents, findings of the last day and edge
//! version; the device table searches and sorts on the server, so a link
//! keeps the view.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};

use super::chart::{self, Range};
use super::findings::{self as findings_page, Columns};
use super::layout::{self, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::AppState;
use crate::store::fleet::{FleetRow, FleetTotals};
use crate::store::{now_ms, FindingQuery};

/// Devices per page of the device table.
const PER_PAGE: usize = 100;

/// The device table's sort keys.
const SORTS: [&str; 6] = ["id", "state", "heartbeat", "findings", "version", "uptime"];

/// The totals region (what `/live/fleet` sends again when anything changes).
pub fn totals(t: &FleetTotals) -> Markup {
    let item = |n: i64, label: &str, href: &str| {
        html! { a.total href=(href) { span.n { (n) } span.l { (label) } } }
    };
    html! {
        (item(t.devices, "devices", "/#devices"))
        (item(t.online, "online", "/?state=online#devices"))
        (item(t.stale, "stale", "/?state=stale#devices"))
        (item(t.offline, "offline", "/?state=offline#devices"))
        (item(t.findings_24h, "findings in 24 h", "/findings"))
        (item(t.open_findings, "open findings", "/findings?open=true"))
    }
}

fn sort_rows(rows: &mut [FleetRow], key: &str, desc: bool, now: i64) {
    let rank = |s: &str| match s {
        "offline" => 0,
        "stale" => 1,
        "online" => 2,
        _ => 3,
    };
    match key {
        "state" => rows.sort_by(|a, b| rank(a.state(now)).cmp(&rank(b.state(now))).then(a.id.cmp(&b.id))),
        "heartbeat" => rows.sort_by(|a, b| a.heartbeat_ms.cmp(&b.heartbeat_ms).then(a.id.cmp(&b.id))),
        "findings" => rows.sort_by(|a, b| a.findings_24h.cmp(&b.findings_24h).then(a.id.cmp(&b.id))),
        "version" => rows.sort_by(|a, b| a.version.cmp(&b.version).then(a.id.cmp(&b.id))),
        "uptime" => rows.sort_by(|a, b| a.uptime_s.cmp(&b.uptime_s).then(a.id.cmp(&b.id))),
        _ => rows.sort_by(|a, b| a.id.cmp(&b.id)),
    }
    if desc {
        rows.reverse();
    }
}

/// `GET /?q=&state=&sort=&dir=&range=`.
pub async fn page(
    State(state): State<AppState>,
    who: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    const KNOWN: [&str; 6] = ["q", "state", "sort", "dir", "range", "page"];
    super::known_params(&params, &KNOWN)?;
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let range = Range::parse(params.get("range").map(String::as_str)).map_err(PageError::Invalid)?;
    let sort = match get("sort") {
        "" => "id",
        s if SORTS.contains(&s) => s,
        s => return Err(PageError::Invalid(format!("sort {s:?} is not one of {}", SORTS.join(", ")))),
    };
    let desc = match get("dir") {
        "" | "asc" => false,
        "desc" => true,
        d => return Err(PageError::Invalid(format!("dir {d:?} is not asc or desc"))),
    };
    let want_state = match get("state") {
        s @ ("" | "online" | "stale" | "offline" | "never") => s,
        s => return Err(PageError::Invalid(format!("state {s:?} is not online, stale, offline or never"))),
    };
    let page_no = match get("page") {
        "" => 1,
        p => p
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| PageError::Invalid(format!("page {p:?} is not a page number (1, 2, ...)")))?,
    };
    let search = get("q").trim().to_lowercase();
    if search.len() > 200 {
        return Err(PageError::Invalid("the search q is longer than 200 characters".into()));
    }

    let now = now_ms();
    let mut rows = state.store.fleet(now).await?;
    let t = FleetTotals::of(&rows, now);
    rows.retain(|r| {
        (want_state.is_empty() || r.state(now) == want_state)
            && (search.is_empty()
                || r.id.to_lowercase().contains(&search)
                || r.name.to_lowercase().contains(&search)
                || r.version.as_deref().is_some_and(|v| v.contains(&search)))
    });
    sort_rows(&mut rows, sort, desc, now);
    let matching = rows.len();
    let pages = matching.div_ceil(PER_PAGE).max(1);
    let shown: &[FleetRow] = rows.get((page_no - 1) * PER_PAGE..).unwrap_or_default();
    let shown = &shown[..shown.len().min(PER_PAGE)];
    let hours = state.store.finding_hours(None, range.from_hour(now)).await?;
    let bars = chart::bucket(&hours, range, now);
    let recent = state.store.query_findings(&FindingQuery { limit: 10, ..Default::default() }).await?;

    let keep = |extra: &[(&str, &str)]| {
        let mut pairs =
            vec![("q", get("q")), ("state", want_state), ("sort", sort), ("dir", get("dir")), ("range", get("range"))];
        for (k, v) in extra {
            pairs.retain(|(pk, _)| pk != k);
            pairs.push((k, v));
        }
        format!("/{}", layout::query(&pairs))
    };
    let sort_link = |key: &'static str, label: &str| {
        let (dir, mark) = if sort == key && !desc {
            ("desc", " ▲")
        } else if sort == key {
            ("asc", " ▼")
        } else {
            ("asc", "")
        };
        let aria = if sort == key { Some(if desc { "descending" } else { "ascending" }) } else { None };
        html! { a href={ (keep(&[("sort", key), ("dir", dir), ("page", "")])) "#devices" } aria-sort=[aria] { (label) (mark) } }
    };
    let body = html! {
        div.pagehead { h1 { "Fleet" } span.live #fleet-status data-state="off" {} }
        section.totals aria-label="Totals" data-live="/live/fleet" data-live-status="fleet-status" { (totals(&t)) }
        div.grid2 {
            section.card {
                h2 { "Findings over time" }
                nav.tabs aria-label="Range" {
                    @for r in [Range::Day, Range::Week] {
                        a href=(keep(&[("range", r.as_str())])) aria-current=[(r == range).then_some("page")] { (r.as_str()) }
                    }
                }
                (chart::stacked_bars(&bars, range, &format!("New findings per agent, last {}", range.as_str())))
            }
            section.card {
                div.pagehead { h2 { "Newest findings" } span.live #recent-status data-state="off" {} }
                table {
                    tbody data-live="/live/findings" data-live-status="recent-status" data-live-max="10" {
                        @for f in &recent { (findings_page::row(f, Columns::All, now)) }
                        @if recent.is_empty() { (findings_page::empty_row(Columns::All, "No findings yet.")) }
                    }
                }
                p { a href="/findings" { "All findings »" } }
            }
        }
        h2 #devices { "Devices" }
        form.filters method="get" action="/" role="search" {
            label { span { "Search" } input type="search" name="q" value=(get("q")) placeholder="id, name or version" maxlength="200"; }
            label { span { "State" }
                select name="state" {
                    @for s in ["", "online", "stale", "offline", "never"] {
                        option value=(s) selected[s == want_state] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            input type="hidden" name="sort" value=(sort);
            input type="hidden" name="dir" value=(get("dir"));
            div.actions { button type="submit" { "Apply" } a href="/" { "Reset" } }
        }
        p.muted {
            (matching) " of " (t.devices) " devices"
            @if pages > 1 { ", page " (page_no) " of " (pages) }
        }
        table #device-table {
            thead { tr {
                th { (sort_link("id", "Device")) }
                th { (sort_link("state", "State")) }
                th { (sort_link("heartbeat", "Last heartbeat")) }
                th { "Agents" }
                th.num { (sort_link("findings", "Findings 24 h")) }
                th { (sort_link("version", "Edge version")) }
                th { (sort_link("uptime", "Uptime")) }
            } }
            tbody {
                @for r in shown {
                    tr {
                        td data-label="Device" { a href={ "/devices/" (r.id) } { (r.id) } @if r.name != r.id { " " span.muted { (r.name) } } }
                        td data-label="State" { (layout::state_badge(r.state(now))) }
                        td data-label="Last heartbeat" { @if let Some(t) = r.heartbeat_ms { (layout::time(t, now)) } @else { span.muted { "none" } } }
                        td data-label="Agents" { @for (name, st) in &r.agents { (layout::agent_badge(name, st)) } }
                        td.num data-label="Findings 24 h" { a href={ "/findings?device=" (r.id) } { (r.findings_24h) } }
                        td data-label="Edge version" { (r.version.as_deref().unwrap_or("—")) }
                        td data-label="Uptime" { @if let Some(u) = r.uptime_s { (layout::duration(u)) } @else { "—" } }
                    }
                }
                @if shown.is_empty() {
                    tr.empty { td colspan="7" { @if matching == 0 { "No devices match." } @else { "No devices on this page: it is past the last one." } } }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Device pages" {
                @if page_no > 1 { a href={ (keep(&[("page", &(page_no - 1).to_string())])) "#devices" } rel="prev" { "« Previous" } }
                @if page_no < pages { a href={ (keep(&[("page", &(page_no + 1).to_string())])) "#devices" } rel="next" { "Next »" } }
            }
        }
    };
    Ok(signed_page(&who, "Fleet", Nav::Overview, body))
}
