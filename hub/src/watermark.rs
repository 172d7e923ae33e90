//! The ack watermark: what the hub may acknowledge to an edge, and which
//! finding batches it stores. Pure logic; ingest keeps one [`Watermark`] per
//! device and epoch and persists it with the findings it covers.
//!
//! The argument, in full in ARCHITECTURE.md ("Delivery"): the edge frees
//! every finding up to an ack's `upto`. So `upto` may only cover sequences
//! that are stored, or that the edge itself has given up on. The watermark
//! is the highest sequence below which that holds, and the hub stores a
//! batch only when it continues the watermark without a gap. A batch that
//! starts further on (the broker skipped the one before it) is not stored
//! and is answered with a gap report instead; the edge sends again from the
//! watermark. Nothing above the watermark is ever stored, so the watermark
//! is exact, and a resend at or below it is a duplicate recognised without
//! touching the database.

use std::fmt;

/// Per device and epoch: every sequence up to `upto` is stored or was
/// dropped by the edge; `dropped` counts the latter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    pub upto: u64,
    pub dropped: u64,
}

/// What to do with a finding batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store the batch's findings from index `skip` on (the ones before are
    /// at or below the old watermark: a resend overlapping what is stored).
    Store { skip: usize },
    /// Everything in the batch is at or below the watermark: a resend after
    /// a lost ack. Ack again; store nothing.
    Duplicate,
    /// The batch starts after a gap: findings between the watermark and the
    /// batch never arrived. Store nothing; report the gap.
    Gap,
}

/// A batch that breaks the rules of the wire contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    Empty,
    /// Sequences are not consecutive (the first offending index).
    NotConsecutive {
        at: usize,
    },
    /// A sequence of 0 or a floor above the batch's first sequence.
    BadFloor {
        floor: u64,
        first: u64,
    },
    /// A sequence beyond what the database holds (2^63 - 1).
    TooLarge {
        seq: u64,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Empty => write!(f, "finding batch without findings"),
            BatchError::NotConsecutive { at } => {
                write!(f, "finding sequences are not consecutive at position {at}")
            }
            BatchError::BadFloor { floor, first } => {
                write!(f, "floor {floor} is above the batch's first sequence {first} (or a sequence is 0)")
            }
            BatchError::TooLarge { seq } => write!(f, "finding sequence {seq} is beyond 2^63 - 1"),
        }
    }
}

impl std::error::Error for BatchError {}

impl Watermark {
    /// Judges a batch with sequences `seqs` (in batch order) and `floor`, and
    /// returns the watermark as it is once the verdict has been carried out.
    /// `self` is not changed: the caller applies the result after the
    /// findings are committed.
    pub fn judge(&self, floor: u64, seqs: impl IntoIterator<Item = u64>) -> Result<(Verdict, Watermark), BatchError> {
        let mut seqs = seqs.into_iter();
        let first = seqs.next().ok_or(BatchError::Empty)?;
        let mut last = first;
        for (i, s) in seqs.enumerate() {
            if Some(s) != last.checked_add(1) {
                return Err(BatchError::NotConsecutive { at: i + 1 });
            }
            last = s;
        }
        if first == 0 || floor > first {
            return Err(BatchError::BadFloor { floor, first });
        }
        if last > i64::MAX as u64 {
            return Err(BatchError::TooLarge { seq: last });
        }
        let mut next = *self;
        // Everything below the floor is acked (so at or below the watermark)
        // or was dropped by the edge: it will never come, ack past it.
        if floor > next.upto + 1 {
            next.dropped += floor - 1 - next.upto;
            next.upto = floor - 1;
        }
        if last <= next.upto {
            return Ok((Verdict::Duplicate, next));
        }
        if first > next.upto + 1 {
            // The floor advance stands on its own: it is the edge's word.
            return Ok((Verdict::Gap, next));
        }
        let skip = (next.upto + 1 - first) as usize;
        next.upto = last;
        Ok((Verdict::Store { skip }, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(upto: u64, dropped: u64) -> Watermark {
        Watermark { upto, dropped }
    }

    #[test]
    fn batches_in_order_are_stored_and_move_the_watermark() {
        let (v, next) = w(0, 0).judge(1, 1..=10).unwrap();
        assert_eq!((v, next), (Verdict::Store { skip: 0 }, w(10, 0)));
        let (v, next) = next.judge(1, 11..=20).unwrap();
        assert_eq!((v, next), (Verdict::Store { skip: 0 }, w(20, 0)));
    }

    #[test]
    fn a_batch_after_a_lost_one_is_a_gap_and_stores_nothing() {
        let (v, next) = w(10, 0).judge(1, 21..=30).unwrap();
        assert_eq!((v, next), (Verdict::Gap, w(10, 0)));
    }

    #[test]
    fn resends_are_duplicates_or_store_only_the_new_part() {
        assert_eq!(w(20, 0).judge(11, 11..=20).unwrap(), (Verdict::Duplicate, w(20, 0)));
        assert_eq!(w(15, 0).judge(11, 11..=20).unwrap(), (Verdict::Store { skip: 5 }, w(20, 0)));
    }

    #[test]
    fn the_floor_accounts_for_what_the_edge_dropped() {
        // Seqs 11..=40 were dropped from the edge's full spool.
        assert_eq!(w(10, 0).judge(41, 41..=50).unwrap(), (Verdict::Store { skip: 0 }, w(50, 30)));
        // The floor moves even when the batch itself follows a lost one.
        assert_eq!(w(10, 0).judge(41, 45..=50).unwrap(), (Verdict::Gap, w(40, 30)));
        // Without the floor's word, a batch past the watermark is a gap.
        assert_eq!(w(0, 0).judge(1, 5..=6).unwrap(), (Verdict::Gap, w(0, 0)));
    }

    #[test]
    fn malformed_batches_are_refused() {
        assert_eq!(w(0, 0).judge(1, []), Err(BatchError::Empty));
        assert_eq!(w(0, 0).judge(1, [1, 2, 4]), Err(BatchError::NotConsecutive { at: 2 }));
        assert_eq!(w(0, 0).judge(5, [3, 4]), Err(BatchError::BadFloor { floor: 5, first: 3 }));
        assert_eq!(w(0, 0).judge(0, [0]), Err(BatchError::BadFloor { floor: 0, first: 0 }));
        assert_eq!(w(0, 0).judge(1, [u64::MAX]), Err(BatchError::TooLarge { seq: u64::MAX }));
        assert_eq!(w(0, 0).judge(1, [u64::MAX, 0]), Err(BatchError::NotConsecutive { at: 1 }));
    }
}
