//! MQTT over TLS (`mqtts_listen`): the settings and files. The hub ends TLS
//! itself, in the relay ([`super::relay`]), and passes each connection on in
//! plain MQTT to rumqttd's loopback listener, as it does plain connections. rumqttd 0.20's own TLS
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

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::HubConfig;

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
