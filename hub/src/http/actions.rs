//! Actions on routers: `POST /actions` (operators) blocks an address, bans
//! a WiFi client, restarts a service or reloads WiFi on the routers it
//! names; `POST /actions/{id}/{approve|reject}` decides what a playbook
//! asked approval for; `POST /actions/{id}/cancel` stops what no router has
//! answered yet; `POST /actions/{id}/undo` takes a block or ban back
//! on the same routers; `GET /actions` is the audit log (who or which
//! playbook, what, where, each router's answer).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::author;
use super::commands::{decode_cursor, encode_cursor};
use super::views::ErrorBody;
use super::{ApiError, AppState};
use crate::act::{parse_action, resolve, Actor, Request, Targets};
use crate::command::DEFAULT_TTL_MS;
use crate::store::actions::{ActionRow, STATES};
use crate::store::config::FieldError;
use crate::store::now_ms;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(one)).routes(routes!(decide))
}

/// `POST /actions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// block_ip, unblock_ip, ban_wifi_client, unban_wifi_client,
    /// restart_service or wifi_reload.
    pub action: String,
    /// block_ip: `net` (an address or prefix), `timeout_s`; unblock_ip:
    /// `net`; ban_wifi_client: `mac`, `ban_s`; unban_wifi_client: `mac`;
    /// restart_service: `service`; wifi_reload: none.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub targets: Targets,
    pub comment: Option<String>,
    /// Seconds a command may wait for a router that is away (default 300,
    /// at most 86400).
    pub ttl_s: Option<u32>,
}

/// The audit log's filters.
#[derive(Clone, Debug, Default)]
pub struct ActionQuery {
    pub state: Option<String>,
    /// Only this playbook's decisions.
    pub playbook: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Reads the audit log's filters (also the web UI's).
pub fn parse_query(params: &HashMap<String, String>) -> Result<ActionQuery, ApiError> {
    super::known_query(params, &["state", "playbook", "limit", "cursor"])?;
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty());
    let limit = match text("limit") {
        None => 50,
        Some(v) => v.parse::<u32>().ok().filter(|n| (1..=500).contains(n)).ok_or_else(|| ApiError::Invalid {
            field: "limit",
            message: format!("{v:?} is not a number from 1 to 500"),
        })?,
    };
    let before_id = text("cursor").map(|c| decode_cursor(c)).transpose()?;
    let state = text("state").cloned();
    if let Some(s) = state.as_ref().filter(|s| !STATES.contains(&s.as_str())) {
        return Err(ApiError::Invalid {
            field: "state",
            message: format!("{s:?} is not one of {}", STATES.join(", ")),
        });
    }
    let playbook = text("playbook").cloned();
    if let Some(p) = &playbook {
        crate::correlate::rule::check_name(p)
            .map_err(|message| ApiError::Invalid { field: "playbook", message: message.replace("rule", "playbook") })?;
    }
    Ok(ActionQuery { state, playbook, before_id, limit })
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionPage {
    pub actions: Vec<ActionRow>,
    pub next_cursor: Option<String>,
}

fn require_operator(token: &TokenInfo) -> Result<(), ApiError> {
    super::auth::require(token, Role::Operator, "act on routers")
}

fn actor(state: &AppState) -> Actor {
    Actor { store: state.store.clone(), commander: state.commander.clone() }
}

/// Sends an action to routers (operators): stored in the audit log with one
/// command per router, each answered by its router (`commands[].state`).
/// Every mistake is named (422).
#[utoipa::path(post, path = "/actions", tag = "actions", request_body = ActionRequest,
    responses((status = 202, body = ActionRow), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ActionRow>), ApiError> {
    require_operator(&token)?;
    let req: ActionRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid { field: "body", message: format!("not an action request: {e}") })?;
    let mut errors: Vec<FieldError> = Vec::new();
    let action = parse_action(&req.action, &req.params).map_err(|e| errors.extend(e)).ok();
    let devices = resolve(&state.store, &req.targets).await.map_err(|e| errors.extend(e)).ok();
    let ttl_ms = match req.ttl_s {
        None => Some(DEFAULT_TTL_MS),
        Some(s) if (1..=86_400).contains(&s) => Some(i64::from(s) * 1000),
        Some(s) => {
            errors.push(FieldError { path: "ttl_s".into(), reason: format!("{s} is not 1 to 86400 seconds") });
            None
        }
    };
    if let Some(c) = req.comment.as_deref().filter(|c| c.len() > 1000) {
        errors.push(FieldError { path: "comment".into(), reason: format!("{} bytes; at most 1000", c.len()) });
    }
    let (Some(action), Some(devices), Some(ttl_ms), true) = (action, devices, ttl_ms, errors.is_empty()) else {
        return Err(ApiError::InvalidFields(errors));
    };
    let who = author(&token);
    let request = Request {
        action,
        targets: &req.targets,
        devices: &devices,
        by: &who,
        comment: req.comment.as_deref(),
        undo_of: None,
        ttl_ms,
    };
    let row = actor(&state).act(request).await?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

/// Approves or rejects an action a playbook asked approval for, cancels
/// what of a sent action no router has answered yet, or takes a sent block
/// or ban back on the routers it went to (operators).
#[utoipa::path(post, path = "/actions/{id}/{verb}", tag = "actions",
    params(("id" = i64, Path, description = "The action id"), ("verb" = String, Path, description = "approve, reject, cancel or undo")),
    responses((status = 200, body = ActionRow), (status = 202, body = ActionRow), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn decide(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((id, verb)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ActionRow>), ApiError> {
    require_operator(&token)?;
    let row = decide_for(&state, &id, &verb, &author(&token)).await?;
    let status = if verb == "reject" || verb == "cancel" { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(row)))
}

/// `approve`, `reject`, `cancel` or `undo` action `id` as `who` (the
/// page's buttons call this too).
pub async fn decide_for(state: &AppState, id: &str, verb: &str, who: &str) -> Result<ActionRow, ApiError> {
    let original = find(state, id).await?;
    let not_waiting =
        || ApiError::Conflict(format!("action {} is {}, not awaiting approval", original.id, original.state));
    match verb {
        "approve" => {
            let row = state
                .store
                .approve_action(original.id, who, now_ms(), DEFAULT_TTL_MS)
                .await?
                .ok_or_else(not_waiting)?;
            tracing::info!(action = row.id, by = who, "action approved");
            actor(state).publish(&row).await?;
            return Ok(state.store.action(row.id).await?.unwrap_or(row));
        }
        "reject" => {
            if !state.store.reject_action(original.id, who, now_ms()).await? {
                return Err(not_waiting());
            }
            tracing::info!(action = original.id, by = who, "action rejected");
            return find(state, id).await;
        }
        "cancel" if original.state == "awaiting_approval" => {
            return Err(ApiError::Conflict(format!(
                "action {} awaits approval: reject it instead (nothing was sent)",
                original.id
            )));
        }
        "cancel" if original.state != "sent" => {
            return Err(ApiError::Conflict(format!(
                "action {} is {}: nothing was sent to cancel",
                original.id, original.state
            )));
        }
        "cancel" => {
            let n = state.store.cancel_action_commands(original.id, who, now_ms()).await?;
            if n == 0 {
                return Err(ApiError::Conflict(format!(
                    "action {}: every router has answered; nothing is left to cancel (undo takes it back)",
                    original.id
                )));
            }
            tracing::info!(action = original.id, by = who, commands = n, "action cancelled");
            return find(state, id).await;
        }
        "undo" => {}
        other => {
            return Err(ApiError::Invalid {
                field: "verb",
                message: format!("{other:?} is not approve, reject, cancel or undo"),
            })
        }
    }
    if original.state != "sent" {
        return Err(ApiError::Conflict(format!(
            "action {} is {}: only a sent action can be undone",
            original.id, original.state
        )));
    }
    let comment = format!("undo of action {}", original.id);
    match actor(state).undo(&original, who, &comment).await? {
        Some(row) => Ok(row),
        None => Err(ApiError::Conflict(format!("{} cannot be undone", original.action()?))),
    }
}

/// The audit log of actions, newest first, each with its routers' answers.
#[utoipa::path(get, path = "/actions", tag = "actions",
    params(("state" = Option<String>, Query, description = "sent, awaiting_approval, rejected, dry_run or skipped"),
        ("playbook" = Option<String>, Query, description = "only this playbook's decisions"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, body = ActionPage), (status = 422, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<ActionPage>, ApiError> {
    let q = parse_query(&params)?;
    let actions = state.store.query_actions(q.state.as_deref(), q.playbook.as_deref(), q.before_id, q.limit).await?;
    let next_cursor = (actions.len() as u32 == q.limit).then(|| actions.last().map(|a| encode_cursor(a.id))).flatten();
    Ok(Json(ActionPage { actions, next_cursor }))
}

/// One action and each router's answer.
#[utoipa::path(get, path = "/actions/{id}", tag = "actions",
    params(("id" = i64, Path, description = "The action id")),
    responses((status = 200, body = ActionRow), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ActionRow>, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

async fn find(state: &AppState, id: &str) -> Result<ActionRow, ApiError> {
    let n = id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::Invalid {
        field: "id",
        message: format!("{id:?} is not an action id (a positive number)"),
    })?;
    state.store.action(n).await?.ok_or_else(|| ApiError::NotFound(format!("no action {n}")))
}
