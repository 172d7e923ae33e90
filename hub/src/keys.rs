//! Device secrets by device id, cached in memory in front of the database.
//!
//! Every MQTT connect and every envelope needs the sender's secret; a cache
//! keeps that off the database. A miss falls through to the database, so a
//! device enrolled by another process (`opmas-hub device add`) is known at
//! its first connect without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use opmas_proto::{DeviceId, Secret};

use crate::store::{Store, StoreError};

/// Shared, cloneable secret lookup.
#[derive(Clone, Debug)]
pub struct Keys {
    store: Store,
    cache: Arc<RwLock<HashMap<DeviceId, Secret>>>,
}

impl Keys {
    pub fn new(store: Store) -> Self {
        Keys { store, cache: Arc::default() }
    }

    /// The secret of an enrolled device, or `None`.
    pub async fn get(&self, id: &DeviceId) -> Result<Option<Secret>, StoreError> {
        if let Some(s) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(Some(s.clone()));
        }
        let Some(hex) = self.store.device_secret(id.as_str()).await? else {
            return Ok(None);
        };
        // A secret that does not parse is a corrupt row: treat the device as
        // unknown rather than crash, and say so.
        let Ok(secret) = Secret::from_hex(&hex) else {
            tracing::error!(device = %id, "stored secret is not 64 hex digits; refusing the device");
            return Ok(None);
        };
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), secret.clone());
        Ok(Some(secret))
    }

    /// Forgets a device (after it is deleted or its secret rotated).
    pub fn forget(&self, id: &DeviceId) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
