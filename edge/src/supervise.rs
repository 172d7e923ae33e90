//! The agents' supervisor: what happens when an agent fails.
//!
//! An agent fails when it panics. Agents never panic on input by design
//! (bounded tables, saturating arithmetic), so a panic is a bug; the
//! supervisor contains it to the one agent: the agent is dropped (its state
//! may be half-updated), the rest of the pipeline runs on, and the agent is
//! built again from its configuration after a backoff that doubles with each
//! failure in a row, up to [`RestartPolicy::backoff_max`]. After
//! [`RestartPolicy::max_restarts`] restarts in a row it is marked `failed`
//! and left alone until an operator starts or restarts it (or a new
//! configuration rebuilds it). A run of [`RestartPolicy::reset_after`]
//! without a failure forgets the earlier ones.
//!
//! Catching a panic needs unwinding. The router build (`release-edge`) has
//! `panic = "immediate-abort"`: unwinding tables and the panic machinery
//! cost more than the flash budget has left (see ARCHITECTURE.md, "What
//! restart an agent means"), so there a panic ends the process and procd's
//! respawn is the supervisor. Builds that unwind (every other profile: the
//! demo, the tests, an x86 router built with `--profile release`) catch it
//! here. [`guard`] is the one place that knows.
//!
//! Pure logic: times are passed in (the wall clock of the line or tick).

use std::time::Duration;

/// When and how often the supervisor restarts a failed agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts in a row before the agent is marked failed (0: never restart).
    pub max_restarts: u32,
    /// Wait before the first restart; doubles with each failure in a row.
    pub backoff: Duration,
    /// Longest wait between restarts.
    pub backoff_max: Duration,
    /// A run this long without failing forgets the failures before it.
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl RestartPolicy {
    /// The wait before restart number `n` in a row (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let doubled = self.backoff.saturating_mul(1u32 << n.saturating_sub(1).min(20));
        doubled.min(self.backoff_max)
    }
}

/// Where an agent is in its supervised life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Built and seeing events (or stopped, when the pipeline holds none).
    Up,
    /// Failed; to be built again at `at_ms`.
    Restarting { at_ms: u64 },
    /// Failed more than the policy allows; waits for an operator.
    Failed,
}

/// One agent's supervision record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub phase: Phase,
    /// Restarts by policy in this run (for the heartbeat).
    pub restarts: u32,
    /// Failures since the last run of [`RestartPolicy::reset_after`] without one.
    in_row: u32,
    /// When the agent was last built (ms), to tell a long run from a crash loop.
    since_ms: u64,
    /// What the last failure said.
    pub last_error: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health { phase: Phase::Up, restarts: 0, in_row: 0, since_ms: 0, last_error: None }
    }
}

/// What the supervisor decided about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Build it again after this long.
    RestartIn(Duration),
    /// Give up on it.
    GiveUp,
}

impl Health {
    /// Records a failure at `now_ms` and decides what follows.
    pub fn failed(&mut self, error: String, now_ms: u64, policy: &RestartPolicy) -> Verdict {
        let ran_ms = now_ms.saturating_sub(self.since_ms);
        if ran_ms >= policy.reset_after.as_millis() as u64 {
            self.in_row = 0;
        }
        self.in_row = self.in_row.saturating_add(1);
        self.last_error = Some(error);
        if self.in_row > policy.max_restarts {
            self.phase = Phase::Failed;
            return Verdict::GiveUp;
        }
        let delay = policy.delay(self.in_row);
        self.phase = Phase::Restarting { at_ms: now_ms.saturating_add(delay.as_millis() as u64) };
        Verdict::RestartIn(delay)
    }

    /// True when a restart is due at `now_ms`. A wall clock that went back
    /// (NTP after boot) by more than the longest backoff counts as due, so
    /// that a clock step cannot hold an agent down for hours.
    pub fn due(&self, now_ms: u64, policy: &RestartPolicy) -> bool {
        match self.phase {
            Phase::Restarting { at_ms } => {
                now_ms >= at_ms || at_ms - now_ms > policy.backoff_max.as_millis() as u64 * 2
            }
            _ => false,
        }
    }

    /// The agent was built again by policy at `now_ms`.
    pub fn restarted(&mut self, now_ms: u64) {
        self.phase = Phase::Up;
        self.restarts = self.restarts.saturating_add(1);
        self.since_ms = now_ms;
    }

    /// An operator (or a new configuration) built, started or stopped the
    /// agent: the failures in a row are forgiven; the counts stay.
    pub fn reset(&mut self, now_ms: u64) {
        self.phase = Phase::Up;
        self.in_row = 0;
        self.since_ms = now_ms;
    }
}

/// Runs `f`, turning a panic into its message where the build unwinds.
#[cfg(panic = "unwind")]
pub fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    // The agent that panicked is dropped right after, so state it left
    // half-updated is never seen again: asserting unwind safety is sound.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        format!("panicked: {msg}")
    })
}

/// Runs `f`; a panic aborts the process (this build does not unwind).
#[cfg(not(panic = "unwind"))]
pub fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_then_gives_up_and_a_long_run_forgives() {
        let p = RestartPolicy { max_restarts: 3, ..RestartPolicy::default() };
        let mut h = Health::default();
        let mut now = 1_000_000;
        let mut waits = Vec::new();
        while let Verdict::RestartIn(d) = h.failed("boom".into(), now, &p) {
            waits.push(d.as_secs());
            assert!(!h.due(now, &p));
            now += d.as_millis() as u64;
            assert!(h.due(now, &p));
            h.restarted(now);
            now += 10;
        }
        assert_eq!(waits, [1, 2, 4]);
        assert_eq!((h.phase, h.restarts, h.last_error.as_deref()), (Phase::Failed, 3, Some("boom")));

        // After an operator's restart and ten quiet minutes, a failure is the first again.
        h.reset(now);
        assert_eq!(h.failed("again".into(), now + 600_000, &p), Verdict::RestartIn(Duration::from_secs(1)));
        assert_eq!(RestartPolicy::default().delay(30), Duration::from_secs(60), "capped");
    }

    #[test]
    fn a_clock_stepped_back_does_not_hold_a_restart() {
        let p = RestartPolicy::default();
        let mut h = Health::default();
        h.failed("boom".into(), 10_000_000, &p);
        assert!(!h.due(10_000_500, &p));
        assert!(h.due(1_000, &p), "the clock went back hours");
    }

    #[cfg(panic = "unwind")]
    #[test]
    fn guard_turns_a_panic_into_its_message() {
        assert_eq!(guard(|| 7), Ok(7));
        let got = guard(|| -> u32 { panic!("index {} out of range", 9) });
        assert_eq!(got, Err("panicked: index 9 out of range".to_owned()));
    }
}
