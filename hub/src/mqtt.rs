//! What the hub exchanges with devices over MQTT, whichever broker carries
//! it: [`Inbound`] messages for ingest, [`Outbound`] ones through a
//! [`Publisher`]. The embedded broker (`crate::broker`) is one producer and
//! consumer of these; an external broker will be another.

use tokio::sync::mpsc;

/// A message a device published.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A message for a device.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why a message for a device was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker is not keeping up: its queue of outgoing messages is full.
    #[error("the outgoing MQTT queue is full")]
    Full,
    /// The broker is gone (its thread ended).
    #[error("the MQTT broker is gone")]
    Closed,
}

/// Publishes to devices through whichever broker the hub uses.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Outbound>,
}

impl Publisher {
    /// A publisher feeding `tx`, which the broker side drains.
    pub fn new(tx: mpsc::Sender<Outbound>) -> Self {
        Publisher { tx }
    }

    /// Queues a message without waiting. The caller decides what a refusal
    /// costs (a lost ack only makes the edge resend; a command must be
    /// reported as not sent) and counts it.
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        self.tx.try_send(Outbound { topic, payload }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PublishError::Full,
            mpsc::error::TrySendError::Closed(_) => PublishError::Closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_closed_queue_is_reported() {
        let (tx, rx) = mpsc::channel(1);
        let p = Publisher::new(tx);
        assert_eq!(p.publish("t".into(), vec![1]), Ok(()));
        assert_eq!(p.publish("t".into(), vec![2]), Err(PublishError::Full));
        drop(rx);
        assert_eq!(p.publish("t".into(), vec![3]), Err(PublishError::Closed));
    }
}
