//! Agent configuration schema: the thresholds and windows of each edge agent,
//! their ranges and defaults, and how a parameter map is checked and applied.
//!
//! The edge reads these from UCI today and the hub will serve the same schema
//! in [`crate::msg::ConfigDoc`] later, so the schema lives here, next to the
//! wire types: one struct per agent ([`SecurityConfig`], [`WifiConfig`],
//! [`NetworkConfig`], [`SystemConfig`]), each with
//!
//! - `Default`: the values in `config/agents/<agent>.yaml` (a test keeps them equal);
//! - `PARAMS`: a table of [`ParamSpec`] (name, doc, unit, min, max, default)
//!   that the hub and the docs list; [`AGENTS`] holds all four tables;
//! - `validate()`: every value in its range, or an [`AgentConfigError`]
//!   naming the agent, the parameter and the allowed range;
//! - `apply(params)`: sets the named parameters from a
//!   `BTreeMap<String, Value>` (the `params` of an [`crate::msg::AgentConfig`]);
//!   an unknown name, a value that is not an integer or one out of range is an
//!   error and leaves the config unchanged;
//! - `params()` / `get(name)`: the reverse, for serving the effective config;
//! - the [`AgentParams`] trait over all of the above, for code that handles
//!   any agent.
//!
//! Every parameter is a whole number (`u32`): a count or a number of seconds.
//! Windows are in seconds because syslog timestamps are.
//!
//! Parameter names are those of the edge's UCI options (`ssh_failures`,
//! `ssh_window`, ...), so one name means one thing wherever it is set.

use std::collections::BTreeMap;
use std::fmt;

use crate::msg::Value;

/// The unit of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of events, sources, stations, ...
    Count,
    /// A duration in seconds.
    Seconds,
}

impl Unit {
    /// `""` or `" s"`, as appended to a number in messages.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Count => "",
            Unit::Seconds => " s",
        }
    }
}

/// One parameter of an agent: what the hub lists and the docs print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Name in UCI, YAML and [`crate::msg::AgentConfig::params`].
    pub name: &'static str,
    /// One sentence: what the parameter does.
    pub doc: &'static str,
    /// Count or seconds.
    pub unit: Unit,
    /// Smallest allowed value.
    pub min: u32,
    /// Largest allowed value.
    pub max: u32,
    /// The value when nothing is configured.
    pub default: u32,
}

/// An agent and its parameter table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    /// `security`, `wifi`, `network` or `system`.
    pub name: &'static str,
    /// Its parameters, in documentation order.
    pub params: &'static [ParamSpec],
}

/// Every agent's parameter table, for the hub and the docs.
pub const AGENTS: &[AgentSpec] = &[
    AgentSpec { name: SecurityConfig::AGENT, params: SecurityConfig::PARAMS },
    AgentSpec { name: WifiConfig::AGENT, params: WifiConfig::PARAMS },
    AgentSpec { name: NetworkConfig::AGENT, params: NetworkConfig::PARAMS },
    AgentSpec { name: SystemConfig::AGENT, params: SystemConfig::PARAMS },
];

/// What the four config structs have in common, for code that handles any
/// agent (the edge's UCI reader, the hub's config API). Each struct also has
/// the same methods as inherent ones.
pub trait AgentParams: Default + Copy + PartialEq + fmt::Debug {
    /// The agent's name.
    const AGENT: &'static str;
    /// The parameter table, in documentation order.
    const PARAMS: &'static [ParamSpec];
    /// The value of parameter `name`, if the agent has it.
    fn get(&self, name: &str) -> Option<u32>;
    /// Checks every value against its range.
    fn validate(&self) -> Result<(), AgentConfigError>;
    /// Sets the parameters in `params`, all or none.
    fn apply(&mut self, params: &BTreeMap<String, Value>) -> Result<(), AgentConfigError>;
    /// Every parameter with its current value.
    fn params(&self) -> BTreeMap<String, Value>;
}

/// The parameter table of `agent`, if there is such an agent.
pub fn params_of(agent: &str) -> Option<&'static [ParamSpec]> {
    AGENTS.iter().find(|a| a.name == agent).map(|a| a.params)
}

/// An agent configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentConfigError {
    /// A value outside its parameter's range.
    #[error("{agent} agent: {param} must be {min} to {max}{}, got {value}", .unit.suffix())]
    OutOfRange {
        /// The agent.
        agent: &'static str,
        /// The parameter.
        param: &'static str,
        /// The value given.
        value: i64,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
        /// The parameter's unit.
        unit: Unit,
    },
    /// A value that is not a whole number.
    #[error("{agent} agent: {param} must be a whole number, got {got}")]
    NotAnInteger {
        /// The agent.
        agent: &'static str,
        /// The parameter.
        param: &'static str,
        /// What was given instead, described.
        got: String,
    },
    /// Parameter names the agent does not have.
    #[error("{agent} agent: unknown parameter{} {}; known: {}", plural(.names.len()), .names.join(", "), known_names(.known))]
    Unknown {
        /// The agent.
        agent: &'static str,
        /// The unknown names, sorted.
        names: Vec<String>,
        /// The agent's parameter table, to list the known names.
        known: &'static [ParamSpec],
    },
}

impl AgentConfigError {
    /// The agent the error is about.
    pub fn agent(&self) -> &'static str {
        match self {
            AgentConfigError::OutOfRange { agent, .. }
            | AgentConfigError::NotAnInteger { agent, .. }
            | AgentConfigError::Unknown { agent, .. } => agent,
        }
    }

    /// The parameter the error is about (the first unknown one), to point
    /// at its line in a config file.
    pub fn param(&self) -> Option<&str> {
        match self {
            AgentConfigError::OutOfRange { param, .. } | AgentConfigError::NotAnInteger { param, .. } => Some(param),
            AgentConfigError::Unknown { names, .. } => names.first().map(String::as_str),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The names of a parameter table, comma-separated.
fn known_names(params: &[ParamSpec]) -> String {
    params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Describes a value that is not an integer, for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Int(i) => format!("{i}"),
        Value::Float(x) => format!("the fraction {x}"),
        Value::Str(s) => format!("the string {s:?}"),
        Value::List(_) => "a list".to_owned(),
    }
}

/// Checks `value` against `spec`.
fn check(agent: &'static str, spec: &ParamSpec, value: i64) -> Result<u32, AgentConfigError> {
    match u32::try_from(value) {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        _ => Err(AgentConfigError::OutOfRange {
            agent,
            param: spec.name,
            value,
            min: spec.min,
            max: spec.max,
            unit: spec.unit,
        }),
    }
}

/// Defines one agent's config struct, its `Default`, its parameter table and
/// the by-name accessors from a single list, so that the struct, the table
/// and the defaults cannot disagree. Each field's one-line doc comment is
/// also the parameter's `doc` in the table.
macro_rules! agent_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident for $agent:literal {
            $(
                #[doc = $doc:literal]
                $field:ident: $param:literal, $unit:ident, $min:literal..=$max:literal, default $default:literal;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $(
                #[doc = $doc]
                #[doc = concat!("\n\nParameter `", $param, "`, ", stringify!($min), " to ", stringify!($max), ", default ", stringify!($default), ".")]
                pub $field: u32,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }

        impl $name {
            /// The agent's name.
            pub const AGENT: &'static str = $agent;

            /// The parameter table, in documentation order.
            pub const PARAMS: &'static [ParamSpec] = &[
                $(
                    ParamSpec {
                        name: $param,
                        doc: $doc.trim_ascii(),
                        unit: Unit::$unit,
                        min: $min,
                        max: $max,
                        default: $default,
                    },
                )*
            ];

            /// The value of parameter `name`, if the agent has it.
            pub fn get(&self, name: &str) -> Option<u32> {
                match name {
                    $($param => Some(self.$field),)*
                    _ => None,
                }
            }

            /// The field behind parameter `name`.
            fn slot(&mut self, name: &str) -> Option<&mut u32> {
                match name {
                    $($param => Some(&mut self.$field),)*
                    _ => None,
                }
            }

            /// Checks every value against its range.
            pub fn validate(&self) -> Result<(), AgentConfigError> {
                for spec in Self::PARAMS {
                    // Every name in the table is a field, by construction.
                    if let Some(v) = self.get(spec.name) {
                        check(Self::AGENT, spec, i64::from(v))?;
                    }
                }
                Ok(())
            }

            /// Sets the parameters in `params`; the others keep their value.
            /// On any error (unknown names, all listed; a value that is not
            /// a whole number; one out of range) `self` is left unchanged.
            pub fn apply(&mut self, params: &BTreeMap<String, Value>) -> Result<(), AgentConfigError> {
                let unknown: Vec<String> =
                    params.keys().filter(|k| self.get(k).is_none()).cloned().collect();
                if !unknown.is_empty() {
                    return Err(AgentConfigError::Unknown { agent: Self::AGENT, names: unknown, known: Self::PARAMS });
                }
                let mut next = *self;
                for spec in Self::PARAMS {
                    let Some(value) = params.get(spec.name) else { continue };
                    let Value::Int(v) = value else {
                        return Err(AgentConfigError::NotAnInteger {
                            agent: Self::AGENT,
                            param: spec.name,
                            got: describe(value),
                        });
                    };
                    let v = check(Self::AGENT, spec, *v)?;
                    if let Some(slot) = next.slot(spec.name) {
                        *slot = v;
                    }
                }
                next.validate()?;
                *self = next;
                Ok(())
            }

            /// Every parameter with its current value, as the hub serves them.
            pub fn params(&self) -> BTreeMap<String, Value> {
                Self::PARAMS
                    .iter()
                    .filter_map(|p| Some((p.name.to_owned(), Value::Int(i64::from(self.get(p.name)?)))))
                    .collect()
            }
        }

        impl AgentParams for $name {
            const AGENT: &'static str = $agent;
            const PARAMS: &'static [ParamSpec] = $name::PARAMS;
            fn get(&self, name: &str) -> Option<u32> {
                $name::get(self, name)
            }
            fn validate(&self) -> Result<(), AgentConfigError> {
                $name::validate(self)
            }
            fn apply(&mut self, params: &BTreeMap<String, Value>) -> Result<(), AgentConfigError> {
                $name::apply(self, params)
            }
            fn params(&self) -> BTreeMap<String, Value> {
                $name::params(self)
            }
        }
    };
}

agent_config! {
    /// Thresholds of the security agent: SSH and LuCI logins.
    ///
    /// `failures`, `window_s` and `suppress_s` keep their names from the
    /// first version (the edge's UCI options `ssh_failures`, `ssh_window`,
    /// `ssh_suppress`).
    pub struct SecurityConfig for "security" {
        /// Failed SSH logins from one source within ssh_window that make an ssh.bruteforce.
        failures: "ssh_failures", Count, 2..=64, default 5;
        /// Window for ssh_failures, in seconds; a longer pause starts a new count.
        window_s: "ssh_window", Seconds, 1..=86_400, default 60;
        /// Seconds a repeated security finding about the same subject stays one finding, updated with its count.
        suppress_s: "ssh_suppress", Seconds, 0..=604_800, default 600;
        /// Distinct user names tried from one source within user_enum_window that make an ssh.user_enum.
        user_enum_names: "user_enum_names", Count, 2..=128, default 5;
        /// Window for user_enum_names, in seconds.
        user_enum_window_s: "user_enum_window", Seconds, 2..=86_400, default 600;
        /// Distinct sources failing to log in as one user within distributed_window that make an ssh.distributed_bruteforce.
        distributed_sources: "distributed_sources", Count, 2..=128, default 10;
        /// Window for distributed_sources, in seconds.
        distributed_window_s: "distributed_window", Seconds, 2..=86_400, default 600;
        /// Failed LuCI logins from one source within web_window that make a web.bruteforce.
        web_failures: "web_failures", Count, 2..=64, default 5;
        /// Window for web_failures, in seconds.
        web_window_s: "web_window", Seconds, 1..=86_400, default 60;
        /// Failed logins from a source within success_window before its successful login that make an auth.success_after_failures.
        success_failures: "success_failures", Count, 1..=64, default 5;
        /// How far back before a successful login failures count, in seconds.
        success_window_s: "success_window", Seconds, 1..=86_400, default 600;
    }
}

agent_config! {
    /// Thresholds of the WiFi agent: hostapd station events.
    pub struct WifiConfig for "wifi" {
        /// Station disconnects on one interface within deauth_window that make a wifi.deauth_flood (with deauth_stations).
        deauth_disconnects: "deauth_disconnects", Count, 2..=10_000, default 20;
        /// Distinct stations among those disconnects, at least.
        deauth_stations: "deauth_stations", Count, 1..=128, default 5;
        /// Window for deauth_disconnects and deauth_stations, in seconds.
        deauth_window_s: "deauth_window", Seconds, 2..=3_600, default 60;
        /// Failed authentications of one station within auth_window that make a wifi.auth_failures.
        auth_failures: "auth_failures", Count, 2..=32, default 5;
        /// Window for auth_failures, in seconds.
        auth_window_s: "auth_window", Seconds, 1..=86_400, default 60;
        /// Connections of one station within churn_window that make a wifi.client_churn.
        churn_connects: "churn_connects", Count, 2..=32, default 10;
        /// Window for churn_connects, in seconds.
        churn_window_s: "churn_window", Seconds, 1..=86_400, default 600;
        /// Seconds a repeated WiFi finding about the same subject stays one finding, updated with its count.
        suppress_s: "suppress", Seconds, 0..=604_800, default 600;
    }
}

agent_config! {
    /// Thresholds of the network agent: firewall logs, DHCP, links, PPP.
    pub struct NetworkConfig for "network" {
        /// Distinct destination ports one source hit within scan_window (dropped or rejected) that make a net.port_scan.
        scan_ports: "scan_ports", Count, 2..=128, default 20;
        /// Window for scan_ports, in seconds.
        scan_window_s: "scan_window", Seconds, 2..=3_600, default 60;
        /// Distinct destination hosts one source hit within sweep_window (dropped or rejected) that make a net.sweep.
        sweep_hosts: "sweep_hosts", Count, 2..=128, default 10;
        /// Window for sweep_hosts, in seconds.
        sweep_window_s: "sweep_window", Seconds, 2..=3_600, default 60;
        /// Distinct sources whose packets one interface dropped or rejected within scan_window that make a net.distributed_scan.
        scan_sources: "scan_sources", Count, 2..=128, default 50;
        /// DHCP requests refused for lack of addresses on one interface within dhcp_window that make a dhcp.pool_exhausted.
        dhcp_no_address: "dhcp_no_address", Count, 1..=64, default 1;
        /// Window for dhcp_no_address, in seconds.
        dhcp_window_s: "dhcp_window", Seconds, 1..=86_400, default 300;
        /// Up-to-down changes of one interface or link within flap_window that make a net.link_flapping.
        flap_downs: "flap_downs", Count, 2..=32, default 4;
        /// Window for flap_downs, in seconds.
        flap_window_s: "flap_window", Seconds, 1..=86_400, default 600;
        /// PPP sessions ended within ppp_window that make a ppp.session_drops.
        ppp_drops: "ppp_drops", Count, 2..=32, default 3;
        /// Window for ppp_drops, in seconds.
        ppp_window_s: "ppp_window", Seconds, 1..=86_400, default 3_600;
        /// Seconds a repeated network finding about the same subject stays one finding, updated with its count.
        suppress_s: "suppress", Seconds, 0..=604_800, default 600;
    }
}

agent_config! {
    /// Thresholds of the system agent: kernel and procd health.
    pub struct SystemConfig for "system" {
        /// OOM kills of one process within oom_window that make a sys.oom_kill.
        oom_kills: "oom_kills", Count, 1..=32, default 1;
        /// Window for oom_kills, in seconds.
        oom_window_s: "oom_window", Seconds, 1..=86_400, default 600;
        /// Seconds of log from a running system before a boot line counts as an unexpected reboot.
        reboot_min_uptime_s: "reboot_min_uptime", Seconds, 0..=86_400, default 300;
        /// Seconds a repeated system finding about the same subject stays one finding, updated with its count.
        suppress_s: "suppress", Seconds, 0..=604_800, default 3_600;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn defaults_are_valid_and_equal_the_tables() {
        fn check_one<T>(cfg: T, params: &[ParamSpec], get: impl Fn(&T, &str) -> Option<u32>) {
            for p in params {
                assert_eq!(get(&cfg, p.name), Some(p.default), "{}", p.name);
                assert!(p.min <= p.default && p.default <= p.max, "{}", p.name);
                assert!(!p.doc.is_empty() && !p.doc.starts_with(' '), "{}", p.name);
            }
        }
        SecurityConfig::default().validate().unwrap();
        WifiConfig::default().validate().unwrap();
        NetworkConfig::default().validate().unwrap();
        SystemConfig::default().validate().unwrap();
        check_one(SecurityConfig::default(), SecurityConfig::PARAMS, SecurityConfig::get);
        check_one(WifiConfig::default(), WifiConfig::PARAMS, WifiConfig::get);
        check_one(NetworkConfig::default(), NetworkConfig::PARAMS, NetworkConfig::get);
        check_one(SystemConfig::default(), SystemConfig::PARAMS, SystemConfig::get);
    }

    #[test]
    fn parameter_names_are_unique_per_agent_and_agents_are_listed() {
        for a in AGENTS {
            let mut names: Vec<&str> = a.params.iter().map(|p| p.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), a.params.len(), "{}", a.name);
            assert_eq!(params_of(a.name), Some(a.params));
        }
        assert_eq!(params_of("nope"), None);
    }

    #[test]
    fn the_first_three_security_names_are_kept() {
        let c = SecurityConfig::default();
        assert_eq!((c.failures, c.window_s, c.suppress_s), (5, 60, 600));
        assert_eq!(c.get("ssh_failures"), Some(5));
        assert_eq!(c.get("ssh_window"), Some(60));
        assert_eq!(c.get("ssh_suppress"), Some(600));
    }

    #[test]
    fn apply_sets_known_parameters() {
        let mut c = SecurityConfig::default();
        c.apply(&map(&[("ssh_failures", Value::Int(8)), ("web_window", Value::Int(120))])).unwrap();
        assert_eq!(c.failures, 8);
        assert_eq!(c.web_window_s, 120);
        assert_eq!(c.window_s, 60);
        assert_eq!(c.params().get("ssh_failures"), Some(&Value::Int(8)));
        assert_eq!(c.params().len(), SecurityConfig::PARAMS.len());
    }

    #[test]
    fn out_of_range_names_agent_parameter_and_range() {
        let mut c = WifiConfig::default();
        let e = c.apply(&map(&[("auth_failures", Value::Int(1))])).unwrap_err();
        assert_eq!(e.to_string(), "wifi agent: auth_failures must be 2 to 32, got 1");
        let e = c.apply(&map(&[("auth_window", Value::Int(-5))])).unwrap_err();
        assert_eq!(e.to_string(), "wifi agent: auth_window must be 1 to 86400 s, got -5");
        assert_eq!(c, WifiConfig::default(), "a failed apply changes nothing");
        let e = SecurityConfig { failures: 65, ..Default::default() }.validate().unwrap_err();
        assert_eq!(e.to_string(), "security agent: ssh_failures must be 2 to 64, got 65");
    }

    #[test]
    fn unknown_names_are_all_named() {
        let mut c = SystemConfig::default();
        let e = c.apply(&map(&[("zeta", Value::Int(1)), ("alpha", Value::Int(1)), ("oom_kills", Value::Int(2))]));
        let e = e.unwrap_err();
        assert!(
            e.to_string().starts_with("system agent: unknown parameters alpha, zeta; known: oom_kills, oom_window,"),
            "{e}"
        );
        assert_eq!(c.oom_kills, 1, "nothing applied");
        assert_eq!((e.agent(), e.param()), ("system", Some("alpha")));
    }

    #[test]
    fn any_agent_through_the_trait() {
        fn set_first<T: AgentParams>(v: i64) -> Result<T, AgentConfigError> {
            let mut c = T::default();
            let first = T::PARAMS[0].name;
            c.apply(&[(first.to_owned(), Value::Int(v))].into_iter().collect())?;
            assert_eq!(c.get(first), u32::try_from(v).ok());
            Ok(c)
        }
        assert_eq!(set_first::<WifiConfig>(30).unwrap().deauth_disconnects, 30);
        let e = set_first::<SecurityConfig>(0).unwrap_err();
        assert_eq!(e.param(), Some("ssh_failures"));
    }

    #[test]
    fn values_must_be_whole_numbers() {
        let mut c = NetworkConfig::default();
        let e = c.apply(&map(&[("scan_ports", Value::Str("20".into()))])).unwrap_err();
        assert_eq!(e.to_string(), "network agent: scan_ports must be a whole number, got the string \"20\"");
        let e = c.apply(&map(&[("scan_ports", Value::Float(2.5))])).unwrap_err();
        assert!(matches!(e, AgentConfigError::NotAnInteger { param: "scan_ports", .. }));
        let e = c.apply(&map(&[("scan_ports", Value::Int(i64::MAX))])).unwrap_err();
        assert!(matches!(e, AgentConfigError::OutOfRange { param: "scan_ports", .. }));
    }
}
