//! Authentication for the API: bearer tokens, or session cookies with
//! their CSRF token.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::{session, ApiError, AppState};
use crate::keys::constant_time_eq;
use crate::store::now_ms;
use crate::store::tokens::TokenInfo;

/// Lets the request through only with `Authorization: Bearer <token>`
/// naming a token in the database, or with the cookie of a live session;
/// the verified identity goes into the extensions. A request that changes
/// something (not GET or HEAD) with a session cookie must carry the
/// session's CSRF token in `X-CSRF-Token`: a cookie comes with any request
/// the browser sends, a header only with the hub's own pages.
pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(info) = bearer(&state, req.headers()).await? {
        req.extensions_mut().insert(info);
        return Ok(next.run(req).await);
    }
    let Some(cookie) = session::cookie(req.headers()).map(str::to_owned) else {
        return Err(ApiError::Unauthorized("missing Authorization: Bearer header or session cookie"));
    };
    let s = state
        .store
        .session(&cookie, now_ms())
        .await?
        .ok_or(ApiError::Unauthorized("the session has ended; sign in again"))?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let sent = req.headers().get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(sent, s.csrf.as_bytes()) {
            return Err(ApiError::Forbidden("missing or wrong CSRF token (X-CSRF-Token)".into()));
        }
    }
    req.extensions_mut().insert(TokenInfo {
        id: 0,
        name: format!("session of {}", s.user),
        role: s.role,
        user: Some(s.user.clone()),
    });
    req.extensions_mut().insert(session::SessionToken(cookie));
    req.extensions_mut().insert(s);
    Ok(next.run(req).await)
}

/// The token of `Authorization: Bearer <token>`, verified; `None` without
/// that header.
pub async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<Option<TokenInfo>, ApiError> {
    let Some(header) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized("Authorization header must be \"Bearer <token>\""))?;
    state.store.verify_token(token).await?.ok_or(ApiError::Unauthorized("unknown token")).map(Some)
}

/// Refuses (403, naming the token, its role and the role needed) unless
/// `token`'s role allows `needed`; `what` says what was asked ("send
/// commands").
pub fn require(token: &TokenInfo, needed: crate::store::users::Role, what: &str) -> Result<(), ApiError> {
    if token.role.allows(needed) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{:?} (role {}) may not {what}; that needs the role {}",
            token.name,
            token.role.as_str(),
            needed.as_str()
        )))
    }
}

/// Who a change is recorded as made by: the token's user, else its label.
pub fn author(token: &TokenInfo) -> String {
    token.user.clone().unwrap_or_else(|| token.name.clone())
}
