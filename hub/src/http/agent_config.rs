//! Agent configuration: the fleet layer (`/agents/{agent}/config`), a
//! device's layer (`/devices/{id}/agents/{agent}/config`), a device's
//! effective configuration with where each value came from and whether the
//! device runs it (`/devices/{id}/config`), the history and restoring an
//! earlier layer. Changes need the operator role, are validated against the
//! schema in `opmas-proto` (422 naming every bad field, nothing changed)
//! and go out to the devices they apply to at once.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::author;
use super::views::ErrorBody;
use super::{known_agent, known_device, ApiError, AppState};
use crate::store::config::{check_tag, device_scope, tag_scope, validate, ChangeRow, Effective, Layer};
use crate::store::now_ms;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_fleet, put_fleet))
        .routes(routes!(get_device_layer, put_device_layer))
        .routes(routes!(get_tag_layer, put_tag_layer))
        .routes(routes!(get_tags, put_tags))
        .routes(routes!(device_config))
        .routes(routes!(sync))
        .routes(routes!(history))
        .routes(routes!(restore))
}

/// One parameter of an agent's schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ParamView {
    pub name: &'static str,
    pub doc: &'static str,
    /// `count` or `s` (seconds).
    pub unit: &'static str,
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

/// A layer of one agent, with the agent's schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LayerView {
    /// `fleet` or `device:<id>`.
    pub scope: String,
    pub agent: String,
    pub layer: Layer,
    pub schema: Vec<ParamView>,
}

/// What a change did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    /// The change's id: the new configuration version of the devices it applies to.
    pub version: i64,
    /// Devices it was sent to now.
    pub sent_to: usize,
}

/// A device's effective configuration and whether it runs it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceConfigView {
    pub device: String,
    pub effective: Effective,
    /// The version its latest heartbeat reports.
    pub running_version: Option<i64>,
    /// `in_sync`, `pending` (sent, not yet running), `rejected` (the device
    /// refused it: see `error`), `local` (nothing configured at the hub; the
    /// router runs its own UCI settings) or `unknown` (no heartbeat yet).
    pub sync: &'static str,
    pub error: Option<String>,
}

/// A history listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub changes: Vec<ChangeRow>,
}

fn require_operator(token: &TokenInfo) -> Result<(), ApiError> {
    super::auth::require(token, Role::Operator, "change configuration")
}

fn view(scope: String, agent: &str, layer: Layer) -> Result<LayerView, ApiError> {
    known_agent(agent)?;
    let specs = opmas_proto::agents::params_of(agent).unwrap_or_default();
    let schema = specs
        .iter()
        .map(|p| ParamView {
            name: p.name,
            doc: p.doc,
            unit: p.unit.suffix().trim(),
            min: p.min,
            max: p.max,
            default: p.default,
        })
        .collect();
    Ok(LayerView { scope, agent: agent.to_owned(), layer, schema })
}

/// A request body as a layer: malformed JSON or unknown keys are named.
fn layer_of(body: &[u8]) -> Result<Layer, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Invalid {
        field: "body",
        message: format!("expected {{\"enabled\": true|false (optional), \"params\": {{\"name\": number}}}}: {e}"),
    })
}

/// Stores a validated layer and sends it where it applies.
pub async fn change(
    state: &AppState,
    scope: &str,
    agent: &str,
    layer: &Layer,
    who: &str,
) -> Result<ChangeView, ApiError> {
    validate(agent, layer).map_err(ApiError::InvalidFields)?;
    let version = state.store.set_layer(scope, agent, layer, who, now_ms()).await?;
    tracing::info!(scope, agent, version, by = who, "configuration changed");
    let sent_to = push(state, scope).await?;
    Ok(ChangeView { version, sent_to })
}

/// Sends the effective configuration to every device `scope` applies to.
async fn push(state: &AppState, scope: &str) -> Result<usize, ApiError> {
    let devices = if let Some(d) = scope.strip_prefix("device:") {
        vec![d.to_owned()]
    } else if let Some(t) = scope.strip_prefix("tag:") {
        state.store.devices_with_tag(t).await?
    } else {
        return Ok(state.commander.push_config_all().await?);
    };
    let mut n = 0;
    for d in devices {
        if let Ok(id) = opmas_proto::DeviceId::new(&d) {
            n += usize::from(state.commander.push_config(&id).await?.is_some());
        }
    }
    Ok(n)
}

/// A tag from a path, checked.
fn tag(t: &str) -> Result<String, ApiError> {
    check_tag(t).map_err(|message| ApiError::Invalid { field: "tag", message })?;
    Ok(t.to_owned())
}

/// A tag's layer of an agent, with its schema.
#[utoipa::path(get, path = "/tags/{tag}/agents/{agent}/config", tag = "configuration",
    params(("tag" = String, Path, description = "The tag"), ("agent" = String, Path, description = "The agent")),
    responses((status = 200, body = LayerView), (status = 422, body = ErrorBody)))]
async fn get_tag_layer(
    State(state): State<AppState>,
    Path((t, agent)): Path<(String, String)>,
) -> Result<Json<LayerView>, ApiError> {
    let scope = tag_scope(&tag(&t)?);
    let layer = state.store.layers(&scope).await?.remove(&agent).unwrap_or_default();
    Ok(Json(view(scope, &agent, layer)?))
}

/// Replaces a tag's layer of an agent (operators); sent to the devices
/// that carry the tag. Over the fleet layer, under the device's own.
#[utoipa::path(put, path = "/tags/{tag}/agents/{agent}/config", tag = "configuration",
    params(("tag" = String, Path, description = "The tag"), ("agent" = String, Path, description = "The agent")),
    request_body = Layer,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_tag_layer(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((t, agent)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ChangeView>, ApiError> {
    require_operator(&token)?;
    let scope = tag_scope(&tag(&t)?);
    let layer = layer_of(&body)?;
    Ok(Json(change(&state, &scope, &agent, &layer, &author(&token)).await?))
}

/// Checks and sets `device`'s tags (every bad one named by index), and
/// sends it its configuration.
pub async fn set_tags_for(
    state: &AppState,
    id: &opmas_proto::DeviceId,
    tags: Vec<String>,
    who: &str,
) -> Result<ChangeView, ApiError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        if let Err(reason) = check_tag(t) {
            errors.push(crate::store::config::FieldError { path: format!("tags[{i}]"), reason });
        } else if !seen.insert(t) {
            errors.push(crate::store::config::FieldError {
                path: format!("tags[{i}]"),
                reason: format!("{t:?} is listed twice"),
            });
        }
    }
    if tags.len() > 32 {
        errors.push(crate::store::config::FieldError { path: "tags".into(), reason: "at most 32 tags".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    let version = state.store.set_tags(id.as_str(), &tags, who, now_ms()).await?;
    tracing::info!(device = %id, tags = ?tags, version, "device tags set");
    let sent_to = usize::from(state.commander.push_config(id).await?.is_some());
    Ok(ChangeView { version, sent_to })
}

/// A device's tags, in order (a later tag's layer overrides an earlier one's).
#[derive(Debug, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    pub tags: Vec<String>,
}

/// A device's tags.
#[utoipa::path(get, path = "/devices/{id}/tags", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, body = Tags), (status = 404, body = ErrorBody)))]
async fn get_tags(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Tags>, ApiError> {
    let id = known_device(&state, &id).await?;
    Ok(Json(Tags { tags: state.store.tags(id.as_str()).await? }))
}

/// Replaces a device's tags (operators); its configuration follows.
#[utoipa::path(put, path = "/devices/{id}/tags", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    request_body = Tags,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn put_tags(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ChangeView>, ApiError> {
    require_operator(&token)?;
    let id = known_device(&state, &id).await?;
    let tags: Tags = serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
        field: "body",
        message: format!("expected {{\"tags\": [\"site-a\", ...]}}: {e}"),
    })?;
    Ok(Json(set_tags_for(&state, &id, tags.tags, &author(&token)).await?))
}

/// The fleet layer of an agent, with its schema.
#[utoipa::path(get, path = "/agents/{agent}/config", tag = "configuration",
    params(("agent" = String, Path, description = "security, wifi, network or system")),
    responses((status = 200, body = LayerView), (status = 422, body = ErrorBody)))]
async fn get_fleet(State(state): State<AppState>, Path(agent): Path<String>) -> Result<Json<LayerView>, ApiError> {
    let layer = state.store.layers("fleet").await?.remove(&agent).unwrap_or_default();
    Ok(Json(view("fleet".into(), &agent, layer)?))
}

/// Replaces the fleet layer of an agent (operators); sent to every device.
#[utoipa::path(put, path = "/agents/{agent}/config", tag = "configuration",
    params(("agent" = String, Path, description = "security, wifi, network or system")),
    request_body = Layer,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_fleet(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(agent): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ChangeView>, ApiError> {
    require_operator(&token)?;
    let layer = layer_of(&body)?;
    Ok(Json(change(&state, "fleet", &agent, &layer, &author(&token)).await?))
}

/// A device's own layer of an agent, with its schema.
#[utoipa::path(get, path = "/devices/{id}/agents/{agent}/config", tag = "configuration",
    params(("id" = String, Path, description = "The device id"), ("agent" = String, Path, description = "The agent")),
    responses((status = 200, body = LayerView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_device_layer(
    State(state): State<AppState>,
    Path((id, agent)): Path<(String, String)>,
) -> Result<Json<LayerView>, ApiError> {
    let id = known_device(&state, &id).await?;
    let scope = device_scope(id.as_str());
    let layer = state.store.layers(&scope).await?.remove(&agent).unwrap_or_default();
    Ok(Json(view(scope, &agent, layer)?))
}

/// Replaces a device's own layer of an agent (operators); sent to it.
#[utoipa::path(put, path = "/devices/{id}/agents/{agent}/config", tag = "configuration",
    params(("id" = String, Path, description = "The device id"), ("agent" = String, Path, description = "The agent")),
    request_body = Layer,
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn put_device_layer(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((id, agent)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ChangeView>, ApiError> {
    require_operator(&token)?;
    let id = known_device(&state, &id).await?;
    let layer = layer_of(&body)?;
    Ok(Json(change(&state, &device_scope(id.as_str()), &agent, &layer, &author(&token)).await?))
}

/// One device in the fleet's sync view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncDeviceView {
    pub device: String,
    /// The version of its effective configuration.
    pub version: i64,
    /// What its latest heartbeat says it runs.
    pub running: Option<i64>,
    /// `in_sync`, `pending`, `rejected`, `local` or `unknown`.
    pub sync: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncView {
    /// Devices per sync state.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    pub devices: Vec<SyncDeviceView>,
}

/// Every device's configuration sync (the `/config` page's table).
#[utoipa::path(get, path = "/config/sync", tag = "configuration", responses((status = 200, body = SyncView)))]
async fn sync(State(state): State<AppState>) -> Result<Json<SyncView>, ApiError> {
    let mut counts = std::collections::BTreeMap::new();
    let devices: Vec<SyncDeviceView> = state
        .store
        .sync_states()
        .await?
        .into_iter()
        .map(|r| {
            let sync = sync_state(r.version, r.running, r.error.as_deref());
            *counts.entry(sync).or_default() += 1;
            SyncDeviceView { device: r.id, version: r.version, running: r.running, sync, error: r.error }
        })
        .collect();
    Ok(Json(SyncView { counts, devices }))
}

/// A device's effective configuration, where each value came from, and
/// whether the device runs it.
#[utoipa::path(get, path = "/devices/{id}/config", tag = "configuration",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, body = DeviceConfigView), (status = 404, body = ErrorBody)))]
async fn device_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceConfigView>, ApiError> {
    let id = known_device(&state, &id).await?;
    Ok(Json(device_view(&state, id.as_str()).await?))
}

/// A device's configuration view (also the device page's).
pub async fn device_view(state: &AppState, id: &str) -> Result<DeviceConfigView, ApiError> {
    let effective = state.store.effective_config(id).await?;
    let hb = state.store.latest_heartbeat(id).await?.map(|(h, _)| h);
    let running = hb.as_ref().map(|h| h.config_version);
    let error = hb.and_then(|h| h.config_error);
    let sync = sync_state(effective.version, running, error.as_deref());
    Ok(DeviceConfigView { device: id.to_owned(), effective, running_version: running, sync, error })
}

/// Whether a device runs its effective configuration `version`:
/// `in_sync`, `pending`, `rejected` (it refused that version), `local`
/// (nothing set at the hub) or `unknown` (no heartbeat yet).
pub fn sync_state(version: i64, running: Option<i64>, error: Option<&str>) -> &'static str {
    match running {
        None => "unknown",
        Some(_) if version == 0 => "local",
        Some(v) if v == version => "in_sync",
        Some(_) if error.is_some_and(|e| e.starts_with(&format!("version {version}:"))) => "rejected",
        Some(_) => "pending",
    }
}

/// Changes, newest first: of the fleet (`scope=fleet`), a tag
/// (`scope=tag:<tag>`) or a device (`scope=device:<id>`, its tags
/// included), of one agent or all.
#[utoipa::path(get, path = "/config/history", tag = "configuration",
    params(("scope" = String, Query, description = "fleet or device:<id>"),
        ("agent" = Option<String>, Query, description = "Only this agent's changes")),
    responses((status = 200, body = HistoryView), (status = 422, body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<HistoryView>, ApiError> {
    if let Some(k) = q.keys().find(|k| !["scope", "agent"].contains(&k.as_str())) {
        return Err(ApiError::Invalid {
            field: "query",
            message: format!("unknown parameter {k:?}; known: scope, agent"),
        });
    }
    let scope = q.get("scope").map(String::as_str).unwrap_or("fleet");
    let named = |p: &str| scope.strip_prefix(p).is_some_and(|d| check_tag(d).is_ok());
    if scope != "fleet" && !named("device:") && !named("tag:") {
        return Err(ApiError::Invalid {
            field: "scope",
            message: format!("{scope:?} is not fleet, tag:<tag> or device:<id>"),
        });
    }
    let agent = q.get("agent").filter(|a| !a.is_empty());
    if let Some(a) = agent {
        known_agent(a)?;
    }
    Ok(Json(HistoryView { changes: state.store.config_history(scope, agent.map(String::as_str), 200).await? }))
}

/// Puts back the layer a change made (operators), as a new change.
#[utoipa::path(post, path = "/config/history/{id}/restore", tag = "configuration",
    params(("id" = i64, Path, description = "The change to go back to")),
    responses((status = 200, body = ChangeView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn restore(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
) -> Result<Json<ChangeView>, ApiError> {
    require_operator(&token)?;
    let n = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::Invalid { field: "id", message: format!("{id:?} is not a change id") })?;
    let c = state.store.config_change(n).await?.ok_or_else(|| ApiError::NotFound(format!("no change {n}")))?;
    let layer = c.layer().ok_or_else(|| ApiError::Invalid {
        field: "id",
        message: format!("change {n} set a device's tags; set them again with PUT /devices/{{id}}/tags"),
    })?;
    Ok(Json(change(&state, &c.scope, &c.agent, &layer, &author(&token)).await?))
}
