//! Load driver behind `scripts/load-findings.sh`: reproduces a fleet's worst
//! moments against the real binaries on loopback and prints the figures.
//!
//! - `findings`: N real `opmas-edge` processes each get a burst of
//!   brute-forcing sources appended to the log they follow, all at once,
//!   while a probe router is attacked once a second. Prints findings
//!   produced, stored, dropped and unaccounted (counted straight from the
//!   hub's database), time to done, findings/s, probe latency, hub RSS and
//!   CPU.
//!   With `--replicas`, the same burst goes to two hub replicas on
//!   mosquitto and PostgreSQL (`opmas_e2e::cluster`) instead of one hub
//!   on its embedded broker and SQLite.
//! - `push`: simulated routers send signed finding batches at a steady
//!   rate through correlation rules; prints the rates stored and
//!   correlated, incident latency and hub RSS (`push.rs`).
//! - `reconnect`: N simulated routers (real MQTT connections with real
//!   device credentials and signed status messages, in this one process)
//!   connect; the hub is killed and restarted several times. Prints hub RSS
//!   per connected router and the time until every router is back.
//!
//! Every loop here is bounded in count and time and talks to loopback only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use opmas_e2e::cluster::Replicas;
use opmas_e2e::{dropbear_attack, dropbear_burst, wait_for, Device, Edge, Hub};
use serde_json::Value;

mod push;

#[derive(Parser)]
#[command(about = "OPMAS load scenarios against the real binaries (on loopback)")]
struct Cli {
    /// Keep the working directory (hub and edge logs, the hub's database)
    /// and print where it is, instead of deleting it at the end.
    #[arg(long, global = true)]
    keep: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// A burst of brute-force findings from many edges at once, and a probe router.
    Findings {
        /// Edge processes that burst.
        #[arg(long, default_value_t = 20)]
        edges: usize,
        /// Brute-forcing sources per edge (one finding each).
        #[arg(long, default_value_t = 5_000)]
        sources: usize,
        /// Password failures per source: 5 is the threshold (one finding);
        /// 6 adds the flood's update to each.
        #[arg(long, default_value_t = 5)]
        failures: usize,
        /// Each edge's spool budget (UCI `spool_bytes`); the router default is 1 MiB.
        #[arg(long, default_value_t = 8 << 20)]
        spool_bytes: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Run the bursting edges at this nice level instead of idle
        /// priority. By default they get only the CPU the hub and the probe
        /// router leave, as on a real fleet where every router has its own
        /// CPU; with a nice level they compete with the hub for this
        /// machine's cores, and the probe's latency then measures the
        /// scheduler as much as the hub.
        #[arg(long)]
        fleet_nice: Option<i32>,
        /// Correlation rules to load before the burst (see `bench_rules`);
        /// 0 keeps the shipped ones only. With rules, the correlator's
        /// figures are printed too.
        #[arg(long, default_value_t = 0)]
        rules: usize,
        /// Two hub replicas on mosquitto and PostgreSQL instead of one hub
        /// on its embedded broker and SQLite.
        #[arg(long)]
        replicas: bool,
    },
    /// A steady rate of findings from simulated routers through the
    /// correlation rules (the correlator's speed).
    Push {
        /// Simulated routers, each sending its share of the rate.
        #[arg(long, default_value_t = 20)]
        routers: usize,
        /// Findings per second, over all routers.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// How long to push.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Correlation rules to load besides the shipped ones (see `bench_rules`).
        #[arg(long, default_value_t = 100)]
        rules: usize,
        /// How often each router sends a batch, in ms.
        #[arg(long, default_value_t = 100)]
        batch_ms: u64,
        /// Give up waiting for the hub this many seconds after the push.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Many routers connected; the hub restarted under them.
    Reconnect {
        #[arg(long, default_value_t = 2_000)]
        routers: usize,
        #[arg(long, default_value_t = 5)]
        restarts: usize,
        /// Give up on one reconnect after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut dir = tempfile::Builder::new().prefix("opmas-load-").tempdir()?;
    if cli.keep {
        dir.disable_cleanup(true);
        println!("working directory (kept): {}", dir.path().display());
    }
    match cli.scenario {
        Scenario::Findings { edges, sources, failures, spool_bytes, timeout, fleet_nice, rules, replicas } => {
            let burst = Burst { edges, sources, failures, spool_bytes, fleet_nice, rules };
            let target = if replicas {
                Target::Replicas(Replicas::start(dir.path(), 2, "")?.context("PostgreSQL is not installed")?)
            } else {
                Target::One(Hub::start(dir.path())?)
            };
            findings(dir.path(), &target, &burst, Duration::from_secs(timeout))
        }
        Scenario::Push { routers, rate, seconds, rules, batch_ms, timeout } => {
            let p = push::Push { routers, rate, seconds, rules, batch_ms, timeout: Duration::from_secs(timeout) };
            push::push(dir.path(), &p)
        }
        Scenario::Reconnect { routers, restarts, timeout } => {
            reconnect(dir.path(), routers, restarts, Duration::from_secs(timeout))
        }
    }
}

/// Resident and peak memory (KiB) and CPU seconds of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss_kib: u64,
    hwm_kib: u64,
    cpu_s: f64,
}

fn sample(pid: u32) -> ProcSample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let cpu_s = (ticks(11) + ticks(12)) / 100.0;
    ProcSample { rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:"), cpu_s }
}

fn hub_pid(hub: &Hub) -> Result<u32> {
    hub.proc.as_ref().map(|p| p.pid()).context("hub not running")
}

/// The sum of [`sample`] over `pids` (the hub replicas).
fn sample_all(pids: &[u32]) -> ProcSample {
    pids.iter().map(|&p| sample(p)).fold(ProcSample::default(), |a, b| ProcSample {
        rss_kib: a.rss_kib + b.rss_kib,
        hwm_kib: a.hwm_kib + b.hwm_kib,
        cpu_s: a.cpu_s + b.cpu_s,
    })
}

/// The hub(s) under load.
enum Target {
    /// One hub on its embedded broker and SQLite.
    One(Hub),
    /// Hub replicas on mosquitto and PostgreSQL.
    Replicas(Replicas),
}

impl Target {
    /// The hub the API calls go to (any replica answers any).
    fn api(&self) -> &Hub {
        match self {
            Target::One(h) => h,
            Target::Replicas(r) => &r.hubs[0],
        }
    }

    fn hubs(&self) -> Vec<&Hub> {
        match self {
            Target::One(h) => vec![h],
            Target::Replicas(r) => r.hubs.iter().collect(),
        }
    }

    fn pids(&self) -> Result<Vec<u32>> {
        self.hubs().into_iter().map(hub_pid).collect()
    }

    fn enrol(&self, name: &str) -> Result<Device> {
        match self {
            Target::One(h) => h.enrol(name),
            Target::Replicas(r) => r.enrol(name),
        }
    }

    fn start_edge(&self, dir: &Path, d: &Device, opts: &str) -> Result<Edge> {
        match self {
            Target::One(h) => Edge::start_opts(dir, h, d, opts),
            Target::Replicas(r) => Edge::start_url(dir, d, &r.broker_url(), opts),
        }
    }

    /// The database, as a URL for sqlx's Any driver.
    fn db_url(&self) -> String {
        match self {
            Target::One(h) => format!("sqlite://{}?mode=ro", h.data_dir.join("opmas.db").display()),
            Target::Replicas(r) => r.db_url.clone(),
        }
    }

    /// The counters of `/stats`, summed over the replicas.
    fn stats(&self) -> Result<Value> {
        let mut sum = serde_json::Map::new();
        for h in self.hubs() {
            for (k, v) in h.stats()?.as_object().into_iter().flatten() {
                let n = sum.get(k).and_then(Value::as_u64).unwrap_or(0) + v.as_u64().unwrap_or(0);
                sum.insert(k.clone(), Value::from(n));
            }
        }
        Ok(Value::Object(sum))
    }

    fn log(&self) -> String {
        self.hubs().iter().map(|h| h.log()).collect::<Vec<_>>().join("\n")
    }

    fn describe(&self) -> String {
        match self {
            Target::One(h) => format!("one hub, embedded broker, SQLite ({})", h.data_dir.display()),
            Target::Replicas(r) => format!("{} hub replicas, mosquitto, PostgreSQL ({})", r.hubs.len(), r.db_url),
        }
    }
}

/// A read-only connection to the hub's database, whichever it is.
async fn connect(db: &str) -> Result<sqlx::AnyConnection> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    Ok(sqlx::AnyConnection::connect(db).await?)
}

/// What the hub's database holds for one device's epoch.
#[derive(Debug, Default, Clone, Copy)]
struct Stored {
    rows: u64,
    updates: u64,
    upto: u64,
    dropped: u64,
}

async fn stored(db: &str, device: &str, epoch: u64) -> Result<Stored> {
    let mut conn = connect(db).await?;
    let one = |sql: &'static str| sqlx::query_as::<_, (i64,)>(sql).bind(device).bind(epoch as i64);
    let (rows,) = one("SELECT COUNT(*) FROM findings WHERE device_id = $1 AND epoch = $2").fetch_one(&mut conn).await?;
    let (updates,) =
        one("SELECT COUNT(*) FROM finding_updates WHERE device_id = $1 AND epoch = $2").fetch_one(&mut conn).await?;
    let mark: Option<(i64, i64)> =
        sqlx::query_as("SELECT upto, dropped FROM deliveries WHERE device_id = $1 AND epoch = $2")
            .bind(device)
            .bind(epoch as i64)
            .fetch_optional(&mut conn)
            .await?;
    let (upto, dropped) = mark.unwrap_or((0, 0));
    Ok(Stored { rows: rows as u64, updates: updates as u64, upto: upto as u64, dropped: dropped as u64 })
}

async fn repeated_campaigns(db: &str) -> Result<u64> {
    let mut conn = connect(db).await?;
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT 1 FROM findings WHERE kind = 'ssh.bruteforce'
                               GROUP BY device_id, src_ip HAVING COUNT(*) > 1) AS r",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(n as u64)
}

/// The edge's own account, from its latest heartbeat.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct EdgeAccount {
    epoch: u64,
    produced: u64,
    depth: u64,
    acked_upto: u64,
    dropped: u64,
    /// The hub's watermark for this epoch (`deliveries`).
    hub_upto: u64,
}

fn edge_account(hub: &Hub, d: &Device) -> Option<EdgeAccount> {
    let (status, v) = hub.get(&format!("/devices/{}", d.id)).ok()?;
    if status != 200 {
        return None;
    }
    let hb = &v["heartbeat"];
    let epoch_text = hb["epoch"].as_str()?;
    let epoch: u64 = epoch_text.parse().ok()?;
    let hub_upto = v["deliveries"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["epoch"].as_str() == Some(epoch_text)))
        .and_then(|d| d["acked_upto"].as_u64())
        .unwrap_or(0);
    Some(EdgeAccount {
        hub_upto,
        epoch,
        produced: hb["counters"]["findings"].as_u64()?,
        depth: hb["spool"]["depth"].as_u64()?,
        acked_upto: hb["spool"]["acked_upto"].as_u64()?,
        dropped: hb["spool"]["dropped"].as_u64()?,
    })
}

/// `p50 .. ms, p99 .. ms, max .. ms` of `sorted`.
fn spread(sorted: &[f64]) -> String {
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or(f64::NAN)
    )
}

/// The incidents opened and their latencies (ms, any order).
fn print_incidents(mut latencies: Vec<f64>) {
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "incidents opened                      {} (latency from the finding stored to the incident stored: {})",
        latencies.len(),
        spread(&latencies)
    );
}

/// The hub's memory and CPU over a scenario of `wall_s` seconds.
fn print_hub_usage(before: ProcSample, peak_rss_kib: u64, after: ProcSample, wall_s: f64) {
    println!(
        "hub RSS                               {} MiB before, {} MiB peak (VmHWM {} MiB)",
        before.rss_kib / 1024,
        peak_rss_kib / 1024,
        after.hwm_kib / 1024
    );
    let cpu = after.cpu_s - before.cpu_s;
    println!(
        "hub CPU                               {cpu:.1} s over {wall_s:.1} s ({:.0}% of one core)",
        100.0 * cpu / wall_s
    );
}

/// The hub's counters of trouble with what it was sent (`/stats`).
fn print_counters(stats: &Value) {
    println!(
        "hub counters                          gaps {} duplicate batches {} store errors {}",
        stats["batches_gap"], stats["batches_duplicate"], stats["store_errors"]
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The shape of a findings burst.
struct Burst {
    edges: usize,
    sources: usize,
    failures: usize,
    spool_bytes: usize,
    /// `None`: the fleet runs at idle priority (`SCHED_IDLE`).
    fleet_nice: Option<i32>,
    /// Correlation rules loaded before the burst.
    rules: usize,
}

/// Lowers a fleet edge's CPU priority (see `--fleet-nice`).
fn deprioritise(pid: u32, nice: Option<i32>) -> Result<()> {
    let pid = pid.to_string();
    let mut cmd = match nice {
        None => {
            let mut c = std::process::Command::new("chrt");
            c.args(["--idle", "-p", "0", &pid]);
            c
        }
        Some(n) => {
            let mut c = std::process::Command::new("renice");
            c.args(["-n", &n.to_string(), "-p", &pid]);
            c
        }
    };
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn findings(dir: &Path, target: &Target, burst: &Burst, timeout: Duration) -> Result<()> {
    let &Burst { edges, sources, failures, spool_bytes, fleet_nice, rules } = burst;
    let hub = target.api();
    put_rules(hub, rules)?;
    let pids = target.pids()?;
    println!("{}: hub pids {pids:?}", target.describe());
    let opts = format!("\toption spool_bytes '{spool_bytes}'\n");
    let mut fleet = Vec::new();
    for i in 0..edges {
        let d = target.enrol(&format!("gw-load-{i:02}"))?;
        let e = target.start_edge(dir, &d, &opts)?;
        // The simulated fleet shares this machine's two cores with the hub;
        // real routers have their own. Lower priority keeps twenty parsing
        // edges from starving the hub and the probe router, whose timing
        // is what is measured.
        if let Some(pid) = e.proc.as_ref().map(|p| p.pid()) {
            deprioritise(pid, fleet_nice)?;
        }
        fleet.push((d, e));
    }
    let probe_dev = target.enrol("gw-probe")?;
    let probe = target.start_edge(dir, &probe_dev, &opts)?;
    for d in fleet.iter().map(|(d, _)| d).chain([&probe_dev]) {
        wait_for(Duration::from_secs(20), &format!("{} online", d.id), || {
            let (_, v) = hub.get(&format!("/devices/{}", d.id)).ok()?;
            (v["status"] == "online" && !v["heartbeat"].is_null()).then_some(())
        })?;
    }

    let lines = dropbear_burst(sources, failures);
    let priority = fleet_nice.map_or("idle priority".to_string(), |n| format!("nice {n}"));
    println!(
        "burst: {edges} edges ({priority}) x {sources} sources x {failures} failures ({} lines per edge), spool_bytes {spool_bytes}",
        lines.len()
    );
    let before = sample_all(&pids);
    let t0 = Instant::now();
    for (_, e) in &fleet {
        e.append(&lines)?;
    }
    let appended = t0.elapsed();

    let done = AtomicBool::new(false);
    let mut latencies: Vec<f64> = Vec::new();
    let mut settled_at: BTreeMap<String, Duration> = BTreeMap::new();
    // Per device: the hub's watermark and when it last moved.
    let mut moved_at: BTreeMap<String, (u64, Duration)> = BTreeMap::new();
    let mut peak_rss = before.rss_kib;
    let mut timeline: Vec<(f64, u64)> = Vec::new();
    // (time, findings correlated, findings stored) per sample.
    let mut correlated: Vec<(Duration, u64, u64)> = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        let probe_thread = s.spawn(|| probe_loop(hub, &probe, &probe_dev, &done));
        let deadline = t0 + timeout;
        while settled_at.len() < fleet.len() && Instant::now() < deadline {
            for (d, _) in &fleet {
                if settled_at.contains_key(&d.id) {
                    continue;
                }
                if let Some(a) = edge_account(hub, d) {
                    let m = moved_at.entry(d.id.clone()).or_insert((0, Duration::ZERO));
                    if a.hub_upto > m.0 {
                        *m = (a.hub_upto, t0.elapsed());
                    }
                    if a.produced >= sources as u64 && a.depth == 0 && a.acked_upto == a.produced {
                        settled_at.insert(d.id.clone(), t0.elapsed());
                    }
                }
            }
            let now = sample_all(&pids);
            peak_rss = peak_rss.max(now.rss_kib);
            if let Ok(st) = target.stats() {
                let n = st["findings_stored"].as_u64().unwrap_or(0) + st["findings_updated"].as_u64().unwrap_or(0);
                timeline.push((t0.elapsed().as_secs_f64(), n));
                let c = st["findings_correlated"].as_u64().unwrap_or(0);
                let stored_now = st["findings_stored"].as_u64().unwrap_or(0);
                correlated.push((t0.elapsed(), c, stored_now));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        done.store(true, Ordering::Relaxed);
        latencies = probe_thread.join().map_err(|_| anyhow::anyhow!("probe thread panicked"))??;
        Ok(())
    })?;
    let after = sample_all(&pids);
    let wall = t0.elapsed();

    // The account, per device, from the edges' heartbeats and the database.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let db = target.db_url();
    let (mut produced, mut stored_seqs, mut rows, mut updates, mut hub_dropped, mut edge_dropped, mut unaccounted) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0i64);
    for (d, _) in &fleet {
        let a = edge_account(hub, d).unwrap_or_default();
        let st = rt.block_on(stored(&db, &d.id, a.epoch))?;
        produced += a.produced;
        rows += st.rows;
        updates += st.updates;
        stored_seqs += st.rows + st.updates;
        hub_dropped += st.dropped;
        edge_dropped += a.dropped;
        let missing = a.produced as i64 - (st.rows + st.updates) as i64 - st.dropped as i64;
        unaccounted += missing;
        if missing != 0 || st.dropped > a.dropped {
            println!(
                "  {}: produced {} stored {} (+{} updates) dropped(hub) {} dropped(edge) {} watermark {} -> unaccounted {}",
                d.id, a.produced, st.rows, st.updates, st.dropped, a.dropped, st.upto, missing
            );
        }
    }
    let repeats = rt.block_on(repeated_campaigns(&db))?;
    let stats = target.stats().unwrap_or(Value::Null);
    let log = target.log();
    let silent_offline = log.matches("device status (silent)").count();
    // Done: when the last watermark reached what its edge produced (the
    // heartbeats, which confirm it, come only every 2 s).
    let done_in = moved_at.values().map(|(_, t)| *t).max();
    println!("probe latencies (ms, in order)        {:?}", latencies.iter().map(|l| *l as u64).collect::<Vec<_>>());
    latencies.sort_by(|a, b| a.total_cmp(b));

    println!("== findings burst");
    println!("findings expected (edges' own count)  {produced}");
    println!("  stored (database rows + updates)   {stored_seqs} ({rows} rows, {updates} updates)");
    println!("  dropped by edge spools (hub saw)   {hub_dropped} (the edges count {edge_dropped})");
    println!("  unaccounted                        {unaccounted}");
    println!("  one brute force stored twice       {repeats}");
    match done_in {
        Some(t) if settled_at.len() == fleet.len() => {
            println!(
                "time to done                          {:.2} s (appending took {:.2} s)",
                t.as_secs_f64(),
                appended.as_secs_f64()
            );
            println!("findings/s                            {:.0}", stored_seqs as f64 / t.as_secs_f64());
        }
        _ => println!(
            "time to done                          NOT DONE after {:.0} s ({} of {} edges settled)",
            wall.as_secs_f64(),
            settled_at.len(),
            fleet.len()
        ),
    }
    println!("probe latency (n={})                  {}", latencies.len(), spread(&latencies));
    print_hub_usage(before, peak_rss, after, wall.as_secs_f64());
    if let Target::Replicas(r) = target {
        let m = sample(r.mosquitto.pid());
        println!("  (hub figures: the sum of {} replicas)", r.hubs.len());
        println!(
            "broker RSS (mosquitto)                {} MiB at the end (VmHWM {} MiB), CPU {:.1} s",
            m.rss_kib / 1024,
            m.hwm_kib / 1024,
            m.cpu_s
        );
    }
    println!("routers marked offline while alive    {silent_offline}");
    print_counters(&stats);
    let curve: Vec<String> =
        timeline.iter().step_by((timeline.len() / 12).max(1)).map(|(t, n)| format!("{t:.1}s:{n}")).collect();
    println!("stored over time                      {}", curve.join(" "));
    if rules > 0 {
        let mut c = rt.block_on(correlation(&db, t0, timeout))?;
        // Sampled during the burst: the first moment the correlator had
        // taken every row stored by the end.
        if let Some((t, _, _)) = correlated.iter().find(|(_, n, _)| *n as i64 >= c.findings) {
            c.done = Some(*t);
        }
        println!("== correlation ({rules} rules besides the shipped ones)");
        match c.done {
            Some(t) => println!(
                "findings correlated                   {} in {:.2} s from the burst: {:.0}/s",
                c.findings,
                t.as_secs_f64(),
                c.findings as f64 / t.as_secs_f64()
            ),
            None => println!("findings correlated                   NOT DONE: cursor {} of {}", c.cursor, c.last),
        }
        let not_done = c.done.is_none();
        print_incidents(c.latencies);
        println!("hub RSS after correlation             {} MiB", sample_all(&pids).rss_kib / 1024);
        if not_done {
            bail!("the correlator did not take every finding within {} s", timeout.as_secs());
        }
    }
    if unaccounted != 0 {
        bail!("{unaccounted} findings unaccounted");
    }
    Ok(())
}

/// `n` rules that all look at every brute force: one that fires for each
/// address seen by two routers (the burst's addresses are the same on
/// every edge), and others of each type that keep state and never fire
/// (a second step that never comes, counts never reached), so that each
/// finding costs all of them.
fn bench_rules(n: usize) -> Vec<Value> {
    let mut rules = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-{i:03}");
        let r = match i % 4 {
            0 if i == 0 => serde_json::json!({ "name": name, "type": "threshold", "severity": "high", "window": "1h",
                "key": "src_ip", "count": 2, "devices": 2, "match": [{ "kind": "ssh.bruteforce" }] }),
            0 => serde_json::json!({ "name": name, "type": "threshold", "severity": "low", "window": "1h",
                "key": "src_ip", "count": 1000, "match": [{ "kind": "ssh.*" }] }),
            1 => serde_json::json!({ "name": name, "type": "all", "severity": "medium", "window": "30m",
                "key": "src_ip", "match": [{ "kind": "ssh.bruteforce" }, { "kind": format!("never.{i}") }] }),
            2 => serde_json::json!({ "name": name, "type": "sequence", "severity": "medium", "window": "30m",
                "key": "src_ip", "match": [{ "agent": "security" }, { "kind": format!("never.{i}") }] }),
            _ => serde_json::json!({ "name": name, "type": "threshold", "severity": "low", "window": "10m",
                "key": "device", "count": 1000, "devices": 2, "match": [{ "min_severity": "medium" }] }),
        };
        rules.push(r);
    }
    rules
}

/// Stores `n` of [`bench_rules`] through the API.
fn put_rules(hub: &Hub, n: usize) -> Result<()> {
    for rule in bench_rules(n) {
        let (status, v) =
            hub.request("PUT", &format!("/rules/{}", rule["name"].as_str().unwrap_or("")), None, Some(&rule))?;
        if status != 201 {
            bail!("PUT rule: {status} {v}");
        }
    }
    Ok(())
}

/// What the correlator did with the burst.
struct Correlation {
    findings: i64,
    cursor: i64,
    last: i64,
    /// When its cursor reached the last finding, from the burst's start.
    done: Option<Duration>,
    /// Per incident: ms from the finding that completed it stored to it stored.
    latencies: Vec<f64>,
}

async fn correlation(db: &str, t0: Instant, timeout: Duration) -> Result<Correlation> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db).await?;
    let (findings, last): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM findings").fetch_one(&pool).await?;
    let deadline = Instant::now() + timeout;
    let mut cursor = 0;
    let mut done = None;
    while Instant::now() < deadline {
        cursor = sqlx::query_scalar("SELECT finding_id FROM correlator_cursor WHERE id = 1")
            .fetch_optional(&pool)
            .await?
            .unwrap_or(0);
        if cursor >= last {
            done = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies: Vec<i64> = sqlx::query_scalar(
        "SELECT i.opened_ms - e.at_ms FROM incidents i JOIN incident_events e ON e.incident_id = i.id AND e.kind = 'opened'
          WHERE i.opened_ms IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    Ok(Correlation { findings, cursor, last, done, latencies: latencies.into_iter().map(|l| l as f64).collect() })
}

/// Attacks the probe router every 300 ms with a fresh address and measures
/// how long until the hub's API shows the finding. Ends when `done` is set.
fn probe_loop(hub: &Hub, probe: &Edge, d: &Device, done: &AtomicBool) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    let mut n = 0u32;
    while !done.load(Ordering::Relaxed) && n < 1000 {
        n += 1;
        let ip = format!("203.0.{}.{}", 113 + n / 250, n % 250 + 1);
        let sent = Instant::now();
        probe.append(&dropbear_attack(&ip, 5))?;
        let found = wait_for(Duration::from_secs(60), &format!("probe {ip}"), || {
            let (_, v) = hub.get(&format!("/findings?device={}&kind=ssh.bruteforce&limit=3", d.id)).ok()?;
            v["findings"].as_array()?.iter().any(|f| f["src_ip"] == ip.as_str()).then_some(())
        });
        match found {
            Ok(()) => out.push(sent.elapsed().as_secs_f64() * 1000.0),
            Err(e) => println!("  {e}"),
        }
        std::thread::sleep(Duration::from_millis(300).saturating_sub(sent.elapsed()));
    }
    Ok(out)
}

fn reconnect(dir: &Path, routers: usize, restarts: usize, timeout: Duration) -> Result<()> {
    let mut hub = Hub::start(dir)?;
    println!("enrolling {routers} routers ...");
    let devices = enrol_many(&hub, routers)?;
    let idle = sample(hub_pid(&hub)?);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for d in &devices {
        rt.spawn(sim_router(hub.mqtt.to_string(), d.clone(), connected.clone(), stop.clone()));
    }
    let t = Instant::now();
    wait_all(&connected, routers, timeout).context("first connect")?;
    println!("first connect of {routers}: {:.2} s", t.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(3));
    let full = sample(hub_pid(&hub)?);
    let per = (full.rss_kib.saturating_sub(idle.rss_kib)) as f64 / routers as f64;
    let mut times = Vec::new();
    let mut failures = 0;
    for r in 1..=restarts {
        hub.kill();
        let killed = Instant::now();
        // The routers notice the dead connections.
        let _ = wait_for(Duration::from_secs(10), "routers to notice", || {
            (connected.load(Ordering::Relaxed) < routers / 10).then_some(())
        });
        match hub.restart() {
            Ok(()) => {}
            Err(e) => {
                failures += 1;
                let why = if hub.log().contains("in use") { "address in use" } else { "other" };
                println!("restart {r}: FAILED ({why}): {e:#}");
                hub.restart()?;
            }
        }
        let ready = killed.elapsed().as_secs_f64();
        match wait_all(&connected, routers, timeout) {
            Ok(()) => {
                let took = killed.elapsed().as_secs_f64();
                println!(
                    "restart {r}: {routers} routers back {took:.2} s after the kill (hub ready after {ready:.2} s)"
                );
                times.push(took);
            }
            Err(e) => {
                failures += 1;
                println!("restart {r}: {e} ({} of {routers} back)", connected.load(Ordering::Relaxed));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    println!("== many routers");
    println!(
        "hub RSS                               {} MiB idle, {} MiB with {routers} connected: {per:.1} KiB per router",
        idle.rss_kib / 1024,
        full.rss_kib / 1024
    );
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "reconnect after a hub kill            {} restarts, {failures} failed; all back in {:.2} s median, {:.2} s worst",
        restarts,
        percentile(&times, 0.5),
        times.last().copied().unwrap_or(f64::NAN)
    );
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn wait_all(connected: &AtomicUsize, n: usize, timeout: Duration) -> Result<()> {
    wait_for(timeout, &format!("{n} routers connected"), || (connected.load(Ordering::Relaxed) >= n).then_some(()))
}

/// Enrols `n` devices through the CLI, four at a time.
fn enrol_many(hub: &Hub, n: usize) -> Result<Vec<Device>> {
    let next = AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                match hub.enrol(&format!("sim-{i:05}")) {
                    Ok(d) => out.lock().unwrap_or_else(|p| p.into_inner()).push(d),
                    Err(e) => eprintln!("enrolling sim-{i:05}: {e:#}"),
                }
            });
        }
    });
    let devices = out.into_inner().unwrap_or_else(|p| p.into_inner());
    if devices.len() != n {
        bail!("enrolled {} of {n} devices", devices.len());
    }
    Ok(devices)
}

/// One simulated router: connects with its credentials, announces itself
/// with a signed status, and reconnects after 0.2-0.7 s when it loses the hub
/// (a router's backoff starts at 0.5 s with jitter).
async fn sim_router(addr: String, d: Device, connected: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    use opmas_proto::msg::Status;
    use opmas_proto::{Channel, DeviceId, Envelope, Secret, Topic};
    use rand::Rng;
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (Ok(id), Ok(secret)) = (DeviceId::new(d.id.clone()), Secret::from_hex(&d.secret)) else { return };
    let Some((host, port)) = addr.rsplit_once(':') else { return };
    let Ok(port) = port.parse() else { return };
    let mut opts = MqttOptions::new(d.id.clone(), host, port);
    opts.set_credentials(d.id.clone(), d.secret.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 10);
    let mut up = false;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if !up {
                    up = true;
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
                let Ok(body) = Envelope::sealed(id.clone(), seq, 0, &Status::Online, &secret) else { return };
                let _ = client.try_publish(
                    Topic::new(id.clone(), Channel::Status).to_string(),
                    QoS::AtLeastOnce,
                    true,
                    body,
                );
            }
            Ok(_) => {}
            Err(_) => {
                if up {
                    up = false;
                    connected.fetch_sub(1, Ordering::Relaxed);
                }
                let wait = rand::thread_rng().gen_range(200..700);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
    }
}
