//! The finding spool: findings wait here, in RAM, until the hub acks them.
//!
//! Invariant: a finding leaves the spool only when the hub has acknowledged
//! its sequence, or when the byte budget forces the oldest out (counted in
//! [`SpoolStats::dropped`] and reported in the heartbeat). The spool never
//! touches flash: a router's flash wears out, and a reboot loses the RAM
//! spool by design (the findings' lines are gone from the RAM log too).
//!
//! Sequences start at 1 in each run epoch (a random number drawn at start),
//! so the hub's key (device, epoch, seq) stays unique across restarts
//! without a counter on disk.
//!
//! Sending is "at least once", with a window: findings are published in
//! sequence order, and at most [`Spool::next_batch`]'s `window` bytes of
//! them may be unacknowledged at a time, so a burst reaches the hub at the
//! pace the hub stores it instead of piling up in the broker (which skips
//! what overflows its buffers). After a reconnect, an ack timeout, or the
//! hub's report of a gap, the spool rewinds and sends everything unacked
//! again, window by window. The hub ignores what it already stored.
//!
//! Invariant: the queue holds consecutive sequences (findings are pushed in
//! order and leave only from the front), so every batch is a run of
//! consecutive sequences and the entry for sequence `s` sits at index
//! `s - front`.

use std::collections::VecDeque;

use opmas_proto::msg::{encoded_len, Finding, FindingBatch, SpoolStats};

/// Default byte budget: 1 MiB holds thousands of findings.
pub const DEFAULT_BUDGET: usize = 1 << 20;

/// The spool state machine. No I/O, no clock of its own.
#[derive(Debug)]
pub struct Spool {
    /// This run's epoch.
    epoch: u64,
    /// Most bytes of encoded findings kept.
    budget: usize,
    /// Unacked findings in sequence order, with their encoded size.
    queue: VecDeque<(Finding, usize)>,
    /// Sum of the sizes in `queue`.
    bytes: usize,
    /// Sequence for the next finding.
    next_seq: u64,
    /// Highest sequence the hub acknowledged.
    acked_upto: u64,
    /// Highest sequence handed to the uplink since the last rewind.
    sent_upto: u64,
    /// Batches sent since the last rewind and not yet fully acked: their
    /// last sequence and their bytes. Findings the budget drops while in
    /// flight stay counted here until acked, because their bytes are still
    /// on their way through the broker: the window bounds what is in
    /// transit, not what is left in the queue.
    sent: VecDeque<(u64, usize)>,
    /// Sum of the bytes in `sent`.
    in_flight: usize,
    /// Resend round, increased by every rewind.
    round: u32,
    /// Findings dropped for the budget since start.
    dropped: u64,
}

impl Spool {
    pub fn new(epoch: u64, budget: usize) -> Self {
        Spool {
            epoch,
            budget,
            queue: VecDeque::new(),
            bytes: 0,
            next_seq: 1,
            acked_upto: 0,
            sent_upto: 0,
            sent: VecDeque::new(),
            in_flight: 0,
            round: 0,
            dropped: 0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sequence of the oldest queued finding (`next_seq` when empty).
    fn front(&self) -> u64 {
        self.next_seq - self.queue.len() as u64
    }

    /// Numbers `finding` and queues it; drops the oldest findings while over
    /// budget. Returns the sequence given.
    pub fn push(&mut self, mut finding: Finding) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        finding.seq = seq;
        let size = encoded_len(&finding);
        self.queue.push_back((finding, size));
        self.bytes += size;
        while self.bytes > self.budget {
            let Some((_, size)) = self.queue.pop_front() else { break };
            self.bytes -= size;
            self.dropped += 1;
        }
        seq
    }

    /// Applies the hub's ack; ignores acks for another epoch (an earlier run).
    /// Returns how many findings were freed.
    pub fn ack(&mut self, epoch: u64, upto: u64) -> usize {
        if epoch != self.epoch || upto <= self.acked_upto {
            return 0;
        }
        self.acked_upto = upto.min(self.next_seq - 1);
        let mut freed = 0;
        while self.queue.front().is_some_and(|(f, _)| f.seq <= self.acked_upto) {
            if let Some((_, size)) = self.queue.pop_front() {
                self.bytes -= size;
                freed += 1;
            }
        }
        while self.sent.front().is_some_and(|&(last, _)| last <= self.acked_upto) {
            if let Some((_, size)) = self.sent.pop_front() {
                self.in_flight -= size;
            }
        }
        self.sent_upto = self.sent_upto.max(self.acked_upto);
        freed
    }

    /// Applies an ack that reports a gap: the hub discarded a batch of
    /// `round` because findings before it never reached it. Rewinds once per
    /// round, so the batches that followed the loss (each reported too) do
    /// not make the spool resend again and again. Returns true if it rewound.
    pub fn gap(&mut self, epoch: u64, upto: u64, round: u32) -> bool {
        self.ack(epoch, upto);
        if epoch != self.epoch || round != self.round {
            return false;
        }
        self.rewind();
        true
    }

    /// The next findings to publish: unsent ones in sequence order, at most
    /// `max_bytes` of them (at least one), and only as many as keep the
    /// unacknowledged bytes within `window` (at least one when nothing is in
    /// flight). `None` if everything is sent or the window is full. Call
    /// [`Spool::mark_sent`] once the uplink took the batch.
    ///
    /// While a batch awaits its ack, a batch smaller than `max_bytes` is held
    /// back until the ack comes (Nagle's rule, as TCP has it): a quiet
    /// router's finding leaves at once, and a burst goes as a few full
    /// batches instead of thousands of one-finding messages, each of which
    /// costs the hub a round of statements.
    pub fn next_batch(&self, max_bytes: usize, window: usize) -> Option<FindingBatch> {
        if self.in_flight > 0 && self.in_flight >= window {
            return None;
        }
        let room = window.saturating_sub(self.in_flight).min(max_bytes);
        let start = (self.sent_upto + 1).saturating_sub(self.front()) as usize;
        let mut size = 0;
        let findings: Vec<Finding> = self
            .queue
            .iter()
            .skip(start)
            .take_while(|(_, s)| {
                size += s;
                size <= room || size == *s
            })
            .map(|(f, _)| f.clone())
            .collect();
        let took_all = start + findings.len() >= self.queue.len();
        if took_all && size < max_bytes && !self.sent.is_empty() {
            return None;
        }
        (!findings.is_empty()).then(|| FindingBatch {
            epoch: self.epoch,
            floor: self.front(),
            round: self.round,
            findings,
        })
    }

    /// Records that findings up to `seq` were handed to the uplink.
    pub fn mark_sent(&mut self, seq: u64) {
        if seq <= self.sent_upto {
            return;
        }
        let front = self.front();
        let from = (self.sent_upto + 1).saturating_sub(front) as usize;
        let to = ((seq + 1).saturating_sub(front) as usize).min(self.queue.len());
        let bytes = self.queue.range(from.min(to)..to).map(|(_, s)| s).sum::<usize>();
        self.sent.push_back((seq, bytes));
        self.in_flight += bytes;
        self.sent_upto = seq;
    }

    /// Takes back the batch ending at `seq` that the uplink did not take
    /// (the last one [`Spool::mark_sent`] recorded), so that it goes again.
    pub fn unsend(&mut self, seq: u64) {
        if self.sent.back().is_none_or(|&(last, _)| last != seq) {
            return;
        }
        if let Some((_, bytes)) = self.sent.pop_back() {
            self.in_flight -= bytes;
        }
        self.sent_upto = self.sent.back().map_or(self.acked_upto, |&(last, _)| last);
    }

    /// Sends everything unacked again (after a reconnect, an ack timeout or a
    /// gap), starting a new resend round.
    pub fn rewind(&mut self) {
        self.sent_upto = self.acked_upto;
        self.sent.clear();
        self.in_flight = 0;
        self.round = self.round.wrapping_add(1);
    }

    /// True if findings were sent and not all of them are acked yet.
    pub fn awaiting_ack(&self) -> bool {
        !self.sent.is_empty()
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            depth: self.queue.len() as u32,
            bytes: self.bytes as u32,
            budget: self.budget as u32,
            dropped: self.dropped,
            acked_upto: self.acked_upto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opmas_proto::msg::{Severity, Subject};

    fn finding(n: usize) -> Finding {
        Finding {
            seq: 0,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::HIGH,
            subject: Subject::default(),
            count: 5,
            first_ms: 1,
            last_ms: 2,
            summary: "x".repeat(n),
            evidence: vec![],
            stage: opmas_proto::msg::Stage::New,
        }
    }

    fn seqs(b: &FindingBatch) -> Vec<u64> {
        b.findings.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn findings_stay_until_acked_and_ack_frees_them() {
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        for _ in 0..3 {
            s.push(finding(10));
        }
        let b = s.next_batch(1 << 16, 1 << 20).unwrap();
        assert_eq!(seqs(&b), vec![1, 2, 3]);
        s.mark_sent(3);
        assert!(s.next_batch(1 << 16, 1 << 20).is_none());
        assert!(s.awaiting_ack());
        assert_eq!(s.ack(7, 2), 2);
        assert_eq!(s.stats().depth, 1);
        assert_eq!(s.ack(7, 3), 1);
        assert!(!s.awaiting_ack());
    }

    #[test]
    fn reconnect_resends_everything_unacked_in_order() {
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        for _ in 0..4 {
            s.push(finding(10));
        }
        s.mark_sent(4);
        s.ack(7, 1);
        s.rewind();
        assert_eq!(seqs(&s.next_batch(1 << 16, 1 << 20).unwrap()), vec![2, 3, 4]);
    }

    #[test]
    fn an_ack_from_another_epoch_frees_nothing() {
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        s.push(finding(10));
        assert_eq!(s.ack(8, 1), 0);
        assert_eq!(s.stats().depth, 1);
    }

    #[test]
    fn over_budget_the_oldest_go_first_and_are_counted() {
        let one = encoded_len(&Finding { seq: 1, ..finding(100) });
        let mut s = Spool::new(7, one * 3 + 2);
        for _ in 0..5 {
            s.push(finding(100));
        }
        let st = s.stats();
        assert_eq!(st.depth, 3);
        assert_eq!(st.dropped, 2);
        assert_eq!(seqs(&s.next_batch(1 << 20, 1 << 20).unwrap()), vec![3, 4, 5]);
    }

    #[test]
    fn batches_respect_the_byte_limit_but_always_carry_one() {
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        s.push(finding(1000));
        s.push(finding(1000));
        assert_eq!(seqs(&s.next_batch(10, 1 << 20).unwrap()), vec![1]);
        assert_eq!(seqs(&s.next_batch(2100, 1 << 20).unwrap()), vec![1, 2]);
    }

    #[test]
    fn the_window_limits_what_is_unacknowledged_and_acks_open_it_again() {
        let one = encoded_len(&Finding { seq: 1, ..finding(100) });
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        for _ in 0..10 {
            s.push(finding(100));
        }
        let window = one * 3;
        let b = s.next_batch(1 << 20, window).unwrap();
        assert_eq!(seqs(&b), vec![1, 2, 3]);
        s.mark_sent(3);
        assert!(s.next_batch(1 << 20, window).is_none(), "window full");
        // A batch leaves the window once it is acked as a whole (the hub
        // acks at batch ends).
        s.ack(7, 2);
        assert!(s.next_batch(1 << 20, window).is_none());
        s.ack(7, 3);
        let b = s.next_batch(1 << 20, window).unwrap();
        assert_eq!(seqs(&b), vec![4, 5, 6]);
        s.mark_sent(6);
        assert!(s.next_batch(1 << 20, window).is_none());
        // A rewind empties the window and resends from the first unacked.
        s.rewind();
        assert_eq!(seqs(&s.next_batch(1 << 20, window).unwrap()), vec![4, 5, 6]);
        // A window smaller than one finding still lets one through at a time.
        let mut t = Spool::new(7, DEFAULT_BUDGET);
        t.push(finding(100));
        t.push(finding(100));
        assert_eq!(seqs(&t.next_batch(1 << 20, 1).unwrap()), vec![1]);
        t.mark_sent(1);
        assert!(t.next_batch(1 << 20, 1).is_none());
    }

    #[test]
    fn a_gap_rewinds_once_per_round() {
        let two = 2 * encoded_len(&Finding { seq: 1, ..finding(10) });
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        for _ in 0..6 {
            s.push(finding(10));
        }
        // Three full batches of round 0; the hub lost the first.
        for seq in [2, 4, 6] {
            let b = s.next_batch(two, 1 << 20).unwrap();
            assert_eq!((b.round, b.findings.last().unwrap().seq), (0, seq));
            s.mark_sent(seq);
        }
        assert!(s.gap(7, 0, 0), "the first report rewinds");
        let b = s.next_batch(1 << 20, 1 << 20).unwrap();
        assert_eq!((seqs(&b), b.round), (vec![1, 2, 3, 4, 5, 6], 1));
        s.mark_sent(6);
        // The reports of the other two round-0 batches arrive late: ignored.
        assert!(!s.gap(7, 0, 0));
        assert!(!s.gap(7, 0, 0));
        assert!(s.next_batch(1 << 20, 1 << 20).is_none());
        // A report about the new round is a new loss.
        assert!(s.gap(7, 3, 1));
        assert_eq!(seqs(&s.next_batch(1 << 20, 1 << 20).unwrap()), vec![4, 5, 6]);
        assert!(!s.gap(8, 3, 2), "another epoch's report is ignored");
    }

    #[test]
    fn the_floor_tells_the_hub_what_the_budget_dropped() {
        let one = encoded_len(&Finding { seq: 1, ..finding(100) });
        let mut s = Spool::new(7, one * 2 + 1);
        assert_eq!(s.push(finding(100)), 1);
        s.mark_sent(1);
        for _ in 0..3 {
            s.push(finding(100));
        }
        // 1 and 2 were dropped (1 while in flight): the batch starts at 3, floor 3.
        assert_eq!(s.stats().dropped, 2);
        assert!(s.awaiting_ack(), "a dropped finding's bytes are still on their way");
        assert!(s.next_batch(1 << 20, one).is_none(), "and they still fill the window");
        let b = s.next_batch(2 * one, 1 << 20).unwrap();
        assert_eq!((b.floor, seqs(&b)), (3, vec![3, 4]));
        s.mark_sent(4);
        s.ack(7, 1);
        assert_eq!(s.next_batch(1 << 20, one).map(|b| b.floor), None, "nothing left to send");
        s.ack(7, 4);
        assert_eq!(s.stats().depth, 0);
        assert!(!s.awaiting_ack());
    }

    #[test]
    fn while_a_batch_is_in_flight_only_full_batches_leave() {
        let one = encoded_len(&Finding { seq: 1, ..finding(100) });
        let max = 3 * one;
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        s.push(finding(100));
        // Nothing in flight: a lone finding leaves at once.
        assert_eq!(seqs(&s.next_batch(max, 1 << 20).unwrap()), vec![1]);
        s.mark_sent(1);
        s.push(finding(100));
        s.push(finding(100));
        assert!(s.next_batch(max, 1 << 20).is_none(), "a partial batch waits for the ack");
        s.push(finding(100));
        assert_eq!(seqs(&s.next_batch(max, 1 << 20).unwrap()), vec![2, 3, 4], "a full one does not");
        s.mark_sent(4);
        s.push(finding(100));
        assert!(s.next_batch(max, 1 << 20).is_none());
        s.ack(7, 1);
        assert!(s.next_batch(max, 1 << 20).is_none(), "2..4 still in flight");
        s.ack(7, 4);
        assert_eq!(seqs(&s.next_batch(max, 1 << 20).unwrap()), vec![5], "the ack lets the rest go");
        // A rewind (reconnect, timeout) sends the partial batch at once.
        s.mark_sent(5);
        s.push(finding(100));
        s.rewind();
        assert_eq!(seqs(&s.next_batch(max, 1 << 20).unwrap()), vec![5, 6]);
    }
}
