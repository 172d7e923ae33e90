//! `/admin/users` and `/admin/tokens`, for admins: every user, adding one;
//! every API token, making one for any user (shown once; only its hash is
//! kept) and revoking one (refused from the next request on).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::AppState;
use crate::store::users::{self, Role};
use crate::store::{now_ms, StoreError};

/// Longest value any admin form field may have.
const MAX_FIELD: usize = 1024;

fn too_long(field: &str, v: &str) -> Result<(), PageError> {
    if v.len() > MAX_FIELD {
        Err(PageError::Invalid(format!("{field} is longer than {MAX_FIELD} bytes")))
    } else {
        Ok(())
    }
}

async fn users_page(
    state: &AppState,
    who: &Signed,
    notice: Option<Markup>,
    error: Option<String>,
) -> Result<Response, PageError> {
    who.require(Role::Admin, "managing users")?;
    let list = state.store.list_users().await?;
    let now = now_ms();
    let body = html! {
        h1 { "Users" }
        @if let Some(n) = notice { div.notice role="status" { (n) } }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        table #users {
            thead { tr { th { "Name" } th { "Role" } th { "Created" } th { "Password changed" } } }
            tbody {
                @for u in &list {
                    tr {
                        td data-label="Name" { (u.name) }
                        td data-label="Role" { (u.role.as_str()) }
                        td data-label="Created" { (layout::time(u.created_ms, now)) }
                        td data-label="Password changed" { (layout::time(u.password_changed_ms, now)) }
                    }
                }
            }
        }
        h2 { "Add a user" }
        form.stack.card method="post" action="/admin/users" {
            (layout::csrf_field(who))
            label { span { "Name" } input type="text" name="name" required maxlength="64" pattern="[a-z0-9][a-z0-9._-]*" autocomplete="off"; }
            label { span { "Role" }
                select name="role" {
                    @for r in [Role::Viewer, Role::Operator, Role::Admin] { option value=(r.as_str()) { (r.as_str()) } }
                }
            }
            label { span { "Password (empty: one is made and shown once)" } input type="password" name="password" maxlength="1024" autocomplete="new-password"; }
            button type="submit" { "Add user" }
        }
    };
    let status =
        if error.is_some() { axum::http::StatusCode::UNPROCESSABLE_ENTITY } else { axum::http::StatusCode::OK };
    Ok((status, signed_page(who, "Users", Nav::Users, body)).into_response())
}

/// `GET /admin/users`.
pub async fn users(State(state): State<AppState>, who: Signed) -> Result<Response, PageError> {
    users_page(&state, &who, None, None).await
}

#[derive(Deserialize)]
pub struct NewUser {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

/// `POST /admin/users`.
pub async fn add_user(
    State(state): State<AppState>,
    who: Signed,
    Form(f): Form<NewUser>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "adding a user")?;
    too_long("name", &f.name)?;
    too_long("password", &f.password)?;
    let role = match Role::parse(&f.role) {
        Ok(r) => r,
        Err(e) => return users_page(&state, &who, None, Some(e)).await,
    };
    if let Err(e) = users::check_name(&f.name) {
        return users_page(&state, &who, None, Some(e)).await;
    }
    let (password, made) =
        if f.password.is_empty() { (users::new_password(), true) } else { (f.password.clone(), false) };
    if let Err(e) = users::check_password(&password) {
        return users_page(&state, &who, None, Some(e)).await;
    }
    match state.store.insert_user(&f.name, role, &password, now_ms()).await {
        Ok(_) => {}
        Err(e @ StoreError::UserExists(_)) => return users_page(&state, &who, None, Some(e.to_string())).await,
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %f.name, role = role.as_str(), by = %who.session.user, "user added");
    let notice = html! {
        "Added " strong { (f.name) } " as " (role.as_str()) "."
        @if made { " Their password, shown this once: " code #new-password { (password) } }
    };
    users_page(&state, &who, Some(notice), None).await
}

async fn tokens_page(
    state: &AppState,
    who: &Signed,
    notice: Option<Markup>,
    error: Option<String>,
) -> Result<Response, PageError> {
    who.require(Role::Admin, "managing API tokens")?;
    let list = state.store.list_tokens().await?;
    let users = state.store.list_users().await?;
    let now = now_ms();
    let title = "API tokens";
    let body = html! {
        h1 { (title) }
        p.muted { "A token acts with its user's role: send it as " code { "Authorization: Bearer TOKEN" } " to " code { "/api/v1" } ". Only its hash is kept." }
        @if let Some(n) = notice { div.notice role="status" { (n) } }
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        table #tokens {
            thead { tr { th { "Id" } th { "Name" } th { "User" } th { "Role" } th { "Created" } th { "" } } }
            tbody {
                @for t in &list {
                    tr {
                        td.num data-label="Id" { (t.id) }
                        td data-label="Name" { (t.name) }
                        td data-label="User" { (t.user.as_deref().unwrap_or("— (first start)")) }
                        td data-label="Role" { (t.role.as_str()) }
                        td data-label="Created" { (layout::time(t.created_ms, now)) }
                        td data-label="" {
                            form method="post" action={ "/admin/tokens/" (t.id) "/revoke" } {
                                (layout::csrf_field(who))
                                button.danger type="submit" aria-label={ "Revoke token " (t.name) } { "Revoke" }
                            }
                        }
                    }
                }
                @if list.is_empty() { tr.empty { td colspan="6" { "No tokens." } } }
            }
        }
        h2 { "Make a token" }
        form.stack.card method="post" action="/admin/tokens" {
            (layout::csrf_field(who))
            label { span { "Label" } input type="text" name="name" required maxlength="64" placeholder="grafana, backup script…" autocomplete="off"; }
            label { span { "For user (the token has their role)" }
                select name="user" {
                    @for u in &users { option value=(u.name) selected[u.name == who.session.user] { (u.name) " (" (u.role.as_str()) ")" } }
                }
            }
            button type="submit" { "Make token" }
        }
    };
    let status =
        if error.is_some() { axum::http::StatusCode::UNPROCESSABLE_ENTITY } else { axum::http::StatusCode::OK };
    Ok((status, signed_page(who, title, Nav::Tokens, body)).into_response())
}

/// `GET /admin/tokens`.
pub async fn tokens(State(state): State<AppState>, who: Signed) -> Result<Response, PageError> {
    tokens_page(&state, &who, None, None).await
}

#[derive(Deserialize)]
pub struct NewToken {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// The user the token acts for (empty: the admin making it).
    #[serde(default)]
    user: String,
}

/// `POST /admin/tokens`.
pub async fn add_token(
    State(state): State<AppState>,
    who: Signed,
    Form(f): Form<NewToken>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "making an API token")?;
    too_long("name", &f.name)?;
    too_long("user", &f.user)?;
    let user = if f.user.is_empty() { who.session.user.clone() } else { f.user.clone() };
    let (token, id) = match state.store.create_user_token(&user, f.name.trim(), now_ms()).await {
        Ok(t) => t,
        Err(e @ (StoreError::Invalid(_) | StoreError::NoUser(_))) => {
            return tokens_page(&state, &who, None, Some(e.to_string())).await
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(token = id, user = %user, by = %who.session.user, "API token made");
    let notice = html! {
        "Token " (id) " for " strong { (user) } ", shown this once (copy it now): " code #new-token { (token) }
    };
    tokens_page(&state, &who, Some(notice), None).await
}

/// `POST /admin/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Form(f): Form<super::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "revoking an API token")?;
    let id: i64 = id.parse().map_err(|_| PageError::Invalid(format!("{id:?} is not a token id")))?;
    if !state.store.list_tokens().await?.iter().any(|t| t.id == id) {
        return Err(PageError::NotFound(format!("There is no token {id}.")));
    }
    state.store.revoke_token(id).await?;
    tracing::info!(token = id, by = %who.session.user, "API token revoked");
    Ok(Redirect::to("/admin/tokens").into_response())
}
