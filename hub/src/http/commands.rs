//! Commands: `POST /devices/{id}/agents/{agent}/{start|stop|restart}` and
//! `POST /devices/{id}/ping` (operators) send one; `GET /commands` and
//! `GET /commands/{id}` show how each went.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use opmas_proto::msg::Action;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::author;
use super::views::ErrorBody;
use super::{known_agent, known_device, ApiError, AppState};
use crate::command::DEFAULT_TTL_MS;
use crate::store::commands::{CommandQuery, CommandRow, STATES};
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(agent_action))
        .routes(routes!(tag_action))
        .routes(routes!(ping))
        .routes(routes!(list))
        .routes(routes!(one))
}

/// What an agent action did: `start` and `stop` change the device's
/// configuration (desired state, kept across edge restarts and reconnects
/// until changed again); `restart` is a command.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentActionView {
    pub config: Option<super::agent_config::ChangeView>,
    pub command: Option<CommandRow>,
}

/// Starts, stops or restarts `agent` on `device` for `who`.
pub async fn agent_action_for(
    state: &AppState,
    device: &opmas_proto::DeviceId,
    agent: &str,
    action: &str,
    who: &str,
) -> Result<AgentActionView, ApiError> {
    known_agent(agent)?;
    let enabled = match action {
        "start" => true,
        "stop" => false,
        "restart" => {
            let action = Action::AgentRestart { agent: agent.to_owned() };
            let row = state.commander.send(device, action, who, DEFAULT_TTL_MS).await?;
            return Ok(AgentActionView { config: None, command: Some(row) });
        }
        other => {
            return Err(ApiError::Invalid {
                field: "action",
                message: format!("{other:?} is not start, stop or restart"),
            })
        }
    };
    let scope = crate::store::config::device_scope(device.as_str());
    let mut layer = state.store.layers(&scope).await?.remove(agent).unwrap_or_default();
    layer.enabled = Some(enabled);
    let change = super::agent_config::change(state, &scope, agent, &layer, who).await?;
    Ok(AgentActionView { config: Some(change), command: None })
}

/// `GET /commands`: a page, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandPage {
    pub commands: Vec<CommandRow>,
    pub next_cursor: Option<String>,
}

fn require_operator(token: &TokenInfo) -> Result<(), ApiError> {
    super::auth::require(token, Role::Operator, "send commands")
}

/// The cursor that pages on after command `id`.
pub fn encode_cursor(id: i64) -> String {
    format!("c{id:x}")
}

/// The command id a cursor names.
pub fn decode_cursor(c: &str) -> Result<i64, ApiError> {
    c.strip_prefix('c').and_then(|h| i64::from_str_radix(h, 16).ok()).filter(|n| *n > 0).ok_or_else(|| {
        ApiError::Invalid { field: "cursor", message: format!("{c:?} is not a cursor this API returned") }
    })
}

/// Starts, stops or restarts one agent on one device (operators). Start
/// and stop set the agent's desired state in the device's configuration
/// (it stays so across edge restarts until changed); restart sends a
/// command, which `GET /commands/{id}` follows.
#[utoipa::path(post, path = "/devices/{id}/agents/{agent}/{action}", tag = "commands",
    params(("id" = String, Path, description = "The device id"),
        ("agent" = String, Path, description = "security, wifi, network or system"),
        ("action" = String, Path, description = "start, stop or restart")),
    responses((status = 202, body = AgentActionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn agent_action(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((id, agent, action)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<AgentActionView>), ApiError> {
    require_operator(&token)?;
    let device = known_device(&state, &id).await?;
    let done = agent_action_for(&state, &device, &agent, &action, &author(&token)).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

/// What an agent action on a tag did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TagActionView {
    /// Start and stop: the tag layer's change.
    pub config: Option<super::agent_config::ChangeView>,
    /// Restart: a command per device carrying the tag.
    pub commands: Vec<CommandRow>,
}

/// Starts, stops or restarts one agent on every device carrying `tag`
/// (operators): start and stop set `enabled` in the tag's layer (a device's
/// own layer still wins); restart sends each device a command.
#[utoipa::path(post, path = "/agents/{agent}/{action}", tag = "commands",
    params(("agent" = String, Path, description = "security, wifi, network or system"),
        ("action" = String, Path, description = "start, stop or restart"),
        ("tag" = String, Query, description = "The devices carrying this tag")),
    responses((status = 202, body = TagActionView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn tag_action(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((agent, action)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json<TagActionView>), ApiError> {
    require_operator(&token)?;
    let tag = q
        .get("tag")
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Invalid { field: "tag", message: "which devices: ?tag=<tag> is required".into() })?;
    crate::store::config::check_tag(tag).map_err(|message| ApiError::Invalid { field: "tag", message })?;
    known_agent(&agent)?;
    let who = author(&token);
    let enabled = match action.as_str() {
        "start" => true,
        "stop" => false,
        "restart" => {
            let mut commands = Vec::new();
            for d in state.store.devices_with_tag(tag).await? {
                let Ok(id) = opmas_proto::DeviceId::new(&d) else { continue };
                let action = Action::AgentRestart { agent: agent.clone() };
                commands.push(state.commander.send(&id, action, &who, DEFAULT_TTL_MS).await?);
            }
            return Ok((StatusCode::ACCEPTED, Json(TagActionView { config: None, commands })));
        }
        other => {
            return Err(ApiError::Invalid {
                field: "action",
                message: format!("{other:?} is not start, stop or restart"),
            })
        }
    };
    let scope = crate::store::config::tag_scope(tag);
    let mut layer = state.store.layers(&scope).await?.remove(&agent).unwrap_or_default();
    layer.enabled = Some(enabled);
    let change = super::agent_config::change(&state, &scope, &agent, &layer, &who).await?;
    Ok((StatusCode::ACCEPTED, Json(TagActionView { config: Some(change), commands: Vec::new() })))
}

/// Asks the device to answer (operators): a round trip through the broker
/// and the edge. `ttl_s` says how long the command may wait for a device
/// that is away (default 300 s); after that, neither the hub sends it nor
/// the edge runs it.
#[utoipa::path(post, path = "/devices/{id}/ping", tag = "commands",
    params(("id" = String, Path, description = "The device id"),
        ("ttl_s" = Option<u32>, Query, description = "Seconds the command stays valid, 1 to 86400 (default 300)")),
    responses((status = 202, body = CommandRow), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn ping(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json<CommandRow>), ApiError> {
    require_operator(&token)?;
    if let Some(k) = params.keys().find(|k| k.as_str() != "ttl_s") {
        return Err(ApiError::Invalid { field: "query", message: format!("unknown parameter {k:?}; known is ttl_s") });
    }
    let ttl_ms = match params.get("ttl_s") {
        None => DEFAULT_TTL_MS,
        Some(v) => v.parse::<u32>().ok().filter(|n| (1..=86_400).contains(n)).map(|n| i64::from(n) * 1000).ok_or_else(
            || ApiError::Invalid {
                field: "ttl_s",
                message: format!("{v:?} is not a number of seconds from 1 to 86400"),
            },
        )?,
    };
    let device = known_device(&state, &id).await?;
    let row = state.commander.send(&device, Action::Ping, &author(&token), ttl_ms).await?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

/// Commands, newest first.
#[utoipa::path(get, path = "/commands", tag = "commands",
    params(("device" = Option<String>, Query, description = "Only this device's"),
        ("state" = Option<String>, Query, description = "pending, done, failed, rejected or expired"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, body = CommandPage), (status = 422, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<CommandPage>, ApiError> {
    const KNOWN: [&str; 4] = ["device", "state", "limit", "cursor"];
    super::known_query(&params, &KNOWN)?;
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(s) = text("state").filter(|s| !STATES.contains(&s.as_str())) {
        return Err(ApiError::Invalid {
            field: "state",
            message: format!("{s:?} is not one of {}", STATES.join(", ")),
        });
    }
    let limit = match text("limit") {
        None => 100,
        Some(v) => v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| ApiError::Invalid {
            field: "limit",
            message: format!("{v:?} is not a number from 1 to 1000"),
        })?,
    };
    let before_id = text("cursor").map(|c| decode_cursor(&c)).transpose()?;
    let q = CommandQuery { device: text("device"), state: text("state"), before_id, limit };
    let commands = state.store.query_commands(&q).await?;
    let next_cursor = (commands.len() as u32 == limit).then(|| commands.last().map(|c| encode_cursor(c.id))).flatten();
    Ok(Json(CommandPage { commands, next_cursor }))
}

/// One command and how it went.
#[utoipa::path(get, path = "/commands/{id}", tag = "commands",
    params(("id" = i64, Path, description = "The command id")),
    responses((status = 200, body = CommandRow), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CommandRow>, ApiError> {
    let n = id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::Invalid {
        field: "id",
        message: format!("{id:?} is not a command id (a positive number)"),
    })?;
    let row = state.store.command(n).await?.ok_or_else(|| ApiError::NotFound(format!("no command {n}")))?;
    Ok(Json(row))
}
