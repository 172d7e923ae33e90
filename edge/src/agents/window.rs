//! Counting windows: the agents' clock, bursts of events within a window,
//! and approximate distinct counts.

use super::*;

/// Maps the wall clock of [`Agent::tick`] to line time.
///
/// Every event's line time is observed; at the first tick after new lines
/// the offset between the newest line time and the wall clock is measured,
/// and later ticks return the wall clock plus that offset (never less than
/// the newest line time). Live, the offset is the time zone error plus the
/// delivery delay; in a replay it is the age of the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Newest line time seen.
    latest_ms: u64,
    /// Lines were seen since the last tick.
    fresh: bool,
    /// Line time minus wall time, as last measured.
    offset_ms: i64,
    /// An offset has been measured.
    synced: bool,
}

impl Clock {
    /// Notes the line time of an event.
    #[inline]
    pub fn observe(&mut self, line_ms: u64) {
        self.latest_ms = self.latest_ms.max(line_ms);
        self.fresh = true;
    }

    /// Line time now, given the wall clock.
    #[inline]
    pub fn at_tick(&mut self, wall_ms: u64) -> u64 {
        let wall = i64::try_from(wall_ms).unwrap_or(i64::MAX);
        if self.fresh {
            self.offset_ms = i64::try_from(self.latest_ms).unwrap_or(i64::MAX).saturating_sub(wall);
            self.fresh = false;
            self.synced = true;
        }
        if !self.synced {
            return self.latest_ms;
        }
        let mapped = u64::try_from(wall.saturating_add(self.offset_ms)).unwrap_or(0);
        mapped.max(self.latest_ms)
    }
}

/// Events of one kind for one subject: the times of the latest `N` (a ring
/// of `u32` seconds, so `N` bounds the largest threshold) and the current
/// run (since the first event, a gap longer than the window, or the last
/// report), which gives a finding its count, first time and evidence.
#[derive(Clone, Copy, Debug)]
pub struct Burst<const N: usize> {
    /// Unix seconds of the latest events; `head` is where the next goes.
    times: [u32; N],
    /// Next write position in `times`.
    head: u16,
    /// Times held, at most `N`.
    len: u16,
    /// Events in the current run.
    count: u32,
    /// Line time of the run's first event.
    first_ms: u64,
    /// Line time of the latest event.
    last_ms: u64,
    /// The run's first lines.
    ev: EvList,
}

impl<const N: usize> Default for Burst<N> {
    #[inline]
    fn default() -> Self {
        let () = Self::SIZE_OK;
        Burst { times: [0; N], head: 0, len: 0, count: 0, first_ms: 0, last_ms: 0, ev: EvList::default() }
    }
}

impl<const N: usize> Burst<N> {
    /// Checked when a burst is built (at compile time): the ring indexes by `% N` in `u16`.
    const SIZE_OK: () = assert!(N > 0 && N <= u16::MAX as usize);

    /// Adds `n` events at `now_ms`. A gap longer than `window_s` since the
    /// last event starts a new run; returns true when a run started.
    #[inline]
    pub fn push<const P: usize>(
        &mut self,
        now_ms: u64,
        n: u32,
        window_s: u32,
        pool: &mut EvidencePool<P>,
        line: &str,
    ) -> bool {
        if self.count > 0 && now_ms.saturating_sub(self.last_ms) > u64::from(window_s) * 1000 {
            self.reset_run();
        }
        let started = self.count == 0;
        if started {
            self.first_ms = now_ms;
        }
        let t = secs(now_ms);
        for _ in 0..(n as usize).min(N) {
            self.times[usize::from(self.head)] = t;
            self.head = ((usize::from(self.head) + 1) % N) as u16;
            self.len = (usize::from(self.len) + 1).min(N) as u16;
        }
        self.count = self.count.saturating_add(n);
        self.last_ms = self.last_ms.max(now_ms);
        self.ev.note(pool, line);
        started
    }

    /// Time of the `k`-th latest event (1 = the latest).
    #[inline]
    fn kth_latest(&self, k: u32) -> Option<u32> {
        let k = k as usize;
        if k == 0 || k > usize::from(self.len) {
            return None;
        }
        Some(self.times[(usize::from(self.head) + N - k) % N])
    }

    /// True when the run holds `threshold` events within `window_s` of `now_ms`.
    #[inline]
    pub fn hits(&self, threshold: u32, window_s: u32, now_ms: u64) -> bool {
        self.count >= threshold && self.within(threshold, window_s, now_ms)
    }

    /// True when the latest `k` events, run or not, fall within `window_s` of `now_ms`.
    #[inline]
    pub fn within(&self, k: u32, window_s: u32, now_ms: u64) -> bool {
        self.kth_latest(k).is_some_and(|t| u64::from(t) + u64::from(window_s) >= u64::from(secs(now_ms)))
    }

    /// Events, run or not, within `window_s` of `now_ms` (at most `N`), and
    /// the time of the earliest of them. Walks the ring: for rare events only.
    #[inline]
    pub fn count_within(&self, window_s: u32, now_ms: u64) -> (u32, Option<u64>) {
        let now = u64::from(secs(now_ms));
        let mut n = 0;
        let mut first = None;
        for k in 1..=u32::from(self.len) {
            match self.kth_latest(k) {
                Some(t) if u64::from(t) + u64::from(window_s) >= now => {
                    n += 1;
                    first = Some(u64::from(t) * 1000);
                }
                _ => break,
            }
        }
        (n, first)
    }

    /// Ends the run: the next event starts a new one. The ring is kept.
    #[inline]
    pub fn reset_run(&mut self) {
        self.count = 0;
        self.ev.clear();
    }

    /// Events in the current run.
    #[inline]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Line time of the run's first event.
    #[inline]
    pub fn first_ms(&self) -> u64 {
        self.first_ms
    }

    /// Line time of the latest event.
    #[inline]
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// The run's first lines.
    #[inline]
    pub fn ev(&self) -> &EvList {
        &self.ev
    }
}

/// Bits in a [`Distinct`] bitmap.
pub(crate) const DISTINCT_BITS: u32 = 256;

/// Distinct values of one kind for one subject within a window, estimated
/// by linear counting over a 256-bit bitmap, in two half-window buckets.
///
/// A value sets one bit of the current bucket; the estimate counts the set
/// bits of both buckets (kept incrementally, O(1) per value). When the
/// current bucket is half a window old it becomes the previous one and the
/// oldest is dropped, so the count covers between half a window and a
/// window of history: it never counts values older than the window.
/// Below about 24 the bit count equals the number of distinct values unless
/// two collide; up to 128 (the largest threshold allowed) the estimate is
/// within a few percent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Distinct {
    /// The current bucket's bitmap.
    cur: [u64; 4],
    /// The previous bucket's bitmap.
    prev: [u64; 4],
    /// Bits set in `cur | prev`.
    bits: u16,
    /// Events in the current bucket.
    cur_events: u32,
    /// Events in the previous bucket.
    prev_events: u32,
    /// Unix seconds when the current bucket started.
    cur_start_s: u32,
    /// Line time of the current bucket's first event.
    cur_first_ms: u64,
    /// Line time of the previous bucket's first event.
    prev_first_ms: u64,
    /// Line time of the latest event.
    last_ms: u64,
    /// The first lines since the last reset.
    ev: EvList,
}

impl Distinct {
    /// The bit count at which the estimate reaches `threshold` distinct values.
    #[inline]
    pub fn bits_for(threshold: u32) -> u16 {
        let m = f64::from(DISTINCT_BITS);
        let t = f64::from(threshold.clamp(1, DISTINCT_BITS / 2));
        // Linear counting: n = -m ln(1 - k/m), so k = m (1 - e^(-n/m)).
        (m * (1.0 - (-t / m).exp())).ceil() as u16
    }

    /// Moves the buckets on to `now_s`.
    #[inline]
    fn rotate(&mut self, now_s: u32, window_s: u32) {
        let half = (window_s / 2).max(1);
        if self.cur_events == 0 && self.prev_events == 0 {
            self.cur_start_s = now_s;
        } else if now_s >= self.cur_start_s.saturating_add(half.saturating_mul(2)) {
            *self = Distinct { ev: EvList::default(), cur_start_s: now_s, ..Distinct::default() };
        } else if now_s >= self.cur_start_s.saturating_add(half) {
            self.prev = self.cur;
            self.prev_events = self.cur_events;
            self.prev_first_ms = self.cur_first_ms;
            self.cur = [0; 4];
            self.cur_events = 0;
            self.cur_start_s += half;
            self.bits = self.prev.iter().map(|w| w.count_ones() as u16).sum();
        }
    }

    /// Adds one event with value hash `value` (see [`mix`]) at `now_ms`.
    #[inline]
    pub fn insert<const P: usize>(
        &mut self,
        value: u64,
        now_ms: u64,
        window_s: u32,
        pool: &mut EvidencePool<P>,
        line: &str,
    ) {
        self.rotate(secs(now_ms), window_s);
        let bit = (value % u64::from(DISTINCT_BITS)) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.cur[word] & mask == 0 {
            self.cur[word] |= mask;
            if self.prev[word] & mask == 0 {
                self.bits += 1;
            }
        }
        if self.cur_events == 0 {
            self.cur_first_ms = now_ms;
        }
        self.cur_events = self.cur_events.saturating_add(1);
        self.last_ms = self.last_ms.max(now_ms);
        self.ev.note(pool, line);
    }

    /// Bits set: compare with [`Distinct::bits_for`].
    #[inline]
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// The estimated number of distinct values: never more than the
    /// events counted (the estimate can overshoot a small set slightly, and
    /// "20 disconnects of 21 stations" reads as a bug).
    #[inline]
    pub fn estimate(&self) -> u32 {
        let m = f64::from(DISTINCT_BITS);
        let k = f64::from(self.bits).min(m - 1.0);
        ((-m * (1.0 - k / m).ln()).round() as u32).min(self.events())
    }

    /// Events in the window.
    #[inline]
    pub fn events(&self) -> u32 {
        self.cur_events.saturating_add(self.prev_events)
    }

    /// Line time of the window's first event.
    #[inline]
    pub fn first_ms(&self) -> u64 {
        if self.prev_events > 0 {
            self.prev_first_ms
        } else {
            self.cur_first_ms
        }
    }

    /// Line time of the latest event.
    #[inline]
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// The first lines since the last reset.
    #[inline]
    pub fn ev(&self) -> &EvList {
        &self.ev
    }

    /// Forgets everything: the next event starts afresh.
    #[inline]
    pub fn reset(&mut self) {
        *self = Distinct::default();
    }
}
