//! The web UI: server-rendered pages (maud templates, compiled with the
//! code) behind a signed-in browser session, with live regions fed by
//! server-sent events and charts drawn as SVG on the server.
//!
//! The frame later pages extend: [`layout::page`] (one layout and
//! navigation), [`layout::filters`] and [`layout::pager`] (a table's filters
//! and cursor pagination), [`layout::csrf_field`] with [`Signed::check_csrf`]
//! (one way to do a form), a `data-live` region (see `assets/app.js`) and
//! [`chart::stacked_bars`]. Every list reads the same store functions as its
//! `/api/v1` route.
//!
//! Security: pages need a session cookie (HttpOnly, SameSite=Strict); every
//! form that changes something carries the session's CSRF token; roles are
//! checked in each handler that changes something, and buttons a role may
//! not use are not drawn. Responses carry a strict Content-Security-Policy
//! (no inline script, nothing from elsewhere).

mod actions;
mod admin;
mod alerting;
mod assets;
pub mod chart;
mod commands;
mod config;
mod device;
mod editor;
mod findings;
mod incidents;
pub mod layout;
mod live;
mod overview;
mod playbooks;
mod rules;
mod signin;
mod silences;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use crate::http::{session, ApiError, AppState};
use crate::store::now_ms;
use crate::store::sessions::SessionInfo;
use crate::store::users::Role;

/// Every page and its assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/devices/{id}", get(device::page))
        .route("/devices/{id}/agents/{agent}/{action}", post(commands::agent_action))
        .route("/devices/{id}/tags", post(commands::set_tags))
        .route("/commands", get(commands::list))
        .route("/actions", get(actions::list))
        .route("/actions/{id}/{verb}", post(actions::decide))
        .route("/playbooks", get(playbooks::list))
        .route("/playbooks/new", get(playbooks::new_form).post(playbooks::create))
        .route("/playbooks/{name}", get(playbooks::edit).post(playbooks::save))
        .route("/playbooks/{name}/{action}", post(playbooks::action))
        .route("/config", get(config::index))
        .route("/config/{agent}", get(config::agent_page).post(config::agent_submit))
        .route("/config/history/{id}/restore", post(config::restore))
        .route("/findings", get(findings::list))
        .route("/findings/{id}", get(findings::one))
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::one))
        .route("/incidents/{id}/comments", post(incidents::comment))
        .route("/incidents/{id}/{action}", post(incidents::act))
        .route("/rules", get(rules::list))
        .route("/rules/new", get(rules::new_form).post(rules::create))
        .route("/rules/{name}", get(rules::edit).post(rules::save))
        .route("/rules/{name}/{action}", post(rules::action))
        .route("/alerting", get(alerting::page).post(alerting::save))
        .route("/silences", get(silences::page).post(silences::create))
        .route("/silences/{id}/expire", post(silences::expire))
        .route("/maintenance", get(silences::windows).post(silences::add_window))
        .route("/maintenance/{id}/delete", post(silences::delete_window))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/admin/users", get(admin::users).post(admin::add_user))
        .route("/admin/tokens", get(admin::tokens).post(admin::add_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/live/findings", get(live::findings))
        .route("/live/fleet", get(live::fleet))
        .route("/assets/{version}/{file}", get(assets::serve))
}

/// A form whose only field is its CSRF token (sign out, revoke, the
/// lifecycle buttons).
#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// Refuses a query parameter a page does not read, naming the ones it does.
pub fn known_params(params: &std::collections::HashMap<String, String>, known: &[&str]) -> Result<(), PageError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(PageError::Invalid(format!("unknown parameter {k:?}; known are {}", known.join(", ")))),
        None => Ok(()),
    }
}

/// A signed-in person, from the session cookie. Pages that take one send
/// anybody else to the sign-in page.
#[derive(Clone, Debug)]
pub struct Signed {
    pub session: SessionInfo,
    /// The session cookie's token (to sign out).
    pub token: String,
}

impl Signed {
    /// Whether the person's role allows `needed`.
    pub fn may(&self, needed: Role) -> bool {
        self.session.role.allows(needed)
    }

    /// Refuses (403) unless the role allows `needed`.
    pub fn require(&self, needed: Role, what: &str) -> Result<(), PageError> {
        if self.may(needed) {
            Ok(())
        } else {
            Err(PageError::Forbidden(format!(
                "{} is signed in as {}; {what} needs the role {}",
                self.session.user,
                self.session.role.as_str(),
                needed.as_str()
            )))
        }
    }

    /// Refuses (403) a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PageError> {
        if crate::keys::constant_time_eq(sent.as_bytes(), self.session.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(PageError::Forbidden(
                "this form is missing its CSRF token or it is not this session's; reload the page and try again".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let uri = parts.extensions.get::<OriginalUri>().map(|u| u.0.clone()).unwrap_or_else(|| parts.uri.clone());
        let to_signin = || {
            let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            Redirect::to(&format!("/signin?next={}", layout::url_encode(next))).into_response()
        };
        let Some(token) = session::cookie(&parts.headers).map(str::to_owned) else { return Err(to_signin()) };
        match state.store.session(&token, now_ms()).await {
            Ok(Some(session)) => Ok(Signed { session, token }),
            Ok(None) => Err(to_signin()),
            Err(e) => Err(PageError::from(ApiError::from(e)).into_response()),
        }
    }
}

/// Why a page could not be shown; rendered as a page with the status and a
/// message saying what was wrong (never the internals).
#[derive(Debug)]
pub enum PageError {
    /// The request's parameters: the message names the field.
    Invalid(String),
    NotFound(String),
    Forbidden(String),
    /// Too many failed sign-ins (seconds to wait).
    Throttled(u64),
    /// Logged; the page says only that it failed.
    Internal(String),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid { .. } | ApiError::InvalidFields(_) | ApiError::Conflict(_) => {
                PageError::Invalid(e.to_string())
            }
            ApiError::NotFound(m) => PageError::NotFound(m),
            ApiError::Forbidden(m) => PageError::Forbidden(m),
            ApiError::Unauthorized(m) => PageError::Forbidden(m.to_owned()),
            ApiError::Throttled(s) => PageError::Throttled(s),
            ApiError::Internal(e) => PageError::Internal(e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let retry = if let PageError::Throttled(s) = self { Some(s) } else { None };
        let (status, title, message) = match self {
            PageError::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "That request cannot be answered", m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            PageError::Throttled(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins",
                format!("Wait {s} seconds before trying again."),
            ),
            PageError::Internal(e) => {
                tracing::error!(error = %e, "page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The hub's log says what.".to_owned())
            }
        };
        let body = layout::bare(
            title,
            html! {
                main.narrow {
                    h1 { (title) }
                    p.error role="alert" { (message) }
                    p { a href="/" { "Back to the overview" } }
                }
            },
        );
        let mut resp = (status, html_page(body)).into_response();
        if let Some(s) = retry {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// A rendered page with the UI's security headers.
pub fn html_page(markup: Markup) -> Response {
    let mut resp = axum::response::Html(markup.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A page for the signed-in person, as [`html_page`].
pub fn signed_page(who: &Signed, title: &str, active: layout::Nav, body: Markup) -> Response {
    html_page(layout::page(who, title, active, body))
}

#[cfg(test)]
mod tests {
    //! The pages through the router, as a browser sends requests: forms,
    //! cookies, bad input.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::http::{router, AppState};
    use crate::keys::Keys;
    use crate::store::users::Role;

    struct App {
        app: axum::Router,
        store: crate::store::Store,
        _dir: tempfile::TempDir,
    }

    struct Reply {
        status: StatusCode,
        location: Option<String>,
        cookies: Vec<String>,
        body: String,
    }

    impl App {
        async fn new() -> App {
            let (store, dir) = crate::store::test_store().await;
            store.insert_user("root", Role::Admin, "admin password 1", 1).await.unwrap();
            store.insert_user("vera", Role::Viewer, "viewer password 1", 1).await.unwrap();
            store.insert_device("gw-1", "gw-1", &"ab".repeat(32), 1).await.unwrap();
            let commander = crate::command::test_commander(&store);
            let state = AppState {
                keys: Keys::new(store.clone()),
                store,
                stats: Arc::default(),
                hub_url: "mqtt://hub:1883".into(),
                throttle: Arc::default(),
                secure_cookies: false,
                bus: Default::default(),
                metrics: Default::default(),
                commander,
                mosquitto: None,
                archive: Default::default(),
                leader: crate::leader::Leadership::always(),
            };
            App { store: state.store.clone(), app: router(state), _dir: dir }
        }

        fn state_store(&self) -> &crate::store::Store {
            &self.store
        }

        async fn send(&self, method: &str, uri: &str, cookie: &str, form: Option<&str>) -> Reply {
            let mut req = Request::builder().method(method).uri(uri);
            if !cookie.is_empty() {
                req = req.header("cookie", cookie);
            }
            let body = match form {
                Some(f) => {
                    req = req.header("content-type", "application/x-www-form-urlencoded");
                    Body::from(f.to_owned())
                }
                None => Body::empty(),
            };
            let mut req = req.body(body).unwrap();
            req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
            let resp = self.app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
            let cookies = resp
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
                .collect();
            let body =
                String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap().to_vec()).unwrap();
            Reply { status, location, cookies, body }
        }

        /// Signs in through the form; returns the session cookie and its CSRF token.
        async fn sign_in(&self, name: &str, password: &str) -> (String, String) {
            let form = self.send("GET", "/signin", "", None).await;
            let pre = form.cookies[0].clone();
            let csrf = hidden(&form.body, "csrf");
            let body = format!("name={name}&password={}&csrf={csrf}&next=%2Ffindings", password.replace(' ', "+"));
            let r = self.send("POST", "/signin", &pre, Some(&body)).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
            assert_eq!(r.location.as_deref(), Some("/findings"));
            let session = r.cookies.into_iter().find(|c| c.starts_with("opmas_session=")).unwrap();
            let page = self.send("GET", "/", &session, None).await;
            (session, hidden(&page.body, "csrf"))
        }
    }

    fn hidden(html: &str, name: &str) -> String {
        let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
        let rest = &html[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    #[tokio::test]
    async fn pages_need_a_session_and_forms_their_csrf_token() {
        let app = App::new().await;
        let r = app.send("GET", "/findings?kind=ssh.bruteforce", "", None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location.as_deref(), Some("/signin?next=%2Ffindings%3Fkind%3Dssh.bruteforce"));

        // The sign-in form without its own cookie is refused (a cross-site post).
        let r = app.send("POST", "/signin", "", Some("name=root&password=admin+password+1&csrf=x")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.body.contains("CSRF check failed"), "{}", r.body);

        let (session, csrf) = app.sign_in("root", "admin password 1").await;
        let page = app.send("GET", "/", &session, None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("gw-1"));
        // A form without the token, or with another session's, changes nothing.
        let r = app.send("POST", "/admin/users", &session, Some("name=mallory&role=admin")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app.send("POST", "/admin/users", &session, Some("name=mallory&role=admin&csrf=00")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let users = app.send("GET", "/admin/users", &session, None).await;
        assert!(!users.body.contains("mallory"));
        // With it, the user is added and their password shown once.
        let r =
            app.send("POST", "/admin/users", &session, Some(&format!("name=newbie&role=operator&csrf={csrf}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("id=\"new-password\""), "{}", r.body);
        // A token is made, shown once, and revoked.
        let r = app.send("POST", "/admin/tokens", &session, Some(&format!("name=grafana&user=vera&csrf={csrf}"))).await;
        assert!(r.body.contains("id=\"new-token\""), "{}", r.body);
        let r = app.send("POST", "/admin/tokens/1/revoke", &session, Some(&format!("csrf={csrf}"))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/admin/tokens")));
        // Signing out ends the session: its cookie opens nothing more.
        let r = app.send("POST", "/signout", &session, Some(&format!("csrf={csrf}"))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(app.send("GET", "/", &session, None).await.status, StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn a_viewer_reads_and_is_refused_every_write() {
        let app = App::new().await;
        let (session, csrf) = app.sign_in("vera", "viewer password 1").await;
        let page = app.send("GET", "/", &session, None).await;
        assert!(!page.body.contains("href=\"/admin/users\""), "no admin links for a viewer");
        for (uri, form) in [
            ("/admin/users", format!("name=eve&role=admin&csrf={csrf}")),
            ("/admin/tokens", format!("name=mine&csrf={csrf}")),
            ("/admin/tokens/1/revoke", format!("csrf={csrf}")),
        ] {
            let r = app.send("POST", uri, &session, Some(&form)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
            assert!(r.body.contains("needs the role admin"), "{uri}: {}", r.body);
        }
        assert_eq!(app.send("GET", "/admin/users", &session, None).await.status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn bad_input_gets_a_message_never_a_500() {
        let app = App::new().await;
        let (session, csrf) = app.sign_in("root", "admin password 1").await;
        let long = "x".repeat(5000);
        for (uri, status, says) in [
            ("/findings?severity=urgent", 422, "is not a severity"),
            ("/findings?colour=red", 422, "unknown parameter"),
            ("/findings?cursor=zz", 422, "is not a cursor"),
            ("/findings?cursor=f1", 200, "past the last one"),
            ("/findings?since=yesterday", 422, "is not a time"),
            ("/findings/0", 422, "is not a finding id"),
            ("/findings/77", 404, "There is no finding 77"),
            ("/devices/nope", 404, "There is no device"),
            ("/devices/a%2Fb", 422, "device id"),
            ("/?sort=colour", 422, "is not one of"),
            ("/?page=0", 422, "is not a page number"),
            ("/?page=9", 200, "past the last one"),
            ("/?range=1y", 422, "is not 24h or 7d"),
            (&format!("/?q={long}"), 422, "longer than 200"),
            ("/live/findings?view=map", 422, "is not device"),
            ("/assets/0/nothing.css", 404, "no such asset"),
        ] {
            let r = app.send("GET", uri, &session, None).await;
            assert_eq!(r.status.as_u16(), status, "{uri}: {}", r.body);
            assert!(r.body.contains(says), "{uri}: {}", r.body);
        }
        // Over-long form fields.
        let r = app.send("POST", "/admin/users", &session, Some(&format!("name={long}&role=admin&csrf={csrf}"))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        let r = app.send("POST", "/admin/users", &session, Some(&format!("name=ok&role=god&csrf={csrf}"))).await;
        assert!(r.body.contains("unknown role"), "{}", r.body);
        let form = app.send("GET", "/signin", "", None).await;
        let body = format!("name={long}&password={long}&csrf={}", hidden(&form.body, "csrf"));
        let r = app.send("POST", "/signin", &form.cookies[0], Some(&body)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("wrong user name or password"));
    }

    #[tokio::test]
    async fn lifecycle_buttons_are_for_operators_and_send_a_command() {
        let app = App::new().await;
        app.state_store().insert_user("otto", Role::Operator, "operator password", 1).await.unwrap();
        // The device page lists agents from a heartbeat: give it one.
        let hb = opmas_proto::msg::Heartbeat {
            epoch: 1,
            uptime_s: 5,
            interval_s: 30,
            version: "0.1.0".into(),
            config_version: 0,
            config_error: None,
            spool: Default::default(),
            agents: vec![opmas_proto::msg::AgentStatus {
                name: "wifi".into(),
                state: opmas_proto::msg::AgentState::Running,
                events: 0,
                findings: 0,
                evicted: 0,
                restarts: 0,
                last_error: None,
                excluded: 0,
            }],
            counters: Default::default(),
            load_milli: None,
            rss_kib: None,
        };
        let msgs = [(opmas_proto::DeviceId::new("gw-1").unwrap(), crate::store::uplink::Uplink::Heartbeat(hb))];
        let marks = Default::default();
        app.state_store().apply_uplink(&msgs, &marks, crate::store::uplink::Apply::Together, Some(5)).await.unwrap();

        let (viewer, vcsrf) = app.sign_in("vera", "viewer password 1").await;
        let page = app.send("GET", "/devices/gw-1", &viewer, None).await;
        assert!(
            page.body.contains("data-agent=\"wifi\"") && !page.body.contains("/agents/wifi/stop"),
            "no buttons for a viewer"
        );
        let r = app.send("POST", "/devices/gw-1/agents/wifi/stop", &viewer, Some(&format!("csrf={vcsrf}"))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let (op, csrf) = app.sign_in("otto", "operator password").await;
        let page = app.send("GET", "/devices/gw-1", &op, None).await;
        assert!(page.body.contains("action=\"/devices/gw-1/agents/wifi/stop\""), "{}", page.body);
        let r = app.send("POST", "/devices/gw-1/agents/wifi/stop", &op, Some("csrf=wrong")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app.send("POST", "/devices/gw-1/agents/wifi/stop", &op, Some(&format!("csrf={csrf}"))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location.as_deref(), Some("/devices/gw-1?sent=config-1#agents"), "stop is desired state");
        let page = app.send("GET", "/devices/gw-1?sent=config-1", &op, None).await;
        assert!(page.body.contains("Configuration version 1 sent"), "{}", page.body);
        let effective = app.state_store().effective_config("gw-1").await.unwrap();
        assert!(!effective.agents["wifi"].enabled.value);
        let r = app.send("POST", "/devices/gw-1/agents/wifi/restart", &op, Some(&format!("csrf={csrf}"))).await;
        assert_eq!(r.location.as_deref(), Some("/devices/gw-1?sent=command-1#agents"), "restart is a command");
        let page = app.send("GET", "/devices/gw-1", &op, None).await;
        assert!(page.body.contains("restart wifi") && page.body.contains("otto"), "{}", page.body);
        let log = app.send("GET", "/commands?state=pending", &viewer, None).await;
        assert!(log.body.contains("data-command=\"1\""), "{}", log.body);
        for (uri, says) in [
            ("/commands?state=lost", "is not one of"),
            ("/commands?cursor=x", "cursor"),
            ("/devices/gw-1?sent=x", "command-N or config-N"),
        ] {
            let r = app.send("GET", uri, &viewer, None).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
            assert!(r.body.contains(says), "{uri}: {}", r.body);
        }
        let r = app.send("POST", "/devices/gw-1/agents/dns/stop", &op, Some(&format!("csrf={csrf}"))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

        // Tags from the device page: an operator sets them, a viewer may not,
        // a bad one is named.
        let r = app.send("POST", "/devices/gw-1/tags", &op, Some(&format!("csrf={csrf}&tags=site-a+lab"))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(app.state_store().tags("gw-1").await.unwrap(), ["site-a", "lab"]);
        let page = app.send("GET", "/devices/gw-1", &op, None).await;
        assert!(page.body.contains("value=\"site-a lab\""), "{}", page.body);
        let r = app.send("POST", "/devices/gw-1/tags", &op, Some(&format!("csrf={csrf}&tags=Bad%21"))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("tags[0]"), "{}", r.body);
        let r = app.send("POST", "/devices/gw-1/tags", &viewer, Some(&format!("csrf={vcsrf}&tags=x"))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(!app.send("GET", "/devices/gw-1", &viewer, None).await.body.contains("tag-form"));
    }

    /// Form fields as a browser encodes them.
    fn form(pairs: &[(&str, &str)]) -> String {
        pairs.iter().map(|(k, v)| format!("{k}={}", super::layout::url_encode(v))).collect::<Vec<_>>().join("&")
    }

    /// Two findings of gw-1 from one address and the incident the
    /// correlator would make of them (id 1).
    async fn an_incident(app: &App) {
        use crate::correlate::engine::{Action, Member};
        let found: Vec<opmas_proto::msg::Finding> = (1..=2)
            .map(|seq| opmas_proto::msg::Finding {
                seq,
                agent: "security".into(),
                kind: "ssh.bruteforce".into(),
                severity: opmas_proto::msg::Severity::HIGH,
                subject: opmas_proto::msg::Subject { src_ip: Some([198, 51, 100, 77].into()), ..Default::default() },
                count: 5,
                first_ms: 1000 + seq,
                last_ms: 2000,
                summary: format!("attack {seq}"),
                evidence: vec![],
                stage: opmas_proto::msg::Stage::New,
            })
            .collect();
        let batch = opmas_proto::msg::FindingBatch { epoch: 1, floor: 1, round: 0, findings: found };
        let msgs = [(opmas_proto::DeviceId::new("gw-1").unwrap(), crate::store::uplink::Uplink::Findings(batch))];
        let marks = Default::default();
        app.state_store().apply_uplink(&msgs, &marks, crate::store::uplink::Apply::Together, Some(5)).await.unwrap();
        let members = (1..=2).map(|f| Member { finding: f, device: "gw-1".into(), time_ms: 5 }).collect();
        let open = Action::Open {
            rule: "two-routers".into(),
            key: "src_ip=198.51.100.77".into(),
            severity: 4,
            time_ms: 5,
            members,
            quiet_ms: Some(600_000),
            why: "2 findings from 1 router".into(),
        };
        app.state_store().apply_correlation(&[open], None).await.unwrap();
    }

    #[tokio::test]
    async fn incidents_are_listed_and_moved_by_operators_only() {
        let app = App::new().await;
        app.state_store().insert_user("otto", Role::Operator, "operator password", 1).await.unwrap();
        an_incident(&app).await;

        let (viewer, vcsrf) = app.sign_in("vera", "viewer password 1").await;
        let list = app.send("GET", "/incidents?state=open&severity=high", &viewer, None).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(list.body.contains("data-id=\"1\"") && list.body.contains("src_ip=198.51.100.77"), "{}", list.body);
        let none = app.send("GET", "/incidents?state=resolved", &viewer, None).await;
        assert!(!none.body.contains("data-id=\"1\"") && none.body.contains("No incidents match"), "{}", none.body);
        let page = app.send("GET", "/incidents/1", &viewer, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("id=\"seen-by\"") && page.body.contains("data-finding=\"2\""), "{}", page.body);
        assert!(!page.body.contains("state-form") && !page.body.contains("comment-form"), "no forms for a viewer");
        for uri in ["/incidents/1/acknowledge", "/incidents/1/comments"] {
            let r = app.send("POST", uri, &viewer, Some(&form(&[("csrf", &vcsrf), ("text", "x")]))).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        }

        let (op, csrf) = app.sign_in("otto", "operator password").await;
        let page = app.send("GET", "/incidents/1", &op, None).await;
        assert!(page.body.contains("formaction=\"/incidents/1/acknowledge\""), "{}", page.body);
        assert!(!page.body.contains("/incidents/1/reopen"), "an open incident is not reopened");
        let r = app.send("POST", "/incidents/1/acknowledge", &op, Some(&form(&[("comment", "mine")]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
        let r = app
            .send("POST", "/incidents/1/acknowledge", &op, Some(&form(&[("csrf", &csrf), ("comment", "on it")])))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location.as_deref(), Some("/incidents/1?done=acknowledge#timeline"));
        let page = app.send("GET", "/incidents/1?done=acknowledge", &op, None).await;
        assert!(page.body.contains("inc-acknowledged") && page.body.contains("on it"), "{}", page.body);
        let (f, opened, acked) = (
            page.body.find("data-finding=\"1\"").unwrap(),
            page.body.find("data-event=\"opened\"").unwrap(),
            page.body.find("data-event=\"acknowledged\"").unwrap(),
        );
        assert!(f < opened && opened < acked, "the timeline is by time");
        // A move the store refuses is named, the comment kept.
        let r = app
            .send("POST", "/incidents/1/reopen", &op, Some(&form(&[("csrf", &csrf), ("comment", "kept text")])))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.contains("cannot become open") && r.body.contains(">kept text</textarea>"), "{}", r.body);
        let r = app.send("POST", "/incidents/1/comments", &op, Some(&form(&[("csrf", &csrf), ("text", "  ")]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("needs some text"), "{}", r.body);
        let r = app
            .send("POST", "/incidents/1/comments", &op, Some(&form(&[("csrf", &csrf), ("text", "blocked <it>")])))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let page = app.send("GET", "/incidents/1", &op, None).await;
        assert!(page.body.contains("blocked &lt;it&gt;"), "{}", page.body);
        let r = app.send("POST", "/incidents/1/resolve", &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let page = app.send("GET", "/incidents/1", &op, None).await;
        assert!(page.body.contains("formaction=\"/incidents/1/reopen\""), "{}", page.body);

        for (uri, status, says) in [
            ("/incidents?state=lost", 422, "is not one of"),
            ("/incidents?colour=red", 422, "unknown parameter"),
            ("/incidents?cursor=zz", 422, "cursor"),
            ("/incidents/x", 422, "is not an incident id"),
            ("/incidents/9", 404, "There is no incident 9"),
            ("/incidents/1?done=burn", 422, "is not acknowledge"),
        ] {
            let r = app.send("GET", uri, &op, None).await;
            assert_eq!(r.status.as_u16(), status, "{uri}: {}", r.body);
            assert!(r.body.contains(says), "{uri}: {}", r.body);
        }
        let r = app.send("POST", "/incidents/1/burn", &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[tokio::test]
    async fn a_router_reached_over_ssh_says_why_it_is_never_seen() {
        let app = App::new().await;
        let target = crate::store::ssh::SshTarget {
            device_id: "gw-old".into(),
            host: "192.0.2.1".into(),
            port: 22,
            user: "root".into(),
            host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnNazhcOSRf4gCwLcdxNx9TQSN8XhhlMsbaddAheYlh".into(),
            services: vec!["dnsmasq".into()],
            enrolled_ms: 1,
        };
        app.state_store().insert_ssh_device(&target, &"00".repeat(32)).await.unwrap();
        let (viewer, _) = app.sign_in("vera", "viewer password 1").await;
        let page = app.send("GET", "/devices/gw-old", &viewer, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("id=\"ssh-device\"") && page.body.contains("reaches it over SSH"), "{}", page.body);
        assert_eq!(app.state_store().ssh_target("gw-old").await.unwrap(), Some(target));
    }

    #[tokio::test]
    async fn playbooks_are_edited_as_yaml_by_administrators_only() {
        let app = App::new().await;
        app.state_store().insert_user("otto", Role::Operator, "operator password", 1).await.unwrap();
        let (op, ocsrf) = app.sign_in("otto", "operator password").await;
        let page = app.send("GET", "/playbooks", &op, None).await;
        assert!(!page.body.contains("new-playbook"), "no New button for an operator: {}", page.body);
        assert_eq!(app.send("GET", "/playbooks/new", &op, None).await.status, StatusCode::FORBIDDEN);

        let (admin, csrf) = app.sign_in("root", "admin password 1").await;
        let new = app.send("GET", "/playbooks/new", &admin, None).await;
        assert!(new.body.contains("name: new-playbook") && new.body.contains("id=\"save\""), "{}", new.body);
        let yaml = "name: ban-hosts\nmode: approval\ntrigger:\n  finding: { kind: wifi.deauth_flood }\nsteps:\n  - action: ban_wifi_client\n    params: { mac: \"{{ mac }}\", ban_s: 600 }\n    targets: reportingg\n";
        let r = app.send("POST", "/playbooks/new", &admin, Some(&form(&[("csrf", &csrf), ("yaml", yaml)]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.contains("data-path=\"steps[0].targets") && r.body.contains("reportingg"), "{}", r.body);
        assert!(app.state_store().playbook("ban-hosts").await.unwrap().is_none(), "nothing stored");
        let good = yaml.replace("reportingg", "reporting");
        let r = app.send("POST", "/playbooks/new", &admin, Some(&form(&[("csrf", &csrf), ("yaml", &good)]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/playbooks?saved=ban-hosts")));
        let r = app.send("POST", "/playbooks/new", &admin, Some(&form(&[("csrf", &csrf), ("yaml", &good)]))).await;
        assert!(r.body.contains("exists already"), "{}", r.body);

        // An operator reads it and may not change it.
        let page = app.send("GET", "/playbooks/ban-hosts", &op, None).await;
        assert!(page.body.contains("readonly") && !page.body.contains("id=\"save\""), "{}", page.body);
        let auto = good.replace("mode: approval", "mode: auto");
        let r = app.send("POST", "/playbooks/ban-hosts", &op, Some(&form(&[("csrf", &ocsrf), ("yaml", &auto)]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r =
            app.send("POST", "/playbooks/ban-hosts", &admin, Some(&form(&[("csrf", "forged"), ("yaml", &auto)]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r =
            app.send("POST", "/playbooks/ban-hosts", &admin, Some(&form(&[("csrf", &csrf), ("yaml", &auto)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let row = app.state_store().playbook("ban-hosts").await.unwrap().unwrap();
        assert_eq!((row.spec.mode.as_str(), row.updated_by.as_str()), ("auto", "root"));
        let r = app.send("POST", "/playbooks/ban-hosts/disable", &admin, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(!app.state_store().playbook("ban-hosts").await.unwrap().unwrap().spec.enabled);
        let r = app.send("POST", "/playbooks/ban-hosts/delete", &admin, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.location.as_deref(), Some("/playbooks?deleted=ban-hosts"));
        assert_eq!(app.send("GET", "/playbooks/ban-hosts", &admin, None).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.send("GET", "/actions?playbook=Bad!", &admin, None).await.status.as_u16(), 422);
    }

    #[tokio::test]
    async fn rules_are_edited_as_yaml_with_every_problem_named() {
        let app = App::new().await;
        app.state_store().insert_user("otto", Role::Operator, "operator password", 1).await.unwrap();
        let yaml = "name: two-routers\ntype: threshold\nseverity: high\nwindow: 10m\nkey: src_ip\ncount: 2\ndevices: 2\nmatch:\n  - kind: ssh.bruteforce\n";
        let spec = crate::correlate::rule::parse_yaml(yaml).unwrap().remove(0);
        app.state_store().put_rule(&spec, "seed", 1).await.unwrap();

        let (viewer, vcsrf) = app.sign_in("vera", "viewer password 1").await;
        let list = app.send("GET", "/rules", &viewer, None).await;
        assert!(list.body.contains("data-rule=\"two-routers\""), "{}", list.body);
        assert!(!list.body.contains("/rules/two-routers/disable") && !list.body.contains("new-rule"), "{}", list.body);
        let page = app.send("GET", "/rules/two-routers", &viewer, None).await;
        assert!(page.body.contains("readonly") && !page.body.contains("id=\"save\""), "{}", page.body);
        assert!(!page.body.contains("/rules/two-routers/delete"), "{}", page.body);
        let r = app.send("POST", "/rules/two-routers", &viewer, Some(&form(&[("csrf", &vcsrf), ("yaml", yaml)]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app.send("POST", "/rules/two-routers/disable", &viewer, Some(&form(&[("csrf", &vcsrf)]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(app.send("GET", "/rules/new", &viewer, None).await.status, StatusCode::FORBIDDEN);

        let (op, csrf) = app.sign_in("otto", "operator password").await;
        let page = app.send("GET", "/rules/two-routers", &op, None).await;
        assert!(page.body.contains("name: two-routers") && page.body.contains("id=\"save\""), "{}", page.body);
        // A mistake: named by path, the text kept, nothing stored.
        let bad = yaml.replace("severity: high", "severity: urgent").replace("\n", "\r\n");
        let r = app.send("POST", "/rules/two-routers", &op, Some(&form(&[("csrf", &csrf), ("yaml", &bad)]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.contains("data-path=\"severity\"") && r.body.contains("severity: urgent"), "{}", r.body);
        assert_eq!(app.state_store().rule("two-routers").await.unwrap().unwrap().spec.severity, "high");
        let renamed = yaml.replace("name: two-routers", "name: other");
        let r = app.send("POST", "/rules/two-routers", &op, Some(&form(&[("csrf", &csrf), ("yaml", &renamed)]))).await;
        assert!(r.body.contains("data-path=\"name\""), "{}", r.body);
        let r = app.send("POST", "/rules/two-routers", &op, Some(&form(&[("csrf", &csrf), ("yaml", "type: [")]))).await;
        assert!(r.body.contains("data-path=\"yaml\""), "{}", r.body);
        // Fixed: saved, back to the list.
        let good = yaml.replace("severity: high", "severity: critical");
        let r = app.send("POST", "/rules/two-routers", &op, Some(&form(&[("csrf", &csrf), ("yaml", &good)]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/rules?saved=two-routers")));
        let row = app.state_store().rule("two-routers").await.unwrap().unwrap();
        assert_eq!((row.spec.severity.as_str(), row.updated_by.as_str()), ("critical", "otto"));
        assert!(app.send("GET", "/rules?saved=two-routers", &op, None).await.body.contains("id=\"saved\""));

        let r = app.send("POST", "/rules/two-routers/disable", &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(!app.state_store().rule("two-routers").await.unwrap().unwrap().spec.enabled);
        let list = app.send("GET", "/rules", &op, None).await;
        assert!(list.body.contains("/rules/two-routers/enable"), "{}", list.body);

        // New: a name taken is refused; a new one is saved.
        let r = app.send("POST", "/rules/new", &op, Some(&form(&[("csrf", &csrf), ("yaml", yaml)]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("exists already"), "{}", r.body);
        let other = yaml.replace("name: two-routers", "name: three-routers");
        let r = app.send("POST", "/rules/new", &op, Some(&form(&[("csrf", &csrf), ("yaml", &other)]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/rules?saved=three-routers")));
        let r = app.send("POST", "/rules/three-routers/delete", &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/rules?deleted=three-routers")));
        assert!(app.state_store().rule("three-routers").await.unwrap().is_none());

        for (uri, status) in [("/rules/Bad%20Name", 422), ("/rules/nothing", 404), ("/rules?saved=%3Cb%3E", 422)] {
            assert_eq!(app.send("GET", uri, &op, None).await.status.as_u16(), status, "{uri}");
        }
    }

    #[tokio::test]
    async fn alerting_is_read_by_everyone_and_changed_by_admins_with_every_problem_named() {
        let app = App::new().await;
        app.state_store().insert_user("otto", Role::Operator, "operator password", 1).await.unwrap();
        let doc = "receivers:\n  - name: hub-log\n    log: {}\n  - name: chat\n    slack: { url: 'https://hooks.example.net/T/B/slack-secret' }\nroute:\n  receivers: [hub-log]\n";
        let cfg = crate::alert::config::parse_yaml(doc).unwrap();
        app.state_store().put_alert_config(&cfg, "seed:config/alerting.yaml", 1).await.unwrap();
        // A notification to chat that failed its first attempt: chat is failing now.
        let group = crate::store::alerts::GroupRow {
            id: 1,
            route: "0".into(),
            receiver: "chat".into(),
            group_key: "rule=r".into(),
            interval_ms: 1,
            repeat_ms: 1,
            last_sent_ms: None,
            last_digest: None,
        };
        let payload = r#"{"status":"firing","subject":"[OPMAS FIRING] high r on k"}"#;
        let flush = crate::store::alerts::Flush { notify: Some(("chat".into(), payload.into())), ..Default::default() };
        let n = app.state_store().flush_group(&group, &flush, 5).await.unwrap().unwrap();
        let retry = crate::store::now_ms() + 60_000;
        app.state_store().outbox_attempt(n, Err(("connection refused", Some(retry))), 6).await.unwrap();

        for (name, password) in [("vera", "viewer password 1"), ("otto", "operator password")] {
            let (session, csrf) = app.sign_in(name, password).await;
            let page = app.send("GET", "/alerting", &session, None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            assert!(page.body.contains("data-receiver=\"chat\" data-failing=\"true\""), "{}", page.body);
            assert!(page.body.contains("connection refused") && page.body.contains("data-notification=\"1\""));
            assert!(page.body.contains("[OPMAS FIRING] high r on k"), "{}", page.body);
            assert!(page.body.contains("url: &lt;secret&gt;") && !page.body.contains("slack-secret"), "{}", page.body);
            assert!(page.body.contains("readonly") && !page.body.contains("id=\"save\""), "{name}: read-only");
            let r = app.send("POST", "/alerting", &session, Some(&form(&[("csrf", &csrf), ("yaml", doc)]))).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}");
            assert!(r.body.contains("needs the role admin"), "{}", r.body);
        }

        let (admin, csrf) = app.sign_in("root", "admin password 1").await;
        let page = app.send("GET", "/alerting", &admin, None).await;
        assert!(page.body.contains("id=\"save\"") && !page.body.contains("readonly"), "{}", page.body);
        assert!(page.body.contains("title=\"config/alerting.yaml\">shipped"), "{}", page.body);
        let shown = super::alerting::to_yaml(&cfg).unwrap();
        assert!(shown.contains("url: <secret>"), "{shown}");
        // Mistakes: each by its path, the text kept as typed, nothing stored.
        let bad = shown.replace("    - hub-log", "    - nobody").replace('\n', "\r\n");
        assert_ne!(bad.replace("\r\n", "\n"), shown, "the route's receiver changed:\n{shown}");
        let r = app.send("POST", "/alerting", &admin, Some(&form(&[("csrf", &csrf), ("yaml", &bad)]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(
            r.body.contains("data-path=\"route.receivers[0]\"") && r.body.contains("no receiver &quot;nobody&quot;")
        );
        assert!(r.body.contains("    - nobody\n") && r.body.contains("url: &lt;secret&gt;"), "{}", r.body);
        let r = app.send("POST", "/alerting", &admin, Some(&form(&[("csrf", &csrf), ("yaml", "route: [")]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body.contains("data-path=\"yaml\""), "{}", r.body);
        assert_eq!(app.state_store().alert_config().await.unwrap().unwrap().0, cfg, "nothing stored");
        // Fixed: saved with the secret kept, back to the page.
        let good = shown
            .replace("receivers:\n  - name: hub-log", "receivers:\n  - name: second\n    log: {}\n  - name: hub-log");
        let r = app.send("POST", "/alerting", &admin, Some(&form(&[("csrf", &csrf), ("yaml", &good)]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/alerting?saved=1")), "{}", r.body);
        let (stored, by, _) = app.state_store().alert_config().await.unwrap().unwrap();
        let names: Vec<&str> = stored.receivers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!((names, by.as_str()), (vec!["second", "hub-log", "chat"], "root"));
        assert_eq!(stored.receivers[2].slack.as_ref().unwrap().url, "https://hooks.example.net/T/B/slack-secret");
        let page = app.send("GET", "/alerting?saved=1", &admin, None).await;
        assert!(page.body.contains("id=\"saved\"") && page.body.contains("data-receiver=\"second\""), "{}", page.body);

        let r = app.send("GET", "/alerting?state=sent", &admin, None).await;
        assert!(!r.body.contains("data-notification=\"1\"") && r.body.contains("No notifications."), "{}", r.body);
        for (uri, says) in [("/alerting?state=lost", "is not one of"), ("/alerting?colour=red", "unknown parameter")] {
            let r = app.send("GET", uri, &admin, None).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
            assert!(r.body.contains(says), "{uri}: {}", r.body);
        }
    }

    #[tokio::test]
    async fn silences_and_windows_are_made_and_ended_by_operators_a_refused_form_kept() {
        let app = App::new().await;
        app.state_store().insert_user("otto", Role::Operator, "operator password", 1).await.unwrap();
        an_incident(&app).await;
        let (op, csrf) = app.sign_in("otto", "operator password").await;

        // An incident's "Silence this" fills the form in with its rule and key.
        let page = app.send("GET", "/incidents/1", &op, None).await;
        let link = "/silences?rule=two-routers&amp;key=src_ip%3D198.51.100.77#new-silence";
        assert!(page.body.contains(&format!("href=\"{link}\"")), "{}", page.body);
        let page = app.send("GET", "/silences?rule=two-routers&key=src_ip%3D198.51.100.77", &op, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("value=\"two-routers\"") && page.body.contains("value=\"src_ip=198.51.100.77\""));
        assert!(page.body.contains("No silences"), "{}", page.body);

        // Refused: the reason, and the form as typed.
        let post = |fields: &[(&str, &str)]| {
            let mut all = vec![("csrf", csrf.as_str())];
            all.extend_from_slice(fields);
            form(&all)
        };
        for (fields, says, kept) in [
            (vec![("duration", "2h"), ("comment", "kept comment")], "matches every incident", "value=\"kept comment\""),
            (
                vec![("rule", "r"), ("duration", "2x"), ("comment", "c")],
                "Duration: ",
                "value=\"2x\" placeholder=\"2h\" maxlength=\"500\" autocomplete=\"off\" aria-invalid=\"true\"",
            ),
            (
                vec![("rule", "r"), ("severity", "urgent"), ("duration", "2h"), ("comment", "c")],
                "&quot;urgent&quot; is not a severity",
                "value=\"r\"",
            ),
            (vec![("rule", "r"), ("duration", "2h"), ("comment", " ")], "say why", "value=\"r\""),
        ] {
            let r = app.send("POST", "/silences", &op, Some(&post(&fields))).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}: {}", r.body);
            assert!(r.body.contains("id=\"silence-error\"") && r.body.contains(says), "{fields:?}: {}", r.body);
            assert!(r.body.contains(kept), "{fields:?} kept: {}", r.body);
        }
        assert!(app.state_store().silences(None).await.unwrap().is_empty(), "nothing stored");

        let fields = [("rule", "bruteforce-then-login"), ("key", ""), ("duration", "2h"), ("comment", "re-cabling")];
        let r = app.send("POST", "/silences", &op, Some(&post(&fields))).await;
        assert_eq!(
            (r.status, r.location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/silences?created=1")),
            "{}",
            r.body
        );
        let s = app.state_store().silences(Some(crate::store::now_ms())).await.unwrap().remove(0);
        assert_eq!((s.matchers.rule.clone(), s.matchers.key.len()), (vec!["bruteforce-then-login".to_string()], 0));
        assert_eq!(
            (s.ends_ms - s.starts_ms, s.created_by.as_str(), s.comment.as_str()),
            (7_200_000, "otto", "re-cabling")
        );
        let page = app.send("GET", "/silences?created=1", &op, None).await;
        assert!(page.body.contains("id=\"done\"") && page.body.contains("data-silence=\"1\" data-state=\"active\""));
        assert!(page.body.contains("action=\"/silences/1/expire\""), "{}", page.body);
        let r = app.send("POST", "/silences/1/expire", &op, Some(&post(&[]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/silences?ended=1")));
        assert!(!app.send("GET", "/silences?ended=1", &op, None).await.body.contains("data-silence=\"1\""));
        assert_eq!(app.send("POST", "/silences/1/expire", &op, Some(&post(&[]))).await.status, StatusCode::NOT_FOUND);

        // A weekly window: refused as typed, then added, listed and deleted.
        let mut window =
            vec![("name", "backup"), ("days", "sun"), ("days", "sat"), ("start", "25:00"), ("duration", "2h")];
        window.push(("rule", "router-gone-quiet"));
        let r = app.send("POST", "/maintenance", &op, Some(&post(&window))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.contains("id=\"window-error\"") && r.body.contains("is not HH:MM"), "{}", r.body);
        assert!(r.body.contains("value=\"sat\" checked") && !r.body.contains("value=\"mon\" checked"), "{}", r.body);
        window[3] = ("start", "02:00");
        let r = app.send("POST", "/maintenance", &op, Some(&post(&window))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/silences?added=1#maintenance")));
        let w = app.state_store().maintenance().await.unwrap().remove(0);
        assert_eq!(
            (w.days.clone(), w.start_min, w.matchers.rule.clone()),
            (vec!["sun".to_string(), "sat".to_string()], 120, vec!["router-gone-quiet".to_string()])
        );
        let page = app.send("GET", "/silences?added=1", &op, None).await;
        assert!(page.body.contains("data-window=\"1\"") && page.body.contains("sat, sun, 02:00 UTC"), "{}", page.body);

        // A viewer: the lists, no forms, and every post refused.
        let fields = [("rule", "x"), ("duration", "1h"), ("comment", "second")];
        assert_eq!(app.send("POST", "/silences", &op, Some(&post(&fields))).await.status, StatusCode::SEE_OTHER);
        let (viewer, vcsrf) = app.sign_in("vera", "viewer password 1").await;
        let page = app.send("GET", "/silences", &viewer, None).await;
        assert!(page.body.contains("data-silence=\"2\"") && page.body.contains("data-window=\"1\""), "{}", page.body);
        for form_id in ["silence-form", "window-form", "/silences/2/expire", "/maintenance/1/delete"] {
            assert!(!page.body.contains(form_id), "{form_id} shown to a viewer");
        }
        let page = app.send("GET", "/incidents/1", &viewer, None).await;
        assert!(!page.body.contains("silence-this"), "{}", page.body);
        for uri in ["/silences", "/silences/2/expire", "/maintenance", "/maintenance/1/delete"] {
            let body = form(&[("csrf", &vcsrf), ("rule", "x"), ("duration", "1h"), ("comment", "mine")]);
            let r = app.send("POST", uri, &viewer, Some(&body)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
            assert!(r.body.contains("needs the role operator"), "{uri}: {}", r.body);
        }
        assert_eq!(app.state_store().silences(Some(crate::store::now_ms())).await.unwrap().len(), 1);

        let r = app.send("POST", "/maintenance/1/delete", &op, Some(&post(&[]))).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/silences?deleted=1#maintenance")));
        assert!(app.state_store().maintenance().await.unwrap().is_empty());
        assert_eq!(
            app.send("POST", "/maintenance/1/delete", &op, Some(&post(&[]))).await.status,
            StatusCode::NOT_FOUND
        );
        for (uri, says) in [
            ("/silences?colour=red", "unknown parameter"),
            ("/silences?ended=x", "is not a silence id"),
            ("/silences?deleted=0", "is not a maintenance window id"),
        ] {
            let r = app.send("GET", uri, &op, None).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
            assert!(r.body.contains(says), "{uri}: {}", r.body);
        }
        assert_eq!(app.send("POST", "/silences/x/expire", &op, Some(&post(&[]))).await.status.as_u16(), 422);
        let r = app.send("GET", "/maintenance", &op, None).await;
        assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/silences#maintenance")));
    }

    #[tokio::test]
    async fn an_operator_approves_a_playbook_decision_on_the_actions_page_and_a_viewer_cannot() {
        let app = App::new().await;
        let action = opmas_proto::msg::Action::BlockIp { net: "203.0.113.9".parse().unwrap(), timeout_s: 600 };
        let targets = serde_json::json!(["all"]);
        let devices = ["gw-1".to_owned()];
        let waiting = crate::store::actions::NewAction {
            state: "awaiting_approval",
            playbook: Some("block-bruteforce"),
            ..crate::store::actions::NewAction::sent(&action, &targets, &devices, "playbook:block-bruteforce")
        };
        let id = app.state_store().insert_action(&waiting).await.unwrap().id;
        let (viewer, vcsrf) = app.sign_in("vera", "viewer password 1").await;
        let page = app.send("GET", "/actions", &viewer, None).await;
        assert!(
            page.body.contains("block 203.0.113.9 for 600 s") && page.body.contains("awaiting approval"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("data-verb"), "no buttons for a viewer");
        let r = app.send("POST", &format!("/actions/{id}/approve"), &viewer, Some(&form(&[("csrf", &vcsrf)]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let (op, csrf) = app.sign_in("root", "admin password 1").await;
        let page = app.send("GET", "/actions?state=awaiting_approval", &op, None).await;
        assert!(page.body.contains("data-verb=\"approve\"") && page.body.contains("data-verb=\"reject\""));
        let r = app.send("POST", &format!("/actions/{id}/approve"), &op, Some(&form(&[("csrf", "forged")]))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "a forged CSRF token");
        let r = app.send("POST", &format!("/actions/{id}/approve"), &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let row = app.state_store().action(id).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.decided_by.as_deref(), row.commands.len()), ("sent", Some("root"), 1));
        let done = app.send("GET", r.location.as_deref().unwrap(), &op, None).await;
        assert!(done.body.contains(&format!("Approved action {id}: sent to 1 router(s).")), "{}", done.body);
        assert!(done.body.contains("data-verb=\"undo\""), "a sent block can be taken back");
        // gw-1 has not answered: what waits for it can be cancelled, once.
        assert!(done.body.contains("data-verb=\"cancel\""), "{}", done.body);
        let r = app.send("POST", &format!("/actions/{id}/cancel"), &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let row = app.state_store().action(id).await.unwrap().unwrap();
        assert_eq!(row.commands[0].state, "expired");
        assert_eq!(row.commands[0].message.as_deref(), Some("cancelled by root before the router answered"));
        let page = app.send("GET", r.location.as_deref().unwrap(), &op, None).await;
        assert!(page.body.contains(&format!("Cancelled what of action {id}")), "{}", page.body);
        assert!(!page.body.contains("data-verb=\"cancel\""), "nothing left to cancel");
        let r = app.send("POST", &format!("/actions/{id}/reject"), &op, Some(&form(&[("csrf", &csrf)]))).await;
        assert_eq!(r.status.as_u16(), 422, "no longer waiting: {}", r.body);
        assert_eq!(app.send("GET", "/actions?state=nope", &op, None).await.status.as_u16(), 422);
        assert_eq!(app.send("GET", "/playbooks", &viewer, None).await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_live_view_that_reconnects_catches_up_from_its_last_event() {
        use futures_util::StreamExt;
        let app = App::new().await;
        let (session, _) = app.sign_in("root", "admin password 1").await;
        // Three findings stored while the browser was away.
        let found: Vec<opmas_proto::msg::Finding> = (1..=3)
            .map(|seq| opmas_proto::msg::Finding {
                seq,
                agent: "security".into(),
                kind: "ssh.bruteforce".into(),
                severity: opmas_proto::msg::Severity::HIGH,
                subject: Default::default(),
                count: 5,
                first_ms: 1000 + seq,
                last_ms: 2000,
                summary: format!("attack {seq}"),
                evidence: vec![],
                stage: opmas_proto::msg::Stage::New,
            })
            .collect();
        let batch = opmas_proto::msg::FindingBatch { epoch: 1, floor: 1, round: 0, findings: found };
        let msgs = [(opmas_proto::DeviceId::new("gw-1").unwrap(), crate::store::uplink::Uplink::Findings(batch))];
        let marks = Default::default();
        app.state_store().apply_uplink(&msgs, &marks, crate::store::uplink::Apply::Together, Some(5)).await.unwrap();
        let mut req = Request::builder()
            .uri("/live/findings?device=gw-1")
            .header("cookie", &session)
            .header("last-event-id", "1")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
        let resp = app.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body().into_data_stream();
        let mut text = String::new();
        while text.matches("event: row").count() < 2 {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        assert!(!text.contains("attack 1"), "seen before the reconnect: {text}");
        let (two, three) = (text.find("attack 2").unwrap(), text.find("attack 3").unwrap());
        assert!(two < three, "oldest first, so each lands on top: {text}");
        assert!(text.contains("id: 3"), "{text}");
    }

    #[tokio::test]
    async fn assets_are_cached_under_their_hash_and_pages_are_not() {
        let app = App::new().await;
        let (session, _) = app.sign_in("root", "admin password 1").await;
        let page = app.send("GET", "/", &session, None).await;
        let css = super::assets::url("app.css");
        assert!(page.body.contains(&css));
        let mut req = Request::builder().uri(&css).body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
        let resp = app.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(resp.headers()["content-type"], "text/css; charset=utf-8");
        let req = Request::builder().uri("/").header("cookie", &session).body(Body::empty()).unwrap();
        let resp = app.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    }
}
