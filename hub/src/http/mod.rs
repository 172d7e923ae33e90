//! The REST API under `/api/v1`, JSON in and out.
//!
//! Each submodule owns its routes (`router()`) and the queries behind them;
//! this module merges them and puts every route but `/health` behind bearer
//! token authentication.

mod auth;
mod devices;
mod error;
mod findings;
mod health;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use crate::stats::Stats;
use crate::store::Store;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub stats: Arc<Stats>,
}

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(devices::router())
        .merge(findings::router())
        .merge(health::stats_router())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let api = Router::new().merge(health::router()).merge(protected);
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}
