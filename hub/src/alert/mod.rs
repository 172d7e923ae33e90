//! Alerting: incidents to people, grouped, deduplicated, silenced, and
//! never lost. `config` holds the document (receivers, templates, routes)
//! and the route matching, `template` the rendering, `receivers` the
//! delivery; this module runs them.
//!
//! Three steps, each committed before the next:
//! 1. Grouping: incident changes (`incident_events`: opened, acknowledged,
//!    resolved, reopened) are read after alerting's cursor, woken by the
//!    bus; each incident goes to the groups of the routes it matches (per
//!    route, receiver and `group_by` values), with the cursor in the same
//!    transaction.
//! 2. Flushing: a group is looked at when due (after `group_wait` when
//!    new, then at most every `group_interval`): it notifies if the set of
//!    firing incidents changed, an incident it told of resolved, or
//!    `repeat_interval` passed with one still unacknowledged. Incidents a
//!    silence or maintenance window matches are left out, and so are those
//!    of a router known to be down (an open absence incident about it, or
//!    its open `device.offline` finding): that one is the incident to tell
//!    (inhibition). The decision is
//!    a row of the outbox, committed with the group's new state: once per
//!    change, whatever crashes.
//! 3. Sending: pending outbox rows are delivered, retried with backoff
//!    (10 s doubling to 10 min) for a day, then marked failed. A crash
//!    after delivery and before the mark sends again: at least once, with
//!    the outbox id as the idempotency key (webhook header, e-mail
//!    Message-ID; PagerDuty dedups on the incident).

pub mod config;
pub mod receivers;
pub mod template;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::events::{Bus, Event};
use crate::http::{rfc3339, severity_name};
use crate::store::alerts::{Flush, GroupRow, Grouping};
use crate::store::{now_ms, Store, StoreError};
use config::{AlertConfig, Labels};
use template::{IncidentNote, Notification};

/// How often due groups and the outbox are looked at.
const TICK: Duration = Duration::from_secs(1);
/// A notification is retried for this long, then marked failed.
const GIVE_UP_MS: i64 = 86_400_000;

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs grouping and flushing, and the sender beside them, until the bus closes.
pub async fn run(store: Store, bus: Bus, http: reqwest::Client) {
    let wake = Arc::new(Notify::new());
    // Stopped with this function (a replica that stops leading must not send).
    let sender = tokio::spawn(send_loop(store.clone(), http, wake.clone()));
    let _sender = AbortOnDrop(sender);
    let mut events = bus.subscribe();
    loop {
        match serve(&store, &mut events, &wake).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "alerting stopped; going on in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

async fn serve(
    store: &Store,
    events: &mut tokio::sync::broadcast::Receiver<Arc<Event>>,
    wake: &Notify,
) -> Result<(), StoreError> {
    let mut cursor = store.alert_cursor().await?;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                // A growing incident ("updated") makes no row for grouping.
                Ok(e) if matches!(*e, Event::Incident { change, .. } if change != "updated") => {
                    // A burst of incidents is read in one go: the events
                    // already waiting say nothing the rows do not.
                    while events.try_recv().is_ok() {}
                    group(store, &mut cursor).await?
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => group(store, &mut cursor).await?,
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = tick.tick() => {
                group(store, &mut cursor).await?;
                if flush_due(store, now_ms()).await? > 0 {
                    wake.notify_one();
                }
            }
        }
    }
}

/// The document in force (the shipped default until one is stored).
async fn document(store: &Store) -> Result<Option<AlertConfig>, StoreError> {
    Ok(store.alert_config().await?.map(|(c, _, _)| c))
}

/// The group key of `labels` for `group_by`.
fn group_key(group_by: &[String], labels: &Labels) -> String {
    group_by.iter().map(|l| format!("{l}={}", labels.value(l))).collect::<Vec<_>>().join(",")
}

/// Step 1: the incident changes after `cursor` into their groups.
async fn group(store: &Store, cursor: &mut i64) -> Result<(), StoreError> {
    loop {
        let changes = store.incident_changes(*cursor, 500).await?;
        let Some(&(last, _, _)) = changes.last() else { return Ok(()) };
        let cfg = document(store).await?;
        let now = now_ms();
        let mut entries = Vec::new();
        for (_, incident, _) in &changes {
            let (Some(cfg), Some(labels)) = (&cfg, store.incident_labels(*incident).await?) else { continue };
            for t in cfg.route.targets(&labels) {
                for receiver in &t.receivers {
                    entries.push(Grouping {
                        route: t.route.clone(),
                        receiver: receiver.clone(),
                        group_key: group_key(&t.group_by, &labels),
                        incident: *incident,
                        wait_ms: t.group_wait_ms,
                        interval_ms: t.group_interval_ms,
                        repeat_ms: t.repeat_interval_ms,
                    });
                }
            }
        }
        store.group_incidents(&entries, last, now).await?;
        *cursor = last;
        if changes.len() < 500 {
            return Ok(());
        }
    }
}

/// Step 2: every group due at `now` looked at; returns how many
/// notifications were decided.
async fn flush_due(store: &Store, now: i64) -> Result<usize, StoreError> {
    let groups = store.due_groups(now).await?;
    if groups.is_empty() {
        return Ok(0);
    }
    let cfg = document(store).await?.unwrap_or_default();
    let silences: Vec<_> = store.silences(Some(now)).await?.into_iter().filter(|s| s.starts_ms <= now).collect();
    let windows: Vec<_> = store.maintenance().await?.into_iter().filter(|w| w.active(now)).collect();
    // Inhibition: a router known to be down mutes its other incidents.
    let absence: Vec<String> = crate::correlate::load_rules(store)
        .await?
        .into_iter()
        .filter(|r| r.spec.rule_type == crate::correlate::rule::RuleType::Absence && r.matchers.is_empty())
        .map(|r| r.spec.name)
        .collect();
    let down = store.down_devices(&absence).await?;
    let mut sent = 0;
    for g in groups {
        let mut firing = Vec::new();
        let mut resolved = Vec::new();
        let mut drop = Vec::new();
        let mut any_firing = false;
        for (i, told) in store.group_members(g.id).await? {
            let labels = store.incident_labels(i.id).await?.unwrap_or_default();
            let says_down = absence.contains(&labels.rule) || labels.kinds.iter().any(|k| k == "device.offline");
            let inhibited = !says_down && !labels.devices.is_empty() && labels.devices.iter().all(|d| down.contains(d));
            let muted = inhibited
                || silences.iter().any(|s| s.matchers.matches(&labels))
                || windows.iter().any(|w| w.matchers.matches(&labels));
            if i.state != "resolved" {
                any_firing = true;
                if !muted {
                    firing.push(i);
                }
            } else {
                // Told of firing: tell of its end too (unless muted: it
                // ends quietly); never told: it ends quietly.
                if told && !muted {
                    resolved.push(i.clone());
                }
                drop.push(i.id);
            }
        }
        let digest = {
            let ids: BTreeSet<i64> = firing.iter().map(|i| i.id).collect();
            hex::encode(Sha256::digest(format!("{ids:?}")))
        };
        let changed = !firing.is_empty() && g.last_digest.as_deref() != Some(digest.as_str());
        let repeat = g.last_sent_ms.is_some_and(|t| now - t >= g.repeat_ms) && firing.iter().any(|i| i.state == "open");
        let notify = changed || !resolved.is_empty() || (repeat && !firing.is_empty());
        let mut flush = Flush {
            digest: Some(digest),
            next_ms: any_firing.then_some(now + g.interval_ms.min(g.repeat_ms)),
            drop,
            ..Flush::default()
        };
        if notify {
            match notification(&cfg, &g, &firing, &resolved) {
                Ok(n) => {
                    flush.told = firing.iter().map(|i| i.id).collect();
                    flush.notify = Some((g.receiver.clone(), serde_json::to_string(&n).unwrap_or_default()));
                    sent += 1;
                }
                Err(e) => warn!(group = %g.group_key, receiver = %g.receiver, error = %e, "notification not rendered"),
            }
        }
        if let Some(id) = store.flush_group(&g, &flush, now).await? {
            info!(notification = id, receiver = %g.receiver, group = %g.group_key, firing = firing.len(),
                resolved = resolved.len(), "alert decided");
        }
    }
    Ok(sent)
}

fn note(cfg: &AlertConfig, i: &crate::store::incidents::IncidentRow) -> IncidentNote {
    IncidentNote {
        id: i.id,
        rule: i.rule.clone(),
        key: i.key.clone(),
        severity: severity_name(i.severity).to_owned(),
        state: i.state.clone(),
        reason: i.reason.clone(),
        findings: i.findings,
        devices: i.devices.clone(),
        first: rfc3339(i.first_ms),
        last: rfc3339(i.last_ms),
        link: format!("{}/incidents/{}", cfg.external_url.trim_end_matches('/'), i.id),
    }
}

/// The notification of a group's firing and newly resolved incidents.
fn notification(
    cfg: &AlertConfig,
    g: &GroupRow,
    firing: &[crate::store::incidents::IncidentRow],
    resolved: &[crate::store::incidents::IncidentRow],
) -> Result<Notification, String> {
    let status = if firing.is_empty() { "resolved" } else { "firing" };
    let top = if firing.is_empty() { resolved } else { firing };
    let severity = severity_name(top.iter().map(|i| i.severity).max().unwrap_or(1)).to_owned();
    let title = match (firing, resolved) {
        ([one], []) | ([], [one]) => format!("{} {} on {}", severity_name(one.severity), one.rule, one.key),
        _ => {
            let rules: BTreeSet<&str> = top.iter().map(|i| i.rule.as_str()).collect();
            let rules: Vec<&str> = rules.into_iter().collect();
            format!("{} firing, {} resolved: {}", firing.len(), resolved.len(), rules.join(", "))
        }
    };
    let base = cfg.external_url.trim_end_matches('/');
    let mut n = Notification {
        status: status.into(),
        severity,
        title,
        receiver: g.receiver.clone(),
        group_key: g.group_key.clone(),
        incidents: firing.iter().chain(resolved).map(|i| note(cfg, i)).collect(),
        link: format!("{base}/incidents"),
        subject: String::new(),
        body: String::new(),
    };
    let (s, b) = template::render(&cfg.templates.subject, &cfg.templates.body, &n)?;
    n.subject = s;
    n.body = b;
    Ok(n)
}

/// Step 3: delivers pending notifications until the process ends.
async fn send_loop(store: Store, http: reqwest::Client, wake: Arc<Notify>) {
    loop {
        if let Err(e) = send_due(&store, &http).await {
            warn!(error = %e, "alert outbox not read");
        }
        let _ = tokio::time::timeout(TICK, wake.notified()).await;
    }
}

/// Sends what is due, receiver by receiver in order, until nothing is.
async fn send_due(store: &Store, http: &reqwest::Client) -> Result<(), StoreError> {
    loop {
        let due = store.outbox_due(now_ms(), 50).await?;
        if due.is_empty() {
            return Ok(());
        }
        send_rows(store, http, due).await?;
    }
}

async fn send_rows(
    store: &Store,
    http: &reqwest::Client,
    due: Vec<crate::store::alerts::OutboxRow>,
) -> Result<(), StoreError> {
    let cfg = document(store).await?.unwrap_or_default();
    for row in due {
        let result = match (
            cfg.receivers.iter().find(|r| r.name == row.receiver),
            serde_json::from_value::<Notification>(row.payload.0.clone()),
        ) {
            (None, _) => Err((format!("receiver {:?} is no longer configured", row.receiver), false)),
            (_, Err(e)) => Err((format!("unreadable notification: {e}"), false)),
            (Some(r), Ok(n)) => {
                match tokio::time::timeout(receivers::TIMEOUT, receivers::deliver(r, &n, row.id, http)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err((e, true)),
                    Err(_) => Err((format!("no answer within {} s", receivers::TIMEOUT.as_secs()), true)),
                }
            }
        };
        let now = now_ms();
        match result {
            Ok(()) => {
                info!(notification = row.id, receiver = %row.receiver, attempts = row.attempts + 1, "alert delivered");
                store.outbox_attempt(row.id, Ok(()), now).await?;
            }
            Err((e, retry)) => {
                let backoff = (10_000i64 << row.attempts.min(6)).min(600_000);
                let next = (retry && now - row.created_ms < GIVE_UP_MS).then_some(now + backoff);
                warn!(notification = row.id, receiver = %row.receiver, error = %e, retry_in_ms = next.map(|n| n - now),
                    "alert not delivered");
                store.outbox_attempt(row.id, Err((&e, next)), now).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::engine::{Action, Member};
    use crate::store::test_store;

    fn open(rule: &str, key: &str, members: Vec<Member>) -> Action {
        Action::Open {
            rule: rule.into(),
            key: key.into(),
            severity: 4,
            time_ms: now_ms(),
            members,
            quiet_ms: None,
            why: "test".into(),
        }
    }

    #[tokio::test]
    async fn a_router_known_down_mutes_its_other_incidents_and_silences_mute_theirs() {
        let (store, _dir) = test_store().await;
        let cfg = config::parse_yaml("receivers:\n  - name: log\n    log: {}\nroute:\n  receivers: [log]\n  group_by: [rule]\n  group_wait: 1s\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.check(), []);
        store.put_alert_config(&cfg, "t", 1).await.unwrap();
        for (_, spec) in crate::seed::load_rules(None).unwrap() {
            store.put_rule(&spec, "t", 1).await.unwrap();
        }
        let m = |f, d: &str| Member { finding: f, device: d.into(), time_ms: now_ms() };
        store
            .apply_correlation(
                &[
                    open("brute", "src_ip=192.0.2.1", vec![m(1, "gw-down")]),
                    open("router-gone-quiet", "device=gw-down", vec![]),
                    open("brute", "src_ip=192.0.2.2", vec![m(2, "gw-up")]),
                    open("silenced", "src_ip=192.0.2.3", vec![m(3, "gw-up")]),
                ],
                None,
            )
            .await
            .unwrap();
        let silence = config::Match { rule: vec!["silenced".into()], ..Default::default() };
        store.add_silence(&silence, 0, now_ms() + 60_000, "t", "test", 1).await.unwrap();
        let mut cursor = 0;
        group(&store, &mut cursor).await.unwrap();
        assert_eq!(flush_due(&store, now_ms()).await.unwrap(), 0, "waiting for group_wait");
        assert_eq!(flush_due(&store, now_ms() + 1_000).await.unwrap(), 2, "the brute group and the quiet router");
        let told: Vec<String> = store
            .notifications(None, 10)
            .await
            .unwrap()
            .into_iter()
            .flat_map(|n| {
                let n: Notification = serde_json::from_value(n.payload.0).unwrap();
                n.incidents.into_iter().map(|i| i.key).collect::<Vec<_>>()
            })
            .collect();
        let mut told = told;
        told.sort();
        assert_eq!(
            told,
            ["device=gw-down", "src_ip=192.0.2.2"],
            "gw-down's own brute force waits; the silenced one too"
        );
    }
}
