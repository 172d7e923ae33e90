//! `opmas-edge` command line: parses flags, sets up logging, runs the loop.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use opmas_edge::config::AgentsConfig;
use opmas_edge::config::EdgeConfig;
use opmas_edge::{explain, replay, run, sources};
use tokio::sync::mpsc;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// OPMAS edge agent: reads the router's syslog, detects attacks and faults, reports to opmas-hub.
#[derive(Parser, Debug)]
#[command(version = opmas_edge::version::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent.
    Run {
        /// UCI configuration file.
        #[arg(long, default_value = "/etc/config/opmas", value_name = "FILE")]
        config: PathBuf,
    },
    /// Print what the agents see in each log line, as one JSON object per line.
    Explain {
        /// Log file to read (standard input when absent or `-`).
        file: Option<PathBuf>,
        /// The time to assume for lines without a year: 2026-06-01, RFC 3339 or unix ms (default: now).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// Run the agents over a log file as fast as possible and print the findings.
    Replay {
        /// Log file to replay (`-` for standard input).
        file: PathBuf,
        /// Print findings as JSON lines (the default is one summary line per finding).
        #[arg(long)]
        json: bool,
        /// UCI file whose agent sections set the thresholds (default: built-in defaults).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The time to assume for lines without a year (default: now).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
}

/// "1 line", "2 lines".
fn count(n: impl Into<u64>, what: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn main() {
    // One line, so that logd keeps the whole reason together.
    if let Err(e) = real_main() {
        // A reader that went away (`explain log | head`) is not a failure.
        let closed_pipe = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
        if closed_pipe {
            return;
        }
        eprintln!("opmas-edge: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // procd sends stderr to logd, which adds its own timestamps: no colours,
    // no time. `Targets` instead of an env-filter keeps a regex engine
    // (about 260 KB on MIPS) out of the router binary.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO).with_target("rumqttc", Level::WARN));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_ansi(false).without_time().with_writer(std::io::stderr))
        .with(filter)
        .init();
    match cli.command {
        Command::Run { config } => {
            if cfg!(feature = "fault-injection") {
                tracing::warn!(
                    "built with fault-injection (a test build): a line with opmas-fault:<agent> makes that agent panic"
                );
            }
            let text = std::fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
            let cfg = EdgeConfig::from_uci_text(&text).with_context(|| format!("in {}", config.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let (tx, rx) = mpsc::channel(sources::LINE_QUEUE);
                let stats = Arc::new(sources::SourceStats::default());
                sources::spawn_all(&cfg.sources, tx, stats.clone());
                run::run(cfg, rx, stats, shutdown_signal()).await;
            });
            Ok(())
        }
        Command::Explain { file, now } => {
            let now_ms = now_arg(now.as_deref())?;
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            let stats = match file.as_ref().filter(|p| p.as_os_str() != "-") {
                Some(path) => {
                    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
                    explain::explain(std::io::BufReader::new(f), out, now_ms)?
                }
                None => explain::explain(std::io::stdin().lock(), out, now_ms)?,
            };
            eprintln!(
                "{}: {}, {} without event, {} rejected",
                count(stats.lines, "line"),
                count(stats.events, "event"),
                stats.no_event,
                stats.errors
            );
            Ok(())
        }
        Command::Replay { file, json, config, now } => {
            let now_ms = now_arg(now.as_deref())?;
            let agents = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    AgentsConfig::from_uci_text(&text).with_context(|| format!("in {}", path.display()))?
                }
                None => AgentsConfig::default(),
            };
            // `Send` for the replay's reading thread: `Stdin`, not its lock.
            let input: Box<dyn std::io::Read + Send> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?)
            };
            let out = std::io::BufWriter::new(std::io::stdout());
            let s = replay::replay(input, out, &agents, now_ms, json)?;
            eprintln!(
                "{}, {}, {}, {:.3} s, {:.0} lines/s",
                count(s.lines, "line"),
                count(s.events, "event"),
                count(s.findings, "finding"),
                s.seconds,
                s.lines as f64 / s.seconds.max(1e-9)
            );
            Ok(())
        }
    }
}

/// Parses `--now`, defaulting to the wall clock.
fn now_arg(now: Option<&str>) -> Result<u64> {
    match now {
        None => Ok(opmas_edge::uplink::now_ms()),
        Some(s) => explain::parse_now(s)
            .with_context(|| format!("--now {s:?}: expected a date (2026-06-01), RFC 3339 time or unix milliseconds")),
    }
}

/// Resolves on SIGINT or SIGTERM (procd stops services with SIGTERM).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
