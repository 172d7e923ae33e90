//! Findings as archived: every column of a row and its updates, read out
//! of the database by the day they were stored, deleted once written to an
//! archive file, and put back by an import (`crate::archive` owns the
//! files). An imported row keeps its id, so importing twice adds nothing.

use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;

use super::{Store, StoreError};

/// One update a finding received (a flood's growing count).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ArchivedUpdate {
    pub epoch: i64,
    pub seq: i64,
    pub count: i64,
    pub last_ms: i64,
    pub received_ms: i64,
}

/// A findings row, whole, with its updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ArchivedFinding {
    pub id: i64,
    pub device_id: String,
    pub epoch: i64,
    pub seq: i64,
    pub agent: String,
    pub kind: String,
    pub severity: i64,
    pub src_ip: Option<String>,
    pub mac: Option<String>,
    pub iface: Option<String>,
    pub user: Option<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub summary: String,
    /// The evidence lines as stored (a JSON array of strings).
    pub evidence: String,
    pub received_ms: i64,
    pub identity: Option<String>,
    pub open: bool,
    #[sqlx(skip)]
    #[serde(default)]
    pub updates: Vec<ArchivedUpdate>,
}

const COLUMNS: &str = "id, device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, user, service, host,
    count, first_ms, last_ms, summary, evidence, received_ms, identity, open";

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Rows put back.
    pub findings: u64,
    /// Rows the database has already (the same id, or the same device,
    /// epoch and sequence).
    pub present: u64,
    /// Rows of routers no longer enrolled: not imported (a finding belongs
    /// to its router; enrol it again to import them).
    pub device_gone: u64,
}

/// Rows per statement (parameters stay well under SQLite's limit).
const CHUNK: usize = 400;

impl Store {
    /// The first hub time a stored finding has, if any.
    pub async fn oldest_finding_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MIN(received_ms) FROM findings").fetch_one(self.pool()).await?)
    }

    /// The findings stored in `[from_ms, to_ms)`, by id, with their updates.
    pub async fn findings_stored_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ArchivedFinding>, StoreError> {
        let mut rows: Vec<ArchivedFinding> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM findings WHERE received_ms >= ? AND received_ms < ? ORDER BY id"
        ))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        for chunk in rows.chunks_mut(CHUNK) {
            let mut q = QueryBuilder::new(
                "SELECT finding_id, epoch, seq, count, last_ms, received_ms FROM finding_updates WHERE finding_id IN (",
            );
            let mut ids = q.separated(", ");
            for r in chunk.iter() {
                ids.push_bind(r.id);
            }
            q.push(") ORDER BY finding_id, received_ms, seq");
            let updates: Vec<(i64, i64, i64, i64, i64, i64)> = q.build_query_as().fetch_all(self.pool()).await?;
            for (finding, epoch, seq, count, last_ms, received_ms) in updates {
                if let Ok(i) = chunk.binary_search_by_key(&finding, |r| r.id) {
                    chunk[i].updates.push(ArchivedUpdate { epoch, seq, count, last_ms, received_ms });
                }
            }
        }
        Ok(rows)
    }

    /// Deletes the findings stored in `[from_ms, to_ms)` with ids in
    /// `first_id..=last_id` (what an archive file holds), a few thousand
    /// per transaction so that ingest is never held up for long. Returns
    /// how many went.
    pub async fn delete_findings_archived(
        &self,
        from_ms: i64,
        to_ms: i64,
        first_id: i64,
        last_id: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(
                "DELETE FROM findings WHERE id IN (SELECT id FROM findings
                   WHERE received_ms >= ? AND received_ms < ? AND id BETWEEN ? AND ? LIMIT 5000)",
            )
            .bind(from_ms)
            .bind(to_ms)
            .bind(first_id)
            .bind(last_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Puts archived findings back (see [`Imported`]).
    pub async fn import_findings(&self, rows: &[ArchivedFinding]) -> Result<Imported, StoreError> {
        let mut out = Imported::default();
        let enrolled: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT id FROM devices").fetch_all(self.pool()).await?.into_iter().collect();
        let mut tx = self.begin_write().await?;
        for r in rows {
            if !enrolled.contains(&r.device_id) {
                out.device_gone += 1;
                continue;
            }
            let done = sqlx::query(&format!(
                "INSERT OR IGNORE INTO findings ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(r.id)
            .bind(&r.device_id)
            .bind(r.epoch)
            .bind(r.seq)
            .bind(&r.agent)
            .bind(&r.kind)
            .bind(r.severity)
            .bind(&r.src_ip)
            .bind(&r.mac)
            .bind(&r.iface)
            .bind(&r.user)
            .bind(&r.service)
            .bind(&r.host)
            .bind(r.count)
            .bind(r.first_ms)
            .bind(r.last_ms)
            .bind(&r.summary)
            .bind(&r.evidence)
            .bind(r.received_ms)
            .bind(&r.identity)
            .bind(r.open)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                out.present += 1;
                continue;
            }
            out.findings += 1;
            for u in &r.updates {
                sqlx::query(
                    "INSERT OR IGNORE INTO finding_updates (device_id, epoch, seq, finding_id, count, last_ms, received_ms)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.device_id)
                .bind(u.epoch)
                .bind(u.seq)
                .bind(r.id)
                .bind(u.count)
                .bind(u.last_ms)
                .bind(u.received_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
