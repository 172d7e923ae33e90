//! `opmas-hub device add|list`: enrolment from the command line.

use anyhow::{Context, Result};
use opmas_proto::ids::SECRET_LEN;
use opmas_proto::{DeviceId, Secret};
use serde::Serialize;

use crate::store::{now_ms, Store};

/// What `device add` prints.
#[derive(Debug, Serialize)]
pub struct Enrolled {
    pub id: String,
    pub secret: String,
    /// The `uci` commands that configure the router.
    pub uci: String,
}

/// Draws a fresh device secret from the OS RNG.
pub fn new_secret() -> Secret {
    let mut bytes = [0u8; SECRET_LEN];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator is available");
    Secret::from_bytes(bytes)
}

/// Enrols `name` as a device id and returns what the router needs.
pub async fn add(store: &Store, name: &str, hub_url: &str) -> Result<Enrolled> {
    let id = DeviceId::new(name).with_context(|| format!("{name:?} cannot be a device id"))?;
    let secret = new_secret();
    store.insert_device(id.as_str(), name, &secret.to_hex(), now_ms()).await?;
    Ok(Enrolled { uci: uci_commands(&id, &secret, hub_url), id: id.to_string(), secret: secret.to_hex() })
}

/// The commands to paste into the router's shell.
pub fn uci_commands(id: &DeviceId, secret: &Secret, hub_url: &str) -> String {
    format!(
        "uci set opmas.hub=hub\n\
         uci set opmas.hub.url='{hub_url}'\n\
         uci set opmas.hub.device_id='{id}'\n\
         uci set opmas.hub.secret='{}'\n\
         {}uci commit opmas\n\
         /etc/init.d/opmas restart\n",
        secret.to_hex(),
        if hub_url.starts_with("mqtts://") {
            "uci set opmas.hub.ca_file='/etc/opmas/ca.crt'   # the hub's CA certificate, copied to the router\n"
        } else {
            ""
        }
    )
}

/// The URL routers should use when the operator gave none: this host's name
/// and the MQTT port.
pub fn default_hub_url(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "HUB-ADDRESS".into());
    format!("mqtt://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn enrolment_prints_uci_that_names_the_device_and_refuses_bad_names() {
        let (store, _dir) = crate::store::test_store().await;
        let e = add(&store, "gw-lab-1", "mqtt://hub:1883").await.unwrap();
        assert!(e.uci.contains("uci set opmas.hub.device_id='gw-lab-1'"));
        assert!(e.uci.contains(&e.secret));
        assert!(add(&store, "gw-lab-1", "mqtt://hub:1883").await.is_err());
        let err = add(&store, "Bad/Name", "mqtt://hub:1883").await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot be a device id"));
    }
}
