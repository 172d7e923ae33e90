//! Follows the router's log by running OpenWRT's `logread -f` and reading its output lines.
//!
//! This module owns the child process: the arguments it gets ([`FOLLOW_ARGS`]), reading its
//! stdout into the line channel and its stderr into our own log, and starting it again with
//! capped exponential backoff ([`RestartPolicy`]) when it exits or cannot be started. The
//! child is killed when the source stops, so it never outlives the edge.
//!
//! A full line channel makes this source wait (`send().await`): meanwhile logread blocks on
//! its full stdout pipe and new messages wait in logd, which also keeps them in its ring
//! buffer.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{bump, Line, LineReader, SourceStats, MAX_LINE};

/// Arguments given to the command on every start, first and restarts alike.
///
/// `-f` follows. In ubox's logread (what OpenWRT runs), `-f` without `-l` asks logd for
/// the stream with `lines = 0`, and logd then sends no backlog, only messages logged after
/// logread connected; the original, pre-stream logread also only subscribed. `-l N` would
/// first replay the last N messages of the ring buffer, and `-l 0` is the same as leaving
/// `-l` out (logread reads the count with `atoi` and treats 0 as "not given"). So no `-l`:
/// the edge reports what happens while it runs, and after a restart no line is seen twice,
/// which matters because agents count events (a replay would count SSH failures again).
/// The price is that messages logged while no logread runs (during the backoff pause) are
/// not seen.
pub const FOLLOW_ARGS: &[&str] = &["-f"];

/// Longest stderr line logged, in bytes; logread's messages are short.
const MAX_STDERR_LINE: usize = 512;

/// How long to wait for the rest of stderr after stdout closed.
const STDERR_DRAIN: Duration = Duration::from_millis(200);

/// When to start the command again after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart (default 1 s); doubles with each restart in a row.
    pub first_delay: Duration,
    /// Longest wait (default 30 s).
    pub max_delay: Duration,
    /// A child that ran at least this long (default 60 s) was healthy: the next wait is
    /// `first_delay` again.
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Why one run of the command failed.
#[derive(Debug, thiserror::Error)]
pub enum LogreadError {
    /// The command could not be started (missing, not executable).
    #[error("cannot start {}: {source}", command.display())]
    Spawn {
        /// The configured command.
        command: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Reading the child's output or waiting for it failed.
    #[error("{} failed: {source}", command.display())]
    Io {
        /// The configured command.
        command: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

/// The waits of a [`RestartPolicy`] in a row of restarts.
#[derive(Debug)]
struct Backoff {
    policy: RestartPolicy,
    next: Duration,
}

impl Backoff {
    fn new(policy: RestartPolicy) -> Self {
        Self { policy, next: policy.first_delay }
    }

    /// The wait before starting again, given how long the child that just ended ran.
    fn delay_after(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.policy.reset_after {
            self.next = self.policy.first_delay;
        }
        let delay = self.next.min(self.policy.max_delay);
        self.next = delay.saturating_mul(2).min(self.policy.max_delay);
        delay
    }
}

/// How one run of the command ended without an error.
enum Ended {
    /// The child exited (its stdout closed first).
    Exited(ExitStatus),
    /// The line receiver was dropped: the source stops.
    ReceiverGone,
}

/// Runs `command` with [`FOLLOW_ARGS`] and sends its stdout lines into `tx`, starting it
/// again per `policy` whenever it exits or fails to start, until the receiver is dropped.
///
/// Each restart is logged and counted in [`SourceStats::restarts`]; lines cut to
/// [`MAX_LINE`] are counted in [`SourceStats::truncated`].
pub async fn run(command: PathBuf, policy: RestartPolicy, tx: mpsc::Sender<String>, stats: Arc<SourceStats>) {
    let mut backoff = Backoff::new(policy);
    loop {
        let started = Instant::now();
        let why = match run_once(&command, &tx, &stats).await {
            Ok(Ended::ReceiverGone) => return,
            Ok(Ended::Exited(status)) => format!("exited ({status})"),
            Err(e) => e.to_string(),
        };
        let ran_for = started.elapsed();
        let delay = backoff.delay_after(ran_for);
        // One message per restart, written before the wait so that the reason shows at once.
        warn!(
            command = %command.display(),
            ran_for_ms = u64::try_from(ran_for.as_millis()).unwrap_or(u64::MAX),
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "logread: {why}; restarting it after the delay"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
        bump(&stats.restarts, 1);
    }
}

/// Starts the command once and forwards its output until stdout closes.
async fn run_once(command: &Path, tx: &mpsc::Sender<String>, stats: &SourceStats) -> Result<Ended, LogreadError> {
    let io_error = |source| LogreadError::Io { command: command.to_owned(), source };
    // No shell: the command is a path, and its arguments are fixed.
    let mut child = Command::new(command)
        .args(FOLLOW_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The child must not outlive the source: dropping `child` (return, cancellation,
        // runtime shutdown) kills it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LogreadError::Spawn { command: command.to_owned(), source })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io_error(io::Error::other("child has no stdout or stderr pipe")));
    };
    let mut out = LineReader::new(stdout, MAX_LINE);
    let mut err = LineReader::new(stderr, MAX_STDERR_LINE);
    let mut err_open = true;
    loop {
        tokio::select! {
            line = out.next_line() => match line.map_err(io_error)? {
                Some(line) => {
                    if line.truncated {
                        bump(&stats.truncated, 1);
                    }
                    if tx.send(line.text).await.is_err() {
                        return Ok(Ended::ReceiverGone);
                    }
                    bump(&stats.lines, 1);
                }
                None => break,
            },
            line = err.next_line(), if err_open => err_open = log_stderr(command, line),
            () = tx.closed() => return Ok(Ended::ReceiverGone),
        }
    }
    // A child's last words ("Failed to connect to ubus") may still be in the stderr pipe
    // when stdout closes; bounded, in case something else keeps stderr open.
    if err_open {
        let drain = async { while log_stderr(command, err.next_line().await) {} };
        if tokio::time::timeout(STDERR_DRAIN, drain).await.is_err() {
            info!(command = %command.display(), "stderr still open after stdout closed");
        }
    }
    wait(&mut child, tx).await.map_err(io_error)
}

/// Logs one line of the child's stderr. Returns false when stderr is finished.
fn log_stderr(command: &Path, line: io::Result<Option<Line>>) -> bool {
    match line {
        Ok(Some(line)) => {
            warn!(command = %command.display(), "logread: {}", line.text);
            true
        }
        Ok(None) => false,
        Err(e) => {
            warn!(command = %command.display(), error = %e, "reading logread's stderr failed");
            false
        }
    }
}

/// Waits for the child to exit after its stdout closed.
async fn wait(child: &mut Child, tx: &mpsc::Sender<String>) -> io::Result<Ended> {
    tokio::select! {
        status = child.wait() => Ok(Ended::Exited(status?)),
        () = tx.closed() => Ok(Ended::ReceiverGone),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sources::SourceCounts;
    use std::os::unix::fs::PermissionsExt;
    use tokio::time::timeout;

    /// Upper bound for anything a test waits for; a bug fails instead of hanging.
    const WAIT: Duration = Duration::from_secs(10);

    /// Short waits so restart tests take milliseconds.
    const FAST: RestartPolicy = RestartPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        reset_after: Duration::from_secs(60),
    };

    /// Writes an executable `/bin/sh` script named `logread` into `dir` that appends its
    /// arguments to `dir/args`, then runs `body`. Returns its path.
    pub(crate) fn fake_logread(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("logread");
        let args = dir.join("args");
        let script = format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}", args.display());
        std::fs::write(&path, script).expect("write fake logread");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake logread");
        path
    }

    fn read_lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    async fn recv(rx: &mut mpsc::Receiver<String>) -> String {
        timeout(WAIT, rx.recv()).await.expect("a line in time").expect("source alive")
    }

    /// Waits until `done` holds for the source's counters.
    async fn wait_for(stats: &SourceStats, done: impl Fn(&SourceCounts) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&stats.snapshot()) {
            assert!(Instant::now() < deadline, "gave up at {:?}", stats.snapshot());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_long_run() {
        let mut backoff = Backoff::new(RestartPolicy::default());
        let quick = Duration::from_millis(100);
        let waits: Vec<u64> = (0..7).map(|_| backoff.delay_after(quick).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.delay_after(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(backoff.delay_after(Duration::from_secs(59)), Duration::from_secs(2));
        assert_eq!(backoff.delay_after(Duration::from_secs(3600)), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn lines_arrive_and_an_exited_child_is_started_again_with_follow_args() {
        let dir = tempfile::tempdir().expect("tempdir");
        let starts = dir.path().join("starts");
        // Prints a logread line, invalid UTF-8 with CRLF, an empty line, and a line to stderr.
        let body = r"echo start >> STARTS
echo 'Mon Jun  1 10:51:02 2020 daemon.info pppd[5863]: Exit.'
printf 'caf\351\r\n'
echo oops >&2
echo ''
echo last
"
        .replace("STARTS", &format!("'{}'", starts.display()));
        let command = fake_logread(dir.path(), &body);
        let (tx, mut rx) = mpsc::channel(4);
        let stats = Arc::new(SourceStats::default());
        let task = tokio::spawn(run(command, FAST, tx, Arc::clone(&stats)));

        let expected = ["Mon Jun  1 10:51:02 2020 daemon.info pppd[5863]: Exit.", "caf\u{fffd}", "", "last"];
        for round in 0..2 {
            for line in expected {
                assert_eq!(recv(&mut rx).await, line, "round {round}");
            }
        }
        wait_for(&stats, |c| c.restarts >= 1).await;
        assert!(read_lines(&starts).len() >= 2);
        let args = read_lines(&dir.path().join("args"));
        assert!(args.len() >= 2 && args.iter().all(|a| a == "-f"), "{args:?}");
        assert!(stats.snapshot().lines >= 8);

        drop(rx);
        timeout(WAIT, task).await.expect("run returns").expect("run task");
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_retried_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::channel(4);
        let stats = Arc::new(SourceStats::default());
        let task = tokio::spawn(run(dir.path().join("missing"), FAST, tx, Arc::clone(&stats)));
        wait_for(&stats, |c| c.restarts >= 3).await;
        assert_eq!(stats.snapshot().lines, 0);
        drop(rx);
        timeout(WAIT, task).await.expect("run returns").expect("run task");
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = format!("head -c {} /dev/zero | tr '\\0' x; echo\necho short\nexec sleep 60\n", MAX_LINE + 100);
        let command = fake_logread(dir.path(), &body);
        let (tx, mut rx) = mpsc::channel(4);
        let stats = Arc::new(SourceStats::default());
        let _task = tokio::spawn(run(command, FAST, tx, Arc::clone(&stats)));
        assert_eq!(recv(&mut rx).await, "x".repeat(MAX_LINE));
        assert_eq!(recv(&mut rx).await, "short");
        assert_eq!(stats.snapshot().truncated, 1);
    }

    #[tokio::test]
    async fn the_child_is_killed_when_the_source_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        // `exec` makes the shell's pid the sleeping process's pid.
        let body = format!("echo $$ > '{}'\necho ready\nexec sleep 600\n", pid_file.display());
        let command = fake_logread(dir.path(), &body);
        let (tx, mut rx) = mpsc::channel(4);
        let stats = Arc::new(SourceStats::default());
        let task = tokio::spawn(run(command, FAST, tx, Arc::clone(&stats)));
        assert_eq!(recv(&mut rx).await, "ready");
        let pid = std::fs::read_to_string(&pid_file).expect("pid file").trim().to_owned();
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        assert!(stat.exists(), "child {pid} runs");

        drop(rx);
        timeout(WAIT, task).await.expect("run returns").expect("run task");
        // Killed means gone, or a zombie until the runtime reaps it.
        let deadline = Instant::now() + WAIT;
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s) if s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) => break,
                Ok(_) => {}
            }
            assert!(Instant::now() < deadline, "child {pid} still runs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
