//! Correlation: rules over the stored findings and heartbeats, turned into
//! incidents. `rule` holds the rule documents and their checks, `engine`
//! the pure matching; this module runs the engine inside the hub.
//!
//! Streaming, and exactly once: the correlator wakes on each `Findings`
//! event of the bus and reads the findings stored after its cursor, by id
//! (an event says that there is something new; the rows say what, so a
//! lagging subscription loses nothing). The incidents those findings make
//! and the new cursor are committed in one transaction. At start, and
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

use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

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
        let actions: Vec<Action> = facts.iter().flat_map(|f| engine.feed(f)).collect();
        let fed = t.elapsed().as_millis() as u64;
        out.submit(actions, Some(last)).await?;
        tracing::debug!(
            facts = facts.len(),
            fed_ms = fed,
            waited_ms = t.elapsed().as_millis() as u64 - fed,
            "correlation batch fed"
        );
        out.stats.findings_correlated.fetch_add(facts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        *cursor = last;
        if !full {
            return Ok(());
        }
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
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) => match &*e {
                        Event::Findings { .. } => catch_up(store, &mut out, &mut engine, &mut cursor).await?,
                        Event::Heartbeat { device, .. } => {
                            let fact = Fact { device: device.to_string(), time_ms: now_ms(), heartbeat: true, ..Fact::default() };
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
                },
                _ = tick.tick() => {
                    // The open incidents are re-read: what is in flight first.
                    out.flush().await?;
                    engine.set_devices(store.correlation_devices().await?);
                    restore_open(store, &mut engine).await?;
                    let actions = engine.tick(now_ms());
                    out.submit(actions, None).await?;
                    catch_up(store, &mut out, &mut engine, &mut cursor).await?;
                }
            }
        }
    }
}
