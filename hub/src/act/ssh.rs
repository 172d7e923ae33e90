//! The SSH transport: the same allowlisted actions on routers that run no
//! OPMAS agent, over the SSH server they already have (dropbear on
//! OpenWRT).
//!
//! Such a router is enrolled with `opmas-hub device add NAME --ssh
//! USER@HOST[:PORT]` ([`scan`] then `enrol::add_ssh`): the hub reads the
//! router's host key once and pins it (or checks it against a fingerprint
//! the operator read on the router's console), and the router trusts the
//! hub's own key ([`Identity`], `DATA_DIR/ssh_ed25519`, made at first use).
//! From then on a command for that device is not published on MQTT:
//! [`SshTransport`] runs it. Each run connects (10 s), refuses a router
//! whose host key is not the pinned one, authenticates with the hub's key
//! (no passwords), runs the action's steps with a time limit each, and
//! records the result on the command as an edge's answer would be
//! recorded. A router that cannot be reached leaves its command pending
//! (with why, on the command) and is tried again every [`SWEEP`] until the
//! command expires; a wrong host key, a refused key or a failing tool end
//! the command as `failed` with the reason.
//!
//! What runs is [`plan`]'s: the edge's allowlist, and the same text as the
//! edge runs ([`opmas_proto::remedy`]): the `nft -f -` scripts come on
//! standard input, so the typed values never pass through a shell. SSH has
//! no argv, only a command line for the remote shell: every argument of
//! the few fixed programs is quoted ([`command_line`]) and is a constant,
//! a name checked by [`opmas_proto::msg::check_service`], or an interface
//! name `ubus list` gave, checked by [`hostapd_objects`] as the edge does.
//!
//! fw4 rebuilds its table on `fw4 reload` and `fw4 restart`, losing the
//! blocks; with no edge there to put them back, the hub does: every
//! [`ENSURE_EVERY`] it works out from the commands each router carried out
//! what is still in force ([`in_force`]) and applies it again, with the
//! time left: the blocks in one `nft -f -` transaction, and the WiFi bans
//! with hostapd's `del_client` on every access point, since a `wifi
//! reload` (ours or anyone's) restarts hostapd, which forgets them.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opmas_proto::msg::{Action, CommandResult, Outcome};
use opmas_proto::remedy::{del_client_json, hostapd_objects, nft, NO_ACCESS_POINT};
use russh::client;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::store::commands::CommandRow;
use crate::store::ssh::SshTarget;
use crate::store::{now_ms, Store};

/// The hub's SSH key, in its data directory.
pub const KEY_FILE: &str = "ssh_ed25519";
/// Longest wait for a router to answer and accept the hub's key.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one remote program may run (the edge's limit too).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often pending commands of unreachable routers are tried again.
pub const SWEEP: Duration = Duration::from_secs(5);
/// How often the blocks in force on each router are applied again (fw4
/// may have rebuilt its table); each is one SSH login there.
pub const ENSURE_EVERY: Duration = Duration::from_secs(30);
/// Most of a tool's output kept (its error message is what matters).
const MAX_OUTPUT: usize = 16 * 1024;

/// What went wrong talking to a router over SSH.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{what} took longer than {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error(
        "the router's host key is {offered}, not {pinned} as pinned at enrolment: refused (someone may be in \
         between; if the router was really re-keyed, remove the device and enrol it again)"
    )]
    HostKey { offered: String, pinned: String },
    #[error(
        "the router refused the hub's key for user {user:?}: add the hub's public key \
         (`opmas-hub device ssh-key`) to the router's /etc/dropbear/authorized_keys"
    )]
    Auth { user: String },
    #[error("SSH: {0}")]
    Protocol(String),
    #[error("{command}: {message}")]
    Remote { command: String, message: String },
    #[error("the hub's SSH key {path}: {reason}")]
    Key { path: String, reason: String },
}

impl SshError {
    /// Whether trying again later may work: the router, or the way to it,
    /// was away.
    pub fn transient(&self) -> bool {
        matches!(self, SshError::Unreachable { .. } | SshError::Timeout { .. })
    }
}

/// The hub's own SSH key, which routers put in their `authorized_keys`.
#[derive(Clone)]
pub struct Identity {
    key: Arc<PrivateKey>,
}

impl Identity {
    /// The key in `data_dir`, made (Ed25519, mode 0600) if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, SshError> {
        let path = data_dir.join(KEY_FILE);
        let key_err = |reason: String| SshError::Key { path: path.display().to_string(), reason };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Identity::parse(&text).map_err(key_err),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(key_err(e.to_string())),
            Err(_) => {}
        }
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| key_err(format!("no randomness: {e}")))?;
        let key = PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), "opmas-hub")
            .map_err(|e| key_err(e.to_string()))?;
        let text = key.to_openssh(LineEnding::LF).map_err(|e| key_err(e.to_string()))?;
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        match created {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| key_err(e.to_string()))?;
                info!(path = %path.display(), "made the hub's SSH key");
                Ok(Identity { key: Arc::new(key) })
            }
            // Another process (the hub, a `device add`) made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).map_err(|e| key_err(e.to_string()))?;
                Identity::parse(&text).map_err(key_err)
            }
            Err(e) => Err(key_err(e.to_string())),
        }
    }

    fn parse(text: &str) -> Result<Identity, String> {
        let key = PrivateKey::from_openssh(text).map_err(|e| format!("not an OpenSSH private key: {e}"))?;
        if key.is_encrypted() {
            return Err("encrypted; the hub needs it without a passphrase".into());
        }
        Ok(Identity { key: Arc::new(key) })
    }

    /// The line for a router's `authorized_keys`.
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }
}

/// `SHA256:...`, as `ssh-keygen -l` and `dropbearkey -y` print it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// An OpenSSH public-key line, read.
pub fn parse_public(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| format!("not an OpenSSH public key: {e}"))
}

/// Checks the host key the router offers: the pinned one, or (`None`,
/// when enrolling) any, which is then kept in `seen`.
struct Pin {
    pinned: Option<PublicKey>,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Pin {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // Host certificates are not pinned; a router offering one is refused.
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else { return Ok(false) };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key.clone());
        }
        Ok(self.pinned.as_ref().is_none_or(|p| p.key_data() == key.key_data()))
    }
}

/// A session with one router, authenticated.
struct Session {
    handle: client::Handle<Pin>,
}

/// Connects to `host:port`, checks the host key against `pinned` (any if
/// `None`) and logs in as `user` with the hub's key. Returns the session
/// (or why not) and the host key the router offered.
async fn open(
    identity: &Identity,
    host: &str,
    port: u16,
    user: &str,
    pinned: Option<&PublicKey>,
) -> (Result<Session, SshError>, Option<PublicKey>) {
    let seen = Arc::new(Mutex::new(None));
    let offered = |seen: &Arc<Mutex<Option<PublicKey>>>| seen.lock().ok().and_then(|s| s.clone());
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let config = Arc::new(client::Config {
        // A router that stops answering mid-session ends it; the steps have
        // their own limit too.
        inactivity_timeout: Some(STEP_TIMEOUT + CONNECT_TIMEOUT),
        ..client::Config::default()
    });
    let handler = Pin { pinned: pinned.cloned(), seen: seen.clone() };
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, client::connect(config, (host, port), handler)).await;
    let mut handle = match connected {
        Err(_) => return (Err(timeout(format!("connecting to {addr}"), CONNECT_TIMEOUT)), offered(&seen)),
        Ok(Err(russh::Error::UnknownKey)) => {
            let got = offered(&seen);
            let error = match (&got, pinned) {
                (Some(k), Some(p)) => SshError::HostKey { offered: fingerprint(k), pinned: fingerprint(p) },
                _ => SshError::Protocol(format!("{addr} offered a host certificate; the hub pins plain host keys")),
            };
            return (Err(error), got);
        }
        Ok(Err(russh::Error::IO(e))) => {
            return (Err(SshError::Unreachable { addr, reason: e.to_string() }), offered(&seen))
        }
        Ok(Err(russh::Error::Disconnect | russh::Error::HUP)) => {
            let reason = "the connection closed during the handshake".into();
            return (Err(SshError::Unreachable { addr, reason }), offered(&seen));
        }
        Ok(Err(e)) => return (Err(SshError::Protocol(format!("{addr}: {e}"))), offered(&seen)),
        Ok(Ok(h)) => h,
    };
    let key = PrivateKeyWithHashAlg::new(identity.key.clone(), None);
    let auth = tokio::time::timeout(CONNECT_TIMEOUT, handle.authenticate_publickey(user, key)).await;
    let result = match auth {
        Err(_) => Err(timeout(format!("logging in to {addr}"), CONNECT_TIMEOUT)),
        Ok(Err(e)) => Err(SshError::Protocol(format!("{addr}: {e}"))),
        Ok(Ok(a)) if a.success() => Ok(Session { handle }),
        Ok(Ok(_)) => Err(SshError::Auth { user: user.to_owned() }),
    };
    (result, offered(&seen))
}

fn timeout(what: String, limit: Duration) -> SshError {
    SshError::Timeout { what, secs: limit.as_secs() }
}

impl Session {
    /// Runs `argv` (quoted for the remote shell) with `stdin`; its standard
    /// output if it exits with 0, else the tool's own words.
    async fn run(&self, argv: &[String], stdin: Option<&str>) -> Result<String, SshError> {
        let command = command_line(argv);
        let name = argv.first().map_or("", |p| p.rsplit('/').next().unwrap_or(p)).to_owned();
        let ssh = |e: russh::Error| SshError::Protocol(format!("{name}: {e}"));
        let exchange = async {
            let mut channel = self.handle.channel_open_session().await.map_err(ssh)?;
            channel.exec(true, command.as_bytes()).await.map_err(ssh)?;
            if let Some(input) = stdin {
                channel.data(input.as_bytes()).await.map_err(ssh)?;
            }
            channel.eof().await.map_err(ssh)?;
            let (mut out, mut err, mut status, mut signal) = (Vec::new(), Vec::new(), None, None);
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => keep(&mut out, &data),
                    ChannelMsg::ExtendedData { data, .. } => keep(&mut err, &data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(format!("{signal_name:?}")),
                    _ => {}
                }
            }
            Ok::<_, SshError>((out, err, status, signal))
        };
        let (out, err, status, signal) = match tokio::time::timeout(STEP_TIMEOUT, exchange).await {
            Err(_) => return Err(timeout(name, STEP_TIMEOUT)),
            Ok(r) => r?,
        };
        if status == Some(0) {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        let said = String::from_utf8_lossy(&err).trim().to_owned();
        let message = match (said.is_empty(), status, signal) {
            (false, _, _) => said,
            (true, Some(127), _) => "not found on the router".into(),
            (true, Some(s), _) => format!("exit status {s}"),
            (true, None, Some(sig)) => format!("killed by signal {sig}"),
            (true, None, None) => "ended without an exit status".into(),
        };
        Err(SshError::Remote { command: name, message })
    }

    async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// What enrolling learns of a router.
#[derive(Debug)]
pub struct Scan {
    pub host_key: PublicKey,
    /// Whether the router accepted the hub's key (else why not).
    pub login: Result<(), SshError>,
}

/// Connects to a router not yet enrolled: its host key (any is taken:
/// this is the moment it is pinned), and whether it lets the hub in.
pub async fn scan(identity: &Identity, host: &str, port: u16, user: &str) -> Result<Scan, SshError> {
    let (session, host_key) = open(identity, host, port, user, None).await;
    let Some(host_key) = host_key else {
        return Err(session.err().unwrap_or_else(|| SshError::Protocol("no host key was offered".into())));
    };
    let login = match session {
        Ok(s) => {
            s.close().await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    Ok(Scan { host_key, login })
}

/// One remote step of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run `argv`, feeding `stdin` if given; success is exit status 0.
    Run { argv: Vec<String>, stdin: Option<String> },
    /// `ubus call hostapd.<iface> del_client <json>` on every access point
    /// interface `ubus list` shows; at least one must take it.
    DelClientEverywhere { json: String },
}

fn run(argv: &[&str], stdin: Option<String>) -> Step {
    Step::Run { argv: argv.iter().map(|s| (*s).to_owned()).collect(), stdin }
}

/// The steps `action` takes on a router reached over SSH whose
/// `restart_service` list is `services`; or why it may not run there.
pub fn plan(action: &Action, services: &[String]) -> Result<Vec<Step>, String> {
    action.check()?;
    let nft_stdin = |script: String| run(&["nft", "-f", "-"], Some(script));
    Ok(match action {
        Action::Ping => vec![run(&["true"], None)],
        Action::BlockIp { net, timeout_s } => vec![nft_stdin(nft::block(&[], *net, u64::from(*timeout_s)))],
        Action::UnblockIp { net } => vec![nft_stdin(nft::unblock(&[*net]))],
        Action::BanClient { mac, ban_s } => {
            vec![Step::DelClientEverywhere { json: del_client_json(mac, *ban_s, true) }]
        }
        Action::UnbanClient { mac } => vec![Step::DelClientEverywhere { json: del_client_json(mac, 0, false) }],
        Action::RestartService { service } if services.contains(service) => {
            vec![run(&[&format!("/etc/init.d/{service}"), "restart"], None)]
        }
        Action::RestartService { service } => {
            return Err(format!("{service:?} is not in this router's restart list ({})", services.join(", ")))
        }
        Action::ReloadWifi => vec![run(&["wifi", "reload"], None)],
        Action::AgentStart { .. } | Action::AgentStop { .. } | Action::AgentRestart { .. } => {
            return Err(format!("{}: this router runs no OPMAS agent (it is reached over SSH)", action.name()))
        }
    })
}

/// `argv` as one command line for the remote shell: each argument that is
/// not plainly safe is single-quoted (POSIX: nothing inside single quotes
/// is special; a single quote itself is closed, escaped and reopened).
pub fn command_line(argv: &[String]) -> String {
    let plain = |a: &str| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    let quoted: Vec<String> =
        argv.iter().map(|a| if plain(a) { a.clone() } else { format!("'{}'", a.replace('\'', r"'\''")) }).collect();
    quoted.join(" ")
}

async fn run_steps(session: &Session, steps: &[Step]) -> Result<(), SshError> {
    for step in steps {
        match step {
            Step::Run { argv, stdin } => {
                session.run(argv, stdin.as_deref()).await?;
            }
            Step::DelClientEverywhere { json } => {
                let listing = session.run(&["ubus".into(), "list".into(), "hostapd.*".into()], None).await?;
                let objects = hostapd_objects(&listing);
                if objects.is_empty() {
                    return Err(SshError::Remote { command: "ubus".into(), message: NO_ACCESS_POINT.into() });
                }
                let mut failed = Vec::new();
                for obj in &objects {
                    let argv = ["ubus".into(), "call".into(), (*obj).to_owned(), "del_client".into(), json.clone()];
                    if let Err(e) = session.run(&argv, None).await {
                        failed.push(format!("{obj}: {e}"));
                    }
                }
                if failed.len() == objects.len() {
                    return Err(SshError::Remote { command: "ubus".into(), message: failed.join("; ") });
                }
            }
        }
    }
    Ok(())
}

/// What a router has in force: blocks and WiFi bans, each with its
/// seconds left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InForce {
    pub blocks: Vec<(opmas_proto::net::IpNet, u64)>,
    pub bans: Vec<(opmas_proto::net::Mac, u64)>,
}

/// What is still in force at `now_ms` after the blocks, unblocks, bans
/// and unbans a router carried out (`(action, when it answered)`, oldest
/// first).
pub fn in_force(done: &[(Action, i64)], now_ms: i64) -> InForce {
    let mut blocks: BTreeMap<opmas_proto::net::IpNet, i64> = BTreeMap::new();
    let mut bans: BTreeMap<opmas_proto::net::Mac, i64> = BTreeMap::new();
    let end = |at: &i64, s: &u32| at.saturating_add(i64::from(*s) * 1000);
    for (action, at) in done {
        match action {
            Action::BlockIp { net, timeout_s } => {
                blocks.insert(*net, end(at, timeout_s));
            }
            Action::UnblockIp { net } => {
                blocks.remove(net);
            }
            Action::BanClient { mac, ban_s } => {
                bans.insert(*mac, end(at, ban_s));
            }
            Action::UnbanClient { mac } => {
                bans.remove(mac);
            }
            _ => {}
        }
    }
    fn left<K>(m: BTreeMap<K, i64>, now_ms: i64) -> Vec<(K, u64)> {
        m.into_iter()
            .filter(|(_, end)| *end > now_ms + 1000)
            .map(|(k, end)| (k, ((end - now_ms) / 1000) as u64))
            .collect()
    }
    InForce { blocks: left(blocks, now_ms), bans: left(bans, now_ms) }
}

/// Runs the commands of routers reached over SSH; cheap to clone.
#[derive(Clone)]
pub struct SshTransport {
    store: Store,
    identity: Identity,
    wake: Arc<Notify>,
    /// Routers a task is working on now: one session per router at a time,
    /// so its commands run in order.
    busy: Arc<Mutex<HashSet<String>>>,
}

impl SshTransport {
    /// The transport with the hub's key from `data_dir`.
    pub fn new(store: Store, data_dir: &Path) -> Result<SshTransport, SshError> {
        let identity = Identity::load_or_create(data_dir)?;
        Ok(SshTransport { store, identity, wake: Arc::new(Notify::new()), busy: Arc::default() })
    }

    /// Whether `device` is reached over SSH.
    pub async fn handles(&self, device: &str) -> bool {
        matches!(self.store.ssh_target(device).await, Ok(Some(_)))
    }

    /// Takes `device` for one task (false if another has it).
    fn claim(&self, device: &str) -> bool {
        self.busy.lock().map(|mut b| b.insert(device.to_owned())).unwrap_or(false)
    }

    fn release(&self, device: &str) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(device);
        }
    }

    /// Runs what is pending now, without waiting for the next sweep.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs pending commands as they come and every [`SWEEP`], and puts
    /// the blocks in force back every [`ENSURE_EVERY`], for ever.
    pub async fn run(self) {
        let mut ensure = tokio::time::interval(ENSURE_EVERY);
        ensure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.sweep().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(SWEEP) => {}
                _ = ensure.tick() => self.ensure_all().await,
            }
        }
    }

    /// Applies the blocks in force again on every router that has some
    /// and is not busy with a command (the next round takes it then).
    async fn ensure_all(&self) {
        let targets = match self.store.ssh_targets().await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "SSH transport: cannot read the routers");
                return;
            }
        };
        for target in targets {
            let since = now_ms() - i64::from(opmas_proto::msg::MAX_ACTION_S) * 1000;
            let done = match self.store.ssh_remedies_done(&target.device_id, since).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(device = %target.device_id, error = %e, "SSH transport: cannot read the blocks");
                    continue;
                }
            };
            let done: Vec<(Action, i64)> =
                done.iter().filter_map(|r| Some((r.action().ok()?, r.answered_ms.unwrap_or(r.created_ms)))).collect();
            let entries = in_force(&done, now_ms());
            if entries == InForce::default() {
                continue;
            }
            if !self.claim(&target.device_id) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.ensure(&target, &entries).await {
                    warn!(device = %target.device_id, error = %e, "SSH transport: blocks in force not applied again");
                }
                me.release(&target.device_id);
            });
        }
    }

    async fn ensure(&self, target: &SshTarget, entries: &InForce) -> Result<(), SshError> {
        let pinned = parse_public(&target.host_key).map_err(SshError::Protocol)?;
        let (session, _) = open(&self.identity, &target.host, target.port, &target.user, Some(&pinned)).await;
        let session = session?;
        let mut steps = Vec::new();
        if !entries.blocks.is_empty() {
            steps.push(run(&["nft", "-f", "-"], Some(nft::ensure(&entries.blocks))));
        }
        for (mac, left) in &entries.bans {
            let ban_s = u32::try_from(*left).unwrap_or(u32::MAX);
            steps.push(Step::DelClientEverywhere { json: del_client_json(mac, ban_s, true) });
        }
        let result = run_steps(&session, &steps).await;
        session.close().await;
        result
    }

    async fn sweep(&self) {
        let pending = match self.store.ssh_pending_commands(now_ms()).await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "SSH transport: cannot read pending commands");
                return;
            }
        };
        let mut by_device: BTreeMap<String, Vec<CommandRow>> = BTreeMap::new();
        for row in pending {
            by_device.entry(row.device_id.clone()).or_default().push(row);
        }
        for (device, rows) in by_device {
            if !self.claim(&device) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let again = me.drain(&device, rows).await;
                me.release(&device);
                if again {
                    me.wake();
                }
            });
        }
    }

    /// Runs `rows` on `device` in order, in one session. Returns whether
    /// all ran (more may have come meanwhile).
    async fn drain(&self, device: &str, rows: Vec<CommandRow>) -> bool {
        let target = match self.store.ssh_target(device).await {
            Ok(Some(t)) => t,
            Ok(None) => return false,
            Err(e) => {
                warn!(device, error = %e, "SSH transport: cannot read the device");
                return false;
            }
        };
        let mut session: Option<Session> = None;
        let mut all = true;
        for row in rows {
            let started = Instant::now();
            let (outcome, message) = match self.one(&target, &row, &mut session).await {
                Ok(action) => (Outcome::Done, format!("{action} (done over SSH)")),
                Err(Ended::Rejected(why)) => (Outcome::Rejected, why),
                Err(Ended::Failed(e)) => (Outcome::Failed, e.to_string()),
                Err(Ended::Later(e)) => {
                    // Stays pending, with why, until a later sweep reaches
                    // the router or the command expires.
                    warn!(device, command = row.id, error = %e, "SSH transport: router not reached; trying again");
                    let _ = self.store.command_note(row.id, &e.to_string()).await;
                    all = false;
                    break;
                }
            };
            let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
            info!(device, command = row.id, outcome = outcome.as_str(), message = %message, "SSH command");
            let result = CommandResult { id: row.id as u64, outcome, message, duration_ms };
            if let Err(e) = self.store.record_command_result(device, &result, now_ms()).await {
                warn!(device, command = row.id, error = %e, "SSH transport: result not recorded");
            }
        }
        if let Some(s) = session {
            s.close().await;
        }
        all
    }

    async fn one(&self, target: &SshTarget, row: &CommandRow, session: &mut Option<Session>) -> Result<Action, Ended> {
        let action = row.action().map_err(|e| Ended::Rejected(e.to_string()))?;
        let steps = plan(&action, &target.services).map_err(Ended::Rejected)?;
        let _ = self.store.command_sent(row.id, now_ms()).await;
        let s = match session {
            Some(s) => s,
            None => {
                let pinned = parse_public(&target.host_key).map_err(|e| {
                    Ended::Failed(SshError::Protocol(format!("the pinned host key is unreadable: {e}")))
                })?;
                let (opened, _) = open(&self.identity, &target.host, target.port, &target.user, Some(&pinned)).await;
                session.insert(opened.map_err(Ended::from)?)
            }
        };
        match run_steps(s, &steps).await {
            Ok(()) => Ok(action),
            Err(e) => {
                if e.transient() {
                    // The session may be half dead: the next command opens a new one.
                    if let Some(s) = session.take() {
                        s.close().await;
                    }
                }
                Err(Ended::from(e))
            }
        }
    }
}

/// How a command that did not succeed ended.
enum Ended {
    /// Not run: not allowed there.
    Rejected(String),
    /// Ran, or could not run, for a reason that trying again will not change.
    Failed(SshError),
    /// Try again later.
    Later(SshError),
}

impl From<SshError> for Ended {
    fn from(e: SshError) -> Ended {
        if e.transient() {
            Ended::Later(e)
        } else {
            Ended::Failed(e)
        }
    }
}

/// `USER@HOST[:PORT]` (user `root` and port 22 if not given; an IPv6
/// address in brackets): how `device add --ssh` names a router.
pub fn parse_address(s: &str) -> Result<(String, String, u16), String> {
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) => (u, r),
        None => ("root", s),
    };
    let bad = || format!("{s:?}: expected USER@HOST or USER@HOST:PORT (IPv6 in brackets: root@[2001:db8::1]:22)");
    let user_ok = !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !user_ok {
        return Err(format!("{user:?} is not a user name"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !host_ok {
        return Err(bad());
    }
    let port = match port {
        None => 22,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{p:?} is not a port"))?,
    };
    Ok((user.to_owned(), host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_reach_the_remote_shell_as_one_word_each() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(command_line(&argv(&["nft", "-f", "-"])), "nft -f -");
        assert_eq!(command_line(&argv(&["ubus", "list", "hostapd.*"])), "ubus list 'hostapd.*'");
        assert_eq!(
            command_line(&argv(&["ubus", "call", "hostapd.wlan0", "del_client", r#"{"addr":"02:00:00:00:00:01"}"#])),
            r#"ubus call hostapd.wlan0 del_client '{"addr":"02:00:00:00:00:01"}'"#
        );
        assert_eq!(command_line(&argv(&["echo", "it's; reboot", ""])), r"echo 'it'\''s; reboot' ''");
    }

    #[test]
    fn actions_become_the_edges_own_steps_and_nothing_else() {
        let services = vec!["dnsmasq".to_owned()];
        let block = plan(&Action::BlockIp { net: "198.51.100.7".parse().unwrap(), timeout_s: 600 }, &services).unwrap();
        let Step::Run { argv, stdin: Some(script) } = &block[0] else { panic!("{block:?}") };
        assert_eq!(argv, &["nft", "-f", "-"]);
        assert!(script.ends_with("add element inet fw4 opmas_block4 { 198.51.100.7 timeout 600s }\n"), "{script}");
        let restart = plan(&Action::RestartService { service: "dnsmasq".into() }, &services).unwrap();
        assert_eq!(restart, vec![run(&["/etc/init.d/dnsmasq", "restart"], None)]);
        let refused = plan(&Action::RestartService { service: "dropbear".into() }, &services).unwrap_err();
        assert_eq!(refused, r#""dropbear" is not in this router's restart list (dnsmasq)"#);
        let agent = plan(&Action::AgentRestart { agent: "wifi".into() }, &services).unwrap_err();
        assert!(agent.contains("runs no OPMAS agent"), "{agent}");
        let ban = plan(&Action::BanClient { mac: "02:11:22:33:44:55".parse().unwrap(), ban_s: 60 }, &services);
        assert!(matches!(&ban.unwrap()[0], Step::DelClientEverywhere { json } if json.contains(r#""ban_time":60000"#)));
    }

    #[test]
    fn what_is_in_force_follows_from_the_blocks_and_unblocks_carried_out() {
        let net = |s: &str| s.parse::<opmas_proto::net::IpNet>().unwrap();
        let done = [
            (Action::BlockIp { net: net("198.51.100.7"), timeout_s: 600 }, 1_000_000),
            (Action::BlockIp { net: net("203.0.113.0/24"), timeout_s: 60 }, 1_000_000),
            (Action::BlockIp { net: net("2001:db8::1"), timeout_s: 600 }, 1_000_000),
            (Action::UnblockIp { net: net("2001:db8::1") }, 1_100_000),
            (Action::Ping, 1_100_000),
        ];
        // 100 s later: the /24 has ended, the v6 address was unblocked.
        assert_eq!(in_force(&done, 1_100_000).blocks, vec![(net("198.51.100.7"), 500)]);
        assert_eq!(in_force(&done, 1_600_000), InForce::default(), "all ended");
        let mac = |s: &str| s.parse::<opmas_proto::net::Mac>().unwrap();
        let bans = [
            (Action::BanClient { mac: mac("02:11:22:33:44:55"), ban_s: 600 }, 1_000_000),
            (Action::BanClient { mac: mac("02:11:22:33:44:66"), ban_s: 600 }, 1_000_000),
            (Action::UnbanClient { mac: mac("02:11:22:33:44:66") }, 1_050_000),
        ];
        let f = in_force(&bans, 1_100_000);
        assert_eq!(
            (f.blocks.len(), f.bans),
            (0, vec![(mac("02:11:22:33:44:55"), 500)]),
            "banned again after a wifi reload"
        );
    }

    #[test]
    fn router_addresses_are_read_with_defaults_and_checked() {
        assert_eq!(parse_address("192.0.2.1").unwrap(), ("root".into(), "192.0.2.1".into(), 22));
        assert_eq!(parse_address("admin@gw.example:2222").unwrap(), ("admin".into(), "gw.example".into(), 2222));
        assert_eq!(parse_address("root@[2001:db8::1]:22").unwrap(), ("root".into(), "2001:db8::1".into(), 22));
        assert!(parse_address("root@gw:0").unwrap_err().contains("not a port"));
        assert!(parse_address("-oProxyCommand=x@gw").unwrap_err().contains("not a user name"));
        assert!(parse_address("root@gw;reboot").unwrap_err().contains("expected USER@HOST"));
        assert!(parse_address("root@[2001:db8::1").is_err());
    }

    #[test]
    fn the_hub_key_is_made_once_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_line(), b.public_line());
        assert!(a.public_line().starts_with("ssh-ed25519 AAAA"), "{}", a.public_line());
        std::fs::write(dir.path().join(KEY_FILE), "junk").unwrap();
        let e = Identity::load_or_create(dir.path()).err().unwrap().to_string();
        assert!(e.contains("ssh_ed25519") && e.contains("not an OpenSSH private key"), "{e}");
    }
}
