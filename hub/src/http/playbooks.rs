//! Playbooks: `GET /playbooks`, `GET|PUT|DELETE /playbooks/{name}`,
//! `POST /playbooks/{name}/{enable|disable}`. Reading needs a viewer;
//! changing needs an administrator, since a playbook in `auto` mode acts on
//! every router without asking anyone. A playbook is checked whole (422
//! names every bad field) before it is stored; the runner reads the stored
//! playbooks at each batch, so a change applies to the next finding.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{author, require};
use super::views::ErrorBody;
use super::{ApiError, AppState};
use crate::act::playbook::{Playbook, PlaybookSpec};
use crate::correlate::rule::check_name;
use crate::store::now_ms;
use crate::store::playbooks::PlaybookRow;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(one, put, delete)).routes(routes!(switch))
}

/// Every playbook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlaybookList {
    pub playbooks: Vec<PlaybookRow>,
}

fn require_admin(token: &TokenInfo) -> Result<(), ApiError> {
    require(token, Role::Admin, "change playbooks")
}

fn named(name: &str) -> Result<(), ApiError> {
    check_name(name)
        .map_err(|message| ApiError::Invalid { field: "name", message: message.replace("rule", "playbook") })
}

async fn found(state: &AppState, name: &str) -> Result<PlaybookRow, ApiError> {
    state.store.playbook(name).await?.ok_or_else(|| ApiError::NotFound(format!("no playbook {name:?}")))
}

/// Parses and checks a playbook body for `name`: 422 with every bad field.
pub fn checked(name: &str, body: &[u8]) -> Result<PlaybookSpec, ApiError> {
    let shape = "a playbook {\"name\", \"trigger\", \"steps\", ...}";
    let spec: PlaybookSpec = super::named_document(name, body, shape, |p: &PlaybookSpec| &p.name)?;
    Playbook::compile(spec.clone()).map_err(ApiError::InvalidFields)?;
    Ok(spec)
}

/// The playbooks, by name.
#[utoipa::path(get, path = "/playbooks", tag = "actions", responses((status = 200, body = PlaybookList)))]
async fn list(State(state): State<AppState>) -> Result<Json<PlaybookList>, ApiError> {
    Ok(Json(PlaybookList { playbooks: state.store.playbooks().await? }))
}

/// One playbook.
#[utoipa::path(get, path = "/playbooks/{name}", tag = "actions",
    params(("name" = String, Path, description = "The playbook's name")),
    responses((status = 200, body = PlaybookRow), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<PlaybookRow>, ApiError> {
    named(&name)?;
    Ok(Json(found(&state, &name).await?))
}

/// Creates or replaces a playbook (administrators): 201 if new.
#[utoipa::path(put, path = "/playbooks/{name}", tag = "actions",
    params(("name" = String, Path, description = "The playbook's name")),
    request_body = PlaybookSpec,
    responses((status = 200, body = PlaybookRow), (status = 201, body = PlaybookRow), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn put(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<PlaybookRow>), ApiError> {
    require_admin(&token)?;
    named(&name)?;
    let spec = checked(&name, &body)?;
    let new = save(&state, &spec, &author(&token)).await?;
    let row = found(&state, &name).await?;
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(row)))
}

/// Stores a checked playbook as `who`; whether it is new. The runner
/// reads the stored playbooks at each batch (the web editor saves here too).
pub async fn save(state: &AppState, spec: &PlaybookSpec, who: &str) -> Result<bool, ApiError> {
    let new = state.store.put_playbook(spec, who, now_ms()).await?;
    tracing::info!(playbook = %spec.name, mode = spec.mode.as_str(), by = %who, new, "playbook saved");
    Ok(new)
}

/// Deletes a playbook (administrators); a shipped one is not seeded again.
#[utoipa::path(delete, path = "/playbooks/{name}", tag = "actions",
    params(("name" = String, Path, description = "The playbook's name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&token)?;
    named(&name)?;
    if !state.store.delete_playbook(&name, &author(&token), now_ms()).await? {
        return Err(ApiError::NotFound(format!("no playbook {name:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Turns a playbook on or off (administrators).
#[utoipa::path(post, path = "/playbooks/{name}/{action}", tag = "actions",
    params(("name" = String, Path, description = "The playbook's name"), ("action" = String, Path, description = "enable or disable")),
    responses((status = 200, body = PlaybookRow), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn switch(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<PlaybookRow>, ApiError> {
    require_admin(&token)?;
    named(&name)?;
    let enabled = super::on_off(&action)?;
    if !state.store.set_playbook_enabled(&name, enabled, &author(&token), now_ms()).await? {
        return Err(ApiError::NotFound(format!("no playbook {name:?}")));
    }
    Ok(Json(found(&state, &name).await?))
}
