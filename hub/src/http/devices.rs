//! `GET /devices` and `GET /devices/{id}`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::store::DeviceRow;

pub fn router() -> Router<AppState> {
    Router::new().route("/devices", get(list)).route("/devices/{id}", get(one))
}

fn to_json(d: DeviceRow) -> Value {
    let heartbeat: Value = d.heartbeat.as_deref().and_then(|h| serde_json::from_str(h).ok()).unwrap_or(Value::Null);
    let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
    v["heartbeat"] = heartbeat;
    v
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let devices: Vec<Value> = state.store.list_devices().await?.into_iter().map(to_json).collect();
    Ok(Json(json!({ "devices": devices })))
}

/// One device, with its delivery account per run epoch (newest first): the
/// watermark acked to the edge and what the edge dropped before sending.
async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let device = state.store.get_device(&id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id:?}")))?;
    let deliveries = state.store.deliveries(&id).await?;
    let mut v = to_json(device);
    v["deliveries"] = serde_json::to_value(deliveries).unwrap_or(Value::Null);
    Ok(Json(v))
}
