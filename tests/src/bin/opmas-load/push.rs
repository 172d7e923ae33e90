//! `push`: a steady stream of findings at a chosen rate, through the
//! correlation rules, for the correlator's speed figures (10,000 findings/s
//! through 100 rules; incident latency p99 under 1 s).
//!
//! The routers are simulated in this process: real MQTT connections to the
//! hub's broker with real device credentials, sending signed finding
//! batches exactly as an edge's uplink does (consecutive sequences in one
//! epoch, postcard in a sealed envelope). No log is parsed on this
//! machine's two cores, so the rate offered is the rate asked for and what
//! is measured is the hub: `findings` measures the whole path with real
//! edges, whose parsing then takes the CPU the hub would have.
//!
//! Every router walks the same list of addresses at the same pace (finding
//! `k` of each router is about address `k`), so the first bench rule opens
//! an incident for each address once two routers have reported it, and the
//! later reports join it: per address one incident and members from every
//! router, as in a campaign working through a fleet.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opmas_e2e::{wait_for, Device, Hub};
use opmas_proto::msg::{Finding, FindingBatch, Severity, Stage, Status, Subject};
use opmas_proto::{Channel, DeviceId, Envelope, Secret, Topic};
use rumqttc::{AsyncClient, MqttOptions, QoS};

use super::{correlation, enrol_many, hub_pid, print_counters, print_hub_usage, print_incidents, put_rules, sample};

/// The shape of a push.
pub struct Push {
    pub routers: usize,
    /// Findings per second, over all routers.
    pub rate: u64,
    pub seconds: u64,
    pub rules: usize,
    /// How often each router sends a batch.
    pub batch_ms: u64,
    /// Give up waiting for the hub after the push this long.
    pub timeout: Duration,
}

/// Most findings in one message (an edge's batches are of this order).
const MAX_BATCH: u64 = 200;

pub fn push(dir: &Path, p: &Push) -> Result<()> {
    let hub = Hub::start(dir)?;
    put_rules(&hub, p.rules)?;
    let devices = enrol_many(&hub, p.routers)?;
    let pid = hub_pid(&hub)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let connected = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let per_router = p.rate as f64 / p.routers as f64;
    let mut tasks = Vec::new();
    for d in devices {
        let r = Router { device: d, per_router, seconds: p.seconds, batch: Duration::from_millis(p.batch_ms) };
        tasks.push(rt.spawn(r.run(hub.mqtt.to_string(), connected.clone(), sent.clone(), start_rx.clone())));
    }
    wait_for(Duration::from_secs(30), &format!("{} routers connected", p.routers), || {
        (connected.load(Ordering::Relaxed) >= p.routers).then_some(())
    })?;
    println!(
        "push: {} routers x {per_router:.0} findings/s = {} findings/s for {} s, a batch per router every {} ms, {} rules besides the shipped ones",
        p.routers, p.rate, p.seconds, p.batch_ms, p.rules
    );

    let counters = || -> (u64, u64) {
        let st = hub.stats().unwrap_or_default();
        (st["findings_stored"].as_u64().unwrap_or(0), st["findings_correlated"].as_u64().unwrap_or(0))
    };
    let (stored0, correlated0) = counters();
    let before = sample(pid);
    let t0 = Instant::now();
    start_tx.send_replace(Some(t0));
    let mut peak_rss = before.rss_kib;
    let mut curve: Vec<(f64, u64, u64)> = Vec::new();
    let mut at_end: Option<(u64, u64, f64)> = None;
    let (mut stored_all, mut correlated_all) = (None, None);
    let deadline = t0 + Duration::from_secs(p.seconds) + p.timeout;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let t = t0.elapsed().as_secs_f64();
        let (s, c) = counters();
        let (s, c) = (s - stored0, c - correlated0);
        curve.push((t, s, c));
        peak_rss = peak_rss.max(sample(pid).rss_kib);
        let pushing = tasks.iter().any(|t| !t.is_finished());
        if t >= p.seconds as f64 && at_end.is_none() {
            at_end = Some((s, c, t));
        }
        let total = sent.load(Ordering::Relaxed);
        if !pushing {
            if s >= total && stored_all.is_none() {
                stored_all = Some(t);
            }
            if c >= total && correlated_all.is_none() {
                correlated_all = Some(t);
            }
            if stored_all.is_some() && correlated_all.is_some() {
                break;
            }
        }
    }
    let after = sample(pid);
    let wall = t0.elapsed().as_secs_f64();
    for t in tasks {
        rt.block_on(t).context("a router task")??;
    }
    let total = sent.load(Ordering::Relaxed);
    let (end_stored, end_correlated, pushed_for) = at_end.unwrap_or((0, 0, wall));

    println!("== push");
    println!(
        "findings sent                         {total} in {pushed_for:.2} s: {:.0}/s offered",
        total as f64 / pushed_for
    );
    println!(
        "stored while pushing                  {end_stored}: {:.0}/s; all stored after {}",
        end_stored as f64 / pushed_for,
        done(stored_all)
    );
    println!(
        "correlated while pushing              {end_correlated}: {:.0}/s; all correlated after {}",
        end_correlated as f64 / pushed_for,
        done(correlated_all)
    );
    let step = (curve.len() / 12).max(1);
    let line: Vec<String> = curve.iter().step_by(step).map(|(t, s, c)| format!("{t:.1}s:{s}/{c}")).collect();
    println!("stored/correlated over time           {}", line.join(" "));
    let db = format!("sqlite://{}?mode=ro", hub.data_dir.join("opmas.db").display());
    let c = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(correlation(&db, t0, p.timeout))?;
    print_incidents(c.latencies);
    print_hub_usage(before, peak_rss, after, wall);
    print_counters(&hub.stats()?);
    if stored_all.is_none() || correlated_all.is_none() {
        bail!("the hub did not store and correlate all {total} findings within {} s of the push", p.timeout.as_secs());
    }
    Ok(())
}

fn done(at: Option<f64>) -> String {
    at.map_or_else(|| "NOT DONE".to_string(), |t| format!("{t:.2} s"))
}

/// One simulated router.
struct Router {
    device: Device,
    per_router: f64,
    seconds: u64,
    batch: Duration,
}

impl Router {
    /// Connects, says it is online, waits for the start, then sends its
    /// share of the rate until the time is up; adds what it sent to `sent`.
    async fn run(
        self,
        addr: String,
        connected: Arc<AtomicUsize>,
        sent: Arc<AtomicU64>,
        mut start: tokio::sync::watch::Receiver<Option<Instant>>,
    ) -> Result<()> {
        let id = DeviceId::new(self.device.id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let secret = Secret::from_hex(&self.device.secret).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (host, port) = addr.rsplit_once(':').context("broker address")?;
        let mut opts = MqttOptions::new(self.device.id.clone(), host, port.parse()?);
        opts.set_credentials(self.device.id.clone(), self.device.secret.clone());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut el) = AsyncClient::new(opts, 64);
        // The event loop sends what is published; it runs beside the sender.
        let up = connected.clone();
        let poll = tokio::spawn(async move {
            let mut counted = false;
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) if !counted => {
                        counted = true;
                        up.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let mut msg_seq = 1u64;
        let online = Envelope::sealed(id.clone(), msg_seq, now_ms(), &Status::Online, &secret)?;
        client.publish(Topic::new(id.clone(), Channel::Status).to_string(), QoS::AtLeastOnce, true, online).await?;
        let t0 = loop {
            if let Some(t) = *start.borrow_and_update() {
                break t;
            }
            start.changed().await?;
        };
        let epoch = rand::random::<u64>() >> 1;
        let topic = Topic::new(id.clone(), Channel::Finding).to_string();
        let mut produced = 0u64;
        let mut tick = tokio::time::interval(self.batch);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let end = Duration::from_secs(self.seconds);
        loop {
            tick.tick().await;
            let elapsed = t0.elapsed().min(end);
            let due = (self.per_router * elapsed.as_secs_f64()) as u64;
            while produced < due {
                let n = (due - produced).min(MAX_BATCH);
                let now = now_ms();
                let findings = (produced + 1..=produced + n).map(|seq| finding(seq, now)).collect();
                let batch = FindingBatch { epoch, floor: 1, round: 0, findings };
                msg_seq += 1;
                let body = Envelope::sealed(id.clone(), msg_seq, now, &batch, &secret)?;
                client.publish(topic.as_str(), QoS::AtLeastOnce, false, body).await?;
                produced += n;
            }
            if elapsed >= end {
                break;
            }
        }
        sent.fetch_add(produced, Ordering::Relaxed);
        // Let the event loop send the last batches before it goes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        poll.abort();
        Ok(())
    }
}

/// The router's `seq`th finding: a brute force from address `seq`.
fn finding(seq: u64, now: u64) -> Finding {
    let ip = Ipv4Addr::from(0x0a00_0000u32.wrapping_add(seq as u32));
    Finding {
        seq,
        agent: "security".into(),
        kind: "ssh.bruteforce".into(),
        severity: Severity::HIGH,
        subject: Subject {
            src_ip: Some(ip.into()),
            user: Some("root".into()),
            service: Some("dropbear".into()),
            ..Subject::default()
        },
        count: 5,
        first_ms: now,
        last_ms: now,
        summary: format!("5 failed SSH logins from {ip} (dropbear)"),
        evidence: vec![format!("dropbear[1234]: Bad password attempt for 'root' from {ip}:52314")],
        stage: Stage::New,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
