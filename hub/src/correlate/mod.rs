//! Correlation: rules over the stored findings and heartbeats, turned into
//! incidents. `rule` holds the rule documents and their checks, `engine`
//! the pure matching; this module runs the engine inside the hub.
//!
//! Streaming, and exactly once: the correlator takes the rows that
//! `Findings` events of the bus carry (ingest hands over what it stored)
//! while their ids continue its cursor, and reads the findings stored
//! after the cursor from the database whenever they do not (a gap, an
//! event without rows, a lagging subscription), so nothing is skipped or
//! fed twice. The incidents those findings make and the new cursor are
//! committed in one transaction. At start, and
//! whenever rules change, it rebuilds: rules and open incidents from the
//! database, then the windows from the findings stored within the longest
//! window up to the cursor, fed without acting (their incidents exist
//! already), then on from the cursor. No half-open window is lost and no
//! incident doubled. Every few seconds a tick resolves quiet incidents,
//! opens absence incidents, and re-reads open incidents and routers (a
//! person may have resolved one, a router may have new tags).

pub mod engine;
pub mod replay;
pub mod rule;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{debug, info, warn};

use crate::events::{Bus, Event};
use crate::stats::{bump, Stats};
use crate::store::{now_ms, Store, StoreError};
use engine::{Action, Engine, Fact};
use rule::Rule;

/// How often quiet and absence are judged and open incidents re-read.
pub const TICK: Duration = Duration::from_secs(5);
/// Findings read per transaction when catching up.
const BATCH: u32 = 8000;

/// The rules stored and enabled, checked; a stored rule that no longer
/// checks (a later version refuses it) is skipped with a warning.
pub async fn load_rules(store: &Store) -> Result<Vec<Rule>, StoreError> {
    let mut rules = Vec::new();
    for row in store.rules().await? {
        let name = row.spec.name.clone();
        match Rule::compile(row.spec) {
            Ok(r) => rules.push(r),
            Err(errors) => warn!(rule = %name, ?errors, "stored rule does not check; skipped"),
        }
    }
    Ok(rules)
}

/// The engine with the database's rules, routers and open incidents, its
/// windows rebuilt from the findings up to the cursor; and the cursor.
async fn rebuild(store: &Store) -> Result<(Engine, i64), StoreError> {
    let rules = load_rules(store).await?;
    let longest = rules.iter().map(|r| r.window_ms).max().unwrap_or(0);
    let n = rules.len();
    let mut engine = Engine::new(rules);
    engine.set_devices(store.correlation_devices().await?);
    let cursor = match store.correlator_cursor().await? {
        Some(c) => c,
        // The first run: from the findings stored from now on.
        None => {
            let c = store.last_finding_id().await?;
            store.apply_correlation(&[], Some(c)).await?;
            c
        }
    };
    let facts = store.facts_between(now_ms() - longest, cursor).await?;
    for f in &facts {
        engine.feed(f);
    }
    restore_open(store, &mut engine).await?;
    info!(rules = n, replayed = facts.len(), open = engine.open_count(), cursor, "correlator ready");
    Ok((engine, cursor))
}

async fn restore_open(store: &Store, engine: &mut Engine) -> Result<(), StoreError> {
    engine.forget_open();
    for (rule, key, last, quiet) in store.open_incidents().await? {
        engine.restore_open(&rule, &key, last, quiet);
    }
    Ok(())
}

/// Applies `actions` (and the cursor) and tells the bus what changed.
async fn apply(
    store: &Store,
    bus: &Bus,
    stats: &Stats,
    actions: &[Action],
    cursor: Option<i64>,
) -> Result<(), StoreError> {
    if actions.is_empty() && cursor.is_none() {
        return Ok(());
    }
    for a in actions {
        match a {
            Action::Open { rule, key, why, .. } => info!(%rule, %key, %why, "incident opened"),
            Action::Resolve { rule, key, why, .. } => info!(%rule, %key, %why, "incident resolved"),
            Action::Append { .. } => {}
        }
    }
    let changes = store.apply_correlation(actions, cursor).await?;
    for c in &changes {
        if c.change == "opened" {
            bump(&stats.incidents_opened);
        }
    }
    bus.publish(changes.into_iter().map(|c| Event::Incident { id: c.id, change: c.change }));
    Ok(())
}

/// The correlator's writes, one transaction in flight: the engine feeds
/// the next batch while the last one commits, which halves the time a
/// finding waits during a burst (reading the rules' actions and writing
/// them take about as long each). Writes commit in the order submitted.
/// Whatever reads what they write (the tick re-reading open incidents, a
/// rebuild) waits for them first ([`Committer::flush`]); a write that fails
/// is reported at the next submit or flush, and the correlator rebuilds
/// from the database.
struct Committer {
    store: Store,
    bus: Bus,
    stats: Arc<Stats>,
    in_flight: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
}

impl Committer {
    fn new(store: &Store, bus: &Bus, stats: &Arc<Stats>) -> Committer {
        Committer { store: store.clone(), bus: bus.clone(), stats: stats.clone(), in_flight: None }
    }

    /// Waits until everything submitted is committed.
    async fn flush(&mut self) -> Result<(), StoreError> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(h) => h.await.map_err(|e| StoreError::Invalid(format!("correlator write stopped: {e}")))?,
        }
    }

    /// Commits `actions` and `cursor` after what was submitted before.
    async fn submit(&mut self, actions: Vec<Action>, cursor: Option<i64>) -> Result<(), StoreError> {
        self.flush().await?;
        if actions.is_empty() && cursor.is_none() {
            return Ok(());
        }
        let (store, bus, stats) = (self.store.clone(), self.bus.clone(), self.stats.clone());
        self.in_flight = Some(tokio::spawn(async move { apply(&store, &bus, &stats, &actions, cursor).await }));
        Ok(())
    }

    /// After `n` findings up to `last` were fed (since `started`): submits
    /// what they caused with the cursor at `last`, and counts them.
    async fn fed(
        &mut self,
        actions: Vec<Action>,
        cursor: &mut i64,
        last: i64,
        n: usize,
        started: std::time::Instant,
        from: &str,
    ) -> Result<(), StoreError> {
        let fed_ms = started.elapsed().as_millis() as u64;
        self.submit(actions, Some(last)).await?;
        let waited_ms = started.elapsed().as_millis() as u64 - fed_ms;
        debug!(facts = n, fed_ms, waited_ms, from, "correlation batch fed");
        self.stats.findings_correlated.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        *cursor = last;
        Ok(())
    }
}

impl Drop for Committer {
    /// A correlator that stops (an error; it rebuilds from the database)
    /// must not have a write land after its rebuild read the database: the
    /// write is cut off, rolled back unless it had committed.
    fn drop(&mut self) {
        if let Some(h) = self.in_flight.take() {
            h.abort();
        }
    }
}

/// Feeds the findings stored after `cursor`, a batch per transaction.
/// While the engine feeds one batch, the next is read (on the database's
/// own thread) and the one before is written: each finding waits for the
/// slowest of the three steps, not for their sum.
async fn catch_up(store: &Store, out: &mut Committer, engine: &mut Engine, cursor: &mut i64) -> Result<(), StoreError> {
    let read = |after: i64| {
        let store = store.clone();
        tokio::spawn(async move { store.facts_after(after, BATCH).await })
    };
    let mut next = read(*cursor);
    loop {
        let facts = (&mut next).await.map_err(|e| StoreError::Invalid(format!("correlator read stopped: {e}")))??;
        let Some(last) = facts.last().map(|f| f.finding) else { return Ok(()) };
        let full = facts.len() == BATCH as usize;
        if full {
            next = read(last);
        }
        let t = std::time::Instant::now();
        let (facts, actions) = apart(engine, move |e| {
            let actions: Vec<Action> = facts.iter().flat_map(|f| e.feed(f)).collect();
            (facts, actions)
        })
        .await?;
        out.fed(actions, cursor, last, facts.len(), t, "the database").await?;
        if !full {
            return Ok(());
        }
    }
}

/// Feeds the rows that findings events carry (ingest hands them over
/// from the transaction that stored them), as long as they continue the
/// cursor without a gap; and reads the database from the cursor on when
/// they do not (an event that carries none, one published out of order,
/// an id the database skipped, a subscription that lagged, another
/// replica's findings). The events' rows are the database's rows after
/// the commit, so either way the engine sees the same findings in the same
/// order; reading them back cost the hub a fifth of its time at 10,000
/// findings/s.
async fn take(
    store: &Store,
    out: &mut Committer,
    engine: &mut Engine,
    cursor: &mut i64,
    events: &[Arc<Event>],
    lagged: bool,
) -> Result<(), StoreError> {
    let t = std::time::Instant::now();
    let from = *cursor;
    let events = events.to_vec();
    let (actions, last, read) = apart(engine, move |engine| {
        let mut actions = Vec::new();
        let mut last = from;
        let mut read = lagged;
        'events: for e in &events {
            let Event::Findings { stored, .. } = &**e else { continue };
            let Some(facts) = stored else {
                read = true;
                break;
            };
            for f in facts {
                if f.finding <= last {
                    continue;
                }
                if f.finding != last + 1 {
                    read = true;
                    break 'events;
                }
                actions.extend(engine.feed(f));
                last = f.finding;
            }
        }
        (actions, last, read)
    })
    .await?;
    if last > *cursor {
        let n = (last - *cursor) as usize;
        out.fed(actions, cursor, last, n, t, "ingest").await?;
    }
    if read {
        catch_up(store, out, engine, cursor).await?;
    }
    Ok(())
}

/// Runs `work` on the engine on a blocking thread: feeding a batch takes
/// tens of milliseconds, which on a runtime worker would hold back every
/// task queued behind it (ingest's database round trips among them).
async fn apart<R: Send + 'static>(
    engine: &mut Engine,
    work: impl FnOnce(&mut Engine) -> R + Send + 'static,
) -> Result<R, StoreError> {
    let mut owned = std::mem::take(engine);
    let (owned, r) = tokio::task::spawn_blocking(move || {
        let r = work(&mut owned);
        (owned, r)
    })
    .await
    // The engine is lost with the thread: the correlator rebuilds.
    .map_err(|e| StoreError::Invalid(format!("correlator engine stopped: {e}")))?;
    *engine = owned;
    Ok(r)
}

/// How many new rows a findings event carries.
fn stored_len(e: &Event) -> usize {
    match e {
        Event::Findings { stored: Some(rows), .. } => rows.len(),
        _ => 0,
    }
}

/// Runs until the bus closes. A database error rebuilds from the database
/// after a pause (nothing was committed of the failed step).
pub async fn run(store: Store, bus: Bus, stats: Arc<Stats>) {
    let mut events = bus.subscribe();
    loop {
        match serve(&store, &bus, &stats, &mut events).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "correlator stopped; rebuilding in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// One life of the engine: `Ok` when the bus closed.
async fn serve(
    store: &Store,
    bus: &Bus,
    stats: &Arc<Stats>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<Event>>,
) -> Result<(), StoreError> {
    'rebuild: loop {
        let (mut engine, mut cursor) = rebuild(store).await?;
        let mut out = Committer::new(store, bus, stats);
        catch_up(store, &mut out, &mut engine, &mut cursor).await?;
        let mut tick = tokio::time::interval(TICK);
        // An event taken off the bus while gathering findings events.
        let mut next: Option<Arc<Event>> = None;
        loop {
            let e = match next.take() {
                Some(e) => Ok(e),
                None => tokio::select! {
                    e = events.recv() => e,
                    _ = tick.tick() => {
                        // The open incidents are re-read: what is in flight first.
                        out.flush().await?;
                        engine.set_devices(store.correlation_devices().await?);
                        restore_open(store, &mut engine).await?;
                        let actions = engine.tick(now_ms());
                        out.submit(actions, None).await?;
                        catch_up(store, &mut out, &mut engine, &mut cursor).await?;
                        continue;
                    }
                },
            };
            match e {
                Ok(e) => match &*e {
                    Event::Findings { .. } => {
                        // What else is waiting is fed and written with it.
                        let mut batch = vec![e.clone()];
                        let mut rows = stored_len(&e);
                        let mut lagged = false;
                        while rows < BATCH as usize {
                            match events.try_recv() {
                                Ok(e) if matches!(*e, Event::Findings { .. }) => {
                                    rows += stored_len(&e);
                                    batch.push(e);
                                }
                                Ok(e) => {
                                    next = Some(e);
                                    break;
                                }
                                Err(TryRecvError::Lagged(n)) => {
                                    warn!(
                                        missed = n,
                                        "correlator fell behind the event bus; reading on from the database"
                                    );
                                    lagged = true;
                                    break;
                                }
                                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                            }
                        }
                        take(store, &mut out, &mut engine, &mut cursor, &batch, lagged).await?
                    }
                    Event::Heartbeat { device, .. } => {
                        let fact =
                            Fact { device: device.to_string(), time_ms: now_ms(), heartbeat: true, ..Fact::default() };
                        let actions = engine.feed(&fact);
                        out.submit(actions, None).await?;
                    }
                    Event::Rules => {
                        out.flush().await?;
                        continue 'rebuild;
                    }
                    _ => {}
                },
                // The findings are in the database; the next catch-up reads them.
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "correlator fell behind the event bus; reading on from the database");
                    catch_up(store, &mut out, &mut engine, &mut cursor).await?;
                }
                Err(RecvError::Closed) => return out.flush().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::incidents::IncidentQuery;
    use crate::store::test_store;
    use crate::store::uplink::{Apply, Uplink};
    use opmas_proto::msg::{Finding, FindingBatch, Severity, Stage, Subject};
    use opmas_proto::DeviceId;
    use std::collections::HashMap;

    /// Stores finding `seq` of gw-1 (one transaction) and returns its events.
    async fn store_one(store: &Store, seq: u64) -> Vec<Event> {
        let f = Finding {
            seq,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::HIGH,
            subject: Subject { src_ip: Some("203.0.113.5".parse().unwrap()), ..Default::default() },
            count: 5,
            first_ms: 1000 + seq,
            last_ms: 2000 + seq,
            summary: "s".into(),
            evidence: vec![],
            stage: Stage::New,
        };
        let b = FindingBatch { epoch: 7, floor: seq, round: 0, findings: vec![f] };
        let msg = [(DeviceId::new("gw-1").unwrap(), Uplink::Findings(b))];
        store.apply_uplink(&msg, &HashMap::new(), Apply::Together, None).await.unwrap().events
    }

    /// Waits until the only incident has `n` findings and the cursor is at `cursor`.
    async fn settles(store: &Store, n: i64, cursor: i64) {
        let q = IncidentQuery { limit: 10, ..Default::default() };
        for _ in 0..200 {
            let incidents = store.query_incidents(&q).await.unwrap();
            let at = store.correlator_cursor().await.unwrap();
            if incidents.len() == 1 && incidents[0].findings == n && at == Some(cursor) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let incidents = store.query_incidents(&q).await.unwrap();
        panic!(
            "wanted one incident of {n} at cursor {cursor}: {incidents:?}, cursor {:?}",
            store.correlator_cursor().await
        );
    }

    #[tokio::test]
    async fn rows_handed_over_and_rows_read_back_after_a_gap_make_one_incident_with_each_finding_once() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let yaml = "name: three\ntype: threshold\nseverity: high\nwindow: 1h\nkey: src_ip\ncount: 3\nmatch:\n  - kind: ssh.bruteforce\n";
        for spec in rule::parse_yaml(yaml).unwrap() {
            store.put_rule(&spec, "test", now_ms()).await.unwrap();
        }
        let (bus, stats) = (Bus::default(), Arc::new(Stats::default()));
        let task = tokio::spawn(run(store.clone(), bus.clone(), stats.clone()));
        while store.correlator_cursor().await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Three findings in three transactions. The bus hears of the third
        // first: a gap, so the correlator reads the first two back.
        let first = store_one(&store, 1).await;
        let second = store_one(&store, 2).await;
        let third = store_one(&store, 3).await;
        let ids = |events: &[Event]| match &events[0] {
            Event::Findings { stored: Some(rows), .. } => rows.iter().map(|f| f.finding).collect::<Vec<_>>(),
            e => panic!("{e:?}"),
        };
        assert_eq!([ids(&first), ids(&second), ids(&third)], [[1], [2], [3]], "the rows ride on the events");
        bus.publish(third);
        settles(&store, 3, 3).await;
        // The late events change nothing: their rows were taken.
        bus.publish(first);
        bus.publish(second);
        // From here in order, from memory; and one event that carries no
        // rows, whose finding is read back.
        bus.publish(store_one(&store, 4).await);
        let mut fifth = store_one(&store, 5).await;
        if let Event::Findings { stored, .. } = &mut fifth[0] {
            *stored = None;
        }
        bus.publish(fifth);
        bus.publish(store_one(&store, 6).await);
        settles(&store, 6, 6).await;
        assert_eq!(stats.findings_correlated.load(std::sync::atomic::Ordering::Relaxed), 6);
        task.abort();
    }
}
