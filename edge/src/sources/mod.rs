//! Log sources: each runs as a task and sends raw lines into one bounded
//! channel that the main loop drains.
//!
//! This module owns starting the sources ([`spawn_all`]), the counters they
//! share ([`SourceStats`]) and reading capped lines from a pipe. Each
//! submodule owns one kind of source: [`file`](mod@file) follows a file, [`logread`]
//! runs OpenWRT's `logread -f`, [`udp`] receives syslog datagrams.
//!
//! A full channel makes a source wait: for files, stdin and logread that is
//! backpressure, not loss, because the text waits in the file or the pipe.
//! UDP cannot make its senders wait, so a frame that finds the channel full
//! is dropped and counted in [`SourceStats::shed`].

pub mod file;
pub mod logread;
pub mod udp;

use std::io;
use std::path::PathBuf;
// MIPS has no 64-bit atomics; portable-atomic falls back to a lock there.
use portable_atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::SourceConfig;

/// Lines that may wait between the sources and the main loop.
pub const LINE_QUEUE: usize = 1024;

/// Longest line a pipe source (stdin, logread) passes on, in bytes; the same
/// as the file source's default. Longer lines are cut and counted in
/// [`SourceStats::truncated`].
pub const MAX_LINE: usize = 8192;

/// Counters shared by all sources, read by the main loop for the heartbeat.
///
/// Each counter only grows. They are independent of each other, so they are
/// updated and read with relaxed ordering; [`SourceStats::snapshot`] is not
/// an atomic view of all of them together.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Lines (UDP: frames) put into the line channel, from all sources.
    pub lines: AtomicU64,
    /// UDP frames dropped because the line channel was full.
    pub shed: AtomicU64,
    /// Times the `logread` child was started again after it exited or failed
    /// to start.
    pub restarts: AtomicU64,
    /// UDP datagrams received.
    pub datagrams: AtomicU64,
    /// Lines cut to their source's length limit (file, stdin, logread) and
    /// UDP datagrams longer than [`udp::MAX_DATAGRAM`], which lose their end.
    pub truncated: AtomicU64,
}

/// A plain copy of [`SourceStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// See [`SourceStats::lines`].
    pub lines: u64,
    /// See [`SourceStats::shed`].
    pub shed: u64,
    /// See [`SourceStats::restarts`].
    pub restarts: u64,
    /// See [`SourceStats::datagrams`].
    pub datagrams: u64,
    /// See [`SourceStats::truncated`].
    pub truncated: u64,
}

impl SourceStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> SourceCounts {
        SourceCounts {
            lines: self.lines.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            datagrams: self.datagrams.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
        }
    }
}

/// Adds `n` to one of the [`SourceStats`] counters.
fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Starts one task per source on the current runtime.
///
/// A source that cannot start (a UDP address already in use) logs an error
/// naming what failed; the others run regardless.
pub fn spawn_all(sources: &[SourceConfig], tx: mpsc::Sender<String>, stats: Arc<SourceStats>) {
    for source in sources {
        let tx = tx.clone();
        let stats = Arc::clone(&stats);
        match source.clone() {
            SourceConfig::File { path, from_start } => {
                info!(path = %path.display(), "following file");
                let opts = file::FollowOptions { from_start, ..file::FollowOptions::default() };
                tokio::spawn(follow_file(path, opts, tx, stats));
            }
            SourceConfig::Stdin => {
                tokio::spawn(read_stdin(tx, stats));
            }
            SourceConfig::Logread { command } => {
                info!(command = %command.display(), "following logread");
                tokio::spawn(logread::run(command, logread::RestartPolicy::default(), tx, stats));
            }
            SourceConfig::Udp { listen } => {
                tokio::spawn(async move {
                    match udp::UdpSource::bind(listen).await {
                        Ok(source) => {
                            info!(listen = %source.local_addr(), "listening for syslog datagrams");
                            source.run(tx, stats).await;
                        }
                        Err(e) => error!(error = %e, "udp source not started"),
                    }
                });
            }
        }
    }
}

/// Like [`file::run`], and also counts lines and cut lines in `stats`.
async fn follow_file(path: PathBuf, opts: file::FollowOptions, tx: mpsc::Sender<String>, stats: Arc<SourceStats>) {
    let mut follower = file::FileFollower::new(&path, opts);
    let mut truncated_seen = 0;
    loop {
        let line = tokio::select! {
            line = follower.next_line() => line,
            () = tx.closed() => return,
        };
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "file source stopped");
                return;
            }
        };
        // The follower counts cut lines itself; pass on only what is new.
        let truncated = follower.truncated_lines();
        bump(&stats.truncated, truncated.saturating_sub(truncated_seen));
        truncated_seen = truncated;
        if tx.send(line).await.is_err() {
            return;
        }
        bump(&stats.lines, 1);
    }
}

/// Sends the lines of standard input until it ends or the receiver is gone.
async fn read_stdin(tx: mpsc::Sender<String>, stats: Arc<SourceStats>) {
    let mut lines = LineReader::new(tokio::io::stdin(), MAX_LINE);
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = tx.closed() => return,
        };
        match line {
            Ok(Some(line)) => {
                if line.truncated {
                    bump(&stats.truncated, 1);
                }
                if tx.send(line.text).await.is_err() {
                    return;
                }
                bump(&stats.lines, 1);
            }
            Ok(None) => {
                info!("standard input ended");
                return;
            }
            Err(e) => {
                warn!(error = %e, "reading standard input failed");
                return;
            }
        }
    }
}

/// One line from a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
struct Line {
    /// The line without its `\n` (or `\r\n`); invalid UTF-8 replaced by U+FFFD.
    text: String,
    /// The line was longer than the reader's limit and was cut.
    truncated: bool,
}

/// Splits a byte stream (a pipe) into lines of bounded length.
///
/// Unlike `AsyncBufReadExt::lines`, a line never grows past the limit, however
/// long the writer makes it, and invalid UTF-8 is replaced instead of ending
/// the stream with an error.
#[derive(Debug)]
struct LineReader<R> {
    reader: BufReader<R>,
    max: usize,
    /// Bytes of the unfinished line, at most `max + 1` (room for a `\r`
    /// before the `\n`). Kept here, not in the future, for cancel safety.
    partial: Vec<u8>,
    /// The unfinished line is longer than fits in `partial`; the rest up to
    /// the newline is being dropped.
    overflow: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R, max: usize) -> Self {
        Self { reader: BufReader::new(reader), max, partial: Vec::new(), overflow: false }
    }

    /// Returns the next line, or `None` at end of stream. A last line without
    /// a newline is returned as it is.
    ///
    /// Cancel-safe: `fill_buf` reads nothing when it is dropped, and bytes it
    /// returned are moved into `self.partial` before the next `.await`.
    async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.partial.is_empty() && !self.overflow {
                    return Ok(None);
                }
                return Ok(Some(self.finish()));
            }
            let (piece, used, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(newline) => (&available[..newline], newline + 1, true),
                None => (available, available.len(), false),
            };
            let room = self.max.saturating_add(1).saturating_sub(self.partial.len());
            if piece.len() > room {
                self.overflow = true;
            }
            self.partial.extend_from_slice(&piece[..piece.len().min(room)]);
            self.reader.consume(used);
            if complete {
                return Ok(Some(self.finish()));
            }
        }
    }

    fn finish(&mut self) -> Line {
        let mut truncated = std::mem::take(&mut self.overflow);
        // After an overflow the `\r` (if any) was among the dropped bytes.
        if !truncated && self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        let mut text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        // Cut the decoded text, not the bytes, so that no character is split
        // and replacement characters cannot push the line past the limit.
        if text.len() > self.max {
            let mut end = self.max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            truncated = true;
        }
        Line { text, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::time::timeout;

    /// Upper bound for anything a test waits for; a bug fails instead of hanging.
    const WAIT: Duration = Duration::from_secs(5);

    fn line(text: &str, truncated: bool) -> Line {
        Line { text: text.to_owned(), truncated }
    }

    async fn all_lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = LineReader::new(input, max);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await.expect("reading a slice") {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn line_reader_splits_strips_cr_and_keeps_a_last_line_without_newline() {
        let lines = all_lines(b"a\r\n\nmid\rdle\ncaf\xe9\nlast", 100).await;
        assert_eq!(
            lines,
            [
                line("a", false),
                line("", false),
                line("mid\rdle", false),
                line("caf\u{fffd}", false),
                line("last", false)
            ]
        );
        assert!(all_lines(b"", 100).await.is_empty());
    }

    #[tokio::test]
    async fn line_reader_cuts_long_lines_at_a_character_boundary() {
        let lines =
            all_lines("0123456789ABC\nexact4\r\naaaaaé\naaaé\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".as_bytes(), 6).await;
        assert_eq!(
            lines,
            [
                line("012345", true),
                line("exact4", false),
                line("aaaaa", true),
                line("aaaé", false),
                line("xxxxxx", true)
            ]
        );
    }

    #[tokio::test]
    async fn line_reader_loses_nothing_when_cancelled() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut lines = LineReader::new(reader, 100);
        writer.write_all(b"hel").await.expect("write");
        assert!(timeout(Duration::from_millis(20), lines.next_line()).await.is_err(), "no line yet");
        writer.write_all(b"lo\nwor").await.expect("write");
        let first = timeout(WAIT, lines.next_line()).await.expect("a line in time").expect("read");
        assert_eq!(first, Some(line("hello", false)));
        assert!(timeout(Duration::from_millis(20), lines.next_line()).await.is_err(), "no line yet");
        writer.write_all(b"ld\n").await.expect("write");
        drop(writer);
        let second = timeout(WAIT, lines.next_line()).await.expect("a line in time").expect("read");
        assert_eq!(second, Some(line("world", false)));
        assert_eq!(lines.next_line().await.expect("read"), None);
    }

    #[test]
    fn stats_snapshot_reads_every_counter() {
        let stats = SourceStats::default();
        bump(&stats.lines, 5);
        bump(&stats.shed, 4);
        bump(&stats.restarts, 3);
        bump(&stats.datagrams, 2);
        bump(&stats.truncated, 1);
        assert_eq!(stats.snapshot(), SourceCounts { lines: 5, shed: 4, restarts: 3, datagrams: 2, truncated: 1 });
    }

    #[tokio::test]
    async fn spawn_all_starts_file_and_logread_sources_and_counts_their_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = logread::tests::fake_logread(dir.path(), "echo from-logread\nexec sleep 60\n");
        let log = dir.path().join("log");
        std::fs::write(&log, "from-file\n").expect("write log");
        let (tx, mut rx) = mpsc::channel(8);
        let stats = Arc::new(SourceStats::default());
        let sources = [SourceConfig::Logread { command: script }, SourceConfig::File { path: log, from_start: true }];
        spawn_all(&sources, tx, Arc::clone(&stats));

        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(timeout(WAIT, rx.recv()).await.expect("a line in time").expect("senders alive"));
        }
        got.sort();
        assert_eq!(got, ["from-file", "from-logread"]);
        assert_eq!(stats.snapshot().lines, 2);
    }
}
