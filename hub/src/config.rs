//! Hub settings: built-in defaults, `config/hub.toml`, `OPMAS_*` environment
//! variables and command-line flags, merged in that order of precedence.
//!
//! The merge is explicit here rather than spread over clap and serde so that
//! one place says which source wins: flags > environment > file > defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The values the hub runs with.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Directory of `opmas.db` and `admin.token`.
    pub data_dir: PathBuf,
    /// The database: `postgres://USER@HOST/DB` for PostgreSQL (several hub
    /// replicas), or a SQLite file; unset, `opmas.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Embedded broker's MQTT listener.
    pub mqtt_listen: SocketAddr,
    /// Second listener for MQTT over TLS (`mqtts://`); off unless set.
    pub mqtts_listen: Option<SocketAddr>,
    /// PEM certificate chain of the TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) for mutual TLS: when set, the TLS listener only
    /// accepts routers presenting a certificate signed by one of them.
    pub tls_client_ca: Option<PathBuf>,
    /// REST API listener.
    pub http_listen: SocketAddr,
    /// Mark session cookies `Secure` (browsers reach the hub over HTTPS, through a TLS proxy).
    pub secure_cookies: bool,
    /// `GET /metrics` from the hub's own machine needs no token.
    pub metrics_loopback: bool,
    /// A file holding the scrape token of `GET /metrics` (its first line):
    /// a scraper elsewhere sends it as `Authorization: Bearer`, and needs no
    /// API token (which would open the API too).
    pub metrics_token_file: Option<PathBuf>,
    /// Seconds of silence after which a device is marked offline.
    pub presence_timeout_s: u64,
    /// Directory of `<agent>.yaml` files seeding the agents' fleet
    /// defaults (see `crate::seed`); unset: the shipped files, built in.
    pub agents_dir: Option<PathBuf>,
    /// Directory of correlation rule files (`*.yaml`) seeding the rules;
    /// unset: the shipped ones, built in.
    pub rules_dir: Option<PathBuf>,
    /// Directory of playbook files (`*.yaml`) seeding the playbooks;
    /// unset: the shipped ones, built in.
    pub playbooks_dir: Option<PathBuf>,
    /// The alerting document seeding the database (receivers, routes);
    /// unset: the shipped one, built in.
    pub alerting_file: Option<PathBuf>,
    /// The broker (embedded or external).
    pub broker: BrokerConfig,
    /// How long findings stay in the database, and where they go after.
    pub retention: crate::archive::RetentionConfig,
}

/// Which broker carries the routers' MQTT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerMode {
    /// rumqttd inside the hub, listening on `mqtt_listen`.
    #[default]
    Embedded,
    /// A broker of its own (mosquitto, EMQX), at `url`; the hub is its client.
    External,
}

/// The broker: the embedded rumqttd's tuning (see `config/hub.toml` for
/// why), or where the external broker is and how the hub logs in.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub mode: BrokerMode,
    /// External: `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
    pub url: Option<String>,
    /// External: the hub's user name at the broker.
    pub username: Option<String>,
    /// External: a file whose first line is the hub's password there.
    pub password_file: Option<PathBuf>,
    /// External, mqtts://: the PEM CA that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// External: the shared-subscription group of the hub's replicas.
    pub share_group: String,
    /// External: this replica's client id (unique per replica); unset:
    /// `opmas-hub-<pid>`.
    pub client_id: Option<String>,
    /// External, mosquitto: the password file `device add` and `device
    /// remove` keep in step (see `broker::mosquitto`).
    pub mosquitto_password_file: Option<PathBuf>,
    /// External, mosquitto: the ACL file kept in step with it.
    pub mosquitto_acl_file: Option<PathBuf>,
    /// External, mosquitto: its pid file; mosquitto is sent SIGHUP to
    /// re-read both files after a change.
    pub mosquitto_pid_file: Option<PathBuf>,
    pub max_connections: usize,
    pub next_connection_delay_ms: u64,
    pub max_segment_size: usize,
    pub max_segment_count: usize,
    pub max_payload_size: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            data_dir: PathBuf::from("./opmas-data"),
            database_url: None,
            mqtt_listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            mqtts_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secure_cookies: false,
            metrics_loopback: true,
            metrics_token_file: None,
            presence_timeout_s: 95,
            agents_dir: None,
            rules_dir: None,
            playbooks_dir: None,
            alerting_file: None,
            broker: BrokerConfig::default(),
            retention: crate::archive::RetentionConfig::default(),
        }
    }
}

impl BrokerConfig {
    /// The hub's password at the external broker: the first line of
    /// `password_file` (none set: `None`; an empty line is an error).
    pub fn hub_password(&self) -> Result<Option<String>> {
        let Some(path) = &self.password_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the broker password ([broker] password_file {})", path.display()))?;
        let password = text.lines().next().unwrap_or("").trim_end().to_owned();
        if password.is_empty() {
            anyhow::bail!("{}: the first line (the hub's broker password) is empty", path.display());
        }
        Ok(Some(password))
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            mode: BrokerMode::Embedded,
            url: None,
            username: None,
            password_file: None,
            ca_file: None,
            share_group: "opmas-hub".into(),
            client_id: None,
            mosquitto_password_file: None,
            mosquitto_acl_file: None,
            mosquitto_pid_file: None,
            max_connections: 10_010,
            next_connection_delay_ms: 0,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            max_payload_size: 256 * 1024,
        }
    }
}

/// Values given on the command line or in the environment; `None` = not given.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub mqtt_listen: Option<SocketAddr>,
    pub mqtts_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub presence_timeout_s: Option<u64>,
    pub agents_dir: Option<PathBuf>,
    pub rules_dir: Option<PathBuf>,
    pub playbooks_dir: Option<PathBuf>,
    pub alerting_file: Option<PathBuf>,
}

impl HubConfig {
    /// Reads `file` if given (an explicitly named file must exist), else
    /// `config/hub.toml` if present, else the built-in defaults; then applies
    /// `env` and `flags` on top, and checks that the TLS settings go together.
    pub fn load(file: Option<&Path>, env: &Overrides, flags: &Overrides) -> Result<HubConfig> {
        let mut cfg = match file {
            Some(path) => Self::from_file(path)?,
            None => {
                let default = Path::new("config/hub.toml");
                if default.is_file() {
                    Self::from_file(default)?
                } else {
                    HubConfig::default()
                }
            }
        };
        for o in [env, flags] {
            if let Some(v) = &o.data_dir {
                cfg.data_dir = v.clone();
            }
            if let Some(v) = &o.database_url {
                cfg.database_url = Some(v.clone());
            }
            if let Some(v) = o.mqtt_listen {
                cfg.mqtt_listen = v;
            }
            if let Some(v) = o.mqtts_listen {
                cfg.mqtts_listen = Some(v);
            }
            if let Some(v) = &o.tls_cert {
                cfg.tls_cert = Some(v.clone());
            }
            if let Some(v) = &o.tls_key {
                cfg.tls_key = Some(v.clone());
            }
            if let Some(v) = &o.tls_client_ca {
                cfg.tls_client_ca = Some(v.clone());
            }
            if let Some(v) = o.http_listen {
                cfg.http_listen = v;
            }
            if let Some(v) = o.presence_timeout_s {
                cfg.presence_timeout_s = v;
            }
            if let Some(v) = &o.agents_dir {
                cfg.agents_dir = Some(v.clone());
            }
            if let Some(v) = &o.rules_dir {
                cfg.rules_dir = Some(v.clone());
            }
            if let Some(v) = &o.playbooks_dir {
                cfg.playbooks_dir = Some(v.clone());
            }
            if let Some(v) = &o.alerting_file {
                cfg.alerting_file = Some(v.clone());
            }
        }
        cfg.check_tls()?;
        Ok(cfg)
    }

    /// The TLS listener needs a certificate and a key; TLS files without the
    /// listener would be silently unused, which hides a mistake. (The files
    /// themselves are read when the broker starts.)
    fn check_tls(&self) -> Result<()> {
        let files = [
            ("tls_cert", "--tls-cert", self.tls_cert.is_some()),
            ("tls_key", "--tls-key", self.tls_key.is_some()),
            ("tls_client_ca", "--tls-client-ca", self.tls_client_ca.is_some()),
        ];
        match self.mqtts_listen {
            Some(addr) => {
                for (key, flag, set) in &files[..2] {
                    if !set {
                        anyhow::bail!(
                            "mqtts_listen {addr} (--mqtts-listen) needs {key} ({flag} FILE, OPMAS_{} or {key} in hub.toml)",
                            key.to_uppercase()
                        );
                    }
                }
                if addr == self.mqtt_listen {
                    anyhow::bail!("mqtts_listen and mqtt_listen are both {addr}: the TLS listener needs its own port");
                }
            }
            None => {
                if let Some((key, flag, _)) = files.iter().find(|(_, _, set)| *set) {
                    anyhow::bail!(
                        "{key} ({flag}) is set but mqtts_listen is not, so it would be unused: \
                         add --mqtts-listen ADDR (OPMAS_MQTTS_LISTEN, mqtts_listen in hub.toml) for MQTT over TLS"
                    );
                }
            }
        }
        Ok(())
    }

    fn from_file(path: &Path) -> Result<HubConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Reads the `OPMAS_*` variables. A variable that is set but unparsable is
    /// an error naming it, not silently ignored.
    pub fn env_overrides() -> Result<Overrides> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>>
        where
            T::Err: std::fmt::Display,
        {
            match std::env::var(name) {
                Ok(v) => v.parse().map(Some).map_err(|e| anyhow::anyhow!("environment variable {name}={v:?}: {e}")),
                Err(_) => Ok(None),
            }
        }
        Ok(Overrides {
            data_dir: var("OPMAS_DATA_DIR")?,
            database_url: var("OPMAS_DATABASE_URL")?,
            mqtt_listen: var("OPMAS_MQTT_LISTEN")?,
            mqtts_listen: var("OPMAS_MQTTS_LISTEN")?,
            tls_cert: var("OPMAS_TLS_CERT")?,
            tls_key: var("OPMAS_TLS_KEY")?,
            tls_client_ca: var("OPMAS_TLS_CLIENT_CA")?,
            http_listen: var("OPMAS_HTTP_LISTEN")?,
            presence_timeout_s: var("OPMAS_PRESENCE_TIMEOUT_S")?,
            agents_dir: var("OPMAS_AGENTS_DIR")?,
            rules_dir: var("OPMAS_RULES_DIR")?,
            playbooks_dir: var("OPMAS_PLAYBOOKS_DIR")?,
            alerting_file: var("OPMAS_ALERTING_FILE")?,
        })
    }

    /// The SQLite database file: `database_url` when it names one, else
    /// `opmas.db` in the data directory.
    pub fn db_path(&self) -> PathBuf {
        match &self.database_url {
            Some(url) if !self.is_postgres() => {
                PathBuf::from(url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url))
            }
            _ => self.data_dir.join("opmas.db"),
        }
    }

    /// The database to open: `database_url` if set, else [`Self::db_path`].
    pub fn database(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self.db_path().display().to_string(),
        }
    }

    /// True when the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url.as_deref().is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    /// [`Self::database`] fit for a log line: a password in the URL is
    /// replaced by `***`.
    pub fn database_label(&self) -> String {
        redact_url(&self.database())
    }

    /// Where archived findings go.
    pub fn archive_dir(&self) -> PathBuf {
        self.retention.archive_dir.clone().unwrap_or_else(|| self.data_dir.join("archive"))
    }
}

/// `url` without the password of its user part, if any.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_equals_built_in_defaults() {
        let shipped = HubConfig::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/hub.toml")).unwrap();
        let d = HubConfig::default();
        assert_eq!(format!("{shipped:?}"), format!("{d:?}"));
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.toml");
        std::fs::write(&file, "http_listen = \"127.0.0.1:1\"\nmqtt_listen = \"127.0.0.1:2\"\ndata_dir = \"/f\"\n")
            .unwrap();
        let env = Overrides {
            http_listen: Some("127.0.0.1:3".parse().unwrap()),
            data_dir: Some("/e".into()),
            ..Default::default()
        };
        let flags = Overrides { data_dir: Some("/c".into()), ..Default::default() };
        let cfg = HubConfig::load(Some(&file), &env, &flags).unwrap();
        assert_eq!(cfg.mqtt_listen.port(), 2);
        assert_eq!(cfg.http_listen.port(), 3);
        assert_eq!(cfg.data_dir, PathBuf::from("/c"));
    }

    #[test]
    fn the_tls_listener_needs_a_certificate_and_key_and_tls_files_need_the_listener() {
        let none = Overrides::default();
        let load = |flags: &Overrides| {
            HubConfig::load(Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/hub.toml")), &none, flags)
                .map_err(|e| format!("{e:#}"))
        };
        let listen = Some("127.0.0.1:8883".parse().unwrap());
        let err = load(&Overrides { mqtts_listen: listen, tls_cert: Some("/c.pem".into()), ..Default::default() })
            .unwrap_err();
        assert!(err.starts_with("mqtts_listen 127.0.0.1:8883 (--mqtts-listen) needs tls_key (--tls-key FILE"), "{err}");
        let err = load(&Overrides { tls_client_ca: Some("/ca.pem".into()), ..Default::default() }).unwrap_err();
        assert!(err.starts_with("tls_client_ca (--tls-client-ca) is set but mqtts_listen is not"), "{err}");
        let cfg = load(&Overrides {
            mqtts_listen: listen,
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((cfg.mqtts_listen, cfg.tls_client_ca), (listen, None));
    }

    #[test]
    fn the_commented_tls_settings_in_the_shipped_file_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/hub.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ").filter(|l| l.starts_with("mqtts_listen") || l.starts_with("tls_")).unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg: HubConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(cfg.mqtts_listen, Some("0.0.0.0:8883".parse().unwrap()));
        assert!(cfg.tls_cert.is_some() && cfg.tls_key.is_some() && cfg.tls_client_ca.is_some());
        cfg.check_tls().unwrap();
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hub.toml");
        std::fs::write(&file, "htp_listen = 1\n").unwrap();
        let err = HubConfig::load(Some(&file), &Overrides::default(), &Overrides::default()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("hub.toml") && msg.contains("htp_listen"), "{msg}");
    }

    #[test]
    fn a_database_url_is_logged_without_its_password_and_names_the_sqlite_file() {
        assert_eq!(redact_url("postgres://opmas:s3cret@db:5432/opmas"), "postgres://opmas:***@db:5432/opmas");
        assert_eq!(redact_url("postgres://opmas@db/opmas"), "postgres://opmas@db/opmas");
        assert_eq!(redact_url("/var/lib/opmas/opmas.db"), "/var/lib/opmas/opmas.db");
        let mut cfg = HubConfig { database_url: Some("postgresql://h/db".into()), ..HubConfig::default() };
        assert!(cfg.is_postgres());
        assert_eq!(cfg.db_path(), cfg.data_dir.join("opmas.db"));
        cfg.database_url = Some("sqlite:///srv/hub.db".into());
        assert!(!cfg.is_postgres());
        assert_eq!(cfg.db_path(), PathBuf::from("/srv/hub.db"));
        cfg.database_url = None;
        assert_eq!(cfg.database(), cfg.data_dir.join("opmas.db").display().to_string());
    }
}
