//! Which commands from the hub the edge runs: each at most once, never
//! after it expired, and both judged without trusting the router's clock.
//!
//! - Once: command ids only grow (the hub numbers them in its database), so
//!   the edge keeps the highest id it accepted and refuses any id at or
//!   below it. The driver keeps that id in `state_dir` ([`StateFile`]), so a
//!   command captured and replayed after a restart or a reboot is refused
//!   too.
//! - Expiry by the hub's clock: routers boot without NTP, so their clock may
//!   be years off until it syncs. Every verified downlink envelope carries
//!   the hub's time when it sealed it; [`HubClock`] keeps the latest such time
//!   and advances it by the edge's monotonic clock. A command is expired when
//!   that estimate (or, before any other message, the command's own seal
//!   time) is past its `expires_ms`. A router clock set to 1970 or to 2038
//!   changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opmas_proto::msg::Command;

/// The hub's time as its signed messages tell it.
#[derive(Clone, Copy, Debug, Default)]
pub struct HubClock {
    /// The latest hub seal time seen, and the edge's monotonic time then.
    seen: Option<(u64, Duration)>,
}

impl HubClock {
    /// Notes a verified envelope sealed at `hub_ms`, received at `now`.
    pub fn observe(&mut self, hub_ms: u64, now: Duration) {
        if self.estimate(now).is_none_or(|e| hub_ms > e) {
            self.seen = Some((hub_ms, now));
        }
    }

    /// The hub's time now, if any message told it.
    pub fn estimate(&self, now: Duration) -> Option<u64> {
        self.seen.map(|(ms, at)| ms.saturating_add(now.saturating_sub(at).as_millis() as u64))
    }
}

/// The edge's memory of commands.
#[derive(Clone, Copy, Debug, Default)]
pub struct Commands {
    /// The highest id accepted (0: none yet).
    last_id: u64,
    pub clock: HubClock,
}

impl Commands {
    /// Starts from the last id a previous run accepted.
    pub fn new(last_id: u64) -> Commands {
        Commands { last_id, clock: HubClock::default() }
    }

    /// The highest id accepted so far (what the state file keeps).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Accepts `cmd`, sealed by the hub at `hub_ms` and received at `now`,
    /// or says why not. An accepted command's id becomes the last one.
    pub fn accept(&mut self, cmd: &Command, hub_ms: u64, now: Duration) -> Result<(), String> {
        self.clock.observe(hub_ms, now);
        if cmd.id <= self.last_id {
            return Err(format!("command {} already seen (the last one run was {})", cmd.id, self.last_id));
        }
        let hub_now = self.clock.estimate(now).unwrap_or(hub_ms);
        if hub_now > cmd.expires_ms {
            return Err(format!(
                "command {} expired {} ms ago by the hub's clock (expires_ms {}, hub time about {hub_now})",
                cmd.id,
                hub_now - cmd.expires_ms,
                cmd.expires_ms
            ));
        }
        self.last_id = cmd.id;
        Ok(())
    }
}

/// `state_dir/config`: the last configuration the hub sent that applied,
/// postcard-encoded, so that a reboot without the hub runs it. Written only
/// when it changes (flash wears out), atomically by rename.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(state_dir: &Path) -> ConfigFile {
        ConfigFile { path: state_dir.join("config") }
    }

    /// The kept configuration, if any.
    pub fn load(&self) -> Result<Option<opmas_proto::msg::ConfigDoc>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: not a configuration this edge reads: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    pub fn store(&self, doc: &opmas_proto::msg::ConfigDoc) -> Result<(), String> {
        let bytes = postcard::to_allocvec(doc).map_err(|e| e.to_string())?;
        write_atomically(&self.path, &bytes)
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// `path`: a power cut leaves the old content or the new, never half.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `state_dir/commands`: the last command id, as decimal text.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(state_dir: &Path) -> StateFile {
        StateFile { path: state_dir.join("commands") }
    }

    /// The id a previous run kept; 0 if none (a first start) or unreadable
    /// (logged by the caller).
    pub fn load(&self) -> Result<u64, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("{}: {:?} is not a command id", self.path.display(), text.trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Keeps `id`: written to a temporary file and renamed over the old
    /// one, so a power cut leaves the old id or the new, never half.
    pub fn store(&self, id: u64) -> Result<(), String> {
        write_atomically(&self.path, format!("{id}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opmas_proto::msg::Action;

    const HUB_NOW: u64 = 1_780_000_000_000;
    const S: Duration = Duration::from_secs(1);

    fn cmd(id: u64, expires_ms: u64) -> Command {
        Command { id, expires_ms, action: Action::Ping }
    }

    #[test]
    fn a_command_runs_once_and_a_replay_is_refused() {
        let mut c = Commands::new(0);
        assert_eq!(c.accept(&cmd(5, HUB_NOW + 60_000), HUB_NOW, S), Ok(()));
        let again = c.accept(&cmd(5, HUB_NOW + 60_000), HUB_NOW, 2 * S).unwrap_err();
        assert_eq!(again, "command 5 already seen (the last one run was 5)");
        assert!(c.accept(&cmd(4, HUB_NOW + 60_000), HUB_NOW, 2 * S).is_err(), "an older one too");
        assert_eq!(c.accept(&cmd(6, HUB_NOW + 60_000), HUB_NOW, 3 * S), Ok(()));
        // After a restart, from the kept id.
        let mut after = Commands::new(c.last_id());
        assert!(after.accept(&cmd(6, HUB_NOW + 60_000), HUB_NOW, S).is_err());
    }

    #[test]
    fn expiry_follows_the_hubs_clock_not_the_routers() {
        // The router's clock plays no part: only hub seal times and the
        // monotonic clock. A command sealed before its expiry runs...
        let mut c = Commands::new(0);
        assert_eq!(c.accept(&cmd(1, HUB_NOW + 30_000), HUB_NOW, S), Ok(()));
        // ...one that arrives late, after an ack told the edge the hub's
        // time, is refused even though its own seal time looks fresh.
        let mut c = Commands::new(0);
        c.clock.observe(HUB_NOW, S);
        let late = c.accept(&cmd(2, HUB_NOW + 30_000), HUB_NOW - 60_000, S + 45 * S).unwrap_err();
        assert!(late.starts_with("command 2 expired 15000 ms ago by the hub's clock"), "{late}");
        // One sealed after its expiry is refused with no other message seen.
        let mut c = Commands::new(0);
        assert!(c.accept(&cmd(3, HUB_NOW - 1), HUB_NOW, S).is_err());
    }

    #[test]
    fn the_state_file_survives_a_restart_and_reads_nothing_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(&dir.path().join("state"));
        assert_eq!(f.load(), Ok(0), "first start");
        f.store(42).unwrap();
        assert_eq!(StateFile::new(&dir.path().join("state")).load(), Ok(42));
        std::fs::write(dir.path().join("state/commands"), "junk").unwrap();
        assert!(f.load().unwrap_err().contains("is not a command id"));
    }
}
