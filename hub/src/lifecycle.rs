//! The hub's `lifecycle` agent: a device going offline becomes a
//! `device.offline` finding, open until it is back; its return closes that
//! finding and adds a `device.back` one saying how long it was away. Stored
//! and published like an edge's findings, so the live views, and later
//! alerting and correlation, see them alike.

use opmas_proto::kinds::{DEVICE_BACK, DEVICE_OFFLINE};
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use crate::events::{Bus, Event};
use crate::store::lifecycle::EPOCH;
use crate::store::{now_ms, Store, StoreError};

/// Runs until the bus closes.
pub async fn run(store: Store, bus: Bus) {
    let mut events = bus.subscribe();
    loop {
        match events.recv().await {
            Ok(e) => {
                if let Event::Presence { device, online } = &*e {
                    if let Err(err) = on_presence(&store, &bus, device, *online).await {
                        warn!(device = %device, error = %err, "lifecycle finding not stored");
                    }
                }
            }
            // Presence is also in the database; a missed change is missed
            // as a finding only.
            Err(RecvError::Lagged(n)) => warn!(missed = n, "lifecycle agent fell behind the event bus"),
            Err(RecvError::Closed) => return,
        }
    }
}

async fn on_presence(store: &Store, bus: &Bus, device: &opmas_proto::DeviceId, online: bool) -> Result<(), StoreError> {
    let now = now_ms();
    let id = device.as_str();
    let f = if online {
        let Some(away_ms) = store.close_lifecycle(id, &DEVICE_OFFLINE, now).await? else {
            // Its first time online, or it was never seen to go.
            return Ok(());
        };
        let summary = format!("{id} is back online after {}", crate::web::layout::duration(away_ms / 1000));
        store.lifecycle_finding(id, &DEVICE_BACK, summary, false, now).await?
    } else {
        let summary = format!("{id} went offline (its Last Will, its word, or silence past the presence timeout)");
        store.lifecycle_finding(id, &DEVICE_OFFLINE, summary, true, now).await?
    };
    bus.publish([Event::Findings { device: device.clone(), epoch: EPOCH, findings: vec![f] }]);
    Ok(())
}
