//! `/actions`: the audit log of actions on routers (the same store query
//! and filters as `GET /api/v1/actions`), with approve and reject for what a
//! playbook asked approval for, cancel for commands still waiting for
//! their routers, and undo for a sent block or ban
//! (operators, through the API's own `decide_for`). The playbooks have
//! their own pages (`playbooks.rs`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};

use super::layout::{self, Filter, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::AppState;
use crate::store::actions::{ActionRow, STATES};
use crate::store::now_ms;
use crate::store::users::Role;

/// Rows per page.
const PAGE: u32 = 50;

/// `block 198.51.100.7 for 3600 s`, or the stored JSON if unreadable.
fn what(a: &ActionRow) -> String {
    a.action().map(|x| x.to_string()).unwrap_or_else(|_| a.action.0.to_string())
}

fn badge(state: &str) -> Markup {
    let (class, symbol) = match state {
        // Action and command states, and a playbook's mode.
        "sent" | "done" | "auto" => ("state-online", "✓"),
        "awaiting_approval" | "pending" | "dry_run" | "approval" => ("state-stale", "…"),
        _ => ("state-offline", "✕"),
    };
    html! { span class={ "badge " (class) } { span aria-hidden="true" { (symbol) " " } (state.replace('_', " ")) } }
}

/// The buttons `who` may use on `a`.
fn buttons(who: &Signed, a: &ActionRow) -> Markup {
    if !who.may(Role::Operator) {
        return html! {};
    }
    let undoable = a.state == "sent" && a.action().ok().and_then(|x| x.undo()).is_some();
    let pending = a.state == "sent" && a.commands.iter().any(|c| c.state == "pending");
    let verbs: &[(&str, &str)] = match a.state.as_str() {
        "awaiting_approval" => &[("approve", "Approve"), ("reject", "Reject")],
        _ if pending && undoable => &[("cancel", "Cancel"), ("undo", "Undo")],
        _ if pending => &[("cancel", "Cancel")],
        _ if undoable => &[("undo", "Undo")],
        _ => &[],
    };
    html! {
        @for (verb, label) in verbs {
            form.inline method="post" action={ "/actions/" (a.id) "/" (verb) } {
                (layout::csrf_field(who))
                button type="submit" data-verb=(verb) { (label) }
            }
        }
    }
}

/// `GET /actions?state=&playbook=&cursor=&done=`: `GET /api/v1/actions`'s filters
/// (`http::actions::parse_query`), rendered.
pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    params.retain(|_, v| !v.is_empty());
    let done = params.remove("done");
    params.entry("limit".into()).or_insert_with(|| PAGE.to_string());
    let q = crate::http::actions::parse_query(&params)?;
    let rows = state.store.query_actions(q.state.as_deref(), q.playbook.as_deref(), q.before_id, q.limit).await?;
    let state_filter = q.state.as_deref().unwrap_or("");
    let playbook_filter = q.playbook.as_deref().unwrap_or("");
    let filters = [("state", state_filter), ("playbook", playbook_filter)];
    let next = (rows.len() as u32 == q.limit)
        .then(|| rows.last().map(|a| crate::http::commands::encode_cursor(a.id)))
        .flatten()
        .map(|c| {
            let mut with = filters.to_vec();
            with.push(("cursor", &c));
            format!("/actions{}", layout::query(&with))
        });
    let base = format!("/actions{}", layout::query(&filters));
    let before_id = q.before_id;
    let state_options = std::iter::once((String::new(), "any".to_owned()))
        .chain(STATES.iter().map(|s| (s.to_string(), s.replace('_', " "))))
        .collect();
    let now = now_ms();
    let body = html! {
        h1 { "Actions" }
        p.lead { "What was done on routers, by whom or by which playbook, and how each router answered. "
            a href="/playbooks" { "Playbooks" } " decide actions on their own; those that ask for approval wait here." }
        @if let Some(n) = done { p.notice #done role="status" { (n) } }
        (layout::filters("/actions", &[
            Filter::Select { name: "state", label: "State", value: state_filter, options: state_options },
            Filter::Text { name: "playbook", label: "Playbook", value: playbook_filter, placeholder: "block-bruteforce" },
        ]))
        table #audit {
            thead { tr {
                th { "Id" } th { "When" } th { "By" } th { "Action" } th { "Why" } th { "Routers" } th { "State" } th { "" }
            } }
            tbody {
                @for a in &rows {
                    tr data-action=(a.id) data-state=(a.state) {
                        td.num data-label="Id" { (a.id) }
                        td data-label="When" { (layout::time(a.created_ms, now)) }
                        td data-label="By" { (a.created_by)
                            @if let Some(d) = &a.decided_by { br; small { "decided by " (d) } } }
                        td data-label="Action" { (what(a)) }
                        td.summary-cell data-label="Why" {
                            @if let Some(f) = a.finding_id { a href={ "/findings/" (f) } { "finding " (f) } " " }
                            @if let Some(i) = a.incident_id { a href={ "/incidents/" (i) } { "incident " (i) } " " }
                            @if let Some(u) = a.undo_of { "undo of action " (u) " " }
                            (a.reason.as_deref().or(a.comment.as_deref()).unwrap_or(""))
                        }
                        td data-label="Routers" {
                            @if a.commands.is_empty() {
                                @for d in a.devices.0.as_array().into_iter().flatten() {
                                    a href={ "/devices/" (d.as_str().unwrap_or("")) } { (d.as_str().unwrap_or("")) } " "
                                }
                            }
                            @for c in &a.commands {
                                span.router title=(c.message.as_deref().unwrap_or("")) {
                                    a href={ "/devices/" (c.device_id) } { (c.device_id) } " " (badge(&c.state))
                                }
                                " "
                            }
                        }
                        td data-label="State" { (badge(&a.state)) }
                        td data-label="" { (buttons(&who, a)) }
                    }
                }
                @if rows.is_empty() { tr.empty { td colspan="8" { "No actions." } } }
            }
        }
        (layout::pager(before_id.is_some().then_some(base.as_str()), next.as_deref()))
    };
    Ok(signed_page(&who, "Actions", Nav::Actions, body))
}

/// `POST /actions/{id}/{approve|reject|cancel|undo}` (operators), then back to
/// the log, which names what was done.
pub async fn decide(
    State(state): State<AppState>,
    who: Signed,
    Path((id, verb)): Path<(String, String)>,
    Form(f): Form<super::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "deciding actions")?;
    let row = crate::http::actions::decide_for(&state, &id, &verb, &who.session.user).await?;
    let said = match verb.as_str() {
        "approve" => format!("Approved action {}: sent to {} router(s).", row.id, row.commands.len()),
        "reject" => format!("Rejected action {}.", row.id),
        "cancel" => format!("Cancelled what of action {} no router had answered yet.", row.id),
        _ => format!("Action {} takes it back on {} router(s).", row.id, row.commands.len()),
    };
    Ok(Redirect::to(&format!("/actions{}", layout::query(&[("done", said.as_str())]))).into_response())
}
