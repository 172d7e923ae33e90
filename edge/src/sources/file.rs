//! Follows a log file by name, like GNU `tail -F`, and yields its complete lines.
//!
//! This module owns reading a growing file: where to start, splitting bytes into lines,
//! capping line length, and surviving truncation, rotation and the file being absent. It is
//! poll-based (the agent has no inotify dependency): at end of file it sleeps for the poll
//! interval, then checks whether the open file grew or shrank and whether the path now names
//! a different file. While data is flowing it reads without sleeping.
//!
//! Reads use `std::fs` directly on the runtime thread. For regular files on local storage
//! (a router's tmpfs or flash) a read is a memory copy that never waits on I/O for long, and
//! keeping every read synchronous means the only `.await` in [`FileFollower::next_line`] is
//! the idle sleep, which is what makes it cancel-safe: bytes read from the file are always
//! already stored in the follower when a future can be dropped.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

/// Bytes requested per `read` call; also bounds how many decoded lines can pile up at once.
const CHUNK: usize = 64 * 1024;

/// How far back from the end of an existing file to look for the start of its last line.
const START_WINDOW: u64 = 64 * 1024;

/// A zero poll interval would spin; this is the floor.
const MIN_POLL: Duration = Duration::from_millis(1);

/// How a [`FileFollower`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// Read the content already in the file when the follower is created. When false (the
    /// default) only lines completed after that are returned, except that a last line still
    /// being written at that moment is returned whole once its newline arrives. A file that
    /// did not exist when the follower was created is always read from its start.
    pub from_start: bool,
    /// How long to sleep at end of file before checking for new data (default 250 ms).
    pub poll: Duration,
    /// Longest line returned, in bytes (default 8192). Longer lines are cut at a UTF-8
    /// character boundary at or below this length and the rest up to the newline is dropped.
    pub max_line: usize,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self { from_start: false, poll: Duration::from_millis(250), max_line: 8192 }
    }
}

/// The file currently being read.
struct Tracked {
    file: File,
    dev: u64,
    ino: u64,
    /// Where the next read starts; compared against the size to detect truncation.
    offset: u64,
}

/// Splits bytes into lines, holding an unfinished line between reads.
struct Lines {
    max_line: usize,
    /// Bytes of the unfinished line, at most `max_line + 1` (room for a `\r` before `\n`).
    partial: Vec<u8>,
    /// The unfinished line is longer than fits in `partial`; the rest is being dropped.
    overflow: bool,
    /// Drop the unfinished line without counting it: it started too long before the point
    /// where following began to be worth returning.
    skip: bool,
    /// Complete lines not yet returned.
    ready: VecDeque<String>,
    truncated: u64,
}

impl Lines {
    fn new(max_line: usize) -> Self {
        Self { max_line, partial: Vec::new(), overflow: false, skip: false, ready: VecDeque::new(), truncated: 0 }
    }

    fn ingest(&mut self, mut data: &[u8]) {
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            self.extend(&data[..newline]);
            self.finish();
            data = &data[newline + 1..];
        }
        self.extend(data);
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.skip {
            return;
        }
        let limit = self.max_line.saturating_add(1);
        let room = limit.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.overflow = true;
        }
        self.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Ends the unfinished line, as at a newline.
    fn finish(&mut self) {
        if std::mem::take(&mut self.skip) {
            self.partial.clear();
            return;
        }
        let mut cut = std::mem::take(&mut self.overflow);
        // After an overflow the `\r` (if any) was among the dropped bytes.
        if !cut && self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        // Cutting the decoded string (not the raw bytes) keeps a character split by the byte
        // cap, which decodes to U+FFFD past the cap, out of the result, and also bounds lines
        // that grew because invalid bytes became 3-byte replacement characters.
        if line.len() > self.max_line {
            let mut end = self.max_line;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            cut = true;
        }
        if cut {
            self.truncated += 1;
        }
        self.ready.push_back(line);
    }

    /// Called when the file being read is abandoned: its unfinished line will never get a
    /// newline there, so it is returned as it is rather than lost.
    fn flush(&mut self) {
        if !self.partial.is_empty() || self.overflow || self.skip {
            self.finish();
        }
    }
}

/// Follows one log file by path; see the module documentation.
pub struct FileFollower {
    path: PathBuf,
    opts: FollowOptions,
    current: Option<Tracked>,
    /// True until the first successful open or the first time the file is seen missing;
    /// decides whether `from_start == false` means "skip what is there".
    at_startup: bool,
    /// A "file is missing" message was logged and not yet followed by "file appeared".
    missing_logged: bool,
    lines: Lines,
    chunk: Vec<u8>,
}

impl fmt::Debug for FileFollower {
    // Hand-written to leave out the 64 KiB read buffer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileFollower")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .field("offset", &self.current.as_ref().map(|c| c.offset))
            .field("ready_lines", &self.lines.ready.len())
            .field("truncated_lines", &self.lines.truncated)
            .finish_non_exhaustive()
    }
}

impl FileFollower {
    /// Creates a follower and opens the file if it exists, so that "the end of the file" for
    /// [`FollowOptions::from_start`] means its end at this moment. Errors other than the file
    /// not existing are reported by the first [`FileFollower::next_line`].
    pub fn new(path: impl Into<PathBuf>, opts: FollowOptions) -> Self {
        let mut follower = Self {
            path: path.into(),
            opts,
            current: None,
            at_startup: true,
            missing_logged: false,
            lines: Lines::new(opts.max_line),
            chunk: vec![0; CHUNK],
        };
        if let Err(e) = follower.open_path() {
            let path = follower.path.display();
            warn!(path = %path, error = %e, "cannot open log file yet; will retry");
        }
        follower
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for and returns the next complete line, without its `\n` or a `\r` before it.
    ///
    /// Never returns at end of file; it waits for more data, for the file to appear, or for a
    /// rotated file to be replaced. Returns `Err` only for I/O errors other than the file not
    /// existing; calling again after an error retries.
    ///
    /// Cancel-safe: dropping the future (e.g. in `tokio::select!`) loses no data, because
    /// everything read from the file is kept in `self` until returned.
    pub async fn next_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(line) = self.lines.ready.pop_front() {
                return Ok(line);
            }
            if !self.poll()? {
                tokio::time::sleep(self.opts.poll.max(MIN_POLL)).await;
            }
        }
    }

    /// How many lines were cut to [`FollowOptions::max_line`] so far.
    pub fn truncated_lines(&self) -> u64 {
        self.lines.truncated
    }

    /// Does one round of (synchronous) file work. Returns true if it made progress (read data
    /// or switched files), meaning it should be called again without sleeping.
    fn poll(&mut self) -> io::Result<bool> {
        if self.current.is_none() {
            return self.open_path();
        }
        if self.read_available()? {
            return Ok(true);
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(true);
        };

        // At end of file. A size below our offset means the file was truncated in place
        // (`> file`, logrotate's copytruncate); what was written since starts at 0.
        let size = current.file.metadata()?.len();
        if size < current.offset {
            warn!(
                path = %self.path.display(),
                offset = current.offset,
                size,
                "log file truncated; reading it again from the start"
            );
            current.file.seek(SeekFrom::Start(0))?;
            current.offset = 0;
            self.lines.flush();
            return Ok(true);
        }

        match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == (current.dev, current.ino) => {
                if std::mem::take(&mut self.missing_logged) {
                    info!(path = %self.path.display(), "log file is back");
                }
                Ok(false)
            }
            Ok(_) => {
                // The path names a new file (rotation). The writer may have appended to the
                // old one between the read above and the stat, so drain it once more before
                // letting it go.
                if self.read_available()? {
                    return Ok(true);
                }
                info!(path = %self.path.display(), "log file rotated; following the new file");
                self.lines.flush();
                self.current = None;
                self.at_startup = false;
                self.open_path()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Renamed or deleted with no replacement yet. Keep reading the old file: a
                // writer that has not reopened its log still appends to it.
                if !self.missing_logged {
                    info!(
                        path = %self.path.display(),
                        "log file disappeared; reading the old file until a new one appears"
                    );
                    self.missing_logged = true;
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the path as the current file. Returns false if it does not exist.
    fn open_path(&mut self) -> io::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.missing_logged {
                    info!(path = %self.path.display(), "log file does not exist; waiting for it");
                    self.missing_logged = true;
                }
                // Whatever appears later was written after we started, so it is all new.
                self.at_startup = false;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let (offset, skip) = if self.at_startup && !self.opts.from_start {
            start_of_last_line(&mut file, meta.len())?
        } else {
            (0, false)
        };
        file.seek(SeekFrom::Start(offset))?;
        if std::mem::take(&mut self.missing_logged) {
            info!(path = %self.path.display(), "log file appeared");
        }
        self.at_startup = false;
        self.lines.skip = skip;
        self.current = Some(Tracked { file, dev: meta.dev(), ino: meta.ino(), offset });
        Ok(true)
    }

    /// Reads from the current file until end of file or until complete lines are ready.
    /// Returns whether any bytes were read.
    fn read_available(&mut self) -> io::Result<bool> {
        let Some(current) = self.current.as_mut() else {
            return Ok(false);
        };
        let mut any = false;
        loop {
            let n = match current.file.read(&mut self.chunk) {
                Ok(0) => return Ok(any),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            any = true;
            current.offset += n as u64;
            self.lines.ingest(&self.chunk[..n]);
            if !self.lines.ready.is_empty() {
                return Ok(true);
            }
        }
    }
}

/// Where to start reading an existing file when skipping its content: just after its last
/// newline, so that a line still being written is returned whole. If that line started more
/// than [`START_WINDOW`] bytes back, start at the end and drop the rest of it (`skip`).
fn start_of_last_line(file: &mut File, size: u64) -> io::Result<(u64, bool)> {
    let window_start = size.saturating_sub(START_WINDOW);
    file.seek(SeekFrom::Start(window_start))?;
    let mut tail = Vec::new();
    file.by_ref().take(size - window_start).read_to_end(&mut tail)?;
    Ok(match tail.iter().rposition(|&b| b == b'\n') {
        Some(newline) => (window_start + newline as u64 + 1, false),
        None if window_start == 0 => (0, false),
        None => (size, true),
    })
}

/// Follows `path` and sends each line to `tx` until the receiver is closed (then returns
/// `Ok`). Returns `Err` on the first I/O error from [`FileFollower::next_line`].
pub async fn run(path: impl Into<PathBuf>, opts: FollowOptions, tx: mpsc::Sender<String>) -> io::Result<()> {
    let mut follower = FileFollower::new(path, opts);
    loop {
        let line = tokio::select! {
            line = follower.next_line() => line?,
            () = tx.closed() => return Ok(()),
        };
        if tx.send(line).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use tokio::time::timeout;

    /// Upper bound for any single expected line; a bug fails the test instead of hanging it.
    const WAIT: Duration = Duration::from_secs(5);
    /// How long silence must last to count as "no line"; several test poll intervals.
    const QUIET: Duration = Duration::from_millis(150);

    fn opts() -> FollowOptions {
        FollowOptions { poll: Duration::from_millis(20), ..FollowOptions::default() }
    }

    fn append(path: &Path, data: &[u8]) {
        let mut file = OpenOptions::new().create(true).append(true).open(path).expect("open for append");
        file.write_all(data).expect("append");
    }

    async fn next(follower: &mut FileFollower) -> String {
        match timeout(WAIT, follower.next_line()).await {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("next_line failed: {e}"),
            Err(_) => panic!("no line within {WAIT:?}"),
        }
    }

    async fn next_n(follower: &mut FileFollower, n: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..n {
            lines.push(next(follower).await);
        }
        lines
    }

    async fn assert_quiet(follower: &mut FileFollower) {
        if let Ok(result) = timeout(QUIET, follower.next_line()).await {
            panic!("expected no line, got {result:?}");
        }
    }

    #[tokio::test]
    async fn appended_lines_arrive_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"");
        let mut follower = FileFollower::new(&path, opts());
        append(&path, b"one\ntwo\n");
        append(&path, b"three\n");
        assert_eq!(next_n(&mut follower, 3).await, ["one", "two", "three"]);
        assert_quiet(&mut follower).await;
        append(&path, b"four\n");
        assert_eq!(next(&mut follower).await, "four");
        assert_eq!(follower.path(), path);
        assert!(format!("{follower:?}").contains("truncated_lines: 0"));
    }

    #[tokio::test]
    async fn starts_at_end_unless_from_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"old1\nold2\n");
        let mut at_end = FileFollower::new(&path, opts());
        let mut from_start = FileFollower::new(&path, FollowOptions { from_start: true, ..opts() });
        append(&path, b"new\n");
        assert_eq!(next(&mut at_end).await, "new");
        assert_quiet(&mut at_end).await;
        assert_eq!(next_n(&mut from_start, 3).await, ["old1", "old2", "new"]);
        assert_quiet(&mut from_start).await;
    }

    #[tokio::test]
    async fn start_at_end_returns_the_line_being_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"done\npart");
        let mut follower = FileFollower::new(&path, opts());
        append(&path, b"ial\nnext\n");
        assert_eq!(next_n(&mut follower, 2).await, ["partial", "next"]);

        // A last line that began before the search window is dropped, not returned cut.
        let long = dir.path().join("long");
        let mut content = b"head\n".to_vec();
        content.resize(content.len() + START_WINDOW as usize + 10, b'x');
        append(&long, &content);
        let mut follower = FileFollower::new(&long, opts());
        append(&long, b"xxx\nafter\n");
        assert_eq!(next(&mut follower).await, "after");
        assert_eq!(follower.truncated_lines(), 0);
    }

    #[tokio::test]
    async fn partial_line_is_held_until_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"");
        let mut follower = FileFollower::new(&path, opts());
        append(&path, b"hel");
        assert_quiet(&mut follower).await;
        append(&path, b"lo");
        assert_quiet(&mut follower).await;
        append(&path, b" there\nworld\n");
        assert_eq!(next_n(&mut follower, 2).await, ["hello there", "world"]);
    }

    #[tokio::test]
    async fn truncation_restarts_from_the_beginning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"a1\nb1\nc1\n");
        let mut follower = FileFollower::new(&path, FollowOptions { from_start: true, ..opts() });
        assert_eq!(next_n(&mut follower, 3).await, ["a1", "b1", "c1"]);
        File::create(&path).expect("truncate");
        append(&path, b"d\ne\n");
        assert_eq!(next_n(&mut follower, 2).await, ["d", "e"]);
        assert_quiet(&mut follower).await;
    }

    #[tokio::test]
    async fn rotation_reads_the_old_tail_then_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let rotated = dir.path().join("log.1");
        append(&path, b"1\n2\n");
        let mut follower = FileFollower::new(&path, FollowOptions { from_start: true, ..opts() });
        assert_eq!(next_n(&mut follower, 2).await, ["1", "2"]);

        append(&path, b"3\n");
        std::fs::rename(&path, &rotated).expect("rotate");
        // The writer has not reopened yet and still appends to the old file.
        append(&rotated, b"4\nunterminated");
        append(&path, b"5\n6\n");
        assert_eq!(next_n(&mut follower, 5).await, ["3", "4", "unterminated", "5", "6"]);
        assert_quiet(&mut follower).await;

        // Once switched, the old file is no longer read (as with `tail -F`).
        append(&rotated, b"late\n");
        append(&path, b"7\n");
        assert_eq!(next(&mut follower).await, "7");
        assert_quiet(&mut follower).await;
    }

    #[tokio::test]
    async fn rotation_with_a_gap_before_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let rotated = dir.path().join("log.1");
        append(&path, b"");
        let mut follower = FileFollower::new(&path, opts());
        append(&path, b"a\n");
        assert_eq!(next(&mut follower).await, "a");

        std::fs::rename(&path, &rotated).expect("rotate");
        assert_quiet(&mut follower).await;
        append(&rotated, b"b\n");
        assert_eq!(next(&mut follower).await, "b");
        append(&path, b"c\n");
        assert_eq!(next(&mut follower).await, "c");

        std::fs::remove_file(&path).expect("delete");
        assert_quiet(&mut follower).await;
        append(&path, b"d\n");
        assert_eq!(next(&mut follower).await, "d");
        assert_quiet(&mut follower).await;
    }

    #[tokio::test]
    async fn file_appearing_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("later.log");
        let mut follower = FileFollower::new(&path, opts());
        assert_quiet(&mut follower).await;
        append(&path, b"first\nsecond\n");
        assert_eq!(next_n(&mut follower, 2).await, ["first", "second"]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"");
        let mut follower = FileFollower::new(&path, FollowOptions { max_line: 10, ..opts() });
        append(&path, b"0123456789ABCDEF\nshort\n0123456789\r\n");
        assert_eq!(next_n(&mut follower, 3).await, ["0123456789", "short", "0123456789"]);
        assert_eq!(follower.truncated_lines(), 1);

        // The cut never splits a character: 'é' would straddle the 10-byte cap.
        append(&path, "aaaaaaaaaé\n".as_bytes());
        assert_eq!(next(&mut follower).await, "aaaaaaaaa");
        assert_eq!(follower.truncated_lines(), 2);

        // A long line arriving in pieces across several reads.
        append(&path, &[b'x'; 8]);
        assert_quiet(&mut follower).await;
        append(&path, &[b'y'; 30]);
        assert_quiet(&mut follower).await;
        append(&path, b"zz\nok\n");
        assert_eq!(next_n(&mut follower, 2).await, ["xxxxxxxxyy", "ok"]);
        assert_eq!(follower.truncated_lines(), 3);
    }

    #[tokio::test]
    async fn crlf_is_stripped_and_invalid_utf8_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"");
        let mut follower = FileFollower::new(&path, opts());
        append(&path, b"a\r\nmid\rdle\r\ncaf\xe9\n\r\n\n");
        assert_eq!(next_n(&mut follower, 5).await, ["a", "mid\rdle", "caf\u{fffd}", "", ""]);
        assert_eq!(follower.truncated_lines(), 0);
    }

    #[tokio::test]
    async fn cancelled_calls_lose_nothing() {
        const COUNT: usize = 40;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"");
        let mut follower = FileFollower::new(&path, opts());
        let writer_path = path.clone();
        let writer = tokio::spawn(async move {
            for i in 0..COUNT {
                for piece in ["li".to_string(), "ne-".to_string(), format!("{i}\n")] {
                    append(&writer_path, piece.as_bytes());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });

        let mut lines = Vec::new();
        let mut cancelled = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while lines.len() < COUNT {
            assert!(tokio::time::Instant::now() < deadline, "only got {lines:?}");
            // Far shorter than the poll interval, so most calls are dropped mid-sleep.
            match timeout(Duration::from_millis(3), follower.next_line()).await {
                Ok(Ok(line)) => lines.push(line),
                Ok(Err(e)) => panic!("next_line failed: {e}"),
                Err(_) => cancelled += 1,
            }
        }
        writer.await.expect("writer task");
        let expected: Vec<String> = (0..COUNT).map(|i| format!("line-{i}")).collect();
        assert_eq!(lines, expected);
        assert!(cancelled > 0, "the test never cancelled a call");
        assert_quiet(&mut follower).await;
    }

    #[tokio::test]
    async fn run_sends_lines_until_the_receiver_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        append(&path, b"skipped\n");
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(path.clone(), opts(), tx));
        // Let `run` open the file before writing, so the new lines are after its start.
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&path, b"x\ny\n");
        for expected in ["x", "y"] {
            let line = timeout(WAIT, rx.recv()).await.expect("a line in time");
            assert_eq!(line.as_deref(), Some(expected));
        }
        drop(rx);
        let result = timeout(WAIT, task).await.expect("run returns").expect("run task");
        assert!(result.is_ok(), "run failed: {result:?}");
    }
}
