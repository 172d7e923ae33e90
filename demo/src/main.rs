//! `opmas-demo`: the hub on embedded defaults plus a fleet of simulated
//! routers running the real edge code, for trying OPMAS in one command.
//!
//! Unless told otherwise (flags or `OPMAS_*` variables), the demo keeps to
//! itself: MQTT on 127.0.0.1:1883 and its data in `./opmas-demo-data`, so a
//! real hub started later never finds the demo routers.

mod fleet;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use opmas_hub::config::{HubConfig, Overrides};

/// OPMAS demo: the hub (MQTT broker, ingest, storage, REST API) with simulated routers running the real edge code.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// How many simulated routers.
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// TOML settings file for the hub (default: config/hub.toml if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [env: OPMAS_DATA_DIR] [default: ./opmas-demo-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// MQTT listen address [env: OPMAS_MQTT_LISTEN] [default: 127.0.0.1:1883].
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<std::net::SocketAddr>,
    /// REST API listen address [env: OPMAS_HTTP_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<std::net::SocketAddr>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    opmas_hub::serve::init_logging();
    let unset = |env: &str| std::env::var_os(env).is_none();
    let flags = Overrides {
        data_dir: cli.data_dir.or_else(|| unset("OPMAS_DATA_DIR").then(|| PathBuf::from("opmas-demo-data"))),
        mqtt_listen: cli
            .mqtt_listen
            .or_else(|| unset("OPMAS_MQTT_LISTEN").then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 1883)))),
        http_listen: cli.http_listen,
        ..Overrides::default()
    };
    let cfg = HubConfig::load(cli.config.as_deref(), &HubConfig::env_overrides()?, &flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(fleet::run(cfg, cli.devices, opmas_hub::serve::shutdown_signal()))
}
