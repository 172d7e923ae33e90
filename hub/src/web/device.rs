//! `/devices/{id}`: one router: its presence, the figures of its latest
//! heartbeat, its agents with their states and counts, its findings over
//! the last day and its newest findings (live).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;

use super::chart::{self, Range};
use super::findings::{self as findings_page, Columns};
use super::layout::{self, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::AppState;
use crate::store::fleet::STALE_MS;
use crate::store::{now_ms, FindingQuery};

/// `GET /devices/{id}?range=`.
pub async fn page(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if let Some(k) = params.keys().find(|k| !["range", "sent"].contains(&k.as_str())) {
        return Err(PageError::Invalid(format!("unknown parameter {k:?}; known: range, sent")));
    }
    let sent_ok = |v: &str| {
        v.strip_prefix("command-").or_else(|| v.strip_prefix("config-")).is_some_and(|n| n.parse::<u64>().is_ok())
    };
    if params.get("sent").is_some_and(|v| !sent_ok(v)) {
        return Err(PageError::Invalid("sent must be command-N or config-N".into()));
    }
    let range = Range::parse(params.get("range").map(String::as_str)).map_err(PageError::Invalid)?;
    let id = opmas_proto::DeviceId::new(&id).map_err(|e| PageError::Invalid(format!("device id: {e}")))?;
    let d = state
        .store
        .get_device(id.as_str())
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no device {:?}.", id.as_str())))?;
    let now = now_ms();
    let hb = state.store.latest_heartbeat(&d.id).await?;
    let q = FindingQuery { device: Some(d.id.clone()), limit: 20, ..Default::default() };
    let recent = state.store.query_findings(&q).await?;
    let hours = state.store.finding_hours(Some(&d.id), range.from_hour(now)).await?;
    let bars = chart::bucket(&hours, range, now);
    let cq = crate::store::commands::CommandQuery { device: Some(d.id.clone()), limit: 10, ..Default::default() };
    let commands = state.store.query_commands(&cq).await?;
    let operator = who.may(crate::store::users::Role::Operator);
    let config = crate::http::agent_config::device_view(&state, &d.id).await?;
    let timeline = state.store.presence_history(&d.id, 20).await?;
    let tags = state.store.tags(&d.id).await?;
    let presence = match d.status.as_str() {
        "online" if d.last_seen_ms.is_some_and(|t| now - t > STALE_MS) => "stale",
        "online" => "online",
        "stale" => "stale",
        "offline" => "offline",
        _ => "never",
    };
    let live = format!("/live/findings{}", layout::query(&[("device", &d.id), ("view", "device")]));
    let body = html! {
        p { a href="/" { "« Fleet" } }
        h1 { (d.name) @if d.name != d.id { " " span.muted { (d.id) } } " " (layout::state_badge(presence)) }
        @if d.transport == "ssh" {
            p.notice #ssh-device {
                "No OPMAS agent runs on this router: the hub reaches it over SSH for actions, with the host key pinned at enrolment. "
                "It reports no findings or heartbeats, so it is never seen online."
            }
        }
        @if let Some(sent) = params.get("sent") {
            p.notice role="status" #command-notice {
                @if let Some(n) = sent.strip_prefix("command-") { "Command " (n) " sent; its answer shows under Commands." }
                @else if let Some(v) = sent.strip_prefix("config-") { "Configuration version " (v) " sent; the device's state follows at its next heartbeat." }
            }
        }
        (layout::facts(&[
            ("Last message", html! { @if let Some(t) = d.last_seen_ms { (layout::time(t, now)) } @else { "never" } }),
            ("Enrolled", layout::time(d.created_ms, now)),
            ("Edge run (epoch)", html! { (d.epoch.as_deref().unwrap_or("—")) }),
            ("Tags", html! {
                span #tags { @for t in &tags { span.badge { (t) } " " } @if tags.is_empty() { span.muted { "none" } } }
            }),
        ]))
        @if operator {
            form.filters #tag-form method="post" action={ "/devices/" (d.id) "/tags" } {
                (layout::csrf_field(&who))
                label { span { "Tags, in order (a later one's configuration wins)" }
                    input type="text" name="tags" value=(tags.join(" ")) placeholder="site-a lab" maxlength="1000" autocomplete="off";
                }
                div.actions { button type="submit" { "Set tags" } }
            }
        }
        details #presence {
            summary { "Presence: the last " (timeline.len()) " changes" }
            ol.timeline {
                @for p in &timeline {
                    li { (layout::state_badge(&p.status)) " " (layout::time(p.at_ms, now)) }
                }
                @if timeline.is_empty() { li.muted { "No change yet." } }
            }
        }
        h2 { "Latest heartbeat" }
        @match &hb {
            None => { p.muted { "This device has not sent a heartbeat yet." } }
            Some((h, _)) => {
                (layout::facts(&[
                    ("Received", layout::time(h.received_ms, now)),
                    ("Edge version", html! { (h.version) }),
                    ("Uptime", html! { (layout::duration(h.uptime_s)) }),
                    ("Load", html! { @if let Some(l) = h.load_milli { (format!("{:.2}", l as f64 / 1000.0)) } @else { "—" } }),
                    ("Edge memory", html! { @if let Some(k) = h.rss_kib { (format!("{:.1} MiB", k as f64 / 1024.0)) } @else { "—" } }),
                    ("Config version", html! { (h.config_version) }),
                    ("Spool", html! { (h.spool_depth) " waiting, " (h.spool_bytes / 1024) " of " (h.spool_budget / 1024) " KiB" }),
                    ("Spool drops", html! { (h.spool_dropped) }),
                    ("Lines read", html! { (h.lines) }),
                    ("Unparsed", html! { (h.unparsed) }),
                    ("Shed", html! { (h.shed) }),
                    ("Truncated", html! { (h.truncated) }),
                    ("Findings sent", html! { (h.findings) }),
                ]))
            }
        }
        h2 { "Agents" }
        p #config-sync {
            "Configuration: "
            @match config.sync {
                "in_sync" => { (layout::state_badge_as("in sync", "online")) " version " (config.effective.version) }
                "pending" => {
                    (layout::state_badge_as("pending", "stale")) " version " (config.effective.version) " sent; running "
                    (config.running_version.unwrap_or(0))
                }
                "rejected" => {
                    (layout::state_badge_as("rejected", "offline")) " version " (config.effective.version) ": "
                    (config.error.as_deref().unwrap_or(""))
                }
                "local" => { (layout::state_badge_as("local", "never")) " nothing set at the hub; the router runs its own settings" }
                _ => { (layout::state_badge_as("unknown", "never")) " no heartbeat yet" }
            }
        }
        @match &hb {
            Some((_, agents)) if !agents.is_empty() => {
                table #agents {
                    thead { tr {
                        th { "Agent" } th { "State" } th.num { "Events" } th.num { "Findings" } th.num { "Evicted" } th.num { "Restarts" } th { "Last failure" }
                        @if operator { th { "Lifecycle" } }
                    } }
                    tbody {
                        @for a in agents {
                            tr data-agent=(a.name) {
                                td data-label="Agent" { (a.name) }
                                td data-label="State" { (layout::agent_badge(&a.state, &a.state)) }
                                td.num data-label="Events" { (a.events) }
                                td.num data-label="Findings" { (a.findings) }
                                td.num data-label="Evicted" { (a.evicted) }
                                td.num data-label="Restarts" title="restarts by the edge's supervisor in its current run" { (a.restarts) }
                                td data-label="Last failure" { @if let Some(e) = &a.last_error { code { (e) } } @else { span.muted { "—" } } }
                                @if operator {
                                    td data-label="Lifecycle" {
                                        div.actions {
                                            @for action in ["start", "stop", "restart"] {
                                                form method="post" action={ "/devices/" (d.id) "/agents/" (a.name) "/" (action) } {
                                                    (layout::csrf_field(&who))
                                                    button type="submit" class={ "small" @if action == "stop" { " danger" } }
                                                        aria-label={ (action) " " (a.name) " on " (d.id) } { (action) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ => { p.muted { "No agent states reported yet." } }
        }
        section.card {
            h2 { "Findings over time" }
            nav.tabs aria-label="Range" {
                @for r in [Range::Day, Range::Week] {
                    a href={ "/devices/" (d.id) "?range=" (r.as_str()) } aria-current=[(r == range).then_some("page")] { (r.as_str()) }
                }
            }
            (chart::stacked_bars(&bars, range, &format!("New findings of {} per agent, last {}", d.id, range.as_str())))
        }
        div.pagehead { h2 { "Newest findings" } span.live #device-live data-state="off" {} }
        table {
            (findings_page::head(Columns::NoDevice))
            tbody data-live=(live) data-live-status="device-live" data-live-max="20" {
                @for f in &recent { (findings_page::row(f, Columns::NoDevice, now)) }
                @if recent.is_empty() { (findings_page::empty_row(Columns::NoDevice, "No findings from this device.")) }
            }
        }
        p { a href={ "/findings?device=" (d.id) } { "All findings of " (d.id) " »" } }
        h2 #commands { "Commands" }
        (super::commands::table(&commands, false, now))
        p { a href={ "/commands?device=" (d.id) } { "All commands of " (d.id) " »" } }
    };
    Ok(signed_page(&who, &d.name, Nav::None, body))
}
