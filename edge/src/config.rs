//! The edge's settings, read from the UCI file `/etc/config/opmas`.
//!
//! ```text
//! config hub 'hub'
//!     option url 'mqtt://192.168.1.10:1883'   # or mqtts://host (port 8883) with TLS
//!     option device_id 'gw-lab-1'
//!     option secret '<64 hex digits>'
//!     option heartbeat_interval '30'
//!     option spool_bytes '1048576'
//!     option agent_restarts '5'      # restarts in a row before a failing agent is given up on
//!     option agent_backoff_max '60'  # longest wait between them, seconds
//!     # mqtts:// only (the opmas-edge-tls build, cargo feature `tls`):
//!     option ca_file '/etc/opmas/ca.crt'      # required: the CA of the hub's certificate
//!     option cert_file '/etc/opmas/edge.crt'  # mutual TLS: both or neither
//!     option key_file '/etc/opmas/edge.key'
//!     option tls_server_name 'hub.lan'        # when the certificate does not name the URL host
//! config source
//!     option type 'logread'          # or udp (option listen), file (option path), stdin
//! config agent 'security'
//!     option ssh_failures '5'
//!     option ssh_window '60'
//!     option ssh_suppress '600'
//! ```
//!
//! Every error names the option and its line.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use opmas_proto::net::IpNet;
use opmas_proto::{DeviceId, Secret};

use crate::supervise::RestartPolicy;
use opmas_proto::pattern::Excludes;

/// The agent option (a UCI list, a list in the hub's configuration) of
/// patterns of lines the agent ignores; see [`opmas_proto::pattern`].
pub const EXCLUDE: &str = "exclude_patterns";

use std::collections::BTreeMap;

use opmas_proto::agents::{NetworkConfig, SecurityConfig, SystemConfig, WifiConfig};
use opmas_proto::msg::Value;

use crate::act::{ActConfig, LocalOverride, LocalSettings, Tools};
use crate::spool::DEFAULT_BUDGET;
pub use crate::tls::{ClientCert, TlsConfig};
use crate::uci::{self, Package, Section};

/// Everything `opmas-edge run` needs.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub hub: HubConfig,
    pub sources: Vec<SourceConfig>,
    pub agents: AgentsConfig,
    /// What actions may do on this router (`config response 'response'`).
    pub act: ActConfig,
}

/// Which agents run, with what thresholds. `None` = disabled
/// (`option enabled '0'` in the agent's section).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentsConfig {
    pub security: Option<SecurityConfig>,
    pub wifi: Option<WifiConfig>,
    pub network: Option<NetworkConfig>,
    pub system: Option<SystemConfig>,
    /// Each agent's `exclude_patterns` (lines it ignores), by agent name;
    /// an agent without any is absent.
    pub exclude: BTreeMap<String, Excludes>,
    /// The local response settings the hub sets in the security agent's
    /// configuration (none from UCI: the router's own are in `config response`).
    pub local: LocalOverride,
}

impl Default for AgentsConfig {
    /// All four agents with the defaults of `config/agents/*.yaml`.
    fn default() -> Self {
        AgentsConfig {
            security: Some(SecurityConfig::default()),
            wifi: Some(WifiConfig::default()),
            network: Some(NetworkConfig::default()),
            system: Some(SystemConfig::default()),
            exclude: BTreeMap::new(),
            local: LocalOverride::default(),
        }
    }
}

impl AgentsConfig {
    /// Reads only the `config agent '<name>'` sections of a UCI file.
    pub fn from_uci_text(text: &str) -> Result<AgentsConfig, ConfigError> {
        Self::from_package(&uci::parse(text)?)
    }

    /// Applies every `config agent '<name>'` section over the defaults.
    pub fn from_package(pkg: &Package) -> Result<AgentsConfig, ConfigError> {
        let mut cfg = AgentsConfig::default();
        for s in pkg.sections_of("agent") {
            let Some(name) = s.name.as_deref() else {
                return Err(ConfigError::Section {
                    line: s.line,
                    message: "an agent section needs a name: config agent 'security' (or wifi, network, system)".into(),
                });
            };
            let enabled = boolean(s, "enabled", true)?;
            let params = agent_params(s)?;
            let patterns = s.get_list(EXCLUDE);
            if !patterns.is_empty() {
                let line = s.line_of(EXCLUDE).unwrap_or(s.line);
                let excludes = Excludes::new(&patterns).map_err(|(i, e)| ConfigError::Agent {
                    line,
                    message: format!("{name} agent: {EXCLUDE} {:?}: {e}", patterns.get(i).copied().unwrap_or("")),
                })?;
                cfg.exclude.insert(name.to_owned(), excludes);
            }
            let applied = match name {
                "security" => apply_to(&mut cfg.security, enabled, &params),
                "wifi" => apply_to(&mut cfg.wifi, enabled, &params),
                "network" => apply_to(&mut cfg.network, enabled, &params),
                "system" => apply_to(&mut cfg.system, enabled, &params),
                other => {
                    return Err(ConfigError::Section {
                        line: s.line,
                        message: format!("unknown agent {other:?}; known: security, wifi, network, system"),
                    })
                }
            };
            applied.map_err(|e| {
                // The parameter the error names, not a search of its text
                // (`max_fails` is inside `max_fails_window`).
                let line = e.param().and_then(|p| s.line_of(p));
                ConfigError::Agent { line: line.unwrap_or(s.line), message: e.to_string() }
            })?;
        }
        Ok(cfg)
    }

    /// The configuration the hub sent: every agent it names, over the
    /// defaults (an agent it does not name runs with its defaults). Any bad
    /// value refuses the whole document, naming the agent and parameter.
    pub fn from_doc(doc: &opmas_proto::msg::ConfigDoc) -> Result<AgentsConfig, String> {
        let mut cfg = AgentsConfig::default();
        for (name, a) in &doc.agents {
            let mut params = a.params.clone();
            if let Some(list) = params.remove(EXCLUDE) {
                let Value::List(patterns) = list else {
                    return Err(format!("{name} agent: {EXCLUDE} must be a list of patterns"));
                };
                let excludes =
                    Excludes::new(&patterns).map_err(|(i, e)| format!("{name} agent: {EXCLUDE}[{i}]: {e}"))?;
                if !excludes.is_empty() {
                    cfg.exclude.insert(name.clone(), excludes);
                }
            }
            if name == "security" {
                cfg.local = LocalOverride::take(&mut params).map_err(|e| format!("{name} agent: {e}"))?;
            }
            let applied = match name.as_str() {
                "security" => apply_to(&mut cfg.security, a.enabled, &params),
                "wifi" => apply_to(&mut cfg.wifi, a.enabled, &params),
                "network" => apply_to(&mut cfg.network, a.enabled, &params),
                "system" => apply_to(&mut cfg.system, a.enabled, &params),
                other => return Err(format!("unknown agent {other:?}; known: security, wifi, network, system")),
            };
            applied.map_err(|e| e.to_string())?;
        }
        Ok(cfg)
    }
}

/// An agent config type from `opmas-proto`.
trait AgentParams: Default {
    fn apply(&mut self, params: &BTreeMap<String, Value>) -> Result<(), opmas_proto::agents::AgentConfigError>;
}

macro_rules! agent_params {
    ($($t:ty),*) => {$(
        impl AgentParams for $t {
            fn apply(&mut self, params: &BTreeMap<String, Value>) -> Result<(), opmas_proto::agents::AgentConfigError> {
                <$t>::apply(self, params)
            }
        }
    )*};
}
agent_params!(SecurityConfig, WifiConfig, NetworkConfig, SystemConfig);

fn apply_to<T: AgentParams>(
    slot: &mut Option<T>,
    enabled: bool,
    params: &BTreeMap<String, Value>,
) -> Result<(), opmas_proto::agents::AgentConfigError> {
    let mut cfg = slot.take().unwrap_or_default();
    cfg.apply(params)?;
    *slot = enabled.then_some(cfg);
    Ok(())
}

/// The section's options other than `enabled`, as integers where they parse
/// (the agent's validation names any that do not).
fn agent_params(s: &Section) -> Result<BTreeMap<String, Value>, ConfigError> {
    let mut params = BTreeMap::new();
    for (name, _, _) in s.options.iter().filter(|(n, _, _)| n != "enabled" && n != EXCLUDE) {
        let Some(v) = s.get(name) else {
            return Err(ConfigError::Agent {
                line: s.line_of(name).unwrap_or(s.line),
                message: format!("option {name} must be a single value, not a list"),
            });
        };
        let value = v.trim().parse::<i64>().map(Value::Int).unwrap_or_else(|_| Value::Str(v.to_owned()));
        params.insert(name.clone(), value);
    }
    Ok(params)
}

/// The options of `config hub`.
const HUB_OPTIONS: &[&str] = &[
    "url",
    "device_id",
    "secret",
    "heartbeat_interval",
    "keepalive",
    "backoff_max",
    "spool_bytes",
    "ca_file",
    "cert_file",
    "key_file",
    "tls_server_name",
    "state_dir",
    "agent_restarts",
    "agent_backoff_max",
];

/// The options of `config source` (of all its types).
const SOURCE_OPTIONS: &[&str] = &["type", "enabled", "command", "listen", "path", "from_start"];

/// Refuses an option the section does not have, naming it, its line and
/// the ones it could have meant.
fn known_options(s: &Section, known: &[&str]) -> Result<(), ConfigError> {
    match s.options.iter().find(|(name, _, _)| !known.contains(&name.as_str())) {
        None => Ok(()),
        Some((name, _, line)) => Err(ConfigError::Section {
            line: *line,
            message: format!("unknown option {name} in the {} section; known: {}", s.kind, known.join(", ")),
        }),
    }
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub host: String,
    pub port: u16,
    pub device_id: DeviceId,
    pub secret: Secret,
    pub heartbeat_interval: Duration,
    /// MQTT keep-alive; the broker drops us (and publishes the Last Will)
    /// after 1.5 times this without traffic.
    pub keepalive: Duration,
    /// Longest wait between reconnect attempts.
    pub backoff_max: Duration,
    /// Spool byte budget.
    pub spool_bytes: usize,
    /// TLS for an `mqtts://` URL; `None` for `mqtt://`.
    pub tls: Option<TlsConfig>,
    /// Where the edge keeps what must outlive a restart or a reboot (the
    /// last command it ran, so that a replayed one is refused). On OpenWRT
    /// `/etc/opmas`, on flash: written once per command, rarely.
    pub state_dir: PathBuf,
    /// What the supervisor does with an agent that fails.
    pub restart: RestartPolicy,
}

/// The default of `option state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/etc/opmas";

/// One log source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// Run `logread -f` (OpenWRT's default) and read its output; restarted
    /// with backoff when it exits.
    Logread { command: PathBuf },
    /// Listen for syslog datagrams (logd's `log_ip`/`log_port`).
    Udp { listen: std::net::SocketAddr },
    /// Follow a file like `tail -F`.
    File { path: PathBuf, from_start: bool },
    /// Read standard input until it ends.
    Stdin,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Uci(#[from] uci::UciError),
    #[error("no `config hub 'hub'` section")]
    NoHub,
    #[error("line {line}: option {option}: {message}")]
    Option { line: usize, option: &'static str, message: String },
    #[error("section `{kind}` at line {line}: missing option {option}")]
    Missing { kind: String, line: usize, option: &'static str },
    #[error("no `config source` section: nothing to read")]
    NoSource,
    #[error("line {line}: {message}")]
    Section { line: usize, message: String },
    #[error("line {line}: {message}")]
    Agent { line: usize, message: String },
}

impl EdgeConfig {
    /// Parses the text of a UCI file.
    pub fn from_uci_text(text: &str) -> Result<EdgeConfig, ConfigError> {
        Self::from_package(&uci::parse(text)?)
    }

    pub fn from_package(pkg: &Package) -> Result<EdgeConfig, ConfigError> {
        for s in &pkg.sections {
            if !["hub", "source", "agent", "response"].contains(&s.kind.as_str()) {
                return Err(ConfigError::Section {
                    line: s.line,
                    message: format!("unknown section type {:?}; known: hub, source, agent, response", s.kind),
                });
            }
        }
        let hub = pkg.section("hub", "hub").or_else(|| pkg.sections_of("hub").next()).ok_or(ConfigError::NoHub)?;
        known_options(hub, HUB_OPTIONS)?;
        let url = required(hub, "url")?;
        let (scheme, host, port) = parse_url(url).map_err(|message| bad(hub, "url", message))?;
        let tls = hub_tls(hub, scheme, url, &host)?;
        let device_id = DeviceId::new(required(hub, "device_id")?).map_err(|e| bad(hub, "device_id", e.to_string()))?;
        let secret = Secret::from_hex(required(hub, "secret")?).map_err(|e| bad(hub, "secret", e.to_string()))?;
        let heartbeat_interval = Duration::from_secs(number(hub, "heartbeat_interval", 30, 1..=3600)?);
        let keepalive = Duration::from_secs(number(hub, "keepalive", 30, 5..=3600)?);
        let backoff_max = Duration::from_secs(number(hub, "backoff_max", 60, 1..=3600)?);
        let spool_bytes = number(hub, "spool_bytes", DEFAULT_BUDGET as u64, 4096..=64 << 20)? as usize;
        let defaults = RestartPolicy::default();
        let restart = RestartPolicy {
            max_restarts: number(hub, "agent_restarts", u64::from(defaults.max_restarts), 0..=1000)? as u32,
            backoff_max: Duration::from_secs(number(
                hub,
                "agent_backoff_max",
                defaults.backoff_max.as_secs(),
                1..=3600,
            )?),
            ..defaults
        };
        let state_dir = PathBuf::from(hub.get("state_dir").unwrap_or(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(bad(
                hub,
                "state_dir",
                format!("{:?} is not an absolute path", state_dir.display().to_string()),
            ));
        }

        let mut sources = Vec::new();
        for s in pkg.sections_of("source") {
            if matches!(s.get("enabled"), Some("0")) {
                continue;
            }
            let kind = s.get("type").unwrap_or("logread");
            // Any source type's options are accepted in any source section:
            // the packaged file documents them all in one, and switching
            // `type` must not make the others an error. A typo is one.
            known_options(s, SOURCE_OPTIONS)?;
            sources.push(match kind {
                "file" => SourceConfig::File {
                    path: PathBuf::from(required(s, "path")?),
                    from_start: boolean(s, "from_start", false)?,
                },
                "stdin" => SourceConfig::Stdin,
                "logread" => SourceConfig::Logread { command: PathBuf::from(s.get("command").unwrap_or("logread")) },
                "udp" => {
                    let listen = s.get("listen").unwrap_or("127.0.0.1:5514");
                    let listen = listen.parse().map_err(|_| {
                        bad(s, "listen", format!("{listen:?} is not an address:port like 127.0.0.1:5514"))
                    })?;
                    SourceConfig::Udp { listen }
                }
                other => {
                    return Err(bad(
                        s,
                        "type",
                        format!("unknown source type {other:?}; known: logread, udp, file, stdin"),
                    ))
                }
            });
        }
        if sources.is_empty() {
            return Err(ConfigError::NoSource);
        }

        let agents = AgentsConfig::from_package(pkg)?;
        let mut act = match pkg.sections_of("response").next() {
            Some(r) => response(r)?,
            None => ActConfig::default(),
        };
        // The hub's own address is never blocked: that would cut the router
        // off from the one who can lift the block.
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            act.never_block.push(IpNet::host(ip));
        }

        Ok(EdgeConfig {
            hub: HubConfig {
                host,
                port,
                device_id,
                secret,
                heartbeat_interval,
                keepalive,
                backoff_max,
                spool_bytes,
                tls,
                state_dir,
                restart,
            },
            sources,
            agents,
            act,
        })
    }
}

/// The options of `config response`.
const RESPONSE_OPTIONS: &[&str] = &[
    "actions",
    "never_block",
    "restart_service",
    "local_block",
    "local_kinds",
    "local_block_for",
    "nft",
    "ubus",
    "wifi",
    "init_dir",
];

/// `config response 'response'`: what actions may do here.
fn response(s: &Section) -> Result<ActConfig, ConfigError> {
    known_options(s, RESPONSE_OPTIONS)?;
    let mut never_block = Vec::new();
    for v in s.get_list("never_block") {
        never_block.push(v.parse::<IpNet>().map_err(|e| bad(s, "never_block", e.to_string()))?);
    }
    let defaults = ActConfig::default();
    let services = if s.entry("restart_service").is_some() {
        let mut out = Vec::new();
        for v in s.get_list("restart_service") {
            opmas_proto::msg::check_service(v).map_err(|e| bad(s, "restart_service", e))?;
            out.push(v.to_owned());
        }
        out
    } else {
        defaults.services
    };
    // Read whether blocking is on or not: the hub may switch it on with
    // the router's kinds and duration.
    let local = {
        use opmas_proto::local_response::{check_kinds, BLOCK, BLOCK_FOR, DEFAULT_BLOCK_FOR_S, KINDS};
        let d = LocalSettings::default();
        let listed: Vec<String> = s.get_list(KINDS).into_iter().map(str::to_owned).collect();
        if !listed.is_empty() {
            check_kinds(&listed).map_err(|(_, e)| bad(s, KINDS, e))?;
        }
        let max = u64::from(opmas_proto::msg::MAX_ACTION_S);
        let block_s = number(s, BLOCK_FOR, u64::from(DEFAULT_BLOCK_FOR_S), 1..=max)? as u32;
        LocalSettings {
            block: boolean(s, BLOCK, false)?,
            block_s,
            kinds: if listed.is_empty() { d.kinds } else { listed },
        }
    };
    let tool = |option: &'static str, default: &std::path::Path| -> Result<PathBuf, ConfigError> {
        match s.get(option) {
            None => Ok(default.to_path_buf()),
            Some(p) if std::path::Path::new(p).is_absolute() => Ok(PathBuf::from(p)),
            Some(p) => Err(bad(s, option, format!("{p:?} is not an absolute path"))),
        }
    };
    let t = Tools::default();
    Ok(ActConfig {
        enabled: boolean(s, "actions", true)?,
        never_block,
        services,
        tools: Tools {
            nft: tool("nft", &t.nft)?,
            ubus: tool("ubus", &t.ubus)?,
            wifi: tool("wifi", &t.wifi)?,
            init_dir: tool("init_dir", &t.init_dir)?,
        },
        local,
    })
}

fn bad(s: &Section, option: &'static str, message: String) -> ConfigError {
    ConfigError::Option { line: s.line_of(option).unwrap_or(s.line), option, message }
}

fn required<'a>(s: &'a Section, option: &'static str) -> Result<&'a str, ConfigError> {
    s.get(option).filter(|v| !v.is_empty()).ok_or_else(|| ConfigError::Missing {
        kind: s.kind.clone(),
        line: s.line,
        option,
    })
}

fn number(
    s: &Section,
    option: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(v) = s.get(option) else { return Ok(default) };
    match u64::from_str(v.trim()) {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad(s, option, format!("{v:?} is not a number from {} to {}", range.start(), range.end()))),
    }
}

fn boolean(s: &Section, option: &'static str, default: bool) -> Result<bool, ConfigError> {
    match s.get(option) {
        None => Ok(default),
        Some("1" | "on" | "true" | "yes" | "enabled") => Ok(true),
        Some("0" | "off" | "false" | "no" | "disabled") => Ok(false),
        Some(v) => Err(bad(s, option, format!("{v:?} is not a boolean (use 1 or 0)"))),
    }
}

/// The options of the hub section that only mean something with TLS.
const TLS_OPTIONS: [&str; 4] = ["ca_file", "cert_file", "key_file", "tls_server_name"];

/// The TLS settings of the hub section: `None` for `mqtt://`, else the
/// loaded files. TLS options with a plain URL are an error, so that a
/// router meant to use TLS does not quietly connect without it.
fn hub_tls(s: &Section, scheme: Scheme, url: &str, host: &str) -> Result<Option<TlsConfig>, ConfigError> {
    if scheme == Scheme::Mqtt {
        return match TLS_OPTIONS.into_iter().find(|o| s.get(o).is_some()) {
            Some(option) => Err(bad(
                s,
                option,
                format!("is a TLS option, but url {url:?} is plain MQTT: use an mqtts:// URL, or remove {option}"),
            )),
            None => Ok(None),
        };
    }
    if !crate::version::TLS {
        return Err(bad(
            s,
            "url",
            format!(
                "{url:?} needs TLS, but this opmas-edge was built without it (`opmas-edge --version` shows \
                 its features): install the opmas-edge-tls package, or use an mqtt:// URL"
            ),
        ));
    }
    let Some(ca_file) = s.get("ca_file").filter(|v| !v.is_empty()) else {
        return Err(ConfigError::Section {
            line: s.line_of("url").unwrap_or(s.line),
            message: format!(
                "{url:?} needs option ca_file, the PEM file of the CA that signed the hub's certificate \
                 (for a publicly signed hub: install ca-bundle and use /etc/ssl/certs/ca-certificates.crt)"
            ),
        });
    };
    let client_cert = match (s.get("cert_file"), s.get("key_file")) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ClientCert { cert_file: cert.into(), key_file: key.into() }),
        (Some(_), None) => {
            return Err(bad(s, "cert_file", "needs option key_file as well (mutual TLS uses both)".into()))
        }
        (None, Some(_)) => {
            return Err(bad(s, "key_file", "needs option cert_file as well (mutual TLS uses both)".into()))
        }
    };
    let server_name = s.get("tls_server_name").map(str::to_owned);
    load_tls(s, PathBuf::from(ca_file), client_cert, server_name, host)
}

#[cfg(feature = "tls")]
fn load_tls(
    s: &Section,
    ca_file: PathBuf,
    client_cert: Option<ClientCert>,
    server_name: Option<String>,
    host: &str,
) -> Result<Option<TlsConfig>, ConfigError> {
    // The certificate is checked against the URL's host unless
    // tls_server_name says otherwise, so that host must be a usable name.
    if server_name.is_none() && !crate::tls::is_server_name(host) {
        return Err(bad(
            s,
            "url",
            format!("host {host:?} is neither a DNS name nor an IP address a certificate can name; set option tls_server_name"),
        ));
    }
    match TlsConfig::load(ca_file, client_cert, server_name) {
        Ok(tls) => Ok(Some(tls)),
        Err(e) => Err(bad(s, e.option, e.message)),
    }
}

#[cfg(not(feature = "tls"))]
fn load_tls(
    _: &Section,
    _: PathBuf,
    _: Option<ClientCert>,
    _: Option<String>,
    _: &str,
) -> Result<Option<TlsConfig>, ConfigError> {
    // hub_tls returned before this: a build without TLS refuses mqtts://.
    Ok(None)
}

/// The URL scheme: plain MQTT or MQTT over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Mqtt,
    Mqtts,
}

/// `mqtt://host[:port]` (port 1883 by default) or `mqtts://host[:port]`
/// (8883) → (scheme, host, port).
fn parse_url(url: &str) -> Result<(Scheme, String, u16), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (Scheme::Mqtt, rest)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (Scheme::Mqtts, rest)
    } else {
        return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unclosed '['"))?;
        (h, p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{url:?} has no host"));
    }
    let port = match port {
        None if scheme == Scheme::Mqtts => 8883,
        None => 1883,
        Some(p) => match p.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{url:?}: port {p:?} is not a number from 1 to 65535")),
        },
    };
    Ok((scheme, host.to_owned(), port))
}

#[cfg(test)]
mod tests {

    /// The packaged /etc/config/opmas with every commented option switched
    /// on (the TLS ones need an mqtts:// url) is a valid configuration: the
    /// documentation cannot drift from what the edge reads.
    #[test]
    fn the_packaged_file_with_every_option_uncommented_is_valid() {
        let text = include_str!("../../openwrt/files/opmas.config");
        let tls = ["ca_file", "cert_file", "key_file", "tls_server_name"];
        let on: String = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                let uncommented = t.strip_prefix("#option ").or_else(|| t.strip_prefix("#list ").map(|_| &t[1..]));
                match uncommented {
                    Some(_) if tls.iter().any(|o| t.contains(o)) => String::new(),
                    Some(rest) if t.starts_with("#option ") => format!("\toption {rest}\n"),
                    Some(rest) => format!("\t{rest}\n"),
                    None => format!("{l}\n"),
                }
            })
            .collect();
        let cfg = EdgeConfig::from_uci_text(&on).unwrap_or_else(|e| panic!("{e}\n{on}"));
        assert_eq!(cfg.act.never_block.len(), 2, "the listed network and the hub's address");
        assert_eq!(cfg.act.local.response(), None, "local_block '0' as documented");
        assert_eq!(cfg.act.services, ["dnsmasq"]);
    }

    use super::*;

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn cfg(extra: &str) -> Result<EdgeConfig, ConfigError> {
        EdgeConfig::from_uci_text(&format!(
            "config hub 'hub'\n\toption url 'mqtt://192.168.1.10:1884'\n\toption device_id 'gw-1'\n\toption secret '{SECRET}'\n{extra}"
        ))
    }

    #[test]
    fn a_typical_file_gives_the_defaults() {
        let c = cfg("config source\n\toption type 'file'\n\toption path '/var/log/messages'\n").unwrap();
        assert_eq!((c.hub.host.as_str(), c.hub.port), ("192.168.1.10", 1884));
        assert_eq!(c.hub.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.hub.spool_bytes, DEFAULT_BUDGET);
        assert_eq!(c.sources, vec![SourceConfig::File { path: "/var/log/messages".into(), from_start: false }]);
        assert_eq!(c.agents, AgentsConfig::default());
    }

    #[test]
    fn errors_name_the_option_and_line() {
        let err = cfg("\toption heartbeat_interval 'soon'\nconfig source\n\toption type stdin\n").unwrap_err();
        assert_eq!(err.to_string(), "line 5: option heartbeat_interval: \"soon\" is not a number from 1 to 3600");
        let err = cfg("config source\n\toption type 'pipe'\n").unwrap_err();
        assert!(err.to_string().starts_with("line 6: option type: unknown source type \"pipe\""), "{err}");
        let err = EdgeConfig::from_uci_text("config hub 'hub'\n\toption url 'mqtt://h'\n").unwrap_err();
        assert!(err.to_string().contains("missing option device_id"), "{err}");
        assert!(matches!(cfg("").unwrap_err(), ConfigError::NoSource));
    }

    #[test]
    fn unknown_options_and_sections_are_named_with_their_line() {
        let err = cfg("\toption hearbeat_interval '5'\nconfig source\n\toption type stdin\n").unwrap_err().to_string();
        assert!(err.starts_with("line 5: unknown option hearbeat_interval in the hub section; known: url,"), "{err}");
        let err = cfg("config source\n\toption type 'file'\n\toption path '/x'\n\toption fromstart '1'\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "line 8: unknown option fromstart in the source section; known: type, enabled, command, listen, path, from_start"
        );
        // Another type's option is not an error (the packaged file lists them all).
        cfg("config source\n\toption type 'logread'\n\toption listen '127.0.0.1:5514'\n").unwrap();
        let err = cfg("config source\n\toption type stdin\nconfig sourse\n").unwrap_err().to_string();
        assert_eq!(err, "line 7: unknown section type \"sourse\"; known: hub, source, agent, response");
    }

    #[test]
    fn the_udp_source_listens_on_loopback_unless_told_otherwise() {
        let c = cfg("config source\n\toption type 'udp'\n").unwrap();
        let listen: std::net::SocketAddr = "127.0.0.1:5514".parse().unwrap();
        assert_eq!(c.sources, [SourceConfig::Udp { listen }], "a LAN client must not reach it by default");
        let c = cfg("config source\n\toption type 'udp'\n\toption listen '192.168.1.1:514'\n").unwrap();
        let listen: std::net::SocketAddr = "192.168.1.1:514".parse().unwrap();
        assert_eq!(c.sources, [SourceConfig::Udp { listen }]);
    }

    #[test]
    fn urls_parse() {
        assert_eq!(parse_url("mqtt://hub").unwrap(), (Scheme::Mqtt, "hub".into(), 1883));
        assert_eq!(parse_url("mqtt://[::1]:1884").unwrap(), (Scheme::Mqtt, "::1".into(), 1884));
        assert_eq!(parse_url("mqtts://hub").unwrap(), (Scheme::Mqtts, "hub".into(), 8883));
        assert_eq!(parse_url("mqtts://10.0.0.1:9883/").unwrap(), (Scheme::Mqtts, "10.0.0.1".into(), 9883));
        assert!(parse_url("http://hub").unwrap_err().contains("mqtt:// or mqtts://"));
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://hub:99999").is_err());
        assert!(parse_url("mqtts://hub:0").is_err());
    }

    #[test]
    fn tls_options_with_a_plain_url_are_an_error() {
        let err = cfg("\toption ca_file '/etc/opmas/ca.crt'\nconfig source\n\toption type stdin\n").unwrap_err();
        assert!(err.to_string().starts_with("line 5: option ca_file: is a TLS option, but url"), "{err}");
        assert!(cfg("config source\n\toption type stdin\n").unwrap().hub.tls.is_none());
    }

    /// A hub section with an mqtts:// URL and `extra` options.
    fn tls_cfg(extra: &str) -> Result<EdgeConfig, ConfigError> {
        EdgeConfig::from_uci_text(&format!(
            "config hub 'hub'\n\toption url 'mqtts://192.168.1.10'\n\toption device_id 'gw-1'\n\toption secret '{SECRET}'\n{extra}config source\n\toption type stdin\n"
        ))
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_tls_feature_mqtts_is_a_clear_error() {
        let err = tls_cfg("\toption ca_file '/etc/opmas/ca.crt'\n").unwrap_err().to_string();
        assert!(err.starts_with("line 2: option url: \"mqtts://192.168.1.10\" needs TLS"), "{err}");
        assert!(err.contains("install the opmas-edge-tls package"), "{err}");
    }

    #[cfg(feature = "tls")]
    mod tls {
        use super::*;

        /// A fresh CA and a client certificate it signed, as PEM files in a
        /// temporary directory: (dir, ca, cert, key).
        fn pki() -> (tempfile::TempDir, String, String, String) {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["gw-1".to_owned()]).unwrap();
            let cert = cert.signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key)).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = |name: &str| dir.path().join(name).display().to_string();
            for (name, pem) in [("ca.crt", ca.pem()), ("edge.crt", cert.pem()), ("edge.key", key.serialize_pem())] {
                std::fs::write(path(name), pem).unwrap();
            }
            let (ca, cert, key) = (path("ca.crt"), path("edge.crt"), path("edge.key"));
            (dir, ca, cert, key)
        }

        #[test]
        fn mqtts_reads_the_ca_and_the_client_certificate() {
            let (_dir, ca, cert, key) = pki();
            let c = tls_cfg(&format!("\toption ca_file '{ca}'\n")).unwrap();
            let tls = c.hub.tls.unwrap();
            assert_eq!((c.hub.port, tls.ca_file.display().to_string()), (8883, ca.clone()));
            assert!(tls.client_cert.is_none() && tls.server_name.is_none());
            let c = tls_cfg(&format!(
                "\toption ca_file '{ca}'\n\toption cert_file '{cert}'\n\toption key_file '{key}'\n\toption tls_server_name 'hub.lan'\n"
            ))
            .unwrap();
            let tls = c.hub.tls.unwrap();
            assert_eq!(tls.client_cert, Some(ClientCert { cert_file: cert.into(), key_file: key.into() }));
            assert_eq!(tls.server_name.as_deref(), Some("hub.lan"));
        }

        #[test]
        fn tls_errors_name_the_option_line_and_file() {
            let (dir, ca, cert, key) = pki();
            let err = tls_cfg("").unwrap_err().to_string();
            assert!(err.starts_with("line 2: \"mqtts://192.168.1.10\" needs option ca_file"), "{err}");
            let err = tls_cfg("\toption ca_file '/nonexistent/ca.crt'\n").unwrap_err().to_string();
            assert!(err.starts_with("line 5: option ca_file: cannot read /nonexistent/ca.crt: "), "{err}");
            let err = tls_cfg(&format!("\toption ca_file '{key}'\n")).unwrap_err().to_string();
            assert!(err.starts_with(&format!("line 5: option ca_file: {key} holds no certificate")), "{err}");
            let err = tls_cfg(&format!("\toption ca_file '{ca}'\n\toption cert_file '{cert}'\n")).unwrap_err();
            assert_eq!(
                err.to_string(),
                "line 6: option cert_file: needs option key_file as well (mutual TLS uses both)"
            );
            let err = tls_cfg(&format!("\toption ca_file '{ca}'\n\toption key_file '{key}'\n")).unwrap_err();
            assert!(err.to_string().starts_with("line 6: option key_file: needs option cert_file"), "{err}");
            let err =
                tls_cfg(&format!("\toption ca_file '{ca}'\n\toption cert_file '{cert}'\n\toption key_file '{cert}'\n"))
                    .unwrap_err()
                    .to_string();
            assert!(err.starts_with(&format!("line 7: option key_file: {cert} holds no private key")), "{err}");
            let other_key = dir.path().join("other.key");
            std::fs::write(&other_key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
            let err = tls_cfg(&format!(
                "\toption ca_file '{ca}'\n\toption cert_file '{cert}'\n\toption key_file '{}'\n",
                other_key.display()
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with(&format!("line 7: option key_file: {} does not belong to", other_key.display())),
                "{err}"
            );
            let garbled = dir.path().join("garbled.crt");
            std::fs::write(&garbled, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
            let err = tls_cfg(&format!("\toption ca_file '{}'\n", garbled.display())).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("line 5: option ca_file: {} is not valid PEM", garbled.display())),
                "{err}"
            );
            let err = tls_cfg(&format!("\toption ca_file '{ca}'\n\toption tls_server_name 'no such name'\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("line 6: option tls_server_name: \"no such name\" is not a DNS name"), "{err}");
        }
    }

    #[test]
    fn agent_thresholds_are_read_and_checked() {
        let stdin = "config source\n\toption type stdin\n";
        let c = cfg(&format!("{stdin}config agent 'security'\n\toption ssh_failures '8'\n")).unwrap();
        assert_eq!(c.agents.security.unwrap().failures, 8);
        let err = cfg(&format!("{stdin}config agent 'security'\n\toption ssh_failures '1'\n")).unwrap_err().to_string();
        assert!(err.starts_with("line 8: security agent: ssh_failures must be 2 to 64"), "{err}");
        let err = cfg(&format!("{stdin}config agent 'wifi'\n\toption deauth_flod '3'\n")).unwrap_err().to_string();
        assert!(err.contains("unknown parameter deauth_flod"), "{err}");
        // The error lists the known names, so the line must come from the
        // parameter it is about, not from a search of its text.
        let err =
            cfg(&format!("{stdin}config agent 'security'\n\toption ssh_failures '8'\n\toption ssh_falures '3'\n"))
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("line 9: security agent: unknown parameter ssh_falures"), "{err}");
        let err = cfg(&format!("{stdin}config agent 'dns'\n")).unwrap_err().to_string();
        assert!(err.contains("unknown agent \"dns\""), "{err}");
        let c = cfg(&format!("{stdin}config agent 'wifi'\n\toption enabled '0'\n")).unwrap();
        assert!(c.agents.wifi.is_none() && c.agents.security.is_some());
    }

    #[test]
    fn exclude_patterns_come_from_a_uci_list_or_the_hub_and_bad_ones_are_named() {
        let stdin = "config source\n\toption type stdin\n";
        let c = cfg(&format!(
            "{stdin}config agent 'security'\n\tlist exclude_patterns '*from 10.0.0.*'\n\tlist exclude_patterns '*jump*'\n"
        ))
        .unwrap();
        let ex = &c.agents.exclude["security"];
        assert_eq!(ex.texts().collect::<Vec<_>>(), ["*from 10.0.0.*", "*jump*"]);
        let err = cfg(&format!("{stdin}config agent 'wifi'\n\tlist exclude_patterns '[z-a]'\n")).unwrap_err();
        assert_eq!(err.to_string(), "line 8: wifi agent: exclude_patterns \"[z-a]\": the range z-a runs backwards");

        use opmas_proto::msg::{AgentConfig, ConfigDoc};
        let doc = |patterns: Vec<String>| {
            let params = [(EXCLUDE.to_owned(), Value::List(patterns))].into_iter().collect();
            ConfigDoc { version: 3, agents: [("network".to_owned(), AgentConfig { enabled: true, params })].into() }
        };
        let c = AgentsConfig::from_doc(&doc(vec!["*kernel: DROP*".into()])).unwrap();
        assert!(c.exclude["network"].matches("Dec  5 gw kernel: DROP IN=eth0"));
        let err = AgentsConfig::from_doc(&doc(vec!["ok".into(), "x\\".into()])).unwrap_err();
        assert_eq!(err, "network agent: exclude_patterns[1]: a \\ at the end escapes nothing");
    }
}
