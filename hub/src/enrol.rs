//! Enrolment, removal and rekeying of devices: what `opmas-hub device ...`
//! and the API's device routes do (with the running hub's key cache told).

use anyhow::{Context, Result};
use opmas_proto::ids::SECRET_LEN;
use opmas_proto::{DeviceId, Secret};
use serde::Serialize;

use crate::act::ssh;
use crate::keys::Keys;
use crate::store::ssh::SshTarget;
use crate::store::{now_ms, Store, StoreError};

/// What `device add` prints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    pub id: String,
    pub secret: String,
    /// The `uci` commands that configure the router.
    pub uci: String,
    /// The same settings as a whole `/etc/config/opmas` file, for routers
    /// configured by file and for running the edge on an ordinary Linux
    /// machine (`opmas-edge run --config FILE`).
    pub config: String,
}

impl Enrolled {
    fn new(id: &DeviceId, secret: &Secret, hub_url: &str) -> Enrolled {
        Enrolled {
            id: id.to_string(),
            secret: secret.to_hex(),
            uci: uci_commands(id, secret, hub_url),
            config: config_file(id, secret, hub_url),
        }
    }
}

/// Draws a fresh device secret from the OS RNG.
pub fn new_secret() -> Secret {
    let mut bytes = [0u8; SECRET_LEN];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator is available");
    Secret::from_bytes(bytes)
}

/// Checks a hub URL for the router: the edge accepts `mqtt://` and
/// `mqtts://` only. Returns it, or what is wrong in words.
pub fn check_hub_url(url: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?} is not a URL; use mqtt://HOST:PORT or mqtts://HOST:PORT"));
    };
    if scheme != "mqtt" && scheme != "mqtts" {
        return Err(format!("{url:?}: the router speaks MQTT; use mqtt:// or mqtts:// (not {scheme}://)"));
    }
    // The edge accepts one trailing slash, so this does too.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.starts_with(':') || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err(format!("{url:?}: expected {scheme}://HOST or {scheme}://HOST:PORT"));
    }
    Ok(url.to_owned())
}

/// Enrols `name` as a device id and returns what the router needs.
pub async fn add(store: &Store, name: &str, hub_url: &str) -> Result<Enrolled> {
    let id = DeviceId::new(name).with_context(|| format!("{name:?} cannot be a device id"))?;
    let hub_url = &check_hub_url(hub_url).map_err(anyhow::Error::msg)?;
    let secret = new_secret();
    store.insert_device(id.as_str(), name, &secret.to_hex(), now_ms()).await?;
    Ok(Enrolled::new(&id, &secret, hub_url))
}

/// What `device add --ssh` prints.
#[derive(Debug, Serialize)]
pub struct EnrolledSsh {
    pub id: String,
    pub transport: &'static str,
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The router's host key, pinned now: another one is refused.
    pub host_key: String,
    pub host_key_fingerprint: String,
    /// The hub's public key: the line the router's
    /// `/etc/dropbear/authorized_keys` needs.
    pub hub_key: String,
    /// Whether the router let the hub in already.
    pub login_ok: bool,
    /// If not, why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_error: Option<String>,
    pub services: Vec<String>,
}

/// The services a router reached over SSH may restart unless told
/// otherwise (the edge's default list).
pub const DEFAULT_SSH_SERVICES: [&str; 3] = ["dnsmasq", "odhcpd", "uhttpd"];

/// Enrols `name`, a router without an OPMAS agent, reached over SSH at
/// `address` (`USER@HOST[:PORT]`): reads its host key and pins it (after
/// checking it against `expect`, a `SHA256:` fingerprint read on the
/// router, if given), and checks whether it lets the hub in. A router that
/// does not yet is enrolled all the same; the output says what to add.
pub async fn add_ssh(
    store: &Store,
    identity: &ssh::Identity,
    name: &str,
    address: &str,
    expect: Option<&str>,
    services: Vec<String>,
) -> Result<EnrolledSsh> {
    let id = DeviceId::new(name).with_context(|| format!("{name:?} cannot be a device id"))?;
    let (user, host, port) = ssh::parse_address(address).map_err(anyhow::Error::msg)?;
    let services =
        if services.is_empty() { DEFAULT_SSH_SERVICES.iter().map(|s| (*s).to_owned()).collect() } else { services };
    for s in &services {
        opmas_proto::msg::check_service(s).map_err(|e| anyhow::anyhow!("--service: {e}"))?;
    }
    let scan =
        ssh::scan(identity, &host, port, &user).await.with_context(|| format!("reading {address}'s host key"))?;
    let fingerprint = ssh::fingerprint(&scan.host_key);
    if let Some(expect) = expect {
        let want = if expect.starts_with("SHA256:") { expect.to_owned() } else { format!("SHA256:{expect}") };
        if want != fingerprint {
            anyhow::bail!(
                "{address} offers the host key {fingerprint}, not {want} as expected: not enrolled \
                 (someone may be in between, or the fingerprint was read from another router)"
            );
        }
    }
    let host_key = scan.host_key.to_openssh().context("writing the host key")?;
    let target = SshTarget {
        device_id: id.to_string(),
        host: host.clone(),
        port,
        user: user.clone(),
        host_key: host_key.clone(),
        services: services.clone(),
        enrolled_ms: now_ms(),
    };
    store.insert_ssh_device(&target, &new_secret().to_hex()).await?;
    Ok(EnrolledSsh {
        id: id.to_string(),
        transport: "ssh",
        user,
        host,
        port,
        host_key,
        host_key_fingerprint: fingerprint,
        hub_key: identity.public_line(),
        login_ok: scan.login.is_ok(),
        login_error: scan.login.err().map(|e| e.to_string()),
        services,
    })
}

/// Removes a device, its findings and its deliveries. With `keys` (the
/// running hub's cache), its secret stops working at once: a connected
/// router's next message is refused and so is its next connection.
pub async fn remove(store: &Store, keys: Option<&Keys>, id: &DeviceId) -> Result<(), StoreError> {
    store.delete_device(id.as_str()).await?;
    if let Some(keys) = keys {
        keys.forget(id);
    }
    Ok(())
}

/// Gives a device a new secret and returns what the router needs; the old
/// secret is refused from now on (at once with `keys`, as for [`remove`]).
pub async fn rekey(store: &Store, keys: Option<&Keys>, id: &DeviceId, hub_url: &str) -> Result<Enrolled, StoreError> {
    let secret = new_secret();
    store.rekey_device(id.as_str(), &secret.to_hex()).await?;
    if let Some(keys) = keys {
        keys.forget(id);
    }
    Ok(Enrolled::new(id, &secret, hub_url))
}

/// The file in the data directory where a running hub writes its API
/// address, so that `opmas-hub device ...` finds it whatever its flags.
pub const API_ADDR_FILE: &str = "api.addr";

/// The API of a hub that runs on this data directory, for the commands that
/// must reach its key cache.
pub struct RunningHub {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl RunningHub {
    /// The hub serving `data_dir`, if it answers; `None` if none runs.
    pub async fn find(data_dir: &std::path::Path) -> Option<RunningHub> {
        let addr = std::fs::read_to_string(data_dir.join(API_ADDR_FILE)).ok()?;
        let mut addr: std::net::SocketAddr = addr.trim().parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let token = std::fs::read_to_string(data_dir.join("admin.token")).ok()?.trim().to_owned();
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().ok()?;
        let base = format!("http://{addr}/api/v1");
        let health = client.get(format!("{base}/health")).timeout(std::time::Duration::from_secs(2)).send().await;
        health.ok().filter(|r| r.status().is_success())?;
        Some(RunningHub { base, token, client })
    }

    /// Where it serves.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `DELETE /devices/{id}`.
    pub async fn remove(&self, id: &DeviceId) -> Result<()> {
        let resp = self.client.delete(format!("{}/devices/{id}", self.base)).bearer_auth(&self.token).send().await?;
        api_result(resp).await.map(drop)
    }

    /// `POST /devices/{id}/rekey`.
    pub async fn rekey(&self, id: &DeviceId, hub_url: &str) -> Result<Enrolled> {
        let resp = self
            .client
            .post(format!("{}/devices/{id}/rekey", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "hub_url": hub_url }))
            .send()
            .await?;
        let v = api_result(resp).await?;
        let field = |k: &str| v[k].as_str().map(String::from).with_context(|| format!("the hub's answer lacks {k:?}"));
        Ok(Enrolled { id: field("id")?, secret: field("secret")?, uci: field("uci")?, config: field("config")? })
    }
}

/// The JSON body of a successful answer, or the API's error message.
async fn api_result(resp: reqwest::Response) -> Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let msg = body["error"].as_str().unwrap_or("no message");
    anyhow::bail!("the hub refused: {msg} (HTTP {status})")
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

/// A whole `/etc/config/opmas` for the device: the hub section and a
/// `logread` source (the router default; on a Linux machine without
/// `logread`, change the source to `type 'file'` with `path
/// '/var/log/syslog'`, or `type 'udp'`).
pub fn config_file(id: &DeviceId, secret: &Secret, hub_url: &str) -> String {
    let ca = if hub_url.starts_with("mqtts://") {
        "\t# The hub's CA certificate, copied to the router:\n\toption ca_file '/etc/opmas/ca.crt'\n"
    } else {
        ""
    };
    format!(
        "# /etc/config/opmas for device {id}, from `opmas-hub device add`.\n\
         # Every option and its default: the opmas-edge package's own copy of this file.\n\
         config hub 'hub'\n\
         \toption url '{hub_url}'\n\
         \toption device_id '{id}'\n\
         \toption secret '{}'\n\
         {ca}\n\
         # Where log lines come from. On a machine without logread: type 'file'\n\
         # with option path '/var/log/syslog', or type 'udp' with option listen.\n\
         config source 'logread'\n\
         \toption type 'logread'\n",
        secret.to_hex()
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
