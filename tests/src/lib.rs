//! Harness for end-to-end tests: starts the real `opmas-hub` and
//! `opmas-edge` binaries on free loopback ports with temporary data, and
//! talks to them the way a user does (CLI, REST API, MQTT).
//!
//! The binaries are found next to the test executable's target directory
//! (`target/debug/`), or in `$OPMAS_BIN_DIR`; `scripts/test` builds them
//! first.

use std::ffi::OsString;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub mod cluster;
pub mod netns;

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("OPMAS_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // target/debug/deps/<test> → target/debug/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} not built: run `cargo build --workspace --bins` (scripts/test does)", path.display());
    path
}

/// A loopback UDP address with a port that was free a moment ago.
pub fn free_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    s.local_addr().expect("local addr")
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed when dropped, with its log in a file.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output appended to `log`; killed when dropped.
    /// Logs at info, or as `OPMAS_TEST_LOG` says (a `RUST_LOG` filter, to
    /// see one module's debug lines in a test or a load run).
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let filter = std::env::var("OPMAS_TEST_LOG").unwrap_or_else(|_| "info,rumqttd=warn".into());
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).env("NO_COLOR", "1").env("RUST_LOG", filter);
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Proc { child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL: as abrupt as a crash or power loss).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("process ignored SIGTERM for 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a brute-force finding from `ip`; on timeout fails the test
/// with the hub's and the edge's logs.
pub fn wait_for_bruteforce(hub: &Hub, edge: &Edge, ip: &str, timeout: Duration) {
    if let Err(e) = wait_for(timeout, &format!("a finding for {ip}"), || (hub.bruteforces_from(ip) > 0).then_some(())) {
        panic!("{e}\n--- hub log ---\n{}\n--- edge log ---\n{}", hub.log(), edge.log());
    }
}

/// A throwaway PostgreSQL server (`scripts/postgres.sh`), stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// The server's URL, ending in `/postgres`.
    pub url: String,
}

impl Postgres {
    /// Starts one; `None` (after saying why) when PostgreSQL is not
    /// installed, unless `OPMAS_REQUIRE_POSTGRES=1`, when that fails the test.
    pub fn start() -> Option<Postgres> {
        let dir = tempfile::Builder::new().prefix("opmas-pg-e2e").tempdir_in("/tmp").ok()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
        let out = Command::new(script).arg("start").arg(dir.path()).output();
        match out {
            Ok(o) if o.status.success() => {
                Some(Postgres { url: String::from_utf8_lossy(&o.stdout).trim().to_owned(), dir })
            }
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("OPMAS_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!("PostgreSQL is required (OPMAS_REQUIRE_POSTGRES=1) but did not start: {why}");
                }
                eprintln!("skipped: PostgreSQL did not start: {why}");
                None
            }
        }
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> Result<String> {
        let out = Command::new("psql").arg(&self.url).args(["-qc", &format!("CREATE DATABASE {name}")]).output()?;
        if !out.status.success() {
            bail!("creating database {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (base, _) = self.url.rsplit_once('/').context("a URL ending in /postgres")?;
        Ok(format!("{base}/{name}"))
    }

    /// Runs `sql` in database `url`; its output, unaligned.
    pub fn query(&self, url: &str, sql: &str) -> Result<String> {
        let out = Command::new("psql").arg(url).args(["-Atqc", sql]).output()?;
        if !out.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
        let _ = Command::new(script).arg("stop").arg(self.dir.path()).output();
    }
}

/// A hub under test: its data dir, addresses, token and process.
pub struct Hub {
    pub data_dir: PathBuf,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub token: String,
    pub proc: Option<Proc>,
    http_client: reqwest::blocking::Client,
    /// Flags added to `opmas-hub serve` at every (re)start.
    extra_args: Vec<OsString>,
    /// Environment variables of the hub process (fault injection, say).
    env: Vec<(OsString, OsString)>,
}

/// What `device add --json` printed.
#[derive(Clone, Debug)]
pub struct Device {
    pub id: String,
    pub secret: String,
}

impl Hub {
    /// Starts a hub with a fresh data dir inside `dir`.
    pub fn start(dir: &Path) -> Result<Hub> {
        Hub::start_with(dir, Vec::new())
    }

    /// Starts a hub with a fresh data dir inside `dir` and `extra_args` added
    /// to `opmas-hub serve` (for example `--mqtts-listen` and its files).
    pub fn start_with(dir: &Path, extra_args: Vec<OsString>) -> Result<Hub> {
        Hub::start_with_env(dir, extra_args, Vec::new())
    }

    /// Like [`Hub::start_with`], with environment variables for the hub process.
    pub fn start_with_env(dir: &Path, extra_args: Vec<OsString>, env: Vec<(OsString, OsString)>) -> Result<Hub> {
        Hub::start_on(dir, free_addr(), extra_args, env)
    }

    /// Like [`Hub::start_with_env`], with MQTT listening on `mqtt` (say
    /// `0.0.0.0:port`, for routers in network namespaces).
    pub fn start_on(
        dir: &Path,
        mqtt: SocketAddr,
        extra_args: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Hub> {
        let mut hub = Hub {
            data_dir: dir.join("hub-data"),
            mqtt,
            http: free_addr(),
            token: String::new(),
            proc: None,
            http_client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build()?,
            extra_args,
            env,
        };
        hub.restart()?;
        hub.token = std::fs::read_to_string(hub.data_dir.join("admin.token"))?.trim().to_owned();
        Ok(hub)
    }

    /// Starts the hub process again on the same ports and data (after [`Hub::kill`]).
    pub fn restart(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin("opmas-hub"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--mqtt-listen")
            .arg(self.mqtt.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = self.data_dir.with_file_name("hub.log");
        self.proc = Some(Proc::spawn(cmd, log)?);
        let url = format!("http://{}/api/v1/health", self.http);
        let client = self.http_client.clone();
        let started = wait_for(Duration::from_secs(20), "the hub's /health", || {
            client.get(&url).send().ok().filter(|r| r.status().is_success())
        });
        if started.is_err() {
            bail!("hub did not start; its log:\n{}", self.log());
        }
        Ok(())
    }

    /// Kills the hub process abruptly.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_file_name("hub.log")).unwrap_or_default()
    }

    /// The hub's `OPMAS_DATABASE_URL`, if the test gave it one, for the CLI
    /// commands run beside it: they must open the same database.
    fn database_env(&self) -> Vec<(OsString, OsString)> {
        self.env.iter().filter(|(k, _)| k == "OPMAS_DATABASE_URL").cloned().collect()
    }

    /// Enrols a device through the CLI, as an operator does.
    pub fn enrol(&self, name: &str) -> Result<Device> {
        let out = Command::new(bin("opmas-hub"))
            .args(["device", "add", name, "--json", "--data-dir"])
            .arg(&self.data_dir)
            .envs(self.database_env())
            .args(["--hub-url", &format!("mqtt://{}", self.mqtt)])
            .output()?;
        if !out.status.success() {
            bail!("device add failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("device add --json output")?;
        Ok(Device {
            id: v["id"].as_str().context("id")?.to_owned(),
            secret: v["secret"].as_str().context("secret")?.to_owned(),
        })
    }

    /// Adds user `name` with `role` through the CLI, as an administrator
    /// does, and makes an API token for it; returns the token.
    pub fn user_token(&self, name: &str, role: &str) -> Result<String> {
        let mut child = Command::new(bin("opmas-hub"))
            .args(["user", "add", name, "--role", role, "--password-stdin", "--data-dir"])
            .arg(&self.data_dir)
            .envs(self.database_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(b"a long enough password\n")?;
        let added = child.wait_with_output()?;
        if !added.status.success() {
            bail!("user add: {}", String::from_utf8_lossy(&added.stderr));
        }
        let out = Command::new(bin("opmas-hub"))
            .args(["token", "create", "--user", name, "--data-dir"])
            .arg(&self.data_dir)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.len() > 30 && !l.contains(' '))
            .map(str::to_owned)
            .with_context(|| format!("no token in {text}"))
    }

    /// GET `/api/v1{path}` with the admin token; returns status and JSON.
    pub fn get(&self, path: &str) -> Result<(u16, Value)> {
        let resp =
            self.http_client.get(format!("http://{}/api/v1{path}", self.http)).bearer_auth(&self.token).send()?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().unwrap_or(Value::Null)))
    }

    /// POST `/api/v1{path}` with `token` (the admin's if `None`) and no body;
    /// returns status and JSON.
    pub fn post(&self, path: &str, token: Option<&str>) -> Result<(u16, Value)> {
        let resp = self
            .http_client
            .post(format!("http://{}/api/v1{path}", self.http))
            .bearer_auth(token.unwrap_or(&self.token))
            .send()?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().unwrap_or(Value::Null)))
    }

    /// `method` `/api/v1{path}` with `token` (the admin's if `None`) and a
    /// JSON `body` if given; returns status and JSON.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http_client
            .request(method, format!("http://{}/api/v1{path}", self.http))
            .bearer_auth(token.unwrap_or(&self.token));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().unwrap_or(Value::Null)))
    }

    /// All findings of a kind (follows pagination).
    pub fn findings(&self, query: &str) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_owned();
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let (status, v) = self.get(&format!("/findings?{q}"))?;
            if status != 200 {
                bail!("GET /findings?{q}: {status} {v}");
            }
            all.extend(v["findings"].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(all),
            }
        }
    }

    /// The hub's counters.
    /// How many `ssh.bruteforce` findings (of the newest 50) have source `ip`.
    pub fn bruteforces_from(&self, ip: &str) -> usize {
        self.findings("kind=ssh.bruteforce&limit=50").unwrap_or_default().iter().filter(|f| f["src_ip"] == ip).count()
    }

    pub fn stats(&self) -> Result<Value> {
        let (status, v) = self.get("/stats")?;
        if status != 200 {
            bail!("GET /stats: {status}");
        }
        Ok(v)
    }
}

/// An edge under test, following a log file.
pub struct Edge {
    pub config: PathBuf,
    pub log_file: PathBuf,
    pub proc: Option<Proc>,
    /// The command that runs the edge: the workspace binary, or an emulator
    /// and a cross-built binary (`qemu-mips-static dist/.../opmas-edge`).
    program: Vec<OsString>,
}

impl Edge {
    /// Writes a UCI config for `device` that follows `log_file`, and starts the edge.
    pub fn start(dir: &Path, hub: &Hub, device: &Device) -> Result<Edge> {
        let log_file = dir.join(format!("{}-messages.log", device.id));
        std::fs::File::create(&log_file)?;
        let source = format!("config source\n\toption type 'file'\n\toption path '{}'\n", log_file.display());
        Edge::start_with(dir, hub, device, &source, log_file)
    }

    /// Starts an edge that follows a fresh log file, with `hub_options` added
    /// to its hub section (UCI lines such as `\toption spool_bytes '4194304'\n`).
    pub fn start_opts(dir: &Path, hub: &Hub, device: &Device, hub_options: &str) -> Result<Edge> {
        Edge::start_url(dir, device, &format!("mqtt://{}", hub.mqtt), hub_options)
    }

    /// Starts an edge with the given UCI `source` sections (and any agent sections).
    pub fn start_with(dir: &Path, hub: &Hub, device: &Device, sections: &str, log_file: PathBuf) -> Result<Edge> {
        Edge::start_hub_url(dir, device, &format!("mqtt://{}", hub.mqtt), "", sections, log_file)
    }

    /// Starts the edge inside network namespace `ns` (its nft and every tool
    /// it runs act on that namespace), connecting to `url`, with UCI
    /// `sections` (sources, response) following `log_file`.
    pub fn start_in_netns(
        dir: &Path,
        device: &Device,
        ns: &str,
        url: &str,
        sections: &str,
        log_file: PathBuf,
    ) -> Result<Edge> {
        let mut edge = Edge::configure(dir, device, url, "", sections, log_file)?;
        edge.program = vec!["ip".into(), "netns".into(), "exec".into(), ns.into(), bin("opmas-edge").into()];
        edge.restart()?;
        Ok(edge)
    }

    /// Starts `program` (an emulator and a cross-built edge binary, say) as
    /// the edge of `device`, following a fresh log file.
    pub fn start_program(dir: &Path, hub: &Hub, device: &Device, program: Vec<OsString>) -> Result<Edge> {
        let log_file = dir.join(format!("{}-messages.log", device.id));
        std::fs::File::create(&log_file)?;
        let source = format!("config source\n\toption type 'file'\n\toption path '{}'\n", log_file.display());
        let mut edge = Edge::configure(dir, device, &format!("mqtt://{}", hub.mqtt), "", &source, log_file)?;
        edge.program = program;
        edge.restart()?;
        Ok(edge)
    }

    /// Starts an edge that follows a fresh log file and connects to `url`
    /// (`mqtts://...` for TLS) with `hub_options` added to its hub section
    /// (UCI lines such as `\toption ca_file '/path'\n`).
    pub fn start_url(dir: &Path, device: &Device, url: &str, hub_options: &str) -> Result<Edge> {
        let log_file = dir.join(format!("{}-messages.log", device.id));
        std::fs::File::create(&log_file)?;
        let source = format!("config source\n\toption type 'file'\n\toption path '{}'\n", log_file.display());
        Edge::start_hub_url(dir, device, url, hub_options, &source, log_file)
    }

    fn start_hub_url(
        dir: &Path,
        device: &Device,
        url: &str,
        hub_options: &str,
        sections: &str,
        log_file: PathBuf,
    ) -> Result<Edge> {
        let mut edge = Edge::configure(dir, device, url, hub_options, sections, log_file)?;
        edge.restart()?;
        Ok(edge)
    }

    /// Writes the edge's UCI file; does not start it.
    fn configure(
        dir: &Path,
        device: &Device,
        url: &str,
        hub_options: &str,
        sections: &str,
        log_file: PathBuf,
    ) -> Result<Edge> {
        let config = dir.join(format!("opmas-{}.uci", device.id));
        std::fs::write(
            &config,
            format!(
                "# written by the e2e harness\nconfig hub 'hub'\n\toption url '{url}'\n\toption device_id '{}'\n\toption secret '{}'\n\toption heartbeat_interval '2'\n\toption backoff_max '1'\n\toption state_dir '{}'\n{hub_options}\n{sections}",
                device.id,
                device.secret,
                dir.join(format!("state-{}", device.id)).display(),
            ),
        )?;
        Ok(Edge { config, log_file, proc: None, program: vec![bin("opmas-edge").into()] })
    }

    /// Starts the edge process (again).
    pub fn restart(&mut self) -> Result<()> {
        let (first, rest) = self.program.split_first().context("empty edge program")?;
        let mut cmd = Command::new(first);
        cmd.args(rest).arg("run").arg("--config").arg(&self.config);
        self.proc = Some(Proc::spawn(cmd, self.config.with_extension("log"))?);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default()
    }

    /// Appends lines to the followed file, as logd would.
    pub fn append(&self, lines: &[String]) -> Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.log_file)?;
        // One write: a burst arrives at once, as a flood does.
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())?;
        Ok(())
    }
}

/// `n` dropbear failures from `ip`, in `logread` format, stamped now.
pub fn dropbear_attack(ip: &str, n: usize) -> Vec<String> {
    let now = now_logread();
    (0..n)
        .flat_map(|i| {
            let pid = 20_000 + i;
            let port = 40_000 + i;
            [
                format!("{now} authpriv.info dropbear[{pid}]: Child connection from {ip}:{port}"),
                format!("{now} authpriv.warn dropbear[{pid}]: Bad password attempt for 'root' from {ip}:{port}"),
            ]
        })
        .collect()
}

/// Five dropbear password failures from each of `sources` addresses
/// (`198.18.x.y`, one brute force each), in `logread` format, stamped now:
/// the burst of a botnet's sweep.
pub fn dropbear_burst(sources: usize, failures: usize) -> Vec<String> {
    let now = now_logread();
    let mut lines = Vec::with_capacity(sources * failures * 2);
    for s in 0..sources {
        let ip = format!("198.18.{}.{}", s / 250, s % 250 + 1);
        for i in 0..failures {
            let pid = 10_000 + (s * failures + i) % 50_000;
            let port = 30_000 + i;
            lines.push(format!("{now} authpriv.info dropbear[{pid}]: Child connection from {ip}:{port}"));
            lines
                .push(format!("{now} authpriv.warn dropbear[{pid}]: Bad password attempt for 'root' from {ip}:{port}"));
        }
    }
    lines
}

/// The current UTC time as `logread` prints it: `Thu Dec  5 17:43:57 2024`.
pub fn now_logread() -> String {
    let out = Command::new("date").args(["-u", "+%a %b %e %H:%M:%S %Y"]).output().expect("date(1)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A request an [`HttpSink`] received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A real HTTP server on loopback that records every request, standing in
/// for Slack, PagerDuty or a webhook endpoint; it can answer the first
/// requests to a path with 500 to make the sender retry.
pub struct HttpSink {
    pub addr: SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>>,
}

impl HttpSink {
    pub fn start() -> Result<HttpSink> {
        HttpSink::start_on("127.0.0.1:0".parse()?)
    }

    /// A sink on `addr`: a receiver that comes back where it was.
    pub fn start_on(addr: SocketAddr) -> Result<HttpSink> {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failures: std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>> = Default::default();
        let (rx, fx) = (received.clone(), failures.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Ok(clone) = conn.try_clone() else { continue };
                let mut reader = BufReader::new(clone);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((n, v)) = h.trim_end().split_once(':') {
                        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let len: usize =
                    headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let status = {
                    let mut f = fx.lock().unwrap();
                    match f.iter_mut().find(|(p, n)| *p == path && *n > 0) {
                        Some((_, n)) => {
                            *n -= 1;
                            500
                        }
                        None => 202,
                    }
                };
                rx.lock().unwrap().push(Received { path, headers, body, status });
                let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Ok(HttpSink { addr, received, failures })
    }

    /// Answers the next `n` requests to `path` with 500.
    pub fn fail(&self, path: &str, n: usize) {
        self.failures.lock().unwrap().push((path.to_owned(), n));
    }

    /// Answers `path` with success again.
    pub fn heal(&self, path: &str) {
        self.failures.lock().unwrap().retain(|(p, _)| p != path);
    }

    /// The requests to `path` so far, oldest first.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A deauthentication flood on `iface` as hostapd logs it: 5 stations
/// kicked off 4 times each (20 disconnects), in `logread` format, stamped now.
pub fn deauth_flood(iface: &str) -> Vec<String> {
    let now = now_logread();
    let mut lines = Vec::new();
    for _ in 0..4 {
        for s in 0..5 {
            let mac = format!("02:00:00:00:00:{s:02x}");
            lines.push(format!("{now} daemon.info hostapd: {iface}: AP-STA-CONNECTED {mac}"));
            lines.push(format!("{now} daemon.info hostapd: {iface}: AP-STA-DISCONNECTED {mac}"));
        }
    }
    lines
}

/// A port scan from `ip` as the firewall logs it: 25 distinct destination
/// ports rejected, in `logread` format, stamped now.
pub fn port_scan(ip: &str) -> Vec<String> {
    let now = now_logread();
    (0..25)
        .map(|i| {
            format!(
                "{now} kern.warn kernel: [12345.{i:06}] reject wan in: IN=eth1 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 \
                 SRC={ip} DST=203.0.113.7 LEN=44 TOS=0x00 PREC=0x00 TTL=240 ID={i} PROTO=TCP SPT=40000 DPT={} WINDOW=1024 RES=0x00 SYN URGP=0",
                1000 + i
            )
        })
        .collect()
}

/// An MQTT client of the broker at `addr` as `user` (client id
/// `client_id`), once its CONNACK came; the error if the broker refused or
/// closed the connection, or did not answer within 5 s.
pub async fn mqtt_connect(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> std::result::Result<(rumqttc::AsyncClient, rumqttc::EventLoop), String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_credentials(user, password);
    let (client, mut el) = AsyncClient::new(opts, 16);
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no answer in 5 s".to_string())?;
    first.map(|()| (client, el))
}
