//! The sign-in page and signing out.
//!
//! The sign-in form has no session yet, so its CSRF protection is a double
//! submit: a random value in a SameSite=Strict cookie of its own and in the
//! form, which must match. A page on another site can neither read the
//! cookie nor make the browser send it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::{html_page, layout, PageError, Signed};
use crate::http::{session, ApiError, AppState};

/// The sign-in form's own CSRF cookie.
const FORM_COOKIE: &str = "opmas_signin";

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// Where to go after signing in: a path on this hub, nothing else (no
/// `//host`, no scheme), else the overview.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && next.len() <= 2000;
    if ok && !next.starts_with("/signin") {
        next
    } else {
        "/"
    }
}

fn form_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(FORM_COOKIE)?.strip_prefix('='))
}

fn render(state: &AppState, next: &str, error: Option<&str>, name: &str, status: axum::http::StatusCode) -> Response {
    let csrf = crate::store::tokens::new_token();
    let body = layout::bare(
        "Sign in",
        html! {
            main.narrow #main {
                h1 { "Sign in to OPMAS" }
                @if let Some(e) = error { p.error role="alert" #signin-error { (e) } }
                form.stack.card method="post" action="/signin" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label { span { "User name" } input type="text" name="name" value=(name) autocomplete="username" required autofocus maxlength="64"; }
                    label { span { "Password" } input type="password" name="password" autocomplete="current-password" required maxlength="1024"; }
                    button type="submit" { "Sign in" }
                }
                p.muted { "The first administrator's password is in the hub's data directory, in admin.password." }
            }
        },
    );
    let mut resp = (status, html_page(body)).into_response();
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("{FORM_COOKIE}={csrf}; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=3600{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

/// `GET /signin?next=PATH`.
pub async fn form(State(state): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let next = safe_next(q.get("next").map(String::as_str).unwrap_or("/"));
    render(&state, next, None, "", axum::http::StatusCode::OK)
}

/// `POST /signin`: on success a session cookie and a redirect to `next`.
pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    let next = safe_next(&f.next).to_owned();
    let fresh = |message: &str, status| render(&state, &next, Some(message), &f.name, status);
    let cookie_ok = form_cookie(&headers)
        .is_some_and(|c| !c.is_empty() && crate::keys::constant_time_eq(c.as_bytes(), f.csrf.as_bytes()));
    if !cookie_ok {
        return fresh(
            "This form had expired or came from somewhere else (its CSRF check failed). Try again.",
            axum::http::StatusCode::FORBIDDEN,
        );
    }
    match session::open(&state, f.name.trim(), &f.password, Some(peer.ip())).await {
        Ok((token, _csrf, _user)) => {
            let mut resp = Redirect::to(&next).into_response();
            resp.headers_mut()
                .append(SET_COOKIE, session::set_cookie(&token, session::SESSION_TTL_MS / 1000, state.secure_cookies));
            resp
        }
        Err(ApiError::Unauthorized(m)) => fresh(m, axum::http::StatusCode::UNAUTHORIZED),
        Err(ApiError::Throttled(s)) => {
            let mut resp = fresh(
                &format!("Too many failed sign-ins. Wait {s} seconds before trying again."),
                axum::http::StatusCode::TOO_MANY_REQUESTS,
            );
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(s));
            resp
        }
        Err(e) => PageError::from(e).into_response(),
    }
}

/// `POST /signout`: ends the session in the database and drops the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    who: Signed,
    Form(f): Form<super::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    state.store.end_session(&who.token).await?;
    tracing::info!(user = %who.session.user, "signed out");
    let mut resp = Redirect::to("/signin").into_response();
    resp.headers_mut().insert(SET_COOKIE, session::set_cookie("", 0, state.secure_cookies));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_on_this_hub_are_followed() {
        assert_eq!(safe_next("/findings?kind=ssh.bruteforce"), "/findings?kind=ssh.bruteforce");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "", "/signin?next=/"] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }
}
