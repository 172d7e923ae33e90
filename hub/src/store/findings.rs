//! The `findings` table: idempotent batch insert and the paginated query.

use opmas_proto::msg::Finding;
use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{Store, StoreError};

/// A stored finding as the API returns it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct FindingRow {
    pub id: i64,
    pub device_id: String,
    /// The edge run epoch as a decimal string (a `u64` does not fit JSON numbers safely).
    #[sqlx(skip)]
    pub epoch: String,
    #[serde(skip)]
    #[sqlx(rename = "epoch")]
    pub epoch_raw: i64,
    pub seq: i64,
    pub agent: String,
    pub kind: String,
    pub severity: i64,
    pub src_ip: Option<String>,
    pub mac: Option<String>,
    pub iface: Option<String>,
    pub user: Option<String>,
    pub service: Option<String>,
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub summary: String,
    #[sqlx(skip)]
    pub evidence: Vec<String>,
    #[serde(skip)]
    #[sqlx(rename = "evidence")]
    pub evidence_json: String,
    pub received_ms: i64,
}

/// Filters and page of a findings query. Newest first.
#[derive(Clone, Debug, Default)]
pub struct FindingQuery {
    pub device: Option<String>,
    pub agent: Option<String>,
    pub kind: Option<String>,
    /// Only findings whose last event is at or after this time.
    pub since_ms: Option<i64>,
    /// Only findings with an id below this (the previous page's last id).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Counts of one batch insert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// New rows.
    pub stored: u64,
    /// Already stored (the database refused a second row of the sequence).
    pub duplicates: u64,
    /// Updates applied to an earlier finding (count, last time, evidence).
    pub updated: u64,
}

/// Most rows in one multi-row `INSERT`. Runs are cut into powers of two up
/// to this, so that only a handful of distinct statements are ever prepared
/// (and stay in the connection's statement cache).
const INSERT_ROWS: usize = 128;

/// Stores `findings` of `device`/`epoch` in their order on the caller's
/// transaction: runs of new findings as multi-row inserts, updates applied
/// to the finding they update (and recorded in `finding_updates`). A
/// sequence stored before is ignored by the unique key, at the cost of an
/// index lookup.
pub async fn insert_batch(
    conn: &mut SqliteConnection,
    device: &str,
    epoch: u64,
    findings: &[Finding],
    received_ms: i64,
) -> Result<Inserted, StoreError> {
    let mut counts = Inserted::default();
    let mut run_start = 0;
    for (i, f) in findings.iter().enumerate() {
        if !f.update {
            continue;
        }
        // Earlier findings first: the update may be of one of them.
        insert_new(conn, device, epoch, &findings[run_start..i], received_ms, &mut counts).await?;
        run_start = i + 1;
        if !apply_update(conn, device, epoch, f, received_ms, &mut counts).await? {
            // The original never arrived (dropped from a full spool): keep
            // the update as a finding of its own.
            insert_new(conn, device, epoch, std::slice::from_ref(f), received_ms, &mut counts).await?;
        }
    }
    insert_new(conn, device, epoch, &findings[run_start..], received_ms, &mut counts).await?;
    Ok(counts)
}

async fn insert_new(
    conn: &mut SqliteConnection,
    device: &str,
    epoch: u64,
    mut rows: &[Finding],
    received_ms: i64,
    counts: &mut Inserted,
) -> Result<(), StoreError> {
    while !rows.is_empty() {
        let n = if rows.len() >= INSERT_ROWS { INSERT_ROWS } else { 1 << rows.len().ilog2() };
        let (chunk, rest) = rows.split_at(n);
        rows = rest;
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO findings (device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, user, service,
                                   count, first_ms, last_ms, summary, evidence, received_ms, identity) ",
        );
        b.push_values(chunk, |mut row, f| {
            row.push_bind(device)
                .push_bind(epoch as i64)
                .push_bind(f.seq as i64)
                .push_bind(&f.agent)
                .push_bind(&f.kind)
                .push_bind(f.severity.get() as i64)
                .push_bind(f.subject.src_ip.map(|ip| ip.to_string()))
                .push_bind(&f.subject.mac)
                .push_bind(&f.subject.iface)
                .push_bind(&f.subject.user)
                .push_bind(&f.subject.service)
                .push_bind(f.count as i64)
                .push_bind(f.first_ms as i64)
                .push_bind(f.last_ms as i64)
                .push_bind(&f.summary)
                .push_bind(evidence_json(f))
                .push_bind(received_ms)
                .push_bind(identity(f));
        });
        b.push(" ON CONFLICT (device_id, epoch, seq) DO NOTHING");
        let stored = b.build().persistent(true).execute(&mut *conn).await?.rows_affected();
        counts.stored += stored;
        counts.duplicates += chunk.len() as u64 - stored;
    }
    Ok(())
}

/// Applies an update to its original, found by identity (the
/// `findings_by_identity` index; a test checks the plan).
pub(super) const UPDATE_SQL: &str = "UPDATE findings SET count = ?, last_ms = ?, summary = ?, evidence = ?,
                severity = MAX(severity, ?), received_ms = ?
         WHERE device_id = ? AND epoch = ? AND identity = ?
         RETURNING id";

/// What makes an update's original the same finding: agent, kind, first
/// time and subject, as one key (JSON, so that no two differ only in
/// punctuation).
fn identity(f: &Finding) -> String {
    serde_json::to_string(&(&f.agent, &f.kind, f.first_ms, &f.subject)).unwrap_or_default()
}

/// Applies an update to the finding it updates; false if there is none.
async fn apply_update(
    conn: &mut SqliteConnection,
    device: &str,
    epoch: u64,
    f: &Finding,
    received_ms: i64,
    counts: &mut Inserted,
) -> Result<bool, StoreError> {
    // Setting absolute values makes a repeated update harmless.
    let id: Option<(i64,)> = sqlx::query_as(UPDATE_SQL)
        .bind(f.count as i64)
        .bind(f.last_ms as i64)
        .bind(&f.summary)
        .bind(evidence_json(f))
        .bind(f.severity.get() as i64)
        .bind(received_ms)
        .bind(device)
        .bind(epoch as i64)
        .bind(identity(f))
        .fetch_optional(&mut *conn)
        .await?;
    let Some((finding_id,)) = id else { return Ok(false) };
    let res = sqlx::query(
        "INSERT INTO finding_updates (device_id, epoch, seq, finding_id, count, last_ms, received_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, epoch, seq) DO NOTHING",
    )
    .bind(device)
    .bind(epoch as i64)
    .bind(f.seq as i64)
    .bind(finding_id)
    .bind(f.count as i64)
    .bind(f.last_ms as i64)
    .bind(received_ms)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() == 1 {
        counts.updated += 1;
    } else {
        counts.duplicates += 1;
    }
    Ok(true)
}

fn evidence_json(f: &Finding) -> String {
    serde_json::to_string(&f.evidence).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Runs a findings query; newest (highest id) first.
    pub async fn query_findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>, StoreError> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, user, service,
                    count, first_ms, last_ms, summary, evidence, received_ms FROM findings WHERE 1 = 1",
        );
        if let Some(d) = &q.device {
            b.push(" AND device_id = ").push_bind(d);
        }
        if let Some(a) = &q.agent {
            b.push(" AND agent = ").push_bind(a);
        }
        if let Some(k) = &q.kind {
            b.push(" AND kind = ").push_bind(k);
        }
        if let Some(s) = q.since_ms {
            b.push(" AND last_ms >= ").push_bind(s);
        }
        if let Some(c) = q.before_id {
            b.push(" AND id < ").push_bind(c);
        }
        b.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit as i64);
        let rows: Vec<FindingRow> = b.build_query_as().fetch_all(self.pool()).await?;
        Ok(rows
            .into_iter()
            .map(|mut r| {
                r.epoch = (r.epoch_raw as u64).to_string();
                r.evidence = serde_json::from_str(&r.evidence_json).unwrap_or_default();
                r
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use opmas_proto::msg::{Severity, Subject};

    fn finding(seq: u64, kind: &str) -> Finding {
        Finding {
            seq,
            agent: "security".into(),
            kind: kind.into(),
            severity: Severity::HIGH,
            subject: Subject { src_ip: Some("203.0.113.9".parse().unwrap()), ..Default::default() },
            count: 5,
            first_ms: 1000,
            last_ms: 2000 + seq,
            summary: "s".into(),
            evidence: vec!["line".into()],
            update: false,
        }
    }

    #[tokio::test]
    async fn a_resent_batch_is_stored_once_and_epochs_keep_sequences_apart() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        let batch = [finding(1, "ssh.bruteforce"), finding(2, "ssh.bruteforce")];
        assert_eq!(
            insert_batch(&mut conn, "gw-1", u64::MAX, &batch, 5).await.unwrap(),
            Inserted { stored: 2, ..Default::default() }
        );
        assert_eq!(
            insert_batch(&mut conn, "gw-1", u64::MAX, &batch, 6).await.unwrap(),
            Inserted { duplicates: 2, ..Default::default() }
        );
        assert_eq!(insert_batch(&mut conn, "gw-1", 7, &batch[..1], 7).await.unwrap().stored, 1);
        drop(conn);
        let all = store.query_findings(&FindingQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].epoch, "7");
        assert_eq!(all[2].epoch, u64::MAX.to_string());
        assert_eq!(all[0].evidence, vec!["line".to_string()]);
    }

    #[tokio::test]
    async fn an_update_grows_the_original_and_repeating_it_changes_nothing() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        insert_batch(&mut conn, "gw-1", 1, &[finding(1, "net.port_scan")], 5).await.unwrap();
        let update = Finding { seq: 2, count: 900, last_ms: 9_000, update: true, ..finding(1, "net.port_scan") };
        let n = insert_batch(&mut conn, "gw-1", 1, std::slice::from_ref(&update), 6).await.unwrap();
        assert_eq!(n, Inserted { updated: 1, ..Default::default() });
        // The same update again (same sequence) is recognised as a duplicate.
        let n = insert_batch(&mut conn, "gw-1", 1, std::slice::from_ref(&update), 6).await.unwrap();
        assert_eq!(n, Inserted { duplicates: 1, ..Default::default() });
        let history: Vec<(i64, i64)> =
            sqlx::query_as("SELECT seq, count FROM finding_updates").fetch_all(&mut *conn).await.unwrap();
        assert_eq!(history, vec![(2, 900)]);
        // An update whose original is unknown (other subject) becomes a finding.
        let orphan = Finding { subject: Subject::default(), ..update.clone() };
        assert_eq!(insert_batch(&mut conn, "gw-1", 1, &[orphan], 7).await.unwrap().stored, 1);
        drop(conn);
        let rows = store.query_findings(&FindingQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].seq, rows[1].count, rows[1].last_ms), (1, 900, 9_000));
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_and_filters_apply() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        let batch: Vec<Finding> =
            (1..=5).map(|i| finding(i, if i % 2 == 0 { "ssh.bruteforce" } else { "ssh.other" })).collect();
        insert_batch(&mut conn, "gw-1", 1, &batch, 5).await.unwrap();
        drop(conn);
        let page1 = store.query_findings(&FindingQuery { limit: 2, ..Default::default() }).await.unwrap();
        let page2 = store
            .query_findings(&FindingQuery { limit: 2, before_id: Some(page1[1].id), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(page1.iter().chain(&page2).map(|r| r.seq).collect::<Vec<_>>(), vec![5, 4, 3, 2]);
        let only = store
            .query_findings(&FindingQuery { kind: Some("ssh.bruteforce".into()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(only.len(), 2);
        let since = store
            .query_findings(&FindingQuery { since_ms: Some(2004), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(since.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 4]);
    }
}
