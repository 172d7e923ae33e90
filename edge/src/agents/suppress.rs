//! The suppressor: one finding per subject and kind while its window is
//! open, its count growing in updates, closed by time or by pressure.

use super::*;

/// An open suppression window.
#[derive(Debug)]
pub(crate) struct Window {
    /// The finding as emitted, then as updated.
    finding: Finding,
    /// The kind's title, for the update's summary.
    title: &'static str,
    /// Line time at which the window ends.
    until_ms: u64,
    /// Events added since the finding was emitted.
    pending: u32,
}

/// The suppression windows of one agent: see the module docs for the
/// semantics. Keyed by (kind id, subject hash); `N`, a power of two, is the
/// map's capacity, and at most `N / 2` windows are open at once (a Robin
/// Hood map near full load probes long).
pub struct Suppressor<const N: usize> {
    /// Window length in ms.
    window_ms: u64,
    /// Open windows.
    open: FnvIndexMap<(u8, u64), Window, N>,
    /// Findings emitted, new and updates.
    emitted: u64,
    /// Windows closed early because the table was full.
    evicted: u64,
}

impl<const N: usize> Suppressor<N> {
    /// Windows of `suppress_s` seconds.
    #[inline]
    pub fn new(suppress_s: u32) -> Self {
        Suppressor { window_ms: u64::from(suppress_s) * 1000, open: FnvIndexMap::new(), emitted: 0, evicted: 0 }
    }

    /// Adds `n` events at `now_ms` to the open window of (`kind`, `subject`).
    /// Returns false when there is none (an ended one is closed first, its
    /// update emitted): the caller then checks its threshold.
    #[inline]
    pub fn note(&mut self, kind: &Kind, subject: u64, now_ms: u64, n: u32, line: &str, out: &mut Vec<Finding>) -> bool {
        if self.open.is_empty() {
            return false;
        }
        let key = (kind.id, subject);
        let Some(w) = self.open.get_mut(&key) else { return false };
        if now_ms >= w.until_ms {
            if let Some(w) = self.open.remove(&key) {
                self.close(w, out);
            }
            return false;
        }
        w.pending = w.pending.saturating_add(n);
        w.finding.count = w.finding.count.saturating_add(n);
        w.finding.last_ms = w.finding.last_ms.max(now_ms);
        if w.finding.evidence.len() < MAX_EVIDENCE {
            w.finding.evidence.push(evidence(line));
        }
        true
    }

    /// Emits `finding` (new) and opens its window at `now_ms`. Call when
    /// [`Suppressor::note`] returned false and the threshold is crossed.
    #[inline]
    pub fn emit(&mut self, kind: &Kind, subject: u64, now_ms: u64, finding: Finding, out: &mut Vec<Finding>) {
        let key = (kind.id, subject);
        if let Some(w) = self.open.remove(&key) {
            self.close(w, out);
        }
        if self.open.len() >= N / 2 {
            // Rare (N / 2 subjects in trouble at once), so a scan is fine here.
            let soonest = self.open.iter().min_by_key(|(_, w)| w.until_ms).map(|(k, _)| *k);
            if let Some(w) = soonest.and_then(|k| self.open.remove(&k)) {
                self.close(w, out);
                self.evicted += 1;
            }
        }
        out.push(finding.clone());
        self.emitted += 1;
        let until_ms = now_ms.saturating_add(self.window_ms);
        let _ = self.open.insert(key, Window { finding, title: kind.title, until_ms, pending: 0 });
    }

    /// Closes every window that ended by `now_ms` (line time).
    #[inline]
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        if self.open.is_empty() {
            return;
        }
        let ended: heapless::Vec<(u8, u64), N> =
            self.open.iter().filter(|(_, w)| now_ms >= w.until_ms).map(|(k, _)| *k).collect();
        for key in &ended {
            if let Some(w) = self.open.remove(key) {
                self.close(w, out);
            }
        }
    }

    /// Emits the update of a closing window if events were added to it.
    #[inline]
    fn close(&mut self, w: Window, out: &mut Vec<Finding>) {
        if w.pending == 0 {
            return;
        }
        let mut f = w.finding;
        let secs = f.last_ms.saturating_sub(f.first_ms) / 1000;
        f.summary = format!("{} {}: {} events in {secs} s (update)", w.title, describe(&f.subject), f.count);
        f.update = true;
        out.push(f);
        self.emitted += 1;
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
