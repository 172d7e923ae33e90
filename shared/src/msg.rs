//! Message bodies, one type per channel of the topic table.
//!
//! These are the only serde types that cross the wire; `edge` and `hub`
//! convert their internal state to and from them at the boundary. They are
//! encoded with postcard, which is compact and schema-less: a field's position
//! is its identity, so adding, removing or reordering fields is a wire change
//! that the golden files in `tests/golden` catch.
//!
//! Times are unix milliseconds (UTC) as `u64`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::net::{IpNet, Mac};

/// `opmas/v1/{device}/status`: retained presence. `Offline` is also the Last Will.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Online,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Offline => "offline",
        }
    }
}

/// `opmas/v1/{device}/hb`: what the edge reports about itself every interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The edge's run epoch (see [`FindingBatch::epoch`]).
    pub epoch: u64,
    /// Seconds since this edge process started.
    pub uptime_s: u64,
    /// Seconds between this edge's heartbeats: the hub calls the device
    /// `stale` after three of them without a word.
    pub interval_s: u32,
    /// `opmas-edge` version string.
    pub version: String,
    /// Version of the agent configuration in force (0: UCI defaults only).
    pub config_version: u64,
    /// Why the last configuration from the hub was refused (the version in
    /// force stays the one before it); `None` when the last one applied.
    pub config_error: Option<String>,
    /// The finding spool.
    pub spool: SpoolStats,
    /// One entry per agent.
    pub agents: Vec<AgentStatus>,
    /// Line and event counters since start.
    pub counters: Counters,
    /// 1-minute load average times 1000, when the OS tells.
    pub load_milli: Option<u32>,
    /// Resident memory of the edge process in KiB, when the OS tells.
    pub rss_kib: Option<u64>,
}

/// State of the edge's finding spool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolStats {
    /// Findings waiting for the hub's ack.
    pub depth: u32,
    /// Bytes those findings take.
    pub bytes: u32,
    /// The byte budget.
    pub budget: u32,
    /// Findings dropped since start because the budget was full.
    pub dropped: u64,
    /// Highest sequence the hub has acknowledged in this epoch.
    pub acked_upto: u64,
}

/// What an agent is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentState {
    Running,
    Stopped,
    /// Failed too often and was given up on until an operator restarts it.
    Failed,
    /// Failed, and waits out its backoff before the supervisor builds it again.
    Restarting,
}

/// One agent's line in the heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub name: String,
    pub state: AgentState,
    /// Events the agent has consumed.
    pub events: u64,
    /// Findings the agent has produced.
    pub findings: u64,
    /// Entries evicted from the agent's bounded tables.
    pub evicted: u64,
    /// Times the supervisor restarted the agent after a failure, this run.
    pub restarts: u32,
    /// The last failure, as the agent's panic said it.
    pub last_error: Option<String>,
    /// Lines with an event the agent ignored: its `exclude_patterns` matched.
    pub excluded: u64,
}

/// Counters of the edge's input path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Lines read from all sources.
    pub lines: u64,
    /// Lines that could not be parsed.
    pub unparsed: u64,
    /// Lines dropped because the pipeline was full (UDP cannot wait).
    pub shed: u64,
    /// Lines or datagrams cut at the length limit.
    pub truncated: u64,
    /// Findings produced.
    pub findings: u64,
}

/// Severity from 1 (informational) to 5 (critical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Severity(u8);

/// A severity outside 1..=5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("severity must be 1 to 5, got {0}")]
pub struct SeverityError(pub u8);

impl Severity {
    pub const INFO: Severity = Severity(1);
    pub const LOW: Severity = Severity(2);
    pub const MEDIUM: Severity = Severity(3);
    pub const HIGH: Severity = Severity(4);
    pub const CRITICAL: Severity = Severity(5);

    pub fn new(v: u8) -> Result<Self, SeverityError> {
        if (1..=5).contains(&v) {
            Ok(Severity(v))
        } else {
            Err(SeverityError(v))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Severity {
    type Error = SeverityError;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Severity::new(v)
    }
}

impl From<Severity> for u8 {
    fn from(s: Severity) -> u8 {
        s.0
    }
}

/// The keys a finding is about. Which ones are set depends on the kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub src_ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub iface: Option<String>,
    pub user: Option<String>,
    pub service: Option<String>,
    /// The source as a host name, when the log names one instead of an
    /// address (sshd with `UseDNS yes`, PAM's `rhost=`).
    pub host: Option<String>,
}

/// One detection made by an agent on the edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Device-scoped sequence number within the batch's epoch, from 1.
    pub seq: u64,
    /// Agent that produced it: `security`, `wifi`, `network`, `system`.
    pub agent: String,
    /// Dotted kind, for example `ssh.bruteforce`.
    pub kind: String,
    pub severity: Severity,
    pub subject: Subject,
    /// How many events the finding summarises.
    pub count: u32,
    /// Time of the first and last event (unix ms; from the log when it says).
    pub first_ms: u64,
    pub last_ms: u64,
    /// One human sentence.
    pub summary: String,
    /// A few of the log lines behind it, truncated. In an update, empty
    /// means unchanged since the previous report.
    pub evidence: Vec<String>,
    /// New, an update of an open finding, or its last update. An update
    /// belongs to the finding of this epoch with the same agent, kind,
    /// subject and `first_ms`: an ongoing attack or campaign is one finding
    /// whose count and last time grow while it lasts, not one per event.
    pub stage: Stage,
}

impl Finding {
    /// True for an update (open or closing) of an earlier finding.
    pub fn is_update(&self) -> bool {
        self.stage != Stage::New
    }
}

/// Where a finding is in its life.
///
/// On the wire a variant index, one byte (0 and 1 are what the boolean
/// `update` of envelope format 2 wrote).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// The first report.
    #[default]
    New,
    /// The finding is still open: more events came, the count grew.
    Update,
    /// The last update: no event for the quiet period, the finding is over.
    Closed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Update => "update",
            Stage::Closed => "closed",
        }
    }
}

/// `opmas/v1/{device}/finding`: findings in sequence order.
///
/// The findings of one batch have consecutive sequences. The hub stores a
/// batch only if it continues, without a gap, what it has already stored of
/// this epoch (or what `floor` says the edge gave up on), so that its
/// cumulative [`Ack`] never covers a finding that is not in its database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingBatch {
    /// Random number the edge draws at start. Sequences restart at 1 in each
    /// epoch, so (device, epoch, seq) identifies a finding across restarts and
    /// reboots without writing a counter to flash.
    pub epoch: u64,
    /// The lowest sequence the edge still holds. Every sequence below it was
    /// either acknowledged or dropped from the edge's full spool (and counted
    /// there): the hub will never see it again and may ack past it.
    pub floor: u64,
    /// The edge's resend round: it increases each time the edge starts
    /// sending again from its oldest unacknowledged finding. A gap report
    /// ([`Ack::gap`]) names the round it saw, so that the edge rewinds once
    /// per loss, not once per batch that followed the loss.
    pub round: u32,
    pub findings: Vec<Finding>,
}

/// `opmas/v1/{device}/ack`: the hub has stored every finding of `epoch` up to
/// and including `upto` (or knows, from a batch's `floor`, that the edge
/// dropped it); the edge may free them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub epoch: u64,
    pub upto: u64,
    /// Set when the hub discarded a batch of this resend round because the
    /// findings between `upto` and that batch never reached it (the broker
    /// skipped them, say): the edge should send again from `upto + 1`.
    pub gap: Option<u32>,
}

/// A typed configuration value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

/// One agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub enabled: bool,
    /// Thresholds and windows by name.
    pub params: BTreeMap<String, Value>,
}

/// `opmas/v1/{device}/config`: the device's whole effective agent
/// configuration. Retained, so a reconnecting edge gets the latest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigDoc {
    /// Increases with every change; the edge ignores older versions.
    pub version: u64,
    pub agents: BTreeMap<String, AgentConfig>,
}

/// What a command asks the edge to do. Parameters are typed so that nothing
/// but an address, a MAC or a name from a list can reach an action, and
/// [`Action::check`] bounds them the same way on the hub (before anything is
/// stored) and on the edge (before anything runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Action {
    /// Answer with a result; nothing else.
    Ping,
    AgentStart {
        agent: String,
    },
    AgentStop {
        agent: String,
    },
    AgentRestart {
        agent: String,
    },
    /// Drop every packet from `net` for `timeout_s` seconds: an element
    /// with that timeout in the edge's set in the `inet fw4` table.
    BlockIp {
        net: IpNet,
        timeout_s: u32,
    },
    UnblockIp {
        net: IpNet,
    },
    /// Disconnect a station from every access point interface of the
    /// router and refuse it there for `ban_s` seconds.
    BanClient {
        mac: Mac,
        ban_s: u32,
    },
    UnbanClient {
        mac: Mac,
    },
    /// Restart a service from the edge's allowlist (UCI `restart_service`).
    RestartService {
        service: String,
    },
    /// `wifi reload`.
    ReloadWifi,
}

/// Longest block or ban an action may ask for: a week. Longer bans are
/// better made again by a playbook that still sees the attack.
pub const MAX_ACTION_S: u32 = 7 * 24 * 3600;
/// Widest network a block may name: an IPv4 /16, an IPv6 /32. Wider would
/// cut off a large part of the internet, or the operator with it.
pub const MIN_PREFIX_V4: u8 = 16;
pub const MIN_PREFIX_V6: u8 = 32;
/// Longest service name (an init script under `/etc/init.d`).
pub const MAX_SERVICE_LEN: usize = 32;

impl Action {
    /// Checks the parameters alone (the edge adds its own lists: the
    /// addresses it never blocks, the services it may restart).
    pub fn check(&self) -> Result<(), String> {
        let duration = |what: &str, s: u32| {
            if (1..=MAX_ACTION_S).contains(&s) {
                Ok(())
            } else {
                Err(format!("{what} must be 1 to {MAX_ACTION_S} seconds (a week), got {s}"))
            }
        };
        match self {
            Action::BlockIp { net, timeout_s } => {
                duration("timeout_s", *timeout_s)?;
                check_blockable(net)
            }
            Action::UnblockIp { net } => check_blockable(net),
            Action::BanClient { mac, ban_s } => {
                duration("ban_s", *ban_s)?;
                check_station(mac)
            }
            Action::UnbanClient { mac } => check_station(mac),
            Action::RestartService { service } => check_service(service),
            Action::Ping
            | Action::AgentStart { .. }
            | Action::AgentStop { .. }
            | Action::AgentRestart { .. }
            | Action::ReloadWifi => Ok(()),
        }
    }

    /// The action's name as playbooks and the audit log write it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Ping => "ping",
            Action::AgentStart { .. } => "agent_start",
            Action::AgentStop { .. } => "agent_stop",
            Action::AgentRestart { .. } => "agent_restart",
            Action::BlockIp { .. } => "block_ip",
            Action::UnblockIp { .. } => "unblock_ip",
            Action::BanClient { .. } => "ban_wifi_client",
            Action::UnbanClient { .. } => "unban_wifi_client",
            Action::RestartService { .. } => "restart_service",
            Action::ReloadWifi => "wifi_reload",
        }
    }

    /// The action that takes this one back, if there is one.
    pub fn undo(&self) -> Option<Action> {
        match self {
            Action::BlockIp { net, .. } => Some(Action::UnblockIp { net: *net }),
            Action::BanClient { mac, .. } => Some(Action::UnbanClient { mac: *mac }),
            _ => None,
        }
    }
}

/// What the action does, in a few words: `block 198.51.100.7 for 3600 s`.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Ping => write!(f, "ping"),
            Action::AgentStart { agent } => write!(f, "start {agent}"),
            Action::AgentStop { agent } => write!(f, "stop {agent}"),
            Action::AgentRestart { agent } => write!(f, "restart {agent}"),
            Action::BlockIp { net, timeout_s } => write!(f, "block {net} for {timeout_s} s"),
            Action::UnblockIp { net } => write!(f, "unblock {net}"),
            Action::BanClient { mac, ban_s } => write!(f, "ban WiFi client {mac} for {ban_s} s"),
            Action::UnbanClient { mac } => write!(f, "unban WiFi client {mac}"),
            Action::RestartService { service } => write!(f, "restart service {service}"),
            Action::ReloadWifi => write!(f, "wifi reload"),
        }
    }
}

/// An address or network the edge may put in its block set: not wider than
/// [`MIN_PREFIX_V4`]/[`MIN_PREFIX_V6`], and none of the addresses that are
/// never an attacker's (loopback, unspecified, multicast, link-local).
pub fn check_blockable(net: &IpNet) -> Result<(), String> {
    let min = if net.is_ipv4() { MIN_PREFIX_V4 } else { MIN_PREFIX_V6 };
    if net.prefix() < min {
        return Err(format!("{net} is wider than a /{min}: refusing to block so many addresses"));
    }
    let special = match net.addr() {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_link_local()
        }
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    if special {
        return Err(format!("{net} is a loopback, unspecified, multicast or link-local address: never blocked"));
    }
    Ok(())
}

fn check_station(mac: &Mac) -> Result<(), String> {
    if mac.is_group() || mac.0 == [0; 6] {
        return Err(format!("{mac} is not one station's address"));
    }
    Ok(())
}

/// A service name: an init script's file name, so `[a-z0-9_-]`, not empty,
/// at most [`MAX_SERVICE_LEN`]; never a path.
pub fn check_service(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SERVICE_LEN
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a service name (lower-case letters, digits, _ and -, at most {MAX_SERVICE_LEN})"))
    }
}

/// `opmas/v1/{device}/cmd`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Hub-wide command id, echoed in the result. Ids only grow: the edge
    /// runs a command only if its id is above every id it ran before.
    pub id: u64,
    /// The edge refuses the command after this time (unix ms, hub time:
    /// the edge judges it by the hub's clock as its signed messages tell it,
    /// not by its own; see ARCHITECTURE.md).
    pub expires_ms: u64,
    pub action: Action,
}

/// How a command ended on the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It ran and did what it asked.
    Done,
    /// It ran and could not do it (an unknown agent, an action this edge
    /// does not support): `message` says why.
    Failed,
    /// It was not run: expired, already seen, or (with id 0) a downlink
    /// message that did not verify; `message` says which.
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

/// `opmas/v1/{device}/result`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command's id; 0 for a downlink message that could not be read
    /// or verified, whose id is unknown.
    pub id: u64,
    pub outcome: Outcome,
    /// What happened, or why not.
    pub message: String,
    pub duration_ms: u32,
}

/// Bytes `value` takes when postcard-encoded (what it costs on the wire and
/// in the edge's spool budget).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_outside_one_to_five_is_refused_on_decode() {
        assert_eq!(Severity::new(0), Err(SeverityError(0)));
        assert_eq!(Severity::new(6), Err(SeverityError(6)));
        let bytes = postcard::to_allocvec(&9u8).unwrap();
        assert!(postcard::from_bytes::<Severity>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&Severity::HIGH).unwrap();
        assert_eq!(postcard::from_bytes::<Severity>(&bytes).unwrap(), Severity::HIGH);
    }

    #[test]
    fn actions_are_bounded_before_they_reach_a_router() {
        let block = |net: &str, timeout_s| Action::BlockIp { net: net.parse().unwrap(), timeout_s }.check();
        assert_eq!(block("198.51.100.7", 3600), Ok(()));
        assert_eq!(block("2001:db8:1::/48", 60), Ok(()));
        assert!(block("198.51.100.7", 0).unwrap_err().contains("timeout_s must be 1 to 604800"));
        assert!(block("198.51.100.7", MAX_ACTION_S + 1).is_err());
        assert!(block("10.0.0.0/8", 60).unwrap_err().contains("wider than a /16"));
        assert!(block("2001::/16", 60).unwrap_err().contains("wider than a /32"));
        for never in
            ["127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "169.254.1.1", "::1", "::", "ff02::1", "fe80::1"]
        {
            assert!(block(never, 60).unwrap_err().contains("never blocked"), "{never}");
        }
        let ban = |mac: &str| Action::BanClient { mac: mac.parse().unwrap(), ban_s: 60 }.check();
        assert_eq!(ban("02:11:22:33:44:55"), Ok(()));
        assert!(ban("ff:ff:ff:ff:ff:ff").is_err());
        assert!(ban("01:00:5e:00:00:01").is_err());
        assert!(ban("00:00:00:00:00:00").is_err());
        let svc = |s: &str| Action::RestartService { service: s.into() }.check();
        assert_eq!(svc("dnsmasq"), Ok(()));
        for bad in ["", "../../bin/sh", "dns masq", "-x", "DNSMASQ", "a;reboot", &"a".repeat(33)] {
            assert!(svc(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Action::BlockIp { net: "198.51.100.7".parse().unwrap(), timeout_s: 9 }.undo(),
            Some(Action::UnblockIp { net: "198.51.100.7".parse().unwrap() })
        );
        assert_eq!(Action::ReloadWifi.undo(), None);
    }
}
