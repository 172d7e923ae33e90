//! Record → [`Event`]: recognises the lines agents use, by program, then by
//! message prefix. Borrowed fields, no allocation, no regex.
//!
//! Dispatch on the program name first keeps the cost per line to one string
//! match for the many lines no agent uses; inside a program, the checks are
//! `strip_prefix` and short `find`s, most frequent first.
//!
//! Some real-world occurrences are logged on more than one line, and each
//! line is classified on its own (this module keeps no state). Agents see,
//! for one occurrence:
//! - a link change: the kernel's `Link is Up` and netifd's `link is up`;
//! - an OOM kill (kernels ≥ 4.19): `oom-kill:...,task=X,pid=N` and
//!   `Out of memory: Killed process N (X)`, with the same pid;
//! - a PPP session end: up to three `ppp.down` with the same pppd pid, the
//!   causes (`Modem hangup`, `LCP terminated by peer`, no echo replies) with
//!   a reason, then always `Connection terminated.` without one;
//! - a PPP session start: `PAP`/`CHAP authentication succeeded` and
//!   `local  IP address`, with the same pid;
//! - a boot: the kernel's `Linux version` banner and `procd: - init -`;
//! - an SSH attempt: see the table and the note on twins in [`crate::events`].
//!
//! Lines left alone on purpose: hostapd's `EAPOL-4WAY-HS-COMPLETED` (the
//! `WPA: pairwise key handshake completed` line of the same handshake
//! carries the interface) and `invalid MIC in msg 2/4` (a debug-level twin
//! of `AP-STA-POSSIBLE-PSK-MISMATCH`); the old kernels' `Out of memory:
//! Kill process N (X) score ... or sacrifice child`, which names the victim
//! before the `Killed process` line that reports the kill.

use std::net::IpAddr;

use crate::events::{Event, FwPacket};
use crate::parse::Record;

/// The event a record carries, if any agent uses it.
pub fn classify<'a>(r: &Record<'a>) -> Option<Event<'a>> {
    let msg = r.msg;
    match r.program {
        Some("kernel") => kernel(msg),
        Some("hostapd") => hostapd(msg),
        Some("dnsmasq-dhcp") | Some("dnsmasq") => dnsmasq(msg),
        Some("dropbear") => dropbear(msg),
        // OpenSSH ≥ 9.8 logs authentication from `sshd-session` (and ≥ 10.0 from `sshd-auth`).
        Some("sshd") | Some("sshd-session") | Some("sshd-auth") => openssh(msg),
        Some("netifd") => netifd(msg),
        Some("pppd") => pppd(msg),
        Some("procd") => procd(msg),
        Some("uhttpd") => luci(msg.strip_prefix("luci: ").or_else(|| bracketed_level(msg)?.strip_prefix("luci: "))?),
        Some("luci") => luci(msg),
        Some(_) => None,
        // No tag: LuCI's own lines since 2021 (`user.info : luci: ...`) or a
        // kernel message quoted without its prefix (`REJECT(src wan)IN=...`).
        None => match msg.strip_prefix("luci: ") {
            Some(rest) => luci(rest),
            None => kernel(msg),
        },
    }
}

// ---------------------------------------------------------------- kernel

/// Searching message text for a word: the str methods with a `&str`
/// pattern build a two-way searcher per call, which costs more than the
/// short messages they search. These jump with memchr to the pattern's
/// first byte that is not a space or a quote and compare from there.
trait Words {
    fn find_str(&self, pat: &str) -> Option<usize>;
    fn rfind_str(&self, pat: &str) -> Option<usize>;
    fn contains_str(&self, pat: &str) -> bool;
    fn split_str(&self, pat: &str) -> Option<(&str, &str)>;
    fn rsplit_str(&self, pat: &str) -> Option<(&str, &str)>;
}

/// The index in `pat` of the byte to search for.
fn anchor(pat: &[u8]) -> usize {
    pat.iter().position(|&c| c != b' ' && c != b'\'').unwrap_or(0)
}

impl Words for str {
    fn find_str(&self, pat: &str) -> Option<usize> {
        let (h, p) = (self.as_bytes(), pat.as_bytes());
        let k = anchor(p);
        let mut from = k;
        while let Some(i) = memchr::memchr(*p.get(k)?, h.get(from..)?) {
            let start = from + i - k;
            if h[start..].starts_with(p) {
                return Some(start);
            }
            from += i + 1;
        }
        None
    }

    fn rfind_str(&self, pat: &str) -> Option<usize> {
        let (h, p) = (self.as_bytes(), pat.as_bytes());
        let k = anchor(p);
        // Positions of the anchor byte where the whole pattern still fits.
        let mut end = (h.len() + k + 1).checked_sub(p.len())?;
        while let Some(i) = memchr::memrchr(*p.get(k)?, h.get(k..end)?) {
            let start = i;
            if h[start..].starts_with(p) {
                return Some(start);
            }
            end = k + i;
        }
        None
    }

    fn contains_str(&self, pat: &str) -> bool {
        self.find_str(pat).is_some()
    }

    fn split_str(&self, pat: &str) -> Option<(&str, &str)> {
        let i = self.find_str(pat)?;
        Some((self.get(..i)?, self.get(i + pat.len()..)?))
    }

    fn rsplit_str(&self, pat: &str) -> Option<(&str, &str)> {
        let i = self.rfind_str(pat)?;
        Some((self.get(..i)?, self.get(i + pat.len()..)?))
    }
}

fn kernel(msg: &str) -> Option<Event<'_>> {
    // Firewall lines are most of a busy router's kernel log: first.
    if let Some(p) = fw_packet(msg) {
        return Some(Event::FwPacket(p));
    }
    if let Some(e) = oom(msg) {
        return Some(e);
    }
    if let Some(e) = kernel_link(msg) {
        return Some(e);
    }
    // The two markers of every boot: the kernel's banner, and procd's start
    // (written to the kernel log before syslog runs). Once each per boot.
    if msg.starts_with("Linux version ") || msg.trim_end() == "procd: - init -" {
        return Some(Event::SysBoot);
    }
    // A clean reboot or power-off; the kernel's last words and procd's.
    if msg.starts_with("reboot: Restarting system")
        || msg.starts_with("reboot: Power down")
        || msg.trim_end() == "procd: - shutdown -"
    {
        return Some(Event::SysShutdown);
    }
    if is_watchdog(msg) {
        return Some(Event::SysWatchdog { detail: msg.trim_end() });
    }
    None
}

/// A netfilter LOG line: `<prefix>IN=<if> OUT=<if> ... SRC= DST= ... PROTO= SPT= DPT=`,
/// as fw3 (iptables), fw4 (nftables) and banIP print them, IPv4 or IPv6.
///
/// These are most of a busy router's kernel lines, so the fields are read in
/// one pass over the bytes with 4-byte key compares, not with `split` and
/// string matches (which cost a `memchr` and a `memcmp` per token).
/// The LOG target's keys this reads, as little-endian words of their first four bytes.
const SRC: u32 = u32::from_le_bytes(*b"SRC=");
const DST: u32 = u32::from_le_bytes(*b"DST=");
const PROT: u32 = u32::from_le_bytes(*b"PROT");
const SPT: u32 = u32::from_le_bytes(*b"SPT=");
const DPT: u32 = u32::from_le_bytes(*b"DPT=");

fn fw_packet(msg: &str) -> Option<FwPacket<'_>> {
    let b = msg.as_bytes();
    let at = find3(b, *b"IN=")?;
    let (in_if, rest) = cut(&msg[at + 3..], b' ')?;
    let rest = rest.strip_prefix("OUT=")?;
    let rule = msg[..at].trim_end().trim_end_matches(':').trim_end();
    let mut p = FwPacket {
        action: fw_action(rule),
        rule,
        in_if: Some(in_if).filter(|s| !s.is_empty()),
        out_if: None,
        src_ip: None,
        dst_ip: None,
        proto: None,
        src_port: None,
        dst_port: None,
    };
    let rb = rest.as_bytes();
    let mut i = 0;
    let mut first = true;
    while i < rb.len() {
        let start = i;
        i = next_space(rb, i);
        // `start` and `i` sit on ASCII spaces or the ends: char boundaries.
        let tok = &rest[start..i];
        i += 1;
        if first {
            p.out_if = Some(tok).filter(|s| !s.is_empty());
            first = false;
            continue;
        }
        let tb = tok.as_bytes();
        // An ICMP error quotes the offending packet in brackets: not this packet's fields.
        if tb.first() == Some(&b'[') {
            break;
        }
        let Some(&[k0, k1, k2, k3]) = tb.get(..4) else { continue };
        // Only read when the key matched (ASCII), so this is a char boundary then.
        let val = tok.get(4..).unwrap_or("");
        // The key as one word: one comparison per known key.
        match u32::from_le_bytes([k0, k1, k2, k3]) {
            SRC => p.src_ip = parse_ip(val),
            DST => p.dst_ip = parse_ip(val),
            PROT => p.proto = tok.strip_prefix("PROTO=").filter(|v| !v.is_empty()),
            SPT => p.src_port = parse_u16(val),
            DPT => {
                p.dst_port = parse_u16(val);
                break;
            }
            _ => {}
        }
    }
    Some(p)
}

/// Position of a 3-byte needle: memchr to each candidate first byte (vector
/// instructions where the CPU has them), then the two after it.
fn find3(b: &[u8], [n0, n1, n2]: [u8; 3]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(n0, &b[from..]) {
        let at = from + i;
        if b.get(at + 1) == Some(&n1) && b.get(at + 2) == Some(&n2) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Index of the next space in `b` from `i`, or `b.len()`. Eight bytes at a
/// time (the zero-byte test on `word ^ 0x2020...`): LOG lines have long
/// tokens (`MAC=` is 40 bytes) and this is the hot loop of a busy router.
fn next_space(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ (ONES * u64::from(b' '));
        let hit = x.wrapping_sub(ONES) & !x & HIGHS;
        if hit != 0 {
            // The lowest flagged byte is exact (borrows only run upwards).
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    i
}

/// What a firewall rule did, from the words of its log prefix: `reject wan in`,
/// `REJECT(src wan)`, `IPT_dsl-Rej`, `banIP/inbound/drop/country.v4`, `DROP`.
fn fw_action(rule: &str) -> &'static str {
    for word in rule.split(|c: char| !c.is_ascii_alphanumeric()) {
        let is = |names: &[&str]| names.iter().any(|n| word.eq_ignore_ascii_case(n));
        if is(&["reject", "rejected", "rej"]) {
            return "reject";
        }
        if is(&["drop", "dropped", "drp", "deny", "denied", "block", "blocked"]) {
            return "drop";
        }
        if is(&["accept", "accepted", "acc", "allow", "allowed"]) {
            return "accept";
        }
    }
    "log"
}

/// `Out of memory: Killed process 4541 (v2ray) ...`, `Memory cgroup out of
/// memory: Killed process ...`, `Killed process ...` (old kernels), and
/// `oom-kill:constraint=...,task=X,pid=N,uid=U`.
fn oom(msg: &str) -> Option<Event<'_>> {
    if let Some(rest) = msg.strip_prefix("oom-kill:") {
        let task = rest.split(',').find_map(|kv| kv.strip_prefix("task="))?;
        let pid = rest.split(',').find_map(|kv| kv.strip_prefix("pid=")).and_then(|p| p.parse().ok());
        return Some(Event::SysOomKill { process: task, pid });
    }
    let rest = msg
        .strip_prefix("Out of memory: ")
        .or_else(|| msg.strip_prefix("Memory cgroup out of memory: "))
        .unwrap_or(msg)
        .strip_prefix("Killed process ")?;
    let (pid, rest) = rest.split_str(" (")?;
    let (process, _) = rest.split_once(')')?;
    Some(Event::SysOomKill { process, pid: pid.parse().ok() })
}

/// A driver's carrier line: `eth0: Link is Up - 1Gbps/Full` (phylink and
/// most drivers), `igb: eth0 NIC Link is Down`, `e1000e ... eth1: NIC Link is
/// Up 1000 Mbps`, `mt7530 mdio-bus:1f wan: Link is Down`, `eth0: link up (1000Mbps/Full duplex)` (ag71xx).
fn kernel_link(msg: &str) -> Option<Event<'_>> {
    let (before, state) = if let Some(i) = msg.find_str("Link is ") {
        let before = msg[..i].trim_end();
        (before.strip_suffix("NIC").unwrap_or(before).trim_end(), &msg[i + 8..])
    } else {
        let i = msg.find_str(": link ")?;
        (&msg[..i + 1], &msg[i + 7..])
    };
    let iface = before.rsplit(' ').next()?.trim_end_matches(':');
    if !is_ifname(iface) {
        return None;
    }
    if state.starts_with("Up") || state.starts_with("up") {
        Some(Event::NetLinkUp { iface })
    } else if state.starts_with("Down") || state.starts_with("down") {
        Some(Event::NetLinkDown { iface })
    } else {
        None
    }
}

/// Soft and hard lockups, hung tasks, RCU stalls.
fn is_watchdog(msg: &str) -> bool {
    let m = msg.strip_prefix("watchdog: ").or_else(|| msg.strip_prefix("NMI watchdog: ")).unwrap_or(msg);
    m.starts_with("BUG: soft lockup")
        || m.starts_with("Watchdog detected hard LOCKUP")
        || (m.starts_with("INFO: task ") && m.contains_str(" blocked for more than "))
        || ((m.starts_with("INFO: rcu_") || m.starts_with("rcu: INFO: rcu_")) && m.contains_str("stall"))
}

// ---------------------------------------------------------------- hostapd

/// `<iface>: AP-STA-...` and `<iface>: STA <mac> <module>: <text>`.
fn hostapd(msg: &str) -> Option<Event<'_>> {
    let (iface, rest) = cut(msg, b':')?;
    let rest = rest.strip_prefix(' ')?;
    if !is_ifname(iface) {
        return None;
    }
    if let Some(ev) = rest.strip_prefix("AP-STA-") {
        let (what, rest) = cut(ev, b' ')?;
        let mac = first_word(rest);
        if !is_mac(mac) {
            return None;
        }
        return match what {
            "CONNECTED" => Some(Event::WifiConnected { iface, mac }),
            "DISCONNECTED" => Some(Event::WifiDisconnected { iface, mac }),
            "POSSIBLE-PSK-MISMATCH" => Some(Event::WifiAuthFailed { iface, mac, reason: "psk_mismatch" }),
            _ => None,
        };
    }
    let (mac, text) = cut(rest.strip_prefix("STA ")?, b' ')?;
    if !is_mac(mac) {
        return None;
    }
    // "IEEE 802.11: " as hostapd prints it; "IEEE802.11: " as some pastes have it.
    if let Some(t) = text.strip_prefix("IEEE 802.11: ").or_else(|| text.strip_prefix("IEEE802.11: ")) {
        if let Some(r) = t.strip_prefix("deauthenticated") {
            return Some(Event::WifiDeauthenticated { iface, mac, reason: due_to(r) });
        }
        if let Some(r) = t.strip_prefix("disassociated") {
            return Some(Event::WifiDisassociated { iface, mac, reason: due_to(r) });
        }
        if t.starts_with("did not acknowledge authentication response") {
            return Some(Event::WifiAuthFailed { iface, mac, reason: "no_ack" });
        }
        return None;
    }
    if let Some(t) = text.strip_prefix("WPA: ") {
        if t.starts_with("pairwise key handshake completed") {
            return Some(Event::WifiHandshakeOk { iface, mac });
        }
        if t.starts_with("PTKSTART: Retry limit")
            || t.starts_with("PTKINITNEGOTIATING: Retry limit")
            || t.starts_with("EAPOL-Key timeout")
        {
            return Some(Event::WifiAuthFailed { iface, mac, reason: "handshake_timeout" });
        }
        // "handshake failed" or "Handshake failed". A failed group rekey is a
        // sleepy station, not a failed authentication.
        if !t.starts_with("group key") && t.contains_str("andshake failed") {
            return Some(Event::WifiAuthFailed { iface, mac, reason: "handshake_failed" });
        }
        return None;
    }
    if let Some(t) = text.strip_prefix("IEEE 802.1X: ") {
        if t.starts_with("authentication failed") {
            return Some(Event::WifiAuthFailed { iface, mac, reason: "eap_failed" });
        }
    }
    None
}

/// ` due to inactivity (timer DEAUTH/REMOVE)` → `inactivity`; nothing → `None`.
fn due_to(rest: &str) -> Option<&str> {
    let r = rest.strip_prefix(" due to ")?;
    let r = cut(r, b'(').map_or(r, |(a, _)| a).trim_end();
    Some(r).filter(|r| !r.is_empty())
}

// ---------------------------------------------------------------- dnsmasq

/// `DHCPACK(br-lan) 192.168.1.5 aa:bb:cc:dd:ee:ff host`, `DHCPNAK(...)`,
/// `DHCPDISCOVER(br-lan) aa:bb:.. no address available` (with `log-dhcp`,
/// a transaction number comes first).
fn dnsmasq(msg: &str) -> Option<Event<'_>> {
    let msg = match cut(msg, b' ') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => rest,
        _ => msg,
    };
    let Some(rest) = msg.strip_prefix("DHCP") else { return no_range(msg) };
    let (verb, rest) = cut(rest, b'(')?;
    if !matches!(verb, "ACK" | "NAK" | "DISCOVER") {
        return None;
    }
    let (iface, rest) = cut(rest, b')')?;
    let mut words = rest.split_ascii_whitespace();
    let first = words.next()?;
    // DHCPv4: the address is IPv4 (no costly IPv6 attempt on a MAC).
    let ip = parse_ipv4(first);
    let (ip, mac) = if ip.is_none() && is_mac(first) {
        (None, first)
    } else {
        // An address, or one redacted by the author (`xxx.xxx.xxx.xxx`): present but unknown.
        (ip, words.next().filter(|m| is_mac(m))?)
    };
    match verb {
        "ACK" => Some(Event::DhcpAck { iface, mac, ip }),
        "NAK" => Some(Event::DhcpNak { iface, mac, ip }),
        _ if rest.trim_end().ends_with("no address available") => Some(Event::DhcpNoAddress { iface, mac: Some(mac) }),
        _ => None,
    }
}

/// `no address range available for DHCP request via br-lan` (also
/// `DHCPv6`; `via` a relay's address when relayed): no `dhcp-range` covers
/// the requester's network, so nobody there gets an address. No MAC is
/// logged. The `with subnet selector` form is left alone: it names no
/// interface.
fn no_range(msg: &str) -> Option<Event<'_>> {
    let r = msg.strip_prefix("no address range available for DHCP")?;
    let r = r.strip_prefix("v6").unwrap_or(r).strip_prefix(" request via ")?;
    let iface = r.trim_end();
    is_ifname(iface).then_some(Event::DhcpNoAddress { iface, mac: None })
}

// ---------------------------------------------------------------- netifd

/// `Interface 'wan' is now up|down`; `<device type> 'eth0' link is up|down`
/// (`Network device`, `bridge`, `macvlan`, `tunnel`, `Network alias`...).
fn netifd(msg: &str) -> Option<Event<'_>> {
    if let Some(r) = msg.strip_prefix("Interface '") {
        let (iface, state) = cut(r, b'\'')?;
        return match state.trim() {
            "is now up" if !iface.is_empty() => Some(Event::NetIfaceUp { iface }),
            "is now down" if !iface.is_empty() => Some(Event::NetIfaceDown { iface }),
            _ => None,
        };
    }
    let (_, r) = cut(msg, b'\'')?;
    let (iface, state) = cut(r, b'\'')?;
    // "Network alias '' link is down": an alias without a name tells nothing.
    if iface.is_empty() {
        return None;
    }
    match state.strip_prefix(" link is ")?.trim_end() {
        "up" => Some(Event::NetLinkUp { iface }),
        "down" => Some(Event::NetLinkDown { iface }),
        _ => None,
    }
}

// ---------------------------------------------------------------- pppd

fn pppd(msg: &str) -> Option<Event<'_>> {
    let m = msg.trim_end();
    if m.starts_with("local  IP address ") || m.starts_with("local IP address ") {
        return Some(Event::PppUp { iface: None });
    }
    if m == "PAP authentication succeeded" || m == "CHAP authentication succeeded" {
        return Some(Event::PppUp { iface: None });
    }
    let reason = if m == "Connection terminated." {
        None
    } else if m == "Modem hangup" {
        Some("modem_hangup")
    } else if m.starts_with("LCP terminated by peer") {
        Some("peer_terminated")
    } else if m.starts_with("No response to ") && m.ends_with(" echo-requests") {
        Some("echo_timeout")
    } else {
        return None;
    };
    Some(Event::PppDown { iface: None, reason })
}

// ---------------------------------------------------------------- procd

/// `Instance https-dns-proxy::instance1 s in a crash loop 969 crashes, 284
/// seconds since last crash`; `- init -` when procd logs its start through
/// syslog rather than the kernel log.
fn procd(msg: &str) -> Option<Event<'_>> {
    if msg.trim_end() == "- init -" {
        return Some(Event::SysBoot);
    }
    if msg.trim_end() == "- shutdown -" {
        return Some(Event::SysShutdown);
    }
    let rest = msg.strip_prefix("Instance ")?;
    let (instance, tail) = rest.split_once(' ')?;
    if !tail.starts_with("s in a crash loop") {
        return None;
    }
    let service = instance.split_str("::").map_or(instance, |(s, _)| s);
    Some(Event::SysCrashLoop { service })
}

// ---------------------------------------------------------------- LuCI

/// `failed login on / for root from 192.168.1.2` and `accepted login on ...`
/// (the client address is `?` when uhttpd did not pass one).
fn luci(msg: &str) -> Option<Event<'_>> {
    let (ok, rest) = if let Some(r) = msg.strip_prefix("failed login on ") {
        (false, r)
    } else {
        (true, msg.strip_prefix("accepted login on ")?)
    };
    let (_, rest) = rest.split_str(" for ")?;
    let (user, addr) = match rest.rsplit_str(" from ") {
        Some((u, a)) => (u, parse_ip(a.trim_end())),
        None => (rest.trim_end(), None),
    };
    let user = Some(user).filter(|u| !u.is_empty());
    Some(if ok { Event::WebLoginOk { user, src_ip: addr } } else { Event::WebLoginFailed { user, src_ip: addr } })
}

/// uhttpd prefixes the Lua/ucode log level: `[info] luci: ...`.
fn bracketed_level(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix('[')?;
    let (level, rest) = rest.split_str("] ")?;
    (level.len() <= 8 && level.bytes().all(|c| c.is_ascii_alphabetic())).then_some(rest)
}

// ---------------------------------------------------------------- SSH
//
// Both servers print the client's name as the client sent it: spaces,
// `from` and addresses included. Wherever a user name comes before the
// address, the address is read from the end of the line (or from before a
// fixed server-written suffix), so that a name like `x from 192.0.2.9 port
// 22` cannot put another address into the event.

/// Where a client came from, as a line names it: an address (IPv4-mapped
/// IPv6 written as IPv4) or a host name, and the port when logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Peer<'a> {
    ip: Option<IpAddr>,
    host: Option<&'a str>,
    port: Option<u16>,
}

impl<'a> Peer<'a> {
    /// An address or a host name, alone.
    fn parse(s: &'a str) -> Option<Self> {
        if let Some(ip) = parse_ip(s) {
            return Some(Peer { ip: Some(unmap(ip)), host: None, port: None });
        }
        is_hostname(s).then_some(Peer { ip: None, host: Some(s), port: None })
    }

    fn with_port(self, port: Option<u16>) -> Self {
        Peer { port, ..self }
    }
}

/// `::ffff:192.0.2.1` → `192.0.2.1`: the same client as the IPv4 lines of a
/// dual-stack socket name.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A DNS name where an address would be (`UseDNS yes`, PAM's `rhost=`):
/// letters, digits, `-`, `_` and at least one dot, not only digits (that
/// would be a bad address), no leading or trailing dot or dash. The dot
/// keeps user names and words (`root`, `peer`) from passing for hosts.
fn is_hostname(s: &str) -> bool {
    let b = s.as_bytes();
    let edge_ok = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    (3..=253).contains(&b.len())
        && edge_ok(b.first())
        && edge_ok(b.last())
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && b.contains(&b'.')
        && b.iter().any(u8::is_ascii_alphabetic)
}

/// `... ADDR[ port N][ ssh2][ [preauth]]`, read from the end: the address is
/// the last word before those. Returns what comes before the address,
/// without the space.
fn peer_at_end(s: &str) -> Option<(&str, Peer<'_>)> {
    let s = s.trim_end();
    let s = s.strip_suffix("[preauth]").map_or(s, str::trim_end);
    let s = s.strip_suffix(" ssh2").or_else(|| s.strip_suffix(" ssh1")).unwrap_or(s);
    let (s, port) = match s.rsplit_str(" port ") {
        Some((head, p)) if parse_u16(p).is_some() => (head, parse_u16(p)),
        _ => (s, None),
    };
    let (before, word) = s.rsplit_once(' ').unwrap_or(("", s));
    Some((before, Peer::parse(word)?.with_port(port)))
}

/// `ADDR[ port N]` at the start of `s` (or `ADDR:` before a reason);
/// returns the rest after it.
fn peer_at_start(s: &str) -> Option<(Peer<'_>, &str)> {
    let mut end = s.bytes().position(|c| c == b' ').unwrap_or(s.len());
    if end > 0 && s.as_bytes()[end - 1] == b':' {
        end -= 1;
    }
    let mut peer = Peer::parse(&s[..end])?;
    let mut rest = &s[end..];
    if let Some(r) = rest.strip_prefix(" port ") {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(p) = parse_u16(&r[..n]) {
            peer.port = Some(p);
            rest = &r[n..];
        }
    }
    Some((peer, rest))
}

/// `NAME from ADDR[ port N][ ssh2][: info]`, where NAME is what the client
/// sent. Without the info the line ends with the address; with it (`: RSA
/// SHA256:...`, written by the server) the address ends at the last ` ssh2: `.
fn user_from(r: &str) -> Option<(&str, Peer<'_>)> {
    if let Some((before, peer)) = peer_at_end(r) {
        if let Some(user) = before.strip_suffix(" from") {
            return Some((user, peer));
        }
    }
    let i = r.rfind_str(" ssh2: ").or_else(|| r.rfind_str(" ssh1: "))?;
    let (before, peer) = peer_at_end(&r[..i + 5])?;
    Some((before.strip_suffix(" from")?, peer))
}

/// `invalid user ` / `authenticating user ` after the verb of a closing
/// line: `Some(invalid)` and the rest, or `None` for a line without a user.
fn which_user(r: &str) -> (Option<bool>, &str) {
    if let Some(r) = r.strip_prefix("invalid user ") {
        (Some(true), r)
    } else if let Some(r) = r.strip_prefix("authenticating user ") {
        (Some(false), r)
    } else {
        (None, r)
    }
}

/// `s` without `prefix`, the prefix's first letter in either case (`Invalid
/// user` and `invalid user`; dropbear's old lower-case messages).
fn after_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn probe<'a>(p: Peer<'a>, what: &'static str) -> Option<Event<'a>> {
    Some(Event::SshProbe { src_ip: p.ip, src_host: p.host, src_port: p.port, what })
}

fn auth_failed<'a>(p: Peer<'a>, user: Option<&'a str>) -> Option<Event<'a>> {
    Some(Event::SshAuthFailed { src_ip: p.ip, src_host: p.host, src_port: p.port, user })
}

fn invalid_user<'a>(p: Peer<'a>, user: Option<&'a str>) -> Option<Event<'a>> {
    Some(Event::SshInvalidUser { src_ip: p.ip, src_host: p.host, src_port: p.port, user })
}

fn max_tries<'a>(p: Peer<'a>, user: Option<&'a str>, fails: Option<u32>) -> Option<Event<'a>> {
    Some(Event::SshMaxTries { src_ip: p.ip, src_host: p.host, src_port: p.port, user, fails })
}

fn login_ok<'a>(p: Peer<'a>, user: Option<&'a str>) -> Option<Event<'a>> {
    Some(Event::SshLoginOk { src_ip: p.ip, src_host: p.host, src_port: p.port, user })
}

fn preauth_closed<'a>(p: Peer<'a>, user: Option<&'a str>, invalid: bool) -> Option<Event<'a>> {
    Some(Event::SshPreauthClosed { src_ip: p.ip, src_host: p.host, src_port: p.port, user, invalid })
}

fn dropbear(msg: &str) -> Option<Event<'_>> {
    let msg = without_journal_stamp(msg).trim_end();
    // Old dropbear logs its messages in lower case, newer ones capitalised.
    let after = |prefix: &str| after_ci(msg, prefix);
    if let Some(rest) = after("Child connection from ") {
        let p = addr_port(rest)?;
        return Some(Event::SshConnection { src_ip: p.ip?, src_port: p.port });
    }
    if let Some(rest) = after("Bad password attempt for '").or_else(|| after("Bad PAM password attempt for '")) {
        let (user, p) = quoted_user_from(rest)?;
        return auth_failed(p, Some(user));
    }
    if let Some(rest) = after("Login attempt for nonexistent user") {
        // Nothing, ` from ADDR:PORT`, ` 'NAME' from ADDR:PORT`.
        let (user, p) = match rest.strip_prefix(" '") {
            Some(r) => quoted_user_from(r).map_or((None, Peer::default()), |(u, p)| (Some(u), p)),
            None => (None, rest.strip_prefix(" from ").and_then(addr_port).unwrap_or_default()),
        };
        return invalid_user(p, user);
    }
    if let Some(rest) = after("Exit before auth") {
        return dropbear_exit_before_auth(rest);
    }
    for prefix in ["Password auth succeeded for '", "PAM password auth succeeded for '", "Pubkey auth succeeded for '"]
    {
        if let Some(rest) = after(prefix) {
            // `'root' from A`, `'root' with key md5 f8:13:.. from A`.
            let (left, addr) = rest.rsplit_str(" from ").unwrap_or((rest, ""));
            let user = left.rsplit_str("' with ").map_or_else(|| left.strip_suffix('\'').unwrap_or(left), |(u, _)| u);
            return login_ok(addr_port(addr).unwrap_or_default(), Some(user));
        }
    }
    if after("root login rejected").is_some() {
        return auth_failed(Peer::default(), Some("root"));
    }
    None
}

/// `Exit before auth` and the rest: ` from <ADDR:PORT>: ` (dropbear ≥
/// 2020.79) or nothing, then `(user 'NAME', N fails): ` when the client
/// named a user, then the reason; older builds end `Max auth tries reached
/// - user 'NAME' from ADDR:PORT`.
fn dropbear_exit_before_auth(rest: &str) -> Option<Event<'_>> {
    let (mut peer, rest) = match rest.strip_prefix(" from <").and_then(|r| r.split_once('>')) {
        Some((a, r)) => (addr_port(a).unwrap_or_default(), r),
        None => (Peer::default(), rest),
    };
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
    let (mut user, fails, reason) = match rest.strip_prefix("(user '") {
        Some(r) => {
            // The name may hold `', `: the first `', <digits> fail` ends it.
            let (u, n, r) = r.match_indices("', ").find_map(|(i, _)| {
                let tail = &r[i + 3..];
                let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
                let n: u32 = tail[..digits].parse().ok()?;
                tail[digits..].strip_prefix(" fail").map(|t| (&r[..i], n, t))
            })?;
            let reason = r.split_str("): ").map_or("", |(_, t)| t);
            (Some(u), Some(n), reason)
        }
        None => (None, None, rest),
    };
    if let Some(m) = reason.strip_prefix("Max auth tries reached") {
        if let Some(q) = m.strip_prefix(" - user '") {
            let (name, at_end) = match q.rsplit_str("' from ") {
                Some((n, a)) => (n, addr_port(a)),
                None => (q.strip_suffix('\'').unwrap_or(q), None),
            };
            if peer.ip.is_none() && peer.host.is_none() {
                peer = at_end.unwrap_or_default();
            }
            // dropbear writes `user 'is invalid'` when the user does not exist.
            user = user.or(Some(name).filter(|n| *n != "is invalid"));
        }
        return max_tries(peer, user, fails);
    }
    // Failures counted: what matters to the agents is how many, whoever ended it.
    if fails.is_some_and(|n| n > 0) {
        return max_tries(peer, user, fails);
    }
    if user.is_some() {
        return preauth_closed(peer, user, false);
    }
    let what = if reason.starts_with("Timeout") {
        "timeout"
    } else if reason.starts_with("No matching algo") {
        "kex"
    } else if reason.contains_str("version") || reason.contains_str("ident") || reason.contains_str("banner") {
        "bad_version"
    } else if [
        "Disconnect received",
        "Exited normally",
        "Remote closed",
        "Error reading",
        "Error writing",
        "Terminated",
    ]
    .iter()
    .any(|p| reason.starts_with(p))
    {
        "closed"
    } else {
        "fatal"
    };
    probe(peer, what)
}

/// After the opening quote: `NAME' from ADDR:PORT` (the last `' from `: the
/// name may contain one), or `NAME'` alone.
fn quoted_user_from(r: &str) -> Option<(&str, Peer<'_>)> {
    match r.rsplit_str("' from ") {
        Some((user, a)) => Some((user, addr_port(a).unwrap_or_default())),
        None => Some((r.strip_suffix('\'')?, Peer::default())),
    }
}

/// dropbear's `ADDR:PORT`: `192.0.2.1:22`, IPv6 without brackets
/// (`2001:db8::1:22`: dropbear always prints the port, so the last group is
/// it), `[2001:db8::1]:22`, or an address alone.
fn addr_port(s: &str) -> Option<Peer<'_>> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = cut(rest, b']')?;
        return Some(Peer::parse(a)?.with_port(p.strip_prefix(':').and_then(parse_u16)));
    }
    if let Some((a, p)) = s.rsplit_once(':') {
        if let (Some(port), Some(peer)) = (parse_u16(p), Peer::parse(a)) {
            return Some(peer.with_port(Some(port)));
        }
    }
    Peer::parse(s)
}

/// dropbear under systemd writes its own `[pid] Mmm dd hh:mm:ss ` in front
/// of the message (fail2ban gh-3597): cut it.
fn without_journal_stamp(msg: &str) -> &str {
    let Some((pid, r)) = msg.strip_prefix('[').and_then(|r| cut(r, b']')) else { return msg };
    let b = r.as_bytes();
    if pid.is_empty() || !pid.bytes().all(|c| c.is_ascii_digit()) || b.len() < 5 || b[0] != b' ' {
        return msg;
    }
    if !b[1..4].iter().all(u8::is_ascii_alphabetic) {
        return msg;
    }
    let skip = b[4..].iter().take_while(|c| c.is_ascii_digit() || matches!(c, b':' | b' ')).count();
    &r[4 + skip..]
}

fn openssh(msg: &str) -> Option<Event<'_>> {
    let m = msg.trim_end();
    // Versions differ in an `error: `, `fatal: ` or `error: PAM: ` in front.
    let m = m.strip_prefix("error: ").or_else(|| m.strip_prefix("fatal: ")).unwrap_or(m);
    let m = m.strip_prefix("PAM: ").unwrap_or(m);
    let preauth = m.ends_with("[preauth]");

    // Most frequent first: a brute force is mostly these.
    if let Some(r) = m.strip_prefix("Failed ") {
        // `Failed <method> for [invalid user ]NAME from ADDR port N ssh2[: info]`.
        let (_method, r) = cut(r, b' ')?;
        let r = r.strip_prefix("for ")?;
        if let Some(r) = r.strip_prefix("invalid user ") {
            let (user, p) = user_from(r)?;
            return invalid_user(p, Some(user));
        }
        // An existing user's name has no spaces; the info after it may.
        let (user, r) = r.split_str(" from ")?;
        return auth_failed(peer_at_start(r)?.0, Some(user));
    }
    if let Some(r) = after_ci(m, "Invalid user ").or_else(|| after_ci(m, "Illegal user ")) {
        let (before, p) = peer_at_end(r)?;
        // `Invalid user  from ...`: the name was empty.
        let user = before.strip_suffix(" from").or((before == "from").then_some(""))?;
        return invalid_user(p, Some(user));
    }
    if let Some(r) = m.strip_prefix("Connection closed by ").or_else(|| m.strip_prefix("Connection reset by ")) {
        return openssh_closed(r, preauth);
    }
    if let Some(r) = m.strip_prefix("Disconnected from ") {
        return openssh_closed(r, preauth);
    }
    if let Some(r) = m.strip_prefix("Received disconnect from ") {
        // `ADDR port N:11: text [preauth]`; older: `ADDR: 11: text`.
        let (p, rest) = peer_at_start(r)?;
        let rest = rest.strip_prefix(':')?.trim_start();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (code, text) = rest.split_at(digits);
        // 14: none of the client's methods was accepted; `Auth fail`: the client's own words.
        if code == "14" || text.contains_str("Auth fail") {
            return preauth_closed(p, None, false);
        }
        return match (preauth, code) {
            (true, "3") => probe(p, "kex"),
            (true, _) => probe(p, "closed"),
            (false, _) => None,
        };
    }
    if let Some(r) = m.strip_prefix("pam_") {
        // `pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=HOST[  user=NAME]`
        let (_module, r) = cut(r, b'(')?;
        let r = r.strip_prefix("sshd:auth):")?.trim_start().strip_prefix("authentication failure;")?;
        let (_, host) = r.split_str(" rhost=").unwrap_or(("", ""));
        let (host, tail) = cut(host, b' ').unwrap_or((host, ""));
        let user = tail.split_str("user=").map(|(_, u)| u.trim()).filter(|u| !u.is_empty());
        return auth_failed(Peer::parse(host).unwrap_or_default(), user);
    }
    if let Some(r) = m.strip_prefix("Accepted ") {
        let (_method, r) = cut(r, b' ')?;
        let (user, r) = r.strip_prefix("for ")?.split_str(" from ")?;
        return login_ok(peer_at_start(r)?.0, Some(user));
    }
    if let Some(r) = m.strip_prefix("Connection from ") {
        // `LogLevel VERBOSE`: `Connection from ADDR port N on ADDR port N[ rdomain ""]`.
        let (p, _) = peer_at_start(r)?;
        return Some(Event::SshConnection { src_ip: p.ip?, src_port: p.port });
    }
    if let Some(r) = m.strip_prefix("maximum authentication attempts exceeded for ") {
        let r = r.strip_prefix("invalid user ").unwrap_or(r);
        let (user, p) = user_from(r)?;
        return max_tries(p, Some(user), None);
    }
    if let Some(r) = m.strip_prefix("Disconnecting ") {
        // `Disconnecting invalid|authenticating user NAME ADDR port N: REASON [preauth]`.
        let r = r.strip_suffix("[preauth]").map_or(r, str::trim_end);
        let (Some(invalid), r) = which_user(r) else { return None };
        if let Some(r) = r.strip_suffix(": Too many authentication failures") {
            let (user, p) = peer_at_end(r)?;
            return max_tries(p, Some(user), None);
        }
        let (r, _) = r.split_str(": Change of username or service not allowed")?;
        let (user, p) = peer_at_end(r)?;
        return preauth_closed(p, Some(user), invalid);
    }
    if let Some(r) = m.strip_prefix("Disconnecting: Too many authentication failures") {
        // Old: no address.
        let r = r.strip_suffix("[preauth]").map_or(r, str::trim_end);
        return max_tries(Peer::default(), r.strip_prefix(" for "), None);
    }
    if let Some(r) = m.strip_prefix("Did not receive identification string from ") {
        let (_, p) = peer_at_end(r)?;
        return probe(p, "no_ident");
    }
    if let Some(r) = m.strip_prefix("kex_exchange_identification: ") {
        // No address: the agents tie it to the pid's `Connection from`, if logged.
        let what = if r.contains_str("invalid protocol identifier") {
            "bad_version"
        } else if r.starts_with("banner line") {
            "banner"
        } else {
            "no_ident"
        };
        return probe(Peer::default(), what);
    }
    if let Some(r) = m.strip_prefix("banner exchange: Connection from ") {
        return probe(peer_at_start(r)?.0, "banner");
    }
    if let Some(r) = m.strip_prefix("Unable to negotiate with ") {
        // The client's offer follows; the address comes first.
        return probe(peer_at_start(r)?.0, "kex");
    }
    if m.starts_with("Unable to negotiate a ") || m.starts_with("no matching ") {
        return probe(Peer::default(), "kex");
    }
    if let Some(r) = m.strip_prefix("Bad protocol version identification ") {
        // The quoted identification is the client's: the address is at the end.
        return probe(peer_at_end(r).map(|(_, p)| p).unwrap_or_default(), "bad_version");
    }
    if let Some(r) = m.strip_prefix("ssh_dispatch_run_fatal: Connection from ") {
        // `[invalid user NAME |authenticating user NAME |user NAME ]ADDR port N: REASON`.
        let (who, r) = which_user(r);
        if r.starts_with("user ") || (who.is_none() && !preauth) {
            return None; // after a login: a session's end, not a probe
        }
        let r = match who {
            // The reason is the server's text: the last ` port ` is the address's.
            Some(_) => {
                let (head, _) = r.rsplit_str(" port ")?;
                &r[head.rfind(' ').map_or(0, |i| i + 1)..]
            }
            None => r,
        };
        return probe(peer_at_start(r)?.0, "fatal");
    }
    if let Some(r) = m.strip_prefix("Timeout before authentication for ") {
        let r = r.strip_prefix("connection from ").unwrap_or(r);
        return probe(peer_at_start(r)?.0, "timeout");
    }
    if let Some(r) = m.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        return auth_failed(peer_at_end(r)?.1, Some("root"));
    }
    if let Some(r) = m.strip_prefix("User not known to the underlying authentication module for ") {
        let r = r.strip_prefix("illegal user ").unwrap_or(r);
        let (user, p) = pam_user_host(r)?;
        return invalid_user(p, Some(user));
    }
    if let Some(r) = m.strip_prefix("User ") {
        // `User NAME from HOST not allowed because ...` (an existing user: no spaces).
        let (left, _) = r.split_str(" not allowed because ")?;
        let (user, p) = match left.split_str(" from ") {
            Some((u, a)) => (u, Peer::parse(a)?),
            None => (left, Peer::default()),
        };
        return auth_failed(p, Some(user));
    }
    if let Some(r) = after_ci(m, "Authentication ") {
        // PAM: `Authentication failure|error|failed for [illegal user ]NAME from HOST[ via ADDR]`.
        let r = ["failure for ", "error for ", "failed for "].iter().find_map(|p| r.strip_prefix(p))?;
        if let Some(r) = r.strip_prefix("illegal user ") {
            let (user, p) = pam_user_host(r)?;
            return invalid_user(p, Some(user));
        }
        let (user, p) = pam_user_host(r)?;
        return auth_failed(p, Some(user));
    }
    if let Some(r) = m.strip_prefix("refused connect from ") {
        // tcp_wrappers: `refused connect from NAME (ADDR)`.
        let a = r.rsplit_str(" (").and_then(|(_, a)| a.strip_suffix(')')).unwrap_or(r);
        return probe(Peer::parse(a)?, "refused");
    }
    if m.starts_with("Magic value check failed") {
        return probe(peer_at_end(m)?.1, "fatal");
    }
    if preauth && m.starts_with("Read from socket failed: ") {
        return probe(Peer::default(), "closed");
    }
    None
}

/// `NAME from HOST[ via ADDR]` of PAM's messages: the host is the last word
/// (after ` via ` is cut), the name all before ` from `.
fn pam_user_host(r: &str) -> Option<(&str, Peer<'_>)> {
    let r = r.trim_end();
    let r = match r.rsplit_str(" via ") {
        Some((head, via)) if !via.contains(' ') => head,
        _ => r,
    };
    let (before, p) = peer_at_end(r)?;
    Some((before.strip_suffix(" from").unwrap_or(before), p))
}

/// After `Connection closed by `, `Connection reset by ` or `Disconnected
/// from `: `[invalid user NAME |authenticating user NAME |user NAME ]ADDR port N[ [preauth]]`.
fn openssh_closed(r: &str, preauth: bool) -> Option<Event<'_>> {
    let (who, r) = which_user(r);
    if r.starts_with("user ") && who.is_none() {
        return None; // `Disconnected from user root ...`: the end of a session
    }
    let (before, p) = peer_at_end(r)?;
    match who {
        Some(invalid) => preauth_closed(p, Some(before), invalid),
        None if preauth && before.is_empty() => probe(p, "closed"),
        None => None,
    }
}

// ---------------------------------------------------------------- tokens

/// An IPv4 address in dotted-quad form, parsed directly (std's parser is
/// general and several times slower), or anything else `IpAddr` parses.
/// Redacted addresses (`xxx.xxx.xx.xx`) give `None`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    match parse_ipv4(s) {
        Some(ip) => Some(ip),
        None if s.len() > 2 && s.bytes().any(|c| c == b':') => s.parse().ok(),
        None => None,
    }
}

/// A dotted-quad IPv4 address.
fn parse_ipv4(s: &str) -> Option<IpAddr> {
    // One pass, as std's parser accepts them: four groups of one to three
    // digits, no leading zero, at most 255 (a firewall line has two).
    let b = s.as_bytes();
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let (mut k, mut n, mut digits) = (0usize, 0u32, 0u32);
    for &c in b {
        if c == b'.' {
            if digits == 0 || k == 3 {
                return None;
            }
            octets[k] = n as u8;
            (k, n, digits) = (k + 1, 0, 0);
        } else {
            let d = u32::from(c.wrapping_sub(b'0'));
            if d > 9 || (digits == 1 && n == 0) {
                return None;
            }
            n = n * 10 + d;
            digits += 1;
            if n > 255 {
                return None;
            }
        }
    }
    if digits == 0 || k != 3 {
        return None;
    }
    octets[3] = n as u8;
    Some(IpAddr::from(octets))
}

/// A port: 1 to 5 digits, at most 65535.
fn parse_u16(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    let mut n = 0u32;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    u16::try_from(n).ok()
}

/// Splits at the first `c`, an ASCII byte, so both halves are on char
/// boundaries. A plain loop: cheaper than `split_once` for the short
/// distances here, which costs a `memchr` call.
fn cut(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == c)?;
    Some((&s[..i], &s[i + 1..]))
}

fn first_word(s: &str) -> &str {
    s.split(' ').next().unwrap_or(s)
}

/// A MAC address as logged, partial redactions included (`xx:xx:xx:xx:xx:xx`,
/// `58:40:4e:ipadAir2`): letters, digits and at least two `:` or `-`.
fn is_mac(s: &str) -> bool {
    if !(5..=40).contains(&s.len()) {
        return false;
    }
    let mut seps = 0;
    for c in s.bytes() {
        if c == b':' || c == b'-' {
            seps += 1;
        } else if !c.is_ascii_alphanumeric() {
            return false;
        }
    }
    seps >= 2
}

/// A network interface name: `eth0`, `wlan1-1`, `phy0-ap0`, `br-lan`, `eth0.2`, `pppoe-wan`.
fn is_ifname(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line, Context};

    fn check(line: &str) -> Option<String> {
        let r = parse_line(line, Context::in_year(2024)).unwrap();
        classify(&r).map(|e| {
            let mut s = String::new();
            e.write_json(&mut s);
            s
        })
    }

    fn cases(list: &[(&str, Option<&str>)]) {
        for (line, want) in list {
            assert_eq!(check(line).as_deref(), *want, "{line}");
        }
    }

    #[test]
    fn dropbear_lines() {
        cases(&[
            ("Thu Dec  5 17:43:59 2024 authpriv.info dropbear[12392]: Child connection from 125.70.52.249:61426",
             Some(r#"{"kind":"ssh.connection","src_ip":"125.70.52.249","src_port":61426}"#)),
            ("Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Login attempt for nonexistent user",
             Some(r#"{"kind":"ssh.invalid_user"}"#)),
            ("Feb  5 03:13:39 openwrt user.warn dropbear[10221]: bad password attempt for 'root' from 192.168.1.1:51570",
             Some(r#"{"kind":"ssh.auth_failed","src_ip":"192.168.1.1","src_port":51570,"user":"root"}"#)),
            ("Mon Sep 15 15:57:16 2025 authpriv.info dropbear[6862]: Exit before auth from <192.168.9.204:59200>: (user 'root', 3 fails): Max auth tries reached - user 'root'",
             Some(r#"{"kind":"ssh.max_tries","src_ip":"192.168.9.204","src_port":59200,"user":"root","fails":3}"#)),
            ("Mon Sep 15 14:54:39 2025 authpriv.notice dropbear[30519]: Password auth succeeded for 'root' from 192.168.9.204:55200",
             Some(r#"{"kind":"ssh.login_ok","src_ip":"192.168.9.204","src_port":55200,"user":"root"}"#)),
            ("Thu May 15 02:56:16 2025 authpriv.info dropbear[3861]: Not backgrounding", None),
        ]);
    }

    #[test]
    fn openssh_lines() {
        cases(&[
            (
                "<38>Dec  5 17:43:01 gw sshd[9]: Failed password for invalid user admin from 2001:db8::7 port 41 ssh2",
                Some(r#"{"kind":"ssh.invalid_user","src_ip":"2001:db8::7","src_port":41,"user":"admin"}"#),
            ),
            (
                "<38>Dec  5 17:43:01 gw sshd[9]: Accepted publickey for root from 10.0.0.2 port 5000 ssh2",
                Some(r#"{"kind":"ssh.login_ok","src_ip":"10.0.0.2","src_port":5000,"user":"root"}"#),
            ),
        ]);
    }

    #[test]
    fn openssh_addresses_in_every_shape() {
        cases(&[
            // IPv6 with a port, `::ffff:`-mapped IPv4, a host name.
            (
                "sshd[1]: Failed password for root from 2001:db8::1 port 22 ssh2",
                Some(r#"{"kind":"ssh.auth_failed","src_ip":"2001:db8::1","src_port":22,"user":"root"}"#),
            ),
            (
                "sshd[1]: Invalid user pi from ::ffff:192.0.2.5 port 7",
                Some(r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":7,"user":"pi"}"#),
            ),
            (
                "sshd[1]: error: PAM: Authentication failure for root from gw.example.net",
                Some(r#"{"kind":"ssh.auth_failed","src_host":"gw.example.net","user":"root"}"#),
            ),
            // A bare `::1` is an address, not a host; `localhost` names neither.
            (
                "sshd[1]: Did not receive identification string from ::1",
                Some(r#"{"kind":"ssh.probe","src_ip":"::1","what":"no_ident"}"#),
            ),
            ("sshd[1]: Did not receive identification string from localhost", None),
        ]);
    }

    #[test]
    fn openssh_user_names_are_taken_as_printed() {
        cases(&[
            // Empty: OpenSSH prints two spaces.
            (
                "sshd[1]: Invalid user  from 192.0.2.5 port 7",
                Some(r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":7,"user":""}"#),
            ),
            (
                "sshd[1]: Connection closed by invalid user  192.0.2.5 port 7 [preauth]",
                Some(r#"{"kind":"ssh.preauth_closed","src_ip":"192.0.2.5","src_port":7,"user":"","invalid":true}"#),
            ),
            // Spaces are part of the name; the address is the last one.
            (
                "sshd[1]: Invalid user a b from 192.0.2.5 port 7",
                Some(r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":7,"user":"a b"}"#),
            ),
            // A name crafted to look like an address cannot replace the real one.
            (
                "sshd[1]: Failed password for invalid user x from 198.51.100.9 port 1 ssh2 from 192.0.2.5 port 7 ssh2",
                Some(
                    r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":7,"user":"x from 198.51.100.9 port 1 ssh2"}"#,
                ),
            ),
            // Password logins carry no info after `ssh2`, so `ssh2: ...` is the
            // client's name (fail2ban reads this line the other way).
            (
                "sshd[1]: Failed password for invalid user x from 198.51.100.9 port 1 ssh2: from 192.0.2.5 port 7 ssh2",
                Some(
                    r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":7,"user":"x from 198.51.100.9 port 1 ssh2:"}"#,
                ),
            ),
            // A publickey failure's info is the server's: the address is before it.
            (
                "sshd[1]: Failed publickey for invalid user x from 192.0.2.5 port 7 ssh2: RSA SHA256:abc",
                Some(r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":7,"user":"x"}"#),
            ),
            (
                "sshd[1]: Connection closed by authenticating user a 198.51.100.9 port 1 192.0.2.5 port 7 [preauth]",
                Some(
                    r#"{"kind":"ssh.preauth_closed","src_ip":"192.0.2.5","src_port":7,"user":"a 198.51.100.9 port 1","invalid":false}"#,
                ),
            ),
        ]);
    }

    #[test]
    fn openssh_session_ends_are_not_failures() {
        cases(&[
            ("sshd[1]: Connection closed by 192.0.2.5 port 7", None),
            (
                "sshd[1]: Connection closed by 192.0.2.5 port 7 [preauth]",
                Some(r#"{"kind":"ssh.probe","src_ip":"192.0.2.5","src_port":7,"what":"closed"}"#),
            ),
            ("sshd[1]: Disconnected from user root 192.0.2.5 port 7", None),
            ("sshd[1]: Received disconnect from 192.0.2.5 port 7:11: disconnected by user", None),
            (
                "sshd-session[1]: Received disconnect from 192.0.2.5 port 7:11: Auth fail [preauth]",
                Some(r#"{"kind":"ssh.preauth_closed","src_ip":"192.0.2.5","src_port":7,"invalid":false}"#),
            ),
            ("sshd[1]: ssh_dispatch_run_fatal: Connection from user root 192.0.2.5 port 7: Broken pipe", None),
        ]);
    }

    #[test]
    fn dropbear_addresses_and_exits() {
        cases(&[
            // IPv6 without brackets: the last group is the port.
            ("authpriv.info dropbear[1]: Child connection from 2001:db8::5:2222",
             Some(r#"{"kind":"ssh.connection","src_ip":"2001:db8::5","src_port":2222}"#)),
            ("authpriv.warn dropbear[1]: login attempt for nonexistent user from ::ffff:192.0.2.5:60495",
             Some(r#"{"kind":"ssh.invalid_user","src_ip":"192.0.2.5","src_port":60495}"#)),
            ("authpriv.warn dropbear[1]: Login attempt for nonexistent user 'a b' from [2001:db8::5]:22",
             Some(r#"{"kind":"ssh.invalid_user","src_ip":"2001:db8::5","src_port":22,"user":"a b"}"#)),
            // The old form's address is at its end.
            ("authpriv.info dropbear[1]: Exit before auth (user 'root', 10 fails): Max auth tries reached - user 'root' from 192.0.2.5:41",
             Some(r#"{"kind":"ssh.max_tries","src_ip":"192.0.2.5","src_port":41,"user":"root","fails":10}"#)),
            ("authpriv.info dropbear[1]: Exit before auth from <192.0.2.5:41>: Timeout before auth",
             Some(r#"{"kind":"ssh.probe","src_ip":"192.0.2.5","src_port":41,"what":"timeout"}"#)),
            // A name holding `', ` does not end early.
            ("authpriv.info dropbear[1]: Exit before auth from <192.0.2.5:41>: (user 'a', b', 2 fails): Disconnect received",
             Some(r#"{"kind":"ssh.max_tries","src_ip":"192.0.2.5","src_port":41,"user":"a', b","fails":2}"#)),
            ("authpriv.info dropbear[1]: Exit (root) from <192.0.2.5:41>: Disconnect received", None),
            ("authpriv.info dropbear[1]: [12] Jul 10 23:53:52 Bad password attempt for 'root' from 192.0.2.5:41",
             Some(r#"{"kind":"ssh.auth_failed","src_ip":"192.0.2.5","src_port":41,"user":"root"}"#)),
        ]);
    }

    #[test]
    fn hostapd_auth_failures() {
        cases(&[
            ("Sat Mar  3 09:05:26 2018 daemon.notice hostapd: wlan0-1: STA 28:ed:6a:a4:de:5c IEEE 802.11: did not acknowledge authentication response",
             Some(r#"{"kind":"wifi.auth_failed","iface":"wlan0-1","mac":"28:ed:6a:a4:de:5c","reason":"no_ack"}"#)),
            ("Wed May 15 12:02:51 2024 daemon.info hostapd: phy0-ap0: AP-STA-POSSIBLE-PSK-MISMATCH 16:7a:2f:f7:7f:0d",
             Some(r#"{"kind":"wifi.auth_failed","iface":"phy0-ap0","mac":"16:7a:2f:f7:7f:0d","reason":"psk_mismatch"}"#)),
            ("daemon.info hostapd: wlan0: STA 16:7a:2f:f7:7f:0d WPA: pairwise key handshake failed (RSN)",
             Some(r#"{"kind":"wifi.auth_failed","iface":"wlan0","mac":"16:7a:2f:f7:7f:0d","reason":"handshake_failed"}"#)),
            ("daemon.info hostapd: wlan0: STA 16:7a:2f:f7:7f:0d WPA: 4-Way Handshake failed",
             Some(r#"{"kind":"wifi.auth_failed","iface":"wlan0","mac":"16:7a:2f:f7:7f:0d","reason":"handshake_failed"}"#)),
            ("daemon.debug hostapd: wlan0: STA 16:7a:2f:f7:7f:0d WPA: PTKSTART: Retry limit 4 reached",
             Some(r#"{"kind":"wifi.auth_failed","iface":"wlan0","mac":"16:7a:2f:f7:7f:0d","reason":"handshake_timeout"}"#)),
            ("daemon.info hostapd: wlan0: STA 16:7a:2f:f7:7f:0d IEEE 802.1X: authentication failed - EAP type: 0 (unknown)",
             Some(r#"{"kind":"wifi.auth_failed","iface":"wlan0","mac":"16:7a:2f:f7:7f:0d","reason":"eap_failed"}"#)),
            ("daemon.info hostapd: wlan0: STA 16:7a:2f:f7:7f:0d WPA: group key handshake failed (RSN) after 4 tries", None),
            ("daemon.info hostapd: wlan1: STA 64:fb:81:06:31:3a WPA: group key handshake completed (RSN)", None),
            ("Aug 21 04:32:18 WifiAP-01 hostapd: EAPOL-4WAY-HS-COMPLETED 06:fc:e4:4a:e5:05", None),
        ]);
    }

    #[test]
    fn hostapd_station_events() {
        cases(&[
            ("Sun Jun 10 12:35:05 2018 daemon.notice hostapd: wlan0: AP-STA-CONNECTED 44:80:eb:cb:e5:88 auth_alg=open",
             Some(r#"{"kind":"wifi.connected","iface":"wlan0","mac":"44:80:eb:cb:e5:88"}"#)),
            ("Tue Oct 17 12:20:53 2017 daemon.info hostapd: wlan1: STA a0:20:a6:0a:2d:c8 IEEE802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)",
             Some(r#"{"kind":"wifi.deauthenticated","iface":"wlan1","mac":"a0:20:a6:0a:2d:c8","reason":"inactivity"}"#)),
            ("Sat Nov 18 19:11:28 2017 daemon.info hostapd: wlan0: STA 58:40:4e:ipadAir2 IEEE 802.11: disassociated",
             Some(r#"{"kind":"wifi.disassociated","iface":"wlan0","mac":"58:40:4e:ipadAir2"}"#)),
            ("daemon.notice hostapd: handle_probe_req: send failed", None),
        ]);
    }

    #[test]
    fn firewall_lines() {
        cases(&[
            ("Nov 18 13:39:49 OpenWRT kernel: [10051.313745] DROP(src wan)IN=eth0 OUT= MAC=c2:56 SRC=205.205.205.205 DST=192.168.8.100 LEN=44 PROTO=TCP SPT=40952 DPT=23 WINDOW=64144",
             Some(r#"{"kind":"fw.packet","action":"drop","in_if":"eth0","src_ip":"205.205.205.205","dst_ip":"192.168.8.100","proto":"TCP","src_port":40952,"dst_port":23,"rule":"DROP(src wan)"}"#)),
            ("kern.warn kernel: [1.2] reject wan out: IN=br-lan OUT=eth1 SRC=2001:db8::1 DST=2001:db8::2 LEN=72 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0",
             Some(r#"{"kind":"fw.packet","action":"reject","in_if":"br-lan","out_if":"eth1","src_ip":"2001:db8::1","dst_ip":"2001:db8::2","proto":"ICMPv6","rule":"reject wan out"}"#)),
            ("kernel: DROPIN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.2 DST=10.0.0.1 PROTO=UDP SPT=1 DPT=2 ]",
             Some(r#"{"kind":"fw.packet","action":"drop","in_if":"eth0","src_ip":"10.0.0.1","dst_ip":"10.0.0.2","proto":"ICMP","rule":"DROP"}"#)),
            ("kernel: IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 PROTO=UDP SPT=1 DPT=2",
             Some(r#"{"kind":"fw.packet","action":"log","in_if":"eth0","src_ip":"10.0.0.1","dst_ip":"10.0.0.2","proto":"UDP","src_port":1,"dst_port":2,"rule":""}"#)),
            ("kernel: the LOGIN=x line is not a packet", None),
            // Found by mutating the samples: a multi-byte character inside a 4-byte key.
            ("kernel: IN=eth0 OUT= SRé=1 SRC=10.0.0.1", Some(r#"{"kind":"fw.packet","action":"log","in_if":"eth0","src_ip":"10.0.0.1","rule":""}"#)),
        ]);
    }

    #[test]
    fn system_lines() {
        cases(&[
            (
                "kern.notice kernel: [    0.000000] Linux version 5.15.137 (builder@buildhost) (gcc 12.3.0) #0 SMP",
                Some(r#"{"kind":"sys.boot"}"#),
            ),
            (
                "Mon Aug 31 00:02:24 2026 user.info kernel: [   20.945309] procd: - init -",
                Some(r#"{"kind":"sys.boot"}"#),
            ),
            ("Mon Aug 31 00:02:24 2026 user.info kernel: [   20.516825] procd: - ubus -", None),
            ("Fri May 22 03:58:17 2026 daemon.info procd: - shutdown -", Some(r#"{"kind":"sys.shutdown"}"#)),
            (
                "kern.emerg kernel: [ 123.4] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [kworker/0:1:42]",
                Some(
                    r#"{"kind":"sys.watchdog","detail":"watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [kworker/0:1:42]"}"#,
                ),
            ),
            (
                "kern.err kernel: [ 245.1] INFO: task jffs2_gcd_mtd5:581 blocked for more than 120 seconds.",
                Some(
                    r#"{"kind":"sys.watchdog","detail":"INFO: task jffs2_gcd_mtd5:581 blocked for more than 120 seconds."}"#,
                ),
            ),
            (
                "kern.err kernel: [ 1.0] rcu: INFO: rcu_sched self-detected stall on CPU",
                Some(r#"{"kind":"sys.watchdog","detail":"rcu: INFO: rcu_sched self-detected stall on CPU"}"#),
            ),
            ("kern.err kernel: [ 1.0] Out of memory: Kill process 4541 (v2ray) score 874 or sacrifice child", None),
            (
                "kern.err kernel: [ 1.0] Killed process 4541 (v2ray) total-vm:1kB",
                Some(r#"{"kind":"sys.oom_kill","process":"v2ray","pid":4541}"#),
            ),
            (
                "kern.warn kernel: [ 1.0] Memory cgroup out of memory: Killed process 77 (a b) total-vm:1kB",
                Some(r#"{"kind":"sys.oom_kill","process":"a b","pid":77}"#),
            ),
        ]);
    }

    #[test]
    fn link_lines_of_common_drivers() {
        cases(&[
            ("kern.info kernel: [ 1.0] ag71xx 19000000.eth eth0: link up (1000Mbps/Full duplex)", Some(r#"{"kind":"net.link_up","iface":"eth0"}"#)),
            ("kern.info kernel: [ 1.0] eth0: link down", Some(r#"{"kind":"net.link_down","iface":"eth0"}"#)),
            ("kern.info kernel: [ 1.0] r8169 0000:01:00.0 eth1: Link is Down", Some(r#"{"kind":"net.link_down","iface":"eth1"}"#)),
            ("kern.info kernel: [ 1.0] mtk_soc_eth 1e100000.ethernet lan1: Link is Up - 1Gbps/Full - flow control rx/tx", Some(r#"{"kind":"net.link_up","iface":"lan1"}"#)),
            ("kern.info kernel: [ 1.0] br-lan: port 1(eth1) entered disabled state", None),
        ]);
    }

    #[test]
    fn dhcp_lines() {
        cases(&[
            (
                "daemon.info dnsmasq-dhcp[1]: 1817236 DHCPDISCOVER(br-lan) 00:90:4c:c5:12:38 no address available",
                Some(r#"{"kind":"dhcp.no_address","iface":"br-lan","mac":"00:90:4c:c5:12:38"}"#),
            ),
            ("daemon.info dnsmasq-dhcp[1]: DHCPDISCOVER(br-lan) 00:90:4c:c5:12:38 ", None),
            (
                "daemon.warn dnsmasq-dhcp: no address range available for DHCP request via br-lan",
                Some(r#"{"kind":"dhcp.no_address","iface":"br-lan"}"#),
            ),
            (
                "daemon.warn dnsmasq-dhcp: no address range available for DHCP request with subnet selector 10.0.0.0",
                None,
            ),
            (
                "daemon.info dnsmasq-dhcp[1]: DHCPNAK(br-lan) xxx.xxx.xxx.xxx xx:xx:xx:xx:xx:xx lease not found",
                Some(r#"{"kind":"dhcp.nak","iface":"br-lan","mac":"xx:xx:xx:xx:xx:xx"}"#),
            ),
        ]);
    }

    #[test]
    fn ppp_and_web_lines() {
        cases(&[
            ("daemon.notice pppd[639]: local  IP address 222.154.81.8", Some(r#"{"kind":"ppp.up"}"#)),
            (
                "daemon.notice pppd[639]: No response to 5 echo-requests",
                Some(r#"{"kind":"ppp.down","reason":"echo_timeout"}"#),
            ),
            ("daemon.notice pppd[639]: Connection terminated.", Some(r#"{"kind":"ppp.down"}"#)),
            (
                "daemon.err uhttpd[1]: [info] luci: failed login on / for root from 192.168.9.204",
                Some(r#"{"kind":"web.login_failed","user":"root","src_ip":"192.168.9.204"}"#),
            ),
            (
                "daemon.err uhttpd[1]: luci: accepted login on / for root from ?",
                Some(r#"{"kind":"web.login_ok","user":"root"}"#),
            ),
            (
                "user.info : luci: failed login on / for root from 192.168.0.2",
                Some(r#"{"kind":"web.login_failed","user":"root","src_ip":"192.168.0.2"}"#),
            ),
        ]);
    }

    #[test]
    fn word_search_agrees_with_std() {
        let hays = [
            "",
            "x",
            " port ",
            "Failed password for root from 192.0.2.1 port 22 ssh2",
            "for 'a' from b' from c' from 1.2.3.4:5",
            "port port  port ",
            "' from ",
            "ssh2: ssh2: x ssh2: ",
            "naïve ünïcode ' from 1.2.3.4 port 9",
            "  ",
            "a' from",
            "Connection closed by invalid user x port",
        ];
        let pats = [" port ", " from ", "' from ", " ssh2: ", "port", "' ", " ", "x", "ünï", " (", "): "];
        for h in hays {
            for p in pats {
                assert_eq!(h.find_str(p), h.find(p), "find {p:?} in {h:?}");
                assert_eq!(h.rfind_str(p), h.rfind(p), "rfind {p:?} in {h:?}");
                assert_eq!(h.split_str(p), h.split_once(p), "split {p:?} in {h:?}");
                assert_eq!(h.rsplit_str(p), h.rsplit_once(p), "rsplit {p:?} in {h:?}");
                assert_eq!(h.contains_str(p), h.contains(p));
            }
        }
    }

    #[test]
    fn ipv4_addresses_parse_as_std_parses_them() {
        for a in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0",
            "10.0.0.1",
            "01.2.3.4",
            "1.2.3.04",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "a.b.c.d",
            "1.2.3.-4",
            "1000.1.1.1",
            "1.2.3.4444",
            "",
            "1.2.3.255",
            "192.168.001.1",
            "0.00.0.0",
            "9.9.9.9",
        ] {
            assert_eq!(parse_ipv4(a), a.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::from), "{a:?}");
        }
    }

    #[test]
    fn tokens() {
        assert!(is_mac("aa:bb:cc:dd:ee:ff") && is_mac("xx:xx:xx:xx:xx:xx") && is_mac("58:40:4e:ipadAir2"));
        assert!(!is_mac("192.168.1.1") && !is_mac("no") && !is_mac("a:b"));
        assert_eq!(fw_action("IPT_dsl-Rej"), "reject");
        assert_eq!(fw_action("banIP/inbound/drop/country.v4"), "drop");
        assert_eq!(fw_action("ACCEPT(dest lan)"), "accept");
        assert_eq!(fw_action("custom"), "log");
        let v6 = |a: &str| Some(IpAddr::from(a.parse::<std::net::Ipv6Addr>().unwrap()));
        assert_eq!(addr_port("[2001:db8::1]:22").map(|p| (p.ip, p.port)), Some((v6("2001:db8::1"), Some(22))));
        assert_eq!(addr_port("2001:db8::1:22").map(|p| (p.ip, p.port)), Some((v6("2001:db8::1"), Some(22))));
        assert_eq!(addr_port("2001:db8::22").map(|p| (p.ip, p.port)), Some((v6("2001:db8::22"), None)));
        assert_eq!(
            addr_port("::ffff:192.0.2.7:60495").map(|p| (p.ip, p.port)),
            Some((Some(IpAddr::from([192, 0, 2, 7])), Some(60495)))
        );
        assert!(is_hostname("gw.example.net") && is_hostname("a-1.example"));
        assert!(
            !is_hostname("root") && !is_hostname("192.0.2.300") && !is_hostname("-x.example") && !is_hostname("x.")
        );
    }
}
