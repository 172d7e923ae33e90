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
//! Sending is "at least once": findings are published in sequence order;
//! after a reconnect, or when no ack came for a while, the spool rewinds and
//! everything unacked goes again. The hub ignores what it already stored.

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
    /// Findings dropped for the budget since start.
    dropped: u64,
}

impl Spool {
    pub fn new(epoch: u64, budget: usize) -> Self {
        Spool { epoch, budget, queue: VecDeque::new(), bytes: 0, next_seq: 1, acked_upto: 0, sent_upto: 0, dropped: 0 }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
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
        self.sent_upto = self.sent_upto.max(self.acked_upto);
        freed
    }

    /// The next findings to publish, at most `max_bytes` of them (at least
    /// one), or `None` if everything is sent. Call [`Spool::mark_sent`] once
    /// the uplink took the batch.
    pub fn next_batch(&self, max_bytes: usize) -> Option<FindingBatch> {
        let mut size = 0;
        let findings: Vec<Finding> = self
            .queue
            .iter()
            .filter(|(f, _)| f.seq > self.sent_upto)
            .take_while(|(_, s)| {
                size += s;
                size <= max_bytes || size == *s
            })
            .map(|(f, _)| f.clone())
            .collect();
        (!findings.is_empty()).then_some(FindingBatch { epoch: self.epoch, findings })
    }

    /// Records that findings up to `seq` were handed to the uplink.
    pub fn mark_sent(&mut self, seq: u64) {
        self.sent_upto = self.sent_upto.max(seq);
    }

    /// Sends everything unacked again (after a reconnect or an ack timeout).
    pub fn rewind(&mut self) {
        self.sent_upto = self.acked_upto;
    }

    /// True if findings were sent and none of them has been acked yet.
    pub fn awaiting_ack(&self) -> bool {
        self.sent_upto > self.acked_upto && !self.queue.is_empty()
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
            update: false,
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
        let b = s.next_batch(1 << 16).unwrap();
        assert_eq!(seqs(&b), vec![1, 2, 3]);
        s.mark_sent(3);
        assert!(s.next_batch(1 << 16).is_none());
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
        assert_eq!(seqs(&s.next_batch(1 << 16).unwrap()), vec![2, 3, 4]);
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
        assert_eq!(seqs(&s.next_batch(1 << 20).unwrap()), vec![3, 4, 5]);
    }

    #[test]
    fn batches_respect_the_byte_limit_but_always_carry_one() {
        let mut s = Spool::new(7, DEFAULT_BUDGET);
        s.push(finding(1000));
        s.push(finding(1000));
        assert_eq!(seqs(&s.next_batch(10).unwrap()), vec![1]);
        assert_eq!(seqs(&s.next_batch(2100).unwrap()), vec![1, 2]);
    }
}
