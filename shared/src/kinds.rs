//! The finding kinds: every kind an edge agent (or the hub's own
//! `lifecycle` agent) reports, with its stable
//! name, severity and words for summaries. Shared by the edge (which
//! emits them) and the hub (which filters on them and will validate rules
//! against them).

use crate::msg::Severity;

/// A finding kind: stable name, severity, and words for summaries.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// Unique among [`ALL_KINDS`]; part of the suppression key.
    pub id: u8,
    /// The dotted name, e.g. `ssh.bruteforce`.
    pub name: &'static str,
    /// 1 (informational) to 5 (critical).
    pub severity: Severity,
    /// What it is, for summaries ("SSH brute force").
    pub title: &'static str,
}

/// Failed SSH logins from one source.
pub const SSH_BRUTEFORCE: Kind =
    Kind { id: 0, name: "ssh.bruteforce", severity: Severity::HIGH, title: "SSH brute force" };

/// Many user names tried from one source.
pub const SSH_USER_ENUM: Kind =
    Kind { id: 1, name: "ssh.user_enum", severity: Severity::MEDIUM, title: "SSH user enumeration" };

/// Many sources failing as one user.
pub const SSH_DISTRIBUTED_BRUTEFORCE: Kind =
    Kind { id: 2, name: "ssh.distributed_bruteforce", severity: Severity::HIGH, title: "distributed SSH brute force" };

/// Failed LuCI logins from one source.
pub const WEB_BRUTEFORCE: Kind =
    Kind { id: 3, name: "web.bruteforce", severity: Severity::HIGH, title: "LuCI login brute force" };

/// A successful login from a source that just failed many times: likely a
/// guessed password, so above the brute force itself.
pub const AUTH_SUCCESS_AFTER_FAILURES: Kind = Kind {
    id: 4,
    name: "auth.success_after_failures",
    severity: Severity::CRITICAL,
    title: "login succeeded after failures",
};

/// Many stations disconnected on one interface.
pub const WIFI_DEAUTH_FLOOD: Kind =
    Kind { id: 5, name: "wifi.deauth_flood", severity: Severity::HIGH, title: "WiFi deauthentication flood" };

/// Repeated authentication failures of one station.
pub const WIFI_AUTH_FAILURES: Kind =
    Kind { id: 6, name: "wifi.auth_failures", severity: Severity::MEDIUM, title: "WiFi authentication failures" };

/// One station connecting again and again.
pub const WIFI_CLIENT_CHURN: Kind =
    Kind { id: 7, name: "wifi.client_churn", severity: Severity::LOW, title: "WiFi client churn" };

/// One source probing many ports.
pub const NET_PORT_SCAN: Kind = Kind { id: 8, name: "net.port_scan", severity: Severity::MEDIUM, title: "port scan" };

/// One source probing many hosts.
pub const NET_SWEEP: Kind = Kind { id: 9, name: "net.sweep", severity: Severity::MEDIUM, title: "host sweep" };

/// The DHCP server ran out of addresses.
pub const DHCP_POOL_EXHAUSTED: Kind =
    Kind { id: 10, name: "dhcp.pool_exhausted", severity: Severity::MEDIUM, title: "DHCP pool exhausted" };

/// An interface or link going down again and again.
pub const NET_LINK_FLAPPING: Kind =
    Kind { id: 11, name: "net.link_flapping", severity: Severity::MEDIUM, title: "link flapping" };

/// PPP sessions ending again and again.
pub const PPP_SESSION_DROPS: Kind =
    Kind { id: 12, name: "ppp.session_drops", severity: Severity::MEDIUM, title: "PPP session drops" };

/// The kernel killed a process for lack of memory.
pub const SYS_OOM_KILL: Kind = Kind { id: 13, name: "sys.oom_kill", severity: Severity::HIGH, title: "OOM kill" };

/// procd gave up respawning a service.
pub const SYS_CRASH_LOOP: Kind =
    Kind { id: 14, name: "sys.crash_loop", severity: Severity::HIGH, title: "service crash loop" };

/// A watchdog, soft lockup or hung task.
pub const SYS_WATCHDOG: Kind = Kind { id: 15, name: "sys.watchdog", severity: Severity::HIGH, title: "watchdog event" };

/// A boot in the middle of a running system's log.
pub const SYS_UNEXPECTED_REBOOT: Kind =
    Kind { id: 16, name: "sys.unexpected_reboot", severity: Severity::HIGH, title: "unexpected reboot" };

/// Many sources probing the router at once: a coordinated scan (a botnet),
/// or the internet's background knocking grown dense.
pub const NET_DISTRIBUTED_SCAN: Kind =
    Kind { id: 17, name: "net.distributed_scan", severity: Severity::MEDIUM, title: "scan from many sources" };

/// A device stopped talking to the hub (its Last Will, its own word, or
/// silence past the presence timeout). Made by the hub's `lifecycle` agent,
/// not by an edge; open until the device is back.
pub const DEVICE_OFFLINE: Kind =
    Kind { id: 18, name: "device.offline", severity: Severity::MEDIUM, title: "device offline" };

/// A device that was offline is back. Made by the hub's `lifecycle` agent.
pub const DEVICE_BACK: Kind =
    Kind { id: 19, name: "device.back", severity: Severity::INFO, title: "device back online" };

/// An edge's supervisor gave up on one of its agents after restarting it
/// the configured number of times in a row. Made by the hub's `lifecycle`
/// agent from the heartbeat; open until the agent runs again.
pub const AGENT_FAILED: Kind = Kind { id: 20, name: "agent.failed", severity: Severity::HIGH, title: "agent failed" };

/// An edge's supervisor restarted a failed agent. Made by the hub's
/// `lifecycle` agent from the heartbeat.
pub const AGENT_RESTARTED: Kind =
    Kind { id: 21, name: "agent.restarted", severity: Severity::LOW, title: "agent restarted by policy" };

/// The edge blocked an address itself, at once, without the hub (the
/// router's local response to a finding; UCI `config response`). Made by
/// the edge's `response` agent, delivered like any finding (also after the
/// hub was out of reach).
pub const RESPONSE_IP_BLOCKED: Kind =
    Kind { id: 22, name: "response.ip_blocked", severity: Severity::LOW, title: "address blocked locally" };

/// The edge's local response could not block an address (nft failed).
pub const RESPONSE_FAILED: Kind =
    Kind { id: 23, name: "response.failed", severity: Severity::MEDIUM, title: "local response failed" };

/// The agent name of the edge's local response findings.
pub const RESPONSE_AGENT: &str = "response";
/// The agent name of the hub's own findings (presence, supervision).
pub const LIFECYCLE_AGENT: &str = "lifecycle";

/// Every agent name a finding may carry: the edge's detection agents, its
/// local response, and the hub's lifecycle agent.
pub fn finding_agents() -> impl Iterator<Item = &'static str> {
    crate::agents::AGENTS.iter().map(|a| a.name).chain([RESPONSE_AGENT, LIFECYCLE_AGENT])
}

/// Every finding kind, in id order.
pub const ALL_KINDS: &[&Kind] = &[
    &SSH_BRUTEFORCE,
    &SSH_USER_ENUM,
    &SSH_DISTRIBUTED_BRUTEFORCE,
    &WEB_BRUTEFORCE,
    &AUTH_SUCCESS_AFTER_FAILURES,
    &WIFI_DEAUTH_FLOOD,
    &WIFI_AUTH_FAILURES,
    &WIFI_CLIENT_CHURN,
    &NET_PORT_SCAN,
    &NET_SWEEP,
    &DHCP_POOL_EXHAUSTED,
    &NET_LINK_FLAPPING,
    &PPP_SESSION_DROPS,
    &SYS_OOM_KILL,
    &SYS_CRASH_LOOP,
    &SYS_WATCHDOG,
    &SYS_UNEXPECTED_REBOOT,
    &NET_DISTRIBUTED_SCAN,
    &DEVICE_OFFLINE,
    &DEVICE_BACK,
    &AGENT_FAILED,
    &AGENT_RESTARTED,
    &RESPONSE_IP_BLOCKED,
    &RESPONSE_FAILED,
];

/// The kind named `name`, if there is one.
pub fn by_name(name: &str) -> Option<&'static Kind> {
    ALL_KINDS.iter().copied().find(|k| k.name == name)
}
