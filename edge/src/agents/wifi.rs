//! WiFi agent: hostapd station events.
//!
//! - `wifi.deauth_flood`: `deauth_disconnects` station disconnects on one
//!   interface within `deauth_window`, of at least `deauth_stations` distinct
//!   stations. A station's disconnect is counted once however many lines
//!   report it (`AP-STA-DISCONNECTED`, `disassociated`, `deauthenticated`
//!   all follow one event), and a connect of a station that never
//!   disconnected counts as an unlogged disconnect: spoofed deauthentication
//!   frames sent to the stations make them reconnect without the AP seeing
//!   them leave. Idle timeouts are counted too (hostapd logs their reason on
//!   some of the lines only); they are spread over time, so the one honest
//!   burst is an AP restart on an interface with more than
//!   `deauth_disconnects` stations: raise it on such APs.
//! - `wifi.auth_failures`: `auth_failures` failed authentications (wrong
//!   PSK, handshake timeouts) of one station within `auth_window`.
//! - `wifi.client_churn`: `churn_connects` connections of one station
//!   within `churn_window`: a client reconnecting again and again.
//!
//! Stations are keyed by MAC (case folded), interfaces by name; both tables
//! are bounded. Findings are suppressed per subject for `suppress`.

use heapless::String as HString;
use opmas_proto::msg::{Finding, Subject};

use super::{
    finding, hash_mac, hash_str, opt, short, Agent, AgentCounters, AgentSuppressor, BoundedMap, Burst, Clock, Distinct,
    EvidencePool, Meta, WIFI_AUTH_FAILURES, WIFI_CLIENT_CHURN, WIFI_DEAUTH_FLOOD,
};
use crate::events::Event;

pub use opmas_proto::agents::WifiConfig;

/// The agent's name in findings and the heartbeat.
const AGENT: &str = "wifi";
/// Stations tracked at once: a home AP serves tens, a busy one a hundred or
/// two; random MACs (probing phones, a spoofed flood) evict the ones not
/// seen lately (about 400 bytes each).
pub const MAX_STATIONS: usize = 256;
/// Interfaces tracked: a router has a few radios with a few SSIDs each.
pub const MAX_IFACES: usize = 32;
/// Largest allowed `auth_failures` and `churn_connects`: each station keeps
/// the times of this many latest failures and connects.
pub const MAX_STATION_EVENTS: usize = 32;
/// Evidence lines waiting for a finding.
const EVIDENCE_SLOTS: usize = 32;
/// Bytes of a MAC kept: `aa:bb:cc:dd:ee:ff` and a redaction or two.
const MAC_LEN: usize = 20;
/// Bytes of an interface name kept (Linux allows 15).
const IFACE_LEN: usize = 16;

/// One station.
#[derive(Debug, Default)]
struct Station {
    /// The MAC as logged first.
    mac: HString<MAC_LEN>,
    /// The interface it was last seen on.
    iface: HString<IFACE_LEN>,
    /// Connected (true), disconnected (false) or not known yet.
    connected: Option<bool>,
    /// Its failed authentications.
    auth: Burst<MAX_STATION_EVENTS>,
    /// Its connections.
    churn: Burst<MAX_STATION_EVENTS>,
    /// Line time of its latest event.
    last_ms: u64,
}

/// One AP interface.
#[derive(Debug, Default)]
struct Bss {
    /// Disconnects: events, and distinct stations.
    disconnects: Distinct,
}

/// The WiFi agent.
pub struct WifiAgent {
    /// Thresholds and windows.
    cfg: WifiConfig,
    /// `deauth_stations` as a bit count of [`Distinct`].
    deauth_bits: u16,
    /// Line time for ticks.
    clock: Clock,
    /// Stations by MAC hash.
    stations: Box<BoundedMap<u64, Station, MAX_STATIONS, { 2 * MAX_STATIONS }>>,
    /// Interfaces by name.
    ifaces: Box<BoundedMap<HString<IFACE_LEN>, Bss, MAX_IFACES, { 2 * MAX_IFACES }>>,
    /// Evidence lines of runs in progress.
    pool: Box<EvidencePool<EVIDENCE_SLOTS>>,
    /// Suppression windows.
    sup: AgentSuppressor,
    /// Events consumed.
    events: u64,
}

impl WifiAgent {
    /// An agent with `cfg` (validated by the caller; out-of-range values
    /// make a detector never or always fire, never panic).
    pub fn new(cfg: WifiConfig) -> Self {
        WifiAgent {
            cfg,
            deauth_bits: Distinct::bits_for(cfg.deauth_stations),
            clock: Clock::default(),
            stations: Box::default(),
            ifaces: Box::default(),
            pool: Box::default(),
            sup: AgentSuppressor::new(cfg.suppress_s),
            events: 0,
        }
    }

    /// The station `mac`, seen now on `iface` (a function of the table
    /// alone, so that the pool and the suppressor stay usable beside it).
    fn station<'a>(
        stations: &'a mut BoundedMap<u64, Station, MAX_STATIONS, { 2 * MAX_STATIONS }>,
        cfg: &WifiConfig,
        iface: &str,
        mac: &str,
        now: u64,
    ) -> Option<&'a mut Station> {
        let keep_ms = u64::from(cfg.auth_window_s.max(cfg.churn_window_s)) * 1000;
        let stale = |s: &Station| now.saturating_sub(s.last_ms) > keep_ms;
        let make = || Station { mac: short(mac), ..Station::default() };
        let st = stations.entry(hash_mac(mac), stale, make)?;
        if st.iface.as_str() != iface {
            st.iface = short(iface);
        }
        st.last_ms = st.last_ms.max(now);
        Some(st)
    }

    /// Counts one disconnect of `mac` on `iface`.
    fn disconnect(&mut self, iface: &str, mac: &str, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let window_ms = u64::from(cfg.deauth_window_s) * 1000;
        let stale = |b: &Bss| now.saturating_sub(b.disconnects.last_ms()) > window_ms;
        let Some(bss) = self.ifaces.entry(short(iface), stale, Bss::default) else { return };
        let d = &mut bss.disconnects;
        d.insert(hash_mac(mac), now, cfg.deauth_window_s, &mut self.pool, line);
        let key = hash_str(iface);
        if self.sup.note(&WIFI_DEAUTH_FLOOD, key, now, 1, line, out) {
            d.reset();
        } else if d.events() >= cfg.deauth_disconnects && d.bits() >= self.deauth_bits {
            let secs = now.saturating_sub(d.first_ms()) / 1000;
            let f = finding(
                AGENT,
                &WIFI_DEAUTH_FLOOD,
                Subject { iface: Some(iface.into()), ..Subject::default() },
                d.events(),
                d.first_ms(),
                now,
                format!("{} disconnects of {} stations on {iface} in {secs} s", d.events(), d.estimate()),
                d.ev().lines(&self.pool, line),
            );
            self.sup.emit(&WIFI_DEAUTH_FLOOD, key, now, f, out);
            d.reset();
        }
    }

    /// A connection of `mac` on `iface`.
    fn connected(&mut self, iface: &str, mac: &str, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let Some(st) = Self::station(&mut self.stations, &cfg, iface, mac, now) else { return };
        let was = st.connected.replace(true);
        st.churn.push(now, 1, cfg.churn_window_s, &mut self.pool, line);
        let key = hash_mac(mac);
        if self.sup.note(&WIFI_CLIENT_CHURN, key, now, 1, line, out) {
            st.churn.reset_run();
        } else if st.churn.hits(cfg.churn_connects, cfg.churn_window_s, now) {
            let b = &st.churn;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let f = finding(
                AGENT,
                &WIFI_CLIENT_CHURN,
                Subject { mac: opt(&st.mac), iface: opt(&st.iface), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!("station {mac} connected {} times on {iface} in {secs} s", b.count()),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&WIFI_CLIENT_CHURN, key, now, f, out);
            st.churn.reset_run();
        }
        if was == Some(true) {
            // Connected again without a disconnect line: it was thrown off unseen.
            self.disconnect(iface, mac, meta, out);
        }
    }

    /// A failed authentication of `mac` on `iface`.
    fn auth_failed(&mut self, iface: &str, mac: &str, reason: &str, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        let (now, line, cfg) = (meta.now_ms, meta.line, self.cfg);
        let Some(st) = Self::station(&mut self.stations, &cfg, iface, mac, now) else { return };
        st.auth.push(now, 1, cfg.auth_window_s, &mut self.pool, line);
        let key = hash_mac(mac);
        if self.sup.note(&WIFI_AUTH_FAILURES, key, now, 1, line, out) {
            st.auth.reset_run();
        } else if st.auth.hits(cfg.auth_failures, cfg.auth_window_s, now) {
            let b = &st.auth;
            let secs = now.saturating_sub(b.first_ms()) / 1000;
            let f = finding(
                AGENT,
                &WIFI_AUTH_FAILURES,
                Subject { mac: opt(&st.mac), iface: opt(&st.iface), ..Subject::default() },
                b.count(),
                b.first_ms(),
                now,
                format!("{} failed authentications of station {mac} on {iface} in {secs} s ({reason})", b.count()),
                b.ev().lines(&self.pool, line),
            );
            self.sup.emit(&WIFI_AUTH_FAILURES, key, now, f, out);
            st.auth.reset_run();
        }
    }
}

impl Agent for WifiAgent {
    fn name(&self) -> &'static str {
        AGENT
    }

    fn on_event(&mut self, event: &Event<'_>, meta: &Meta<'_>, out: &mut Vec<Finding>) {
        self.clock.observe(meta.now_ms);
        match *event {
            Event::WifiConnected { iface, mac } => {
                self.events += 1;
                self.connected(iface, mac, meta, out);
            }
            Event::WifiDisconnected { iface, mac }
            | Event::WifiDeauthenticated { iface, mac, .. }
            | Event::WifiDisassociated { iface, mac, .. } => {
                self.events += 1;
                let Some(st) = Self::station(&mut self.stations, &self.cfg, iface, mac, meta.now_ms) else { return };
                // One disconnect, however many lines report it.
                if st.connected.replace(false) != Some(false) {
                    self.disconnect(iface, mac, meta, out);
                }
            }
            Event::WifiAuthFailed { iface, mac, reason } => {
                self.events += 1;
                self.auth_failed(iface, mac, reason, meta, out);
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
            evicted: self.stations.evicted() + self.ifaces.evicted() + self.sup.evicted(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real hostapd lines (hostapd.log) with the MAC and interface varied,
    //! through the parser and classifier; the 100k flood feeds events.

    use super::super::testing::{feed, kinds, line, news, t, tick_after};
    use super::*;
    use opmas_proto::msg::Stage;

    type Want = &'static [(&'static str, &'static str)];

    fn mac(i: u32) -> String {
        format!("5c:cf:7f:94:{:02x}:{:02x}", (i >> 8) & 255, i & 255)
    }

    /// A station leaving: three lines for one disconnect (hostapd.log 53-55).
    fn leave(agent: &mut WifiAgent, iface: &str, m: &str, now: u64, out: &mut Vec<Finding>) {
        for l in [
            format!("Tue Mar 13 21:56:47 2018 daemon.notice hostapd: {iface}: AP-STA-DISCONNECTED {m}"),
            format!("Tue Mar 13 21:56:47 2018 daemon.info hostapd: {iface}: STA {m} IEEE 802.11: disassociated"),
            format!("Tue Mar 13 21:56:48 2018 daemon.info hostapd: {iface}: STA {m} IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)"),
        ] {
            line(agent, &l, now, out);
        }
    }

    /// A station joining (hostapd.log 1-7).
    fn join(agent: &mut WifiAgent, iface: &str, m: &str, now: u64, out: &mut Vec<Finding>) {
        for l in [
            format!("Aug 21 04:32:18 WifiAP-01 hostapd: {iface}: AP-STA-CONNECTED {m}"),
            format!("Aug 21 04:32:18 WifiAP-01 hostapd: {iface}: STA {m} WPA: pairwise key handshake completed (RSN)"),
        ] {
            line(agent, &l, now, out);
        }
    }

    #[test]
    fn disconnects_of_many_stations_in_a_minute_are_a_flood() {
        // (stations, rounds of join + leave, expected)
        let cases: [(u32, u32, Want); 4] = [
            (4, 6, &[]),                              // 24 disconnects but 4 stations
            (10, 1, &[]),                             // 10 stations once each: an AP restart
            (5, 4, &[("wifi.deauth_flood", "new")]),  // 20 disconnects of 5 stations
            (30, 5, &[("wifi.deauth_flood", "new")]), // a flood: still one finding
        ];
        for (stations, rounds, want) in cases {
            let mut agent = WifiAgent::new(WifiConfig::default());
            let mut out = Vec::new();
            for r in 0..rounds {
                for s in 0..stations {
                    let now = t(u64::from(r) * 10) + u64::from(s);
                    join(&mut agent, "wlan1", &mac(s), now, &mut out);
                    leave(&mut agent, "wlan1", &mac(s), now + 500, &mut out);
                }
            }
            assert_eq!(kinds(&out), want, "{stations} stations × {rounds}");
            if let Some(f) = out.first() {
                assert_eq!(f.subject.iface.as_deref(), Some("wlan1"));
                assert_eq!(f.count, 20, "each disconnect counted once, not per line");
                assert_eq!(f.severity.get(), 4);
                assert!(f.evidence[0].contains("AP-STA-DISCONNECTED"), "{:?}", f.evidence);
            }
        }
    }

    #[test]
    fn reconnects_without_disconnect_lines_count_as_disconnects() {
        let mut agent = WifiAgent::new(WifiConfig::default());
        let mut out = Vec::new();
        for r in 0..5u64 {
            for s in 0..5 {
                join(&mut agent, "phy0-ap0", &mac(s), t(r * 5) + u64::from(s), &mut out);
            }
        }
        assert_eq!(kinds(&out), vec![("wifi.deauth_flood", "new")]);
    }

    #[test]
    fn disconnects_spread_over_hours_are_not_a_flood() {
        let mut agent = WifiAgent::new(WifiConfig::default());
        let mut out = Vec::new();
        for i in 0..200u32 {
            join(&mut agent, "wlan0", &mac(i % 20), t(u64::from(i) * 300), &mut out);
            leave(&mut agent, "wlan0", &mac(i % 20), t(u64::from(i) * 300 + 100), &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn repeated_auth_failures_of_one_station() {
        // hostapd.log 96-98, and a wrong passphrase.
        let no_ack = "Wed Sep 22 00:15:40 2021 daemon.notice hostapd: wlan1: STA 9e:e8:69:72:c4:54 IEEE 802.11: did not acknowledge authentication response";
        let psk = "Wed Sep 22 00:15:41 2021 daemon.info hostapd: wlan1: AP-STA-POSSIBLE-PSK-MISMATCH 9e:e8:69:72:c4:54";
        for (n, want) in [(4u64, 0usize), (5, 1), (50, 1)] {
            let mut agent = WifiAgent::new(WifiConfig::default());
            let mut out = Vec::new();
            for i in 0..n {
                line(&mut agent, if i % 2 == 0 { no_ack } else { psk }, t(i * 5), &mut out);
            }
            assert_eq!(news(&out).len(), want, "{n} failures");
            if let Some(f) = out.first() {
                assert_eq!(f.kind, "wifi.auth_failures");
                assert_eq!(f.severity.get(), 3);
                assert_eq!(f.count, 5);
                assert_eq!(f.subject.mac.as_deref(), Some("9e:e8:69:72:c4:54"));
                assert_eq!(f.subject.iface.as_deref(), Some("wlan1"));
                assert!(f.summary.ends_with("(no_ack)"), "{}", f.summary);
                assert_eq!(f.evidence, vec![no_ack, psk, no_ack]);
            }
        }
    }

    #[test]
    fn a_station_reconnecting_again_and_again_is_churn() {
        for (n, want) in [(9u64, 0usize), (10, 1)] {
            let mut agent = WifiAgent::new(WifiConfig::default());
            let mut out = Vec::new();
            for i in 0..n {
                join(&mut agent, "wlan1", "9c:5c:f9:3b:97:ad", t(i * 50), &mut out);
                leave(&mut agent, "wlan1", "9c:5c:f9:3b:97:ad", t(i * 50 + 20), &mut out);
            }
            assert_eq!(kinds(&out).iter().filter(|k| k.0 == "wifi.client_churn").count(), want, "{n} connects");
            assert!(out.iter().all(|f| f.kind != "wifi.deauth_flood"), "one station is no flood");
            if let Some(f) = out.first() {
                assert_eq!(f.severity.get(), 2);
                assert_eq!(f.subject.mac.as_deref(), Some("9c:5c:f9:3b:97:ad"));
            }
        }
    }

    #[test]
    fn churn_updates_after_the_window() {
        let mut agent = WifiAgent::new(WifiConfig::default());
        let mut out = Vec::new();
        for i in 0..40u64 {
            join(&mut agent, "wlan1", "9c:5c:f9:3b:97:ad", t(i * 10), &mut out);
            leave(&mut agent, "wlan1", "9c:5c:f9:3b:97:ad", t(i * 10 + 5), &mut out);
        }
        out.extend(tick_after(&mut agent, t(395), 700_000));
        assert_eq!(news(&out).len(), 1);
        let last = out.last().unwrap();
        assert_eq!((last.stage, out[0].count, last.count), (Stage::Closed, 10, 40));
        assert_eq!(out[0].first_ms, last.first_ms);
    }

    #[test]
    fn macs_are_one_station_in_either_case() {
        let mut agent = WifiAgent::new(WifiConfig::default());
        let mut out = Vec::new();
        for (i, m) in ["28:ed:6a:a4:de:5c", "28:ED:6A:A4:DE:5C"].iter().cycle().take(5).enumerate() {
            let ev = Event::WifiAuthFailed { iface: "wlan0", mac: m, reason: "no_ack" };
            feed(&mut agent, ev, "hostapd: wlan0: STA x IEEE 802.11: did not acknowledge", t(i as u64), &mut out);
        }
        assert_eq!(kinds(&out), vec![("wifi.auth_failures", "new")]);
    }

    #[test]
    fn a_flood_of_100k_random_macs_stays_within_the_tables() {
        let mut agent = WifiAgent::new(WifiConfig::default());
        let mut out = Vec::new();
        for i in 0..100_000u32 {
            let m = format!("02:{:02x}:{:02x}:{:02x}:00:01", i >> 16, (i >> 8) & 255, i & 255);
            let ev = Event::WifiAuthFailed { iface: "wlan0", mac: &m, reason: "psk_mismatch" };
            feed(&mut agent, ev, "hostapd: wlan0: AP-STA-POSSIBLE-PSK-MISMATCH", t(0) + u64::from(i), &mut out);
        }
        assert!(agent.stations.len() <= MAX_STATIONS);
        assert_eq!(agent.counters().evicted, 100_000 - MAX_STATIONS as u64);
        assert!(out.is_empty());
    }
}
