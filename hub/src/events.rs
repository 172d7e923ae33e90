//! The hub's in-process event bus: what ingest committed, for the modules
//! that react to it (the web UI's live view, the correlator, alerting,
//! command tracking).
//!
//! Events are published only after the transaction that stored them
//! committed, in commit order, so a subscriber never sees what a rollback
//! undid and can read the rows behind an event at once.
//!
//! Publishing never waits. The bus is a bounded ring ([`CAPACITY`] events);
//! a subscriber that falls further behind loses the oldest and its next
//! `recv` returns `Lagged(n)` with the count. It must then catch up from the
//! database (every event's rows are there) instead of from the bus. A slow
//! subscriber therefore costs itself, never ingest or the other
//! subscribers.

use std::sync::Arc;

use opmas_proto::msg::{Finding, Heartbeat};

use crate::correlate::engine::Fact;
use crate::store::heartbeats::AgentChange;
use opmas_proto::DeviceId;
use tokio::sync::broadcast;

/// Events kept for subscribers that are behind.
pub const CAPACITY: usize = 4096;

/// Something the hub stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// New findings and updates of one device, in sequence order (one event
    /// per device and transaction). `stored`: the rows the transaction
    /// added among them, by id, as the correlator takes them; `None` where
    /// the publisher does not know them (the correlator then reads the
    /// database).
    Findings { device: DeviceId, epoch: u64, findings: Vec<Finding>, stored: Option<Vec<Fact>> },
    /// A device came online or went offline (its word, or the hub's
    /// presence sweep).
    Presence { device: DeviceId, online: bool },
    /// A heartbeat was recorded.
    Heartbeat { device: DeviceId, heartbeat: Heartbeat },
    /// The heartbeat told of agents restarted, failed or recovered (see
    /// [`AgentChange`]); follows its `Heartbeat` event.
    Agents { device: DeviceId, changes: Vec<AgentChange> },
    /// The device announced itself online: a new connection, which may be
    /// a restarted edge the hub never saw go (pending commands are sent
    /// again then).
    Connected { device: DeviceId },
    /// Correlation rules changed (the correlator rebuilds).
    Rules,
    /// An incident opened, grew, or changed state (by the correlator or a
    /// person); alerting follows incidents through these.
    Incident { id: i64, change: &'static str },
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus { tx: broadcast::channel(CAPACITY).0 }
    }
}

impl Bus {
    /// A new subscription, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Publishes committed events; returns at once, subscribers or not.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            // An error only means that nobody subscribes right now.
            let _ = self.tx.send(Arc::new(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    fn presence(n: usize) -> Event {
        Event::Presence { device: DeviceId::new(format!("gw-{n}")).unwrap(), online: true }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_learns_how_much_it_missed_and_others_do_not_wait() {
        let bus = Bus::default();
        let mut slow = bus.subscribe();
        let mut fast = bus.subscribe();
        for n in 0..CAPACITY + 10 {
            bus.publish([presence(n)]);
            // The fast one keeps up; publishing never waited for the slow one.
            assert_eq!(*fast.recv().await.unwrap(), presence(n));
        }
        assert_eq!(slow.recv().await.unwrap_err(), RecvError::Lagged(10));
        assert_eq!(*slow.recv().await.unwrap(), presence(10), "then the oldest it still has");
    }

    #[test]
    fn publishing_without_subscribers_is_fine() {
        Bus::default().publish([presence(1)]);
    }
}
