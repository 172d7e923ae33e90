//! Failed sign-ins slow down guessing: per user name and per source
//! address, in memory (a restart forgives; a guesser gains a few tries).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures are counted over this much time.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failed sign-ins of one user name within the window before it is refused.
pub const PER_USER: usize = 5;
/// Failed sign-ins from one address within the window before it is refused.
pub const PER_ADDRESS: usize = 20;
/// Names and addresses tracked at most (a bound on memory under a spray).
const TRACKED: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

/// The failures of sign-ins by name and by address.
#[derive(Debug, Default)]
pub struct Throttle {
    fails: Mutex<HashMap<Key, VecDeque<i64>>>,
}

impl Throttle {
    /// `Err(seconds)` while `user` or `from` has failed too often.
    pub fn check(&self, user: &str, from: Option<IpAddr>, now_ms: i64) -> Result<(), u64> {
        let mut fails = self.fails.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = 0;
        let keys = [(Some(Key::User(user.to_owned())), PER_USER), (from.map(Key::Address), PER_ADDRESS)];
        for (key, limit) in keys {
            let Some(times) = key.and_then(|k| fails.get_mut(&k)) else { continue };
            while times.front().is_some_and(|&t| now_ms - t >= WINDOW_MS) {
                times.pop_front();
            }
            if times.len() >= limit {
                let until = times.front().map_or(now_ms, |&t| t + WINDOW_MS);
                // Rounded up: "try again in 0 s" would be wrong.
                wait = wait.max(((until - now_ms).max(1) as u64).div_ceil(1000));
            }
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, user: &str, from: Option<IpAddr>, now_ms: i64) {
        let mut fails = self.fails.lock().unwrap_or_else(|p| p.into_inner());
        if fails.len() >= TRACKED {
            fails.retain(|_, times| times.back().is_some_and(|&t| now_ms - t < WINDOW_MS));
        }
        for key in [Some(Key::User(user.to_owned())), from.map(Key::Address)].into_iter().flatten() {
            if fails.len() < TRACKED || fails.contains_key(&key) {
                fails.entry(key).or_default().push_back(now_ms);
            }
        }
    }

    /// A successful sign-in clears its user's failures (not its address's).
    pub fn succeeded(&self, user: &str) {
        self.fails.lock().unwrap_or_else(|p| p.into_inner()).remove(&Key::User(user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_refused_after_five_failures_until_the_window_moves_on() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..PER_USER as i64 {
            assert_eq!(t.check("alice", Some(ip), i), Ok(()));
            t.failed("alice", Some(ip), i);
        }
        assert_eq!(t.check("alice", None, 10), Err(900), "15 minutes from the first failure");
        assert_eq!(t.check("bob", Some(ip), 10), Ok(()), "another user from the same address may still try");
        assert_eq!(t.check("alice", None, WINDOW_MS), Ok(()), "the first failure left the window");
        t.succeeded("alice");
        assert_eq!(t.check("alice", None, 20), Ok(()));
    }

    #[test]
    fn an_address_spraying_names_is_refused_too() {
        let t = Throttle::default();
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        for i in 0..PER_ADDRESS {
            t.failed(&format!("user{i}"), Some(ip), i as i64);
        }
        assert!(t.check("anyone", Some(ip), 100).is_err());
        assert_eq!(t.check("anyone", Some("198.51.100.10".parse().unwrap()), 100), Ok(()));
    }
}
