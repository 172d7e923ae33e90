//! The edge's settings, read from the UCI file `/etc/config/opmas`.
//!
//! ```text
//! config hub 'hub'
//!     option url 'mqtt://192.168.1.10:1883'
//!     option device_id 'gw-lab-1'
//!     option secret '<64 hex digits>'
//!     option heartbeat_interval '30'
//!     option spool_bytes '1048576'
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

use opmas_proto::{DeviceId, Secret};

use std::collections::BTreeMap;

use opmas_proto::agents::{NetworkConfig, SecurityConfig, SystemConfig, WifiConfig};
use opmas_proto::msg::Value;

use crate::spool::DEFAULT_BUDGET;
use crate::uci::{self, Package, Section};

/// Everything `opmas-edge run` needs.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub hub: HubConfig,
    pub sources: Vec<SourceConfig>,
    pub agents: AgentsConfig,
}

/// Which agents run, with what thresholds. `None` = disabled
/// (`option enabled '0'` in the agent's section).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentsConfig {
    pub security: Option<SecurityConfig>,
    pub wifi: Option<WifiConfig>,
    pub network: Option<NetworkConfig>,
    pub system: Option<SystemConfig>,
}

impl Default for AgentsConfig {
    /// All four agents with the defaults of `config/agents/*.yaml`.
    fn default() -> Self {
        AgentsConfig {
            security: Some(SecurityConfig::default()),
            wifi: Some(WifiConfig::default()),
            network: Some(NetworkConfig::default()),
            system: Some(SystemConfig::default()),
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
                let line = params.keys().find(|k| e.to_string().contains(k.as_str())).and_then(|k| s.line_of(k));
                ConfigError::Agent { line: line.unwrap_or(s.line), message: e.to_string() }
            })?;
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
    for (name, _, _) in s.options.iter().filter(|(n, _, _)| n != "enabled") {
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
}

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
    #[error("{0}")]
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
        let hub = pkg.section("hub", "hub").or_else(|| pkg.sections_of("hub").next()).ok_or(ConfigError::NoHub)?;
        let url = required(hub, "url")?;
        let (host, port) = parse_url(url).map_err(|message| bad(hub, "url", message))?;
        let device_id = DeviceId::new(required(hub, "device_id")?).map_err(|e| bad(hub, "device_id", e.to_string()))?;
        let secret = Secret::from_hex(required(hub, "secret")?).map_err(|e| bad(hub, "secret", e.to_string()))?;
        let heartbeat_interval = Duration::from_secs(number(hub, "heartbeat_interval", 30, 1..=3600)?);
        let keepalive = Duration::from_secs(number(hub, "keepalive", 30, 5..=3600)?);
        let backoff_max = Duration::from_secs(number(hub, "backoff_max", 60, 1..=3600)?);
        let spool_bytes = number(hub, "spool_bytes", DEFAULT_BUDGET as u64, 4096..=64 << 20)? as usize;

        let mut sources = Vec::new();
        for s in pkg.sections_of("source") {
            if matches!(s.get("enabled"), Some("0")) {
                continue;
            }
            let kind = s.get("type").unwrap_or("logread");
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

        Ok(EdgeConfig {
            hub: HubConfig { host, port, device_id, secret, heartbeat_interval, keepalive, backoff_max, spool_bytes },
            sources,
            agents,
        })
    }
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

/// `mqtt://host[:port]` → (host, port); 1883 by default.
fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("{url:?} must start with mqtt:// (mqtts:// comes with TLS support)"))?;
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
        None => 1883,
        Some(p) => p.parse().map_err(|_| format!("{url:?}: port {p:?} is not a number from 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
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
    fn urls_parse() {
        assert_eq!(parse_url("mqtt://hub").unwrap(), ("hub".into(), 1883));
        assert_eq!(parse_url("mqtt://[::1]:1884").unwrap(), ("::1".into(), 1884));
        assert!(parse_url("http://hub").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://hub:99999").is_err());
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
        let err = cfg(&format!("{stdin}config agent 'dns'\n")).unwrap_err().to_string();
        assert!(err.contains("unknown agent \"dns\""), "{err}");
        let c = cfg(&format!("{stdin}config agent 'wifi'\n\toption enabled '0'\n")).unwrap();
        assert!(c.agents.wifi.is_none() && c.agents.security.is_some());
    }
}
