//! `opmas-hub` command line: parses flags, sets up logging, calls the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use opmas_hub::config::{HubConfig, Overrides};
use opmas_hub::enrol::RunningHub;
use opmas_hub::store::{now_ms, users, Store};
use opmas_hub::{enrol, serve};
use opmas_proto::DeviceId;

/// See `hub/Cargo.toml` for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OPMAS hub: MQTT broker, ingest, storage and REST API for a fleet of OpenWRT routers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the hub's settings and data are; every command takes these.
#[derive(Args, Debug, Default)]
struct Common {
    /// TOML settings file (default: config/hub.toml if present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory holding opmas.db and admin.token [env: OPMAS_DATA_DIR] [default: ./opmas-data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database: postgres://USER@HOST/DB for PostgreSQL, else a SQLite file
    /// [env: OPMAS_DATABASE_URL] [default: opmas.db in the data directory].
    /// A password is better given in PGPASSWORD than in the URL.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

/// The listeners of `serve`.
#[derive(Args, Debug, Default)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// MQTT listen address [env: OPMAS_MQTT_LISTEN] [default: 0.0.0.0:1883].
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<std::net::SocketAddr>,
    /// MQTT over TLS listen address, off unless set; needs --tls-cert and --tls-key [env: OPMAS_MQTTS_LISTEN].
    #[arg(long, value_name = "ADDR")]
    mqtts_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain for --mqtts-listen [env: OPMAS_TLS_CERT].
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert [env: OPMAS_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) for mutual TLS: routers must present a certificate they signed [env: OPMAS_TLS_CLIENT_CA].
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// REST API listen address [env: OPMAS_HTTP_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the hub (the default). For a try-out with simulated routers, see `demo`.
    Serve(ServeArgs),
    /// Enrol, list, rekey and remove devices.
    Device {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Add users, set their passwords, list them (the hub creates `admin` at its first start).
    User {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Create, list and revoke API tokens; a token has its user's role.
    Token {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Archived findings: export days to files, import them back, list them.
    Archive {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Correlation rules: try one on stored findings.
    Rules {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The try-out: this hub with simulated routers running the real edge
    /// code. That is the `opmas-demo` binary (the hub does not link the
    /// edge); this runs it when it is installed beside the hub.
    Demo {
        /// Passed to opmas-demo (see `opmas-demo --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Runs `opmas-demo` from beside this binary with `args`, or says how to get it.
fn demo(args: Vec<std::ffi::OsString>) -> Result<()> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let beside = exe.with_file_name("opmas-demo");
    if !beside.is_file() {
        anyhow::bail!(
            "the demo is its own binary, opmas-demo, and it is not beside {} (the hub does not link the edge code \
             the simulated routers run); from a source checkout: cargo run --release -p opmas-demo",
            exe.display()
        );
    }
    let status = std::process::Command::new(&beside)
        .args(args)
        .status()
        .with_context(|| format!("running {}", beside.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

#[derive(Subcommand, Debug)]
enum ArchiveCommand {
    /// Write the findings stored on each UTC day from --since to --until
    /// (inclusive) to DIR/findings-YYYY-MM-DD.jsonl.zst and its
    /// manifest.json; the database keeps them. A day in the manifest already
    /// is skipped.
    Export {
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        since: String,
        /// Last day, YYYY-MM-DD [default: today].
        #[arg(long)]
        until: Option<String>,
        /// Where to [default: [retention] archive_dir, or DATA_DIR/archive].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Put the findings of archive files back into the database (rows it
    /// has already are left alone; rows of routers no longer enrolled are
    /// counted and skipped).
    Import {
        /// findings-YYYY-MM-DD.jsonl.zst files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// One retention pass now, as the running hub makes every hour: the
    /// days older than [retention] findings_days are archived, then deleted.
    Retire,
    /// The archived days of the archive directory's manifest.
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Replay the findings and heartbeats stored in the last --since
    /// through the rules of FILE and print what would have fired; nothing
    /// is stored.
    Test {
        /// A YAML file of one rule or a list (as config/rules/*.yaml).
        file: PathBuf,
        /// How far back: 90s, 10m, 2h, 7d.
        #[arg(long, default_value = "7d")]
        since: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token for a user (printed once; the hub keeps only its hash).
    Create {
        /// The user it acts for; it has their role.
        #[arg(long)]
        user: String,
        /// A label saying where it is used.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Revoke a token by its id (see `token list`); it is refused at once.
    Revoke {
        /// The token's id.
        id: i64,
    },
    /// List tokens: id, label, user and role (never the tokens themselves).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user with a role; prints a generated password unless --password-stdin.
    Add {
        /// User name (a-z, 0-9, '.', '-', '_').
        name: String,
        /// admin (everything, users and tokens), operator (acknowledge, act, configure) or viewer (read only).
        #[arg(long)]
        role: String,
        /// Read the password from standard input (one line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password; prints a generated one unless --password-stdin.
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input (one line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users and their roles.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Enrol a device: prints its id, its secret and the uci commands for the router.
    Add {
        /// Device name; becomes the device id (a-z, 0-9, '-', '_', '.').
        name: String,
        /// Hub URL the router should connect to [default: mqtt://<this host>:<mqtt port>].
        #[arg(long)]
        hub_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print a whole /etc/config/opmas file instead of uci commands
        /// (for routers configured by file, or the edge on a Linux machine).
        #[arg(long, conflicts_with = "json")]
        config_file: bool,
        /// Create the database if the data directory has none (normally the
        /// hub creates it at its first start).
        #[arg(long)]
        create_db: bool,
        /// A router without an OPMAS agent, reached over SSH at USER@HOST[:PORT]
        /// (user root, port 22 by default): its host key is pinned now, and
        /// the hub's actions reach it over SSH.
        #[arg(long, value_name = "USER@HOST[:PORT]", conflicts_with_all = ["hub_url", "config_file"])]
        ssh: Option<String>,
        /// With --ssh: the router's host key fingerprint as read on its console
        /// (`dropbearkey -y -f /etc/dropbear/dropbear_ed25519_host_key`);
        /// enrolment stops if the router offers another.
        #[arg(long, value_name = "SHA256:...", requires = "ssh")]
        host_key_fingerprint: Option<String>,
        /// With --ssh: a service restart_service may restart there (repeat;
        /// default dnsmasq, odhcpd, uhttpd).
        #[arg(long = "service", value_name = "NAME", requires = "ssh")]
        services: Vec<String>,
    },
    /// Print the hub's SSH public key, for the authorized_keys of routers reached over SSH.
    SshKey,
    /// Write mosquitto's password and ACL files from the enrolled routers and
    /// make it re-read them ([broker] mosquitto_* in hub.toml; `add`,
    /// `remove` and `rekey` do it too).
    BrokerSync,
    /// Remove a device with its findings; its secret stops working at once.
    Remove {
        /// The device id.
        id: String,
    },
    /// Give a device a new secret (the old one is refused at once); prints the new uci commands.
    Rekey {
        /// The device id.
        id: String,
        /// Hub URL the router should connect to [default: mqtt://<this host>:<mqtt port>].
        #[arg(long)]
        hub_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List enrolled devices.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    serve::init_logging();
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let (common, flags) = match &command {
        Command::Serve(a) => (
            &a.common,
            Overrides {
                mqtt_listen: a.mqtt_listen,
                mqtts_listen: a.mqtts_listen,
                tls_cert: a.tls_cert.clone(),
                tls_key: a.tls_key.clone(),
                tls_client_ca: a.tls_client_ca.clone(),
                http_listen: a.http_listen,
                ..Overrides::default()
            },
        ),
        Command::Device { common, .. }
        | Command::User { common, .. }
        | Command::Token { common, .. }
        | Command::Rules { common, .. }
        | Command::Archive { common, .. } => (common, Overrides::default()),
        Command::Demo { args } => return demo(args.clone()),
    };
    let flags = Overrides { data_dir: common.data_dir.clone(), database_url: common.database_url.clone(), ..flags };
    let cfg = HubConfig::load(common.config.as_deref(), &HubConfig::env_overrides()?, &flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve(_) => serve::run(cfg, serve::shutdown_signal()).await,
            Command::Device { command, .. } => device(cfg, command).await,
            Command::User { command, .. } => user(cfg, command).await,
            Command::Token { command, .. } => token(cfg, command).await,
            Command::Rules { command, .. } => rules(cfg, command).await,
            Command::Archive { command, .. } => archive(cfg, command).await,
            // Returned before the runtime started.
            Command::Demo { .. } => Ok(()),
        }
    })
}

/// Keeps mosquitto's files in step with the routers, if the hub is set to
/// ([broker] mosquitto_*); says what it did.
async fn mosquitto_sync(cfg: &HubConfig, store: &opmas_hub::store::Store) -> Result<Option<String>> {
    let Some(m) = opmas_hub::broker::mosquitto::Mosquitto::from_config(&cfg.broker)? else { return Ok(None) };
    let n = m.sync(store).await.context("keeping mosquitto's password and ACL files in step")?;
    let told =
        if m.pid_file.is_some() { "; mosquitto re-reads them" } else { "; no pid file: reload mosquitto yourself" };
    Ok(Some(format!("mosquitto: {n} routers in {} and {}{told}", m.password_file.display(), m.acl_file.display())))
}

async fn device(cfg: HubConfig, command: DeviceCommand) -> Result<()> {
    if let DeviceCommand::SshKey = command {
        opmas_hub::store::create_private_dir(&cfg.data_dir)?;
        let identity = opmas_hub::act::ssh::Identity::load_or_create(&cfg.data_dir)?;
        return out(&format!("{}\n", identity.public_line()));
    }
    let create = matches!(command, DeviceCommand::Add { create_db: true, .. });
    let store = open_store(&cfg, create, "; or add --create-db to `device add`").await?;
    let hub_url = |given: Option<String>| given.unwrap_or_else(|| enrol::default_hub_url(cfg.mqtt_listen.port()));
    match command {
        DeviceCommand::Add { name, ssh: Some(address), host_key_fingerprint, services, json, .. } => {
            let identity = opmas_hub::act::ssh::Identity::load_or_create(&cfg.data_dir)?;
            let e =
                enrol::add_ssh(&store, &identity, &name, &address, host_key_fingerprint.as_deref(), services).await?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&e)?))?;
            } else {
                let login = match &e.login_error {
                    None => "The router lets the hub in: its actions will run there.".to_owned(),
                    Some(why) => format!(
                        "The router does not let the hub in yet ({why}).\nOn the router, add the hub's key:\n\n  \
                         echo '{}' >> /etc/dropbear/authorized_keys",
                        e.hub_key
                    ),
                };
                out(&format!(
                    "Enrolled device {} over SSH ({}@{}:{}).\n\nhost key pinned: {}\n\n{login}\n",
                    e.id, e.user, e.host, e.port, e.host_key_fingerprint
                ))?;
            }
        }
        DeviceCommand::SshKey => {}
        DeviceCommand::BrokerSync => match mosquitto_sync(&cfg, &store).await? {
            Some(line) => out(&format!("{line}\n"))?,
            None => anyhow::bail!(
                "no mosquitto files to write: set [broker] mosquitto_password_file and mosquitto_acl_file in hub.toml"
            ),
        },
        DeviceCommand::Add { name, hub_url: url, json, config_file, .. } => {
            let e = enrol::add(&store, &name, &hub_url(url)).await?;
            if let Some(line) = mosquitto_sync(&cfg, &store).await? {
                eprintln!("{line}");
            }
            if config_file {
                out(&e.config)?;
            } else {
                print_enrolled(&e, json, "Enrolled")?;
            }
        }
        DeviceCommand::Remove { id } => {
            let id = DeviceId::new(&id).with_context(|| format!("{id:?} is not a device id"))?;
            match RunningHub::find(&cfg.data_dir).await {
                Some(hub) => {
                    hub.remove(&id).await?;
                    out(&format!("Removed device {id}; the hub at {} refuses its secret from now on.\n", hub.base()))?;
                }
                None => {
                    enrol::remove(&store, None, &id).await?;
                    out(&format!("Removed device {id} (no hub is running on this data directory).\n"))?;
                    if let Some(line) = mosquitto_sync(&cfg, &store).await? {
                        out(&format!("{line}\n"))?;
                    }
                }
            }
        }
        DeviceCommand::Rekey { id, hub_url: url, json } => {
            let id = DeviceId::new(&id).with_context(|| format!("{id:?} is not a device id"))?;
            let url = hub_url(url);
            let e = match RunningHub::find(&cfg.data_dir).await {
                Some(hub) => hub.rekey(&id, &url).await?,
                None => {
                    let e = enrol::rekey(&store, None, &id, &url).await?;
                    if let Some(line) = mosquitto_sync(&cfg, &store).await? {
                        eprintln!("{line}");
                    }
                    e
                }
            };
            print_enrolled(&e, json, "New secret for")?;
        }
        DeviceCommand::List { json } => {
            let mut devices = store.list_devices().await?;
            // The stored status is what the hub last knew; a hub that stopped
            // (or a router gone silent) leaves "online" behind.
            let cutoff = now_ms() - cfg.presence_timeout_s as i64 * 1000;
            for d in &mut devices {
                if d.status == "online" && d.last_seen_ms.is_none_or(|t| t < cutoff) {
                    d.status = "offline".into();
                }
            }
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&devices)?))?;
            } else {
                let mut text = format!("{:<24} {:<9} {:<8} {}\n", "ID", "TRANSPORT", "STATUS", "LAST SEEN");
                for d in devices {
                    let seen = d.last_seen_ms.map(opmas_hub::http::rfc3339).unwrap_or_else(|| "never".into());
                    let status = if d.transport == "ssh" { "-" } else { d.status.as_str() };
                    text.push_str(&format!("{:<24} {:<9} {:<8} {}\n", d.id, d.transport, status, seen));
                }
                out(&text)?;
            }
        }
    }
    Ok(())
}

/// Opens the hub's database for a command, saying which on stderr; creates
/// one only if `create` (the hub does at its first start). `hint` ends the
/// error when there is none.
async fn open_store(cfg: &HubConfig, create: bool, hint: &str) -> Result<Store> {
    if cfg.is_postgres() {
        let label = cfg.database_label();
        let store = Store::open(&cfg.database()).await.with_context(|| format!("opening {label}"))?;
        eprintln!("using the hub database {label}");
        return Ok(store);
    }
    let db = cfg.db_path();
    if !db.exists() && !create {
        anyhow::bail!(
            "no hub database at {} (data directory {}): start the hub with this --data-dir first, \
             or pass the hub's --data-dir here{hint}",
            db.display(),
            cfg.data_dir.display()
        );
    }
    opmas_hub::store::create_private_dir(&cfg.data_dir)?;
    let store = Store::open(&cfg.database()).await.with_context(|| format!("opening {}", db.display()))?;
    eprintln!("using the hub database {}", db.display());
    Ok(store)
}

/// The password for `user add|passwd`: one line of standard input, or a new random one (printed).
fn password(from_stdin: bool) -> Result<(String, bool)> {
    if !from_stdin {
        return Ok((users::new_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let p = line.trim_end_matches(['\n', '\r']).to_owned();
    users::check_password(&p).map_err(anyhow::Error::msg)?;
    Ok((p, false))
}

async fn user(cfg: HubConfig, command: UserCommand) -> Result<()> {
    let store = open_store(&cfg, false, "").await?;
    match command {
        UserCommand::Add { name, role, password_stdin } => {
            let role = users::Role::parse(&role).map_err(anyhow::Error::msg)?;
            users::check_name(&name).map_err(anyhow::Error::msg)?;
            let (password, generated) = password(password_stdin)?;
            store.insert_user(&name, role, &password, now_ms()).await?;
            let shown = if generated {
                format!("\npassword: {password}\n(shown once; the hub keeps only its hash)\n")
            } else {
                String::new()
            };
            out(&format!("Added user {name} with role {}.{shown}\n", role.as_str()))?;
        }
        UserCommand::Passwd { name, password_stdin } => {
            let (password, generated) = password(password_stdin)?;
            store.set_password(&name, &password, now_ms()).await?;
            let shown = if generated { format!("\npassword: {password}\n(shown once)\n") } else { String::new() };
            out(&format!("New password for {name}.{shown}\n"))?;
        }
        UserCommand::List { json } => {
            let users = store.list_users().await?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&users)?))?;
            } else {
                let mut text = format!("{:<24} {:<9} {}\n", "NAME", "ROLE", "PASSWORD SET");
                for u in users {
                    let when = opmas_hub::http::rfc3339(u.password_changed_ms);
                    text.push_str(&format!("{:<24} {:<9} {}\n", u.name, u.role.as_str(), when));
                }
                out(&text)?;
            }
        }
    }
    Ok(())
}

async fn archive(cfg: HubConfig, command: ArchiveCommand) -> Result<()> {
    use opmas_hub::archive::{self, parse_day, Manifest, DAY_MS};
    match command {
        ArchiveCommand::Export { since, until, dir } => {
            let from = parse_day(&since).context("--since")?;
            let to = match until {
                Some(u) => parse_day(&u).context("--until")? + DAY_MS,
                None => now_ms(),
            };
            if to <= from {
                anyhow::bail!("--until is before --since");
            }
            let dir = dir.unwrap_or_else(|| cfg.archive_dir());
            let store = open_store(&cfg, false, "").await?;
            let written = archive::export(&store, &dir, from, to).await?;
            for d in &written {
                out(&format!(
                    "{}  {:>8} findings  {:>10} bytes  {}\n",
                    d.day,
                    d.findings,
                    d.bytes,
                    dir.join(&d.file).display()
                ))?;
            }
            out(&format!("{} day(s) written to {}\n", written.len(), dir.display()))?;
        }
        ArchiveCommand::Import { files } => {
            let store = open_store(&cfg, false, "").await?;
            let n = archive::import(&store, &files).await?;
            out(&format!(
                "imported {} findings; {} were there already; {} belong to routers no longer enrolled (not imported)\n",
                n.findings, n.present, n.device_gone
            ))?;
        }
        ArchiveCommand::Retire => {
            let store = open_store(&cfg, false, "").await?;
            let dir = cfg.archive_dir();
            let r = archive::pass(&store, &dir, &cfg.retention, now_ms()).await?;
            out(&format!(
                "{} day(s) archived to {}; {} findings older than {} days deleted from the database\n",
                r.days_archived,
                dir.display(),
                r.findings_deleted,
                cfg.retention.findings_days
            ))?;
            let h = &r.history;
            out(&format!(
                "deleted: {} incidents resolved over {} days ago; audit rows over {} days old: {} actions, {} commands, \
                 {} configuration changes, {} presence changes, {} notifications\n",
                h.incidents,
                cfg.retention.incidents_days,
                cfg.retention.audit_days,
                h.actions,
                h.commands,
                h.config_changes,
                h.presence_changes,
                h.notifications
            ))?;
        }
        ArchiveCommand::List { dir } => {
            let dir = dir.unwrap_or_else(|| cfg.archive_dir());
            let m = Manifest::load(&dir)?;
            let mut text = format!("{:<12} {:>9} {:>11}  {}\n", "DAY", "FINDINGS", "BYTES", "FILE");
            for d in &m.days {
                text.push_str(&format!("{:<12} {:>9} {:>11}  {}\n", d.day, d.findings, d.bytes, d.file));
            }
            out(&text)?;
        }
    }
    Ok(())
}

async fn rules(cfg: HubConfig, command: RulesCommand) -> Result<()> {
    use opmas_hub::correlate::{replay, rule};
    match command {
        RulesCommand::Test { file, since } => {
            let since_ms = rule::parse_duration(&since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let specs = rule::parse_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut rules = Vec::new();
            for spec in specs {
                let name = spec.name.clone();
                let r = rule::Rule::compile(spec).map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(|e| format!("  {}: {}", e.path, e.reason)).collect();
                    anyhow::anyhow!("{}: rule {name:?} does not check:\n{}", file.display(), lines.join("\n"))
                })?;
                rules.push(r);
            }
            let store = open_store(&cfg, false, "").await?;
            let now = now_ms();
            let from = now - since_ms;
            let result = replay::replay(&store, rules.clone(), from, now).await?;
            out(&result.report(&rules, from))?;
        }
    }
    Ok(())
}

async fn token(cfg: HubConfig, command: TokenCommand) -> Result<()> {
    let store = open_store(&cfg, false, "").await?;
    match command {
        TokenCommand::Create { user, name } => {
            let (token, id) = store.create_user_token(&user, &name, now_ms()).await?;
            out(&format!(
                "Token {id} ({name}) for user {user}:\n\n{token}\n\n(shown once; use it as `Authorization: Bearer <token>`)\n"
            ))?;
        }
        TokenCommand::Revoke { id } => {
            store.revoke_token(id).await?;
            out(&format!("Revoked token {id}; it is refused from now on.\n"))?;
        }
        TokenCommand::List { json } => {
            let tokens = store.list_tokens().await?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&tokens)?))?;
            } else {
                let mut text = format!("{:<5} {:<20} {:<16} {:<9} {}\n", "ID", "NAME", "USER", "ROLE", "CREATED");
                for t in tokens {
                    let user = t.user.as_deref().unwrap_or("-");
                    let created = opmas_hub::http::rfc3339(t.created_ms);
                    text.push_str(&format!(
                        "{:<5} {:<20} {:<16} {:<9} {created}\n",
                        t.id,
                        t.name,
                        user,
                        t.role.as_str()
                    ));
                }
                out(&text)?;
            }
        }
    }
    Ok(())
}

fn print_enrolled(e: &enrol::Enrolled, json: bool, what: &str) -> Result<()> {
    if json {
        out(&format!("{}\n", serde_json::to_string_pretty(e)?))
    } else {
        out(&format!(
            "{what} device {}.\n\nid:     {}\nsecret: {}\n\nOn the router, run:\n\n{}\n",
            e.id, e.id, e.secret, e.uci
        ))
    }
}

/// Writes to standard output; a reader that went away (`| head`) is not an
/// error.
fn out(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
