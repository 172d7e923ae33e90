//! A lab of real hosts in Linux network namespaces, for tests of what
//! crosses a network: routers (each its own namespace, its own nftables,
//! an uplink to the hub in the test's namespace) and an attacker with a
//! link to every router. Made with `ip netns` and veth pairs; removed when
//! dropped (deleting a namespace deletes its veth ends and their peers).
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them). With
//! `OPMAS_REQUIRE_NETNS=1` (set by `.ci/run`) a missing piece fails the
//! test; otherwise [`Lab::available`] says why and the test skips.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

static LABS: AtomicU32 = AtomicU32::new(0);

/// One router of the lab.
#[derive(Clone, Debug)]
pub struct Router {
    /// Its namespace.
    pub ns: String,
    /// The hub's address on the router's uplink (in the test's namespace).
    pub hub_side: Ipv4Addr,
    /// The router's own address on that uplink.
    pub up: Ipv4Addr,
    /// The router's address towards the attacker.
    pub addr: Ipv4Addr,
    /// The attacker's address (the same for every router).
    pub attacker: Ipv4Addr,
}

/// Routers and an attacker in their own namespaces. The attacker has one
/// address, on a bridge every router is linked to: what one router sees
/// is what the others would see.
pub struct Lab {
    pub routers: Vec<Router>,
    /// The attacker's namespace.
    pub attacker: String,
}

impl Lab {
    /// `Ok` if labs can be made here, else why not.
    pub fn available() -> std::result::Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc_geteuid() } != 0 {
            return Err("not root: network namespaces need it".into());
        }
        for tool in ["ip", "nft", "python3"] {
            if Command::new(tool).arg("-V").output().is_err() && Command::new(tool).arg("--version").output().is_err() {
                return Err(format!("{tool} not found"));
            }
        }
        Ok(())
    }

    /// Skips (returns `false`) or fails by `OPMAS_REQUIRE_NETNS` when labs
    /// cannot be made here.
    pub fn usable() -> bool {
        match Lab::available() {
            Ok(()) => true,
            Err(why) => {
                assert!(std::env::var_os("OPMAS_REQUIRE_NETNS").is_none(), "network namespaces: {why}");
                eprintln!("skipped: {why}");
                false
            }
        }
    }

    /// `n` routers (at most 128) and an attacker linked to each.
    pub fn new(n: usize) -> Result<Lab> {
        assert!(n <= 128, "at most 128 routers in a lab");
        let lab = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, lab);
        // The second octet keeps parallel test processes apart; the third
        // and fourth give each router of each lab a /30 uplink.
        let b = 64 + (pid % 128) as u8;
        let mut out = Lab { routers: Vec::new(), attacker: format!("oa{tag}") };
        ip(["netns", "add", &out.attacker])?;
        ip(["-n", &out.attacker, "link", "set", "lo", "up"])?;
        let lan = (16 + (b % 16), (lab % 256) as u8);
        let attacker = Ipv4Addr::new(172, lan.0, lan.1, 200);
        ip(["-n", &out.attacker, "link", "add", "br0", "type", "bridge"])?;
        ip(["-n", &out.attacker, "addr", "add", &format!("{attacker}/24"), "dev", "br0"])?;
        ip(["-n", &out.attacker, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let k = (lab as usize % 128) * 128 + i;
            let (c, d) = ((k / 64) as u8, ((k % 64) * 4) as u8);
            let ns = format!("or{tag}x{i}");
            ip(["netns", "add", &ns])?;
            let r = Router {
                ns: ns.clone(),
                hub_side: Ipv4Addr::new(10, b, c, d + 1),
                up: Ipv4Addr::new(10, b, c, d + 2),
                addr: Ipv4Addr::new(172, lan.0, lan.1, i as u8 + 1),
                attacker,
            };
            out.routers.push(r.clone());
            ip(["-n", &ns, "link", "set", "lo", "up"])?;
            // Uplink: the test's namespace ↔ the router.
            let (up_h, up_r) = (format!("u{tag}x{i}h"), format!("u{tag}x{i}r"));
            ip(["link", "add", &up_h, "type", "veth", "peer", "name", &up_r])?;
            ip(["link", "set", &up_r, "netns", &ns])?;
            ip(["addr", "add", &format!("{}/30", r.hub_side), "dev", &up_h])?;
            ip(["link", "set", &up_h, "up"])?;
            ip(["-n", &ns, "addr", "add", &format!("{}/30", r.up), "dev", &up_r])?;
            ip(["-n", &ns, "link", "set", &up_r, "up"])?;
            // The attacker's link to this router.
            let (w_r, w_a) = (format!("w{tag}x{i}r"), format!("w{tag}x{i}a"));
            ip(["link", "add", &w_r, "type", "veth", "peer", "name", &w_a])?;
            ip(["link", "set", &w_r, "netns", &ns])?;
            ip(["link", "set", &w_a, "netns", &out.attacker])?;
            ip(["-n", &ns, "addr", "add", &format!("{}/24", r.addr), "dev", &w_r])?;
            ip(["-n", &ns, "link", "set", &w_r, "up"])?;
            ip(["-n", &out.attacker, "link", "set", &w_a, "master", "br0"])?;
            ip(["-n", &out.attacker, "link", "set", &w_a, "up"])?;
        }
        Ok(out)
    }

    /// Runs `argv` inside namespace `ns` and returns its output.
    pub fn exec<S: AsRef<OsStr>>(ns: &str, argv: &[S]) -> Result<Output> {
        let out = Command::new("ip").args(["netns", "exec", ns]).args(argv).output().context("ip netns exec")?;
        Ok(out)
    }

    /// Runs `nft args...` on router `ns`; fails with nft's words.
    pub fn nft(ns: &str, args: &[&str]) -> Result<String> {
        let mut argv = vec!["nft"];
        argv.extend_from_slice(args);
        let out = Lab::exec(ns, &argv)?;
        if !out.status.success() {
            bail!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether a TCP connection from the attacker to `to` completes within
    /// `timeout` (a dropped SYN times out; a refused one fails at once).
    pub fn attacker_connects(&self, to: SocketAddr, timeout: Duration) -> bool {
        let script = format!(
            "import socket,sys\ns=socket.socket()\ns.settimeout({})\nsys.exit(0 if s.connect_ex(('{}',{}))==0 else 1)",
            timeout.as_secs_f64(),
            to.ip(),
            to.port()
        );
        Lab::exec(&self.attacker, &["python3", "-c", &script]).map(|o| o.status.success()).unwrap_or(false)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for r in &self.routers {
            let _ = ip(["netns", "del", &r.ns]);
        }
        let _ = ip(["netns", "del", &self.attacker]);
    }
}

fn ip<const N: usize>(args: [&str; N]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
