//! The demo fleet: the hub on embedded defaults plus simulated
//! routers. Each simulated router runs the real edge code (`opmas_edge::run`
//! on its own current-thread runtime, as on a router) over generated,
//! realistic OpenWRT log lines, and connects to the embedded broker over TCP
//! with its own enrolled identity, so everything downstream is real.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use opmas_edge::config::AgentsConfig;
use opmas_edge::config::{EdgeConfig, HubConfig as EdgeHub};
use opmas_proto::{DeviceId, Secret};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tracing::{info, info_span, Instrument};

use opmas_hub::config::HubConfig;
use opmas_hub::enrol;
use opmas_hub::serve;
use opmas_hub::store::now_ms;

/// Starts the hub, enrols `devices` demo routers (reusing earlier ones) and
/// runs them until `shutdown`.
pub async fn run(cfg: HubConfig, devices: usize, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let hub = serve::start(&cfg).await?;
    for i in 1..=devices {
        let id = DeviceId::new(format!("demo-router-{i}"))?;
        let secret = match hub.store.device_secret(id.as_str()).await? {
            Some(hex) => Secret::from_hex(&hex).context("stored demo secret")?,
            None => {
                let secret = enrol::new_secret();
                hub.store.insert_device(id.as_str(), id.as_str(), &secret.to_hex(), now_ms()).await?;
                secret
            }
        };
        let edge = EdgeConfig {
            hub: EdgeHub {
                host: "127.0.0.1".into(),
                port: cfg.mqtt_listen.port(),
                device_id: id.clone(),
                secret,
                heartbeat_interval: Duration::from_secs(10),
                keepalive: Duration::from_secs(30),
                backoff_max: Duration::from_secs(10),
                spool_bytes: opmas_edge::spool::DEFAULT_BUDGET,
                tls: None,
                state_dir: cfg.data_dir.join("demo-routers").join(id.as_str()),
                restart: Default::default(),
            },
            sources: Vec::new(),
            agents: AgentsConfig::default(),
            // A simulated router runs on the demo's own machine, whose
            // firewall and WiFi are not its to change: it answers every
            // action "switched off" (playbooks show what they would do).
            act: opmas_edge::act::ActConfig { enabled: false, ..Default::default() },
        };
        std::thread::Builder::new().name(id.to_string()).spawn(move || simulate(edge, i as u64))?;
    }
    let token = cfg.data_dir.join("admin.token");
    let password = cfg.data_dir.join("admin.password");
    let web = format!("http://{}/", hub.http_addr);
    let api = format!("http://{}/api/v1", hub.http_addr);
    info!("demo fleet of {devices} simulated routers started; the first incidents come within 15 s");
    println!(
        "\nOPMAS demo running.\n  web UI: {web}\n          sign in as admin, with the password in {}\n  API:    {api}\n          curl -s -H \"Authorization: Bearer $(cat {})\" {api}/findings\n  stop:   Ctrl-C\n",
        password.display(),
        token.display(),
    );
    hub.wait(shutdown).await
}

/// One simulated router: the edge loop fed by the line generator.
fn simulate(cfg: EdgeConfig, seed: u64) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let span = info_span!("edge", device = %cfg.hub.device_id);
    rt.block_on(
        async move {
            let (tx, rx) = mpsc::channel(opmas_edge::sources::LINE_QUEUE);
            tokio::spawn(generate(tx, seed));
            let stats = std::sync::Arc::new(opmas_edge::sources::SourceStats::default());
            opmas_edge::run::run(cfg, rx, stats, std::future::pending()).await;
        }
        .instrument(span),
    );
}

/// Writes realistic OpenWRT `logread` lines: WiFi clients, DHCP, firewall
/// drops, LAN SSH logins, and every 15–45 s one incident for one of the four
/// agents: an SSH brute force, a port scan, a station failing to
/// authenticate, a deauthentication storm, or the OOM killer. Attackers use
/// documentation-range addresses.
async fn generate(tx: mpsc::Sender<String>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ now_ms() as u64);
    let mut next_incident = tokio::time::Instant::now() + Duration::from_secs(rng.gen_range(3..12));
    let mut incident = rng.gen_range(0..5u32);
    let mut pid = 2000 + rng.gen_range(0..1000u32);
    loop {
        if tokio::time::Instant::now() >= next_incident {
            let burst = incident_lines(incident, &mut rng, &mut pid);
            for msg in burst {
                if tx.send(stamp(&msg)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
            }
            incident = (incident + 1) % 5;
            next_incident = tokio::time::Instant::now() + Duration::from_secs(rng.gen_range(15..45));
            continue;
        }
        let mac = format!("a4:5e:60:{:02x}:{:02x}:{:02x}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen::<u8>());
        let host = rng.gen_range(100..200);
        // Everyday traffic; kept below every agent's threshold, so that
        // the findings the demo shows are the incidents, not the noise.
        let msg = match rng.gen_range(0..12) {
            0 => format!("daemon.info hostapd: phy0-ap0: STA {mac} IEEE 802.11: associated (aid 3)"),
            1 => format!("daemon.info hostapd: phy0-ap0: STA {mac} WPA: pairwise key handshake completed (RSN)"),
            2..=5 => format!("daemon.info dnsmasq-dhcp[1]: DHCPACK(br-lan) 192.168.1.{host} {mac} phone"),
            6..=8 => fw_line(&format!("198.51.100.{}", rng.gen_range(1..255)), rng.gen_range(1..1024), &mut rng),
            9 => format!("daemon.info hostapd: phy0-ap0: STA {mac} IEEE 802.11: authenticated"),
            _ => {
                pid += 1;
                format!(
                    "authpriv.notice dropbear[{pid}]: Password auth succeeded for 'root' from 192.168.1.{host}:{}",
                    rng.gen_range(30000..65000)
                )
            }
        };
        if tx.send(stamp(&msg)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
    }
}

/// The lines of one incident (0: SSH brute force, 1: port scan, 2: a station
/// failing to authenticate, 3: deauthentication storm, 4: OOM kill).
fn incident_lines(which: u32, rng: &mut StdRng, pid: &mut u32) -> Vec<String> {
    let attacker = format!("{}.{}", ["203.0.113", "198.51.100", "192.0.2"][rng.gen_range(0..3)], rng.gen_range(1..255));
    let mut lines = Vec::new();
    match which {
        0 => {
            for _ in 0..rng.gen_range(6..14) {
                *pid += 1;
                let port = rng.gen_range(30000..65000);
                lines.push(format!("authpriv.info dropbear[{pid}]: Child connection from {attacker}:{port}"));
                lines.push(format!("authpriv.warn dropbear[{pid}]: Bad password attempt for 'root' from {attacker}:{port}"));
            }
        }
        1 => {
            for port in [21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 995, 1433, 1723, 3306, 3389, 5432, 5900, 8080, 8443, 9200] {
                lines.push(fw_line(&attacker, port, rng));
            }
        }
        2 => {
            let mac = format!("9e:e8:69:{:02x}:{:02x}:{:02x}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen::<u8>());
            for _ in 0..6 {
                lines.push(format!(
                    "daemon.notice hostapd: phy1-ap0: STA {mac} IEEE 802.11: did not acknowledge authentication response"
                ));
            }
        }
        3 => {
            for i in 0..24 {
                lines.push(format!(
                    "daemon.info hostapd: phy0-ap0: STA 5c:cf:7f:94:f6:{:02x} IEEE 802.11: deauthenticated due to inactivity (timer DEAUTH/REMOVE)",
                    i % 8
                ));
                lines.push(format!("daemon.notice hostapd: phy0-ap0: AP-STA-CONNECTED 5c:cf:7f:94:f6:{:02x}", i % 8));
            }
        }
        _ => lines.push(format!(
            "kern.err kernel: [{}.{:06}] Out of memory: Killed process {} (adblock.sh) total-vm:81234kB, anon-rss:30123kB, file-rss:0kB, shmem-rss:0kB",
            rng.gen_range(1000..99999),
            rng.gen_range(0..999999),
            rng.gen_range(2000..30000)
        )),
    }
    lines
}

/// A fw4 "reject wan in" kernel line for a TCP SYN from `src` to `port`.
fn fw_line(src: &str, port: u16, rng: &mut StdRng) -> String {
    format!(
        "kern.warn kernel: [{}.{:06}] reject wan in: IN=wan OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC={src} DST=192.0.2.10 LEN=44 TOS=0x00 PREC=0x00 TTL=240 ID={} PROTO=TCP SPT={} DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0",
        rng.gen_range(1000..99999),
        rng.gen_range(0..999999),
        rng.gen_range(1..65535),
        rng.gen_range(1024..65535)
    )
}

/// Prefixes `logread`'s timestamp (`Thu Dec  5 17:43:57 2024`) for now, UTC.
fn stamp(msg: &str) -> String {
    let secs = now_ms() / 1000;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let (y, m, d) = opmas_edge::date::civil_from_days(days);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{weekday} {} {d:>2} {:02}:{:02}:{:02} {y} {msg}",
        MONTHS[(m - 1) as usize],
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_lines_parse_as_logread_with_the_current_time() {
        let line = stamp("authpriv.warn dropbear[1]: Bad password attempt for 'root' from 192.0.2.1:5");
        let rec = opmas_edge::parse::parse_line(&line, opmas_edge::parse::Context::in_year(2000)).unwrap();
        let ts = rec.ts_ms.unwrap();
        assert!(now_ms().abs_diff(ts as i64) < 2_000, "{line}");
        assert_eq!(rec.program, Some("dropbear"));
    }
}
