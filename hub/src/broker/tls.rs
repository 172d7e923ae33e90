//! MQTT over TLS (`mqtts_listen`): the hub ends TLS here, in [`serve_tls`], and relays
//! each connection in plain MQTT to a second rumqttd listener on a loopback
//! port, which has the same device auth callback. rumqttd 0.20's own TLS
//! (`TlsConfig::Rustls`) is not used because:
//! - it runs each handshake inside the accept loop without a timeout, so one
//!   client that opens a connection and sends nothing stops the listener for
//!   every router;
//! - it reads and parses the certificate files again for every connection;
//! - client certificates are a compile-time feature (`verify-client-cert`):
//!   without it `capath` is ignored with a warning and nothing is checked;
//!   with it `capath` is mandatory for every TLS listener, client certificates
//!   are required, only the first certificate of the CA file is trusted, and
//!   the certificate's subject O field becomes a tenant prefix of client ids.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::config::HubConfig;
use crate::stats::{bump, Stats};

/// How long a client may take for the TLS handshake, and the wait for
/// rumqttd to close its side after the router closed its own.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_LINGER: Duration = Duration::from_secs(5);

/// The TLS side of `mqtts_listen`, built from the files at start.
pub(super) struct TlsSettings {
    pub(super) acceptor: TlsAcceptor,
    /// Client certificates are required (`tls_client_ca`).
    pub(super) mutual: bool,
}

impl TlsSettings {
    /// Reads `tls_cert`, `tls_key` and `tls_client_ca`. Errors name the
    /// setting, its flag and the file.
    pub(super) fn from_config(cfg: &HubConfig) -> Result<TlsSettings> {
        let (Some(cert_file), Some(key_file)) = (&cfg.tls_cert, &cfg.tls_key) else {
            bail!("--mqtts-listen needs --tls-cert and --tls-key");
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certs(cert_file, "tls_cert (--tls-cert)")?;
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| match e {
            pem::Error::NoItemsFound => anyhow::anyhow!(
                "tls_key (--tls-key) {}: no private key in it (a PEM PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block)",
                key_file.display()
            ),
            e => pem_error("tls_key (--tls-key)", key_file, e),
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions of the ring provider")?;
        let builder = match &cfg.tls_client_ca {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let what = "tls_client_ca (--tls-client-ca)";
                let mut roots = RootCertStore::empty();
                for (i, cert) in read_certs(ca_file, what)?.into_iter().enumerate() {
                    roots.add(cert).with_context(|| {
                        format!("{what} {}: certificate {} is not a usable CA certificate", ca_file.display(), i + 1)
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .with_context(|| format!("{what} {}", ca_file.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).with_context(|| {
            format!(
                "tls_key (--tls-key) {} does not belong to the certificate in tls_cert (--tls-cert) {}",
                key_file.display(),
                cert_file.display()
            )
        })?;
        Ok(TlsSettings { acceptor: TlsAcceptor::from(Arc::new(config)), mutual: cfg.tls_client_ca.is_some() })
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        bail!("{what} {}: no certificate in it (a PEM CERTIFICATE block)", path.display());
    }
    Ok(certs)
}

fn pem_error(what: &str, path: &Path, e: pem::Error) -> anyhow::Error {
    match e {
        pem::Error::Io(e) => anyhow::anyhow!("{what} {}: cannot read it: {e}", path.display()),
        e => anyhow::anyhow!("{what} {}: not valid PEM: {e}", path.display()),
    }
}

/// Accepts MQTT-over-TLS connections and relays each to rumqttd's loopback
/// listener `backend`. Each handshake runs in its own task with a timeout, so
/// a slow or silent client delays no one else; at most `slots` connections
/// (the broker's `max_connections`) are open at once.
pub(super) async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    slots: Arc<Semaphore>,
    stats: Arc<Stats>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                warn!(error = %e, "accepting an MQTTS connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            bump(&stats.tls_refused);
            warn!(%peer, "refused MQTTS connection: max_connections reached");
            continue;
        };
        let acceptor = acceptor.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            relay_tls(tcp, peer, acceptor, backend, &stats).await;
            drop(slot);
        });
    }
}

/// One router's connection: TLS handshake, then bytes both ways between it
/// and rumqttd until either side closes.
async fn relay_tls(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, backend: SocketAddr, stats: &Stats) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            bump(&stats.tls_refused);
            warn!(%peer, error = %e, "refused MQTTS connection: TLS handshake failed");
            return;
        }
        Err(_) => {
            bump(&stats.tls_refused);
            warn!(%peer, "refused MQTTS connection: no TLS handshake within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
    };
    debug!(%peer, "MQTTS connection");
    let back = match TcpStream::connect(backend).await {
        Ok(b) => b,
        Err(e) => {
            warn!(%peer, error = %e, "MQTTS connection dropped: the broker's relay listener {backend} is unreachable");
            return;
        }
    };
    let _ = back.set_nodelay(true);
    let (mut tls_rx, mut tls_tx) = tokio::io::split(tls);
    let (mut back_rx, mut back_tx) = back.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut tls_rx, &mut back_tx).await;
        let _ = back_tx.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut back_rx, &mut tls_tx).await;
        let _ = tls_tx.shutdown().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        // The router closed (after DISCONNECT, or it died): let rumqttd read
        // what is left and close its side, so a clean goodbye stays clean.
        () = &mut up => {
            let _ = tokio::time::timeout(TLS_LINGER, down).await;
        }
        // rumqttd closed (refused auth, keep-alive timeout, a newer connection
        // with the same client id): the router's connection ends with it,
        // even if the router itself has gone silent.
        () = &mut down => {}
    }
}
