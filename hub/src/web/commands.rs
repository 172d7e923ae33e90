//! `/commands`: the command log (the same store query and filters as
//! `GET /api/v1/commands`), and `POST /devices/{id}/agents/{agent}/{action}`,
//! the device page's lifecycle buttons (operators).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Filter, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::AppState;
use crate::store::commands::{CommandQuery, CommandRow, STATES};
use crate::store::now_ms;
use crate::store::users::Role;

/// Rows per page.
const PAGE: u32 = 50;

/// A table of commands (with the device column unless on a device's page).
pub fn table(rows: &[CommandRow], with_device: bool, now: i64) -> Markup {
    html! {
        table.commands {
            thead { tr {
                th { "Id" } th { "Sent" } @if with_device { th { "Device" } } th { "Action" } th { "By" } th { "State" } th { "Answer" }
            } }
            tbody {
                @for c in rows {
                    tr data-command=(c.id) {
                        td.num data-label="Id" { (c.id) }
                        td data-label="Sent" { (layout::time(c.created_ms, now)) }
                        @if with_device { td data-label="Device" { a href={ "/devices/" (c.device_id) } { (c.device_id) } } }
                        td data-label="Action" { (describe(c)) }
                        td data-label="By" { (c.created_by) }
                        td data-label="State" { (state_badge(&c.state)) }
                        td.summary-cell data-label="Answer" { (c.message.as_deref().unwrap_or("")) }
                    }
                }
                @if rows.is_empty() { tr.empty { td colspan="7" { "No commands." } } }
            }
        }
    }
}

/// `restart security`, `ping`, ...
fn describe(c: &CommandRow) -> String {
    match c.action() {
        Ok(a) => a.to_string(),
        Err(_) => c.action.0.to_string(),
    }
}

fn state_badge(state: &str) -> Markup {
    let (class, symbol) = match state {
        "done" => ("state-online", "✓"),
        "pending" => ("state-stale", "…"),
        _ => ("state-offline", "✕"),
    };
    html! { span class={ "badge " (class) } { span aria-hidden="true" { (symbol) " " } (state) } }
}

/// `GET /commands?device=&state=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    params.retain(|_, v| !v.is_empty());
    const KNOWN: [&str; 3] = ["device", "state", "cursor"];
    super::known_params(&params, &KNOWN)?;
    let value = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if !value("state").is_empty() && !STATES.contains(&value("state")) {
        return Err(PageError::Invalid(format!("state {:?} is not one of {}", value("state"), STATES.join(", "))));
    }
    if !value("device").is_empty() {
        opmas_proto::DeviceId::new(value("device")).map_err(|e| PageError::Invalid(format!("device: {e}")))?;
    }
    let before_id = match value("cursor") {
        "" => None,
        c => Some(crate::http::commands::decode_cursor(c)?),
    };
    let q = CommandQuery {
        device: params.get("device").cloned(),
        state: params.get("state").cloned(),
        before_id,
        limit: PAGE,
    };
    let rows = state.store.query_commands(&q).await?;
    let filters = [("device", value("device")), ("state", value("state"))];
    let next = (rows.len() as u32 == PAGE)
        .then(|| rows.last().map(|c| crate::http::commands::encode_cursor(c.id)))
        .flatten()
        .map(|c| {
            let mut with = filters.to_vec();
            with.push(("cursor", &c));
            format!("/commands{}", layout::query(&with))
        });
    let base = format!("/commands{}", layout::query(&filters));
    let devices = state.store.list_devices().await?;
    let mut device_options = vec![(String::new(), "any".to_owned())];
    device_options.extend(devices.iter().map(|d| (d.id.clone(), d.name.clone())));
    let state_options = std::iter::once((String::new(), "any".to_owned()))
        .chain(STATES.iter().map(|s| (s.to_string(), s.to_string())))
        .collect();
    let now = now_ms();
    let body = html! {
        h1 { "Commands" }
        (layout::filters("/commands", &[
            Filter::Select { name: "device", label: "Device", value: value("device"), options: device_options },
            Filter::Select { name: "state", label: "State", value: value("state"), options: state_options },
        ]))
        (table(&rows, true, now))
        (layout::pager(before_id.is_some().then_some(base.as_str()), next.as_deref()))
    };
    Ok(signed_page(&who, "Commands", Nav::Commands, body))
}

/// `POST /devices/{id}/agents/{agent}/{action}`: sends the command, then
/// back to the device page, which names it.
pub async fn agent_action(
    State(state): State<AppState>,
    who: Signed,
    Path((id, agent, action)): Path<(String, String, String)>,
    Form(f): Form<super::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "starting and stopping agents")?;
    let device = crate::http::known_device(&state, &id).await?;
    let done = crate::http::commands::agent_action_for(&state, &device, &agent, &action, &who.session.user).await?;
    let what = match (&done.command, &done.config) {
        (Some(c), _) => format!("sent=command-{}", c.id),
        (None, Some(c)) => format!("sent=config-{}", c.version),
        (None, None) => String::new(),
    };
    Ok(Redirect::to(&format!("/devices/{}?{what}#agents", device.as_str())).into_response())
}

#[derive(Deserialize)]
pub struct TagsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tags: String,
}

/// `POST /devices/{id}/tags` (operators): the tags, space or comma
/// separated, in order; the device's configuration follows.
pub async fn set_tags(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Form(f): Form<TagsForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "setting tags")?;
    if f.tags.len() > 1000 {
        return Err(PageError::Invalid("the tags are longer than 1000 characters".into()));
    }
    let device = crate::http::known_device(&state, &id).await?;
    let tags: Vec<String> = f.tags.split([' ', ',']).filter(|t| !t.is_empty()).map(str::to_owned).collect();
    let change = crate::http::agent_config::set_tags_for(&state, &device, tags, &who.session.user).await?;
    Ok(Redirect::to(&format!("/devices/{}?sent=config-{}", device.as_str(), change.version)).into_response())
}
