//! The REST API under `/api/v1`, JSON in and out.
//!
//! Each submodule owns its routes (`router()`) and the queries behind them;
//! this module merges them and puts every route but `/health` and the sign-in
//! behind authentication: a bearer token, or a session cookie with its CSRF
//! token on requests that change something.

mod auth;
mod devices;
mod error;
pub mod findings;
mod health;
pub mod session;
pub mod throttle;
mod views;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;
pub use views::{rfc3339, severity_name};

use crate::keys::Keys;
use crate::stats::Stats;
use crate::store::Store;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub stats: Arc<Stats>,
    /// The running hub's key cache, told when a device goes or is rekeyed.
    pub keys: Keys,
    /// The URL routers are told to use when a request names none.
    pub hub_url: String,
    /// Failed sign-ins by user and address.
    pub throttle: Arc<throttle::Throttle>,
    /// Session cookies get `Secure` (the hub is reached over HTTPS).
    pub secure_cookies: bool,
    /// What ingest committed, for the web UI's live views.
    pub bus: crate::events::Bus,
}

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(devices::router())
        .merge(findings::router())
        .merge(health::stats_router())
        .merge(session::router())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let api = Router::new().merge(health::router()).merge(session::public_router()).merge(protected);
    Router::new()
        .nest("/api/v1", api)
        .merge(health::metrics_router())
        .merge(crate::web::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn app() -> (Router, tempfile::TempDir) {
        let (store, dir) = crate::store::test_store().await;
        store.insert_token("admin", crate::store::users::Role::Admin, "admin-token", 1).await.unwrap();
        store.insert_token("viewer", crate::store::users::Role::Viewer, "viewer-token", 1).await.unwrap();
        store.insert_device("gw-1", "gw-1", &"ab".repeat(32), 1).await.unwrap();
        let state = AppState {
            keys: Keys::new(store.clone()),
            store,
            stats: Arc::default(),
            hub_url: "mqtt://hub:1883".into(),
            throttle: Arc::default(),
            secure_cookies: false,
            bus: Default::default(),
        };
        (router(state), dir)
    }

    async fn call(app: &Router, method: &str, uri: &str, token: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn metrics_from_another_machine_need_a_token() {
        let (app, _dir) = app().await;
        // A request without a peer address counts as from another machine.
        let (status, _) = call(&app, "GET", "/metrics", "wrong", "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let req = Request::builder().uri("/metrics").header("authorization", "Bearer viewer-token").body(Body::empty());
        let resp = app.clone().oneshot(req.unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(text.contains("opmas_devices{status=\"never\"} 1"), "a device enrolled, never heard: {text}");
        assert!(text.contains("# TYPE opmas_messages_total counter\nopmas_messages_total 0"), "{text}");
    }

    #[tokio::test]
    async fn every_error_has_its_status() {
        let (app, _dir) = app().await;
        let cases = [
            ("GET", "/api/v1/devices/gw-9", "admin-token", "", StatusCode::NOT_FOUND),
            ("DELETE", "/api/v1/devices/gw-9", "admin-token", "", StatusCode::NOT_FOUND),
            ("POST", "/api/v1/devices/gw-9/rekey", "admin-token", "{}", StatusCode::NOT_FOUND),
            ("POST", "/api/v1/devices/Bad%2FId/rekey", "admin-token", "{}", StatusCode::UNPROCESSABLE_ENTITY),
            (
                "POST",
                "/api/v1/devices/gw-1/rekey",
                "admin-token",
                r#"{"hub_url":"http://x"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("DELETE", "/api/v1/devices/gw-1", "viewer-token", "", StatusCode::FORBIDDEN),
            ("DELETE", "/api/v1/devices/gw-1", "wrong", "", StatusCode::UNAUTHORIZED),
            ("GET", "/api/v1/nowhere", "admin-token", "", StatusCode::NOT_FOUND),
        ];
        for (method, uri, token, body, want) in cases {
            let (status, v) = call(&app, method, uri, token, body).await;
            assert_eq!(status, want, "{method} {uri}: {v}");
            assert!(v["error"].is_string(), "{method} {uri}: {v}");
        }
    }

    #[tokio::test]
    async fn rekey_returns_the_new_secret_and_remove_answers_no_content() {
        let (app, _dir) = app().await;
        let (status, v) = call(&app, "POST", "/api/v1/devices/gw-1/rekey", "admin-token", "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let secret = v["secret"].as_str().unwrap();
        assert_ne!(secret, "ab".repeat(32));
        assert!(v["uci"].as_str().unwrap().contains("mqtt://hub:1883"));
        let (status, _) = call(&app, "DELETE", "/api/v1/devices/gw-1", "admin-token", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}
