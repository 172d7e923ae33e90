//! Playbooks inside the hub: woken by the bus, reading what is stored.
//!
//! Like the correlator: a `Findings` event or an incident opening wakes
//! the runner, which reads the findings and incident openings stored after
//! its cursor (the event says that there is something; the rows say what,
//! so a lagging subscription loses nothing), decides with each enabled
//! playbook ([`Playbook::decide`]), and commits the decisions (audit rows
//! and, for automatic ones, the routers' commands) with the new cursor in
//! one transaction. Then it publishes the commands. A hub that dies in
//! between publishes them when each router next connects (pending commands
//! are sent again then), so nothing decided is lost and nothing is decided
//! twice.
//!
//! Not every match acts: the same action by the same playbook within its
//! `undo_after` (or an hour) is not repeated, whether the earlier one was
//! sent, is waiting, was rejected or taken back by a person (the attacker
//! seen again, or by another router, is one decision); an address on the
//! never-block list is recorded as `skipped` once per window; past a
//! playbook's rate limit one `skipped` row says so and later matches in
//! that window are only logged. The runner remembers these between
//! batches, so a burst of findings about a few addresses costs no query
//! and no row per finding.
//! Every few seconds a tick takes back the blocks and bans whose
//! `undo_after` has passed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

use super::playbook::{Decision, Mode, Playbook, Subject, Target};
use super::Actor;
use crate::correlate::engine::Fact;
use crate::correlate::rule::KeyField;
use crate::events::{Bus, Event};
use crate::store::actions::NewAction;
use crate::store::{now_ms, StoreError};

/// How often undo_after is judged.
pub const TICK: Duration = Duration::from_secs(5);
/// Findings (and incident openings) read per transaction.
const BATCH: u32 = 1000;
/// How long the same action is not repeated when the playbook takes
/// nothing back by itself.
const REPEAT_MS: i64 = 3_600_000;

/// Runs until the bus closes; a database error starts over from the
/// database after a pause (nothing of the failed step was committed).
pub async fn run(actor: Actor, bus: Bus) {
    let mut events = bus.subscribe();
    loop {
        match serve(&actor, &mut events).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "playbooks stopped; starting again in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

async fn serve(
    actor: &Actor,
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>,
) -> Result<(), StoreError> {
    let store = &actor.store;
    let mut cursor = match store.act_cursor().await? {
        Some(c) => c,
        // A new hub acts on what is stored from now on, not on its past.
        None => {
            let c = (store.last_finding_id().await?, store.last_incident_event().await?);
            store.record_decisions(&[], c).await?;
            c
        }
    };
    let mut memory = Memory::default();
    catch_up(actor, &mut cursor, &mut memory).await?;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => match &*e {
                    Event::Findings { .. } | Event::Incident { change: "opened", .. } => {
                        catch_up(actor, &mut cursor, &mut memory).await?
                    }
                    _ => {}
                },
                Err(RecvError::Lagged(_)) => catch_up(actor, &mut cursor, &mut memory).await?,
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = tick.tick() => {
                undo_due(actor).await?;
                catch_up(actor, &mut cursor, &mut memory).await?;
            }
        }
    }
}

/// The enabled playbooks that check.
async fn playbooks(actor: &Actor) -> Result<Vec<Playbook>, StoreError> {
    let mut out = Vec::new();
    for row in actor.store.playbooks().await? {
        if !row.spec.enabled {
            continue;
        }
        let name = row.spec.name.clone();
        match Playbook::compile(row.spec) {
            Ok(p) => out.push(p),
            Err(errors) => warn!(playbook = %name, ?errors, "stored playbook does not check; skipped"),
        }
    }
    Ok(out)
}

fn finding_subject(f: &Fact, tags: &HashMap<String, Vec<String>>) -> Subject {
    let mut fields = BTreeMap::new();
    for (field, value) in [
        (KeyField::SrcIp, &f.src_ip),
        (KeyField::Mac, &f.mac),
        (KeyField::User, &f.user),
        (KeyField::Host, &f.host),
        (KeyField::Iface, &f.iface),
        (KeyField::Service, &f.service),
    ] {
        if let Some(v) = value {
            fields.insert(field.name(), v.clone());
        }
    }
    fields.insert(KeyField::Device.name(), f.device.clone());
    Subject {
        finding: Some(f.finding),
        devices: vec![f.device.clone()],
        tags: tags.get(&f.device).cloned().unwrap_or_default(),
        agent: f.agent.clone(),
        kind: f.kind.clone(),
        severity: f.severity,
        fields,
        ..Subject::default()
    }
}

fn incident_subject(
    (_, id, rule, key, severity, devices): &crate::store::actions::OpenedIncident,
    tags: &HashMap<String, Vec<String>>,
) -> Subject {
    let devices: Vec<String> = serde_json::from_str(devices).unwrap_or_default();
    let mut fields = BTreeMap::new();
    // `src_ip=203.0.113.7`: the field the incident is about.
    if let Some((name, value)) = key.split_once('=') {
        if let Some((n, _)) = KeyField::ALL.iter().find(|(n, _)| *n == name) {
            fields.insert(*n, value.to_owned());
        }
    }
    let mut all_tags: Vec<String> = devices.iter().flat_map(|d| tags.get(d).cloned().unwrap_or_default()).collect();
    all_tags.sort();
    all_tags.dedup();
    Subject {
        incident: Some(*id),
        devices,
        tags: all_tags,
        rule: rule.clone(),
        severity: *severity,
        fields,
        ..Subject::default()
    }
}

/// What the runner keeps between batches, so that a burst of findings
/// about the same few addresses costs a map lookup each, not a query and
/// not an audit row each.
#[derive(Default)]
struct Memory {
    /// (playbook, action as JSON, why it was skipped or "") → when it was
    /// decided or skipped (ms).
    did: HashMap<(String, String, String), i64>,
    /// playbook → (since, actions decided since), for its rate limit.
    rate: HashMap<String, (i64, i64)>,
    /// playbook → the `since` of the window whose limit was recorded.
    rate_noted: HashMap<String, i64>,
}

/// Entries of [`Memory::did`] kept; beyond, it starts afresh (the
/// database still answers).
const MEMORY: usize = 100_000;

/// One decision to store, owned until the batch is written.
struct Decided {
    action: opmas_proto::msg::Action,
    targets: serde_json::Value,
    devices: Vec<String>,
    state: &'static str,
    reason: Option<String>,
    playbook: String,
    /// `playbook:<name>`: who the audit log says asked.
    by: String,
    finding: Option<i64>,
    incident: Option<i64>,
    undo_after_ms: Option<i64>,
}

/// Judges everything stored after `cursor`, a batch per transaction.
async fn catch_up(actor: &Actor, cursor: &mut (i64, i64), memory: &mut Memory) -> Result<(), StoreError> {
    let store = &actor.store;
    loop {
        let facts = store.facts_after(cursor.0, BATCH).await?;
        let opened = store.incidents_opened_after(cursor.1, BATCH).await?;
        if facts.is_empty() && opened.is_empty() {
            return Ok(());
        }
        let next = (facts.last().map_or(cursor.0, |f| f.finding), opened.last().map_or(cursor.1, |o| o.0));
        let books = playbooks(actor).await?;
        let mut decided = Vec::new();
        if !books.is_empty() {
            let tags = store.all_device_tags().await?;
            let all: Vec<String> = store.list_devices().await?.into_iter().map(|d| d.id).collect();
            let subjects = facts
                .iter()
                .map(|f| finding_subject(f, &tags))
                .chain(opened.iter().map(|o| incident_subject(o, &tags)));
            if memory.did.len() > MEMORY {
                memory.did.clear();
            }
            for s in subjects {
                for pb in books.iter().filter(|pb| pb.triggered_by(&s)) {
                    for d in pb.decide(&s) {
                        decide(actor, pb, &s, d, &tags, &all, memory, &mut decided).await?;
                    }
                }
            }
        }
        let finish = decided.is_empty() && facts.len() < BATCH as usize && opened.len() < BATCH as usize;
        let new: Vec<NewAction<'_>> = decided
            .iter()
            .map(|d| NewAction {
                reason: d.reason.as_deref(),
                playbook: Some(&d.playbook),
                finding_id: d.finding,
                incident_id: d.incident,
                undo_after_ms: d.undo_after_ms,
                state: d.state,
                ..NewAction::sent(&d.action, &d.targets, &d.devices, &d.by)
            })
            .collect();
        let rows = store.record_decisions(&new, next).await?;
        *cursor = next;
        for row in &rows {
            info!(action = row.id, playbook = row.playbook.as_deref().unwrap_or(""), state = %row.state,
                  reason = row.reason.as_deref().unwrap_or(""), "playbook decided");
            actor.publish(row).await?;
        }
        if finish {
            return Ok(());
        }
    }
}

/// One step's decision about one subject: what to record, if anything.
#[allow(clippy::too_many_arguments)]
async fn decide(
    actor: &Actor,
    pb: &Playbook,
    s: &Subject,
    d: Decision,
    tags: &HashMap<String, Vec<String>>,
    all: &[String],
    memory: &mut Memory,
    out: &mut Vec<Decided>,
) -> Result<(), StoreError> {
    let name = pb.spec.name.clone();
    let skip = |action: opmas_proto::msg::Action, reason: String| Decided {
        action,
        targets: serde_json::Value::Null,
        devices: Vec::new(),
        state: "skipped",
        reason: Some(reason),
        playbook: name.clone(),
        by: format!("playbook:{name}"),
        finding: s.finding,
        incident: s.incident,
        undo_after_ms: None,
    };
    let now = now_ms();
    let window = pb.undo_after_ms.unwrap_or(REPEAT_MS);
    // The same action (or the same skip) again within the window: the
    // campaign goes on, the decision stands; nothing new to record.
    let recent =
        |memory: &Memory, key: &(String, String, String)| memory.did.get(key).is_some_and(|t| now - t < window);
    let (action, targets) = match d {
        Decision::Skip { action: Some(a), reason, .. } => {
            let key = (name.clone(), serde_json::to_string(&a).unwrap_or_default(), reason.clone());
            if !recent(memory, &key) {
                memory.did.insert(key, now);
                out.push(skip(a, reason));
            }
            return Ok(());
        }
        // Nothing to name as the action: logged, not recorded.
        Decision::Skip { action: None, reason, step } => {
            warn!(playbook = %name, step, %reason, finding = s.finding, incident = s.incident, "playbook step not taken");
            return Ok(());
        }
        Decision::Act { action, targets, .. } => (action, targets),
    };
    let mut devices: Vec<String> = Vec::new();
    for t in &targets {
        let add: Vec<String> = match t {
            Target::Reporting => s.devices.clone(),
            Target::All => all.to_vec(),
            Target::Tag(tag) => tags.iter().filter(|(_, ts)| ts.contains(tag)).map(|(d, _)| d.clone()).collect(),
            Target::Device(d) => all.iter().filter(|a| *a == d).cloned().collect(),
        };
        devices.extend(add);
    }
    devices.sort();
    devices.dedup();
    let key = (name.clone(), serde_json::to_string(&action).unwrap_or_default(), String::new());
    if recent(memory, &key) {
        return Ok(());
    }
    // Not in memory (a restart, or never): the database knows.
    if let Some(t) = actor.store.playbook_did(&name, &action, now - window).await? {
        memory.did.insert(key, t);
        return Ok(());
    }
    memory.did.insert(key, now);
    if devices.is_empty() {
        out.push(skip(action, "no router matches the playbook's targets".into()));
        return Ok(());
    }
    if let Some((max, per)) = pb.rate {
        let (since, before) = match memory.rate.get(&name) {
            Some((since, n)) if now - since < per => (*since, *n),
            _ => (now, actor.store.playbook_actions_since(&name, now - per).await?),
        };
        if before >= i64::from(max) {
            memory.rate.insert(name.clone(), (since, before));
            // One row says the limit was reached; the matches after it in
            // the same window are counted in the log, not recorded each.
            if memory.rate_noted.get(&name) != Some(&since) {
                memory.rate_noted.insert(name.clone(), since);
                let reason = format!(
                    "rate limit: {max} actions in {} already; further matches are not acted on until it passes",
                    crate::correlate::engine::human(per)
                );
                out.push(skip(action, reason));
            } else {
                warn!(playbook = %name, what = %action, "rate limit reached; not acted on");
            }
            return Ok(());
        }
        memory.rate.insert(name.clone(), (since, before + 1));
    }
    let targets_json =
        serde_json::to_value(pb.spec.steps.iter().map(|st| st.targets.items().join(",")).collect::<Vec<_>>())
            .unwrap_or_default();
    let state = match pb.spec.mode {
        Mode::Auto => "sent",
        Mode::Approval => "awaiting_approval",
        Mode::DryRun => "dry_run",
    };
    let undo_after_ms = action.undo().and(pb.undo_after_ms);
    out.push(Decided {
        action,
        targets: targets_json,
        devices,
        state,
        reason: None,
        by: format!("playbook:{name}"),
        playbook: name,
        finding: s.finding,
        incident: s.incident,
        undo_after_ms,
    });
    Ok(())
}

/// Takes back what a playbook's undo_after says is over.
async fn undo_due(actor: &Actor) -> Result<(), StoreError> {
    for row in actor.store.undos_due(now_ms()).await? {
        let by = format!("playbook:{}", row.playbook.as_deref().unwrap_or("?"));
        let after = crate::correlate::engine::human(row.undo_after_ms.unwrap_or_default());
        actor.undo(&row, &by, &format!("undo_after {after} passed")).await?;
    }
    Ok(())
}
