//! The local response as the hub sets it: the router blocks the source of
//! a brute force itself, at once, so that defence holds while the WAN or
//! the VPN to the hub is down.
//!
//! A router's UCI section `config response` sets it (`local_block`,
//! `local_block_for`, `list local_kinds`); the hub may set any of the same
//! three in the security agent's configuration. They travel in that agent's
//! `params` of the [`crate::msg::ConfigDoc`] under the UCI names, and only
//! when the hub sets them: a setting the hub leaves alone stays the
//! router's own, one by one ([`LocalOverride::over`]). Both sides parse and
//! check them here, so the hub refuses (422) exactly what the edge would.

use std::collections::BTreeMap;

use crate::msg::{Value, MAX_ACTION_S};

/// On or off (`local_block`).
pub const BLOCK: &str = "local_block";
/// Seconds each block lasts (`local_block_for`).
pub const BLOCK_FOR: &str = "local_block_for";
/// The finding kinds whose source is blocked (`local_kinds`).
pub const KINDS: &str = "local_kinds";
/// The three names, as the agent's `params` carry them.
pub const NAMES: [&str; 3] = [BLOCK, BLOCK_FOR, KINDS];

/// The kinds blocked when neither the hub nor UCI lists any.
pub const DEFAULT_KINDS: [&str; 2] = ["ssh.bruteforce", "web.bruteforce"];
/// How long a block lasts when neither says.
pub const DEFAULT_BLOCK_FOR_S: u32 = 3600;
/// Kinds listed at most.
pub const MAX_KINDS: usize = 32;

/// The local response in force: block the `src_ip` of these kinds for
/// `block_s` seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub kinds: Vec<String>,
    pub block_s: u32,
}

/// The router's own settings (UCI), kept whether or not blocking is on,
/// so that the hub can switch it on with the router's kinds and duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSettings {
    pub block: bool,
    pub block_s: u32,
    pub kinds: Vec<String>,
}

impl Default for LocalSettings {
    fn default() -> LocalSettings {
        LocalSettings {
            block: false,
            block_s: DEFAULT_BLOCK_FOR_S,
            kinds: DEFAULT_KINDS.iter().map(|k| (*k).to_owned()).collect(),
        }
    }
}

impl LocalSettings {
    /// What runs: `None` when blocking is off.
    pub fn response(&self) -> Option<LocalResponse> {
        self.block.then(|| LocalResponse { kinds: self.kinds.clone(), block_s: self.block_s })
    }
}

/// What the hub sets; `None` fields are the router's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalOverride {
    pub block: Option<bool>,
    pub block_s: Option<u32>,
    pub kinds: Option<Vec<String>>,
}

impl LocalOverride {
    /// True if the hub sets nothing.
    pub fn is_empty(&self) -> bool {
        self.block.is_none() && self.block_s.is_none() && self.kinds.is_none()
    }

    /// The router's settings with the hub's on top.
    pub fn over(&self, own: &LocalSettings) -> LocalSettings {
        LocalSettings {
            block: self.block.unwrap_or(own.block),
            block_s: self.block_s.unwrap_or(own.block_s),
            kinds: self.kinds.clone().unwrap_or_else(|| own.kinds.clone()),
        }
    }

    /// Takes the three settings out of an agent's `params` (the rest stays
    /// for the agent), checked; the error names the setting.
    pub fn take(params: &mut BTreeMap<String, Value>) -> Result<LocalOverride, String> {
        let mut out = LocalOverride::default();
        if let Some(v) = params.remove(BLOCK) {
            match v {
                Value::Bool(b) => out.block = Some(b),
                other => return Err(format!("{BLOCK} must be true or false, got {other:?}")),
            }
        }
        if let Some(v) = params.remove(BLOCK_FOR) {
            match v {
                Value::Int(s) => out.block_s = Some(check_block_for(s)?),
                other => return Err(format!("{BLOCK_FOR} must be a number of seconds, got {other:?}")),
            }
        }
        if let Some(v) = params.remove(KINDS) {
            match v {
                Value::List(kinds) => {
                    check_kinds(&kinds).map_err(|(i, e)| format!("{KINDS}[{i}]: {e}"))?;
                    out.kinds = Some(kinds);
                }
                other => return Err(format!("{KINDS} must be a list of finding kinds, got {other:?}")),
            }
        }
        Ok(out)
    }

    /// Puts what is set into an agent's `params` (the hub's side of [`LocalOverride::take`]).
    pub fn put(&self, params: &mut BTreeMap<String, Value>) {
        if let Some(b) = self.block {
            params.insert(BLOCK.to_owned(), Value::Bool(b));
        }
        if let Some(s) = self.block_s {
            params.insert(BLOCK_FOR.to_owned(), Value::Int(i64::from(s)));
        }
        if let Some(k) = &self.kinds {
            params.insert(KINDS.to_owned(), Value::List(k.clone()));
        }
    }
}

/// A block's length: 1 s to [`MAX_ACTION_S`].
pub fn check_block_for(s: i64) -> Result<u32, String> {
    u32::try_from(s)
        .ok()
        .filter(|s| (1..=MAX_ACTION_S).contains(s))
        .ok_or_else(|| format!("{BLOCK_FOR} must be 1 to {MAX_ACTION_S} seconds (a week), got {s}"))
}

/// The kinds to block: known ones that name a source address, at least
/// one, at most [`MAX_KINDS`]; the error has the index of the bad one.
pub fn check_kinds(kinds: &[String]) -> Result<(), (usize, String)> {
    if kinds.is_empty() {
        return Err((0, "at least one finding kind".into()));
    }
    if kinds.len() > MAX_KINDS {
        return Err((MAX_KINDS, format!("{} kinds; at most {MAX_KINDS}", kinds.len())));
    }
    for (i, k) in kinds.iter().enumerate() {
        if crate::kinds::by_name(k).is_none() {
            return Err((i, format!("unknown finding kind {k:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> LocalSettings {
        LocalSettings { block: true, block_s: 600, kinds: vec!["ssh.bruteforce".into()] }
    }

    #[test]
    fn what_the_hub_leaves_alone_stays_the_routers() {
        assert_eq!(LocalOverride::default().over(&own()), own());
        let off = LocalOverride { block: Some(false), ..Default::default() };
        assert_eq!(off.over(&own()).response(), None);
        let longer = LocalOverride { block_s: Some(7200), ..Default::default() };
        assert_eq!(
            longer.over(&own()).response(),
            Some(LocalResponse { kinds: vec!["ssh.bruteforce".into()], block_s: 7200 })
        );
        let on = LocalOverride { block: Some(true), ..Default::default() };
        assert_eq!(on.over(&LocalSettings::default()).response().map(|r| r.kinds.len()), Some(2));
    }

    #[test]
    fn the_settings_travel_in_params_and_come_out_checked() {
        let set = LocalOverride { block: Some(true), block_s: Some(900), kinds: Some(vec!["ssh.user_enum".into()]) };
        let mut params = BTreeMap::from([("ssh_failures".to_owned(), Value::Int(5))]);
        set.put(&mut params);
        assert_eq!(LocalOverride::take(&mut params), Ok(set));
        assert_eq!(params.keys().collect::<Vec<_>>(), ["ssh_failures"], "the agent's own are left");

        let mut bad = BTreeMap::from([(BLOCK_FOR.to_owned(), Value::Int(0))]);
        assert!(LocalOverride::take(&mut bad).unwrap_err().starts_with("local_block_for must be 1 to"));
        let mut bad = BTreeMap::from([(KINDS.to_owned(), Value::List(vec!["ssh.bruteforce".into(), "nope".into()]))]);
        assert_eq!(LocalOverride::take(&mut bad).unwrap_err(), "local_kinds[1]: unknown finding kind \"nope\"");
        let mut bad = BTreeMap::from([(BLOCK.to_owned(), Value::Int(1))]);
        assert_eq!(LocalOverride::take(&mut bad).unwrap_err(), "local_block must be true or false, got Int(1)");
    }
}
