//! Typed events: what a log line means, independent of how it was written.
//!
//! `classify` turns a parsed [`crate::parse::Record`] into at most one
//! [`Event`]; agents consume events and never look at message text again.
//! Fields borrow from the line, so classifying allocates nothing.
//!
//! Each event has a dotted kind (`wifi.connected`, `ssh.auth_failed`, ...)
//! that `opmas-edge explain` prints with the fields; the names are part of
//! the operator-facing contract, as are the golden files that pin them.

//!
//! ## SSH: which line is which event
//!
//! OpenSSH (`sshd`, `sshd-session`, `sshd-auth`; an `error: `, `fatal: ` or
//! `error: PAM: ` in front changes nothing) and dropbear. `ADDR` is an IPv4
//! or IPv6 address (`::ffff:`-mapped ones become IPv4) or a host name, which
//! goes to `src_host` with `src_ip` `None`. `NAME` is what the client sent,
//! spaces included; the address is read after it, from the end of the line.
//!
//! | line | event |
//! | --- | --- |
//! | `Failed password\|publickey\|keyboard-interactive/pam\|none\|hostbased for NAME from ADDR port N ssh2` | `ssh.auth_failed` |
//! | `Failed ... for invalid user NAME from ADDR ...`, `Invalid user NAME from ADDR [port N]`, `Illegal user ...` | `ssh.invalid_user` |
//! | `PAM: Authentication failure\|error for NAME from ADDR [via ADDR]`, `pam_*(sshd:auth): authentication failure; ... rhost=ADDR [user=NAME]` | `ssh.auth_failed` |
//! | `PAM: Authentication failure for illegal user NAME ...`, `PAM: User not known to the underlying authentication module for ...` | `ssh.invalid_user` |
//! | `ROOT LOGIN REFUSED FROM ADDR` (user `root`), `User NAME from ADDR not allowed because ...` | `ssh.auth_failed` |
//! | `maximum authentication attempts exceeded for [invalid user ]NAME from ADDR ...`, `Disconnecting authenticating\|invalid user NAME ADDR port N: Too many authentication failures`, `Disconnecting: Too many authentication failures [for NAME]` | `ssh.max_tries` |
//! | `Connection closed by\|Connection reset by\|Disconnected from authenticating\|invalid user NAME ADDR port N`, `Disconnecting ... user NAME ADDR port N: Change of username or service not allowed` | `ssh.preauth_closed` (`invalid` for `invalid user`) |
//! | `Received disconnect from ADDR port N:CODE: ... Auth fail`, or code 14 (no authentication method left) | `ssh.preauth_closed`, no user |
//! | `Did not receive identification string from ADDR`, `kex_exchange_identification: Connection closed\|reset ...` | `ssh.probe` `no_ident` |
//! | `banner exchange: Connection from ADDR port N: invalid format`, `kex_exchange_identification: banner line ...` | `ssh.probe` `banner` |
//! | `Bad protocol version identification '...' from ADDR`, `kex_exchange_identification: client sent invalid protocol identifier` | `ssh.probe` `bad_version` |
//! | `Unable to negotiate with ADDR port N: no matching ...`, `Unable to negotiate a ...`, `no matching ...`; `Received disconnect ...:3: ... [preauth]` | `ssh.probe` `kex` |
//! | `ssh_dispatch_run_fatal: Connection from [invalid\|authenticating user NAME ]ADDR port N: ... [preauth]`, `Magic value check failed ... from ADDR` | `ssh.probe` `fatal` |
//! | `Timeout before authentication for ADDR` | `ssh.probe` `timeout` |
//! | `Connection closed by\|reset by ADDR port N [preauth]`, `Disconnected from ADDR port N [preauth]`, `Received disconnect from ADDR ...:11: ... [preauth]`, `Read from socket failed: ... [preauth]` | `ssh.probe` `closed` |
//! | `refused connect from NAME (ADDR)` (tcp_wrappers) | `ssh.probe` `refused` |
//! | `Accepted <method> for NAME from ADDR port N ssh2` | `ssh.login_ok` |
//! | `Connection from ADDR port N on ADDR port N` (`LogLevel VERBOSE`) | `ssh.connection` |
//! | dropbear `Child connection from ADDR:PORT` | `ssh.connection` |
//! | dropbear `[Bb]ad [PAM ]password attempt for 'NAME' from ADDR:PORT`, `root login rejected` | `ssh.auth_failed` |
//! | dropbear `[Ll]ogin attempt for nonexistent user ['NAME' ][from ADDR:PORT]` | `ssh.invalid_user` |
//! | dropbear `Exit before auth [from <ADDR:PORT>]: [(user 'NAME', N fails): ]Max auth tries reached - user 'NAME'\|'is invalid' [from ADDR:PORT]`, or any reason after N > 0 fails | `ssh.max_tries` (with `fails`) |
//! | dropbear `Exit before auth ...: (user 'NAME', 0 fails): ...` | `ssh.preauth_closed` |
//! | dropbear `Exit before auth from <ADDR:PORT>: REASON` without a user | `ssh.probe` (`timeout`, `kex`, `bad_version`, `closed`, else `fatal`) |
//! | dropbear `Password\|PAM password\|Pubkey auth succeeded for 'NAME' ... from ADDR:PORT` | `ssh.login_ok` |
//!
//! Left alone: the ends of sessions after a login (`Disconnected from user
//! NAME ...`, `Connection closed by ADDR port N` without `[preauth]`,
//! `Received disconnect ...:11: disconnected by user`, dropbear `Exit (root)
//! ...`), `Postponed publickey`, and `input_userauth_request: invalid user`,
//! a twin of `Invalid user` without the address.
//!
//! **One attempt, several lines.** Consumers must not count lines as
//! attempts blindly. A failed password for an unknown user is up to three
//! lines in OpenSSH: `Invalid user NAME from ADDR` and `Failed password for
//! invalid user NAME from ADDR` (both `ssh.invalid_user`), then `Connection
//! closed by invalid user NAME ADDR` (`ssh.preauth_closed`). With PAM, an
//! existing user's wrong password is `pam_unix(sshd:auth): authentication
//! failure` and `Failed password` (two `ssh.auth_failed`). Hitting the limit
//! is `maximum authentication attempts exceeded` and `Disconnecting ...: Too
//! many authentication failures` (two `ssh.max_tries`, no `fails`). dropbear's
//! `Exit before auth (user 'u', N fails)` repeats, as `fails`, the `Bad
//! password attempt` lines the same pid logged before it.

use std::fmt::Write;
use std::net::IpAddr;

/// The values of [`Event::SshProbe`]'s `what`: how a connection that never
/// tried to log in ended.
/// - `no_ident`: the client sent no identification string;
/// - `banner`: its banner was malformed or too long;
/// - `bad_version`: it spoke another protocol, or an unknown SSH version;
/// - `kex`: no common key exchange, host key, cipher or MAC;
/// - `fatal`: a transport error after the handshake began (corrupt packets, bad MAC);
/// - `timeout`: it did not authenticate in time;
/// - `closed`: it closed the connection before naming a user;
/// - `refused`: tcp_wrappers refused it.
pub const PROBE_KINDS: &[&str] = &["no_ident", "banner", "bad_version", "kex", "fatal", "timeout", "closed", "refused"];

/// One firewall log line (fw3 iptables, fw4 nftables, banIP), fields as the
/// kernel's LOG target prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FwPacket<'a> {
    /// What the rule did, from its prefix: `drop`, `reject`, `accept` or `log`.
    pub action: &'a str,
    /// The log prefix as configured (`reject wan in`, `banIP/inbound/drop/country.v4`, `IPT_dsl-Rej`).
    pub rule: &'a str,
    pub in_if: Option<&'a str>,
    pub out_if: Option<&'a str>,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, or the number.
    pub proto: Option<&'a str>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// What a log line means to the agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A station completed association (`AP-STA-CONNECTED`).
    WifiConnected {
        iface: &'a str,
        mac: &'a str,
    },
    /// `AP-STA-DISCONNECTED`.
    WifiDisconnected {
        iface: &'a str,
        mac: &'a str,
    },
    /// `IEEE 802.11: deauthenticated ...`; `reason` as logged (`inactivity`, a code).
    WifiDeauthenticated {
        iface: &'a str,
        mac: &'a str,
        reason: Option<&'a str>,
    },
    /// `IEEE 802.11: disassociated ...`.
    WifiDisassociated {
        iface: &'a str,
        mac: &'a str,
        reason: Option<&'a str>,
    },
    /// Authentication failed: `psk_mismatch`, `no_ack`, `handshake_timeout`, ...
    WifiAuthFailed {
        iface: &'a str,
        mac: &'a str,
        reason: &'a str,
    },
    /// WPA pairwise (4-way) handshake completed.
    WifiHandshakeOk {
        iface: &'a str,
        mac: &'a str,
    },

    /// A client connected: dropbear's `Child connection from`, OpenSSH's
    /// `Connection from ADDR port N on ...` (`LogLevel VERBOSE`). Ties a pid to
    /// an address for the lines of the same process that name none. Both
    /// servers always print a numeric address here, so there is no `src_host`.
    SshConnection {
        src_ip: IpAddr,
        src_port: Option<u16>,
    },
    /// A wrong password or key for an existing user, or a login the server
    /// refused for that user (`ROOT LOGIN REFUSED`, `not allowed because`).
    SshAuthFailed {
        src_ip: Option<IpAddr>,
        /// The client as a host name, when the line names one instead of an
        /// address (PAM's `rhost=`, `UseDNS yes`); `src_ip` is `None` then.
        src_host: Option<&'a str>,
        src_port: Option<u16>,
        user: Option<&'a str>,
    },
    /// A login attempt for a user that does not exist. `user` is `""` when
    /// the client sent an empty name (`Invalid user  from ...`).
    SshInvalidUser {
        src_ip: Option<IpAddr>,
        src_host: Option<&'a str>,
        src_port: Option<u16>,
        user: Option<&'a str>,
    },
    /// The server gave up on a connection after failures; `fails` when logged.
    SshMaxTries {
        src_ip: Option<IpAddr>,
        src_host: Option<&'a str>,
        src_port: Option<u16>,
        user: Option<&'a str>,
        fails: Option<u32>,
    },
    /// A successful login.
    SshLoginOk {
        src_ip: Option<IpAddr>,
        src_host: Option<&'a str>,
        src_port: Option<u16>,
        user: Option<&'a str>,
    },
    /// A connection ended before authentication after the client named a
    /// user, or told the server its authentication failed (`Received
    /// disconnect ... Auth fail`, where `user` is `None`). `invalid`: the
    /// server said the user does not exist (`invalid user`).
    SshPreauthClosed {
        src_ip: Option<IpAddr>,
        src_host: Option<&'a str>,
        src_port: Option<u16>,
        user: Option<&'a str>,
        invalid: bool,
    },
    /// A connection that never tried to log in properly; `what` says how it
    /// ended, one of [`PROBE_KINDS`].
    SshProbe {
        src_ip: Option<IpAddr>,
        src_host: Option<&'a str>,
        src_port: Option<u16>,
        what: &'static str,
    },

    /// A packet logged by the firewall.
    FwPacket(FwPacket<'a>),

    DhcpAck {
        iface: &'a str,
        mac: &'a str,
        ip: Option<IpAddr>,
    },
    DhcpNak {
        iface: &'a str,
        mac: &'a str,
        ip: Option<IpAddr>,
    },
    /// dnsmasq could not offer an address on `iface`: `DHCPDISCOVER(br-lan)
    /// <mac> no address available` (the pool is exhausted), or `no address
    /// range available for DHCP request via <iface>` (no `dhcp-range` covers
    /// the network the request came from; `iface` may be a relay's address).
    /// The second form names no client, so `mac` is `None` there.
    DhcpNoAddress {
        iface: &'a str,
        mac: Option<&'a str>,
    },

    /// netifd: `Interface 'wan' is now up`.
    NetIfaceUp {
        iface: &'a str,
    },
    NetIfaceDown {
        iface: &'a str,
    },
    /// A device's carrier: netifd `Network device 'eth0' link is up` or the kernel's `Link is Up`.
    NetLinkUp {
        iface: &'a str,
    },
    NetLinkDown {
        iface: &'a str,
    },
    /// pppd: a session came up (`local  IP address`, `PAP authentication succeeded`...).
    PppUp {
        iface: Option<&'a str>,
    },
    /// pppd: the session ended (`Connection terminated`, `Modem hangup`, `LCP terminated by peer`).
    PppDown {
        iface: Option<&'a str>,
        reason: Option<&'a str>,
    },

    /// The kernel OOM killer killed a process.
    SysOomKill {
        process: &'a str,
        pid: Option<u32>,
    },
    /// procd: `Instance X::Y s in a crash loop N crashes, M seconds since last crash`.
    SysCrashLoop {
        service: &'a str,
    },
    /// A watchdog event (hardware watchdog, soft lockup, hung task).
    SysWatchdog {
        detail: &'a str,
    },
    /// The system booted (kernel banner or procd start).
    SysBoot,
    /// A clean shutdown or reboot began (procd's `- shutdown -`, the kernel's
    /// `reboot: Restarting system`): the next boot is expected.
    SysShutdown,

    /// LuCI / uhttpd login failure.
    WebLoginFailed {
        user: Option<&'a str>,
        src_ip: Option<IpAddr>,
    },
    WebLoginOk {
        user: Option<&'a str>,
        src_ip: Option<IpAddr>,
    },
}

impl Event<'_> {
    /// The dotted kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::WifiConnected { .. } => "wifi.connected",
            Event::WifiDisconnected { .. } => "wifi.disconnected",
            Event::WifiDeauthenticated { .. } => "wifi.deauthenticated",
            Event::WifiDisassociated { .. } => "wifi.disassociated",
            Event::WifiAuthFailed { .. } => "wifi.auth_failed",
            Event::WifiHandshakeOk { .. } => "wifi.handshake_ok",
            Event::SshConnection { .. } => "ssh.connection",
            Event::SshAuthFailed { .. } => "ssh.auth_failed",
            Event::SshInvalidUser { .. } => "ssh.invalid_user",
            Event::SshMaxTries { .. } => "ssh.max_tries",
            Event::SshLoginOk { .. } => "ssh.login_ok",
            Event::SshPreauthClosed { .. } => "ssh.preauth_closed",
            Event::SshProbe { .. } => "ssh.probe",
            Event::FwPacket(_) => "fw.packet",
            Event::DhcpAck { .. } => "dhcp.ack",
            Event::DhcpNak { .. } => "dhcp.nak",
            Event::DhcpNoAddress { .. } => "dhcp.no_address",
            Event::NetIfaceUp { .. } => "net.iface_up",
            Event::NetIfaceDown { .. } => "net.iface_down",
            Event::NetLinkUp { .. } => "net.link_up",
            Event::NetLinkDown { .. } => "net.link_down",
            Event::PppUp { .. } => "ppp.up",
            Event::PppDown { .. } => "ppp.down",
            Event::SysOomKill { .. } => "sys.oom_kill",
            Event::SysCrashLoop { .. } => "sys.crash_loop",
            Event::SysWatchdog { .. } => "sys.watchdog",
            Event::SysBoot => "sys.boot",
            Event::SysShutdown => "sys.shutdown",
            Event::WebLoginFailed { .. } => "web.login_failed",
            Event::WebLoginOk { .. } => "web.login_ok",
        }
    }

    /// Writes `{"kind":...,<fields>}` as JSON (absent fields are left out).
    pub fn write_json(&self, out: &mut String) {
        let mut j = JsonObject::open(out);
        j.str("kind", Some(self.kind()));
        match *self {
            Event::WifiConnected { iface, mac }
            | Event::WifiDisconnected { iface, mac }
            | Event::WifiHandshakeOk { iface, mac } => {
                j.str("iface", Some(iface));
                j.str("mac", Some(mac));
            }
            Event::WifiDeauthenticated { iface, mac, reason } | Event::WifiDisassociated { iface, mac, reason } => {
                j.str("iface", Some(iface));
                j.str("mac", Some(mac));
                j.str("reason", reason);
            }
            Event::WifiAuthFailed { iface, mac, reason } => {
                j.str("iface", Some(iface));
                j.str("mac", Some(mac));
                j.str("reason", Some(reason));
            }
            Event::SshConnection { src_ip, src_port } => {
                j.ip("src_ip", Some(src_ip));
                j.num("src_port", src_port.map(u64::from));
            }
            Event::SshAuthFailed { src_ip, src_host, src_port, user }
            | Event::SshInvalidUser { src_ip, src_host, src_port, user }
            | Event::SshLoginOk { src_ip, src_host, src_port, user } => {
                j.ip("src_ip", src_ip);
                j.str("src_host", src_host);
                j.num("src_port", src_port.map(u64::from));
                j.str("user", user);
            }
            Event::SshMaxTries { src_ip, src_host, src_port, user, fails } => {
                j.ip("src_ip", src_ip);
                j.str("src_host", src_host);
                j.num("src_port", src_port.map(u64::from));
                j.str("user", user);
                j.num("fails", fails.map(u64::from));
            }
            Event::SshPreauthClosed { src_ip, src_host, src_port, user, invalid } => {
                j.ip("src_ip", src_ip);
                j.str("src_host", src_host);
                j.num("src_port", src_port.map(u64::from));
                j.str("user", user);
                j.bool("invalid", invalid);
            }
            Event::SshProbe { src_ip, src_host, src_port, what } => {
                j.ip("src_ip", src_ip);
                j.str("src_host", src_host);
                j.num("src_port", src_port.map(u64::from));
                j.str("what", Some(what));
            }
            Event::FwPacket(p) => {
                j.str("action", Some(p.action));
                j.str("in_if", p.in_if);
                j.str("out_if", p.out_if);
                j.ip("src_ip", p.src_ip);
                j.ip("dst_ip", p.dst_ip);
                j.str("proto", p.proto);
                j.num("src_port", p.src_port.map(u64::from));
                j.num("dst_port", p.dst_port.map(u64::from));
                j.str("rule", Some(p.rule));
            }
            Event::DhcpAck { iface, mac, ip } | Event::DhcpNak { iface, mac, ip } => {
                j.str("iface", Some(iface));
                j.str("mac", Some(mac));
                j.ip("ip", ip);
            }
            Event::DhcpNoAddress { iface, mac } => {
                j.str("iface", Some(iface));
                j.str("mac", mac);
            }
            Event::NetIfaceUp { iface }
            | Event::NetIfaceDown { iface }
            | Event::NetLinkUp { iface }
            | Event::NetLinkDown { iface } => j.str("iface", Some(iface)),
            Event::PppUp { iface } => j.str("iface", iface),
            Event::PppDown { iface, reason } => {
                j.str("iface", iface);
                j.str("reason", reason);
            }
            Event::SysOomKill { process, pid } => {
                j.str("process", Some(process));
                j.num("pid", pid.map(u64::from));
            }
            Event::SysCrashLoop { service } => j.str("service", Some(service)),
            Event::SysWatchdog { detail } => j.str("detail", Some(detail)),
            Event::SysBoot | Event::SysShutdown => {}
            Event::WebLoginFailed { user, src_ip } | Event::WebLoginOk { user, src_ip } => {
                j.str("user", user);
                j.ip("src_ip", src_ip);
            }
        }
        j.close();
    }
}

/// A minimal JSON object writer: `explain` is the edge's only JSON output,
/// and a serializer crate would cost flash on every router for it.
pub struct JsonObject<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> JsonObject<'o> {
    pub fn open(out: &'o mut String) -> Self {
        out.push('{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_json_str(self.out, k);
        self.out.push(':');
    }

    /// Writes `"k":"v"`; nothing when `v` is `None`.
    pub fn str(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.key(k);
            push_json_str(self.out, v);
        }
    }

    pub fn num(&mut self, k: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.key(k);
            let _ = write!(self.out, "{v}");
        }
    }

    pub fn ip(&mut self, k: &str, v: Option<IpAddr>) {
        if let Some(v) = v {
            self.key(k);
            let _ = write!(self.out, "\"{v}\"");
        }
    }

    pub fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
    }

    /// Writes `"k":null` explicitly.
    pub fn null(&mut self, k: &str) {
        self.key(k);
        self.out.push_str("null");
    }

    /// Writes `"k":` followed by raw, already valid JSON.
    pub fn raw(&mut self, k: &str, json: &str) {
        self.key(k);
        self.out.push_str(json);
    }

    pub fn close(self) {
        self.out.push('}');
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Runs without anything to escape are copied whole; every byte that
    // needs escaping is ASCII, so the cuts fall on character boundaries.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escaped);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_json_with_their_kind() {
        let mut s = String::new();
        Event::SshAuthFailed {
            src_ip: Some("192.0.2.1".parse().unwrap()),
            src_host: None,
            src_port: Some(22),
            user: Some("r\"o"),
        }
        .write_json(&mut s);
        assert_eq!(s, r#"{"kind":"ssh.auth_failed","src_ip":"192.0.2.1","src_port":22,"user":"r\"o"}"#);
        let mut s = String::new();
        Event::SysBoot.write_json(&mut s);
        assert_eq!(s, r#"{"kind":"sys.boot"}"#);
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\u{1}b\tc");
        assert_eq!(s, r#""a\u0001b\tc""#);
    }
}
