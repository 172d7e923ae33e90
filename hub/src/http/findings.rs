//! `GET /findings?device=&agent=&kind=&since=&limit=&cursor=`: newest first,
//! paginated by an opaque cursor (the last id of the previous page).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::views::FindingView;
use super::{ApiError, AppState};
use crate::store::FindingQuery;

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/findings", get(list))
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = parse_query(&params)?;
    let rows = state.store.query_findings(&q).await?;
    let next_cursor = (rows.len() as u32 == q.limit).then(|| rows.last().map(|r| encode_cursor(r.id))).flatten();
    let findings: Vec<FindingView> = rows.into_iter().map(FindingView::from).collect();
    Ok(Json(json!({ "findings": findings, "next_cursor": next_cursor })))
}

fn parse_query(params: &HashMap<String, String>) -> Result<FindingQuery, ApiError> {
    const KNOWN: [&str; 7] = ["device", "agent", "kind", "open", "since", "limit", "cursor"];
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
        if !opmas_proto::agents::AGENTS.iter().any(|s| s.name == a) {
            let known: Vec<&str> = opmas_proto::agents::AGENTS.iter().map(|s| s.name).collect();
            return Err(ApiError::Invalid {
                field: "agent",
                message: format!("unknown agent {a:?}; known: {}", known.join(", ")),
            });
        }
    }
    let since_ms = params.get("since").map(|v| parse_since(v)).transpose()?;
    let before_id = params.get("cursor").map(|v| decode_cursor(v)).transpose()?;
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
        since_ms,
        before_id,
        limit,
    })
}

/// `since` is RFC 3339 (`2024-12-05T17:43:57Z`) or unix milliseconds.
fn parse_since(v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    OffsetDateTime::parse(v, &Rfc3339).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64).map_err(|e| {
        ApiError::Invalid { field: "since", message: format!("{v:?} is neither RFC 3339 nor unix milliseconds: {e}") }
    })
}

fn encode_cursor(id: i64) -> String {
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
        ])
        .unwrap();
        assert_eq!(f.since_ms, Some(1_733_420_637_000));
        assert_eq!(f.limit, 5);
        assert_eq!(f.before_id, Some(77));
        assert_eq!(f.kind.as_deref(), Some("ssh.bruteforce"));
    }
}
