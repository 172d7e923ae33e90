//! `GET /health` (no auth), `GET /stats` (ingest and broker counters) and
//! `GET /metrics` (the same and devices by presence, in the Prometheus text
//! format, for a scraper on the hub's own machine or with a token).

use std::fmt::Write;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ErrorBody, Health};
use super::{ApiError, AppState};
use crate::stats::Snapshot;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

pub fn stats_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stats))
}

/// `GET /metrics`, outside `/api/v1` where scrapers look for it.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Open to requests from the hub's own machine (a local Prometheus or
/// node exporter) unless `metrics_loopback` is off; otherwise it needs the
/// scrape token (`metrics_token_file`) or an API token (any role).
async fn metrics(State(state): State<AppState>, req: axum::extract::Request) -> Result<Response, ApiError> {
    let local = state.metrics.loopback
        && req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|c| c.0.ip().is_loopback());
    let scrape = state.metrics.token.as_deref().is_some_and(|t| {
        let sent = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        sent.and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|s| crate::keys::constant_time_eq(s.trim().as_bytes(), t.as_bytes()))
    });
    if !local && !scrape && super::auth::bearer(&state, req.headers()).await?.is_none() {
        return Err(ApiError::Unauthorized("metrics need Authorization: Bearer <scrape or API token>"));
    }
    let mut text = String::new();
    text.push_str("# TYPE opmas_devices gauge\n");
    for (status, n) in state.store.device_counts().await? {
        // Statuses are the hub's own words (online, offline): nothing to escape.
        let _ = writeln!(text, "opmas_devices{{status=\"{status}\"}} {n}");
    }
    let (devices, dropped) = state.store.reported_spool_drops().await?;
    text.push_str("# HELP opmas_edge_spool_dropped Findings the edges dropped from full spools, as their latest heartbeats report (summed).\n");
    text.push_str("# TYPE opmas_edge_spool_dropped gauge\n");
    let _ = writeln!(text, "opmas_edge_spool_dropped {dropped}");
    text.push_str("# TYPE opmas_edge_spool_dropping_devices gauge\n");
    let _ = writeln!(text, "opmas_edge_spool_dropping_devices {devices}");
    text.push_str("# HELP opmas_alert_notifications Notifications in the outbox by receiver and state (pending ones still being retried; failed: given up).\n");
    text.push_str("# TYPE opmas_alert_notifications gauge\n");
    for (receiver, st, n) in state.store.outbox_counts().await? {
        let _ = writeln!(text, "opmas_alert_notifications{{receiver=\"{}\",state=\"{st}\"}} {n}", label(&receiver));
    }
    text.push_str("# HELP opmas_alert_receiver_failing Receivers whose oldest pending notification failed its last attempt (1).\n");
    text.push_str("# TYPE opmas_alert_receiver_failing gauge\n");
    for (receiver, failing) in state.store.receiver_health().await? {
        let _ =
            writeln!(text, "opmas_alert_receiver_failing{{receiver=\"{}\"}} {}", label(&receiver), u8::from(failing));
    }
    let (open, acknowledged) = state.store.incident_counts().await?;
    text.push_str("# TYPE opmas_incidents gauge\n");
    let _ = writeln!(text, "opmas_incidents{{state=\"open\"}} {open}");
    let _ = writeln!(text, "opmas_incidents{{state=\"acknowledged\"}} {acknowledged}");
    text.push_str("# HELP opmas_leader 1 while this replica runs the duties one hub must run.\n");
    text.push_str("# TYPE opmas_leader gauge\n");
    let _ = writeln!(text, "opmas_leader {}", u8::from(state.leader.is_leader()));
    state.stats.prometheus(&mut text);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Liveness and database reachability, for load balancers and tests.
#[utoipa::path(get, path = "/health", tag = "hub", security(()),
    responses((status = 200, body = Health), (status = 500, body = ErrorBody)))]
async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        leader: state.leader.is_leader(),
    }))
}

/// Ingest and broker counters since the hub started.
#[utoipa::path(get, path = "/stats", tag = "hub",
    responses((status = 200, body = Snapshot), (status = 401, body = ErrorBody)))]
async fn stats(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.stats.snapshot())
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
