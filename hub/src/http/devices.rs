//! `GET /devices`, `GET|DELETE /devices/{id}`, `POST /devices/{id}/rekey`,
//! `GET /devices/{id}/heartbeats` and `GET /devices/{id}/agents`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{DeliveryView, DeviceList, DeviceView, ErrorBody, HeartbeatList, HeartbeatView};
use super::{ApiError, AppState};
use crate::enrol;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;
use crate::store::DeviceRow;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one, remove))
        .routes(routes!(rekey))
        .routes(routes!(heartbeats))
        .routes(routes!(agents))
        .routes(routes!(presence))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PresenceList {
    pub device: String,
    /// Newest first: `online`, `stale` (three heartbeats missed) or `offline`, with when.
    pub changes: Vec<crate::store::lifecycle::PresenceRow>,
}

/// The device's presence timeline, newest first (the last 100 changes).
#[utoipa::path(get, path = "/devices/{id}/presence", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, body = PresenceList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn presence(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<PresenceList>, ApiError> {
    let id = super::known_device(&state, &id).await?;
    let changes = state.store.presence_history(id.as_str(), 100).await?;
    Ok(Json(PresenceList { device: id.as_str().to_owned(), changes }))
}

/// One agent of a device: what the hub wants (its effective configuration)
/// and what the edge last reported.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceAgentView {
    pub name: String,
    /// `running` or `stopped`: the desired state, from the configuration.
    pub desired: &'static str,
    /// Where the desired state comes from (`default`, `fleet`, `tag:<t>`, `device`).
    pub desired_from: String,
    /// As the latest heartbeat said: `running`, `stopped`, `restarting` or
    /// `failed`; absent before the device's first heartbeat.
    pub state: Option<String>,
    pub events: i64,
    pub findings: i64,
    pub evicted: i64,
    /// Restarts by the edge's supervisor after failures, in its current run.
    pub restarts: i64,
    /// The agent's last failure.
    pub last_error: Option<String>,
    /// Lines the agent ignored through its `exclude_patterns`.
    pub excluded: i64,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceAgents {
    pub device: String,
    /// When the latest heartbeat arrived (unix ms).
    pub reported_ms: Option<i64>,
    pub agents: Vec<DeviceAgentView>,
}

/// Every agent of the device: desired state and reported state, counts,
/// restarts by policy and the last failure.
#[utoipa::path(get, path = "/devices/{id}/agents", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, body = DeviceAgents), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn agents(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeviceAgents>, ApiError> {
    let id = super::known_device(&state, &id).await?;
    let effective = state.store.effective_config(id.as_str()).await?;
    let latest = state.store.latest_heartbeat(id.as_str()).await?;
    let (reported_ms, reported) = match latest {
        Some((h, agents)) => (Some(h.received_ms), agents),
        None => (None, Vec::new()),
    };
    let agents = opmas_proto::agents::AGENTS
        .iter()
        .map(|spec| {
            let wanted = effective.agents.get(spec.name);
            let r = reported.iter().find(|a| a.name == spec.name);
            DeviceAgentView {
                name: spec.name.to_owned(),
                desired: if wanted.is_none_or(|w| w.enabled.value) { "running" } else { "stopped" },
                desired_from: wanted.map_or_else(|| "default".to_owned(), |w| w.enabled.from.clone()),
                state: r.map(|a| a.state.clone()),
                events: r.map_or(0, |a| a.events),
                findings: r.map_or(0, |a| a.findings),
                evicted: r.map_or(0, |a| a.evicted),
                restarts: r.map_or(0, |a| a.restarts),
                last_error: r.and_then(|a| a.last_error.clone()),
                excluded: r.map_or(0, |a| a.excluded),
            }
        })
        .collect();
    Ok(Json(DeviceAgents { device: id.as_str().to_owned(), reported_ms, agents }))
}

/// Changing the fleet's credentials is for admins.
fn require_admin(token: &TokenInfo) -> Result<(), ApiError> {
    super::auth::require(token, Role::Admin, "change devices")
}

/// A device id from the path, validated before it reaches the database.
fn device_id(id: &str) -> Result<opmas_proto::DeviceId, ApiError> {
    opmas_proto::DeviceId::new(id).map_err(|e| ApiError::Invalid { field: "id", message: e.to_string() })
}

/// Removes the device, its findings and deliveries; its secret stops
/// working at once. Admins only.
#[utoipa::path(delete, path = "/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 204, description = "Removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&token)?;
    let id = device_id(&id)?;
    enrol::remove(&state.store, Some(&state.keys), &id).await?;
    tracing::info!(device = %id, by = %token.name, "device removed");
    sync_broker(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RekeyRequest {
    /// The URL the printed UCI commands point the router at.
    hub_url: Option<String>,
}

/// Gives the device a new secret (the old one is refused at once) and
/// returns it with the UCI commands for the router. Admins only; the body
/// may be empty.
#[utoipa::path(post, path = "/devices/{id}/rekey", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    request_body(content = Option<RekeyRequest>),
    responses((status = 200, body = enrol::Enrolled), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn rekey(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<enrol::Enrolled>, ApiError> {
    require_admin(&token)?;
    let id = device_id(&id)?;
    // No body is the defaults; a body is JSON whose mistakes are named.
    let req: RekeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RekeyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Invalid { field: "body", message: e.to_string() })?
    };
    let hub_url = match req.hub_url {
        Some(url) => enrol::check_hub_url(&url).map_err(|message| ApiError::Invalid { field: "hub_url", message })?,
        None => state.hub_url.clone(),
    };
    let enrolled = enrol::rekey(&state.store, Some(&state.keys), &id, &hub_url).await?;
    tracing::info!(device = %id, by = %token.name, "device secret replaced");
    sync_broker(&state).await?;
    Ok(Json(enrolled))
}

/// An external mosquitto learns of a removed or rekeyed router at once
/// (it drops the router's session when it re-reads its files). A failure
/// is the request's: the broker would still take the old secret.
async fn sync_broker(state: &AppState) -> Result<(), ApiError> {
    let Some(m) = &state.mosquitto else { return Ok(()) };
    m.sync(&state.store).await.map(drop).map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "mosquitto's files not updated: it still admits the old secret");
        ApiError::Internal(crate::store::StoreError::Invalid(format!("updating mosquitto's files: {e:#}")))
    })
}

async fn view(state: &AppState, d: DeviceRow) -> Result<DeviceView, ApiError> {
    let heartbeat = state.store.latest_heartbeat(&d.id).await?.map(|(h, agents)| HeartbeatView::new(h, agents));
    Ok(DeviceView::new(d, heartbeat))
}

/// Every enrolled device with its latest heartbeat.
#[utoipa::path(get, path = "/devices", tag = "devices", responses((status = 200, body = DeviceList)))]
async fn list(State(state): State<AppState>) -> Result<Json<DeviceList>, ApiError> {
    let mut devices = Vec::new();
    for d in state.store.list_devices().await? {
        devices.push(view(&state, d).await?);
    }
    Ok(Json(DeviceList { devices }))
}

/// One device, with its delivery account per run epoch (newest first): the
/// watermark acked to the edge and what the edge dropped before sending.
#[utoipa::path(get, path = "/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeviceView>, ApiError> {
    let device = state.store.get_device(&id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id:?}")))?;
    let deliveries = state.store.deliveries(&id).await?;
    let mut v = view(&state, device).await?;
    v.deliveries = Some(deliveries.into_iter().map(DeliveryView::from).collect());
    Ok(Json(v))
}

/// `GET /devices/{id}/heartbeats?limit=`: the device's heartbeats of the
/// last day, newest first (default 100, at most 1,000).
#[utoipa::path(get, path = "/devices/{id}/heartbeats", tag = "devices",
    params(("id" = String, Path, description = "The device id"),
        ("limit" = Option<u32>, Query, description = "At most this many, 1 to 1000 (default 100)")),
    responses((status = 200, body = HeartbeatList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn heartbeats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<HeartbeatList>, ApiError> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "limit") {
        return Err(ApiError::Invalid { field: "query", message: format!("unknown parameter {k:?}; known: limit") });
    }
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| ApiError::Invalid {
            field: "limit",
            message: format!("{v:?} is not a number from 1 to 1000"),
        })?,
    };
    if state.store.get_device(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no device {id:?}")));
    }
    let rows = state.store.heartbeats(&id, limit).await?;
    let heartbeats: Vec<HeartbeatView> = rows.into_iter().map(|h| HeartbeatView::new(h, Vec::new())).collect();
    Ok(Json(HeartbeatList { heartbeats }))
}
