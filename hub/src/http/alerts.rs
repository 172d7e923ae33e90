//! Alerting: `GET|PUT /alerting` (the document: receivers, templates,
//! routes; secrets shown as `<secret>`, and kept when sent back so),
//! `GET /alerting/notifications` (the outbox, newest first),
//! `GET|POST /silences`, `DELETE /silences/{id}`, `GET|POST /maintenance`,
//! `DELETE /maintenance/{id}`. Changing needs an operator, the document an
//! admin (it holds credentials).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{author, require};
use super::views::ErrorBody;
use super::{ApiError, AppState};
use crate::alert::config::{AlertConfig, Match};
use crate::correlate::rule::parse_duration;
use crate::store::alerts::{Maintenance, OutboxRow, Silence, DAYS};
use crate::store::now_ms;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_config, put_config))
        .routes(routes!(notifications))
        .routes(routes!(list_silences, add_silence))
        .routes(routes!(expire_silence))
        .routes(routes!(list_maintenance, add_maintenance))
        .routes(routes!(delete_maintenance))
}

/// The alerting document as shown: secrets redacted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertingView {
    pub config: AlertConfig,
    pub updated_by: String,
    pub updated_ms: i64,
}

/// The alerting document (secrets redacted).
#[utoipa::path(get, path = "/alerting", tag = "alerting", responses((status = 200, body = AlertingView)))]
async fn get_config(State(state): State<AppState>) -> Result<Json<AlertingView>, ApiError> {
    let (cfg, updated_by, updated_ms) =
        state.store.alert_config().await?.ok_or_else(|| ApiError::NotFound("no alerting document".into()))?;
    Ok(Json(AlertingView { config: cfg.redacted(), updated_by, updated_ms }))
}

/// Replaces the alerting document (admins: it holds credentials); checked
/// whole, 422 naming every bad field. `<secret>` keeps a stored secret.
#[utoipa::path(put, path = "/alerting", tag = "alerting", request_body = AlertConfig,
    responses((status = 200, body = AlertingView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_config(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    body: axum::body::Bytes,
) -> Result<Json<AlertingView>, ApiError> {
    require(&token, Role::Admin, "change alerting (receivers hold credentials)")?;
    let mut cfg: AlertConfig = serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
        field: "body",
        message: format!("expected {{\"receivers\": [...], \"route\": {{...}}}}: {e}"),
    })?;
    save_config(&state, &mut cfg, &author(&token)).await?;
    get_config(State(state)).await
}

/// Checks and stores a document (also the web UI's).
pub async fn save_config(state: &AppState, cfg: &mut AlertConfig, who: &str) -> Result<(), ApiError> {
    if let Some((stored, _, _)) = state.store.alert_config().await? {
        cfg.unredact(&stored);
    }
    let errors = cfg.check();
    if !errors.is_empty() {
        return Err(ApiError::InvalidFields(errors));
    }
    state.store.put_alert_config(cfg, who, now_ms()).await?;
    tracing::info!(by = %who, receivers = cfg.receivers.len(), "alerting document saved");
    Ok(())
}

/// Notifications, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<OutboxRow>,
}

/// The outbox: notifications decided, their delivery state and last error.
#[utoipa::path(get, path = "/alerting/notifications", tag = "alerting",
    params(("state" = Option<String>, Query, description = "pending, sent or failed"),
        ("limit" = Option<u32>, Query, description = "1 to 1000 (default 100)")),
    responses((status = 200, body = NotificationList), (status = 422, body = ErrorBody)))]
async fn notifications(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<NotificationList>, ApiError> {
    super::known_query(&q, &["state", "limit"])?;
    let s = q.get("state").map(String::as_str);
    if let Some(s) = s.filter(|s| !["pending", "sent", "failed"].contains(s)) {
        return Err(ApiError::Invalid { field: "state", message: format!("{s:?} is not pending, sent or failed") });
    }
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| ApiError::Invalid {
            field: "limit",
            message: format!("{v:?} is not a number from 1 to 1000"),
        })?,
    };
    Ok(Json(NotificationList { notifications: state.store.notifications(s, limit).await? }))
}

/// Silences that have not ended.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SilenceList {
    pub silences: Vec<Silence>,
}

/// A new silence: matchers, and either `ends_ms` or `duration` (`2h`);
/// `starts_ms` defaults to now.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    #[serde(rename = "match")]
    pub matchers: Match,
    #[serde(default)]
    pub starts_ms: Option<i64>,
    #[serde(default)]
    pub ends_ms: Option<i64>,
    #[serde(default)]
    pub duration: Option<String>,
    pub comment: String,
}

/// Silences not ended yet (active or to come).
#[utoipa::path(get, path = "/silences", tag = "alerting", responses((status = 200, body = SilenceList)))]
async fn list_silences(State(state): State<AppState>) -> Result<Json<SilenceList>, ApiError> {
    Ok(Json(SilenceList { silences: state.store.silences(Some(now_ms())).await? }))
}

/// Silences matching incidents for a while (operators).
#[utoipa::path(post, path = "/silences", tag = "alerting", request_body = NewSilence,
    responses((status = 201, body = Silence), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_silence(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    require(&token, Role::Operator, "silence alerts")?;
    let s: NewSilence = serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
        field: "body",
        message: format!("expected {{\"match\": {{...}}, \"duration\": \"2h\", \"comment\": \"...\"}}: {e}"),
    })?;
    let silence = create_silence(&state, s, &author(&token)).await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

/// Checks and stores a silence (also the web UI's form).
pub async fn create_silence(state: &AppState, s: NewSilence, who: &str) -> Result<Silence, ApiError> {
    let now = now_ms();
    check_match(&s.matchers)?;
    let starts = s.starts_ms.unwrap_or(now);
    let ends = match (s.ends_ms, s.duration.as_deref()) {
        (Some(e), None) => e,
        (None, Some(d)) => {
            starts + parse_duration(d).map_err(|message| ApiError::Invalid { field: "duration", message })?
        }
        _ => {
            return Err(ApiError::Invalid { field: "ends_ms", message: "give ends_ms or duration, one of them".into() })
        }
    };
    if ends <= starts.max(now) {
        return Err(ApiError::Invalid {
            field: "ends_ms",
            message: "the silence would end before it starts, or now".into(),
        });
    }
    if s.comment.trim().is_empty() || s.comment.chars().count() > 500 {
        return Err(ApiError::Invalid { field: "comment", message: "say why, in 1 to 500 characters".into() });
    }
    let id = state.store.add_silence(&s.matchers, starts, ends, who, s.comment.trim(), now).await?;
    tracing::info!(silence = id, by = %who, ends_ms = ends, "silence added");
    state
        .store
        .silences(None)
        .await?
        .into_iter()
        .find(|x| x.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no silence {id}")))
}

/// A silence must match something: an empty one would mute everything.
fn check_match(m: &Match) -> Result<(), ApiError> {
    if *m == Match::default() {
        return Err(ApiError::Invalid {
            field: "match",
            message: "matches every incident; name a rule, severity, key, device or tag".into(),
        });
    }
    for s in m.severity.iter().chain(m.min_severity.iter()) {
        if crate::correlate::rule::severity_of(s).is_none() {
            return Err(ApiError::Invalid { field: "match", message: format!("{s:?} is not a severity") });
        }
    }
    Ok(())
}

fn parse_id(id: &str, what: &'static str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::Invalid { field: "id", message: format!("{id:?} is not a {what} id") })
}

/// Ends a silence now (operators).
#[utoipa::path(delete, path = "/silences/{id}", tag = "alerting",
    params(("id" = i64, Path, description = "The silence's id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn expire_silence(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&token, Role::Operator, "end silences")?;
    let id = parse_id(&id, "silence")?;
    if !state.store.expire_silence(id, now_ms()).await? {
        return Err(ApiError::NotFound(format!("no running silence {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Maintenance windows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MaintenanceList {
    pub windows: Vec<Maintenance>,
}

/// A weekly maintenance window: `days` (mon..sun), `start` (`HH:MM` UTC), `duration` (`2h`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMaintenance {
    pub name: String,
    #[serde(rename = "match")]
    pub matchers: Match,
    pub days: Vec<String>,
    pub start: String,
    pub duration: String,
}

/// The maintenance windows.
#[utoipa::path(get, path = "/maintenance", tag = "alerting", responses((status = 200, body = MaintenanceList)))]
async fn list_maintenance(State(state): State<AppState>) -> Result<Json<MaintenanceList>, ApiError> {
    Ok(Json(MaintenanceList { windows: state.store.maintenance().await? }))
}

/// Adds a weekly maintenance window (operators): matching incidents are not notified during it.
#[utoipa::path(post, path = "/maintenance", tag = "alerting", request_body = NewMaintenance,
    responses((status = 201, body = Maintenance), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_maintenance(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Maintenance>), ApiError> {
    require(&token, Role::Operator, "plan maintenance")?;
    let m: NewMaintenance = serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
        field: "body",
        message: format!(
            "expected {{\"name\", \"match\", \"days\": [\"sun\"], \"start\": \"02:00\", \"duration\": \"2h\"}}: {e}"
        ),
    })?;
    let w = create_maintenance(&state, m, &author(&token)).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// Checks and stores a maintenance window (also the web UI's form).
pub async fn create_maintenance(state: &AppState, m: NewMaintenance, who: &str) -> Result<Maintenance, ApiError> {
    check_match(&m.matchers)?;
    if m.name.trim().is_empty() || m.name.len() > 100 {
        return Err(ApiError::Invalid { field: "name", message: "1 to 100 characters".into() });
    }
    if m.days.is_empty() || m.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
        return Err(ApiError::Invalid {
            field: "days",
            message: format!("{:?}: a list of {}", m.days, DAYS.join(", ")),
        });
    }
    let start_min = m
        .start
        .split_once(':')
        .and_then(|(h, mi)| Some((h.parse::<i64>().ok()?, mi.parse::<i64>().ok()?)))
        .filter(|(h, mi)| (0..24).contains(h) && (0..60).contains(mi))
        .map(|(h, mi)| h * 60 + mi)
        .ok_or_else(|| ApiError::Invalid { field: "start", message: format!("{:?} is not HH:MM (UTC)", m.start) })?;
    let duration_ms = parse_duration(&m.duration).ok().filter(|d| *d <= 7 * 86_400_000).ok_or_else(|| {
        ApiError::Invalid { field: "duration", message: format!("{:?} is not a duration up to 7d", m.duration) }
    })?;
    let mut w = Maintenance {
        id: 0,
        name: m.name.trim().to_owned(),
        matchers: m.matchers,
        days: m.days,
        start_min,
        duration_ms,
        created_by: who.to_owned(),
    };
    w.id = state.store.add_maintenance(&w, now_ms()).await?;
    Ok(w)
}

/// Deletes a maintenance window (operators).
#[utoipa::path(delete, path = "/maintenance/{id}", tag = "alerting",
    params(("id" = i64, Path, description = "The window's id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_maintenance(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&token, Role::Operator, "plan maintenance")?;
    let id = parse_id(&id, "maintenance window")?;
    if !state.store.delete_maintenance(id).await? {
        return Err(ApiError::NotFound(format!("no maintenance window {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
