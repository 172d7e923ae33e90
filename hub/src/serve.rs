//! `opmas-hub serve`: wires storage, the broker, ingest and the API together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use tracing::info;

use crate::broker;
use crate::config::HubConfig;
use crate::enrol;
use crate::events::Bus;
use crate::http::{self, AppState};
use crate::ingest::{self, Ingest};
use crate::keys::Keys;
use crate::stats::Stats;
use crate::store::{self, now_ms, Store};

/// A started hub.
pub struct Running {
    pub store: Store,
    pub stats: Arc<Stats>,
    /// Committed events, for whatever subscribes.
    pub bus: Bus,
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    http_listener: tokio::net::TcpListener,
    app: axum::Router,
    broker_stopped: oneshot::Receiver<String>,
}

/// Opens the database, starts the broker, ingest and presence tasks, and
/// binds the API; returns once every listener accepts connections.
pub async fn start(cfg: &HubConfig) -> Result<Running> {
    // HTTPS to alert receivers (reqwest) uses the process's rustls provider:
    // ring, as the broker's TLS does. An error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Checked before anything starts: a mistake in a file stops the hub here.
    let agent_files = crate::seed::load(cfg.agents_dir.as_deref())?;
    let rule_files = crate::seed::load_rules(cfg.rules_dir.as_deref())?;
    let playbook_files = crate::seed::load_playbooks(cfg.playbooks_dir.as_deref())?;
    let alerting = crate::seed::load_alerting(cfg.alerting_file.as_deref())?;
    store::create_private_dir(&cfg.data_dir)?;
    let label = cfg.database_label();
    let store = Store::open(&cfg.database()).await.with_context(|| format!("opening {label}"))?;
    info!(database = %label, "database ready");
    if let Some(path) = store.ensure_admin_token(&cfg.data_dir, now_ms()).await? {
        info!(path = %path.display(), "created the admin API token (first start); read it from this file");
    }
    if let Some(path) = store.ensure_admin_user(&cfg.data_dir, now_ms()).await? {
        info!(path = %path.display(), "created the user admin (first start); its password is in this file");
    }
    crate::seed::apply(&store, &agent_files, now_ms()).await?;
    crate::seed::apply_rules(&store, &rule_files, now_ms()).await?;
    crate::seed::apply_playbooks(&store, &playbook_files, now_ms()).await?;
    crate::seed::apply_alerting(&store, &alerting, now_ms()).await?;

    let stats = Arc::new(Stats::default());
    let bus = Bus::default();
    let keys = Keys::new(store.clone());
    let keys_api = keys.clone();
    let mosquitto = crate::broker::mosquitto::Mosquitto::from_config(&cfg.broker)?;
    if mosquitto.is_some() && cfg.broker.mode != crate::config::BrokerMode::External {
        anyhow::bail!("[broker] mosquitto_password_file and mosquitto_acl_file are for mode = \"external\"");
    }
    if let Some(m) = &mosquitto {
        // Whatever changed while the hub was down (a device added offline).
        let n = m.sync(&store).await.context("writing mosquitto's password and ACL files")?;
        info!(routers = n, file = %m.password_file.display(), "mosquitto's files written");
    }
    let broker = match cfg.broker.mode {
        crate::config::BrokerMode::Embedded => broker::start_embedded(cfg, keys.clone(), stats.clone()).await?,
        crate::config::BrokerMode::External => broker::external::start(&cfg.broker, stats.clone()).await?,
    };
    info!(listen = %cfg.mqtt_listen, "embedded MQTT broker listening");

    let down_seq = Arc::new(AtomicU64::new(now_ms() as u64 * 1000));
    // The duties one hub must run go to the leader (on SQLite, this hub).
    let leader = crate::leader::Leadership::start(&store).await;
    let ssh = crate::act::ssh::SshTransport::new(store.clone(), &cfg.data_dir).context("the SSH transport")?;
    let s = ssh.clone();
    tokio::spawn(leader.clone().lead("ssh", move || s.clone().run()));
    let commander = crate::command::Commander {
        store: store.clone(),
        keys: keys.clone(),
        publisher: broker.publisher.clone(),
        stats: stats.clone(),
        down_seq: down_seq.clone(),
        ssh: Some(ssh),
    };
    tokio::spawn(commander.clone().run(bus.clone(), Duration::from_secs(5)));
    tokio::spawn(crate::lifecycle::run(store.clone(), bus.clone()));
    let (s, b, st) = (store.clone(), bus.clone(), stats.clone());
    tokio::spawn(leader.clone().lead("correlator", move || crate::correlate::run(s.clone(), b.clone(), st.clone())));
    let (s, dir, keep) = (store.clone(), cfg.archive_dir(), cfg.retention.clone());
    tokio::spawn(leader.clone().lead("retention", move || crate::archive::run(s.clone(), dir.clone(), keep.clone())));
    let actor = crate::act::Actor { store: store.clone(), commander: commander.clone() };
    let b = bus.clone();
    tokio::spawn(leader.clone().lead("playbooks", move || crate::act::runner::run(actor.clone(), b.clone())));
    let http = reqwest::Client::builder()
        .timeout(crate::alert::receivers::TIMEOUT)
        .user_agent(concat!("opmas-hub/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("the HTTP client of the alert receivers")?;
    let (s, b) = (store.clone(), bus.clone());
    tokio::spawn(leader.clone().lead("alerting", move || crate::alert::run(s.clone(), b.clone(), http.clone())));
    let ingest = Ingest {
        store: store.clone(),
        keys,
        publisher: broker.publisher.clone(),
        stats: stats.clone(),
        bus: bus.clone(),
        down_seq,
    };
    tokio::spawn(ingest.run(broker.inbound));
    let (s, b, timeout) = (store.clone(), bus.clone(), Duration::from_secs(cfg.presence_timeout_s.max(1)));
    let heartbeats_ms = cfg.retention.heartbeats_ms();
    tokio::spawn(
        leader.clone().lead("presence sweep", move || ingest::presence(s.clone(), b.clone(), timeout, heartbeats_ms)),
    );

    let http_listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("HTTP listen address {}", cfg.http_listen))?;
    let http_addr = http_listener.local_addr()?;
    info!(listen = %http_addr, "REST API listening on http://{http_addr}/api/v1");
    // Where `opmas-hub device ...` finds this hub's API (see enrol::RunningHub).
    let addr_file = cfg.data_dir.join(enrol::API_ADDR_FILE);
    std::fs::write(&addr_file, format!("{http_addr}\n")).with_context(|| format!("writing {}", addr_file.display()))?;
    let hub_url = enrol::default_hub_url(cfg.mqtt_listen.port());
    let metrics_token = match &cfg.metrics_token_file {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("metrics_token_file {}", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            if token.len() < 16 {
                anyhow::bail!("metrics_token_file {}: the token must be at least 16 characters", path.display());
            }
            Some(token)
        }
    };
    let app = http::router(AppState {
        store: store.clone(),
        stats: stats.clone(),
        keys: keys_api,
        hub_url,
        throttle: Arc::default(),
        secure_cookies: cfg.secure_cookies,
        bus: bus.clone(),
        metrics: http::MetricsAccess { loopback: cfg.metrics_loopback, token: metrics_token },
        commander,
        mosquitto,
        archive: http::ArchiveSettings { dir: cfg.archive_dir(), hot_days: cfg.retention.findings_days },
        leader,
    });
    Ok(Running {
        store,
        stats,
        bus,
        http_addr,
        mqtt_addr: cfg.mqtt_listen,
        http_listener,
        app,
        broker_stopped: broker.stopped,
    })
}

impl Running {
    /// Serves until `shutdown` resolves or the broker dies.
    pub async fn wait(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        // The peer address feeds sign-in throttling.
        let app = self.app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(self.http_listener, app).with_graceful_shutdown(shutdown);
        tokio::select! {
            res = server => res.context("HTTP server")?,
            why = self.broker_stopped => anyhow::bail!(why.unwrap_or_else(|_| "MQTT broker thread ended".into())),
        }
        info!("hub stopped");
        Ok(())
    }
}

/// Starts the hub and serves until `shutdown`.
pub async fn run(cfg: HubConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    raise_open_files(&cfg);
    start(&cfg).await?.wait(shutdown).await
}

/// Open files the embedded broker takes per connected router: the router's
/// socket, the relay's socket to rumqttd and rumqttd's end of it.
const FILES_PER_ROUTER: u64 = 3;

/// Raises the soft limit of open files to the hard one: every router is
/// three sockets with the embedded broker, and the usual soft limit (1,024
/// under systemd, whose hard limit is 524,288) would refuse routers past
/// about 340 with "Too many open files". Says when the limit is below what
/// `max_connections` needs.
fn raise_open_files(cfg: &HubConfig) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    let files: u64 = lim.rlim_cur;
    if cfg.broker.mode == crate::config::BrokerMode::Embedded {
        let routers = files.saturating_sub(256) / FILES_PER_ROUTER;
        if routers < cfg.broker.max_connections as u64 {
            tracing::warn!(
                open_files = files,
                routers,
                max_connections = cfg.broker.max_connections,
                "the open-file limit holds fewer routers than [broker] max_connections (3 files each); \
                 raise it (LimitNOFILE= in the systemd unit, ulimit -n)"
            );
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info, quiet brokers and
/// sqlx), with colour codes only for a person at a terminal
/// (https://no-color.org). For the `opmas-hub` and `opmas-demo` binaries.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
