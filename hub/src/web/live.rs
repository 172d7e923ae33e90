//! The live views' server-sent events.
//!
//! `/live/findings?<filters>` sends each new finding matching the filters
//! (the findings page's parameters) as a `row` event whose id is the
//! finding's; a browser that reconnects sends the last id it saw
//! (`Last-Event-ID`) and gets every row after it from the database, so a
//! dropped connection loses nothing. `/live/fleet` sends the overview's
//! totals as a `region` event whenever ingest stored something (at most
//! every two seconds) and every 30 s (a device turns stale by silence).
//!
//! Each stream is a task that waits on the hub's event bus and reads the
//! rows behind the events from the store; a stream whose browser went away
//! ends at its next send. A session that ended (signed out, expired) ends
//! its streams within [`RECHECK`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::findings::{self as findings_page, Columns};
use super::{PageError, Signed};
use crate::events;
use crate::http::findings::parse_query;
use crate::http::AppState;
use crate::store::fleet::FleetTotals;
use crate::store::now_ms;

/// How often a stream checks that its session still lives.
const RECHECK: Duration = Duration::from_secs(10);
/// Rows read from the store at a time while catching up.
const CATCH_UP: u32 = 200;

/// The response of a stream fed through `rx`, with a comment every 15 s so
/// that proxies keep the connection.
fn sse(rx: mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// `GET /live/findings?<filters>&view=device&after=ID`.
pub async fn findings(
    State(state): State<AppState>,
    who: Signed,
    headers: HeaderMap,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let cols = match params.remove("view").as_deref() {
        None | Some("") => Columns::All,
        Some("device") => Columns::NoDevice,
        Some(v) => return Err(PageError::Invalid(format!("view {v:?} is not device"))),
    };
    let after = params.remove("after");
    params.retain(|_, v| !v.is_empty());
    params.remove("cursor");
    params.insert("limit".into(), CATCH_UP.to_string());
    let mut q = parse_query(&params)?;
    let last_seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned).or(after);
    let mut last = match last_seen {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| PageError::Invalid(format!("the last event id {v:?} is not a finding id")))?,
        None => state.store.last_finding_id().await?,
    };
    // Subscribed before the first catch-up, so nothing falls in between.
    let mut bus = state.bus.subscribe();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut checked = tokio::time::Instant::now();
        loop {
            // Every row after the last one sent, oldest first.
            loop {
                q.after_id = Some(last);
                let rows = match state.store.query_findings(&q).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "live findings query failed");
                        return;
                    }
                };
                let now = now_ms();
                for f in &rows {
                    last = f.id;
                    let html = findings_page::row(f, cols, now).into_string();
                    if tx.send(Ok(Event::default().event("row").id(f.id.to_string()).data(html))).await.is_err() {
                        return;
                    }
                }
                if (rows.len() as u32) < CATCH_UP {
                    break;
                }
            }
            // Until the bus says findings were stored (or it overflowed:
            // the catch-up above reads whatever was missed).
            loop {
                let got = tokio::time::timeout(RECHECK, bus.recv()).await;
                if checked.elapsed() >= RECHECK {
                    checked = tokio::time::Instant::now();
                    if !matches!(state.store.session(&who.token, now_ms()).await, Ok(Some(_))) || tx.is_closed() {
                        return;
                    }
                }
                match got {
                    Ok(Ok(e)) if matches!(*e, events::Event::Findings { .. }) => break,
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Err(RecvError::Closed)) => return,
                    _ => {}
                }
            }
        }
    });
    Ok(sse(rx))
}

/// `GET /live/fleet`.
pub async fn fleet(State(state): State<AppState>, who: Signed) -> Response {
    let mut bus = state.bus.subscribe();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut sent: Option<FleetTotals> = None;
        loop {
            let now = now_ms();
            if !matches!(state.store.session(&who.token, now).await, Ok(Some(_))) {
                return;
            }
            let totals = match state.store.fleet(now).await {
                Ok(rows) => FleetTotals::of(&rows, now),
                Err(e) => {
                    tracing::warn!(error = %e, "live fleet query failed");
                    return;
                }
            };
            if sent.as_ref() != Some(&totals) {
                let html = super::overview::totals(&totals).into_string();
                if tx.send(Ok(Event::default().event("region").data(html))).await.is_err() {
                    return;
                }
                sent = Some(totals);
            }
            // Something stored, or 30 s of quiet; then at most one update
            // per two seconds however busy ingest is.
            match tokio::time::timeout(Duration::from_secs(30), bus.recv()).await {
                Ok(Err(RecvError::Closed)) => return,
                _ => tokio::time::sleep(Duration::from_secs(2)).await,
            }
            if tx.is_closed() {
                return;
            }
            while bus.try_recv().is_ok() {}
        }
    });
    sse(rx)
}
