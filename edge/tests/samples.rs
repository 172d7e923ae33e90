//! The real router log samples (`tests/data/real-syslog/*.log`, a copy of the
//! team's `shared/samples/real-syslog`, kept here so a fresh clone tests) through
//! `explain`: every line is an event, `"event":null` or an error, nothing
//! panics, and the output equals the reviewed golden files in
//! `tests/golden/<name>.jsonl`.
//!
//! After a deliberate change, `UPDATE_GOLDEN=1 cargo test -p opmas-edge
//! --test samples` rewrites the golden files; review the diff line by line.
//! The spot checks below pin lines of every event kind with their fields, so
//! that a careless regeneration cannot lose them silently.
//!
//! `tests/forms/*.log` are hand-written lines of every SSH and DHCP form the
//! classifier knows (see `tests/forms/README.md`); they are pinned the same
//! way, in `tests/golden/forms/<name>.jsonl`, and the `*-negative.log` files
//! hold look-alikes that must not count as failures.
//!
//! The samples live beside the repository (`<dir>/shared`, as CI and the
//! development machine lay it out); `OPMAS_SAMPLES=/path` points elsewhere.

use std::path::{Path, PathBuf};

use opmas_edge::classify::classify;
use opmas_edge::date::unix_ms;
use opmas_edge::events::PROBE_KINDS;
use opmas_edge::explain::{explain, explain_line, Outcome};
use opmas_edge::parse::{parse_line, Context};

/// "Now" for the golden files: fixed, so that the year of RFC 3164 lines is stable.
fn now_ms() -> u64 {
    unix_ms(2026, 6, 1, 0, 0, 0).expect("a valid date")
}

fn samples_dir() -> PathBuf {
    match std::env::var_os("OPMAS_SAMPLES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real-syslog")),
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"))
}

/// The sample files, sorted. Missing samples fail the test: a silent skip
/// would hide every regression these tests exist for.
fn sample_files() -> Vec<PathBuf> {
    let dir = samples_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("samples not found at {} ({e}); set OPMAS_SAMPLES", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.log files in {}", dir.display());
    files
}

fn read_sample(name: &str) -> String {
    let path = samples_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn explain_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    explain(bytes.as_slice(), &mut out, now_ms()).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("explain writes UTF-8")
}

fn forms_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/forms"))
}

/// The `*.log` files of `dir`, sorted.
fn logs_in(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.log files in {}", dir.display());
    files
}

/// `explain` over each file equals `<golden>/<stem>.jsonl`; with
/// `UPDATE_GOLDEN=1`, writes it instead.
fn check_golden(files: &[PathBuf], golden: &Path) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for path in files {
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 file name").to_owned();
        let want_path = golden.join(format!("{stem}.jsonl"));
        let got = explain_file(path);
        if update {
            std::fs::create_dir_all(golden).expect("creating the golden directory");
            std::fs::write(&want_path, &got).unwrap_or_else(|e| panic!("{}: {e}", want_path.display()));
            continue;
        }
        let want = std::fs::read_to_string(&want_path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", want_path.display()));
        if got != want {
            let (n, (g, w)) = got
                .lines()
                .chain(std::iter::repeat(""))
                .zip(want.lines().chain(std::iter::repeat("")))
                .enumerate()
                .find(|(_, (g, w))| g != w)
                .unwrap_or((0, ("", "")));
            failures.push(format!("{stem}.log line {}:\n  got:  {g}\n  want: {w}", n + 1));
        }
    }
    assert!(failures.is_empty(), "explain output differs from {}:\n{}", golden.display(), failures.join("\n"));
}

#[test]
fn explain_output_matches_the_golden_files() {
    check_golden(&sample_files(), &golden_dir());
}

#[test]
fn the_hand_written_forms_match_their_golden_files() {
    check_golden(&logs_in(&forms_dir()), &golden_dir().join("forms"));
}

/// The event of one line as JSON (`"null"` without one).
fn event_json(line: &str) -> String {
    match parse_line(line, Context::at(now_ms())).ok().as_ref().and_then(classify) {
        Some(ev) => {
            let mut s = String::new();
            ev.write_json(&mut s);
            s
        }
        None => "null".to_owned(),
    }
}

/// The kinds the security agent counts as an attack.
const FAILURE_KINDS: &[&str] =
    &["ssh.auth_failed", "ssh.invalid_user", "ssh.max_tries", "ssh.preauth_closed", "ssh.probe"];

#[test]
fn look_alikes_of_failures_are_not_failures() {
    let mut failures = Vec::new();
    for path in logs_in(&forms_dir()) {
        let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name").to_owned();
        if !name.ends_with("-negative.log") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (i, line) in text.lines().enumerate() {
            let got = event_json(line);
            if FAILURE_KINDS.iter().any(|k| got.contains(&format!("\"kind\":\"{k}\""))) {
                failures.push(format!("{name}:{}: {line}\n  got: {got}", i + 1));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lines of `sshd.log` and `dropbear.log` whose form names no client: the
/// agents take the address from the same pid's connection line, if any.
const WITHOUT_ADDRESS: &[&str] = &[
    // A twin of `Invalid user walter from ...` (old OpenSSH): no event.
    "input_userauth_request: invalid user walter [preauth]",
    "User erin not allowed because account is locked",
    "Disconnecting: Too many authentication failures for root [preauth]",
    "kex_exchange_identification: Connection closed by remote host",
    "kex_exchange_identification: read: Connection reset by peer",
    "kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"",
    "kex_exchange_identification: banner line too long",
    "Unable to negotiate a key exchange method [preauth]",
    "dropbear[3114]: Login attempt for nonexistent user",
    "exit before auth (user 'root', 5 fails): Disconnect received",
    "root login rejected",
];

#[test]
fn every_ssh_form_names_its_client() {
    let mut failures = Vec::new();
    let mut allowed = 0;
    for name in ["sshd.log", "dropbear.log"] {
        let path = forms_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (i, line) in text.lines().enumerate() {
            if WITHOUT_ADDRESS.iter().any(|tail| line.ends_with(tail)) {
                allowed += 1;
                continue;
            }
            let got = event_json(line);
            let ssh = got.starts_with("{\"kind\":\"ssh.");
            let what_ok = match got.split_once("\"what\":\"") {
                Some((_, w)) => PROBE_KINDS.iter().any(|k| w.starts_with(&format!("{k}\""))),
                None => true,
            };
            if !ssh || !what_ok || !(got.contains("\"src_ip\":") || got.contains("\"src_host\":")) {
                failures.push(format!("{name}:{}: {line}\n  got: {got}", i + 1));
            }
        }
    }
    assert_eq!(allowed, WITHOUT_ADDRESS.len(), "every allow-listed line is still in the forms files, once");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_line_is_an_event_null_or_an_error_and_nothing_panics() {
    let ctx = Context::at(now_ms());
    // The hand-written forms too: their truncations are the likeliest odd SSH lines.
    for path in sample_files().into_iter().chain(logs_in(&forms_dir())) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = String::from_utf8_lossy(&bytes);
        let out = explain_file(&path);
        assert_eq!(out.lines().count(), text.lines().count(), "{}: one output line per input line", path.display());
        for (i, line) in text.lines().enumerate() {
            let mut json = String::new();
            let outcome = explain_line(i as u64 + 1, line, ctx, &mut json);
            let has_event = json.contains(",\"event\":{") || json.ends_with(",\"event\":null}");
            let has_error = json.contains(",\"error\":\"");
            match outcome {
                Outcome::Event | Outcome::NoEvent => assert!(has_event && !has_error, "{json}"),
                Outcome::Error => assert!(has_error && !has_event, "{json}"),
            }
            // Every prefix and suffix of a real line (at char boundaries) is
            // a plausible truncated or garbled line: none may panic.
            for (k, _) in line.char_indices() {
                for part in [&line[..k], &line[k..]] {
                    if let Ok(r) = parse_line(part, ctx) {
                        let _ = classify(&r);
                    }
                }
            }
        }
    }
}

/// Lines of every kind the agents know, with the fields they must have:
/// (file, line number, event JSON or `null`). Kinds the samples do not
/// contain (`wifi.auth_failed` for PSK mismatch and handshakes,
/// `dhcp.no_address`, `sys.watchdog`, `sys.boot`) are pinned by the unit
/// tests in `src/classify.rs`.
const SPOT_CHECKS: &[(&str, usize, &str)] = &[
    // hostapd: RFC 3164 without priority, logread, redacted MACs.
    ("hostapd.log", 4, r#"{"kind":"wifi.connected","iface":"wlan1-1","mac":"06:fc:e4:4a:e5:05"}"#),
    ("hostapd.log", 1, r#"{"kind":"wifi.disconnected","iface":"wlan1-1","mac":"06:fc:e4:4a:e5:05"}"#),
    (
        "hostapd.log",
        12,
        r#"{"kind":"wifi.deauthenticated","iface":"wlan1","mac":"d1:c5:d3:de:79:93","reason":"inactivity"}"#,
    ),
    (
        "hostapd.log",
        35,
        r#"{"kind":"wifi.deauthenticated","iface":"wlan0","mac":"58:40:4e:ipadAir2","reason":"inactivity"}"#,
    ),
    (
        "hostapd.log",
        41,
        r#"{"kind":"wifi.disassociated","iface":"wlan0","mac":"60:21:c0:3b:56:ea","reason":"inactivity"}"#,
    ),
    ("hostapd.log", 11, r#"{"kind":"wifi.disassociated","iface":"wlan1","mac":"d1:c5:d3:de:79:93"}"#),
    ("hostapd.log", 64, r#"{"kind":"wifi.auth_failed","iface":"wlan0-1","mac":"28:ed:6a:a4:de:5c","reason":"no_ack"}"#),
    ("hostapd.log", 6, r#"{"kind":"wifi.handshake_ok","iface":"wlan1-1","mac":"06:fc:e4:4a:e5:05"}"#),
    // The twin of line 6, without an interface: not counted twice.
    ("hostapd.log", 7, "null"),
    ("hostapd.log", 13, "null"),
    // dropbear: old lower-case messages, the bare `fac.sev` form, pubkey logins.
    ("dropbear.log", 5, r#"{"kind":"ssh.connection","src_ip":"125.70.52.249","src_port":61426}"#),
    ("dropbear.log", 17, r#"{"kind":"ssh.auth_failed","src_ip":"192.168.1.1","src_port":51570,"user":"root"}"#),
    ("dropbear.log", 27, r#"{"kind":"ssh.auth_failed","src_ip":"192.168.9.204","src_port":63779,"user":"root"}"#),
    ("dropbear.log", 3, r#"{"kind":"ssh.invalid_user"}"#),
    ("dropbear.log", 35, r#"{"kind":"ssh.invalid_user","src_ip":"193.201.224.208","src_port":29745}"#),
    (
        "dropbear.log",
        26,
        r#"{"kind":"ssh.max_tries","src_ip":"192.168.9.204","src_port":59200,"user":"root","fails":3}"#,
    ),
    ("dropbear.log", 19, r#"{"kind":"ssh.max_tries","user":"root","fails":5}"#),
    ("dropbear.log", 30, r#"{"kind":"ssh.login_ok","src_ip":"192.168.1.112","src_port":8005,"user":"root"}"#),
    // Firewall: fw3, a bare IPv6 body, banIP, fw4 (redacted DST), fw3 zone DROP.
    (
        "firewall.log",
        1,
        r#"{"kind":"fw.packet","action":"reject","in_if":"pppoe-dsl","src_ip":"119.121.32.2","dst_ip":"141.70.120.8","proto":"UDP","src_port":15758,"dst_port":38565,"rule":"IPT_dsl-Rej"}"#,
    ),
    (
        "firewall.log",
        3,
        r#"{"kind":"fw.packet","action":"reject","in_if":"br-wan","src_ip":"fe80::5054:ff:fe38:4b77","dst_ip":"ff02::15c","proto":"UDP","src_port":54166,"dst_port":4789,"rule":"REJECT(src wan)"}"#,
    ),
    (
        "firewall.log",
        4,
        r#"{"kind":"fw.packet","action":"drop","in_if":"eth1","src_ip":"118.123.1.39","proto":"TCP","src_port":23626,"dst_port":8888,"rule":"banIP/inbound/drop/country.v4"}"#,
    ),
    (
        "firewall.log",
        5,
        r#"{"kind":"fw.packet","action":"reject","in_if":"eth1","src_ip":"35.77.39.2","proto":"ICMP","rule":"reject wan in"}"#,
    ),
    (
        "firewall.log",
        39,
        r#"{"kind":"fw.packet","action":"drop","in_if":"eth0","src_ip":"205.205.205.205","dst_ip":"192.168.8.100","proto":"TCP","src_port":40952,"dst_port":23,"rule":"DROP(src wan)"}"#,
    ),
    // dnsmasq: redacted MAC, redacted IP (None), LuCI export.
    ("dnsmasq.log", 17, r#"{"kind":"dhcp.ack","iface":"eth0.1","mac":"xx:xx:xx:xx:xx:xx","ip":"192.168.1.1"}"#),
    ("dnsmasq.log", 12, r#"{"kind":"dhcp.nak","iface":"lan","mac":"6c:c7:ec:39:74:ab","ip":"192.168.0.183"}"#),
    ("dnsmasq.log", 42, r#"{"kind":"dhcp.nak","iface":"br-lan","mac":"xx:xx:xx:xx:xx:xx"}"#),
    // netifd, kernel drivers (igb, mt7530), frames run together, pppd.
    ("network.log", 111, r#"{"kind":"net.iface_up","iface":"WLAN3"}"#),
    ("network.log", 16, r#"{"kind":"net.iface_down","iface":"wan_6"}"#),
    ("network.log", 4, r#"{"kind":"net.link_up","iface":"eth0"}"#),
    ("network.log", 14, r#"{"kind":"net.link_up","iface":"eth0"}"#),
    ("network.log", 46, r#"{"kind":"net.link_up","iface":"eth1"}"#),
    ("network.log", 119, r#"{"kind":"net.link_down","iface":"wan"}"#),
    ("network.log", 99, r#"{"kind":"net.link_down","iface":"ds-wan4"}"#),
    // "Network alias '' link is down": no name, no event.
    ("network.log", 17, "null"),
    ("network.log", 55, r#"{"kind":"ppp.up"}"#),
    ("network.log", 21, r#"{"kind":"ppp.up"}"#),
    ("network.log", 25, r#"{"kind":"ppp.down","reason":"modem_hangup"}"#),
    ("network.log", 26, r#"{"kind":"ppp.down"}"#),
    // OOM in dmesg form and logread form, procd crash loop.
    ("system.log", 26, r#"{"kind":"sys.oom_kill","process":"dnsmasq","pid":15486}"#),
    ("system.log", 27, r#"{"kind":"sys.oom_kill","process":"dnsmasq","pid":15486}"#),
    ("system.log", 45, r#"{"kind":"sys.oom_kill","process":"smartdns","pid":1247}"#),
    ("system.log", 8, r#"{"kind":"sys.crash_loop","service":"https-dns-proxy"}"#),
    // LuCI via uhttpd, with an empty tag, and with `?` for the address.
    ("web.log", 3, r#"{"kind":"web.login_failed","user":"root","src_ip":"192.168.9.204"}"#),
    ("web.log", 6, r#"{"kind":"web.login_failed","user":"root","src_ip":"192.168.0.2"}"#),
    ("web.log", 1, r#"{"kind":"web.login_ok","user":"root","src_ip":"192.168.100.163"}"#),
    ("web.log", 4, r#"{"kind":"web.login_ok","user":"root"}"#),
];

#[test]
fn spot_checks_of_every_event_kind() {
    let ctx = Context::at(now_ms());
    let mut failures = Vec::new();
    for &(file, n, want) in SPOT_CHECKS {
        let text = read_sample(file);
        let line = text.lines().nth(n - 1).unwrap_or_else(|| panic!("{file} has no line {n}"));
        let got = match parse_line(line, ctx).ok().as_ref().and_then(classify) {
            Some(ev) => {
                let mut s = String::new();
                ev.write_json(&mut s);
                s
            }
            None => "null".to_owned(),
        };
        if got != want {
            failures.push(format!("{file}:{n}: {line}\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A rough speed check of parse + classify on a mixed corpus (half `logread`,
/// half RFC 3164 with `<PRI>` and host; WiFi, DHCP, firewall, SSH, netifd and
/// lines no agent uses), repeated so that the loop, not the cache misses of a
/// tiny input, is measured:
/// `cargo test --release -p opmas-edge --test samples -- --ignored --nocapture`.
#[test]
#[ignore = "a timing run, meaningful in release mode only"]
fn throughput_of_parse_and_classify() {
    let lines = corpus(200_000);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let ctx = Context::at(now_ms());
    let mut best = f64::MAX;
    let mut events = 0;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        events = 0;
        for l in &lines {
            if let Ok(r) = parse_line(std::hint::black_box(l), ctx) {
                events += usize::from(classify(&r).is_some());
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    eprintln!(
        "parse+classify: {} lines ({} bytes, {events} events) in {:.1} ms: {:.2} M lines/s",
        lines.len(),
        bytes,
        best * 1e3,
        lines.len() as f64 / best / 1e6
    );
}

/// A deterministic mixed corpus (xorshift).
fn corpus(n: usize) -> Vec<String> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let (mo, d, h, mi, s) = (rnd(12) as usize, 1 + rnd(28), rnd(24), rnd(60), rnd(60));
            let mac = format!("a4:5e:60:{:02x}:{:02x}:{:02x}", rnd(256), rnd(256), rnd(256));
            let ip = format!("{}.{}.{}.{}", 1 + rnd(223), rnd(256), rnd(256), 1 + rnd(254));
            let (fac_sev, pri, tag, msg) = match rnd(20) {
                0..=4 => ("daemon.info", 30, "hostapd".to_owned(), match rnd(4) {
                    0 => format!("phy0-ap0: AP-STA-CONNECTED {mac}"),
                    1 => format!("phy0-ap0: STA {mac} IEEE 802.11: associated (aid {})", rnd(30)),
                    2 => format!("phy0-ap0: STA {mac} WPA: pairwise key handshake completed (RSN)"),
                    _ => format!("phy0-ap0: STA {mac} IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)"),
                }),
                5..=8 => ("daemon.info", 30, format!("dnsmasq-dhcp[{}]", rnd(30000)), match rnd(3) {
                    0 => format!("DHCPREQUEST(br-lan) 192.168.1.{} {mac}", 2 + rnd(250)),
                    1 => format!("DHCPACK(br-lan) 192.168.1.{} {mac} android-{:x}", 2 + rnd(250), rnd(65536)),
                    _ => format!("DHCPDISCOVER(br-lan) {mac}"),
                }),
                9..=13 => ("kern.warn", 4, "kernel".to_owned(), format!(
                    "[{}.{:06}] reject wan in: IN=eth1 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={ip} DST=203.0.113.7 LEN=44 TOS=0x00 PREC=0x00 TTL=240 ID={} PROTO=TCP SPT={} DPT={} WINDOW=1024 RES=0x00 SYN URGP=0",
                    rnd(1_000_000), rnd(1_000_000), rnd(65535), 1024 + rnd(60000), 1 + rnd(10000)
                )),
                14..=16 => ("authpriv.warn", 84, format!("dropbear[{}]", rnd(30000)), match rnd(3) {
                    0 => format!("Child connection from {ip}:{}", 1024 + rnd(60000)),
                    1 => format!("Bad password attempt for 'root' from {ip}:{}", 1024 + rnd(60000)),
                    _ => "Login attempt for nonexistent user".to_owned(),
                }),
                17 => ("daemon.notice", 29, "netifd".to_owned(), "Network device 'eth1' link is up".to_owned()),
                18 => ("daemon.info", 30, format!("odhcpd[{}]", rnd(30000)), "Using a RA lifetime of 0 seconds on br-lan".to_owned()),
                _ => ("cron.err", 75, format!("crond[{}]", rnd(30000)), "USER root pid 12345 cmd /usr/bin/adblock.sh".to_owned()),
            };
            if i % 2 == 0 {
                format!("<{pri}>{} {d:>2} {h:02}:{mi:02}:{s:02} OpenWrt {tag}: {msg}", MONTHS[mo])
            } else {
                format!("Sat {} {d:>2} {h:02}:{mi:02}:{s:02} 2026 {fac_sev} {tag}: {msg}", MONTHS[mo])
            }
        })
        .collect()
}
