//! Fills a hub data directory with a large fleet for `scripts/bench-ui.sh`:
//! DEVICES enrolled routers, each online with a heartbeat and its agents,
//! and FINDINGS findings in all spread over the last seven days, stored
//! through the same `Store::apply_uplink` that ingest uses.
//!
//! ```text
//! fill_ui DATA_DIR DEVICES FINDINGS
//! ```

use std::collections::HashMap;

use anyhow::{Context, Result};
use opmas_hub::store::uplink::{Apply, Uplink};
use opmas_hub::store::{now_ms, Store};
use opmas_proto::msg::{
    AgentState, AgentStatus, Counters, Finding, FindingBatch, Heartbeat, Severity, SpoolStats, Stage, Status, Subject,
};
use opmas_proto::DeviceId;

const KINDS: [(&str, &str); 8] = [
    ("security", "ssh.bruteforce"),
    ("security", "ssh.user_enum"),
    ("security", "luci.bruteforce"),
    ("wifi", "wifi.deauth_flood"),
    ("wifi", "wifi.auth_failures"),
    ("network", "net.port_scan"),
    ("network", "net.dhcp_exhausted"),
    ("system", "sys.oom_kill"),
];

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, devices, findings] = &args[..] else {
        anyhow::bail!("usage: fill_ui DATA_DIR DEVICES FINDINGS");
    };
    let devices: u64 = devices.parse().context("DEVICES")?;
    let findings: u64 = findings.parse().context("FINDINGS")?;
    let dir = std::path::PathBuf::from(dir);
    opmas_hub::store::create_private_dir(&dir)?;
    let store = Store::open_sqlite(&dir.join("opmas.db")).await?;
    let now = now_ms();
    let week = 7 * 86_400_000u64;
    let per_device = findings / devices.max(1);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift: the same fleet every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for d in 0..devices {
        let id = DeviceId::new(format!("gw-{d:04}"))?;
        store.insert_device(id.as_str(), &format!("router {d}"), &"ab".repeat(32), now).await?;
        let epoch = 1000 + d;
        let agents = ["security", "wifi", "network", "system"]
            .iter()
            .map(|n| AgentStatus {
                name: (*n).into(),
                state: if d % 97 == 0 && *n == "wifi" { AgentState::Stopped } else { AgentState::Running },
                events: 1000 + d,
                findings: per_device / 4,
                evicted: 0,
                restarts: 0,
                last_error: None,
                excluded: 0,
            })
            .collect();
        let hb = Heartbeat {
            epoch,
            uptime_s: 3600 * (d % 200),
            interval_s: 30,
            version: if d % 10 == 0 { "0.0.9".into() } else { "0.1.0".into() },
            config_version: 1,
            config_error: None,
            spool: SpoolStats::default(),
            agents,
            counters: Counters::default(),
            load_milli: Some(150),
            rss_kib: Some(2200),
        };
        let mut messages = vec![(id.clone(), Uplink::Status(Status::Online)), (id.clone(), Uplink::Heartbeat(hb))];
        let mut batch = Vec::with_capacity(per_device as usize);
        for seq in 1..=per_device {
            let (agent, kind) = KINDS[(next() % KINDS.len() as u64) as usize];
            let first = now as u64 - next() % week;
            let ip = next();
            batch.push(Finding {
                seq,
                agent: agent.into(),
                kind: kind.into(),
                severity: Severity::new(1 + (next() % 5) as u8).unwrap_or(Severity::HIGH),
                subject: Subject {
                    src_ip: Some(std::net::IpAddr::from([198, 51, (ip >> 8) as u8, ip as u8])),
                    ..Default::default()
                },
                count: 5 + (next() % 100) as u32,
                first_ms: first,
                last_ms: first + next() % 600_000,
                summary: format!("{kind} from 198.51.{}.{}", (ip >> 8) as u8, ip as u8),
                evidence: vec!["Mon Dec  1 10:00:00 2026 authpriv.warn dropbear[1]: Bad password attempt".into()],
                stage: if seq % 50 == 0 { Stage::New } else { Stage::Closed },
            });
        }
        for chunk in batch.chunks(5_000) {
            let b = FindingBatch { epoch, floor: 1, round: 0, findings: chunk.to_vec() };
            messages.push((id.clone(), Uplink::Findings(b)));
            store.apply_uplink(&messages, &HashMap::new(), Apply::Together, Some(now)).await?;
            messages.clear();
        }
        if d % 100 == 99 {
            eprintln!("{} devices, {} findings", d + 1, (d + 1) * per_device);
        }
    }
    Ok(())
}
