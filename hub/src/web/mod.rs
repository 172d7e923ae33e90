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

mod admin;
mod assets;
pub mod chart;
mod device;
mod findings;
pub mod layout;
mod live;
mod overview;
mod signin;

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
        .route("/findings", get(findings::list))
        .route("/findings/{id}", get(findings::one))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/admin/users", get(admin::users).post(admin::add_user))
        .route("/admin/tokens", get(admin::tokens).post(admin::add_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/live/findings", get(live::findings))
        .route("/live/fleet", get(live::fleet))
        .route("/assets/{version}/{file}", get(assets::serve))
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
            ApiError::Invalid { .. } | ApiError::Conflict(_) => PageError::Invalid(e.to_string()),
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
