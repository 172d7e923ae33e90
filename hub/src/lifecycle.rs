//! The hub's `lifecycle` agent: a device going offline becomes a
//! `device.offline` finding, open until it is back; its return closes that
//! finding and adds a `device.back` one saying how long it was away. An
//! edge's supervisor restarting an agent becomes an `agent.restarted`
//! finding; giving up on one, an `agent.failed` finding open until the
//! agent runs again. Stored and published like an edge's findings, so the
//! live views, and later alerting and correlation, see them alike.

use opmas_proto::kinds::{AGENT_FAILED, AGENT_RESTARTED, DEVICE_BACK, DEVICE_OFFLINE};
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use crate::events::{Bus, Event};
use crate::store::heartbeats::AgentChange;
use crate::store::lifecycle::{EDGE, EPOCH};
use crate::store::{now_ms, Store, StoreError};

/// Runs until the bus closes.
pub async fn run(store: Store, bus: Bus) {
    let mut events = bus.subscribe();
    loop {
        match events.recv().await {
            Ok(e) => {
                let (device, done) = match &*e {
                    Event::Presence { device, online } => (device, on_presence(&store, &bus, device, *online).await),
                    Event::Agents { device, changes } => (device, on_agents(&store, &bus, device, changes).await),
                    _ => continue,
                };
                if let Err(err) = done {
                    warn!(device = %device, error = %err, "lifecycle finding not stored");
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
        let Some(away_ms) = store.close_lifecycle(id, &DEVICE_OFFLINE, EDGE, now).await? else {
            // Its first time online, or it was never seen to go.
            return Ok(());
        };
        let summary = format!("{id} is back online after {}", crate::web::layout::duration(away_ms / 1000));
        store.lifecycle_finding(id, &DEVICE_BACK, EDGE, summary, false, now).await?
    } else {
        let summary = format!("{id} went offline (its Last Will, its word, or silence past the presence timeout)");
        store.lifecycle_finding(id, &DEVICE_OFFLINE, EDGE, summary, true, now).await?
    };
    bus.publish([Event::Findings { device: device.clone(), epoch: EPOCH, findings: vec![f], stored: None }]);
    Ok(())
}

async fn on_agents(
    store: &Store,
    bus: &Bus,
    device: &opmas_proto::DeviceId,
    changes: &[AgentChange],
) -> Result<(), StoreError> {
    let now = now_ms();
    let id = device.as_str();
    let why = |e: &Option<String>| e.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    let mut found = Vec::new();
    for change in changes {
        match change {
            AgentChange::Restarted { agent, restarts, error } => {
                let summary = format!(
                    "{id}: agent {agent} failed{} and was restarted by policy (restart {restarts} of this run)",
                    why(error)
                );
                found.push(store.lifecycle_finding(id, &AGENT_RESTARTED, agent, summary, false, now).await?);
            }
            AgentChange::Failed { agent, restarts, error } => {
                let summary =
                    format!("{id}: agent {agent} failed{} after {restarts} restarts by policy and was given up on; start it again from the device page", why(error));
                found.push(store.lifecycle_finding(id, &AGENT_FAILED, agent, summary, true, now).await?);
            }
            AgentChange::Recovered { agent } => {
                store.close_lifecycle(id, &AGENT_FAILED, agent, now).await?;
            }
        }
    }
    if !found.is_empty() {
        bus.publish([Event::Findings { device: device.clone(), epoch: EPOCH, findings: found, stored: None }]);
    }
    Ok(())
}
