//! `GET /health` (no auth) and `GET /stats` (ingest and broker counters).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::stats::Snapshot;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

pub fn stats_router() -> Router<AppState> {
    Router::new().route("/stats", get(stats))
}

/// Liveness and database reachability, for load balancers and tests.
async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })))
}

async fn stats(State(state): State<AppState>) -> Json<Snapshot> {
    Json(state.stats.snapshot())
}
