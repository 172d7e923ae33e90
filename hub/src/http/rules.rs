//! Correlation rules: `GET /rules`, `GET|PUT|DELETE /rules/{name}`,
//! `POST /rules/{name}/{enable|disable}`. Changing needs an operator; a
//! rule is checked whole (422 names every bad field) before it is stored,
//! and the correlator rebuilds on every change.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{author, require};
use super::views::ErrorBody;
use super::{ApiError, AppState};
use crate::correlate::rule::{check_name, Rule, RuleSpec};
use crate::events::Event;
use crate::store::now_ms;
use crate::store::rules::RuleRow;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(one, put, delete)).routes(routes!(switch))
}

/// Every rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleRow>,
}

fn require_operator(token: &TokenInfo) -> Result<(), ApiError> {
    require(token, Role::Operator, "change correlation rules")
}

fn named(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(|message| ApiError::Invalid { field: "name", message })
}

/// Parses and checks a rule body for `name`: 422 with every bad field.
pub fn checked(name: &str, body: &[u8]) -> Result<RuleSpec, ApiError> {
    let shape = "a rule {\"name\", \"type\", \"severity\", \"window\", ...}";
    let spec: RuleSpec = super::named_document(name, body, shape, |r: &RuleSpec| &r.name)?;
    Rule::compile(spec.clone()).map_err(ApiError::InvalidFields)?;
    Ok(spec)
}

/// The rules, by name.
#[utoipa::path(get, path = "/rules", tag = "correlation", responses((status = 200, body = RuleList)))]
async fn list(State(state): State<AppState>) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(RuleList { rules: state.store.rules().await? }))
}

/// One rule.
#[utoipa::path(get, path = "/rules/{name}", tag = "correlation",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, body = RuleRow), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<RuleRow>, ApiError> {
    named(&name)?;
    let row = state.store.rule(&name).await?.ok_or_else(|| ApiError::NotFound(format!("no rule {name:?}")))?;
    Ok(Json(row))
}

/// Creates or replaces a rule (operators): 201 if new.
#[utoipa::path(put, path = "/rules/{name}", tag = "correlation",
    params(("name" = String, Path, description = "The rule's name")),
    request_body = RuleSpec,
    responses((status = 200, body = RuleRow), (status = 201, body = RuleRow), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn put(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RuleRow>), ApiError> {
    require_operator(&token)?;
    named(&name)?;
    let spec = checked(&name, &body)?;
    save(&state, &spec, &author(&token)).await
}

/// Stores a checked rule and has the correlator rebuild.
pub async fn save(state: &AppState, spec: &RuleSpec, who: &str) -> Result<(StatusCode, Json<RuleRow>), ApiError> {
    let new = state.store.put_rule(spec, who, now_ms()).await?;
    state.bus.publish([Event::Rules]);
    tracing::info!(rule = %spec.name, by = %who, new, "rule saved");
    let row =
        state.store.rule(&spec.name).await?.ok_or_else(|| ApiError::NotFound(format!("no rule {:?}", spec.name)))?;
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(row)))
}

/// Deletes a rule (operators); a shipped one is not seeded again.
#[utoipa::path(delete, path = "/rules/{name}", tag = "correlation",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_operator(&token)?;
    named(&name)?;
    if !state.store.delete_rule(&name, &author(&token), now_ms()).await? {
        return Err(ApiError::NotFound(format!("no rule {name:?}")));
    }
    state.bus.publish([Event::Rules]);
    Ok(StatusCode::NO_CONTENT)
}

/// Turns a rule on or off (operators).
#[utoipa::path(post, path = "/rules/{name}/{action}", tag = "correlation",
    params(("name" = String, Path, description = "The rule's name"), ("action" = String, Path, description = "enable or disable")),
    responses((status = 200, body = RuleRow), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn switch(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<RuleRow>, ApiError> {
    require_operator(&token)?;
    named(&name)?;
    let enabled = super::on_off(&action)?;
    if !state.store.set_rule_enabled(&name, enabled, &author(&token), now_ms()).await? {
        return Err(ApiError::NotFound(format!("no rule {name:?}")));
    }
    state.bus.publish([Event::Rules]);
    let row = state.store.rule(&name).await?.ok_or_else(|| ApiError::NotFound(format!("no rule {name:?}")))?;
    Ok(Json(row))
}
