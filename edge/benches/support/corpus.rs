//! A deterministic generator of realistic OpenWRT syslog lines for
//! benchmarks and memory measurements (included with `#[path]` by the
//! criterion bench and by `examples/edge_lines.rs`).
//!
//! The mix follows what a busy home or small-office router logs: WiFi
//! station churn, DHCP, firewall drops from the internet, SSH noise, interface
//! events. Half of the lines arrive as RFC 3164 frames with `<PRI>` and host
//! (remote logging), half in `logread` format (the local default), so the
//! parser's common paths are all exercised.

/// xorshift64*: fast, deterministic, good enough to vary a corpus.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Generates `n` lines; attacker addresses are drawn from `distinct_ips`
/// different sources (use 100_000 for the memory-flatness measurement).
pub fn generate(n: usize, distinct_ips: u32, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut t: u64 = 9 * 3600;
    for i in 0..n {
        t += rng.below(2);
        let (month, day) = (MONTHS[(t / 2_600_000 % 12) as usize], 1 + (t / 86_400 % 28));
        let clock = format!("{:02}:{:02}:{:02}", t / 3600 % 24, t / 60 % 60, t % 60);
        let attacker = rng.below(distinct_ips as u64) as u32 + 1;
        let aip = format!(
            "{}.{}.{}.{}",
            100 + (attacker >> 24),
            (attacker >> 16) & 255,
            (attacker >> 8) & 255,
            attacker & 255
        );
        let mac = format!("a4:5e:60:{:02x}:{:02x}:{:02x}", rng.below(256), rng.below(256), rng.below(16));
        let pid = 1000 + rng.below(30000);
        let (fac_sev, pri, tag, msg) = match rng.below(20) {
            0..=4 => ("daemon.info", 30, "hostapd".to_string(), match rng.below(6) {
                0 => format!("phy0-ap0: STA {mac} IEEE 802.11: authenticated"),
                1 => format!("phy0-ap0: STA {mac} IEEE 802.11: associated (aid {})", 1 + rng.below(30)),
                2 => format!("phy0-ap0: AP-STA-CONNECTED {mac}"),
                3 => format!("phy0-ap0: STA {mac} WPA: pairwise key handshake completed (RSN)"),
                4 => format!("phy0-ap0: AP-STA-DISCONNECTED {mac}"),
                _ => format!("phy0-ap0: STA {mac} IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)"),
            }),
            5..=8 => ("daemon.info", 30, format!("dnsmasq-dhcp[{pid}]"), match rng.below(3) {
                0 => format!("DHCPREQUEST(br-lan) 192.168.1.{} {mac}", 2 + rng.below(250)),
                1 => format!("DHCPACK(br-lan) 192.168.1.{} {mac} android-{:x}", 2 + rng.below(250), rng.next_u64() & 0xffff),
                _ => format!("DHCPDISCOVER(br-lan) {mac}"),
            }),
            9..=13 => ("kern.warn", 4, "kernel".to_string(), format!(
                "[{}.{:06}] reject wan in: IN=eth1 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={aip} DST=203.0.113.7 LEN=44 TOS=0x00 PREC=0x00 TTL=240 ID={} PROTO=TCP SPT={} DPT={} WINDOW=1024 RES=0x00 SYN URGP=0",
                t, rng.below(1_000_000), rng.below(65535), 1024 + rng.below(60000), 1 + rng.below(10000)
            )),
            14..=16 => ("authpriv.warn", 84, format!("dropbear[{pid}]"), match rng.below(3) {
                0 => format!("Child connection from {aip}:{}", 1024 + rng.below(60000)),
                1 => format!("Bad password attempt for 'root' from {aip}:{}", 1024 + rng.below(60000)),
                _ => format!("Login attempt for nonexistent user from {aip}:{}", 1024 + rng.below(60000)),
            }),
            17 => ("daemon.notice", 29, "netifd".to_string(), match rng.below(3) {
                0 => "Interface 'wan' is now up".to_string(),
                1 => "Network device 'eth1' link is up".to_string(),
                _ => "Interface 'wan6' has link connectivity".to_string(),
            }),
            18 => ("daemon.info", 30, format!("odhcpd[{pid}]"), "Using a RA lifetime of 0 seconds on br-lan".to_string()),
            _ => ("cron.err", 75, format!("crond[{pid}]"), "USER root pid 12345 cmd /usr/bin/adblock.sh".to_string()),
        };
        let line = if i % 2 == 0 {
            format!("<{pri}>{month} {day:>2} {clock} OpenWrt {tag}: {msg}")
        } else {
            format!("{} {month} {day:>2} {clock} 2026 {fac_sev} {tag}: {msg}", DAYS[(t / 86_400 % 7) as usize])
        };
        out.push(line);
    }
    out
}
