//! The `devices` table: enrolment, secrets, presence and the current epoch.

use super::Conn;
use serde::Serialize;

use super::{Store, StoreError};

/// A device as the API shows it (never with its secret).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    /// `never`, `online` or `offline`.
    pub status: String,
    pub status_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    /// The edge's current run epoch, as a decimal string (it is a `u64`).
    #[sqlx(skip)]
    pub epoch: Option<String>,
    #[serde(skip)]
    #[sqlx(rename = "epoch")]
    pub epoch_raw: Option<i64>,
    /// `mqtt` (an OPMAS agent runs there) or `ssh` (the hub reaches it
    /// over SSH; it sends nothing, so it is never seen online).
    pub transport: String,
}

/// What a status update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    Unchanged,
    Changed,
}

/// The presence sweep (the `devices_by_presence` index).
pub(super) const SWEEP_SQL: &str = "UPDATE devices SET status = 'offline', status_ms = $1
     WHERE status IN ('online', 'stale') AND last_seen_ms < $2 RETURNING id";

/// Online devices silent for three of their heartbeat intervals (30 s
/// until one says) become `stale`: still connected as far as the broker
/// knows, but not reporting.
pub(super) const STALE_SQL: &str = "UPDATE devices SET status = 'stale', status_ms = $1
     WHERE status = 'online' AND last_seen_ms < $1 - 3 * COALESCE(heartbeat_ms, 30000) RETURNING id";

const COLUMNS: &str = "id, name, created_ms, status, status_ms, last_seen_ms, epoch,
     CASE WHEN EXISTS (SELECT 1 FROM device_ssh s WHERE s.device_id = devices.id) THEN 'ssh' ELSE 'mqtt' END
       AS transport";

fn finish(mut row: DeviceRow) -> DeviceRow {
    row.epoch = row.epoch_raw.map(|e| (e as u64).to_string());
    row
}

/// Enrols a device on `conn` (inside a caller's transaction, if any).
pub(super) async fn insert(
    conn: &mut Conn,
    id: &str,
    name: &str,
    secret_hex: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let res = sqlx::query("INSERT INTO devices (id, name, secret, created_ms) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(name)
        .bind(secret_hex)
        .bind(now_ms)
        .execute(conn)
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::DeviceExists(id.to_owned())),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Enrols a device. Fails with [`StoreError::DeviceExists`] for a taken id.
    pub async fn insert_device(&self, id: &str, name: &str, secret_hex: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.writer().acquire().await?;
        insert(&mut conn, id, name, secret_hex, now_ms).await
    }

    /// Replaces a device's secret. Fails with [`StoreError::NoDevice`].
    pub async fn rekey_device(&self, id: &str, secret_hex: &str) -> Result<(), StoreError> {
        let res = sqlx::query("UPDATE devices SET secret = $1, broker_hash = NULL WHERE id = $2")
            .bind(secret_hex)
            .bind(id)
            .execute(self.writer())
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NoDevice(id.to_owned()));
        }
        Ok(())
    }

    /// Removes a device and its findings.
    pub async fn delete_device(&self, id: &str) -> Result<(), StoreError> {
        let res = sqlx::query("DELETE FROM devices WHERE id = $1").bind(id).execute(self.writer()).await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NoDevice(id.to_owned()));
        }
        // Its configuration layer goes too (its history stays, for the record).
        sqlx::query("DELETE FROM agent_config WHERE scope = $1")
            .bind(super::config::device_scope(id))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// How many devices have each presence status.
    pub async fn device_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT status, COUNT(*) FROM devices GROUP BY status ORDER BY status")
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn list_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let rows: Vec<DeviceRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices ORDER BY id")).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(finish).collect())
    }

    pub async fn get_device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        let row: Option<DeviceRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(finish))
    }

    /// Every router that logs in to the broker (not those reached over
    /// SSH), by id: its secret in hex and its broker password hash if made.
    pub async fn mqtt_device_secrets(&self) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, secret, broker_hash FROM devices WHERE id NOT IN (SELECT device_id FROM device_ssh) ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Keeps the broker password hashes made, as `(device, hash)`.
    pub async fn set_broker_hashes(&self, hashes: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for (id, hash) in hashes {
            sqlx::query("UPDATE devices SET broker_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The device's secret in hex, if it is enrolled.
    pub async fn device_secret(&self, id: &str) -> Result<Option<String>, StoreError> {
        let secret: Option<(String,)> =
            sqlx::query_as("SELECT secret FROM devices WHERE id = $1").bind(id).fetch_optional(self.pool()).await?;
        Ok(secret.map(|(s,)| s))
    }

    /// Marks every `online` device not heard from since `cutoff_ms` as
    /// `offline`, returning their ids.
    pub async fn mark_silent_offline(&self, cutoff_ms: i64, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let ids: Vec<(String,)> =
            sqlx::query_as(SWEEP_SQL).bind(now_ms).bind(cutoff_ms).fetch_all(self.writer()).await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Marks online devices stale that missed three heartbeats as of
    /// `now_ms`; returns their ids.
    pub async fn mark_stale(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as(STALE_SQL).bind(now_ms).fetch_all(self.writer()).await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}

/// Records that the device was heard from. Any message means it is online.
pub(super) async fn touch(conn: &mut Conn, id: &str, now_ms: i64) -> Result<StatusChange, StoreError> {
    let res = sqlx::query(
        "UPDATE devices SET last_seen_ms = $1,
             status_ms = CASE WHEN status = 'online' THEN status_ms ELSE $2 END,
             status = 'online'
         WHERE id = $3 AND status != 'online'",
    )
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() > 0 {
        return Ok(StatusChange::Changed);
    }
    sqlx::query("UPDATE devices SET last_seen_ms = $1 WHERE id = $2").bind(now_ms).bind(id).execute(&mut *conn).await?;
    Ok(StatusChange::Unchanged)
}

/// Sets the presence from a status message (`online`, or the Last Will).
pub(super) async fn set_status(
    conn: &mut Conn,
    id: &str,
    status: &str,
    now_ms: i64,
) -> Result<StatusChange, StoreError> {
    let res = sqlx::query(
        "UPDATE devices SET status = $1, status_ms = $2, last_seen_ms = COALESCE(last_seen_ms, $3)
         WHERE id = $4 AND status != $5",
    )
    .bind(status)
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .bind(status)
    .execute(&mut *conn)
    .await?;
    Ok(if res.rows_affected() > 0 { StatusChange::Changed } else { StatusChange::Unchanged })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn enrolling_the_same_id_twice_is_refused() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let err = store.insert_device("gw-1", "other", "bb", 2).await.unwrap_err();
        assert!(matches!(err, StoreError::DeviceExists(id) if id == "gw-1"));
        assert_eq!(store.device_secret("gw-1").await.unwrap().as_deref(), Some("aa"));
    }

    #[tokio::test]
    async fn silent_devices_go_offline_and_messages_bring_them_back() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        assert_eq!(touch(&mut conn, "gw-1", 1_000).await.unwrap(), StatusChange::Changed);
        assert_eq!(touch(&mut conn, "gw-1", 2_000).await.unwrap(), StatusChange::Unchanged);
        drop(conn);
        assert!(store.mark_silent_offline(1_500, 3_000).await.unwrap().is_empty());
        assert_eq!(store.mark_silent_offline(2_500, 3_000).await.unwrap(), vec!["gw-1".to_string()]);
        assert_eq!(store.get_device("gw-1").await.unwrap().unwrap().status, "offline");
    }

    #[tokio::test]
    async fn three_missed_heartbeats_make_a_device_stale_and_the_timeline_says_so() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        touch(&mut conn, "gw-1", 1_000).await.unwrap();
        sqlx::query("UPDATE devices SET heartbeat_ms = 10000 WHERE id = 'gw-1'").execute(&mut *conn).await.unwrap();
        drop(conn);
        assert!(store.mark_stale(30_999).await.unwrap().is_empty(), "not three intervals yet");
        assert_eq!(store.mark_stale(31_001).await.unwrap(), ["gw-1"]);
        assert!(store.mark_stale(40_000).await.unwrap().is_empty(), "once");
        // A word from it makes it online again; silence past the timeout, offline.
        let mut conn = store.writer().acquire().await.unwrap();
        assert_eq!(touch(&mut conn, "gw-1", 41_000).await.unwrap(), StatusChange::Changed);
        drop(conn);
        store.mark_stale(80_000).await.unwrap();
        assert_eq!(store.mark_silent_offline(50_000, 90_000).await.unwrap(), ["gw-1"], "stale goes offline too");
        let timeline: Vec<String> =
            store.presence_history("gw-1", 10).await.unwrap().into_iter().map(|p| p.status).collect();
        assert_eq!(timeline, ["offline", "stale", "online", "stale", "online"]);
    }
}
