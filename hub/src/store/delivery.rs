//! The `deliveries` table: each device's ack watermark per run epoch (see
//! `crate::watermark`), written in the same transaction as the findings it
//! covers.

use super::Conn;

use super::{Store, StoreError};
use crate::watermark::Watermark;

pub(super) const LOAD_SQL: &str = "SELECT upto, dropped FROM deliveries WHERE device_id = $1 AND epoch = $2";

/// The watermark of `device`/`epoch`, or zero if nothing was stored yet.
pub(super) async fn load(conn: &mut Conn, device: &str, epoch: u64) -> Result<Watermark, StoreError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as(LOAD_SQL).bind(device).bind(epoch as i64).fetch_optional(&mut *conn).await?;
    Ok(row.map_or(Watermark::default(), |(upto, dropped)| Watermark { upto: upto as u64, dropped: dropped as u64 }))
}

/// Saves the watermark of `device`/`epoch`.
pub(super) async fn save(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    w: Watermark,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deliveries (device_id, epoch, upto, dropped, updated_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (device_id, epoch) DO UPDATE SET upto = excluded.upto, dropped = excluded.dropped,
                                                      updated_ms = excluded.updated_ms",
    )
    .bind(device)
    .bind(epoch as i64)
    .bind(w.upto as i64)
    .bind(w.dropped as i64)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Counts `n` more findings of `device`/`epoch` that the database refused
/// (see `uplink::Apply::Isolated`).
pub(super) async fn add_unstorable(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    n: u64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deliveries (device_id, epoch, upto, dropped, unstorable, updated_ms) VALUES ($1, $2, 0, 0, $3, $4)
         ON CONFLICT (device_id, epoch) DO UPDATE SET unstorable = deliveries.unstorable + excluded.unstorable,
                                                      updated_ms = excluded.updated_ms",
    )
    .bind(device)
    .bind(epoch as i64)
    .bind(n as i64)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A device's delivery in one epoch (the API's view: `http::views::DeliveryView`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The run epoch, as a decimal string.
    pub epoch: String,
    /// Every finding sequence up to this is stored, was dropped by the edge,
    /// or was refused by the database.
    pub acked_upto: u64,
    /// Sequences the edge dropped from its full spool before the hub got them.
    pub dropped_by_edge: u64,
    /// Findings the database refused to store (logged with their reason).
    pub unstorable: u64,
    pub updated_ms: i64,
}

impl Store {
    /// The device's deliveries, newest epoch first.
    pub async fn deliveries(&self, device: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT epoch, upto, dropped, unstorable, updated_ms FROM deliveries WHERE device_id = $1
             ORDER BY updated_ms DESC",
        )
        .bind(device)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(epoch, upto, dropped, unstorable, updated_ms)| DeliveryRow {
                epoch: (epoch as u64).to_string(),
                acked_upto: upto as u64,
                dropped_by_edge: dropped as u64,
                unstorable: unstorable as u64,
                updated_ms,
            })
            .collect())
    }
}
