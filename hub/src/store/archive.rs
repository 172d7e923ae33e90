//! Findings as archived: every column of a row and its updates, read out
//! of the database by the day they were stored, deleted once written to an
//! archive file, and put back by an import (`crate::archive` owns the
//! files). An imported row keeps its id, so importing twice adds nothing.

use super::{Flag, Sql};
use serde::{Deserialize, Serialize};

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
    #[sqlx(try_from = "Flag")]
    pub open: bool,
    #[sqlx(skip)]
    #[serde(default)]
    pub updates: Vec<ArchivedUpdate>,
}

const COLUMNS: &str = "id, device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, \"user\", service, host,
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
            "SELECT {COLUMNS} FROM findings WHERE received_ms >= $1 AND received_ms < $2 ORDER BY id"
        ))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        for chunk in rows.chunks_mut(CHUNK) {
            let mut q = Sql::new(
                self.dialect(),
                "SELECT finding_id, epoch, seq, count, last_ms, received_ms FROM finding_updates WHERE finding_id IN (",
            );
            q.push_list(chunk.iter().map(|r| r.id));
            q.push(") ORDER BY finding_id, received_ms, seq");
            let (sql, args) = q.finish()?;
            let updates: Vec<(i64, i64, i64, i64, i64, i64)> =
                sqlx::query_as_with(&sql, args).fetch_all(self.pool()).await?;
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
                   WHERE received_ms >= $1 AND received_ms < $2 AND id BETWEEN $3 AND $4 LIMIT 5000)",
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
                "INSERT INTO findings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
                 ON CONFLICT DO NOTHING"
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
            .bind(i64::from(r.open))
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
                    "INSERT INTO finding_updates (device_id, epoch, seq, finding_id, count, last_ms, received_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
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
        if self.dialect() == super::Dialect::Postgres {
            // Rows put back with their ids leave the id sequence behind them;
            // the next finding stored would take an id already used.
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('findings', 'id'), GREATEST((SELECT MAX(id) FROM findings), 1))",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store;
    use opmas_proto::kinds::DEVICE_OFFLINE;

    #[tokio::test]
    async fn archived_findings_restore_whole_into_a_new_database_and_new_findings_follow_them() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        for i in 0..3 {
            store.lifecycle_finding("gw-1", &DEVICE_OFFLINE, "edge", format!("f{i}"), i == 2, 1000 + i).await.unwrap();
        }
        let rows = store.findings_stored_between(0, i64::MAX).await.unwrap();
        assert_eq!(rows.len(), 3);
        let last = rows[2].id;
        assert_eq!(store.delete_findings_archived(0, i64::MAX, rows[0].id, last).await.unwrap(), 3);
        assert!(store.findings_stored_between(0, i64::MAX).await.unwrap().is_empty());

        // A restore into a database that never had them.
        let (fresh, _dir2) = test_store().await;
        assert_eq!(fresh.import_findings(&rows).await.unwrap().device_gone, 3, "no such router there yet");
        fresh.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        assert_eq!(fresh.import_findings(&rows).await.unwrap().findings, 3);
        assert_eq!(fresh.import_findings(&rows).await.unwrap().present, 3, "twice adds nothing");
        let back = fresh.findings_stored_between(0, i64::MAX).await.unwrap();
        let view = |r: &super::ArchivedFinding| (r.id, r.summary.clone(), r.open, r.received_ms);
        assert_eq!(back.iter().map(view).collect::<Vec<_>>(), rows.iter().map(view).collect::<Vec<_>>());
        // The next finding takes an id after the restored ones.
        fresh.lifecycle_finding("gw-1", &DEVICE_OFFLINE, "edge", "after".into(), false, 5000).await.unwrap();
        let all = fresh.findings_stored_between(0, i64::MAX).await.unwrap();
        assert_eq!(all.len(), 4);
        assert!(all[3].id > last, "{:?}", all.iter().map(|r| r.id).collect::<Vec<_>>());
    }
}
