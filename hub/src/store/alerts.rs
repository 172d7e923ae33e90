//! Alerting's tables: the document, the cursor over incident changes, the
//! groups and their incidents, the outbox, silences and maintenance
//! windows.

use serde::Serialize;

use super::incidents::IncidentRow;
use super::{Flag, Store, StoreError};
use crate::alert::config::{AlertConfig, Labels, Match};

/// A group as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GroupRow {
    pub id: i64,
    pub route: String,
    pub receiver: String,
    pub group_key: String,
    pub interval_ms: i64,
    pub repeat_ms: i64,
    pub last_sent_ms: Option<i64>,
    pub last_digest: Option<String>,
}

/// An incident going to a group: the group's identity and timings.
#[derive(Clone, Debug)]
pub struct Grouping {
    pub route: String,
    pub receiver: String,
    pub group_key: String,
    pub incident: i64,
    pub wait_ms: i64,
    pub interval_ms: i64,
    pub repeat_ms: i64,
}

/// What a flush of a group decided.
#[derive(Clone, Debug, Default)]
pub struct Flush {
    /// A notification: the receiver and the payload (JSON).
    pub notify: Option<(String, String)>,
    pub digest: Option<String>,
    pub next_ms: Option<i64>,
    /// Incidents the group is done with (resolved and told).
    pub drop: Vec<i64>,
    /// Incidents the notification tells as firing.
    pub told: Vec<i64>,
}

/// A notification in the outbox.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OutboxRow {
    pub id: i64,
    pub group_id: Option<i64>,
    pub receiver: String,
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub payload: super::config::Json,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
}

/// A silence.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Silence {
    pub id: i64,
    pub matchers: Match,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub created_ms: i64,
}

/// A weekly maintenance window.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Maintenance {
    pub id: i64,
    pub name: String,
    pub matchers: Match,
    /// `mon`..`sun`.
    pub days: Vec<String>,
    /// Minutes after midnight, UTC.
    pub start_min: i64,
    pub duration_ms: i64,
    pub created_by: String,
}

/// The weekdays, Monday first, as maintenance windows name them.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Maintenance {
    /// True if the window is on at `now_ms`: on one of its days, from its
    /// start for its duration (which may run into the next day).
    pub fn active(&self, now_ms: i64) -> bool {
        const DAY: i64 = 86_400_000;
        // 1970-01-01 was a Thursday (index 3).
        let today = now_ms.div_euclid(DAY);
        (0..=self.duration_ms / DAY + 1).any(|back| {
            let day = today - back;
            let weekday = DAYS[((day + 3).rem_euclid(7)) as usize];
            let start = day * DAY + self.start_min * 60_000;
            self.days.iter().any(|d| d == weekday) && now_ms >= start && now_ms < start + self.duration_ms
        })
    }
}

type SilenceRow = (i64, String, i64, i64, String, String, i64);

impl Store {
    /// The alerting document and who changed it last.
    pub async fn alert_config(&self) -> Result<Option<(AlertConfig, String, i64)>, StoreError> {
        let r: Option<(String, String, i64)> =
            sqlx::query_as("SELECT doc, updated_by, updated_ms FROM alert_config WHERE id = 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(r.and_then(|(doc, by, ms)| serde_json::from_str(&doc).ok().map(|c| (c, by, ms))))
    }

    /// Replaces the alerting document (check it first).
    pub async fn put_alert_config(&self, cfg: &AlertConfig, by: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alert_config (id, doc, updated_by, updated_ms) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
        )
        .bind(serde_json::to_string(cfg).unwrap_or_default())
        .bind(by)
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Stores `cfg` unless there is a document already; `true` if stored.
    pub async fn seed_alert_config(&self, cfg: &AlertConfig, source: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO alert_config (id, doc, updated_by, updated_ms) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(serde_json::to_string(cfg).unwrap_or_default())
        .bind(format!("seed:{source}"))
        .bind(now_ms)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Alerting's cursor over `incident_events`; at the first run, the
    /// newest event (what happened before alerting existed is not sent).
    pub async fn alert_cursor(&self) -> Result<i64, StoreError> {
        let c: Option<i64> =
            sqlx::query_scalar("SELECT event_id FROM alert_cursor WHERE id = 1").fetch_optional(self.pool()).await?;
        if let Some(c) = c {
            return Ok(c);
        }
        let newest: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM incident_events").fetch_one(self.pool()).await?;
        sqlx::query("INSERT INTO alert_cursor (id, event_id) VALUES (1, $1) ON CONFLICT DO NOTHING")
            .bind(newest)
            .execute(self.writer())
            .await?;
        Ok(newest)
    }

    /// Incident changes after `after`: `(event id, incident id, kind)`,
    /// oldest first (comments are not changes).
    pub async fn incident_changes(&self, after: i64, limit: u32) -> Result<Vec<(i64, i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, incident_id, kind FROM incident_events WHERE id > $1 AND kind != 'comment' ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?)
    }

    /// What routes match an incident on.
    pub async fn incident_labels(&self, id: i64) -> Result<Option<Labels>, StoreError> {
        let Some(i) = self.incident(id).await? else { return Ok(None) };
        let pairs: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT f.agent, f.kind FROM incident_findings m JOIN findings f ON f.id = m.finding_id
              WHERE m.incident_id = $1",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        // The routers' tags in one query (an incident may span the fleet).
        let devices = self.dialect().json_strings("$1");
        let mut tags: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT tag FROM device_tags WHERE device_id IN (SELECT value FROM {devices})"
        ))
        .bind(serde_json::to_string(&i.devices).unwrap_or_else(|_| "[]".into()))
        .fetch_all(self.pool())
        .await?;
        tags.sort();
        let mut agents: Vec<String> = pairs.iter().map(|(a, _)| a.clone()).collect();
        agents.sort();
        agents.dedup();
        let mut kinds: Vec<String> = pairs.into_iter().map(|(_, k)| k).collect();
        kinds.sort();
        kinds.dedup();
        Ok(Some(Labels { rule: i.rule, severity: i.severity, key: i.key, devices: i.devices, tags, agents, kinds }))
    }

    /// Puts incidents into their groups (creating a group due after its
    /// wait, or bringing an idle one forward to its interval) and moves the
    /// cursor, in one transaction.
    pub async fn group_incidents(&self, entries: &[Grouping], cursor: i64, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for g in entries {
            let (max, min) = (self.dialect().greatest(), self.dialect().least());
            let id: i64 = sqlx::query_scalar(&format!(
                "INSERT INTO alert_groups (route, receiver, group_key, created_ms, interval_ms, repeat_ms, next_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $4 + $7)
                 ON CONFLICT (route, receiver, group_key) DO UPDATE SET
                    interval_ms = excluded.interval_ms, repeat_ms = excluded.repeat_ms,
                    next_ms = CASE WHEN alert_groups.next_ms IS NULL
                        THEN {max}($4, COALESCE(alert_groups.last_sent_ms + excluded.interval_ms, $4 + $7))
                        ELSE {min}(alert_groups.next_ms,
                                   {max}($4, COALESCE(alert_groups.last_sent_ms + excluded.interval_ms, alert_groups.next_ms)))
                        END
                 RETURNING id",
            ))
            .bind(&g.route)
            .bind(&g.receiver)
            .bind(&g.group_key)
            .bind(now_ms)
            .bind(g.interval_ms)
            .bind(g.repeat_ms)
            .bind(g.wait_ms)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO alert_group_incidents (group_id, incident_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(g.incident)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO alert_cursor (id, event_id) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id")
            .bind(cursor)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Groups due at `now_ms`.
    pub async fn due_groups(&self, now_ms: i64) -> Result<Vec<GroupRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, route, receiver, group_key, interval_ms, repeat_ms, last_sent_ms, last_digest
               FROM alert_groups WHERE next_ms <= $1 ORDER BY next_ms LIMIT 500",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// A group's incidents, each with whether a notification told of it.
    pub async fn group_members(&self, group: i64) -> Result<Vec<(IncidentRow, bool)>, StoreError> {
        let ids: Vec<(i64, Flag)> = sqlx::query_as(
            "SELECT incident_id, told FROM alert_group_incidents WHERE group_id = $1 ORDER BY incident_id",
        )
        .bind(group)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, told) in ids {
            if let Some(i) = self.incident(id).await? {
                out.push((i, told.0));
            }
        }
        Ok(out)
    }

    /// Records a flush of group `g`: its notification into the outbox (due
    /// at once), its digest and next time, the incidents it is done with;
    /// a group left with no incidents and nothing to do goes. Returns the
    /// outbox id.
    pub async fn flush_group(&self, g: &GroupRow, f: &Flush, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut outbox = None;
        if let Some((receiver, payload)) = &f.notify {
            outbox = Some(
                sqlx::query_scalar(
                    "INSERT INTO alert_outbox (group_id, receiver, payload, next_attempt_ms, created_ms) VALUES ($1, $2, $3, $4, $4)
                     RETURNING id",
                )
                .bind(g.id)
                .bind(receiver)
                .bind(payload)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?,
            );
        }
        let sent = if outbox.is_some() { Some(now_ms) } else { g.last_sent_ms };
        sqlx::query("UPDATE alert_groups SET next_ms = $1, last_sent_ms = $2, last_digest = $3 WHERE id = $4")
            .bind(f.next_ms)
            .bind(sent)
            .bind(f.digest.as_ref().or(g.last_digest.as_ref()))
            .bind(g.id)
            .execute(&mut *tx)
            .await?;
        for i in &f.told {
            sqlx::query("UPDATE alert_group_incidents SET told = 1 WHERE group_id = $1 AND incident_id = $2")
                .bind(g.id)
                .bind(i)
                .execute(&mut *tx)
                .await?;
        }
        for i in &f.drop {
            sqlx::query("DELETE FROM alert_group_incidents WHERE group_id = $1 AND incident_id = $2")
                .bind(g.id)
                .bind(i)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM alert_groups WHERE id = $1 AND next_ms IS NULL
                AND NOT EXISTS (SELECT 1 FROM alert_group_incidents WHERE group_id = $1)",
        )
        .bind(g.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outbox)
    }

    /// Notifications due for (another) delivery attempt: of each receiver
    /// only its oldest pending one, so that a receiver gets them in order
    /// (never a resolution before the alert it ends, while that one waits
    /// for a retry).
    pub async fn outbox_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, group_id, receiver, payload, state, attempts, next_attempt_ms, last_error, created_ms, sent_ms
               FROM alert_outbox o WHERE state = 'pending' AND next_attempt_ms <= $1
                AND NOT EXISTS (SELECT 1 FROM alert_outbox p WHERE p.receiver = o.receiver AND p.state = 'pending' AND p.id < o.id)
              ORDER BY id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?)
    }

    /// A delivery attempt's end: sent, or its error and when to try again
    /// (`None`: given up, `failed`).
    pub async fn outbox_attempt(
        &self,
        id: i64,
        result: Result<(), (&str, Option<i64>)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let q = match result {
            Ok(()) => sqlx::query("UPDATE alert_outbox SET state = 'sent', attempts = attempts + 1, sent_ms = $1, last_error = NULL WHERE id = $2")
                .bind(now_ms)
                .bind(id),
            Err((error, Some(next))) => {
                sqlx::query("UPDATE alert_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_ms = $2 WHERE id = $3")
                    .bind(error.to_owned())
                    .bind(next)
                    .bind(id)
            }
            Err((error, None)) => sqlx::query("UPDATE alert_outbox SET state = 'failed', attempts = attempts + 1, last_error = $1 WHERE id = $2")
                .bind(error.to_owned())
                .bind(id),
        };
        q.execute(self.writer()).await?;
        Ok(())
    }

    /// The newest notifications (the log), optionally of one state.
    pub async fn notifications(&self, state: Option<&str>, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, group_id, receiver, payload, state, attempts, next_attempt_ms, last_error, created_ms, sent_ms
               FROM alert_outbox WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(state)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?)
    }

    /// Routers known to be down: an open incident of one of `absence_rules`
    /// is about them (key `device=<id>`), or their `device.offline` finding
    /// is open. Their other incidents are inhibited: the one that says the
    /// router is down is the one worth telling.
    pub async fn down_devices(
        &self,
        absence_rules: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut down: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT device_id FROM findings WHERE kind = 'device.offline' AND open = 1")
                .fetch_all(self.pool())
                .await?
                .into_iter()
                .collect();
        for (rule, key, _, _) in self.open_incidents().await? {
            if let Some(d) = key.strip_prefix("device=").filter(|_| absence_rules.contains(&rule)) {
                down.insert(d.to_owned());
            }
        }
        Ok(down)
    }

    /// Notifications by receiver and state.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT receiver, state, COUNT(*) FROM alert_outbox GROUP BY receiver, state ORDER BY receiver, state",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Each receiver with pending notifications, and whether the oldest
    /// of them failed its last attempt (the receiver is failing now).
    pub async fn receiver_health(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let rows: Vec<(String, Flag)> = sqlx::query_as(
            "SELECT receiver, CASE WHEN last_error IS NULL THEN 0 ELSE 1 END FROM alert_outbox o WHERE state = 'pending'
                AND NOT EXISTS (SELECT 1 FROM alert_outbox p WHERE p.receiver = o.receiver AND p.state = 'pending' AND p.id < o.id)
              ORDER BY receiver",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(r, failing)| (r, failing.0)).collect())
    }

    /// Incidents open and acknowledged.
    pub async fn incident_counts(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(CASE WHEN state = 'open' THEN 1 END), COUNT(CASE WHEN state = 'acknowledged' THEN 1 END) FROM incidents",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Adds a silence; returns its id.
    pub async fn add_silence(
        &self,
        m: &Match,
        starts_ms: i64,
        ends_ms: i64,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO silences (matchers, starts_ms, ends_ms, created_by, comment, created_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(serde_json::to_string(m).unwrap_or_default())
        .bind(starts_ms)
        .bind(ends_ms)
        .bind(by)
        .bind(comment)
        .bind(now_ms)
        .fetch_one(self.writer())
        .await?)
    }

    /// Silences that have not ended by `now_ms` (active or to come), or all.
    pub async fn silences(&self, now_ms: Option<i64>) -> Result<Vec<Silence>, StoreError> {
        let rows: Vec<SilenceRow> = sqlx::query_as(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment, created_ms FROM silences
              WHERE $1 IS NULL OR ends_ms > $1 ORDER BY id DESC LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, m, starts_ms, ends_ms, created_by, comment, created_ms)| Silence {
                id,
                matchers: serde_json::from_str(&m).unwrap_or_default(),
                starts_ms,
                ends_ms,
                created_by,
                comment,
                created_ms,
            })
            .collect())
    }

    /// Ends a silence now; `false` if there is none with that id (or it had ended).
    pub async fn expire_silence(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE silences SET ends_ms = $1 WHERE id = $2 AND ends_ms > $1")
            .bind(now_ms)
            .bind(id)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Adds a maintenance window; returns its id.
    pub async fn add_maintenance(&self, w: &Maintenance, now_ms: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO maintenance (name, matchers, days, start_min, duration_ms, created_by, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&w.name)
        .bind(serde_json::to_string(&w.matchers).unwrap_or_default())
        .bind(w.days.join(","))
        .bind(w.start_min)
        .bind(w.duration_ms)
        .bind(&w.created_by)
        .bind(now_ms)
        .fetch_one(self.writer())
        .await?)
    }

    /// Every maintenance window.
    pub async fn maintenance(&self) -> Result<Vec<Maintenance>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64, i64, String)> = sqlx::query_as(
            "SELECT id, name, matchers, days, start_min, duration_ms, created_by FROM maintenance ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, m, days, start_min, duration_ms, created_by)| Maintenance {
                id,
                name,
                matchers: serde_json::from_str(&m).unwrap_or_default(),
                days: days.split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect(),
                start_min,
                duration_ms,
                created_by,
            })
            .collect())
    }

    /// Deletes a maintenance window; `false` if there is none with that id.
    pub async fn delete_maintenance(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM maintenance WHERE id = $1").bind(id).execute(self.writer()).await?.rows_affected()
            == 1)
    }

    /// Each receiver's newest notification with an error: while the
    /// receiver is failing, its oldest pending one (those after it wait
    /// their turn, untried); else the newest it gave up on. Receivers
    /// whose notifications all went through have none.
    pub async fn receiver_errors(&self) -> Result<Vec<ReceiverError>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT o.receiver, o.id, o.state, o.last_error AS error, o.attempts, o.next_attempt_ms
               FROM alert_outbox o
               JOIN (SELECT MAX(id) AS id FROM alert_outbox WHERE last_error IS NOT NULL GROUP BY receiver) n ON n.id = o.id
              ORDER BY o.receiver",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

/// A receiver's newest delivery error ([`Store::receiver_errors`]).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReceiverError {
    pub receiver: String,
    /// The notification's id.
    pub id: i64,
    /// `pending` (to be tried again at `next_attempt_ms`) or `failed`.
    pub state: String,
    pub error: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weekly_window_is_on_its_days_and_may_run_past_midnight() {
        // Sunday 2026-11-29 23:00 UTC for 3 h: until Monday 02:00.
        let w = Maintenance {
            id: 1,
            name: "w".into(),
            matchers: Match::default(),
            days: vec!["sun".into()],
            start_min: 23 * 60,
            duration_ms: 3 * 3_600_000,
            created_by: "a".into(),
        };
        let at = |s: &str| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
                * 1000
        };
        assert!(!w.active(at("2026-11-29T22:59:00Z")));
        assert!(w.active(at("2026-11-29T23:00:00Z")));
        assert!(w.active(at("2026-11-30T01:59:00Z")), "into Monday");
        assert!(!w.active(at("2026-11-30T02:00:00Z")));
        assert!(!w.active(at("2026-11-30T23:30:00Z")), "Monday is not its day");
    }
}
