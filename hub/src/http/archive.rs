//! `GET /archive`: what of the findings is hot (in the database) and what
//! is archived (files in the archive directory), for the API and the UI.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState};
use crate::archive::{DayEntry, Manifest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(archive))
}

/// Where the findings are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArchiveView {
    /// Days of findings the database keeps (0: all).
    pub hot_days: u32,
    /// The oldest finding in the database (hub time, unix ms), if any.
    pub oldest_hot_ms: Option<i64>,
    pub archive_dir: String,
    /// The archived days, oldest first (`opmas-hub archive import FILE`
    /// brings one back).
    pub days: Vec<DayEntry>,
    /// Why the manifest could not be read, if it could not.
    pub error: Option<String>,
}

impl ArchiveView {
    /// The view as the hub's state has it.
    pub async fn of(state: &AppState) -> Result<ArchiveView, ApiError> {
        let (days, error) = match Manifest::load(&state.archive.dir) {
            Ok(m) => (m.days, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        Ok(ArchiveView {
            hot_days: state.archive.hot_days,
            oldest_hot_ms: state.store.oldest_finding_ms().await?,
            archive_dir: state.archive.dir.display().to_string(),
            days,
            error,
        })
    }
}

/// The hot window and the archived days.
#[utoipa::path(get, path = "/archive", tag = "findings", responses((status = 200, body = ArchiveView)))]
async fn archive(State(state): State<AppState>) -> Result<Json<ArchiveView>, ApiError> {
    Ok(Json(ArchiveView::of(&state).await?))
}
