//! Network agent: firewall logs, DHCP, interfaces and links, PPP.
//!
//! - `net.port_scan`: one source hit `scan_ports` distinct destination ports
//!   within `scan_window`, counting the packets the firewall logged as
//!   dropped or rejected (accepted ones are traffic, not probes).
//! - `net.sweep`: one source hit `sweep_hosts` distinct destination
//!   addresses within `sweep_window`, same packets.
//! - `net.distributed_scan`: `scan_sources` distinct sources sent such
//!   packets to one interface within `scan_window`: a scan spread over many
//!   addresses (a botnet), each of which may stay under the per-source
//!   thresholds. A campaign against the router: one finding per interface
//!   while it lasts, counting its sources and ports, closed after
//!   `suppress` seconds without a dropped packet.
//! - `dhcp.pool_exhausted`: dnsmasq refused `dhcp_no_address` requests on
//!   one interface for lack of addresses within `dhcp_window` (one is
//!   already a client without an address: the default).
//! - `net.link_flapping`: one interface (netifd's `Interface 'wan'`) or link
//!   (`Network device 'eth0'`, the kernel's `Link is Down`) went from up to
//!   down `flap_downs` times within `flap_window`. A down is counted once
//!   however many lines report it (netifd and the kernel both do); a second
//!   down without an up between is the same one. Interfaces and devices are
//!   separate subjects even when named alike.
//! - `ppp.session_drops`: `ppp_drops` PPP sessions ended within
//!   `ppp_window` (pppd logs "LCP terminated by peer", "Modem hangup" and
//!   "Connection terminated" for one drop: counted once, like links).
//!   A line that names no PPP interface is counted for `ppp`.
//!
//! Distinct ports and hosts are estimated with [`Distinct`] bitmaps (two
//! half-windows). Findings are suppressed per subject for `suppress`.

use std::net::IpAddr;

use heapless::String as HString;
use opmas_proto::msg::{Finding, Subject};

use super::{
    finding, hash_ip, hash_str, mix, opt, short, Agent, AgentCounters, AgentSuppressor, BoundedMap, Burst, Clock,
    Distinct, EvidencePool, Meta, Tally, DHCP_POOL_EXHAUSTED, NET_DISTRIBUTED_SCAN, NET_LINK_FLAPPING, NET_PORT_SCAN,
    NET_SWEEP, PPP_SESSION_DROPS,
};
use crate::events::{Event, FwPacket};

pub use opmas_proto::agents::NetworkConfig;

/// The agent's name in findings and the heartbeat.
const AGENT: &str = "network";
/// Firewall sources tracked at once: the internet's background scanners
/// show up by the hundred a day; a flood from more addresses evicts the
/// ones not seen lately (about 280 bytes each).
pub const MAX_SCANNERS: usize = 512;
/// Interfaces and devices tracked for flapping: a router has tens.
pub const MAX_LINKS: usize = 32;
/// DHCP interfaces tracked: one pool per LAN, guest network, VLAN.
pub const MAX_DHCP_IFACES: usize = 16;
/// PPP interfaces tracked: one or two uplinks.
pub const MAX_PPP: usize = 8;
/// Largest allowed `flap_downs` and `ppp_drops`: each subject keeps this many latest times.
pub const MAX_LINK_EVENTS: usize = 32;
/// Largest allowed `dhcp_no_address`.
pub const MAX_DHCP_EVENTS: usize = 64;
/// Evidence lines waiting for a finding.
const EVIDENCE_SLOTS: usize = 64;
/// Bytes of an interface name kept (Linux allows 15; netifd names are short).
const IFACE_LEN: usize = 16;

/// One firewall source.
#[derive(Debug, Default)]
struct Scanner {
    /// Distinct destination ports.
    ports: Distinct,
    /// Distinct destination hosts.
    hosts: Distinct,
    /// The interface its first packet came in on.
    iface: HString<IFACE_LEN>,
}

/// Interfaces tracked for scans from many sources: the WAN, a VPN, a guest network.
const MAX_SCANNED_IFACES: usize = 8;

/// The sources probing one interface.
#[derive(Debug, Default)]
struct Scanned {
    /// Distinct sources.
    sources: Distinct,
}

/// One interface, device or PPP link.
#[derive(Debug, Default)]
struct Link {
    /// Up (true), down (false) or not known yet.
    up: Option<bool>,
    /// Its up → down changes.
    downs: Burst<MAX_LINK_EVENTS>,
}

/// One DHCP interface.
#[derive(Debug, Default)]
struct DhcpPool {
    /// Requests refused for lack of addresses.
    refused: Burst<MAX_DHCP_EVENTS>,
}

/// The network agent.
pub struct NetworkAgent {
    /// Thresholds and windows.
    cfg: NetworkConfig,
    /// `scan_ports` as a bit count of [`Distinct`].
    scan_bits: u16,
    /// `sweep_hosts` as a bit count of [`Distinct`].
    sweep_bits: u16,
    /// `scan_sources` as a bit count of [`Distinct`].
    sources_bits: u16,
    /// Interfaces by name, with the sources probing them.
    scanned: Box<BoundedMap<HString<IFACE_LEN>, Scanned, MAX_SCANNED_IFACES, { 2 * MAX_SCANNED_IFACES }>>,
    /// Line time for ticks.
    clock: Clock,
    /// Firewall sources by address.
    scanners: Box<BoundedMap<IpAddr, Scanner, MAX_SCANNERS, { 2 * MAX_SCANNERS }>>,
    /// Interfaces (true) and devices (false) by name.
    links: Box<BoundedMap<(bool, HString<IFACE_LEN>), Link, MAX_LINKS, { 2 * MAX_LINKS }>>,
    /// DHCP pools by interface.
    dhcp: Box<BoundedMap<HString<IFACE_LEN>, DhcpPool, MAX_DHCP_IFACES, { 2 * MAX_DHCP_IFACES }>>,
    /// PPP links by interface.
    ppp: Box<BoundedMap<HString<IFACE_LEN>, Link, MAX_PPP, { 2 * MAX_PPP }>>,
    /// Evidence lines of runs in progress.
    pool: Box<EvidencePool<EVIDENCE_SLOTS>>,
    /// Suppression windows.
    sup: AgentSuppressor,
    /// Events consumed.
    events: u64,
}

impl NetworkAgent {
    /// An agent with `cfg` (validated by the caller; out-of-range values
    /// make a detector never or always fire, never panic).
    pub fn new(cfg: NetworkConfig) -> Self {
        NetworkAgent {
            cfg,
            scan_bits: Distinct::bits_for(cfg.scan_ports),
            sources_bits: Distinct::bits_for(cfg.scan_sources),
            scanned: Box::default(),
            sweep_bits: Distinct::bits_for(cfg.sweep_hosts),
            clock: Clock::default(),
            scanners: Box::default(),
            links: Box::default(),
            dhcp: Box::default(),
            ppp: Box::default(),
            pool: Box::default(),
            sup: AgentSuppressor::new(cfg.suppress_s),
            events: 0,
        }
    }

    /// Counts `src` among the sources probing the packet's interface.
    fn many_sources(&mut self, p: &FwPacket<'_>, src: IpAddr, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let iface: HString<IFACE_LEN> = short(p.in_if.unwrap_or(""));
        let window_ms = u64::from(cfg.scan_window_s) * 1000;
        let stale = |s: &Scanned| now.saturating_sub(s.sources.last_ms()) > window_ms;
        let key = hash_str(&iface) ^ 0x7363_616e;
        let Some(s) = self.scanned.entry(iface.clone(), stale, Scanned::default) else { return };
        s.sources.insert(hash_ip(src), now, cfg.scan_window_s, &mut self.pool, line);
        // Unlike the per-source detectors, the count of sources is not reset
        // while the finding is open: it stays open only while at least half
        // as many sources as it took to open it are still at it, so that the
        // internet's background knocking does not carry a botnet's scan on
        // after the botnet stopped.
        if self.sup.is_open(&NET_DISTRIBUTED_SCAN, key, now) {
            if s.sources.bits() >= self.sources_bits / 2 {
                let items = [Some(hash_ip(src)), p.dst_port.map(|port| mix(u64::from(port)))];
                self.sup.note_items(&NET_DISTRIBUTED_SCAN, key, now, 1, items, line, out);
            }
        } else if s.sources.bits() >= self.sources_bits {
            let d = &s.sources;
            let secs = now.saturating_sub(d.first_ms()) / 1000;
            let sources = d.estimate();
            let on = if iface.is_empty() { String::new() } else { format!(" on {iface}") };
            let f = finding(
                AGENT,
                &NET_DISTRIBUTED_SCAN,
                Subject { iface: opt(&iface), ..Subject::default() },
                d.events(),
                d.first_ms(),
                now,
                format!("{sources} sources probed the router{on} in {secs} s ({} packets dropped)", d.events()),
                d.ev().lines(&self.pool, line),
            );
            self.sup.emit_tally(
                &NET_DISTRIBUTED_SCAN,
                key,
                now,
                f,
                Tally::new(["sources", "ports"], [sources, 1]),
                out,
            );
        }
    }

    /// A dropped or rejected packet from `src`.
    fn packet(&mut self, p: &FwPacket<'_>, src: IpAddr, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        self.many_sources(p, src, meta, out);
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let keep_ms = u64::from(cfg.scan_window_s.max(cfg.sweep_window_s)) * 1000;
        let stale = |s: &Scanner| now.saturating_sub(s.ports.last_ms().max(s.hosts.last_ms())) > keep_ms;
        let make = || Scanner { iface: short(p.in_if.unwrap_or("")), ..Scanner::default() };
        let Some(sc) = self.scanners.entry(src, stale, make) else { return };
        let key = hash_ip(src);
        let subject = |sc: &Scanner| Subject { src_ip: Some(src), iface: opt(&sc.iface), ..Subject::default() };

        if let Some(port) = p.dst_port {
            sc.ports.insert(mix(u64::from(port)), now, cfg.scan_window_s, &mut self.pool, line);
            if self.sup.note(&NET_PORT_SCAN, key, now, 1, line, out) {
                sc.ports.reset();
            } else if sc.ports.bits() >= self.scan_bits {
                let d = &sc.ports;
                let secs = now.saturating_sub(d.first_ms()) / 1000;
                let f = finding(
                    AGENT,
                    &NET_PORT_SCAN,
                    subject(sc),
                    d.events(),
                    d.first_ms(),
                    now,
                    format!("port scan from {src}: {} ports in {secs} s ({} packets)", d.estimate(), d.events()),
                    d.ev().lines(&self.pool, line),
                );
                self.sup.emit(&NET_PORT_SCAN, key, now, f, out);
                sc.ports.reset();
            }
        }

        if let Some(dst) = p.dst_ip {
            sc.hosts.insert(hash_ip(dst), now, cfg.sweep_window_s, &mut self.pool, line);
            if self.sup.note(&NET_SWEEP, key, now, 1, line, out) {
                sc.hosts.reset();
            } else if sc.hosts.bits() >= self.sweep_bits {
                let d = &sc.hosts;
                let secs = now.saturating_sub(d.first_ms()) / 1000;
                let f = finding(
                    AGENT,
                    &NET_SWEEP,
                    subject(sc),
                    d.events(),
                    d.first_ms(),
                    now,
                    format!("host sweep from {src}: {} hosts in {secs} s ({} packets)", d.estimate(), d.events()),
                    d.ev().lines(&self.pool, line),
                );
                self.sup.emit(&NET_SWEEP, key, now, f, out);
                sc.hosts.reset();
            }
        }
    }

    /// dnsmasq had no address for a client on `iface`.
    fn no_address(&mut self, iface: &str, mac: &str, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let window_ms = u64::from(cfg.dhcp_window_s) * 1000;
        let stale = |d: &DhcpPool| now.saturating_sub(d.refused.last_ms()) > window_ms;
        let Some(d) = self.dhcp.entry(short(iface), stale, DhcpPool::default) else { return };
        d.refused.push(now, 1, cfg.dhcp_window_s, &mut self.pool, line);
        let key = hash_str(iface);
        if self.sup.note(&DHCP_POOL_EXHAUSTED, key, now, 1, line, out) {
            d.refused.reset_run();
        } else if d.refused.hits(cfg.dhcp_no_address, cfg.dhcp_window_s, now) {
            let b = &d.refused;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let f = finding(
                AGENT,
                &DHCP_POOL_EXHAUSTED,
                Subject { iface: Some(iface.into()), service: Some("dnsmasq".into()), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!(
                    "DHCP pool on {iface} exhausted: {} requests refused in {secs} s, latest from {mac}",
                    b.count()
                ),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&DHCP_POOL_EXHAUSTED, key, now, f, out);
            d.refused.reset_run();
        }
    }

    /// An interface (`logical`) or device went up or down.
    fn link(&mut self, logical: bool, iface: &str, up: bool, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let window_ms = u64::from(cfg.flap_window_s) * 1000;
        let stale = |l: &Link| now.saturating_sub(l.downs.last_ms()) > window_ms;
        let Some(l) = self.links.entry((logical, short(iface)), stale, Link::default) else { return };
        // One down, however many lines report it.
        if l.up.replace(up) == Some(false) || up {
            return;
        }
        l.downs.push(now, 1, cfg.flap_window_s, &mut self.pool, line);
        let key = hash_str(iface).wrapping_add(u64::from(logical));
        if self.sup.note(&NET_LINK_FLAPPING, key, now, 1, line, out) {
            l.downs.reset_run();
        } else if l.downs.hits(cfg.flap_downs, cfg.flap_window_s, now) {
            let b = &l.downs;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let what = if logical { "interface" } else { "link" };
            let f = finding(
                AGENT,
                &NET_LINK_FLAPPING,
                Subject { iface: Some(iface.into()), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!("{what} {iface} went down {} times in {secs} s", b.count()),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&NET_LINK_FLAPPING, key, now, f, out);
            l.downs.reset_run();
        }
    }

    /// A PPP session on `iface` came up or ended.
    fn ppp(&mut self, iface: Option<&str>, up: bool, reason: Option<&str>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let name = iface.unwrap_or("ppp");
        let window_ms = u64::from(cfg.ppp_window_s) * 1000;
        let stale = |l: &Link| now.saturating_sub(l.downs.last_ms()) > window_ms;
        let Some(l) = self.ppp.entry(short(name), stale, Link::default) else { return };
        if l.up.replace(up) == Some(false) || up {
            return;
        }
        l.downs.push(now, 1, cfg.ppp_window_s, &mut self.pool, line);
        let key = hash_str(name);
        if self.sup.note(&PPP_SESSION_DROPS, key, now, 1, line, out) {
            l.downs.reset_run();
        } else if l.downs.hits(cfg.ppp_drops, cfg.ppp_window_s, now) {
            let b = &l.downs;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let why = reason.map(|r| format!(" (latest: {r})")).unwrap_or_default();
            let f = finding(
                AGENT,
                &PPP_SESSION_DROPS,
                Subject { iface: iface.map(str::to_owned), service: Some("pppd".into()), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!("PPP session on {name} dropped {} times in {secs} s{why}", b.count()),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&PPP_SESSION_DROPS, key, now, f, out);
            l.downs.reset_run();
        }
    }
}

impl Agent for NetworkAgent {
    fn name(&self) -> &'static str {
        AGENT
    }

    fn on_event(&mut self, event: &Event<'_>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        self.clock.observe(meta.now_ms);
        match *event {
            Event::FwPacket(ref p) => {
                self.events += 1;
                if let (Some(src), false) = (p.src_ip, p.action == "accept") {
                    self.packet(p, src, meta, out);
                }
            }
            Event::DhcpNoAddress { iface, mac } => {
                self.events += 1;
                self.no_address(iface, mac.unwrap_or("?"), meta, out);
            }
            Event::NetIfaceUp { iface } | Event::NetIfaceDown { iface } => {
                self.events += 1;
                self.link(true, iface, matches!(event, Event::NetIfaceUp { .. }), meta, out);
            }
            Event::NetLinkUp { iface } | Event::NetLinkDown { iface } => {
                self.events += 1;
                self.link(false, iface, matches!(event, Event::NetLinkUp { .. }), meta, out);
            }
            Event::PppUp { iface } => {
                self.events += 1;
                self.ppp(iface, true, None, meta, out);
            }
            Event::PppDown { iface, reason } => {
                self.events += 1;
                self.ppp(iface, false, reason, meta, out);
            }
            _ => {}
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        let now = self.clock.at_tick(now_ms);
        self.sup.expire(now, out);
    }

    fn counters(&self) -> AgentCounters {
        AgentCounters {
            events: self.events,
            findings: self.sup.emitted(),
            evicted: self.scanners.evicted()
                + self.links.evicted()
                + self.dhcp.evicted()
                + self.ppp.evicted()
                + self.sup.evicted(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real lines (firewall.log, network.log, dnsmasq's format) with
    //! addresses varied, through the parser and classifier; the 100k flood
    //! feeds events.

    use super::super::testing::{feed, kinds, line, news, t, tick_after};
    use super::*;
    use opmas_proto::msg::Stage;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An fw4 `reject wan in` line (firewall.log) from `src` to `dst`:`port`.
    fn fw(prefix: &str, src: IpAddr, dst: IpAddr, port: u16) -> String {
        format!("Thu Mar 26 00:00:12 2026 kern.warn kernel: [522600.718238] {prefix}: IN=eth1 OUT= MAC= SRC={src} DST={dst} LEN=40 TOS=0x00 PREC=0x00 TTL=234 ID=9806 PROTO=TCP SPT=46844 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0 MARK=0x1")
    }

    #[test]
    fn many_sources_probing_one_interface_are_one_campaign() {
        let me = ip("203.0.113.1");
        let src = |i: u32| IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
        // Few sources a minute (the internet's usual knocking): nothing.
        let mut agent = NetworkAgent::new(NetworkConfig::default());
        let mut out = Vec::new();
        for i in 0..40u32 {
            line(&mut agent, &fw("reject wan in", src(i), me, 23), t(u64::from(i)), &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
        // A botnet: a new source every second for two hours, a few ports each,
        // none a port scan on its own. One finding, updated, closed when it
        // stops, though the usual knocking goes on.
        let mut agent = NetworkAgent::new(NetworkConfig::default());
        let mut out = Vec::new();
        for i in 0..7_200u32 {
            let port = [22, 23, 80, 2323][(i % 4) as usize];
            line(&mut agent, &fw("reject wan in", src(i), me, port), t(u64::from(i)), &mut out);
        }
        for i in 0..1_200u32 {
            let at = t(7_200 + u64::from(i) * 5);
            line(&mut agent, &fw("reject wan in", src(100_000 + i), me, 23), at, &mut out);
        }
        out.extend(tick_after(&mut agent, t(7_200 + 6_000), 1_000));
        let closed = out.iter().position(|f| f.stage == Stage::Closed).expect("the scan ended");
        assert!(out[closed].last_ms < t(7_300), "it ended with the botnet: {:#?}", out[closed]);
        let news: Vec<&Finding> = news(&out);
        assert_eq!(news.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), vec!["net.distributed_scan"], "{news:#?}");
        assert_eq!((news[0].subject.iface.as_deref(), news[0].subject.src_ip), (Some("eth1"), None));
        assert!(news[0].summary.contains("sources probed the router on eth1"), "{}", news[0].summary);
        let last = out.last().unwrap();
        assert_eq!((last.kind.as_str(), last.stage), ("net.distributed_scan", Stage::Closed));
        assert!(last.summary.contains("4 ports") && last.summary.contains("about "), "{}", last.summary);
        assert!(out.iter().filter(|f| f.stage == Stage::Update).count() <= 120, "at most one update a minute");
    }

    #[test]
    fn many_ports_from_one_source_are_a_port_scan() {
        let (src, me) = (ip("78.128.114.130"), ip("203.0.113.1"));
        for (ports, want) in [(19u16, 0usize), (60, 1), (5000, 1)] {
            let mut agent = NetworkAgent::new(NetworkConfig::default());
            let mut out = Vec::new();
            for p in 0..ports {
                line(&mut agent, &fw("reject wan in", src, me, 1000 + p * 7), t(0) + u64::from(p) * 100, &mut out);
            }
            assert_eq!(news(&out).len(), want, "{ports} ports: {out:#?}");
            if let Some(f) = out.first() {
                assert_eq!(f.kind, "net.port_scan");
                assert_eq!(f.subject.src_ip, Some(src));
                assert_eq!(f.subject.iface.as_deref(), Some("eth1"));
                assert!((20..=23).contains(&f.count), "{}", f.count);
                assert_eq!(f.evidence.len(), 3);
                assert!(f.evidence[0].contains("DPT=1000 "), "{:?}", f.evidence);
            }
        }
    }

    #[test]
    fn one_port_hit_again_and_again_is_no_scan_and_accepted_packets_do_not_count() {
        let mut agent = NetworkAgent::new(NetworkConfig::default());
        let mut out = Vec::new();
        let (src, me) = (ip("216.180.246.25"), ip("203.0.113.1"));
        for i in 0..500u64 {
            line(&mut agent, &fw("reject wan in", src, me, 8000), t(i), &mut out);
            line(&mut agent, &fw("ACCEPT(src lan)", ip("10.0.0.2"), me, 1000 + i as u16), t(i), &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn many_hosts_from_one_source_are_a_sweep() {
        let src = ip("192.168.1.66");
        for (hosts, want) in [(9u8, 0usize), (40, 1)] {
            let mut agent = NetworkAgent::new(NetworkConfig::default());
            let mut out = Vec::new();
            for h in 0..hosts {
                let l = fw("DROP(src lan)", src, IpAddr::from([10, 0, 0, h]), 445);
                line(&mut agent, &l, t(u64::from(h)), &mut out);
            }
            assert_eq!(kinds(&out), [("net.sweep", "new")][..want], "{hosts} hosts");
        }
    }

    #[test]
    fn scans_slower_than_the_window_are_not_seen() {
        let mut agent = NetworkAgent::new(NetworkConfig::default());
        let mut out = Vec::new();
        for p in 0..200u16 {
            let l = fw("reject wan in", ip("198.51.100.1"), ip("203.0.113.1"), p);
            line(&mut agent, &l, t(u64::from(p) * 10), &mut out);
        }
        assert!(out.is_empty(), "one port every 10 s is 6 a minute: {out:#?}");
    }

    fn probe(src: IpAddr, dst: IpAddr, port: u16) -> Event<'static> {
        Event::FwPacket(FwPacket {
            action: "drop",
            rule: "banIP/inbound/drop/blocklist.v4",
            in_if: Some("eth1"),
            out_if: None,
            src_ip: Some(src),
            dst_ip: Some(dst),
            proto: Some("TCP"),
            src_port: Some(46844),
            dst_port: Some(port),
        })
    }

    #[test]
    fn a_flood_of_100k_sources_stays_within_the_table_and_a_scanner_is_still_found() {
        let mut agent = NetworkAgent::new(NetworkConfig::default());
        let mut out = Vec::new();
        let (scanner, me) = (ip("45.142.154.99"), ip("203.0.113.1"));
        for i in 0..100_000u32 {
            let src = IpAddr::from([100, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let now = t(0) + u64::from(i / 10);
            feed(&mut agent, probe(src, me, 23), "banIP/inbound/drop", now, &mut out);
            if i % 100 == 0 {
                feed(&mut agent, probe(scanner, me, (i / 100) as u16), "banIP/inbound/drop", now, &mut out);
            }
        }
        assert!(agent.scanners.len() <= MAX_SCANNERS);
        assert!(agent.counters().evicted >= 100_000 - MAX_SCANNERS as u64);
        // The flood itself is a scan from many sources; the one scanner in it is still named.
        let new: Vec<Finding> = news(&out).into_iter().cloned().collect();
        assert_eq!(kinds(&new), vec![("net.distributed_scan", "new"), ("net.port_scan", "new")]);
        assert_eq!(new[1].subject.src_ip, Some(scanner));
    }

    /// dnsmasq's line when the pool is empty (the format of dnsmasq.log's DHCP lines).
    const NO_ADDRESS: &str = "Sat Jul  9 20:50:17 2016 daemon.warn dnsmasq-dhcp[1499]: DHCPDISCOVER(br-lan) 10:a5:d0:26:23:a5 no address available";

    #[test]
    fn no_address_available_is_an_exhausted_pool_once_per_window() {
        let mut agent = NetworkAgent::new(NetworkConfig::default());
        let mut out = Vec::new();
        for i in 0..30 {
            line(&mut agent, NO_ADDRESS, t(i * 3), &mut out);
        }
        assert_eq!(kinds(&out), vec![("dhcp.pool_exhausted", "new"), ("dhcp.pool_exhausted", "update")]);
        assert_eq!(out[1].count, 21, "the count so far, a minute in");
        assert_eq!(out[0].subject.iface.as_deref(), Some("br-lan"));
        assert_eq!(out[0].subject.service.as_deref(), Some("dnsmasq"));
        assert_eq!(out[0].evidence, vec![NO_ADDRESS]);
        out.extend(tick_after(&mut agent, t(87), 601_000));
        assert_eq!(kinds(&out[2..]), vec![("dhcp.pool_exhausted", "closed")]);
        assert_eq!(out[2].count, 30);
        // A higher threshold is not crossed by two.
        let mut agent = NetworkAgent::new(NetworkConfig { dhcp_no_address: 3, ..Default::default() });
        let mut out = Vec::new();
        line(&mut agent, NO_ADDRESS, t(0), &mut out);
        line(&mut agent, NO_ADDRESS, t(1), &mut out);
        assert!(out.is_empty());
    }

    /// One WAN flap as netifd and the kernel log it (network.log, Apr 15 2020),
    /// then the way back up.
    fn flap(agent: &mut NetworkAgent, at: u64, out: &mut Vec<Finding>) {
        for l in [
            "Wed Apr 15 11:20:01 2020 daemon.notice netifd: Network device 'pppoe-wan' link is down",
            "Wed Apr 15 11:20:01 2020 daemon.notice netifd: Interface 'wan' is now down",
            "Wed Apr 15 11:20:01 2020 kern.info kernel: [146169.052620] mt7530 mdio-bus:1f wan: Link is Down",
            "Wed Apr 15 11:20:01 2020 daemon.notice netifd: Network device 'wan' link is down",
            "Wed Apr 15 11:20:09 2020 kern.info kernel: [146177.052620] mt7530 mdio-bus:1f wan: Link is Up - 1Gbps/Full - flow control rx/tx",
            "Wed Apr 15 11:20:09 2020 daemon.notice netifd: Network device 'wan' link is up",
            "Wed Apr 15 11:20:12 2020 daemon.notice netifd: Network device 'pppoe-wan' link is up",
            "Wed Apr 15 11:20:12 2020 daemon.notice netifd: Interface 'wan' is now up",
        ] {
            line(agent, l, at, out);
        }
    }

    #[test]
    fn an_interface_going_down_again_and_again_is_flapping() {
        for (flaps, want) in [(3u64, 0usize), (4, 3)] {
            let mut agent = NetworkAgent::new(NetworkConfig::default());
            let mut out = Vec::new();
            for i in 0..flaps {
                flap(&mut agent, t(i * 60), &mut out);
            }
            assert_eq!(out.len(), want, "{flaps} flaps: {out:#?}");
            // Interface wan, device wan and device pppoe-wan: three subjects.
            let mut ifaces: Vec<&str> = out.iter().filter_map(|f| f.subject.iface.as_deref()).collect();
            ifaces.sort_unstable();
            assert_eq!(ifaces, ["pppoe-wan", "wan", "wan"][..want]);
            assert!(out.iter().all(|f| f.kind == "net.link_flapping" && f.count == 4), "{out:#?}");
        }
    }

    /// One PPP drop as pppd logs it (network.log, Jun 1 2020), then a new session.
    fn ppp_drop(agent: &mut NetworkAgent, at: u64, out: &mut Vec<Finding>) {
        for l in [
            "Mon Jun  1 10:51:02 2020 daemon.info pppd[5863]: LCP terminated by peer",
            "Mon Jun  1 10:51:02 2020 daemon.notice pppd[5863]: Modem hangup",
            "Mon Jun  1 10:51:02 2020 daemon.notice pppd[5863]: Connection terminated.",
        ] {
            line(agent, l, at, out);
        }
        line(
            agent,
            "Dec  1 06:17:43 OpenWrt daemon.notice pppd[639]: local  IP address 222.154.81.8",
            at + 20_000,
            out,
        );
    }

    #[test]
    fn ppp_sessions_dropping_again_and_again() {
        for (drops, want) in [(2u64, 0usize), (3, 1), (10, 1)] {
            let mut agent = NetworkAgent::new(NetworkConfig::default());
            let mut out = Vec::new();
            for i in 0..drops {
                ppp_drop(&mut agent, t(i * 30), &mut out);
            }
            assert_eq!(news(&out).len(), want, "{drops} drops");
            if let Some(f) = out.first() {
                assert_eq!(f.kind, "ppp.session_drops");
                assert_eq!(f.count, 3, "three lines per drop are one drop");
                assert_eq!(f.subject.service.as_deref(), Some("pppd"));
                assert!(f.summary.starts_with("PPP session on ppp dropped 3 times"), "{}", f.summary);
            }
        }
    }
}
