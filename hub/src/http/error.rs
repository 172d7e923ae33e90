//! The API's one error type: each variant knows its status code, and the body
//! is always `{"error": "..."}`. Internal details are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The token is valid but its role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (an id already taken).
    #[error("{0}")]
    Conflict(String),
    /// A request parameter is invalid; names the parameter.
    #[error("invalid parameter {field:?}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A body with fields the schema refuses: every one, by path.
    #[error("invalid configuration: {}", .0.iter().map(|f| format!("{}: {}", f.path, f.reason)).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<crate::store::config::FieldError>),
    /// Too many failed sign-ins; try again after this many seconds.
    #[error("too many failed sign-ins; try again in {0} s")]
    Throttled(u64),
    #[error("internal error")]
    Internal(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoDevice(_) => ApiError::NotFound(e.to_string()),
            StoreError::DeviceExists(_) | StoreError::UserExists(_) => ApiError::Conflict(e.to_string()),
            StoreError::NoUser(_) => ApiError::NotFound(e.to_string()),
            StoreError::Invalid(message) => ApiError::Invalid { field: "body", message },
            e => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::InvalidFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let ApiError::Invalid { field, .. } = &self {
            body["field"] = serde_json::Value::from(*field);
        }
        if let ApiError::InvalidFields(fields) = &self {
            body["fields"] = serde_json::to_value(fields).unwrap_or_default();
        }
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        if let ApiError::Throttled(secs) = self {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from(secs));
        }
        resp
    }
}
