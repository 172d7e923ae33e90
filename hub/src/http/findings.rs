//! `GET /findings?device=&agent=&kind=&severity=&open=&since=&until=&limit=&cursor=`:
//! newest first, paginated by an opaque cursor (the last id of the previous
//! page); `GET /findings/{id}`. The web UI's findings page reads its
//! filters with the same [`parse_query`].

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ErrorBody, FindingPage, FindingView};
use super::{ApiError, AppState};
use crate::store::FindingQuery;

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(one))
}

/// One finding.
#[utoipa::path(get, path = "/findings/{id}", tag = "findings",
    params(("id" = i64, Path, description = "The finding's id")),
    responses((status = 200, body = FindingView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<FindingView>, ApiError> {
    let n = parse_id(&id)?;
    let row = state.store.finding(n).await?.ok_or_else(|| ApiError::NotFound(format!("no finding {id}")))?;
    Ok(Json(FindingView::from(row)))
}

/// A finding id from a path: a positive number.
pub fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|&n| n > 0).ok_or_else(|| ApiError::Invalid {
        field: "id",
        message: format!("{id:?} is not a finding id (a positive number)"),
    })
}

/// Findings, newest first, filtered; a page at a time.
#[utoipa::path(get, path = "/findings", tag = "findings",
    params(
        ("device" = Option<String>, Query, description = "Only this device's"),
        ("agent" = Option<String>, Query, description = "Only this agent's: security, wifi, network, system"),
        ("kind" = Option<String>, Query, description = "Only this kind (`ssh.bruteforce`, ...)"),
        ("severity" = Option<String>, Query, description = "At least this severity: 1 to 5 or info, low, medium, high, critical"),
        ("open" = Option<bool>, Query, description = "Only open (true) or closed (false) findings"),
        ("since" = Option<String>, Query, description = "Last event at or after: RFC 3339, a date, or unix ms"),
        ("until" = Option<String>, Query, description = "First event before: RFC 3339, a date, or unix ms"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's `next_cursor`"),
    ),
    responses((status = 200, body = FindingPage), (status = 422, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<FindingPage>, ApiError> {
    let q = parse_query(&params)?;
    let rows = state.store.query_findings(&q).await?;
    let next_cursor = next_cursor(&q, &rows);
    let findings: Vec<FindingView> = rows.into_iter().map(FindingView::from).collect();
    Ok(Json(FindingPage { findings, next_cursor }))
}

/// The cursor of the page after `rows`, if it may hold any.
pub fn next_cursor(q: &FindingQuery, rows: &[crate::store::FindingRow]) -> Option<String> {
    (rows.len() as u32 == q.limit).then(|| rows.last().map(|r| encode_cursor(r.id))).flatten()
}

/// The query parameters `GET /findings` and the findings page know.
pub const PARAMS: [&str; 9] = ["device", "agent", "kind", "severity", "open", "since", "until", "limit", "cursor"];

/// Reads the findings filters; a mistake names its parameter and says
/// what would do.
pub fn parse_query(params: &HashMap<String, String>) -> Result<FindingQuery, ApiError> {
    const KNOWN: [&str; 9] = PARAMS;
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::Invalid {
            field: "query",
            message: format!("unknown parameter {unknown:?}; known are {}", KNOWN.join(", ")),
        });
    }
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::Invalid {
                    field: "limit",
                    message: format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                })
            }
        },
    };
    if let Some(k) = text("kind") {
        if opmas_proto::kinds::by_name(&k).is_none() {
            let known: Vec<&str> = opmas_proto::kinds::ALL_KINDS.iter().map(|k| k.name).collect();
            return Err(ApiError::Invalid {
                field: "kind",
                message: format!("unknown kind {k:?}; known: {}", known.join(", ")),
            });
        }
    }
    if let Some(a) = text("agent") {
        if !opmas_proto::kinds::finding_agents().any(|s| s == a) {
            let known: Vec<&str> = opmas_proto::kinds::finding_agents().collect();
            return Err(ApiError::Invalid {
                field: "agent",
                message: format!("unknown agent {a:?}; known: {}", known.join(", ")),
            });
        }
    }
    if let Some(d) = text("device") {
        opmas_proto::DeviceId::new(&d).map_err(|e| ApiError::Invalid { field: "device", message: e.to_string() })?;
    }
    let min_severity = text("severity").map(|v| parse_severity(&v)).transpose()?;
    let since_ms = text("since").map(|v| parse_time("since", &v)).transpose()?;
    let until_ms = text("until").map(|v| parse_time("until", &v)).transpose()?;
    let before_id = text("cursor").map(|v| decode_cursor(&v)).transpose()?;
    let open = match params.get("open").map(String::as_str) {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::Invalid { field: "open", message: format!("{other:?} is not true or false") });
        }
    };
    Ok(FindingQuery {
        device: text("device"),
        agent: text("agent"),
        kind: text("kind"),
        open,
        min_severity,
        since_ms,
        until_ms,
        before_id,
        after_id: None,
        limit,
    })
}

/// The severity names, lowest first (1 to 5).
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// `severity` (the least shown) is a name or a number from 1 to 5.
fn parse_severity(v: &str) -> Result<i64, ApiError> {
    let n = match v.parse::<i64>() {
        Ok(n) => Some(n).filter(|n| (1..=5).contains(n)),
        Err(_) => SEVERITIES.iter().position(|s| *s == v).map(|i| i as i64 + 1),
    };
    n.ok_or_else(|| ApiError::Invalid {
        field: "severity",
        message: format!("{v:?} is not a severity: 1 to 5 or one of {}", SEVERITIES.join(", ")),
    })
}

/// `since` and `until` are RFC 3339 (`2024-12-05T17:43:57Z`), a date
/// (`2024-12-05`, midnight UTC), a date and time without seconds or zone
/// (`2024-12-05T17:43`, what a browser's date-time field sends; UTC) or
/// unix milliseconds.
fn parse_time(field: &'static str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    let as_ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(as_ms(t));
    }
    let local = match v.len() {
        10 => format!("{v}T00:00:00Z"),
        16 => format!("{v}:00Z"),
        _ => String::new(),
    };
    OffsetDateTime::parse(&local, &Rfc3339).map(as_ms).map_err(|_| ApiError::Invalid {
        field,
        message: format!(
            "{v:?} is not a time: RFC 3339 (2024-12-05T17:43:57Z), a date (2024-12-05) or unix milliseconds"
        ),
    })
}

/// The cursor that pages on after finding `id`.
pub fn encode_cursor(id: i64) -> String {
    format!("f{id:x}")
}

fn decode_cursor(v: &str) -> Result<i64, ApiError> {
    v.strip_prefix('f').and_then(|h| i64::from_str_radix(h, 16).ok()).filter(|&id| id > 0).ok_or_else(|| {
        ApiError::Invalid { field: "cursor", message: format!("{v:?} is not a cursor this API returned") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<FindingQuery, ApiError> {
        parse_query(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn bad_parameters_name_the_field() {
        for (pairs, field) in [
            (&[("limit", "0")][..], "limit"),
            (&[("limit", "x")][..], "limit"),
            (&[("since", "yesterday")][..], "since"),
            (&[("cursor", "42")][..], "cursor"),
            (&[("colour", "red")][..], "query"),
            (&[("kind", "ssh.brute")][..], "kind"),
            (&[("agent", "dns")][..], "agent"),
            (&[("severity", "6")][..], "severity"),
            (&[("severity", "urgent")][..], "severity"),
            (&[("until", "soon")][..], "until"),
            (&[("device", "a/b")][..], "device"),
        ] {
            match q(pairs) {
                Err(ApiError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn good_parameters_parse() {
        let f = q(&[
            ("since", "2024-12-05T17:43:57Z"),
            ("limit", "5"),
            ("cursor", &encode_cursor(77)),
            ("kind", "ssh.bruteforce"),
            ("severity", "high"),
            ("until", "2024-12-06"),
        ])
        .unwrap();
        assert_eq!(f.min_severity, Some(4));
        assert_eq!(f.until_ms, Some(1_733_443_200_000));
        assert_eq!(q(&[("until", "2024-12-05T17:43")]).unwrap().until_ms, Some(1_733_420_580_000));
        assert_eq!(f.since_ms, Some(1_733_420_637_000));
        assert_eq!(f.limit, 5);
        assert_eq!(f.before_id, Some(77));
        assert_eq!(f.kind.as_deref(), Some("ssh.bruteforce"));
    }
}
