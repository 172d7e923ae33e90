//! The `findings` table: idempotent batch insert and the paginated query.

use opmas_proto::msg::{Finding, Severity, Stage};
use std::fmt::Write as _;

use super::{Conn, Dialect, Sql};
use crate::correlate::engine::Fact;

use super::{Store, StoreError};

/// A stored finding (the API's view of it is `http::views::FindingView`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FindingRow {
    pub id: i64,
    pub device_id: String,
    /// The edge run epoch as a decimal string (a `u64` does not fit JSON numbers safely).
    #[sqlx(skip)]
    pub epoch: String,
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
    #[sqlx(rename = "evidence")]
    pub evidence_json: String,
    pub received_ms: i64,
    /// The edge may still update it (its attack or campaign goes on).
    #[sqlx(try_from = "super::Flag")]
    pub open: bool,
    /// The source as a host name, when the log named no address.
    pub host: Option<String>,
}

/// Filters and page of a findings query. Newest first.
#[derive(Clone, Debug, Default)]
pub struct FindingQuery {
    pub device: Option<String>,
    pub agent: Option<String>,
    pub kind: Option<String>,
    /// Only open (`true`) or closed (`false`) findings.
    pub open: Option<bool>,
    /// Only findings of at least this severity (1 to 5).
    pub min_severity: Option<i64>,
    /// Only findings whose last event is at or after this time.
    pub since_ms: Option<i64>,
    /// Only findings whose first event is before this time.
    pub until_ms: Option<i64>,
    /// Only findings with an id below this (the previous page's last id).
    pub before_id: Option<i64>,
    /// Only findings with an id above this, oldest first (a live view
    /// catching up from the last one it showed).
    pub after_id: Option<i64>,
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

/// How many of `len` rows the next statement takes: [`INSERT_ROWS`], or
/// the largest power of two below `len`, so that few distinct statements
/// are ever prepared.
fn chunk_len(len: usize) -> usize {
    if len >= INSERT_ROWS {
        INSERT_ROWS
    } else {
        1 << len.max(1).ilog2()
    }
}

/// Most rows in one multi-row `INSERT`. Runs are cut into powers of two up
/// to this, so that only a handful of distinct statements are ever prepared
/// (and stay in the connection's statement cache).
const INSERT_ROWS: usize = 128;

/// A new row as the correlator reads it back (`store::incidents`'s
/// `FACT_COLUMNS`): the same conversions as the insert binds, so that a
/// finding handed over in memory and the same one read from the database
/// after the commit are equal (an update in the same batch may raise the
/// severity: `apply_updates` raises it here too).
fn fact_of(id: i64, device: &str, received_ms: i64, f: &Finding) -> Fact {
    Fact {
        finding: id,
        device: device.to_owned(),
        time_ms: received_ms,
        heartbeat: false,
        agent: f.agent.clone(),
        kind: f.kind.clone(),
        severity: f.severity.get() as i64,
        src_ip: f.subject.src_ip.map(|ip| ip.to_string()),
        mac: f.subject.mac.clone(),
        user: f.subject.user.clone(),
        host: f.subject.host.clone(),
        iface: f.subject.iface.clone(),
        service: f.subject.service.clone(),
    }
}

/// An update of finding `id` took `severity` into its row: so does the
/// fact if the row was added by this batch (`facts` is by id).
fn raise(facts: &mut [Fact], id: i64, severity: Severity) {
    if let Ok(i) = facts.binary_search_by_key(&id, |f| f.finding) {
        facts[i].severity = facts[i].severity.max(severity.get() as i64);
    }
}

/// Stores `findings` of `device`/`epoch` on the caller's transaction: the
/// new findings as multi-row inserts, then the updates, a chunk of distinct
/// originals per statement, each applied to the finding it updates and
/// recorded in `finding_updates`. Inserting first is safe because an update
/// always follows its original. A sequence stored before is ignored by the
/// unique keys, at the cost of an index lookup. The new rows are added to
/// `facts`, by id, for the correlator.
pub(super) async fn insert_batch(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    findings: &[&Finding],
    received_ms: i64,
    facts: &mut Vec<Fact>,
) -> Result<Inserted, StoreError> {
    let mut counts = Inserted::default();
    let (updates, new): (Vec<&Finding>, Vec<&Finding>) = findings.iter().copied().partition(|f| f.is_update());
    insert_new(conn, device, epoch, &new, received_ms, &mut counts, facts).await?;
    let mut rest = &updates[..];
    while !rest.is_empty() {
        let taken = apply_updates(conn, device, epoch, rest, received_ms, &mut counts, facts).await?;
        rest = &rest[taken..];
    }
    Ok(counts)
}

async fn insert_new(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    mut rows: &[&Finding],
    received_ms: i64,
    counts: &mut Inserted,
    facts: &mut Vec<Fact>,
) -> Result<(), StoreError> {
    let from = facts.len();
    while !rows.is_empty() {
        let (chunk, rest) = rows.split_at(chunk_len(rows.len()));
        rows = rest;
        let mut b = Sql::new(
            Dialect::of(conn),
            "INSERT INTO findings (device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, \"user\", service,
                                   count, first_ms, last_ms, summary, evidence, received_ms, identity, open,
                                   host) ",
        );
        b.push_values(chunk, |row, f| {
            row.bind(device)
                .bind(epoch as i64)
                .bind(f.seq as i64)
                .bind(&f.agent)
                .bind(&f.kind)
                .bind(f.severity.get() as i64)
                .bind(f.subject.src_ip.map(|ip| ip.to_string()))
                .bind(&f.subject.mac)
                .bind(&f.subject.iface)
                .bind(&f.subject.user)
                .bind(&f.subject.service)
                .bind(f.count as i64)
                .bind(f.first_ms as i64)
                .bind(f.last_ms as i64)
                .bind(&f.summary)
                .bind(evidence_json(f))
                .bind(received_ms)
                .bind(identity(f))
                .bind(is_open(f))
                .bind(&f.subject.host);
        });
        b.push(" ON CONFLICT (device_id, epoch, seq) DO NOTHING RETURNING id, seq");
        let (sql, args) = b.finish()?;
        // Only the rows inserted come back, in no promised order.
        let new: Vec<(i64, i64)> = sqlx::query_as_with(&sql, args).fetch_all(&mut *conn).await?;
        for (id, seq) in &new {
            if let Some(f) = chunk.iter().find(|f| f.seq as i64 == *seq) {
                facts.push(fact_of(*id, device, received_ms, f));
            }
        }
        counts.stored += new.len() as u64;
        counts.duplicates += (chunk.len() - new.len()) as u64;
    }
    facts[from..].sort_unstable_by_key(|f| f.finding);
    Ok(())
}

/// Applies a chunk of updates to their originals, found by identity: one
/// index lookup per update (`findings_by_identity` on all three columns; a
/// test checks the plan, since a join on the update rows instead would walk
/// every finding of the device's epoch). Binds, in order:
/// `(identity, count, last_ms, summary, evidence, severity, open)` per row,
/// then `received_ms`, device and epoch. A closed finding stays closed.
pub(super) fn update_sql(dialect: Dialect, rows: usize) -> String {
    let mut values = String::new();
    for r in 0..rows {
        let p = |i| dialect.param(r * 7 + i);
        let sep = if r == 0 { "" } else { ", " };
        let _ = write!(values, "{sep}({}, {}, {}, {}, {}, {}, {})", p(1), p(2), p(3), p(4), p(5), p(6), p(7));
    }
    let p = |n| dialect.param(rows * 7 + n);
    let (received, device, epoch) = (p(1), p(2), p(3));
    let (max, min) = (dialect.greatest(), dialect.least());
    format!(
        "WITH u (identity, count, last_ms, summary, evidence, severity, open) AS (VALUES {values})
         UPDATE findings SET (count, last_ms, summary, evidence, severity, open) =
                (SELECT u.count, u.last_ms, u.summary,
                        CASE WHEN u.evidence = '[]' THEN findings.evidence ELSE u.evidence END,
                        {max}(findings.severity, u.severity),
                        {min}(findings.open, u.open)
                   FROM u WHERE u.identity = findings.identity),
                received_ms = {received}
          WHERE device_id = {device} AND epoch = {epoch} AND identity IN (SELECT identity FROM u)
         RETURNING id, identity"
    )
}

/// Most distinct originals updated by one statement (cut into powers of two,
/// like inserts, to keep few statements prepared).
const UPDATE_ROWS: usize = 64;

/// What makes an update's original the same finding: agent, kind, first
/// time and subject, as one key (JSON, so that no two differ only in
/// punctuation).
fn identity(f: &Finding) -> String {
    serde_json::to_string(&(&f.agent, &f.kind, f.first_ms, &f.subject)).unwrap_or_default()
}

/// Applies the updates at the front of `updates` (in sequence order) and
/// returns how many it took: as many as touch at most [`UPDATE_ROWS`]
/// distinct originals. Several updates of one original collapse into its
/// latest values (they are absolute: the count so far, the last time) and
/// the highest severity; each is still recorded in `finding_updates`. An
/// update whose original never arrived (dropped from a full spool) is
/// stored as a finding of its own, and later updates then apply to it.
async fn apply_updates(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    updates: &[&Finding],
    received_ms: i64,
    counts: &mut Inserted,
    facts: &mut Vec<Fact>,
) -> Result<usize, StoreError> {
    // Distinct identities in first-seen order, each with its merged update.
    let mut order: Vec<(String, Finding)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut keys: Vec<usize> = Vec::new();
    let mut taken = 0;
    for f in updates {
        let id = identity(f);
        let at = match index.get(&id) {
            Some(&at) => {
                let merged = &mut order[at].1;
                let severity = merged.severity.max(f.severity);
                // An update without evidence leaves the evidence as it was.
                let evidence =
                    if f.evidence.is_empty() { std::mem::take(&mut merged.evidence) } else { f.evidence.clone() };
                *merged = Finding { severity, evidence, ..(*f).clone() };
                at
            }
            None => {
                if order.len() == UPDATE_ROWS {
                    break;
                }
                index.insert(id.clone(), order.len());
                order.push((id, (*f).clone()));
                order.len() - 1
            }
        };
        keys.push(at);
        taken += 1;
    }
    // A power of two of distinct originals; the rest wait for the next call.
    let n = 1 << order.len().ilog2();
    if n < order.len() {
        order.truncate(n);
        taken = keys.iter().position(|&k| k >= n).unwrap_or(keys.len());
        keys.truncate(taken);
    }
    let sql = update_sql(Dialect::of(conn), order.len());
    let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
    for (id, f) in &order {
        q = q
            .bind(id)
            .bind(f.count as i64)
            .bind(f.last_ms as i64)
            .bind(&f.summary)
            .bind(evidence_json(f))
            .bind(f.severity.get() as i64)
            .bind(is_open(f));
    }
    let found = q.bind(received_ms).bind(device).bind(epoch as i64).persistent(true).fetch_all(&mut *conn).await?;
    let found: std::collections::HashMap<String, i64> = found.into_iter().map(|(id, ident)| (ident, id)).collect();
    for (ident, &id) in &found {
        if let Some(&k) = index.get(ident) {
            raise(facts, id, order[k].1.severity);
        }
    }
    let mut history: Vec<(&Finding, i64)> = Vec::with_capacity(taken);
    for (f, &k) in updates[..taken].iter().zip(&keys) {
        match found.get(&order[k].0) {
            Some(&finding_id) => history.push((f, finding_id)),
            None => orphan(conn, device, epoch, f, received_ms, counts, facts).await?,
        }
    }
    record_updates(conn, device, epoch, &history, received_ms, counts).await?;
    Ok(taken)
}

/// An update whose original is not stored: the first becomes a finding, the
/// ones after it update that finding. Rare (the edge's spool overflowed), so
/// one statement at a time.
async fn orphan(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    f: &Finding,
    received_ms: i64,
    counts: &mut Inserted,
    facts: &mut Vec<Fact>,
) -> Result<(), StoreError> {
    let sql = update_sql(Dialect::of(conn), 1);
    let found: Option<(i64, String)> = sqlx::query_as(&sql)
        .bind(identity(f))
        .bind(f.count as i64)
        .bind(f.last_ms as i64)
        .bind(&f.summary)
        .bind(evidence_json(f))
        .bind(f.severity.get() as i64)
        .bind(is_open(f))
        .bind(received_ms)
        .bind(device)
        .bind(epoch as i64)
        .fetch_optional(&mut *conn)
        .await?;
    match found {
        Some((finding_id, _)) => {
            raise(facts, finding_id, f.severity);
            record_updates(conn, device, epoch, &[(f, finding_id)], received_ms, counts).await
        }
        None => insert_new(conn, device, epoch, &[f], received_ms, counts, facts).await,
    }
}

/// Records applied updates in `finding_updates`; one already recorded (a
/// resent sequence) counts as a duplicate.
async fn record_updates(
    conn: &mut Conn,
    device: &str,
    epoch: u64,
    mut rows: &[(&Finding, i64)],
    received_ms: i64,
    counts: &mut Inserted,
) -> Result<(), StoreError> {
    while !rows.is_empty() {
        let (chunk, rest) = rows.split_at(chunk_len(rows.len()));
        rows = rest;
        let mut b = Sql::new(
            Dialect::of(conn),
            "INSERT INTO finding_updates (device_id, epoch, seq, finding_id, count, last_ms, received_ms) ",
        );
        b.push_values(chunk, |row, (f, finding_id)| {
            row.bind(device)
                .bind(epoch as i64)
                .bind(f.seq as i64)
                .bind(*finding_id)
                .bind(f.count as i64)
                .bind(f.last_ms as i64)
                .bind(received_ms);
        });
        b.push(" ON CONFLICT (device_id, epoch, seq) DO NOTHING");
        let (sql, args) = b.finish()?;
        let recorded = sqlx::query_with(&sql, args).execute(&mut *conn).await?.rows_affected();
        counts.updated += recorded;
        counts.duplicates += chunk.len() as u64 - recorded;
    }
    Ok(())
}

/// Closes the open findings of `device` from runs other than `epoch`.
pub(super) async fn close_other_epochs(conn: &mut Conn, device: &str, epoch: u64) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE findings SET open = 0 WHERE device_id = $1 AND open = 1 AND epoch <> $2")
        .bind(device)
        .bind(epoch as i64)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// 1 while the edge may still update the finding.
fn is_open(f: &Finding) -> i64 {
    i64::from(f.stage != Stage::Closed)
}

fn evidence_json(f: &Finding) -> String {
    serde_json::to_string(&f.evidence).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Runs a findings query; newest (highest id) first.
    pub async fn query_findings(&self, q: &FindingQuery) -> Result<Vec<FindingRow>, StoreError> {
        let mut b = Sql::new(
            self.dialect(),
            "SELECT id, device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, \"user\", service,
                    count, first_ms, last_ms, summary, evidence, received_ms, open, host FROM findings WHERE 1 = 1",
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
        if let Some(open) = q.open {
            b.push(" AND open = ").push_bind(i64::from(open));
        }
        if let Some(s) = q.min_severity {
            b.push(" AND severity >= ").push_bind(s);
        }
        if let Some(s) = q.since_ms {
            b.push(" AND last_ms >= ").push_bind(s);
        }
        if let Some(u) = q.until_ms {
            b.push(" AND first_ms < ").push_bind(u);
        }
        if let Some(c) = q.before_id {
            b.push(" AND id < ").push_bind(c);
        }
        if let Some(c) = q.after_id {
            b.push(" AND id > ").push_bind(c);
        }
        let order = if q.after_id.is_some() { "ASC" } else { "DESC" };
        b.push(format_args!(" ORDER BY id {order} LIMIT ")).push_bind(q.limit as i64);
        let (sql, args) = b.finish()?;
        let rows: Vec<FindingRow> = sqlx::query_as_with(&sql, args).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(finish).collect())
    }

    /// One finding by id.
    pub async fn finding(&self, id: i64) -> Result<Option<FindingRow>, StoreError> {
        let row: Option<FindingRow> = sqlx::query_as(
            "SELECT id, device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, \"user\", service,
                    count, first_ms, last_ms, summary, evidence, received_ms, open, host FROM findings WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(finish))
    }

    /// The highest finding id stored (0 without any): where a live view
    /// starts.
    pub async fn last_finding_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM findings").fetch_one(self.pool()).await?)
    }

    /// New findings per hour (unix ms / 3,600,000) and agent, from hour
    /// `from_hour` on, of one device or all: `(hour, agent, count)`, by hour.
    pub async fn finding_hours(
        &self,
        device: Option<&str>,
        from_hour: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let rows =
            match device {
                Some(d) => sqlx::query_as(
                    "SELECT hour, agent, CAST(SUM(n) AS BIGINT) FROM finding_hours WHERE device_id = $1 AND hour >= $2
                  GROUP BY hour, agent ORDER BY hour",
                )
                .bind(d)
                .bind(from_hour)
                .fetch_all(self.pool())
                .await?,
                None => {
                    sqlx::query_as("SELECT hour, agent, n FROM fleet_hours WHERE hour >= $1 AND n > 0 ORDER BY hour")
                        .bind(from_hour)
                        .fetch_all(self.pool())
                        .await?
                }
            };
        Ok(rows)
    }
}

fn finish(mut r: FindingRow) -> FindingRow {
    r.epoch = (r.epoch_raw as u64).to_string();
    r.evidence = serde_json::from_str(&r.evidence_json).unwrap_or_default();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use opmas_proto::msg::{Severity, Subject};

    fn refs(b: &[Finding]) -> Vec<&Finding> {
        b.iter().collect()
    }

    #[tokio::test]
    async fn updates_in_one_batch_collapse_per_original_and_each_is_recorded() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        // 100 originals (more than one statement's worth), each updated
        // twice, the first update of each raising the severity; then an
        // orphan update and an update of that orphan.
        let subject = Subject {
            src_ip: Some("2001:db8::7".parse().unwrap()),
            mac: Some("aa:bb:cc:dd:ee:ff".into()),
            iface: Some("wlan0".into()),
            user: Some("root".into()),
            service: Some("dropbear".into()),
            host: Some("evil.example".into()),
        };
        let original = |i: u64| Finding { first_ms: 1000 + i, subject: subject.clone(), ..finding(i, "net.port_scan") };
        let mut batch: Vec<Finding> = (1..=100).map(original).collect();
        let mut seq = 100;
        for round in 0..2 {
            for i in 1..=100 {
                seq += 1;
                let severity = if round == 0 { Severity::CRITICAL } else { Severity::LOW };
                batch.push(Finding { seq, count: 10 + round, severity, stage: Stage::Update, ..original(i) });
            }
        }
        let lost = Finding { first_ms: 77, ..finding(0, "net.port_scan") };
        batch.push(Finding { seq: 301, count: 6, stage: Stage::Update, ..lost.clone() });
        batch.push(Finding { seq: 302, count: 7, stage: Stage::Update, ..lost });
        let mut facts = Vec::new();
        let n = insert_batch(&mut conn, "gw-1", 1, &refs(&batch), 5, &mut facts).await.unwrap();
        assert_eq!(n, Inserted { stored: 101, updated: 201, duplicates: 0 });
        // The new rows handed to the correlator are the rows it would read,
        // the orphan's among them.
        assert_eq!(facts, store.facts_after(0, 1000).await.unwrap());
        assert_eq!(facts.len(), 101);
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as("SELECT seq, count, severity FROM findings ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(rows.len(), 101);
        assert!(rows[..100].iter().all(|&(_, count, severity)| count == 11 && severity == 5), "{:?}", &rows[..3]);
        assert_eq!(rows[100], (301, 7, 4), "the orphan became a finding and took its update");
        let history: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM finding_updates").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(history.0, 201);
        // The same findings and updates again are duplicates, one each.
        let mut facts = Vec::new();
        let again = insert_batch(&mut conn, "gw-1", 1, &refs(&batch[..300]), 6, &mut facts).await.unwrap();
        assert_eq!(again, Inserted { duplicates: 300, ..Default::default() });
        assert!(facts.is_empty(), "{facts:?}");
    }

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
            stage: Stage::New,
        }
    }

    #[tokio::test]
    async fn an_orphan_raised_by_a_later_update_of_its_batch_is_handed_over_as_stored() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        let lost = Finding { count: 6, stage: Stage::Update, ..finding(1, "net.port_scan") };
        let later = Finding { seq: 2, count: 7, severity: Severity::CRITICAL, ..lost.clone() };
        let mut facts = Vec::new();
        insert_batch(&mut conn, "gw-1", 1, &[&lost, &later], 5, &mut facts).await.unwrap();
        assert_eq!(facts, store.facts_after(0, 10).await.unwrap());
        assert_eq!(facts.iter().map(|f| f.severity).collect::<Vec<_>>(), [5]);
    }

    #[tokio::test]
    async fn a_resent_batch_is_stored_once_and_epochs_keep_sequences_apart() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        let batch = [finding(1, "ssh.bruteforce"), finding(2, "ssh.bruteforce")];
        assert_eq!(
            insert_batch(&mut conn, "gw-1", u64::MAX, &refs(&batch), 5, &mut Vec::new()).await.unwrap(),
            Inserted { stored: 2, ..Default::default() }
        );
        assert_eq!(
            insert_batch(&mut conn, "gw-1", u64::MAX, &refs(&batch), 6, &mut Vec::new()).await.unwrap(),
            Inserted { duplicates: 2, ..Default::default() }
        );
        assert_eq!(insert_batch(&mut conn, "gw-1", 7, &refs(&batch[..1]), 7, &mut Vec::new()).await.unwrap().stored, 1);
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
        insert_batch(&mut conn, "gw-1", 1, &[&finding(1, "net.port_scan")], 5, &mut Vec::new()).await.unwrap();
        let update =
            Finding { seq: 2, count: 900, last_ms: 9_000, stage: Stage::Update, ..finding(1, "net.port_scan") };
        let n = insert_batch(&mut conn, "gw-1", 1, &[&update], 6, &mut Vec::new()).await.unwrap();
        assert_eq!(n, Inserted { updated: 1, ..Default::default() });
        // The same update again (same sequence) is recognised as a duplicate.
        let n = insert_batch(&mut conn, "gw-1", 1, &[&update], 6, &mut Vec::new()).await.unwrap();
        assert_eq!(n, Inserted { duplicates: 1, ..Default::default() });
        let history: Vec<(i64, i64)> =
            sqlx::query_as("SELECT seq, count FROM finding_updates").fetch_all(&mut *conn).await.unwrap();
        assert_eq!(history, vec![(2, 900)]);
        // An update whose original is unknown (other subject) becomes a finding.
        let orphan = Finding { subject: Subject::default(), ..update.clone() };
        assert_eq!(insert_batch(&mut conn, "gw-1", 1, &[&orphan], 7, &mut Vec::new()).await.unwrap().stored, 1);
        drop(conn);
        let rows = store.query_findings(&FindingQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].seq, rows[1].count, rows[1].last_ms), (1, 900, 9_000));
        assert!(rows[1].open, "an update keeps the finding open");
    }

    #[tokio::test]
    async fn the_closing_update_closes_the_finding_for_good() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        let original = finding(1, "ssh.bruteforce");
        insert_batch(&mut conn, "gw-1", 1, &[&original], 5, &mut Vec::new()).await.unwrap();
        let closed = Finding { seq: 2, count: 40, stage: Stage::Closed, evidence: vec![], ..original.clone() };
        // A late open update after the close (resent from an older round) does not reopen it.
        let late = Finding { seq: 3, count: 41, stage: Stage::Update, ..original.clone() };
        insert_batch(&mut conn, "gw-1", 1, &[&closed], 6, &mut Vec::new()).await.unwrap();
        insert_batch(&mut conn, "gw-1", 1, &[&late], 7, &mut Vec::new()).await.unwrap();
        drop(conn);
        let open = |open| FindingQuery { open: Some(open), limit: 10, ..Default::default() };
        assert!(store.query_findings(&open(true)).await.unwrap().is_empty());
        let rows = store.query_findings(&open(false)).await.unwrap();
        assert_eq!((rows.len(), rows[0].count, rows[0].open), (1, 41, false));
        assert_eq!(rows[0].evidence, original.evidence, "an update without evidence keeps it");
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_and_filters_apply() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let mut conn = store.writer().acquire().await.unwrap();
        let batch: Vec<Finding> =
            (1..=5).map(|i| finding(i, if i % 2 == 0 { "ssh.bruteforce" } else { "ssh.other" })).collect();
        insert_batch(&mut conn, "gw-1", 1, &refs(&batch), 5, &mut Vec::new()).await.unwrap();
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
