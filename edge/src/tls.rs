//! TLS for the uplink (`mqtts://`): the settings read from UCI
//! ([`TlsConfig`]) and, with the cargo feature `tls`, the rustls client
//! configuration built from them and the words for TLS failures. Owning
//! both here keeps `config` and `uplink` from importing each other.
//!
//! The rustls client configuration is built by hand rather than through rumqttc's `TlsConfiguration::Simple` so
//! that the provider is ring (aws-lc-rs does not cross-compile to MIPS
//! easily), the certificate can be checked against a name other than the
//! URL's host, and no system CA store is ever loaded.

use std::path::PathBuf;

#[cfg(feature = "tls")]
pub use setup::{client_config, hint, is_server_name, TlsSetupError};

/// How the uplink checks the hub's certificate and, for mutual TLS, proves
/// itself to the hub.
///
/// `ca_file` is required: a router has system CA certificates only with the
/// `ca-bundle` package, and a hub usually has a private CA anyway. With a
/// publicly signed hub certificate, install `ca-bundle` and set `ca_file` to
/// `/etc/ssl/certs/ca-certificates.crt`.
///
/// The files are read when the configuration is, so that a missing or broken
/// file stops the edge at start with its option and line rather than failing
/// every connection attempt. Without the `tls` feature no value of this type
/// can exist, so `HubConfig::tls` is always `None` there.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) the hub's certificate must chain to.
    pub ca_file: PathBuf,
    /// This router's certificate and key, for a hub that requires mutual TLS.
    pub client_cert: Option<ClientCert>,
    /// The DNS name or IP address the hub's certificate must carry, when it
    /// is not the URL's host (for example a URL with an IP address and a
    /// certificate for a name).
    pub server_name: Option<String>,
    /// The rustls client configuration built from the files.
    #[cfg(feature = "tls")]
    pub(crate) client: std::sync::Arc<rustls::ClientConfig>,
    #[cfg(not(feature = "tls"))]
    never: std::convert::Infallible,
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// Reads the CA file and the client certificate and key, and builds the
    /// TLS client configuration. The error names the option whose file or
    /// value is at fault.
    #[cfg(feature = "tls")]
    pub fn load(
        ca_file: PathBuf,
        client_cert: Option<ClientCert>,
        server_name: Option<String>,
    ) -> Result<TlsConfig, TlsSetupError> {
        let client = client_config(&ca_file, client_cert.as_ref(), server_name.as_deref())?;
        Ok(TlsConfig { ca_file, client_cert, server_name, client: std::sync::Arc::new(client) })
    }

    /// The uninhabited case of a build without TLS.
    #[cfg(not(feature = "tls"))]
    pub fn unreachable(&self) -> ! {
        match self.never {}
    }
}

#[cfg(feature = "tls")]
mod setup {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
    use rustls::{Error as TlsError, SignatureScheme};

    use super::ClientCert;

    /// A TLS file or value that cannot be used, with the UCI option it came from.
    #[derive(Debug, thiserror::Error)]
    #[error("option {option}: {message}")]
    pub struct TlsSetupError {
        /// The option of the hub section: `ca_file`, `cert_file`, `key_file` or `tls_server_name`.
        pub option: &'static str,
        /// What is wrong, naming the file.
        pub message: String,
    }

    fn setup_error(option: &'static str, message: String) -> TlsSetupError {
        TlsSetupError { option, message }
    }

    /// Whether `host` can be what a certificate is checked against.
    pub fn is_server_name(host: &str) -> bool {
        ServerName::try_from(host).is_ok()
    }

    /// The client configuration: the hub's certificate must chain to a CA in
    /// `ca_file` and name `server_name` (default: the host rumqttc connects
    /// to); with `client_cert`, the router presents that certificate.
    pub fn client_config(
        ca_file: &Path,
        client_cert: Option<&ClientCert>,
        server_name: Option<&str>,
    ) -> Result<ClientConfig, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for (i, cert) in read_certs(ca_file, "ca_file")?.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                setup_error("ca_file", format!("certificate {} in {} is not usable: {e}", i + 1, ca_file.display()))
            })?;
        }
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error("url", format!("no TLS version available: {e}")))?;
        let builder = match server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let name = ServerName::try_from(name.to_owned()).map_err(|_| {
                    setup_error("tls_server_name", format!("{name:?} is not a DNS name or an IP address"))
                })?;
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| setup_error("ca_file", format!("{}: {e}", ca_file.display())))?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(ExpectName { inner, name }))
            }
        };
        let Some(client) = client_cert else { return Ok(builder.with_no_client_auth()) };
        let chain = read_certs(&client.cert_file, "cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&client.key_file).map_err(|e| match e {
            pem::Error::NoItemsFound => setup_error(
                "key_file",
                format!(
                    "{} holds no private key (a PEM PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block)",
                    client.key_file.display()
                ),
            ),
            e => pem_error("key_file", &client.key_file, e),
        })?;
        builder.with_client_auth_cert(chain, key).map_err(|e| {
            setup_error(
                "key_file",
                format!(
                    "{} does not belong to the certificate in {}: {e}",
                    client.key_file.display(),
                    client.cert_file.display()
                ),
            )
        })
    }

    /// Every certificate in a PEM file; at least one.
    fn read_certs(path: &Path, option: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(option, path, e))?;
        if certs.is_empty() {
            return Err(setup_error(
                option,
                format!("{} holds no certificate (a PEM CERTIFICATE block)", path.display()),
            ));
        }
        Ok(certs)
    }

    fn pem_error(option: &'static str, path: &Path, e: pem::Error) -> TlsSetupError {
        match e {
            pem::Error::Io(e) => setup_error(option, format!("cannot read {}: {e}", path.display())),
            e => setup_error(option, format!("{} is not valid PEM: {e}", path.display())),
        }
    }

    /// Checks the hub's certificate against `tls_server_name` instead of the
    /// host rumqttc connects to; everything else is webpki's usual check.
    #[derive(Debug)]
    struct ExpectName {
        inner: Arc<WebPkiServerVerifier>,
        name: ServerName<'static>,
    }

    impl ServerCertVerifier for ExpectName {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _url_host: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, TlsError> {
            self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    /// The likely cause of a TLS failure, in the words of the UCI options.
    pub fn hint(e: &rumqttc::ConnectionError) -> Option<&'static str> {
        let cause = rustls_cause(e)?;
        Some(match cause {
            TlsError::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    "the hub's certificate is not signed by a CA in option ca_file"
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "the hub's certificate does not name the URL's host; set option tls_server_name to a name it carries"
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    "the hub's certificate is outside its validity period, or this router's clock is wrong (is NTP synchronised?)"
                }
                _ => "the hub's certificate was rejected",
            },
            TlsError::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::AccessDenied,
            ) => "the hub refused this router's client certificate (mutual TLS): check options cert_file and key_file",
            _ => return None,
        })
    }

    /// The rustls error somewhere in the chain of `e` (rumqttc wraps it in
    /// I/O errors, whose `source` skips the wrapped error).
    fn rustls_cause(e: &rumqttc::ConnectionError) -> Option<&TlsError> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(t) = err.downcast_ref::<TlsError>() {
                return Some(t);
            }
            if let Some(t) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                if let Some(t) = t.downcast_ref::<TlsError>() {
                    return Some(t);
                }
            }
            cur = err.source();
        }
        None
    }
}
