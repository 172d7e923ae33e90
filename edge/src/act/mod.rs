//! Actions on the router: what the hub's commands and the local response
//! may change, and nothing else.
//!
//! [`Responder`] is the pure half (no I/O, no clock): it checks an
//! [`Action`]'s parameters against the wire's bounds and this router's own
//! lists (addresses it never blocks, services it may restart), keeps the
//! bans in force, and turns each action into a [`Job`]: argv steps run
//! without a shell (see [`exec`], the I/O half). The nft scripts and
//! hostapd's arguments are [`opmas_proto::remedy`]'s, which the hub's SSH
//! transport runs too. Nothing a log line or a message says reaches an
//! argv except as a typed value (an [`IpNet`], a [`Mac`], a service name
//! from the allowlist) printed by Rust.
//!
//! Blocks live in two sets of the `inet fw4` table (`opmas_block4`,
//! `opmas_block6`) used by one chain of our own (`opmas_drop`, hooked at
//! prerouting before connection tracking, so forwarded and local traffic
//! alike are dropped, established connections too). Every element has
//! its timeout in the kernel, so a ban ends on time even if the edge is
//! gone. fw4 rebuilds its table on `fw4 reload` (it flushes the table, which
//! drops our rule) and `fw4 restart` (it deletes the table, sets and all):
//! [`Responder::tick`] re-applies the whole state, one atomic `nft -f`
//! transaction, every [`ENSURE_EVERY`] while a ban is in force, with each
//! element's remaining time.
//!
//! WiFi bans use hostapd's own ban list (`ubus call hostapd.<iface>
//! del_client` with `ban_time`) on every access point interface: hostapd
//! refuses the station's authentication for that long. A `wifi reload`
//! restarts hostapd and forgets them, so after one the bans in force are
//! made again.

pub mod exec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use opmas_proto::kinds::{RESPONSE_AGENT, RESPONSE_FAILED, RESPONSE_IP_BLOCKED};
use opmas_proto::msg::{check_blockable, Action, Finding, Outcome, Stage, Subject};
use opmas_proto::net::{IpNet, Mac};
use opmas_proto::remedy::{del_client_json, nft};

/// How often the bans are re-applied while any is in force (fw4 may have
/// rebuilt its table since).
pub const ENSURE_EVERY: Duration = Duration::from_secs(5);
/// Most networks blocked at once; a block beyond is refused and says so.
pub const MAX_BLOCKS: usize = 4096;
/// Most stations banned at once.
pub const MAX_STATION_BANS: usize = 256;

/// Where the tools are (UCI `config response`; the defaults are OpenWRT's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    pub nft: PathBuf,
    pub ubus: PathBuf,
    pub wifi: PathBuf,
    /// Where init scripts are: a service is `init_dir/<name> restart`.
    pub init_dir: PathBuf,
}

impl Default for Tools {
    fn default() -> Tools {
        Tools {
            nft: "/usr/sbin/nft".into(),
            ubus: "/bin/ubus".into(),
            wifi: "/sbin/wifi".into(),
            init_dir: "/etc/init.d".into(),
        }
    }
}

/// The router's own rules for actions (UCI `config response 'response'`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActConfig {
    /// Whether the hub's actions run at all (agent commands always do).
    pub enabled: bool,
    /// Networks never blocked, whoever asks (the operator's own, the hub's
    /// address).
    pub never_block: Vec<IpNet>,
    /// Services `restart_service` may restart.
    pub services: Vec<String>,
    pub tools: Tools,
    /// Block at once, without the hub, the source of some findings: the
    /// router's own settings (the hub may override each, see
    /// [`Responder::set_hub_local`]).
    pub local: LocalSettings,
}

impl Default for ActConfig {
    fn default() -> ActConfig {
        ActConfig {
            enabled: true,
            never_block: Vec::new(),
            services: vec!["dnsmasq".into(), "odhcpd".into(), "uhttpd".into()],
            tools: Tools::default(),
            local: LocalSettings::default(),
        }
    }
}

pub use opmas_proto::local_response::{LocalOverride, LocalResponse, LocalSettings};

/// One step of a job: a program and its arguments, never a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run `argv`, feeding `stdin` if given; success is exit status 0.
    Run { argv: Vec<String>, stdin: Option<String> },
    /// `ubus call hostapd.<iface> del_client <json>` on every access point
    /// interface `ubus list` shows; at least one must exist and take it.
    HostapdDelClient { json: String },
}

/// Who asked for a job, and so where its result goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A hub command: its result goes back with this id.
    Command(u64),
    /// The local response to a finding of `kind`.
    Local { kind: String },
    /// The periodic re-application of the bans.
    Ensure,
}

/// What the responder's tables become when a job succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    Blocked {
        net: IpNet,
        until: Duration,
        replaced: Vec<IpNet>,
    },
    Unblocked {
        nets: Vec<IpNet>,
    },
    Banned {
        mac: Mac,
        until: Duration,
    },
    Unbanned {
        mac: Mac,
    },
    /// hostapd restarted: the station bans in force must be made again.
    WifiReloaded,
}

/// Work for [`exec`]: steps in order, stopping at the first failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub origin: Origin,
    pub steps: Vec<Step>,
    pub effect: Effect,
    /// Said when it succeeds.
    pub done: String,
}

/// A finished job, as [`exec`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDone {
    pub job: Job,
    /// `Err` with the tool's own words.
    pub result: Result<(), String>,
    pub duration_ms: u32,
}

/// What becomes of an action: run a job, or answer at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Job(Job),
    Answer(Outcome, String),
}

/// The router's action state: settings, bans in force, when they were last
/// applied. Times are the edge's monotonic time.
#[derive(Debug)]
pub struct Responder {
    cfg: ActConfig,
    /// The local response in force: the router's settings with the hub's over them.
    local: Option<LocalResponse>,
    blocks: BTreeMap<IpNet, Duration>,
    bans: BTreeMap<Mac, Duration>,
    last_ensure: Option<Duration>,
    /// A job is out with the executor that changes the bans: the periodic
    /// re-application waits for it, so it never re-adds what it removes.
    busy: u32,
}

impl Responder {
    pub fn new(cfg: ActConfig) -> Responder {
        let local = cfg.local.response();
        Responder { cfg, local, blocks: BTreeMap::new(), bans: BTreeMap::new(), last_ensure: None, busy: 0 }
    }

    /// The hub's settings of the local response, over the router's own
    /// (what the hub leaves alone stays the router's). Returns what is in
    /// force now.
    pub fn set_hub_local(&mut self, hub: &LocalOverride) -> Option<&LocalResponse> {
        self.local = hub.over(&self.cfg.local).response();
        self.local.as_ref()
    }

    /// The local response in force (`None`: off).
    pub fn local(&self) -> Option<&LocalResponse> {
        self.local.as_ref()
    }

    pub fn config(&self) -> &ActConfig {
        &self.cfg
    }

    /// Networks blocked now, with their remaining time.
    pub fn blocks(&self, now: Duration) -> Vec<(IpNet, Duration)> {
        self.blocks.iter().filter(|(_, u)| **u > now).map(|(n, u)| (*n, *u - now)).collect()
    }

    /// Stations banned now, with their remaining time.
    pub fn bans(&self, now: Duration) -> Vec<(Mac, Duration)> {
        self.bans.iter().filter(|(_, u)| **u > now).map(|(m, u)| (*m, *u - now)).collect()
    }

    /// Whether `action` is one this module runs (the others are the
    /// machine's own: ping and agent lifecycle).
    pub fn handles(action: &Action) -> bool {
        !matches!(
            action,
            Action::Ping | Action::AgentStart { .. } | Action::AgentStop { .. } | Action::AgentRestart { .. }
        )
    }

    /// Plans hub command `id`'s action at `now`.
    pub fn plan(&mut self, id: u64, action: &Action, now: Duration) -> Plan {
        if !self.cfg.enabled {
            return Plan::Answer(
                Outcome::Failed,
                "actions are switched off on this router (UCI opmas.response.actions)".into(),
            );
        }
        if let Err(why) = action.check() {
            return Plan::Answer(Outcome::Failed, why);
        }
        self.expire(now);
        let origin = Origin::Command(id);
        let planned = match action {
            Action::BlockIp { net, timeout_s } => self.plan_block(origin, *net, *timeout_s, now),
            Action::UnblockIp { net } => self.plan_unblock(origin, *net),
            Action::BanClient { mac, ban_s } => Ok(Plan::Job(self.ban_job(origin, *mac, *ban_s, now))),
            Action::UnbanClient { mac } => Ok(Plan::Job(Job {
                origin,
                steps: vec![Step::HostapdDelClient { json: del_client_json(mac, 0, false) }],
                effect: Effect::Unbanned { mac: *mac },
                done: format!("{mac} may connect again"),
            })),
            Action::RestartService { service } => self.plan_restart(origin, service),
            Action::ReloadWifi => Ok(Plan::Job(Job {
                origin,
                steps: vec![Step::Run { argv: vec![path(&self.cfg.tools.wifi), "reload".into()], stdin: None }],
                effect: Effect::WifiReloaded,
                done: "wifi reloaded".into(),
            })),
            other => Err(format!("{} is not an action of the executor", other.name())),
        };
        match planned {
            Ok(Plan::Job(job)) => {
                self.busy += 1;
                Plan::Job(job)
            }
            Ok(answer) => answer,
            Err(why) => Plan::Answer(Outcome::Failed, why),
        }
    }

    /// The local response to a new finding of `kind` about `src`: a job
    /// that blocks it, or `None` (not configured for this kind, already
    /// blocked, or protected: the reason is in the `Err`).
    pub fn respond(&mut self, kind: &str, src: std::net::IpAddr, now: Duration) -> Result<Option<Job>, String> {
        let Some(local) = self.local.as_ref().filter(|l| l.kinds.iter().any(|k| k == kind)) else {
            return Ok(None);
        };
        let block_s = local.block_s;
        self.expire(now);
        let net = IpNet::host(src);
        check_blockable(&net)?;
        if self.blocks.keys().any(|b| b.contains(&net)) {
            return Ok(None);
        }
        match self.plan_block(Origin::Local { kind: kind.to_owned() }, net, block_s, now)? {
            Plan::Job(job) => {
                self.busy += 1;
                Ok(Some(job))
            }
            Plan::Answer(..) => Ok(None),
        }
    }

    fn plan_block(&self, origin: Origin, net: IpNet, timeout_s: u32, now: Duration) -> Result<Plan, String> {
        if let Some(p) = self.cfg.never_block.iter().find(|p| p.contains(&net) || net.contains(p)) {
            return Err(format!("{net} is protected on this router (never_block {p}): not blocked"));
        }
        let until = now + Duration::from_secs(u64::from(timeout_s));
        if let Some((outer, u)) = self.blocks.iter().find(|(b, _)| **b != net && b.contains(&net)) {
            if *u >= until {
                let left = u.saturating_sub(now).as_secs();
                return Ok(Plan::Answer(
                    Outcome::Done,
                    format!("{net} is already blocked: inside {outer} for {left} s more"),
                ));
            }
        }
        // Elements of an interval set may not overlap: the networks inside
        // this one go, and it keeps the longest of their times.
        let inside: Vec<(IpNet, Duration)> =
            self.blocks.iter().filter(|(b, _)| net.contains(b)).map(|(b, u)| (*b, *u)).collect();
        if self.blocks.len() - inside.len() >= MAX_BLOCKS {
            return Err(format!("{MAX_BLOCKS} networks are blocked already: not blocking {net}"));
        }
        let until = inside.iter().map(|(_, u)| *u).fold(until, Duration::max);
        let replaced: Vec<IpNet> = inside.iter().map(|(b, _)| *b).collect();
        let secs = until.saturating_sub(now).as_secs();
        let script = nft::block(&replaced, net, secs);
        Ok(Plan::Job(Job {
            origin,
            steps: vec![Step::Run { argv: nft_argv(&self.cfg.tools.nft), stdin: Some(script) }],
            effect: Effect::Blocked { net, until, replaced },
            done: format!("blocked {net} for {secs} s"),
        }))
    }

    fn plan_unblock(&self, origin: Origin, net: IpNet) -> Result<Plan, String> {
        if let Some((outer, _)) = self.blocks.iter().find(|(b, _)| **b != net && b.contains(&net)) {
            return Err(format!("{net} is inside the blocked network {outer}: unblock {outer}"));
        }
        // The network itself is deleted even when the table does not know
        // it: an earlier run of the edge may have blocked it.
        let mut nets: Vec<IpNet> = self.blocks.keys().filter(|b| net.contains(b)).copied().collect();
        if !nets.contains(&net) {
            nets.push(net);
        }
        let names = nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
        Ok(Plan::Job(Job {
            origin,
            steps: vec![Step::Run { argv: nft_argv(&self.cfg.tools.nft), stdin: Some(nft::unblock(&nets)) }],
            effect: Effect::Unblocked { nets },
            done: format!("unblocked {names}"),
        }))
    }

    fn ban_job(&self, origin: Origin, mac: Mac, ban_s: u32, now: Duration) -> Job {
        Job {
            origin,
            steps: vec![Step::HostapdDelClient { json: del_client_json(&mac, ban_s, true) }],
            effect: Effect::Banned { mac, until: now + Duration::from_secs(u64::from(ban_s)) },
            done: format!("{mac} disconnected and banned for {ban_s} s"),
        }
    }

    fn plan_restart(&self, origin: Origin, service: &str) -> Result<Plan, String> {
        if !self.cfg.services.iter().any(|s| s == service) {
            return Err(format!(
                "service {service:?} is not in this router's restart_service list ({})",
                self.cfg.services.join(", ")
            ));
        }
        let script = self.cfg.tools.init_dir.join(service);
        Ok(Plan::Job(Job {
            origin,
            steps: vec![Step::Run { argv: vec![path(&script), "restart".into()], stdin: None }],
            effect: Effect::None,
            done: format!("{service} restarted"),
        }))
    }

    /// The networks in force, with their seconds left.
    fn entries(&self, now: Duration) -> Vec<(IpNet, u64)> {
        self.blocks.iter().filter(|(_, u)| **u > now).map(|(n, u)| (*n, secs_left(*u, now))).collect()
    }

    /// Notes a finished job; returns the jobs it makes necessary (station
    /// bans made again after a WiFi reload).
    pub fn finished(&mut self, done: &JobDone, now: Duration) -> Vec<Job> {
        if !matches!(done.job.origin, Origin::Ensure) {
            self.busy = self.busy.saturating_sub(1);
        }
        if done.result.is_err() {
            return Vec::new();
        }
        match &done.job.effect {
            Effect::None => {}
            Effect::Blocked { net, until, replaced } => {
                for r in replaced {
                    self.blocks.remove(r);
                }
                self.blocks.insert(*net, *until);
            }
            Effect::Unblocked { nets } => {
                for n in nets {
                    self.blocks.remove(n);
                }
            }
            Effect::Banned { mac, until } => {
                if self.bans.len() >= MAX_STATION_BANS && !self.bans.contains_key(mac) {
                    // The soonest to end goes; hostapd still has it.
                    if let Some(first) = self.bans.iter().min_by_key(|(_, u)| **u).map(|(m, _)| *m) {
                        self.bans.remove(&first);
                    }
                }
                self.bans.insert(*mac, *until);
            }
            Effect::Unbanned { mac } => {
                self.bans.remove(mac);
            }
            Effect::WifiReloaded => {
                self.expire(now);
                return self
                    .bans
                    .iter()
                    .map(|(mac, until)| {
                        let secs = secs_left(*until, now).min(u64::from(u32::MAX)) as u32;
                        let mut job = self.ban_job(Origin::Ensure, *mac, secs, now);
                        job.effect = Effect::None;
                        job
                    })
                    .collect();
            }
        }
        Vec::new()
    }

    /// Once a second: the re-application of the bans when it is due.
    pub fn tick(&mut self, now: Duration) -> Option<Job> {
        self.expire(now);
        if self.blocks.is_empty() || self.busy > 0 {
            return None;
        }
        if self.last_ensure.is_some_and(|t| now.saturating_sub(t) < ENSURE_EVERY) {
            return None;
        }
        self.last_ensure = Some(now);
        let entries = self.entries(now);
        Some(Job {
            origin: Origin::Ensure,
            steps: vec![Step::Run { argv: nft_argv(&self.cfg.tools.nft), stdin: Some(nft::ensure(&entries)) }],
            effect: Effect::None,
            done: format!("{} block(s) re-applied", entries.len()),
        })
    }

    fn expire(&mut self, now: Duration) {
        self.blocks.retain(|_, u| *u > now);
        self.bans.retain(|_, u| *u > now);
    }
}

/// The finding that tells the hub what the local response did (or could
/// not do): agent `response`, delivered through the spool like any other,
/// so a router cut off from the hub reports it once it is back.
pub fn local_finding(job: &Job, trigger: &str, error: Option<&String>, now_ms: u64) -> Option<Finding> {
    let Effect::Blocked { net, .. } = &job.effect else { return None };
    let (kind, summary) = match error {
        None => (&RESPONSE_IP_BLOCKED, format!("{} here at once (local response to {trigger})", job.done)),
        Some(e) => (&RESPONSE_FAILED, format!("could not block {net} (local response to {trigger}): {e}")),
    };
    Some(Finding {
        seq: 0,
        agent: RESPONSE_AGENT.into(),
        kind: kind.name.into(),
        severity: kind.severity,
        subject: Subject { src_ip: Some(net.addr()), ..Subject::default() },
        count: 1,
        first_ms: now_ms,
        last_ms: now_ms,
        summary,
        evidence: Vec::new(),
        stage: Stage::New,
    })
}

fn secs_left(until: Duration, now: Duration) -> u64 {
    // Rounded up: an element with 0 s would never expire in nft.
    until.saturating_sub(now).as_millis().div_ceil(1000).max(1) as u64
}

/// `nft -f -`: the script comes on standard input.
fn nft_argv(nft: &std::path::Path) -> Vec<String> {
    vec![path(nft), "-f".into(), "-".into()]
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    fn responder() -> Responder {
        Responder::new(ActConfig {
            never_block: vec!["192.168.1.0/24".parse().unwrap()],
            local: LocalSettings { block: true, kinds: vec!["ssh.bruteforce".into()], block_s: 600 },
            ..ActConfig::default()
        })
    }

    fn job(p: Plan) -> Job {
        match p {
            Plan::Job(j) => j,
            other => panic!("no job: {other:?}"),
        }
    }

    fn ok(r: &mut Responder, j: Job, now: Duration) -> Vec<Job> {
        r.finished(&JobDone { job: j, result: Ok(()), duration_ms: 3 }, now)
    }

    fn script(j: &Job) -> &str {
        match &j.steps[0] {
            Step::Run { stdin: Some(s), argv } => {
                assert_eq!(argv, &["/usr/sbin/nft", "-f", "-"]);
                s
            }
            other => panic!("{other:?}"),
        }
    }

    fn block(net: &str, s: u32) -> Action {
        Action::BlockIp { net: net.parse().unwrap(), timeout_s: s }
    }

    #[test]
    fn a_block_is_one_transaction_and_lives_in_the_table_once_it_ran() {
        let mut r = responder();
        let j = job(r.plan(1, &block("198.51.100.7", 3600), T));
        let s = script(&j);
        assert!(s.contains("add element inet fw4 opmas_block4 { 198.51.100.7 timeout 3600s }"), "{s}");
        assert!(s.contains("hook prerouting priority raw"), "{s}");
        assert!(r.blocks(T).is_empty(), "not before it ran");
        ok(&mut r, j, 2 * T);
        assert_eq!(r.blocks(2 * T), vec![("198.51.100.7".parse().unwrap(), 3599 * T)]);
        // A failed job changes nothing.
        let j = job(r.plan(2, &block("2001:db8::/48", 60), 3 * T));
        assert!(script(&j).contains("add element inet fw4 opmas_block6 { 2001:db8::/48 timeout 60s }"));
        r.finished(&JobDone { job: j, result: Err("nft: no".into()), duration_ms: 1 }, 3 * T);
        assert_eq!(r.blocks(3 * T).len(), 1);
        // Expiry is the kernel's; the table forgets it too.
        assert!(r.blocks(3601 * T).is_empty());
    }

    #[test]
    fn protected_and_overlapping_networks_are_handled_before_nft_sees_them() {
        let mut r = responder();
        match r.plan(1, &block("192.168.1.20", 60), T) {
            Plan::Answer(Outcome::Failed, m) => assert!(m.contains("protected on this router"), "{m}"),
            other => panic!("{other:?}"),
        }
        match r.plan(2, &block("192.168.0.0/16", 60), T) {
            Plan::Answer(Outcome::Failed, m) => assert!(m.contains("never_block 192.168.1.0/24"), "{m}"),
            other => panic!("{other:?}"),
        }
        let j = job(r.plan(3, &block("198.51.100.7", 60), T));
        ok(&mut r, j, T);
        // The network around it replaces it, keeping the longer time.
        let j = job(r.plan(4, &block("198.51.100.0/24", 30), T));
        let s = script(&j);
        assert!(s.contains("delete element inet fw4 opmas_block4 { 198.51.100.7 }"), "{s}");
        assert!(s.contains("add element inet fw4 opmas_block4 { 198.51.100.0/24 timeout 60s }"), "{s}");
        ok(&mut r, j, T);
        assert_eq!(r.blocks(T).len(), 1);
        // An address inside it is blocked already.
        assert_eq!(
            r.plan(5, &block("198.51.100.9", 10), T),
            Plan::Answer(Outcome::Done, "198.51.100.9 is already blocked: inside 198.51.100.0/24 for 60 s more".into())
        );
        match r.plan(6, &Action::UnblockIp { net: "198.51.100.9".parse().unwrap() }, T) {
            Plan::Answer(Outcome::Failed, m) => assert!(m.contains("unblock 198.51.100.0/24"), "{m}"),
            other => panic!("{other:?}"),
        }
        let j = job(r.plan(7, &Action::UnblockIp { net: "198.51.0.0/16".parse().unwrap() }, T));
        assert!(script(&j).contains("delete element inet fw4 opmas_block4 { 198.51.100.0/24 }"));
        ok(&mut r, j, T);
        assert!(r.blocks(T).is_empty());
        // What the table does not know is deleted anyway (an earlier run).
        let j = job(r.plan(8, &Action::UnblockIp { net: "198.51.100.9".parse().unwrap() }, T));
        assert!(script(&j).contains("delete element inet fw4 opmas_block4 { 198.51.100.9 }"));
        // The wire's bounds hold here too.
        match r.plan(9, &block("127.0.0.1", 60), T) {
            Plan::Answer(Outcome::Failed, m) => assert!(m.contains("never blocked"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_bans_are_reapplied_with_their_remaining_time_but_not_under_a_change() {
        let mut r = responder();
        assert!(r.tick(T).is_none(), "nothing to keep");
        let j = job(r.plan(1, &block("203.0.113.5", 100), T));
        assert!(r.tick(2 * T).is_none(), "a change is out");
        ok(&mut r, j, 2 * T);
        let e = r.tick(11 * T).expect("due");
        assert!(script(&e).contains("add element inet fw4 opmas_block4 { 203.0.113.5 timeout 90s }"), "{}", script(&e));
        assert!(script(&e).contains("flush chain inet fw4 opmas_drop"));
        r.finished(&JobDone { job: e, result: Ok(()), duration_ms: 1 }, 11 * T);
        assert!(r.tick(12 * T).is_none(), "not again before ENSURE_EVERY");
        assert!(r.tick(16 * T).is_some());
        assert!(r.tick(200 * T).is_none(), "expired: nothing to keep");
    }

    #[test]
    fn services_come_from_the_allowlist_and_wifi_bans_outlive_a_reload() {
        let mut r = responder();
        let j = job(r.plan(1, &Action::RestartService { service: "dnsmasq".into() }, T));
        assert_eq!(
            j.steps,
            vec![Step::Run { argv: vec!["/etc/init.d/dnsmasq".into(), "restart".into()], stdin: None }]
        );
        match r.plan(2, &Action::RestartService { service: "dropbear".into() }, T) {
            Plan::Answer(Outcome::Failed, m) => assert!(m.contains("not in this router's restart_service list"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mac: Mac = "02:11:22:33:44:55".parse().unwrap();
        let j = job(r.plan(3, &Action::BanClient { mac, ban_s: 600 }, T));
        assert_eq!(
            j.steps,
            vec![Step::HostapdDelClient {
                json: r#"{"addr":"02:11:22:33:44:55","reason":5,"deauth":true,"ban_time":600000}"#.into()
            }]
        );
        ok(&mut r, j, T);
        let reload = job(r.plan(4, &Action::ReloadWifi, 10 * T));
        let again = ok(&mut r, reload, 11 * T);
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].steps,
            vec![Step::HostapdDelClient {
                json: r#"{"addr":"02:11:22:33:44:55","reason":5,"deauth":true,"ban_time":590000}"#.into()
            }]
        );
        let j = job(r.plan(5, &Action::UnbanClient { mac }, 12 * T));
        assert!(matches!(&j.steps[0], Step::HostapdDelClient { json } if json.contains(r#""ban_time":0"#)));
        ok(&mut r, j, 12 * T);
        assert!(r.bans(12 * T).is_empty());
    }

    #[test]
    fn the_local_response_blocks_configured_kinds_once_and_never_a_protected_address() {
        let mut r = responder();
        let src = "198.51.100.77".parse().unwrap();
        assert_eq!(r.respond("net.port_scan", src, T), Ok(None));
        let j = r.respond("ssh.bruteforce", src, T).unwrap().expect("a block");
        assert_eq!(j.origin, Origin::Local { kind: "ssh.bruteforce".into() });
        assert!(script(&j).contains("{ 198.51.100.77 timeout 600s }"));
        ok(&mut r, j, T);
        assert_eq!(r.respond("ssh.bruteforce", src, 2 * T), Ok(None), "already blocked");
        let err = r.respond("ssh.bruteforce", "192.168.1.5".parse().unwrap(), T).unwrap_err();
        assert!(err.contains("protected"), "{err}");
        let mut off = Responder::new(ActConfig { enabled: false, ..ActConfig::default() });
        assert!(matches!(off.plan(1, &block("198.51.100.1", 5), T), Plan::Answer(Outcome::Failed, _)));
    }
}
