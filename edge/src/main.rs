//! `opmas-edge` command line: parses flags, sets up logging, runs the loop.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use opmas_edge::config::EdgeConfig;
use opmas_edge::{run, sources};
use tokio::sync::mpsc;

/// OPMAS edge agent: reads the router's syslog, detects attacks and faults, reports to opmas-hub.
#[derive(Parser, Debug)]
#[command(version, about)]
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // procd sends stderr to logd; no colours there.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttc=warn".into()),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run { config } => {
            let text = std::fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
            let cfg = EdgeConfig::from_uci_text(&text).with_context(|| format!("in {}", config.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let (tx, rx) = mpsc::channel(sources::LINE_QUEUE);
                sources::spawn_all(&cfg.sources, tx);
                run::run(cfg, rx, shutdown_signal()).await;
            });
            Ok(())
        }
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
