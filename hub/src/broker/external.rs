//! The hub as a client of an external MQTT broker (mosquitto, EMQX, a
//! cluster of them): `[broker] mode = "external"`.
//!
//! It feeds the same [`Inbound`] channel and drains the same [`Outbound`]
//! one as the embedded broker, so ingest, commands and configuration do not
//! know which broker carries them.
//!
//! - Uplinks come through MQTT v5 shared subscriptions,
//!   `$share/<group>/opmas/v1/+/<channel>`: N replicas in one group split
//!   the fleet's messages between them, each message to one replica.
//! - `status` is subscribed to without sharing: every replica sees every
//!   router's presence, and the broker hands over the retained status of
//!   each router at subscribe (a shared subscription gets no retained
//!   messages), so a replica that starts knows who is online at once.
//! - Downlinks are published by whichever replica decides them, QoS 1.
//! - The session starts clean at every connect and the subscriptions are
//!   made again: what was in flight to a replica that died is sent again by
//!   the edges, whose spool keeps every finding until the hub's ack.
//!
//! The broker authenticates devices and confines each to its own topics
//! (see `mosquitto`); the envelope signature stays the end-to-end check
//! whatever the broker does.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use opmas_proto::Channel;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{BrokerHandle, Inbound, Outbound, Publisher, INBOUND_CAPACITY, OUTBOUND_CAPACITY};
use crate::config::BrokerConfig;
use crate::stats::{bump, Stats};

/// Where the broker is, from `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!("{url:?}: the broker URL starts with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(format!(
                "{url:?}: no user or password in the URL: credentials go in username and password_file"
            ));
        }
        let default = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 address without a port ([::1]) has colons too.
            Some((h, p)) if !p.contains(']') => {
                (h, p.parse::<u16>().map_err(|_| format!("{url:?}: {p:?} is not a port number"))?)
            }
            _ => (rest, default),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return Err(format!("{url:?}: expected mqtt://HOST[:PORT] (credentials go in username and password_file)"));
        }
        Ok(BrokerUrl { tls, host: host.to_owned(), port })
    }
}

/// The filters the hub subscribes to: shared ones for the uplinks a single
/// replica must take, and `status` for every replica.
pub fn filters(group: &str) -> Vec<String> {
    Channel::ALL
        .into_iter()
        .filter(|c| c.is_uplink())
        .map(|c| {
            if c == Channel::Status {
                c.filter_all_devices()
            } else {
                format!("$share/{group}/{}", c.filter_all_devices())
            }
        })
        .collect()
}

/// The hub's MQTT settings for the external broker, from `[broker]`.
fn options(cfg: &BrokerConfig, url: &BrokerUrl) -> Result<MqttOptions> {
    let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("opmas-hub-{}", std::process::id()));
    let mut opts = MqttOptions::new(client_id, url.host.clone(), url.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(true);
    opts.set_max_packet_size(Some(cfg.max_payload_size as u32 + 1024));
    opts.set_request_channel_capacity(1024);
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), cfg.hub_password()?.unwrap_or_default());
    } else if cfg.password_file.is_some() {
        bail!("[broker] password_file is set but username is not");
    }
    if url.tls {
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(
            client_tls(cfg)?,
        ))));
    } else if cfg.ca_file.is_some() {
        bail!("[broker] ca_file is set but the url is mqtt://, so it would be unused: use mqtts://");
    }
    Ok(opts)
}

/// TLS to the broker: its certificate checked against `ca_file`.
fn client_tls(cfg: &BrokerConfig) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let Some(path) = &cfg.ca_file else {
        bail!("an mqtts:// broker needs [broker] ca_file, the PEM CA that signed its certificate");
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("reading {}", path.display()))? {
        let cert = cert.with_context(|| format!("a certificate in {}", path.display()))?;
        roots.add(cert).with_context(|| format!("a CA certificate in {}", path.display()))?;
    }
    if roots.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions of the ring provider")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects to the broker in `cfg.url`, subscribes, and returns the same
/// ends as the embedded broker. The first connection must succeed (a typo
/// in the URL or a refused password fails the start, naming it); later
/// losses are retried every few seconds, and logged.
pub async fn start(cfg: &BrokerConfig, stats: Arc<Stats>) -> Result<BrokerHandle> {
    let Some(url) = &cfg.url else { bail!("[broker] mode = \"external\" needs url = \"mqtt://HOST:PORT\"") };
    let url: BrokerUrl = url.parse().map_err(|e: String| anyhow::anyhow!("[broker] url: {e}"))?;
    let opts = options(cfg, &url)?;
    let client_id = opts.client_id();
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let filters = filters(&cfg.share_group);

    // The first connection, before the hub says it is up.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match first {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("connecting to the MQTT broker at {}:{}: {e}", url.host, url.port),
        Err(_) => bail!("connecting to the MQTT broker at {}:{}: no answer within 10 s", url.host, url.port),
    }
    subscribe(&client, &filters).await?;
    info!(broker = %format!("{}:{}", url.host, url.port), tls = url.tls, %client_id, group = %cfg.share_group, "connected to the external MQTT broker");

    let (in_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    let (stopped_tx, stopped) = oneshot::channel();
    let sub_client = client.clone();
    tokio::spawn(async move {
        let mut down_since: Option<std::time::Instant> = None;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg =
                        Inbound { topic: String::from_utf8_lossy(&p.topic).into_owned(), payload: p.payload.to_vec() };
                    if in_tx.send(msg).await.is_err() {
                        let _ = stopped_tx.send("ingest stopped".to_owned());
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(t) = down_since.take() {
                        info!(after_s = t.elapsed().as_secs(), "reconnected to the external MQTT broker");
                    }
                    // A clean session: the subscriptions are made again.
                    let (c, f) = (sub_client.clone(), filters.clone());
                    tokio::spawn(async move {
                        if let Err(e) = subscribe(&c, &f).await {
                            warn!(error = %e, "subscribing again after a reconnect failed");
                        }
                    });
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused: Vec<String> = ack
                        .return_codes
                        .iter()
                        .filter(|c| !matches!(c, rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)))
                        .map(|c| format!("{c:?}"))
                        .collect();
                    if !refused.is_empty() {
                        warn!(?refused, "the broker refused some of the hub's subscriptions (its ACL must let the hub read opmas/v1/#)");
                    }
                }
                Ok(other) => debug!(event = ?other, "external broker event"),
                Err(e) => {
                    if down_since.is_none() {
                        down_since = Some(std::time::Instant::now());
                        warn!(error = %e, "lost the external MQTT broker; trying again every 2 s");
                    }
                    bump(&stats.broker_disconnects);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });

    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if let Err(e) = client.publish(msg.topic, QoS::AtLeastOnce, false, msg.payload).await {
                warn!(error = %e, "publishing to the external broker failed");
            }
        }
    });
    Ok(BrokerHandle { inbound, publisher: Publisher::new(out_tx), stopped })
}

async fn subscribe(client: &AsyncClient, filters: &[String]) -> Result<()> {
    for f in filters {
        client.subscribe(f.clone(), QoS::AtLeastOnce).await.with_context(|| format!("subscribing to {f}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_are_read_with_default_ports_and_mistakes_named() {
        let u = |s: &str| s.parse::<BrokerUrl>();
        assert_eq!(u("mqtt://broker.lan"), Ok(BrokerUrl { tls: false, host: "broker.lan".into(), port: 1883 }));
        assert_eq!(u("mqtts://10.0.0.2:8884/"), Ok(BrokerUrl { tls: true, host: "10.0.0.2".into(), port: 8884 }));
        assert_eq!(u("mqtt://[::1]:1884"), Ok(BrokerUrl { tls: false, host: "::1".into(), port: 1884 }));
        assert_eq!(u("mqtt://[::1]").map(|u| u.port), Ok(1883));
        assert!(u("tcp://x").unwrap_err().contains("starts with mqtt://"));
        assert!(u("mqtt://x:http").unwrap_err().contains("\"http\" is not a port number"));
        assert!(u("mqtt://hub:secret@x").unwrap_err().contains("credentials go in username"));
    }

    #[test]
    fn uplinks_are_shared_between_replicas_and_status_is_seen_by_all() {
        let f = filters("opmas-hub");
        assert!(f.contains(&"$share/opmas-hub/opmas/v1/+/finding".to_owned()), "{f:?}");
        assert!(f.contains(&"$share/opmas-hub/opmas/v1/+/hb".to_owned()), "{f:?}");
        assert!(f.contains(&"$share/opmas-hub/opmas/v1/+/result".to_owned()), "{f:?}");
        assert!(f.contains(&"opmas/v1/+/status".to_owned()), "{f:?}");
        assert_eq!(f.len(), 4);
    }
}
