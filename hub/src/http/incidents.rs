//! Incidents: `GET /incidents` (filters, newest first, paged),
//! `GET /incidents/{id}` (its findings, timeline and what the hub knows
//! about its key), `POST /incidents/{id}/{acknowledge|resolve|reopen}` and
//! `POST /incidents/{id}/comments` (operators).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{author, require};
use super::commands::{decode_cursor, encode_cursor};
use super::views::{rfc3339, severity_name, ErrorBody, FindingView};
use super::{ApiError, AppState};
use crate::events::Event;
use crate::store::incidents::{IncidentEvent, IncidentQuery, IncidentRow, Sighting, STATES};
use crate::store::now_ms;
use crate::store::tokens::TokenInfo;
use crate::store::users::Role;

/// Findings shown with an incident, at most.
const MEMBERS: u32 = 200;
/// Longest comment, in characters.
const COMMENT_LEN: usize = 2000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(one)).routes(routes!(act)).routes(routes!(comment))
}

/// An incident as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: IncidentRow,
    pub severity_name: &'static str,
    pub first: String,
    pub last: String,
}

impl From<IncidentRow> for IncidentView {
    fn from(i: IncidentRow) -> Self {
        IncidentView {
            severity_name: severity_name(i.severity),
            first: rfc3339(i.first_ms),
            last: rfc3339(i.last_ms),
            incident: i,
        }
    }
}

/// A page of incidents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub incidents: Vec<IncidentView>,
    pub next_cursor: Option<String>,
}

/// A router of the incident, with its tags.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceTags {
    pub id: String,
    pub tags: Vec<String>,
}

/// What the hub knows about an incident's key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Context {
    /// `src_ip`, `mac`, `user`, ... (none for a fleet-wide incident).
    pub key_field: Option<String>,
    pub key_value: Option<String>,
    /// Which routers reported findings with this key, first and last time.
    pub seen_by: Vec<Sighting>,
    /// Earlier incidents with the same key, newest first.
    pub earlier: Vec<IncidentView>,
    pub devices: Vec<DeviceTags>,
}

/// One incident with its findings, timeline and context.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    pub incident: IncidentView,
    /// Its findings, oldest first (the first 200).
    pub findings: Vec<FindingView>,
    /// Opened, acknowledged, resolved, comments: oldest first.
    pub timeline: Vec<IncidentEvent>,
    pub context: Context,
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|&n| n > 0).ok_or_else(|| ApiError::Invalid {
        field: "id",
        message: format!("{id:?} is not an incident id (a positive number)"),
    })
}

/// Incidents, newest first, filtered; a page at a time.
#[utoipa::path(get, path = "/incidents", tag = "correlation",
    params(
        ("state" = Option<String>, Query, description = "open, acknowledged or resolved"),
        ("rule" = Option<String>, Query, description = "Only this rule's"),
        ("severity" = Option<String>, Query, description = "At least: 1 to 5 or info, low, medium, high, critical"),
        ("device" = Option<String>, Query, description = "Only those involving this router"),
        ("key" = Option<String>, Query, description = "Only this key (`src_ip=203.0.113.7`)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor"),
    ),
    responses((status = 200, body = IncidentPage), (status = 422, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<IncidentPage>, ApiError> {
    let q = parse_query(&params)?;
    let rows = state.store.query_incidents(&q).await?;
    let next_cursor = (rows.len() as u32 == q.limit).then(|| rows.last().map(|r| encode_cursor(r.id))).flatten();
    Ok(Json(IncidentPage { incidents: rows.into_iter().map(IncidentView::from).collect(), next_cursor }))
}

/// Reads the incidents filters (also the web UI's).
pub fn parse_query(params: &HashMap<String, String>) -> Result<IncidentQuery, ApiError> {
    const KNOWN: [&str; 7] = ["state", "rule", "severity", "device", "key", "limit", "cursor"];
    super::known_query(params, &KNOWN)?;
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(s) = text("state").filter(|s| !STATES.contains(&s.as_str())) {
        return Err(ApiError::Invalid {
            field: "state",
            message: format!("{s:?} is not one of {}", STATES.join(", ")),
        });
    }
    let min_severity = match text("severity") {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .or_else(|| crate::correlate::rule::severity_of(&s))
                .ok_or_else(|| ApiError::Invalid {
                field: "severity",
                message: format!("{s:?} is not 1 to 5 or info, low, medium, high, critical"),
            })?,
        ),
    };
    let limit = match text("limit") {
        None => 100,
        Some(v) => v.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| ApiError::Invalid {
            field: "limit",
            message: format!("{v:?} is not a number from 1 to 1000"),
        })?,
    };
    let before_id = text("cursor").map(|c| decode_cursor(&c)).transpose()?;
    Ok(IncidentQuery {
        state: text("state"),
        rule: text("rule"),
        min_severity,
        device: text("device"),
        key: text("key"),
        before_id,
        limit,
    })
}

/// One incident: its findings, timeline, and what the hub knows about its key.
#[utoipa::path(get, path = "/incidents/{id}", tag = "correlation",
    params(("id" = i64, Path, description = "The incident's id")),
    responses((status = 200, body = IncidentDetail), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<IncidentDetail>, ApiError> {
    Ok(Json(detail(&state, parse_id(&id)?).await?))
}

/// An incident's page data (also the web UI's).
pub async fn detail(state: &AppState, id: i64) -> Result<IncidentDetail, ApiError> {
    let row = state.store.incident(id).await?.ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))?;
    let findings = state.store.incident_findings(id, MEMBERS).await?.into_iter().map(FindingView::from).collect();
    let timeline = state.store.incident_events(id).await?;
    let (key_field, key_value) = match row.key.split_once('=') {
        Some((f, v)) => {
            // `src_ip=192.0.2.1 on gw-1`: the value is the part before the router.
            let v = v.split(" on ").next().unwrap_or(v);
            (Some(f.to_owned()), Some(v.to_owned()))
        }
        None => (None, None),
    };
    let seen_by = match (&key_field, &key_value) {
        (Some(f), Some(v)) => state.store.sightings(f, v).await?,
        _ => Vec::new(),
    };
    let earlier = if row.key == "fleet" {
        Vec::new()
    } else {
        let q = IncidentQuery { key: Some(row.key.clone()), before_id: Some(id), limit: 20, ..Default::default() };
        state.store.query_incidents(&q).await?.into_iter().map(IncidentView::from).collect()
    };
    let mut devices = Vec::new();
    for d in &row.devices {
        devices.push(DeviceTags { id: d.clone(), tags: state.store.tags(d).await? });
    }
    Ok(IncidentDetail {
        incident: row.into(),
        findings,
        timeline,
        context: Context { key_field, key_value, seen_by, earlier, devices },
    })
}

/// An optional note with a state change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Note {
    #[serde(default)]
    pub comment: String,
}

/// Acknowledges, resolves or reopens an incident (operators), with an
/// optional `{"comment": ...}`.
#[utoipa::path(post, path = "/incidents/{id}/{action}", tag = "correlation",
    params(("id" = i64, Path, description = "The incident's id"),
        ("action" = String, Path, description = "acknowledge, resolve or reopen")),
    request_body(content = Option<Note>),
    responses((status = 200, body = IncidentView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn act(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    require(&token, Role::Operator, "change incidents")?;
    let id = parse_id(&id)?;
    let note: Note = if body.is_empty() {
        Note::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Invalid {
            field: "body",
            message: format!("expected nothing or {{\"comment\": \"...\"}}: {e}"),
        })?
    };
    check_text(&note.comment, true)?;
    let row = set_state(&state, id, &action, &author(&token), &note.comment).await?;
    Ok(Json(row.into()))
}

/// Moves an incident (also the web UI's buttons).
pub async fn set_state(
    state: &AppState,
    id: i64,
    action: &str,
    who: &str,
    text: &str,
) -> Result<IncidentRow, ApiError> {
    let target = match action {
        "acknowledge" => "acknowledged",
        "resolve" => "resolved",
        "reopen" => "open",
        other => {
            return Err(ApiError::Invalid {
                field: "action",
                message: format!("{other:?} is not acknowledge, resolve or reopen"),
            })
        }
    };
    match state.store.set_incident_state(id, target, who, text, now_ms()).await? {
        None => return Err(ApiError::NotFound(format!("no incident {id}"))),
        Some(Some(c)) => {
            tracing::info!(incident = id, change = c.change, by = %who, "incident changed");
            state.bus.publish([Event::Incident { id: c.id, change: c.change }]);
        }
        Some(None) => {}
    }
    state.store.incident(id).await?.ok_or_else(|| ApiError::NotFound(format!("no incident {id}")))
}

fn check_text(text: &str, may_be_empty: bool) -> Result<(), ApiError> {
    if !may_be_empty && text.trim().is_empty() {
        return Err(ApiError::Invalid { field: "text", message: "a comment needs some text".into() });
    }
    if text.chars().count() > COMMENT_LEN {
        return Err(ApiError::Invalid { field: "text", message: format!("longer than {COMMENT_LEN} characters") });
    }
    Ok(())
}

/// A comment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub text: String,
}

/// Adds a comment to an incident's timeline (operators).
#[utoipa::path(post, path = "/incidents/{id}/comments", tag = "correlation",
    params(("id" = i64, Path, description = "The incident's id")),
    request_body = CommentBody,
    responses((status = 201), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn comment(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::http::StatusCode, ApiError> {
    require(&token, Role::Operator, "comment on incidents")?;
    let id = parse_id(&id)?;
    let c: CommentBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid { field: "body", message: format!("expected {{\"text\": \"...\"}}: {e}") })?;
    add_comment(&state, id, &author(&token), &c.text).await?;
    Ok(axum::http::StatusCode::CREATED)
}

/// Adds a checked comment (also the web UI's form).
pub async fn add_comment(state: &AppState, id: i64, who: &str, text: &str) -> Result<(), ApiError> {
    check_text(text, false)?;
    if !state.store.comment_incident(id, who, text.trim(), now_ms()).await? {
        return Err(ApiError::NotFound(format!("no incident {id}")));
    }
    Ok(())
}
