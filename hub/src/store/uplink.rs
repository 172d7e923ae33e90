//! Applying what devices sent: the ingest path's one domain operation.
//!
//! [`Store::apply_uplink`] takes verified messages of any number of devices
//! and applies them in one write transaction. It judges every finding batch
//! against the device's watermark in memory, stores each device's new
//! findings with one insert run, saves the watermarks that moved, records
//! heartbeats and presence, and returns what the caller acts on once the
//! transaction committed: the acks, the watermarks to cache, the counts and
//! the [`Event`]s.
//!
//! [`Apply::Isolated`] is for a device whose messages failed as a whole: each
//! finding and each message goes in a savepoint of its own, and one the
//! database refuses for its content (a constraint, a trigger; see
//! [`StoreError::is_row_error`]) is skipped, counted and logged, so that it
//! cannot hold back the device's other findings, nor other devices'. Any
//! other error (disk full, I/O) still fails the whole call: nothing is acked
//! and the edge resends.

use std::collections::{BTreeMap, HashMap};

use super::Conn;
use opmas_proto::msg::{CommandResult, Finding, FindingBatch, Heartbeat, Status};
use opmas_proto::DeviceId;
use sqlx::Acquire;
use tracing::{info, warn};

use super::{commands, delivery, devices, findings, heartbeats, StatusChange, Store, StoreError};
use crate::events::Event;
use crate::watermark::{Verdict, Watermark};

/// A verified message from a device.
#[derive(Clone, Debug)]
pub enum Uplink {
    Status(Status),
    Heartbeat(Heartbeat),
    Findings(FindingBatch),
    Result(CommandResult),
}

/// How [`Store::apply_uplink`] treats a row the database refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// One transaction; any error fails it all (the fast path).
    Together,
    /// Every finding and message in a savepoint; a refused row is skipped.
    Isolated,
}

/// The ack owed to a device once the transaction commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckOut {
    pub epoch: u64,
    pub upto: u64,
    /// Set if a batch of this resend round came after a gap.
    pub gap: Option<u32>,
}

/// Counts of one applied transaction, for the hub's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub findings_stored: u64,
    pub findings_duplicate: u64,
    pub findings_updated: u64,
    pub findings_dropped_by_edge: u64,
    /// Findings the database refused ([`Apply::Isolated`] only).
    pub findings_unstorable: u64,
    /// Other messages the database refused ([`Apply::Isolated`] only).
    pub messages_unstorable: u64,
    pub batches_duplicate: u64,
    pub batches_gap: u64,
    /// Finding batches after a gap held for another try instead (see
    /// [`Store::apply_uplink_holding`]).
    pub batches_held: u64,
    /// Finding batches that were not a run of sequences.
    pub batches_invalid: u64,
    pub heartbeats: u64,
    /// Reports from edges of downlink messages they refused unread.
    pub downlink_refused_by_edge: u64,
}

/// Runs one statement: directly when applying together; in isolated mode
/// inside a savepoint, where a row the database refuses is rolled back,
/// logged and counted, and the result is `None`.
macro_rules! guarded {
    ($tx:ident, $mode:expr, $counts:expr, $device:expr, $what:expr, |$c:ident| $step:expr) => {{
        if $mode == Apply::Together {
            let $c: &mut Conn = &mut *$tx;
            Some($step.await?)
        } else {
            let mut sp = Acquire::begin(&mut *$tx).await?;
            let result = {
                let $c: &mut Conn = &mut *sp;
                $step.await
            };
            match result {
                Ok(v) => {
                    sp.commit().await?;
                    Some(v)
                }
                Err(e) if e.is_row_error() => {
                    sp.rollback().await?;
                    $counts.messages_unstorable += 1;
                    warn!(device = $device, message = $what, error = %e, "the database refused a message; skipped");
                    None
                }
                Err(e) => return Err(e),
            }
        }
    }};
}

/// What a committed [`Store::apply_uplink`] leaves the caller to do.
#[derive(Debug, Default)]
pub struct Applied {
    pub acks: BTreeMap<DeviceId, AckOut>,
    /// Each device's watermark in the epoch of its last batch, to cache.
    pub marks: HashMap<DeviceId, (u64, Watermark)>,
    pub counts: Counts,
    /// To publish after commit, in order.
    pub events: Vec<Event>,
    /// Indices (into the messages) of finding batches held after a gap:
    /// neither stored nor answered; the caller tries them again.
    pub held: Vec<usize>,
}

impl Store {
    /// Applies `messages` in one write transaction (see the module docs).
    /// `marks` is the caller's cache of watermarks; a device missing from
    /// it (or cached for another epoch) is read from the database.
    /// `now` is the time recorded as stored (`None`: when the transaction
    /// starts; tests pass a fixed one).
    pub async fn apply_uplink(
        &self,
        messages: &[(DeviceId, Uplink)],
        marks: &HashMap<DeviceId, (u64, Watermark)>,
        mode: Apply,
        now: Option<i64>,
    ) -> Result<Applied, StoreError> {
        self.apply_uplink_holding(messages, marks, mode, now, &|_| false).await
    }

    /// [`Store::apply_uplink`], except that on PostgreSQL a finding batch
    /// that follows a gap, and whose index `may_hold` accepts, is held
    /// ([`Applied::held`]) instead of answered with a gap report. With
    /// replicas the broker's shared subscription gives a router's batches
    /// to different replicas, and the one before it is usually being
    /// committed by another replica at that moment: tried again a moment
    /// later it continues the watermark, where a gap report would have made
    /// the edge send everything since again.
    pub async fn apply_uplink_holding(
        &self,
        messages: &[(DeviceId, Uplink)],
        marks: &HashMap<DeviceId, (u64, Watermark)>,
        mode: Apply,
        now: Option<i64>,
        may_hold: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Applied, StoreError> {
        let hold = self.dialect() == super::Dialect::Postgres;
        let mut out = Applied::default();
        // Watermarks per device and epoch as this transaction found them
        // and as it leaves them.
        let mut watermarks: BTreeMap<(&DeviceId, u64), (Watermark, Watermark)> = BTreeMap::new();
        // The findings each device's batches add, in order: one insert per
        // device and epoch however many batches it sent.
        let mut to_store: BTreeMap<(&DeviceId, u64), Vec<&Finding>> = BTreeMap::new();
        // Devices heard from: touched once each, at the end.
        let mut heard: BTreeMap<&DeviceId, bool> = BTreeMap::new();
        let mut tx = self.begin_write().await?;
        // Stored now: stamped once the transaction holds the database, not
        // while it waited for it (correlation latency counts from here).
        let now = now.unwrap_or_else(super::now_ms);
        for (index, (device, msg)) in messages.iter().enumerate() {
            let id = device.as_str();
            match msg {
                Uplink::Status(status) => {
                    let change = guarded!(tx, mode, out.counts, id, "status", |c| devices::set_status(
                        c,
                        id,
                        status.as_str(),
                        now
                    ));
                    if change.is_some() && *status == Status::Online {
                        out.events.push(Event::Connected { device: device.clone() });
                    }
                    if change == Some(StatusChange::Changed) {
                        info!(device = id, status = status.as_str(), "device status");
                        out.events.push(Event::Presence { device: device.clone(), online: *status == Status::Online });
                    }
                    // An `offline` status is the device's word, not a sign of life.
                    heard.insert(device, *status == Status::Online);
                }
                Uplink::Heartbeat(hb) => {
                    heard.insert(device, true);
                    let done = guarded!(tx, mode, out.counts, id, "heartbeat", |c| heartbeats::record(c, id, hb, now));
                    if let Some(changes) = done {
                        out.counts.heartbeats += 1;
                        out.events.push(Event::Heartbeat { device: device.clone(), heartbeat: hb.clone() });
                        if !changes.is_empty() {
                            out.events.push(Event::Agents { device: device.clone(), changes });
                        }
                    }
                }
                Uplink::Findings(b) => {
                    heard.insert(device, true);
                    let key = (device, b.epoch);
                    let current = match watermarks.get(&key) {
                        Some(&(_, w)) => w,
                        None => {
                            // On PostgreSQL other replicas move the watermark
                            // too (the broker's shared subscription gives
                            // them this router's other batches), so only the
                            // database's is true: judged against a stale cached
                            // one, the edge's floor would look like findings it
                            // dropped. This transaction holds the write lock,
                            // so what it reads stays true until it commits.
                            let cached = marks.get(device).filter(|_| self.dialect() == super::Dialect::Sqlite);
                            let w = match cached {
                                Some(&(epoch, w)) if epoch == b.epoch => w,
                                _ => delivery::load(&mut tx, id, b.epoch).await?,
                            };
                            watermarks.insert(key, (w, w));
                            w
                        }
                    };
                    let (verdict, next) = match current.judge(b.floor, b.findings.iter().map(|f| f.seq)) {
                        Ok(v) => v,
                        Err(e) => {
                            out.counts.batches_invalid += 1;
                            warn!(device = id, epoch = b.epoch, error = %e, "dropped invalid finding batch");
                            continue;
                        }
                    };
                    if verdict == Verdict::Gap && hold && may_hold(index) {
                        out.counts.batches_held += 1;
                        out.held.push(index);
                        continue;
                    }
                    if next.dropped > current.dropped {
                        out.counts.findings_dropped_by_edge += next.dropped - current.dropped;
                        warn!(
                            device = id,
                            epoch = b.epoch,
                            dropped = next.dropped - current.dropped,
                            "the edge dropped findings from its full spool before sending them"
                        );
                    }
                    let mut gap = None;
                    match verdict {
                        Verdict::Store { skip } => {
                            out.counts.findings_duplicate += skip as u64;
                            to_store.entry(key).or_default().extend(&b.findings[skip..]);
                        }
                        Verdict::Duplicate => {
                            out.counts.batches_duplicate += 1;
                            out.counts.findings_duplicate += b.findings.len() as u64;
                        }
                        Verdict::Gap => {
                            out.counts.batches_gap += 1;
                            warn!(
                                device = id,
                                epoch = b.epoch,
                                acked_upto = next.upto,
                                batch_starts = b.findings.first().map_or(0, |f| f.seq),
                                "finding batch after a gap not stored; asking the edge to resend"
                            );
                            gap = Some(b.round);
                        }
                    }
                    if let Some(w) = watermarks.get_mut(&key) {
                        w.1 = next;
                    }
                    let ack = out.acks.entry(device.clone()).or_insert(AckOut { epoch: b.epoch, upto: 0, gap: None });
                    if ack.epoch != b.epoch {
                        *ack = AckOut { epoch: b.epoch, upto: 0, gap: None };
                    }
                    ack.upto = next.upto;
                    ack.gap = gap.or(ack.gap);
                }
                Uplink::Result(r) if r.id == 0 => {
                    // Downlink messages the edge could not verify: nothing
                    // to record against a command.
                    heard.insert(device, true);
                    out.counts.downlink_refused_by_edge += 1;
                    warn!(device = id, message = %r.message, "the device refused downlink messages");
                }
                Uplink::Result(r) => {
                    heard.insert(device, true);
                    let recorded = guarded!(tx, mode, out.counts, id, "command result", |c| commands::record_result(
                        c, id, r, now
                    ));
                    info!(device = id, command = r.id, outcome = r.outcome.as_str(), message = %r.message, recorded = ?recorded, "command result");
                }
            }
        }
        for (&(device, epoch), found) in &to_store {
            let mut facts = Vec::new();
            let stored = match mode {
                Apply::Together => {
                    let n = findings::insert_batch(&mut tx, device.as_str(), epoch, found, now, &mut facts).await?;
                    add_inserted(&mut out.counts, n);
                    found.iter().map(|f| (*f).clone()).collect()
                }
                Apply::Isolated => {
                    insert_one_by_one(&mut tx, device, epoch, found, now, &mut out.counts, &mut facts).await?
                }
            };
            out.events.push(Event::Findings { device: device.clone(), epoch, findings: stored, stored: Some(facts) });
        }
        for (&(device, epoch), &(was, now_w)) in &watermarks {
            if now_w != was {
                delivery::save(&mut tx, device.as_str(), epoch, now_w, now).await?;
                if was == Watermark::default() {
                    // The first findings of a new run: the edge restarted, and
                    // what the old run left open gets no more updates.
                    findings::close_other_epochs(&mut tx, device.as_str(), epoch).await?;
                }
            }
            // The epoch of the device's last batch is the one cached.
            if out.acks.get(device).is_some_and(|a| a.epoch == epoch) {
                out.marks.insert(device.clone(), (epoch, now_w));
            }
        }
        for (device, alive) in heard {
            if alive && devices::touch(&mut tx, device.as_str(), now).await? == StatusChange::Changed {
                info!(device = %device, status = "online", "device status");
                out.events.push(Event::Presence { device: device.clone(), online: true });
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}

fn add_inserted(c: &mut Counts, n: findings::Inserted) {
    c.findings_stored += n.stored;
    c.findings_duplicate += n.duplicates;
    c.findings_updated += n.updated;
}

/// Stores findings one per savepoint; returns the ones stored. A finding
/// the database refuses is skipped, logged with its sequence and reason and
/// counted; the watermark still moves past it (the edge would only resend
/// it into the same refusal), and `deliveries.unstorable` records it.
async fn insert_one_by_one(
    tx: &mut Conn,
    device: &DeviceId,
    epoch: u64,
    found: &[&Finding],
    now: i64,
    counts: &mut Counts,
    facts: &mut Vec<crate::correlate::engine::Fact>,
) -> Result<Vec<Finding>, StoreError> {
    let mut stored = Vec::with_capacity(found.len());
    let mut refused = 0;
    for f in found {
        let mut sp = Acquire::begin(&mut *tx).await?;
        let mut new = Vec::new();
        match findings::insert_batch(&mut sp, device.as_str(), epoch, &[f], now, &mut new).await {
            Ok(n) => {
                sp.commit().await?;
                add_inserted(counts, n);
                stored.push((*f).clone());
                facts.append(&mut new);
            }
            Err(e) if e.is_row_error() => {
                sp.rollback().await?;
                refused += 1;
                warn!(
                    device = %device,
                    epoch,
                    seq = f.seq,
                    kind = %f.kind,
                    error = %e,
                    "the database refused a finding; skipped and counted as unstorable"
                );
            }
            Err(e) => return Err(e),
        }
    }
    if refused > 0 {
        counts.findings_unstorable += refused;
        delivery::add_unstorable(tx, device.as_str(), epoch, refused, now).await?;
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;
    use opmas_proto::msg::{Severity, Stage, Subject};

    fn finding(seq: u64, ip: &str) -> Finding {
        Finding {
            seq,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::HIGH,
            subject: Subject { src_ip: Some(ip.parse().unwrap()), ..Default::default() },
            count: 5,
            first_ms: 1000 + seq,
            last_ms: 2000,
            summary: "s".into(),
            evidence: vec![],
            stage: Stage::New,
        }
    }

    fn batch(device: &str, seqs: std::ops::RangeInclusive<u64>, poison: u64) -> (DeviceId, Uplink) {
        let findings =
            seqs.clone().map(|s| finding(s, if s == poison { "198.51.100.66" } else { "203.0.113.1" })).collect();
        let b = FindingBatch { epoch: 7, floor: *seqs.start(), round: 0, findings };
        (DeviceId::new(device).unwrap(), Uplink::Findings(b))
    }

    /// A batch of `seqs` sent while the edge still holds everything from `floor`.
    fn after_gap(seqs: std::ops::RangeInclusive<u64>, floor: u64) -> Vec<(DeviceId, Uplink)> {
        let (id, mut msg) = batch("gw-1", seqs, 0);
        if let Uplink::Findings(b) = &mut msg {
            b.floor = floor;
        }
        vec![(id, msg)]
    }

    #[tokio::test]
    async fn on_postgresql_a_batch_after_a_gap_is_held_until_the_one_before_it_is_stored() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let id = DeviceId::new("gw-1").unwrap();
        let marks = HashMap::new();
        let later = after_gap(3..=4, 1);
        let first = store.apply_uplink_holding(&later, &marks, Apply::Together, Some(5), &|_| true).await.unwrap();
        if store.dialect() == crate::store::Dialect::Sqlite {
            // One hub gets a router's batches in order: a gap is real, and said at once.
            assert!(first.held.is_empty());
            assert_eq!(first.acks[&id].gap, Some(0));
            return;
        }
        assert_eq!((first.held.as_slice(), first.counts.batches_held), ([0].as_slice(), 1));
        assert!(first.acks.is_empty(), "nothing said to the edge yet");
        // The batch before it is stored (by another replica), then the held one is tried again.
        store.apply_uplink(&[batch("gw-1", 1..=2, 0)], &marks, Apply::Together, Some(6)).await.unwrap();
        let again = store.apply_uplink_holding(&later, &marks, Apply::Together, Some(7), &|_| true).await.unwrap();
        assert!(again.held.is_empty());
        assert_eq!(again.acks[&id], AckOut { epoch: 7, upto: 4, gap: None });
        let all = crate::store::FindingQuery { limit: 10, ..Default::default() };
        assert_eq!(store.query_findings(&all).await.unwrap().len(), 4);
        // Held past its time, a batch after a gap gets the gap report.
        let stray = after_gap(9..=9, 5);
        let late = store.apply_uplink_holding(&stray, &marks, Apply::Together, Some(8), &|_| false).await.unwrap();
        assert!(late.held.is_empty());
        assert_eq!(late.acks[&id], AckOut { epoch: 7, upto: 4, gap: Some(0) });
    }

    #[tokio::test]
    async fn a_refused_row_fails_the_transaction_and_isolated_skips_only_that_row() {
        let (store, _dir) = test_store().await;
        for d in ["gw-bad", "gw-good"] {
            store.insert_device(d, d, "aa", 1).await.unwrap();
        }
        crate::store::refuse_findings_from(&store, "198.51.100.66").await;
        let msgs = vec![batch("gw-bad", 1..=3, 2), batch("gw-good", 1..=2, 0)];
        let marks = HashMap::new();
        let e = store.apply_uplink(&msgs, &marks, Apply::Together, Some(5)).await.unwrap_err();
        assert!(e.is_row_error(), "{e}");
        assert!(store.query_findings(&Default::default()).await.unwrap().is_empty(), "all rolled back");

        let good = store.apply_uplink(&msgs[1..], &marks, Apply::Together, Some(5)).await.unwrap();
        assert_eq!(good.counts.findings_stored, 2);
        let bad = store.apply_uplink(&msgs[..1], &marks, Apply::Isolated, Some(5)).await.unwrap();
        assert_eq!((bad.counts.findings_stored, bad.counts.findings_unstorable), (2, 1));
        let id = DeviceId::new("gw-bad").unwrap();
        assert_eq!(bad.acks[&id], AckOut { epoch: 7, upto: 3, gap: None }, "the watermark moves past the refused row");
        let Event::Findings { findings, .. } = &bad.events[0] else { panic!("{:?}", bad.events) };
        assert_eq!(findings.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 3], "events name what was stored");
        let d = store.deliveries("gw-bad").await.unwrap();
        assert_eq!((d[0].acked_upto, d[0].unstorable), (3, 1));
    }

    #[tokio::test]
    async fn a_failing_database_is_not_a_row_error() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        sqlx::query("DROP TABLE finding_updates").execute(store.writer()).await.unwrap();
        let update = Finding { seq: 2, stage: Stage::Update, ..finding(1, "203.0.113.1") };
        let msgs = vec![(
            DeviceId::new("gw-1").unwrap(),
            Uplink::Findings(FindingBatch {
                epoch: 7,
                floor: 1,
                round: 0,
                findings: vec![finding(1, "203.0.113.1"), update],
            }),
        )];
        // A missing table stands for a database that fails (not the row's
        // fault): isolated mode must not skip and ack past it.
        let e = store.apply_uplink(&msgs, &HashMap::new(), Apply::Isolated, Some(5)).await.unwrap_err();
        assert!(!e.is_row_error(), "{e}");
        assert!(store.deliveries("gw-1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_new_run_closes_what_the_old_run_left_open() {
        let (store, _dir) = test_store().await;
        for d in ["gw-1", "gw-2"] {
            store.insert_device(d, d, "aa", 1).await.unwrap();
        }
        let run = |device: &str, epoch: u64, seq: u64| {
            let b = FindingBatch { epoch, floor: seq, round: 0, findings: vec![finding(seq, "203.0.113.1")] };
            (DeviceId::new(device).unwrap(), Uplink::Findings(b))
        };
        let marks = HashMap::new();
        store.apply_uplink(&[run("gw-1", 7, 1), run("gw-2", 7, 1)], &marks, Apply::Together, Some(5)).await.unwrap();
        store.apply_uplink(&[run("gw-1", 7, 2)], &marks, Apply::Together, Some(6)).await.unwrap();
        let open = |store: &Store| {
            let store = store.clone();
            async move {
                let q = crate::store::FindingQuery { open: Some(true), limit: 10, ..Default::default() };
                let rows = store.query_findings(&q).await.unwrap();
                rows.iter().map(|f| (f.device_id.clone(), f.epoch.clone(), f.seq)).collect::<Vec<_>>()
            }
        };
        assert_eq!(open(&store).await.len(), 3, "one run goes on: all open");
        // gw-1's edge restarted: epoch 8. Its epoch-7 findings close; gw-2's stay open.
        store.apply_uplink(&[run("gw-1", 8, 1)], &marks, Apply::Together, Some(7)).await.unwrap();
        let mut left = open(&store).await;
        left.sort();
        assert_eq!(left, vec![("gw-1".into(), "8".into(), 1), ("gw-2".into(), "7".into(), 1)]);
    }
}
