//! mosquitto 2 as the external broker: the password file that lets each
//! enrolled router in as itself (user name = device id, password = its
//! secret, as with the embedded broker) and the ACL that confines it to its
//! own topics, kept in step with the database.
//!
//! The hub writes both files whole, each to a temporary file renamed over
//! the old one (mosquitto never reads half a file; an existing file keeps
//! its mode and owner, so the operator's `chgrp mosquitto` stays), then
//! sends mosquitto SIGHUP (its pid file) to re-read them. mosquitto drops
//! the sessions of users no longer in the file at that reload, so a removed
//! or rekeyed router is out at once. Passwords are stored as mosquitto's
//! own `$7$` hashes (PBKDF2-HMAC-SHA512, as `mosquitto_passwd` writes).
//!
//! The ACL is the same for every router: `pattern` lines with `%u`, so a
//! router may publish only on `opmas/v1/<its id>/{status,hb,finding,result}`
//! and read only its own `ack`, `config` and `cmd`; the hub's user reads and
//! writes `opmas/v1/#`. The broker's configuration names both files and
//! refuses anonymous clients (`config/mosquitto/opmas.conf`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use opmas_proto::Channel;
use rand::RngCore;

use crate::config::BrokerConfig;
use crate::files::replace;
use crate::store::Store;

/// PBKDF2 rounds of a `$7$` hash (mosquitto_passwd's own default).
const ROUNDS: u32 = 101;

/// The files the hub keeps for mosquitto, and how to tell it.
#[derive(Clone, Debug)]
pub struct Mosquitto {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// The hub's own user and password (it must stay in the file).
    pub hub_user: String,
    hub_password: String,
}

impl Mosquitto {
    /// From `[broker]`: `None` unless both files are set; an error if only
    /// one is, or the hub's login is missing.
    pub fn from_config(cfg: &BrokerConfig) -> Result<Option<Mosquitto>> {
        let (password_file, acl_file) = match (&cfg.mosquitto_password_file, &cfg.mosquitto_acl_file) {
            (None, None) => {
                if cfg.mosquitto_pid_file.is_some() {
                    bail!(
                        "[broker] mosquitto_pid_file is set but mosquitto_password_file and mosquitto_acl_file are not"
                    );
                }
                return Ok(None);
            }
            (Some(p), Some(a)) => (p.clone(), a.clone()),
            _ => bail!("[broker] mosquitto_password_file and mosquitto_acl_file go together"),
        };
        let (Some(hub_user), Some(hub_password)) = (&cfg.username, cfg.hub_password()?) else {
            bail!("[broker] mosquitto files need the hub's own login there: username and password_file");
        };
        Ok(Some(Mosquitto {
            password_file,
            acl_file,
            pid_file: cfg.mosquitto_pid_file.clone(),
            hub_user: hub_user.clone(),
            hub_password,
        }))
    }

    /// Writes both files from the enrolled routers and tells mosquitto.
    /// Returns how many routers the password file admits.
    pub async fn sync(&self, store: &Store) -> Result<usize> {
        let devices = store.mqtt_device_secrets().await.context("reading the enrolled routers")?;
        let mut text = String::from("# Written by opmas-hub from its database; edits are lost at the next change.\n");
        text.push_str(&password_line(&self.hub_user, &self.hub_password));
        // Hashes are made once per secret and kept: a fleet's file is
        // rewritten at every enrolment without hashing the fleet again.
        let mut made = Vec::new();
        for (id, secret, stored) in &devices {
            if id == &self.hub_user {
                // A router enrolled under the hub's user name never gets its rights.
                tracing::warn!(device = %id, "a router has the hub's broker user name; it is left out of the password file");
                continue;
            }
            let hash = match stored {
                Some(h) => h.clone(),
                None => {
                    let h = new_hash(secret);
                    made.push((id.clone(), h.clone()));
                    h
                }
            };
            text.push_str(&format!("{id}:{hash}\n"));
        }
        if !made.is_empty() {
            store.set_broker_hashes(&made).await.context("keeping the routers' broker password hashes")?;
        }
        replace(&self.password_file, text.as_bytes())?;
        replace(&self.acl_file, acl(&self.hub_user).as_bytes())?;
        if let Some(pid) = &self.pid_file {
            reload(pid)?;
        }
        Ok(devices.len())
    }
}

/// One password file line: `user:$7$ROUNDS$salt$hash`.
pub fn password_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", new_hash(password))
}

/// `password` hashed with a fresh salt.
fn new_hash(password: &str) -> String {
    let mut salt = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut salt);
    hash(password, &salt)
}

/// mosquitto's `$7$` hash of `password` with `salt`.
fn hash(password: &str, salt: &[u8]) -> String {
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2_11::Sha512>(password.as_bytes(), salt, ROUNDS, &mut out);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("$7${ROUNDS}${}${}", b64.encode(salt), b64.encode(out))
}

/// The ACL: the hub reads and writes everything of OPMAS; each router
/// (user name = device id, `%u`) publishes its uplinks and reads its
/// downlinks, nothing else.
pub fn acl(hub_user: &str) -> String {
    let mut out = String::from("# Written by opmas-hub; edits are lost at the next change.\n");
    out.push_str(&format!("user {hub_user}\ntopic readwrite opmas/v1/#\n\n"));
    for ch in Channel::ALL {
        let access = if ch.is_uplink() { "write" } else { "read" };
        out.push_str(&format!("pattern {access} opmas/v1/%u/{}\n", ch.as_str()));
    }
    out
}

/// Sends SIGHUP to the process in `pid_file`. No pid file: mosquitto is
/// not running, and reads the files when it starts.
fn reload(pid_file: &Path) -> Result<()> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(pid_file = %pid_file.display(), "mosquitto is not running; it reads the files when it starts");
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", pid_file.display())),
    };
    let pid: i32 =
        text.trim().parse().with_context(|| format!("{}: {:?} is not a pid", pid_file.display(), text.trim()))?;
    if pid <= 1 {
        bail!("{}: pid {pid} is not mosquitto's", pid_file.display());
    }
    // SAFETY: kill(2) with a positive pid and a constant signal; no memory is shared.
    let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
    if rc != 0 {
        bail!("telling mosquitto (pid {pid}) to reload: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_mosquittos_pbkdf2_sha512() {
        // `mosquitto_passwd -b` with this salt gives the same line (checked
        // against mosquitto 2.0 by the e2e test, which logs in with it).
        let h = hash("secret", b"0123456789ab");
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(&parts[..3], ["", "7", "101"]);
        assert_eq!(parts[3], "MDEyMzQ1Njc4OWFi");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(parts[4]).unwrap().len(), 64);
        assert_ne!(password_line("gw-1", "secret"), password_line("gw-1", "secret"), "a fresh salt each time");
    }

    #[test]
    fn routers_may_write_their_uplinks_and_read_their_downlinks_only() {
        let a = acl("opmas-hub");
        assert!(a.contains("user opmas-hub\ntopic readwrite opmas/v1/#\n"));
        for l in
            ["pattern write opmas/v1/%u/finding", "pattern write opmas/v1/%u/status", "pattern read opmas/v1/%u/cmd"]
        {
            assert!(a.contains(l), "{a}");
        }
        assert!(!a.contains("pattern write opmas/v1/%u/cmd"), "{a}");
        assert!(!a.contains("pattern readwrite"), "{a}");
    }

    #[tokio::test]
    async fn each_secret_is_hashed_once_and_again_only_when_it_changes() {
        let (store, dir) = crate::store::test_store().await;
        store.insert_device("gw-1", "gw-1", &"ab".repeat(32), 1).await.unwrap();
        store.insert_device("gw-2", "gw-2", &"cd".repeat(32), 1).await.unwrap();
        let m = Mosquitto {
            password_file: dir.path().join("opmas.passwd"),
            acl_file: dir.path().join("opmas.acl"),
            pid_file: None,
            hub_user: "opmas-hub".into(),
            hub_password: "hub".into(),
        };
        let line = |text: &str, id: &str| text.lines().find(|l| l.starts_with(&format!("{id}:"))).map(str::to_owned);
        assert_eq!(m.sync(&store).await.unwrap(), 2);
        let first = std::fs::read_to_string(&m.password_file).unwrap();
        store.insert_device("gw-3", "gw-3", &"ef".repeat(32), 1).await.unwrap();
        store.rekey_device("gw-2", &"12".repeat(32)).await.unwrap();
        assert_eq!(m.sync(&store).await.unwrap(), 3);
        let second = std::fs::read_to_string(&m.password_file).unwrap();
        assert_eq!(line(&first, "gw-1"), line(&second, "gw-1"), "kept, not hashed again");
        assert_ne!(line(&first, "gw-2"), line(&second, "gw-2"), "a new secret, a new hash");
        assert!(line(&second, "gw-3").is_some_and(|l| l.starts_with("gw-3:$7$101$")));
    }
}
