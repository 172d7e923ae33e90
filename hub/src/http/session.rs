//! Signing in and out from a browser. `POST /session` checks a user's name
//! and password and sets an HttpOnly, SameSite=Strict session cookie;
//! `GET /session` says who is signed in and gives the CSRF token that every
//! state-changing request made with the cookie must carry in
//! `X-CSRF-Token`; `DELETE /session` signs out. Failed sign-ins are
//! throttled per user and per address, and the answer never says which of
//! name or password was wrong.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ErrorBody, SessionView};
use super::{ApiError, AppState};
use crate::store::now_ms;
use crate::store::sessions::SessionInfo;
use crate::store::users::MAX_PASSWORD;

/// The session cookie's name.
pub const COOKIE: &str = "opmas_session";
/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Largest sign-in body accepted.
const MAX_BODY: usize = 4096;

/// `POST /session`, which needs no authentication.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_in))
}

/// `GET` and `DELETE /session`, behind authentication.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(whoami, sign_out))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SignIn {
    name: String,
    password: String,
}

/// The cookie token of a request authenticated by its session.
#[derive(Clone, Debug)]
pub struct SessionToken(pub String);

/// The value of the session cookie in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// Checks a sign-in (throttled per name and address; the same answer for a
/// wrong name as for a wrong password) and opens a session: its cookie
/// token, its CSRF token and the user.
pub async fn open(
    state: &AppState,
    name: &str,
    password: &str,
    from: Option<std::net::IpAddr>,
) -> Result<(String, String, crate::store::users::UserRow), ApiError> {
    let now = now_ms();
    state.throttle.check(name, from, now).map_err(ApiError::Throttled)?;
    let user = if name.len() <= 64 && password.len() <= MAX_PASSWORD {
        state.store.check_user(name, password).await?
    } else {
        None
    };
    let Some(user) = user else {
        state.throttle.failed(name, from, now);
        tracing::warn!(user = %name, from = ?from, "failed sign-in");
        return Err(ApiError::Unauthorized("wrong user name or password"));
    };
    state.throttle.succeeded(&user.name);
    let (token, csrf) = state.store.create_session(user.id, now, SESSION_TTL_MS).await?;
    tracing::info!(user = %user.name, from = ?from, "signed in");
    Ok((token, csrf, user))
}

/// The `Set-Cookie` value for the session cookie (`max_age_s` 0 removes it).
pub fn set_cookie(value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    // Hex tokens and fixed text: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("opmas_session=; Max-Age=0"))
}

/// Signs in with a user's name and password: sets the `opmas_session`
/// cookie (HttpOnly, SameSite=Strict) and returns the CSRF token.
#[utoipa::path(post, path = "/session", tag = "session", security(()), request_body = SignIn,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn sign_in(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let from = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::Invalid { field: "body", message: format!("at most {MAX_BODY} bytes") })?;
    let body: SignIn = serde_json::from_slice(&bytes).map_err(|e| ApiError::Invalid {
        field: "body",
        message: format!("expected {{\"name\": ..., \"password\": ...}}: {e}"),
    })?;
    let (token, csrf, user) = open(&state, &body.name, &body.password, from).await?;
    let now = now_ms();
    let body = SessionView {
        user: user.name,
        role: user.role.as_str().into(),
        csrf,
        expires: super::rfc3339(now + SESSION_TTL_MS),
    };
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut().insert(SET_COOKIE, set_cookie(&token, SESSION_TTL_MS / 1000, state.secure_cookies));
    Ok(resp)
}

/// Who this session belongs to, and its CSRF token.
#[utoipa::path(get, path = "/session", tag = "session",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn whoami(session: Option<Extension<SessionInfo>>) -> Result<Json<SessionView>, ApiError> {
    let Some(Extension(s)) = session else {
        return Err(ApiError::NotFound("this request is authenticated by a token, not a session".into()));
    };
    Ok(Json(SessionView {
        user: s.user,
        role: s.role.as_str().into(),
        csrf: s.csrf,
        expires: super::rfc3339(s.expires_ms),
    }))
}

/// Signs out: the session ends in the database and the cookie is dropped.
#[utoipa::path(delete, path = "/session", tag = "session",
    responses((status = 204, description = "Signed out"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn sign_out(State(state): State<AppState>, token: Option<Extension<SessionToken>>) -> Result<Response, ApiError> {
    let Some(Extension(SessionToken(token))) = token else {
        return Err(ApiError::NotFound("this request is authenticated by a token, not a session".into()));
    };
    state.store.end_session(&token).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(SET_COOKIE, set_cookie("", 0, state.secure_cookies));
    Ok(resp)
}
