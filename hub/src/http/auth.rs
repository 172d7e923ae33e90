//! Bearer-token authentication for the API.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};

/// Lets the request through only with `Authorization: Bearer <token>` naming
/// a token in the database; the verified identity goes into the extensions.
pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header =
        req.headers().get(AUTHORIZATION).ok_or(ApiError::Unauthorized("missing Authorization: Bearer header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized("Authorization header must be \"Bearer <token>\""))?;
    let info = state.store.verify_token(token).await?.ok_or(ApiError::Unauthorized("unknown token"))?;
    req.extensions_mut().insert(info);
    Ok(next.run(req).await)
}
