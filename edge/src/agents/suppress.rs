//! The suppressor: one finding per subject and kind for as long as its
//! attack or campaign lasts, its count growing in updates at most once a
//! minute, closed after a quiet period or by pressure.

use super::*;

/// Least time between two updates of one open finding (line time).
pub const UPDATE_EVERY_MS: u64 = 60_000;

/// Registers of a [`Sketch`].
const REGISTERS: usize = 128;

/// An approximate distinct count of hashed values (HyperLogLog with 128
/// registers: 128 bytes, about 9 % standard error, exact-ish below a few
/// dozen by linear counting, no upper limit), for the sources, user names
/// or ports of a campaign that may run for days.
#[derive(Clone, Copy, Debug)]
pub struct Sketch {
    regs: [u8; REGISTERS],
    /// Σ 2^-r over the registers, kept as they change, so that an estimate
    /// (one per update of a campaign) does not walk them.
    sum: f64,
    /// Registers still 0.
    zeros: u16,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch { regs: [0; REGISTERS], sum: REGISTERS as f64, zeros: REGISTERS as u16 }
    }
}

/// 2^-r, from its exponent bits (r is at most 58).
#[inline]
fn pow2_neg(r: u8) -> f64 {
    f64::from_bits((1023 - u64::from(r)) << 52)
}

impl Sketch {
    /// Adds the value hash `h` (a well-mixed 64-bit hash, see [`mix`]).
    #[inline]
    pub fn insert(&mut self, h: u64) {
        let h = mix(h);
        let reg = (h % REGISTERS as u64) as usize;
        let rank = ((h >> 7) | (1 << 56)).trailing_zeros() as u8 + 1;
        let old = self.regs[reg];
        if rank > old {
            self.regs[reg] = rank;
            // Every term is a power of two, so the sum stays exact (a test
            // checks it against a walk of the registers).
            self.sum += pow2_neg(rank) - pow2_neg(old);
            if old == 0 {
                self.zeros -= 1;
            }
        }
    }

    /// The estimated number of distinct values inserted.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        if usize::from(self.zeros) == REGISTERS {
            return 0;
        }
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / self.sum;
        // Linear counting while many registers are empty (small sets).
        let e = if raw <= 2.5 * m && self.zeros > 0 { m * (m / f64::from(self.zeros)).ln() } else { raw };
        e.round() as u64
    }
}

/// What a campaign counts besides events: up to two kinds of distinct
/// values (for example sources and user names), each with its label.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    labels: [&'static str; 2],
    /// The detector's own count at the finding's start (its window's).
    start: [u32; 2],
    sketch: [Sketch; 2],
}

impl Tally {
    /// Counts `labels` ("sources", "user names"; "" for none), starting
    /// from the detector's counts `start` at the first finding.
    pub fn new(labels: [&'static str; 2], start: [u32; 2]) -> Tally {
        Tally { labels, start, sketch: [Sketch::default(); 2] }
    }

    fn insert(&mut self, items: [Option<u64>; 2]) {
        for (s, item) in self.sketch.iter_mut().zip(items) {
            if let Some(h) = item {
                s.insert(h);
            }
        }
    }

    /// ", about 40 sources, 12 user names": never more than `events`.
    #[cfg(test)]
    fn describe(&self, events: u32) -> String {
        let mut out = String::new();
        self.describe_into(events, &mut out);
        out
    }

    fn describe_into(&self, events: u32, out: &mut String) {
        use std::fmt::Write;
        for i in 0..2 {
            if self.labels[i].is_empty() {
                continue;
            }
            // The detector's count before the finding and the sketch's after
            // it overlap; the larger is a lower bound, and no more values
            // than events can have been seen.
            let n = self.sketch[i].estimate().max(u64::from(self.start[i])).min(u64::from(events));
            let about = if n > 24 { "about " } else { "" };
            let _ = write!(out, ", {about}{n} {}", self.labels[i]);
        }
    }
}

/// An open finding.
#[derive(Debug)]
pub(crate) struct Window {
    /// The finding as emitted, then as updated.
    finding: Finding,
    /// The kind's title, for the updates' summaries.
    title: &'static str,
    /// Line time at which it closes unless more events come.
    until_ms: u64,
    /// Line time before which no update is sent.
    next_update_ms: u64,
    /// Events added since the finding or its last update was emitted.
    pending: u32,
    /// Distinct values counted for the summary.
    tally: Tally,
    /// Evidence lines the hub has been sent.
    evidence_sent: usize,
}

/// The open findings of one agent: see the module docs for the
/// semantics. Keyed by (kind id, subject hash); `N`, a power of two, is the
/// map's capacity, and at most `N / 2` are open at once (a Robin Hood map
/// near full load probes long).
pub struct Suppressor<const N: usize> {
    /// Quiet period after which an open finding closes, in ms.
    window_ms: u64,
    /// Open findings.
    open: FnvIndexMap<(u8, u64), Window, N>,
    /// Findings emitted, new and updates.
    emitted: u64,
    /// Findings closed early because the table was full.
    evicted: u64,
    /// No open finding is due to close or send an update before this (line
    /// time; it may be earlier than the true deadline, never later), so
    /// that most ticks skip the scan.
    next_due_ms: u64,
    /// A bit per key that may be open (256 buckets): most events are of
    /// subjects with nothing open, and this spares them the map lookup.
    maybe_open: [u64; 4],
}

/// The bit of `key` in [`Suppressor::maybe_open`].
#[inline]
fn filter_bit((kind, subject): (u8, u64)) -> (usize, u64) {
    let h = mix(subject ^ u64::from(kind));
    ((h >> 62) as usize, 1 << (h & 63))
}

impl<const N: usize> Suppressor<N> {
    /// Findings that close after `suppress_s` seconds without an event.
    #[inline]
    pub fn new(suppress_s: u32) -> Self {
        Suppressor {
            window_ms: u64::from(suppress_s) * 1000,
            open: FnvIndexMap::new(),
            emitted: 0,
            evicted: 0,
            next_due_ms: u64::MAX,
            maybe_open: [0; 4],
        }
    }

    /// Adds `n` events at `now_ms` to the open finding of (`kind`, `subject`).
    /// Returns false when there is none (one that went quiet is closed
    /// first): the caller then checks its threshold.
    #[inline]
    pub fn note(&mut self, kind: &Kind, subject: u64, now_ms: u64, n: u32, line: &str, out: &mut Vec<Finding>) -> bool {
        self.note_items(kind, subject, now_ms, n, [None, None], line, out)
    }

    /// [`Suppressor::note`], also counting the distinct values `items`
    /// (hashes) in the finding's [`Tally`].
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn note_items(
        &mut self,
        kind: &Kind,
        subject: u64,
        now_ms: u64,
        n: u32,
        items: [Option<u64>; 2],
        line: &str,
        out: &mut Vec<Finding>,
    ) -> bool {
        let key = (kind.id, subject);
        let (word, bit) = filter_bit(key);
        if self.maybe_open[word] & bit == 0 {
            return false;
        }
        let Some(w) = self.open.get_mut(&key) else { return false };
        if now_ms >= w.until_ms {
            if let Some(w) = self.open.remove(&key) {
                self.emitted += close(w, out);
                self.refilter();
            }
            return false;
        }
        w.pending = w.pending.saturating_add(n);
        w.finding.count = w.finding.count.saturating_add(n);
        w.finding.last_ms = w.finding.last_ms.max(now_ms);
        w.until_ms = now_ms.saturating_add(self.window_ms);
        w.tally.insert(items);
        if w.finding.evidence.len() < MAX_EVIDENCE {
            w.finding.evidence.push(evidence(line));
        }
        if now_ms >= w.next_update_ms {
            self.emitted += update(w, now_ms, out);
        } else {
            self.next_due_ms = self.next_due_ms.min(w.next_update_ms);
        }
        true
    }

    /// True if (`kind`, `subject`) has a finding open at `now_ms`.
    #[inline]
    pub fn is_open(&self, kind: &Kind, subject: u64, now_ms: u64) -> bool {
        let key = (kind.id, subject);
        let (word, bit) = filter_bit(key);
        self.maybe_open[word] & bit != 0 && self.open.get(&key).is_some_and(|w| now_ms < w.until_ms)
    }

    /// Emits `finding` (new) and opens it at `now_ms`. Call when
    /// [`Suppressor::note`] returned false and the threshold is crossed.
    #[inline]
    pub fn emit(&mut self, kind: &Kind, subject: u64, now_ms: u64, finding: Finding, out: &mut Vec<Finding>) {
        self.emit_tally(kind, subject, now_ms, finding, Tally::default(), out);
    }

    /// [`Suppressor::emit`] for a finding whose updates count distinct values.
    #[inline]
    pub fn emit_tally(
        &mut self,
        kind: &Kind,
        subject: u64,
        now_ms: u64,
        finding: Finding,
        tally: Tally,
        out: &mut Vec<Finding>,
    ) {
        let key = (kind.id, subject);
        if let Some(w) = self.open.remove(&key) {
            self.emitted += close(w, out);
        }
        if self.open.len() >= N / 2 {
            // Rare (N / 2 subjects in trouble at once), so a scan is fine here.
            let soonest = self.open.iter().min_by_key(|(_, w)| w.until_ms).map(|(k, _)| *k);
            if let Some(w) = soonest.and_then(|k| self.open.remove(&k)) {
                self.emitted += close(w, out);
                self.evicted += 1;
                self.refilter();
            }
        }
        let (word, bit) = filter_bit(key);
        self.maybe_open[word] |= bit;
        out.push(finding.clone());
        self.emitted += 1;
        self.next_due_ms = self.next_due_ms.min(now_ms.saturating_add(self.window_ms));
        let window = Window {
            finding,
            title: kind.title,
            until_ms: now_ms.saturating_add(self.window_ms),
            next_update_ms: now_ms.saturating_add(UPDATE_EVERY_MS),
            pending: 0,
            tally,
            evidence_sent: usize::MAX,
        };
        let _ = self.open.insert(key, window);
    }

    /// At `now_ms` (line time): closes every finding that went quiet and
    /// sends the due update of every other one with new events.
    #[inline]
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        if self.open.is_empty() || now_ms < self.next_due_ms {
            return;
        }
        let mut ended: heapless::Vec<(u8, u64), N> = heapless::Vec::new();
        let mut next_due = u64::MAX;
        for (k, w) in self.open.iter_mut() {
            if now_ms >= w.until_ms {
                let _ = ended.push(*k);
                continue;
            }
            if w.pending > 0 && now_ms >= w.next_update_ms {
                self.emitted += update(w, now_ms, out);
            }
            next_due = next_due.min(w.until_ms);
            if w.pending > 0 {
                next_due = next_due.min(w.next_update_ms);
            }
        }
        self.next_due_ms = next_due;
        for key in &ended {
            if let Some(w) = self.open.remove(key) {
                self.emitted += close(w, out);
            }
        }
        if !ended.is_empty() {
            self.refilter();
        }
    }

    /// Rebuilds [`Suppressor::maybe_open`] after removals (a bit may stand
    /// for several keys, so it cannot be cleared for one).
    fn refilter(&mut self) {
        self.maybe_open = [0; 4];
        for key in self.open.keys() {
            let (word, bit) = filter_bit(*key);
            self.maybe_open[word] |= bit;
        }
    }

    /// Windows open now.
    #[inline]
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no window is open.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Findings emitted since start, new and updates.
    #[inline]
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Windows closed early because the table was full.
    #[inline]
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// Emits the update of an open finding; returns how many findings it emitted.
fn update(w: &mut Window, now_ms: u64, out: &mut Vec<Finding>) -> u64 {
    w.pending = 0;
    w.next_update_ms = now_ms.saturating_add(UPDATE_EVERY_MS);
    let summary = campaign_summary(w, "ongoing");
    out.push(updated(w, Stage::Update, summary));
    1
}

/// Emits the closing update of a finding; returns how many it emitted.
fn close(mut w: Window, out: &mut Vec<Finding>) -> u64 {
    let summary = campaign_summary(&w, "ended");
    out.push(updated(&mut w, Stage::Closed, summary));
    1
}

/// The finding as it stands, as an update. Its evidence only when lines
/// were added since the hub last got them (the evidence of an update is
/// empty when unchanged, and the hub keeps what it has): a long campaign's
/// updates carry a summary, not the same lines again.
fn updated(w: &mut Window, stage: Stage, summary: String) -> Finding {
    let evidence = std::mem::take(&mut w.finding.evidence);
    let mut f = w.finding.clone();
    if evidence.len() != w.evidence_sent {
        f.evidence = evidence.clone();
        w.evidence_sent = evidence.len();
    }
    w.finding.evidence = evidence;
    f.summary = summary;
    f.stage = stage;
    f
}

/// "SSH brute force from 203.0.113.5: 412 events, 3 user names over 2 h 5 min (ongoing)",
/// written into one string (a long campaign is summarised once a minute).
fn campaign_summary(w: &Window, state: &str) -> String {
    use std::fmt::Write;
    let f = &w.finding;
    let mut s = String::with_capacity(128);
    s.push_str(w.title);
    describe_into(&f.subject, &mut s);
    let _ = write!(s, ": {} events", f.count);
    w.tally.describe_into(f.count, &mut s);
    let _ = write!(s, " over {} ({state})", duration(f.last_ms.saturating_sub(f.first_ms)));
    s
}

/// A duration for people: "40 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sketch_counts_small_and_large_sets_closely() {
        for n in [1u64, 5, 20, 100, 1_000, 50_000] {
            let mut s = Sketch::default();
            for v in 0..n {
                s.insert(v.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                s.insert(v.wrapping_mul(0x9E37_79B9_7F4A_7C15)); // repeats do not count
            }
            let e = s.estimate() as f64;
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 0.3, "{n} values estimated as {e}");
        }
        assert_eq!(Sketch::default().estimate(), 0);
    }

    #[test]
    fn the_running_sum_is_the_sum_of_the_registers() {
        let mut s = Sketch::default();
        for v in 0..10_000u64 {
            s.insert(v);
        }
        let walked: f64 = s.regs.iter().map(|&r| pow2_neg(r)).sum();
        assert_eq!(s.sum, walked);
        assert_eq!(usize::from(s.zeros), s.regs.iter().filter(|&&r| r == 0).count());
    }

    #[test]
    fn a_tally_never_claims_more_values_than_events() {
        let mut t = Tally::new(["stations", ""], [21, 0]);
        t.insert([Some(1), None]);
        assert_eq!(t.describe(20), ", 20 stations");
        assert_eq!(t.describe(400), ", 21 stations");
    }

    #[test]
    fn durations_read_for_people() {
        assert_eq!(duration(40_000), "40 s");
        assert_eq!(duration(12 * 60_000), "12 min");
        assert_eq!(duration(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(duration(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
    }
}
