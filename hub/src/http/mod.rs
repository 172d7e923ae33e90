//! The REST API under `/api/v1`, JSON in and out.
//!
//! Each submodule owns its routes (`router()`) and the queries behind them;
//! this module merges them and puts every route but `/health` and the sign-in
//! behind authentication: a bearer token, or a session cookie with its CSRF
//! token on requests that change something.

pub mod actions;
pub mod agent_config;
pub mod alerts;
pub mod archive;
mod auth;
pub mod commands;
mod devices;
mod error;
pub mod findings;
mod health;
pub mod incidents;
pub mod playbooks;
pub mod rules;
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

/// An enrolled device's id from a path: 422 if it is not an id, 404 if no
/// such device.
pub async fn known_device(state: &AppState, id: &str) -> Result<opmas_proto::DeviceId, ApiError> {
    let id = opmas_proto::DeviceId::new(id).map_err(|e| ApiError::Invalid { field: "id", message: e.to_string() })?;
    if state.store.get_device(id.as_str()).await?.is_none() {
        return Err(ApiError::NotFound(format!("no device {:?}", id.as_str())));
    }
    Ok(id)
}

/// Refuses a query parameter a route does not read, naming the ones it does.
pub fn known_query(params: &std::collections::HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::Invalid {
            field: "query",
            message: format!("unknown parameter {k:?}; known are {}", known.join(", ")),
        }),
        None => Ok(()),
    }
}

/// `enable` or `disable` from a path, or 422.
pub fn on_off(action: &str) -> Result<bool, ApiError> {
    match action {
        "enable" => Ok(true),
        "disable" => Ok(false),
        other => Err(ApiError::Invalid { field: "action", message: format!("{other:?} is not enable or disable") }),
    }
}

/// A named document (a rule, a playbook) from a request body for the path's
/// `name`: 422 if it does not parse (saying it expected `shape`) or names
/// another.
pub fn named_document<T: serde::de::DeserializeOwned>(
    name: &str,
    body: &[u8],
    shape: &str,
    name_of: impl Fn(&T) -> &str,
) -> Result<T, ApiError> {
    let doc: T = serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid { field: "body", message: format!("expected {shape}: {e}") })?;
    if name_of(&doc) != name {
        return Err(ApiError::Invalid {
            field: "name",
            message: format!("the body names {:?} but the path {name:?}", name_of(&doc)),
        });
    }
    Ok(doc)
}

/// An edge agent's name, or 422 listing them.
pub fn known_agent(agent: &str) -> Result<(), ApiError> {
    if opmas_proto::agents::params_of(agent).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = opmas_proto::agents::AGENTS.iter().map(|a| a.name).collect();
    Err(ApiError::Invalid { field: "agent", message: format!("unknown agent {agent:?}; known: {}", known.join(", ")) })
}

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
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// Sends commands down to devices.
    pub commander: crate::command::Commander,
    /// mosquitto's password and ACL files, rewritten when a router is
    /// removed or rekeyed (external broker only).
    pub mosquitto: Option<crate::broker::mosquitto::Mosquitto>,
    /// Where archived findings are, and how many days stay hot.
    pub archive: ArchiveSettings,
    /// Whether this replica leads.
    pub leader: crate::leader::Leadership,
}

/// The archive directory and the hot window (`[retention]`).
#[derive(Clone, Debug, Default)]
pub struct ArchiveSettings {
    pub dir: std::path::PathBuf,
    pub hot_days: u32,
}

/// Who may read `GET /metrics` besides holders of an API token.
#[derive(Clone, Debug, Default)]
pub struct MetricsAccess {
    /// Requests from the hub's own machine.
    pub loopback: bool,
    /// Holders of this scrape token.
    pub token: Option<String>,
}

/// The OpenAPI document's fixed parts; the paths and schemas come from the
/// handlers (`#[utoipa::path]`), registered with their routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "OPMAS hub API", description = "The fleet, its findings, sessions. Times are unix milliseconds \
        (`*_ms`) and RFC 3339; errors are `{\"error\": ...}` with the status."),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
struct ApiDoc;

/// Bearer tokens and session cookies.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                session::COOKIE,
                "From POST /session; requests that change something also need X-CSRF-Token",
            ))),
        );
    }
}

/// The OpenAPI document of `/api/v1`, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().2
}

/// The API's routes (public and protected, the latter still to be put
/// behind authentication) and their document.
fn api_routes() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    let (protected, mut doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(devices::router())
        .merge(commands::router())
        .merge(actions::router())
        .merge(playbooks::router())
        .merge(agent_config::router())
        .merge(findings::router())
        .merge(archive::router())
        .merge(rules::router())
        .merge(incidents::router())
        .merge(alerts::router())
        .merge(health::stats_router())
        .merge(session::router())
        .split_for_parts();
    let (public, public_doc) = utoipa_axum::router::OpenApiRouter::new()
        .merge(health::router())
        .merge(session::public_router())
        .routes(utoipa_axum::routes!(openapi_json))
        .split_for_parts();
    doc.merge(public_doc);
    // The document names the routes as mounted.
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths.into_iter().map(|(p, item)| (format!("/api/v1{p}"), item)).collect();
    (public, protected, doc)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "hub", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of /api/v1", content_type = "application/json")))]
async fn openapi_json() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOC.get_or_init(|| openapi().to_json().unwrap_or_default());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    let (public, protected, _doc) = api_routes();
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let api = Router::new().merge(public).merge(protected);
    let app = Router::new()
        .nest("/api/v1", api)
        .merge(health::metrics_router())
        .merge(crate::web::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::map_response(security_headers));
    bounded(app, REQUEST_TIMEOUT).with_state(state)
}

/// `router` with the request limits: [`MAX_BODY`], and `timeout` until the
/// answer starts.
fn bounded<S: Clone + Send + Sync + 'static>(router: Router<S>, timeout: std::time::Duration) -> Router<S> {
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
}

/// The largest request body any route reads (413 past it): the biggest
/// document anyone sends is a rule or playbook of at most 64 KiB
/// (`web::editor::YAML_LEN`); sign-in takes 4 KiB only.
pub const MAX_BODY: usize = 1 << 20;

/// Longest a request may take until its answer starts (408 past it), so
/// that a request stuck behind the database cannot hold a connection for
/// ever. A live view's event stream is not cut: its answer has started.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Headers every answer carries, the API's JSON and errors as much as the
/// pages: no type sniffing, no framing (the CSP's `frame-ancestors` for
/// browsers that read it, `X-Frame-Options` for those that do not), no
/// referrer beyond this hub. A page's own policy (`web::html_page`: scripts
/// from this hub only) is kept; anything else gets one that allows nothing.
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    resp
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
        let store_for_commands = store.clone();
        let state = AppState {
            keys: Keys::new(store.clone()),
            store,
            stats: Arc::default(),
            hub_url: "mqtt://hub:1883".into(),
            throttle: Arc::default(),
            secure_cookies: false,
            bus: Default::default(),
            metrics: MetricsAccess { loopback: true, token: Some("scrape-token".into()) },
            commander: crate::command::test_commander(&store_for_commands),
            mosquitto: None,
            archive: Default::default(),
            leader: crate::leader::Leadership::always(),
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
        for family in [
            "opmas_envelopes_refused_total{reason=\"bad_tag\"} 0",
            "opmas_mqtt_refused_total{reason=\"auth\"} 0",
            "opmas_ingest_transaction_seconds_bucket{le=\"+Inf\"} 0",
            "opmas_edge_spool_dropped 0",
        ] {
            assert!(text.contains(family), "{family} in {text}");
        }
        // The scrape token opens /metrics, and nothing else.
        let req = Request::builder().uri("/metrics").header("authorization", "Bearer scrape-token").body(Body::empty());
        assert_eq!(app.clone().oneshot(req.unwrap()).await.unwrap().status(), StatusCode::OK);
        let (status, _) = call(&app, "GET", "/api/v1/devices", "scrape-token", "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn every_answer_forbids_framing_and_sniffing_and_pages_keep_their_script_policy() {
        let (app, _dir) = app().await;
        let get = |uri: &str, token: &str| {
            Request::builder().uri(uri).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap()
        };
        for (uri, token, status) in [
            ("/api/v1/devices", "admin-token", StatusCode::OK),
            ("/api/v1/devices", "wrong", StatusCode::UNAUTHORIZED),
            ("/no/such/route", "admin-token", StatusCode::NOT_FOUND),
            ("/signin", "", StatusCode::OK),
        ] {
            let resp = app.clone().oneshot(get(uri, token)).await.unwrap();
            assert_eq!(resp.status(), status, "{uri}");
            let h = resp.headers();
            assert_eq!(h["x-content-type-options"], "nosniff", "{uri}");
            assert_eq!(h["x-frame-options"], "DENY", "{uri}");
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
            if uri == "/signin" {
                assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            } else {
                assert!(csp.starts_with("default-src 'none'"), "{uri}: {csp}");
            }
        }
    }

    #[tokio::test]
    async fn a_request_too_big_or_too_slow_is_refused_and_holds_nothing() {
        use axum::routing::{get, post};
        let limited = bounded(
            Router::new()
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        "late"
                    }),
                )
                .route("/echo", post(|body: String| async move { body.len().to_string() })),
            std::time::Duration::from_millis(100),
        );
        let post = |n: usize| Request::post("/echo").body(Body::from("x".repeat(n))).unwrap();
        assert_eq!(limited.clone().oneshot(post(1000)).await.unwrap().status(), StatusCode::OK);
        assert_eq!(limited.clone().oneshot(post(MAX_BODY + 1)).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
        let t = std::time::Instant::now();
        let slow = limited.oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
        // The hub's own router takes the same limit.
        let (hub, _dir) = app().await;
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(MAX_BODY));
        let (status, _) = call(&hub, "PUT", "/api/v1/rules/big", "admin-token", &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// Every `$ref` in `v` that does not point at a schema of `doc`.
    fn dangling(v: &serde_json::Value, doc: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                    if doc["components"]["schemas"].get(name).is_none() {
                        out.push(r.to_owned());
                    }
                }
                m.values().for_each(|x| dangling(x, doc, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| dangling(x, doc, out)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn the_openapi_document_is_valid_and_every_route_in_it_is_served() {
        let (app, _dir) = app().await;
        let req = Request::builder().uri("/api/v1/openapi.json").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "served without a token");
        let text = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap().to_vec()).unwrap();
        let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
        assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut refs = Vec::new();
        dangling(&doc, &doc, &mut refs);
        assert!(refs.is_empty(), "references to no schema: {refs:?}");

        // Each documented operation reaches its handler (not the fallback,
        // not "method not allowed"), with its path parameters filled in.
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}: no responses");
                let id = if path.starts_with("/api/v1/findings") || path.starts_with("/api/v1/commands") {
                    "1"
                } else {
                    "gw-1"
                };
                let uri = path
                    .replace("{id}", id)
                    .replace("{agent}", "wifi")
                    .replace("{action}", "restart")
                    .replace("{tag}", "lab");
                let body =
                    if method == "post" && path.ends_with("/session") { r#"{"name":"x","password":"y"}"# } else { "" };
                let (status, v) = call(&app, &method.to_uppercase(), &uri, "viewer-token", body).await;
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(v["error"] != "no such route", "{method} {path}: {v}");
            }
        }
        let expected = [
            ("/api/v1/health", "get"),
            ("/api/v1/openapi.json", "get"),
            ("/api/v1/stats", "get"),
            ("/api/v1/session", "post"),
            ("/api/v1/session", "get"),
            ("/api/v1/session", "delete"),
            ("/api/v1/devices", "get"),
            ("/api/v1/devices/{id}", "get"),
            ("/api/v1/devices/{id}", "delete"),
            ("/api/v1/devices/{id}/rekey", "post"),
            ("/api/v1/devices/{id}/heartbeats", "get"),
            ("/api/v1/devices/{id}/agents", "get"),
            ("/api/v1/devices/{id}/presence", "get"),
            ("/api/v1/findings", "get"),
            ("/api/v1/findings/{id}", "get"),
            ("/api/v1/archive", "get"),
            ("/api/v1/devices/{id}/agents/{agent}/{action}", "post"),
            ("/api/v1/devices/{id}/ping", "post"),
            ("/api/v1/commands", "get"),
            ("/api/v1/commands/{id}", "get"),
            ("/api/v1/actions", "get"),
            ("/api/v1/actions", "post"),
            ("/api/v1/actions/{id}", "get"),
            ("/api/v1/actions/{id}/{verb}", "post"),
            ("/api/v1/playbooks", "get"),
            ("/api/v1/playbooks/{name}", "get"),
            ("/api/v1/playbooks/{name}", "put"),
            ("/api/v1/playbooks/{name}", "delete"),
            ("/api/v1/playbooks/{name}/{action}", "post"),
            ("/api/v1/agents/{agent}/config", "get"),
            ("/api/v1/agents/{agent}/config", "put"),
            ("/api/v1/devices/{id}/agents/{agent}/config", "get"),
            ("/api/v1/devices/{id}/agents/{agent}/config", "put"),
            ("/api/v1/devices/{id}/config", "get"),
            ("/api/v1/config/sync", "get"),
            ("/api/v1/config/history", "get"),
            ("/api/v1/config/history/{id}/restore", "post"),
            ("/api/v1/tags/{tag}/agents/{agent}/config", "get"),
            ("/api/v1/tags/{tag}/agents/{agent}/config", "put"),
            ("/api/v1/devices/{id}/tags", "get"),
            ("/api/v1/devices/{id}/tags", "put"),
            ("/api/v1/agents/{agent}/{action}", "post"),
            ("/api/v1/rules", "get"),
            ("/api/v1/rules/{name}", "get"),
            ("/api/v1/rules/{name}", "put"),
            ("/api/v1/rules/{name}", "delete"),
            ("/api/v1/rules/{name}/{action}", "post"),
            ("/api/v1/incidents", "get"),
            ("/api/v1/incidents/{id}", "get"),
            ("/api/v1/incidents/{id}/{action}", "post"),
            ("/api/v1/incidents/{id}/comments", "post"),
            ("/api/v1/alerting", "get"),
            ("/api/v1/alerting", "put"),
            ("/api/v1/alerting/notifications", "get"),
            ("/api/v1/silences", "get"),
            ("/api/v1/silences", "post"),
            ("/api/v1/silences/{id}", "delete"),
            ("/api/v1/maintenance", "get"),
            ("/api/v1/maintenance", "post"),
            ("/api/v1/maintenance/{id}", "delete"),
        ];
        for (path, method) in expected {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in the document");
        }
        assert_eq!(operations, expected.len(), "a route the test does not know: add it above");
        // The findings filters are the ones the handler reads.
        let params: Vec<&str> = doc["paths"]["/api/v1/findings"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, findings::PARAMS);
        // A route outside the document is not served.
        let (status, v) = call(&app, "GET", "/api/v1/undocumented", "admin-token", "").await;
        assert_eq!((status, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("no such route")));
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
            ("POST", "/api/v1/devices/gw-1/ping", "viewer-token", "", StatusCode::FORBIDDEN),
            ("POST", "/api/v1/devices/gw-1/agents/wifi/stop", "viewer-token", "", StatusCode::FORBIDDEN),
            ("POST", "/api/v1/devices/gw-1/agents/wifi/pause", "admin-token", "", StatusCode::UNPROCESSABLE_ENTITY),
            ("POST", "/api/v1/devices/gw-9/ping", "admin-token", "", StatusCode::NOT_FOUND),
            ("GET", "/api/v1/commands?state=lost", "viewer-token", "", StatusCode::UNPROCESSABLE_ENTITY),
            ("GET", "/api/v1/commands/7", "viewer-token", "", StatusCode::NOT_FOUND),
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
