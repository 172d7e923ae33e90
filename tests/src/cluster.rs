//! The scaled-out hub for tests and load runs: a throwaway PostgreSQL, a
//! mosquitto on a loopback port with the password and ACL files the hub
//! keeps, and several hub replicas on both (`[broker] mode = "external"`,
//! one `client_id` each, one shared subscription group).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{bin, free_addr, wait_for, Device, Hub, Postgres, Proc};

const HUB_PASSWORD: &str = "hub-broker-password-for-the-replicas";

/// PostgreSQL, mosquitto and hub replicas, stopped on drop.
pub struct Replicas {
    pub hubs: Vec<Hub>,
    pub pg: Postgres,
    /// The hubs' database.
    pub db_url: String,
    pub broker: SocketAddr,
    pub mosquitto: Proc,
    dir: PathBuf,
}

impl Replicas {
    /// Starts PostgreSQL (`None` if it is not installed, as [`Postgres::start`]
    /// says), mosquitto, and `n` replicas whose `hub.toml` starts with
    /// `extra_toml` (top-level keys such as `rules_dir`). Replica 0 leads
    /// when this returns.
    pub fn start(dir: &Path, n: usize, extra_toml: &str) -> Result<Option<Replicas>> {
        let Some(pg) = Postgres::start() else { return Ok(None) };
        let found = Command::new("sh").args(["-c", "command -v mosquitto"]).output()?.status.success();
        if !found {
            bail!("mosquitto not found (apt-get install mosquitto)");
        }
        let db_url = pg.database("opmas_replicas")?;
        let broker = free_addr();
        std::fs::write(dir.join("broker.password"), format!("{HUB_PASSWORD}\n"))?;
        for i in 0..n {
            std::fs::create_dir_all(dir.join(format!("replica-{i}/hub-data")))?;
            std::fs::write(dir.join(format!("hub-{i}.toml")), hub_toml(dir, broker, i, extra_toml))?;
        }
        std::fs::write(dir.join("mosquitto.conf"), mosquitto_conf(dir, broker))?;
        // The files mosquitto reads exist before it starts (with no router yet).
        run_cli(dir, &db_url, &["device", "broker-sync"])?;
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(dir.join("mosquitto.conf"));
        let mosquitto = Proc::spawn(cmd, dir.join("mosquitto.log"))?;
        wait_for(Duration::from_secs(10), "mosquitto listening", || std::net::TcpStream::connect(broker).ok())?;
        let mut replicas = Replicas { hubs: Vec::new(), pg, db_url, broker, mosquitto, dir: dir.to_owned() };
        for i in 0..n {
            if i > 0 {
                // The token is in the database already; replicas after the
                // first get a copy of its file, as an operator would copy it.
                let token = replicas.hubs[0].data_dir.join("admin.token");
                std::fs::copy(token, dir.join(format!("replica-{i}/hub-data/admin.token")))?;
            }
            let args: Vec<OsString> = vec!["--config".into(), dir.join(format!("hub-{i}.toml")).into()];
            let hub = Hub::start_with_env(&dir.join(format!("replica-{i}")), args, replicas.env())?;
            if i == 0 {
                wait_for(Duration::from_secs(10), "the first replica to lead", || {
                    (leads(&hub) == Some(true)).then_some(())
                })?;
            }
            replicas.hubs.push(hub);
        }
        Ok(Some(replicas))
    }

    /// The hubs' environment: the database.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![(OsString::from("OPMAS_DATABASE_URL"), OsString::from(&self.db_url))]
    }

    /// The URL routers connect to.
    pub fn broker_url(&self) -> String {
        format!("mqtt://{}", self.broker)
    }

    /// Enrols router `name` with the CLI, as an operator does: into
    /// PostgreSQL, and into mosquitto's files (which it reloads).
    pub fn enrol(&self, name: &str) -> Result<Device> {
        let out =
            run_cli(&self.dir, &self.db_url, &["device", "add", name, "--json", "--hub-url", &self.broker_url()])?;
        let v: Value = serde_json::from_slice(&out).context("device add --json output")?;
        Ok(Device {
            id: v["id"].as_str().context("id")?.to_owned(),
            secret: v["secret"].as_str().context("secret")?.to_owned(),
        })
    }
}

/// Whether `hub` says it leads (`GET /health`).
pub fn leads(hub: &Hub) -> Option<bool> {
    let (status, v) = hub.get("/health").ok()?;
    (status == 200).then(|| v["leader"].as_bool()).flatten()
}

/// `opmas-hub ARGS` with replica 0's settings; its standard output.
fn run_cli(dir: &Path, db_url: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(bin("opmas-hub"))
        .args(args)
        .arg("--config")
        .arg(dir.join("hub-0.toml"))
        .arg("--data-dir")
        .arg(dir.join("replica-0/hub-data"))
        .env("OPMAS_DATABASE_URL", db_url)
        .output()?;
    if !out.status.success() {
        bail!("opmas-hub {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn hub_toml(d: &Path, broker: SocketAddr, i: usize, extra: &str) -> String {
    format!(
        "{extra}\n[broker]\nmode = \"external\"\nurl = \"mqtt://{broker}\"\nusername = \"opmas-hub\"\n\
         password_file = \"{d}/broker.password\"\nclient_id = \"opmas-hub-{i}\"\n\
         mosquitto_password_file = \"{d}/opmas.passwd\"\nmosquitto_acl_file = \"{d}/opmas.acl\"\n\
         mosquitto_pid_file = \"{d}/mosquitto.pid\"\n",
        d = d.display()
    )
}

fn mosquitto_conf(d: &Path, broker: SocketAddr) -> String {
    // Started as root, mosquitto runs as `user`; as anyone else it stays who it is.
    let me = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    format!(
        "user {me}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/opmas.passwd\nacl_file {d}/opmas.acl\n\
         pid_file {d}/mosquitto.pid\npersistence false\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\n",
        me = me.unwrap_or_else(|_| "mosquitto".into()),
        port = broker.port(),
        d = d.display()
    )
}
