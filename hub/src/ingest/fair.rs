//! Fair intake: the queue between the broker and the database, per sender.
//!
//! The broker hands ingest one FIFO of messages. In it, a burst from one
//! router puts thousands of messages (and several transactions' worth of
//! bytes) in front of another router's single finding. Ingest therefore
//! moves what is waiting into one queue per sender and builds each
//! transaction round-robin: one message per sender per turn, in each
//! sender's own order (the watermark needs a device's batches in order).
//! A quiet router's message goes into the next transaction, whatever the
//! others have queued.
//!
//! The queue holds at most what the caller lets in (see
//! [`FairQueue::bytes`]); beyond that, messages stay in the broker's
//! channel, which pushes back on the broker.

use std::collections::{HashMap, VecDeque};

use crate::broker::Inbound;

/// Per-sender queues and the round-robin order of the non-empty ones.
#[derive(Debug, Default)]
pub struct FairQueue {
    queues: HashMap<String, VecDeque<Inbound>>,
    /// Senders with queued messages, each exactly once, next turn first.
    ring: VecDeque<String>,
    bytes: usize,
}

impl FairQueue {
    /// Queues a message behind its sender's earlier ones.
    pub fn push(&mut self, msg: Inbound) {
        self.bytes += msg.payload.len();
        let sender = sender(&msg.topic);
        match self.queues.get_mut(sender) {
            Some(q) => q.push_back(msg),
            None => {
                let sender = sender.to_owned();
                self.ring.push_back(sender.clone());
                self.queues.insert(sender, VecDeque::from([msg]));
            }
        }
    }

    /// Payload bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Moves messages into `out`, one per sender per turn, until `out` holds
    /// `max_messages` or `max_bytes` of payload (at least one message if any
    /// is queued).
    pub fn take(&mut self, max_messages: usize, max_bytes: usize, out: &mut Vec<Inbound>) {
        let mut bytes = 0;
        while out.len() < max_messages && (bytes < max_bytes || out.is_empty()) {
            let Some(sender) = self.ring.pop_front() else { return };
            let Some(q) = self.queues.get_mut(&sender) else { continue };
            let Some(msg) = q.pop_front() else { continue };
            bytes += msg.payload.len();
            self.bytes -= msg.payload.len();
            out.push(msg);
            if q.is_empty() {
                self.queues.remove(&sender);
            } else {
                self.ring.push_back(sender);
            }
        }
    }
}

/// The sender level of a topic (`opmas/v1/<device>/<channel>`); the whole
/// topic when it has no such level, so that a malformed topic still queues
/// (and is refused, with its reason, when verified).
fn sender(topic: &str) -> &str {
    topic.split('/').nth(2).unwrap_or(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(device: &str, n: usize, bytes: usize) -> Inbound {
        Inbound { topic: format!("opmas/v1/{device}/finding"), payload: vec![n as u8; bytes] }
    }

    fn order(out: &[Inbound]) -> Vec<(String, u8)> {
        out.iter().map(|m| (sender(&m.topic).to_owned(), m.payload[0])).collect()
    }

    #[test]
    fn a_quiet_sender_is_served_in_the_next_turn_and_each_keeps_its_order() {
        let mut q = FairQueue::default();
        for n in 0..100 {
            q.push(msg("busy", n, 1000));
        }
        q.push(msg("quiet", 0, 10));
        q.push(msg("other", 0, 10));
        q.push(msg("other", 1, 10));
        let mut out = Vec::new();
        q.take(4, usize::MAX, &mut out);
        let names: Vec<(String, u8)> = order(&out);
        assert_eq!(names, vec![("busy".into(), 0), ("quiet".into(), 0), ("other".into(), 0), ("busy".into(), 1)],);
        out.clear();
        q.take(usize::MAX, usize::MAX, &mut out);
        let rest = order(&out);
        assert_eq!(rest[0], ("other".into(), 1));
        let busy: Vec<u8> = rest[1..].iter().map(|(_, n)| *n).collect();
        assert_eq!(busy, (2..100).collect::<Vec<u8>>(), "one sender's messages stay in order");
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn the_byte_limit_ends_a_take_but_one_message_always_goes() {
        let mut q = FairQueue::default();
        q.push(msg("a", 0, 5000));
        q.push(msg("a", 1, 5000));
        let mut out = Vec::new();
        q.take(10, 100, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(q.bytes(), 5000);
        out.clear();
        q.push(msg("b", 0, 10));
        q.take(10, 5010, &mut out);
        assert_eq!(order(&out), vec![("a".into(), 1), ("b".into(), 0)]);
    }

    #[test]
    fn a_malformed_topic_still_queues() {
        let mut q = FairQueue::default();
        q.push(Inbound { topic: "junk".into(), payload: vec![1] });
        let mut out = Vec::new();
        q.take(10, 10, &mut out);
        assert_eq!(out[0].topic, "junk");
    }
}
