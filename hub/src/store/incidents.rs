//! Incidents: what the correlator opened, the findings it took into each,
//! their timeline, and what people did with them. The correlator's actions
//! and its cursor are committed together, so a restart neither repeats nor
//! skips a finding.

use std::collections::{BTreeSet, HashMap};

use super::{Dialect, Sql};
use serde::Serialize;

use super::{Store, StoreError, WriteTx};
use crate::correlate::engine::{Action, DeviceInfo, Fact, Member};

/// The states of an incident.
pub const STATES: [&str; 3] = ["open", "acknowledged", "resolved"];

/// A stored incident.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct IncidentRow {
    pub id: i64,
    pub rule: String,
    pub key: String,
    pub severity: i64,
    pub state: String,
    pub reason: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub findings: i64,
    #[sqlx(rename = "devices")]
    #[serde(skip)]
    pub devices_json: String,
    #[sqlx(skip)]
    pub devices: Vec<String>,
    pub quiet_ms: Option<i64>,
    pub changed_by: Option<String>,
    pub changed_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
}

fn finish(mut r: IncidentRow) -> IncidentRow {
    r.devices = serde_json::from_str(&r.devices_json).unwrap_or_default();
    r
}

const COLUMNS: &str = "id, rule, key, severity, state, reason, first_ms, last_ms, findings, devices, quiet_ms,
    changed_by, changed_ms, resolved_ms";

/// One entry of an incident's timeline besides its findings.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct IncidentEvent {
    pub at_ms: i64,
    /// `opened`, `acknowledged`, `resolved`, `reopened`, `comment`.
    pub kind: String,
    pub by: String,
    pub text: String,
}

/// What changed, for the bus (alerting follows incidents through it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentChange {
    pub id: i64,
    /// `opened`, `updated`, `resolved`, `acknowledged`, `reopened`.
    pub change: &'static str,
}

/// Filters and page of an incident query, newest first.
#[derive(Clone, Debug, Default)]
pub struct IncidentQuery {
    pub state: Option<String>,
    pub rule: Option<String>,
    pub min_severity: Option<i64>,
    pub device: Option<String>,
    pub key: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Where a key (an address, a client, a user) was seen: by router.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Sighting {
    pub device: String,
    pub findings: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A findings row as the engine takes it.
type FactRow = (
    i64,
    String,
    i64,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const FACT_COLUMNS: &str =
    "id, device_id, received_ms, agent, kind, severity, src_ip, mac, \"user\", host, iface, service";

fn fact((id, device, t, agent, kind, severity, src_ip, mac, user, host, iface, service): FactRow) -> Fact {
    Fact {
        finding: id,
        device,
        time_ms: t,
        heartbeat: false,
        agent,
        kind,
        severity,
        src_ip,
        mac,
        user,
        host,
        iface,
        service,
    }
}

async fn event(tx: &mut WriteTx, id: i64, at_ms: i64, kind: &str, by: &str, text: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO incident_events (incident_id, at_ms, kind, by, text) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(at_ms)
        .bind(kind)
        .bind(by)
        .bind(text)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Incidents that took members in one transaction: their latest member
/// time, the routers added and the findings, written and brought up to
/// date once at its end (a campaign adds many members to one incident in a
/// batch, and a statement costs a round trip to the database's thread).
type Touched = std::collections::BTreeMap<i64, (i64, BTreeSet<String>, Vec<i64>)>;

/// Adds `members` to incident `id`, written by [`refresh`] at the
/// transaction's end.
fn add_members(touched: &mut Touched, id: i64, members: &[Member], time_ms: i64) {
    let t = touched.entry(id).or_insert((time_ms, BTreeSet::new(), Vec::new()));
    t.0 = t.0.max(time_ms);
    t.1.extend(members.iter().map(|m| m.device.to_string()));
    t.2.extend(members.iter().map(|m| m.finding));
}

/// Member rows per INSERT (two parameters each, well under SQLite's limit).
const MEMBER_ROWS: usize = 400;
/// Incidents per multi-row statement (nine parameters each at most).
const INCIDENT_ROWS: usize = 200;

/// Writes the touched incidents' members, then brings each one's count,
/// routers and last time up to date, a few hundred incidents per statement.
async fn refresh(tx: &mut WriteTx, touched: Touched) -> Result<(), StoreError> {
    let rows: Vec<(i64, i64)> = touched.iter().flat_map(|(id, t)| t.2.iter().map(|f| (*id, *f))).collect();
    for chunk in rows.chunks(MEMBER_ROWS) {
        let mut q = Sql::new(Dialect::of(tx), "INSERT INTO incident_findings (incident_id, finding_id) ");
        q.push_values(chunk, |b, (id, f)| {
            b.bind(id).bind(f);
        });
        q.push(" ON CONFLICT DO NOTHING");
        let (sql, args) = q.finish()?;
        sqlx::query_with(&sql, args).execute(&mut **tx).await?;
    }
    let d = Dialect::of(tx);
    let (max, stored, new) = (d.greatest(), d.json_strings("incidents.devices"), d.json_strings("t.added"));
    let set = d.json_agg("value ORDER BY value");
    let touched: Vec<(i64, i64, String)> = touched
        .into_iter()
        .map(|(id, (time_ms, added, _))| (id, time_ms, serde_json::to_string(&added).unwrap_or_else(|_| "[]".into())))
        .collect();
    for chunk in touched.chunks(INCIDENT_ROWS) {
        // The routers as a sorted set: the stored ones and the new ones.
        let mut q = Sql::new(d, "WITH t (id, last_ms, added) AS (");
        q.push_values(chunk, |b, (id, time_ms, added)| {
            b.bind(*id).bind(*time_ms).bind(added.as_str());
        });
        q.push(format!(
            ") UPDATE incidents SET last_ms = {max}(incidents.last_ms, t.last_ms),
                devices = (SELECT {set} FROM (SELECT value FROM {stored} UNION SELECT value FROM {new}) AS s),
                findings = (SELECT COUNT(*) FROM incident_findings WHERE incident_id = incidents.id)
              FROM t WHERE incidents.id = t.id",
        ));
        let (sql, args) = q.finish()?;
        sqlx::query_with(&sql, args).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Open incidents by rule and key (borrowed from the actions applied).
type OpenIds<'a> = HashMap<(&'a str, &'a str), i64>;

/// The open incidents among `pairs` (rule, key).
async fn open_ids<'k>(tx: &mut WriteTx, pairs: &BTreeSet<(&'k str, &'k str)>) -> Result<OpenIds<'k>, StoreError> {
    let mut out = HashMap::default();
    // Sorted, as the set is: a row finds its pair by binary search.
    let pairs: Vec<(&'k str, &'k str)> = pairs.iter().copied().collect();
    for chunk in pairs.chunks(MEMBER_ROWS) {
        let mut q = Sql::new(
            Dialect::of(tx),
            "SELECT id, rule, key FROM incidents WHERE state != 'resolved' AND (rule, key) IN (",
        );
        q.push_values(chunk, |b, (rule, key)| {
            b.bind(*rule).bind(*key);
        });
        q.push(")");
        let (sql, args) = q.finish()?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
        for (id, rule, key) in rows {
            if let Ok(i) = pairs.binary_search(&(rule.as_str(), key.as_str())) {
                out.insert(pairs[i], id);
            }
        }
    }
    Ok(out)
}

async fn open_id(tx: &mut WriteTx, rule: &str, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT id FROM incidents WHERE rule = $1 AND key = $2 AND state != 'resolved'")
        .bind(rule)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?)
}

/// An incident the engine opened, written with the others of its
/// transaction by [`insert_opened`]; `members` includes later ones.
struct Opening<'a> {
    rule: &'a str,
    key: &'a str,
    severity: i64,
    why: &'a str,
    first_ms: i64,
    time_ms: i64,
    quiet_ms: Option<i64>,
    members: Vec<Member>,
}

/// Inserts the incidents in `opening`, with their "opened" events, a few
/// hundred per statement; records their members in `touched` and their ids
/// in `ids`, and says "opened" for each in `changes`.
async fn insert_opened<'a>(
    tx: &mut WriteTx,
    opening: &mut Vec<Opening<'a>>,
    ids: &mut OpenIds<'a>,
    touched: &mut Touched,
    changes: &mut Vec<IncidentChange>,
) -> Result<(), StoreError> {
    let d = Dialect::of(tx);
    let opened_ms = super::now_ms();
    for chunk in opening.chunks(INCIDENT_ROWS) {
        let mut q = Sql::new(
            d,
            "INSERT INTO incidents (rule, key, severity, reason, first_ms, last_ms, devices, quiet_ms, opened_ms) ",
        );
        q.push_values(chunk, |b, o| {
            // An absence incident is about the router in its key.
            let devices: BTreeSet<&str> = o.key.strip_prefix("device=").into_iter().collect();
            b.bind(o.rule)
                .bind(o.key)
                .bind(o.severity)
                .bind(o.why)
                .bind(o.first_ms)
                .bind(o.time_ms)
                .bind(serde_json::to_string(&devices).unwrap_or_else(|_| "[]".into()))
                .bind(o.quiet_ms)
                .bind(opened_ms);
        });
        q.push(" RETURNING id, rule, key");
        let (sql, args) = q.finish()?;
        // RETURNING gives its rows in no promised order: matched by rule and key.
        let rows: Vec<(i64, String, String)> = sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
        let new: HashMap<(String, String), i64> = rows.into_iter().map(|(id, r, k)| ((r, k), id)).collect();
        let mut events = Sql::new(d, "INSERT INTO incident_events (incident_id, at_ms, kind, by, text) ");
        let mut placed = Vec::with_capacity(chunk.len());
        for o in chunk {
            let id = *new
                .get(&(o.rule.to_owned(), o.key.to_owned()))
                .ok_or_else(|| StoreError::Invalid(format!("incident {} {} was not inserted", o.rule, o.key)))?;
            add_members(touched, id, &o.members, o.time_ms);
            ids.insert((o.rule, o.key), id);
            changes.push(IncidentChange { id, change: "opened" });
            placed.push((id, o));
        }
        events.push_values(&placed, |b, (id, o)| {
            b.bind(*id).bind(o.time_ms).bind("opened").bind(format!("rule:{}", o.rule)).bind(o.why);
        });
        let (sql, args) = events.finish()?;
        sqlx::query_with(&sql, args).execute(&mut **tx).await?;
    }
    opening.clear();
    Ok(())
}

impl Store {
    /// Applies the correlator's actions and moves its cursor to `cursor`
    /// (if given), in one transaction; returns what changed.
    pub async fn apply_correlation(
        &self,
        actions: &[Action],
        cursor: Option<i64>,
    ) -> Result<Vec<IncidentChange>, StoreError> {
        let t0 = std::time::Instant::now();
        let mut tx = self.begin_write().await?;
        let waited_ms = t0.elapsed().as_millis() as u64;
        let mut changes: Vec<IncidentChange> = Vec::new();
        let mut touched = Touched::new();
        // The open incidents the actions may name, looked up at once.
        let named: BTreeSet<(&str, &str)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Open { rule, key, .. } | Action::Append { rule, key, .. } => {
                    Some((rule.as_str(), key.as_str()))
                }
                Action::Resolve { .. } => None,
            })
            .collect();
        let mut ids = if named.is_empty() { HashMap::default() } else { open_ids(&mut tx, &named).await? };
        // Opened by this transaction, inserted together before anything
        // that could read them (a resolve) and at the end.
        let mut opening: Vec<Opening> = Vec::new();
        let mut pending: HashMap<(&str, &str), usize> = HashMap::default();
        // Incidents already in `changes` (a campaign touches one many times).
        let mut said: std::collections::HashSet<i64> = Default::default();
        let mut updated = |changes: &mut Vec<IncidentChange>, id: i64| {
            if said.insert(id) && !changes.iter().any(|c| c.id == id) {
                changes.push(IncidentChange { id, change: "updated" });
            }
        };
        for a in actions {
            match a {
                Action::Open { rule, key, severity, time_ms, members, quiet_ms, why } => {
                    let at = (rule.as_str(), key.as_str());
                    // Already open (the engine did not know it): it grows instead.
                    if let Some(&id) = ids.get(&at) {
                        add_members(&mut touched, id, members, *time_ms);
                        updated(&mut changes, id);
                    } else if let Some(&i) = pending.get(&at) {
                        let o = &mut opening[i];
                        o.members.extend(members.iter().cloned());
                        o.time_ms = o.time_ms.max(*time_ms);
                    } else {
                        pending.insert(at, opening.len());
                        opening.push(Opening {
                            rule,
                            key,
                            severity: *severity,
                            why,
                            first_ms: members.iter().map(|m| m.time_ms).min().unwrap_or(*time_ms),
                            time_ms: *time_ms,
                            quiet_ms: *quiet_ms,
                            members: members.clone(),
                        });
                    }
                }
                Action::Append { rule, key, time_ms, members } => {
                    if let Some(&i) = pending.get(&(rule.as_str(), key.as_str())) {
                        let o = &mut opening[i];
                        o.members.extend(members.iter().cloned());
                        o.time_ms = o.time_ms.max(*time_ms);
                    } else if let Some(&id) = ids.get(&(rule.as_str(), key.as_str())) {
                        add_members(&mut touched, id, members, *time_ms);
                        updated(&mut changes, id);
                    }
                }
                Action::Resolve { rule, key, time_ms, why } => {
                    insert_opened(&mut tx, &mut opening, &mut ids, &mut touched, &mut changes).await?;
                    pending.clear();
                    let id: Option<i64> = sqlx::query_scalar(
                        "UPDATE incidents SET state = 'resolved', resolved_ms = $1, changed_by = 'correlator', changed_ms = $1
                          WHERE rule = $2 AND key = $3 AND state != 'resolved' RETURNING id",
                    )
                    .bind(time_ms)
                    .bind(rule)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    ids.remove(&(rule.as_str(), key.as_str()));
                    if let Some(id) = id {
                        event(&mut tx, id, *time_ms, "resolved", "correlator", why).await?;
                        changes.push(IncidentChange { id, change: "resolved" });
                    }
                }
            }
        }
        insert_opened(&mut tx, &mut opening, &mut ids, &mut touched, &mut changes).await?;
        let incidents = touched.len();
        refresh(&mut tx, touched).await?;
        if let Some(c) = cursor {
            sqlx::query("INSERT INTO correlator_cursor (id, finding_id) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET finding_id = excluded.finding_id")
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // For a person tuning: how long the write waited for the writer
        // (ingest holds it most of the time under load) and took in all.
        tracing::debug!(
            actions = actions.len(),
            incidents,
            waited_ms,
            ms = t0.elapsed().as_millis() as u64,
            "correlation written"
        );
        Ok(changes)
    }

    /// The correlator's cursor: the last finding it took, if it ever ran.
    pub async fn correlator_cursor(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT finding_id FROM correlator_cursor WHERE id = 1")
            .fetch_optional(self.pool())
            .await?)
    }

    /// Findings after `after` (by id), oldest first, at most `limit`.
    pub async fn facts_after(&self, after: i64, limit: u32) -> Result<Vec<Fact>, StoreError> {
        let rows: Vec<FactRow> =
            sqlx::query_as(&format!("SELECT {FACT_COLUMNS} FROM findings WHERE id > $1 ORDER BY id LIMIT $2"))
                .bind(after)
                .bind(limit as i64)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(fact).collect())
    }

    /// Findings stored at or after `since_ms` and up to id `upto`, oldest first.
    pub async fn facts_between(&self, since_ms: i64, upto: i64) -> Result<Vec<Fact>, StoreError> {
        let rows: Vec<FactRow> = sqlx::query_as(&format!(
            "SELECT {FACT_COLUMNS} FROM findings WHERE received_ms >= $1 AND id <= $2 ORDER BY id"
        ))
        .bind(since_ms)
        .bind(upto)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(fact).collect())
    }

    /// Findings stored at or after `since_ms` with an id above `after`,
    /// oldest first, at most `limit`.
    pub async fn facts_since(&self, since_ms: i64, after: i64, limit: u32) -> Result<Vec<Fact>, StoreError> {
        let rows: Vec<FactRow> = sqlx::query_as(&format!(
            "SELECT {FACT_COLUMNS} FROM findings WHERE received_ms >= $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(since_ms)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(fact).collect())
    }

    /// Heartbeats after `after` (received time, then device), oldest
    /// first, at most `limit`, as facts.
    pub async fn heartbeat_facts_page(&self, after: &(i64, String), limit: u32) -> Result<Vec<Fact>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT device_id, received_ms FROM heartbeats WHERE (received_ms, device_id) > ($1, $2)
              ORDER BY received_ms, device_id LIMIT $3",
        )
        .bind(after.0)
        .bind(&after.1)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(device, t)| Fact { device, time_ms: t, heartbeat: true, ..Fact::default() })
            .collect())
    }

    /// Every router with its tags and since when it is expected to talk
    /// (the last message it sent, or its enrolment; `None` if it never
    /// sent one).
    pub async fn correlation_devices(&self) -> Result<Vec<DeviceInfo>, StoreError> {
        let rows: Vec<(String, i64, String, Option<i64>)> =
            sqlx::query_as("SELECT id, created_ms, status, last_seen_ms FROM devices ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        let mut tags: std::collections::HashMap<String, Vec<String>> = Default::default();
        let t: Vec<(String, String)> =
            sqlx::query_as("SELECT device_id, tag FROM device_tags ORDER BY device_id, position")
                .fetch_all(self.pool())
                .await?;
        for (d, tag) in t {
            tags.entry(d).or_default().push(tag);
        }
        Ok(rows
            .into_iter()
            .map(|(id, created, status, last_seen)| DeviceInfo {
                tags: tags.remove(&id).unwrap_or_default(),
                since_ms: (status != "never").then(|| last_seen.unwrap_or(created)),
                created_ms: created,
                id,
            })
            .collect())
    }

    /// The incidents not resolved: `(rule, key, last_ms, quiet_ms)`.
    pub async fn open_incidents(&self) -> Result<Vec<(String, String, i64, Option<i64>)>, StoreError> {
        Ok(sqlx::query_as("SELECT rule, key, last_ms, quiet_ms FROM incidents WHERE state != 'resolved'")
            .fetch_all(self.pool())
            .await?)
    }

    /// Incidents by the filters, newest first.
    pub async fn query_incidents(&self, q: &IncidentQuery) -> Result<Vec<IncidentRow>, StoreError> {
        let mut b = Sql::new(self.dialect(), format!("SELECT {COLUMNS} FROM incidents WHERE 1 = 1"));
        if let Some(s) = &q.state {
            b.push(" AND state = ").push_bind(s);
        }
        if let Some(r) = &q.rule {
            b.push(" AND rule = ").push_bind(r);
        }
        if let Some(s) = q.min_severity {
            b.push(" AND severity >= ").push_bind(s);
        }
        if let Some(d) = &q.device {
            let devices = self.dialect().json_strings("devices");
            b.push(format_args!(" AND EXISTS (SELECT 1 FROM {devices} WHERE value = ")).push_bind(d).push(")");
        }
        if let Some(k) = &q.key {
            b.push(" AND key = ").push_bind(k);
        }
        if let Some(c) = q.before_id {
            b.push(" AND id < ").push_bind(c);
        }
        b.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit as i64);
        let (sql, args) = b.finish()?;
        let rows: Vec<IncidentRow> = sqlx::query_as_with(&sql, args).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(finish).collect())
    }

    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<Option<IncidentRow>, StoreError> {
        let r: Option<IncidentRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(r.map(finish))
    }

    /// The incident's findings, oldest first (at most `limit`).
    pub async fn incident_findings(&self, id: i64, limit: u32) -> Result<Vec<super::FindingRow>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT finding_id FROM incident_findings WHERE incident_id = $1 ORDER BY finding_id LIMIT $2",
        )
        .bind(id)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for f in ids {
            if let Some(row) = self.finding(f).await? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The incident's timeline besides its findings, oldest first.
    pub async fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>, StoreError> {
        Ok(sqlx::query_as("SELECT at_ms, kind, by, text FROM incident_events WHERE incident_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Acknowledges, resolves or reopens (`open`) an incident for `by`;
    /// `None` if there is no such incident, `Some(None)` if it already was
    /// in that state, else what changed. Reopening is refused when another
    /// incident of the rule and key opened since (there is one open per
    /// rule and key): that one is where it goes on.
    pub async fn set_incident_state(
        &self,
        id: i64,
        state: &str,
        by: &str,
        text: &str,
        now_ms: i64,
    ) -> Result<Option<Option<IncidentChange>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some((current, rule, key)): Option<(String, String, String)> =
            sqlx::query_as("SELECT state, rule, key FROM incidents WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        if current == state {
            return Ok(Some(None));
        }
        let kind: &'static str = match (current.as_str(), state) {
            ("open", "acknowledged") => "acknowledged",
            (_, "resolved") => "resolved",
            ("resolved", "open") => "reopened",
            _ => {
                return Err(StoreError::Invalid(format!(
                "an incident that is {current} cannot become {state}: open → acknowledged → resolved, resolved → open"
            )))
            }
        };
        if current == "resolved" && open_id(&mut tx, &rule, &key).await?.is_some() {
            return Err(StoreError::Invalid(format!(
                "another incident of rule {rule} on {key} is open; it is where this one goes on"
            )));
        }
        sqlx::query(
            "UPDATE incidents SET state = $1, changed_by = $2, changed_ms = $3,
                resolved_ms = CASE WHEN $1 = 'resolved' THEN $3 ELSE NULL END WHERE id = $4",
        )
        .bind(state)
        .bind(by)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        event(&mut tx, id, now_ms, kind, by, text).await?;
        tx.commit().await?;
        Ok(Some(Some(IncidentChange { id, change: kind })))
    }

    /// Adds a comment; `false` if there is no such incident.
    pub async fn comment_incident(&self, id: i64, by: &str, text: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM incidents WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Ok(false);
        }
        event(&mut tx, id, now_ms, "comment", by, text).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Which routers reported findings with `field` = `value` (`src_ip`,
    /// `mac`, `user`, `host`, `iface`, `service`), first and last time.
    pub async fn sightings(&self, field: &str, value: &str) -> Result<Vec<Sighting>, StoreError> {
        let column = match field {
            "src_ip" | "mac" | "host" | "iface" | "service" => field,
            // A reserved word in PostgreSQL.
            "user" => "\"user\"",
            _ => return Ok(Vec::new()),
        };
        Ok(sqlx::query_as(&format!(
            "SELECT device_id AS device, COUNT(*) AS findings, MIN(first_ms) AS first_ms, MAX(last_ms) AS last_ms
               FROM findings WHERE {column} = $1 GROUP BY device_id ORDER BY device_id LIMIT 100"
        ))
        .bind(value)
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn member(f: i64, d: &str, t: i64) -> Member {
        Member { finding: f, device: d.into(), time_ms: t }
    }

    #[tokio::test]
    async fn one_open_incident_per_rule_and_key_grows_then_resolves_and_people_move_it() {
        let (store, _dir) = test_store().await;
        let open = |members: Vec<Member>| Action::Open {
            rule: "r".into(),
            key: "src_ip=192.0.2.1".into(),
            severity: 4,
            time_ms: 20,
            members,
            quiet_ms: Some(600_000),
            why: "two steps".into(),
        };
        let c = store
            .apply_correlation(&[open(vec![member(1, "gw-b", 10), member(2, "gw-a", 20)])], Some(2))
            .await
            .unwrap();
        assert_eq!(c, [IncidentChange { id: 1, change: "opened" }]);
        assert_eq!(store.correlator_cursor().await.unwrap(), Some(2));
        // Opened again (an engine that did not know): the same incident grows.
        let c =
            store.apply_correlation(&[open(vec![member(2, "gw-a", 20), member(3, "gw-c", 30)])], None).await.unwrap();
        assert_eq!(c, [IncidentChange { id: 1, change: "updated" }]);
        let i = store.incident(1).await.unwrap().unwrap();
        assert_eq!(
            (i.findings, i.devices.clone(), i.first_ms, i.state.as_str()),
            (3, vec!["gw-a".into(), "gw-b".into(), "gw-c".into()], 10, "open")
        );
        let q = IncidentQuery { device: Some("gw-c".into()), limit: 10, ..Default::default() };
        assert_eq!(store.query_incidents(&q).await.unwrap().len(), 1);

        assert!(store.set_incident_state(1, "acknowledged", "alice", "", 40).await.unwrap().unwrap().is_some());
        assert_eq!(store.set_incident_state(1, "acknowledged", "alice", "", 41).await.unwrap(), Some(None));
        assert!(
            store.set_incident_state(1, "open", "alice", "", 42).await.is_err(),
            "acknowledged → open is not a move"
        );
        let resolve =
            Action::Resolve { rule: "r".into(), key: "src_ip=192.0.2.1".into(), time_ms: 50, why: "quiet".into() };
        let c = store.apply_correlation(std::slice::from_ref(&resolve), None).await.unwrap();
        assert_eq!(c, [IncidentChange { id: 1, change: "resolved" }]);
        assert!(store.apply_correlation(&[resolve], None).await.unwrap().is_empty(), "once");
        // A new campaign of the same key is a new incident; the old one
        // can then not be reopened.
        let c = store.apply_correlation(&[open(vec![member(9, "gw-a", 90)])], None).await.unwrap();
        assert_eq!(c, [IncidentChange { id: 2, change: "opened" }]);
        assert!(store.set_incident_state(1, "open", "alice", "", 95).await.is_err());
        assert!(store.comment_incident(2, "bob", "looking", 96).await.unwrap());
        let kinds: Vec<String> =
            store.incident_events(1).await.unwrap().into_iter().map(|e| format!("{} {}", e.kind, e.by)).collect();
        assert_eq!(kinds, ["opened rule:r", "acknowledged alice", "resolved correlator"]);
        assert_eq!(store.open_incidents().await.unwrap().len(), 1);
    }
}
