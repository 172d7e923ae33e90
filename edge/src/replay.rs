//! `opmas-edge replay`: the agents over a log file, as fast as they go, with
//! the findings printed: the offline way to test thresholds against old logs.
//!
//! Time comes from the lines (lines without a timestamp take `now_ms`), so a
//! day of logs replays in seconds and detects what live reading would have.
//! Ticks are driven by the log's own clock; at the end every open window is
//! closed, so the final counts of floods come out as updates.

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::Instant;

use opmas_proto::msg::{Finding, Stage};

use crate::config::AgentsConfig;
use crate::events::JsonObject;
use crate::parse::ParseError;
use crate::pipeline::{Parsed, Parser, Pipeline};

/// The lines of a chunk, parsed and classified, in order.
type ParsedLines<'a> = Vec<Result<Parsed<'a>, ParseError>>;

self_cell::self_cell! {
    /// A chunk of whole lines and what the parser made of each: the unit
    /// the reading thread hands the agents' thread.
    struct Chunk {
        owner: String,
        #[covariant]
        dependent: ParsedLines,
    }
}

/// Splits `text` into lines (a `\r` before the `\n` dropped, no empty last
/// line) and parses each.
fn parse_chunk<'a>(text: &'a String, parser: &mut Parser, arrival_ms: u64) -> ParsedLines<'a> {
    let mut parsed = Vec::with_capacity(text.len() / 64);
    let mut from = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len())) {
        // Line ends are ASCII: `from..end` are char boundaries.
        let Some(line) = text.get(from..end) else { break };
        from = end + 1;
        if end == text.len() && line.is_empty() {
            break;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        parsed.push(parser.prepare(line, arrival_ms));
    }
    parsed
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplayStats {
    pub lines: u64,
    pub events: u64,
    pub findings: u64,
    pub seconds: f64,
}

/// How far apart, in log time, the agents' ticks are: often enough for
/// updates (at most one a minute) and quiet periods (minutes) to come out
/// when they would live, rare enough not to cost more than the lines when
/// the log's time runs fast.
const TICK_MS: u64 = 5_000;

/// Replays `input` through agents configured by `cfg`, writing findings to
/// `out` (JSON lines if `json`, else one readable line each).
///
/// Four threads in a row, so that a replay on a machine with more than one
/// core is not held up by parsing, its input or its output: one reads
/// `input` in chunks cut at line ends and checks their UTF-8, one parses
/// and classifies their lines (the half of the pipeline without state),
/// this one runs the agents over them, and one writes the findings. Chunks
/// and findings move through bounded channels, so memory stays flat
/// however long the log; order is kept, and the findings are those
/// [`Pipeline::feed`] makes of the same lines one by one.
pub fn replay(
    input: impl Read + Send,
    out: impl Write + Send,
    cfg: &AgentsConfig,
    now_ms: u64,
    json: bool,
) -> io::Result<ReplayStats> {
    let started = Instant::now();
    let mut pipeline = Pipeline::new(cfg);
    let mut stats = ReplayStats::default();
    let (text_tx, text_rx) = mpsc::sync_channel::<io::Result<String>>(CHUNKS_IN_FLIGHT);
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<io::Result<Chunk>>(CHUNKS_IN_FLIGHT);
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
    let (found_tx, found_rx) = mpsc::sync_channel::<Vec<Finding>>(CHUNKS_IN_FLIGHT);
    let outcome = std::thread::scope(|s| {
        s.spawn(move || read_chunks(input, &spare_rx, |text| text_tx.send(text).is_ok()));
        s.spawn(move || {
            let mut parser = Parser::default();
            for text in text_rx {
                let chunk = text.map(|t| Chunk::new(t, |t| parse_chunk(t, &mut parser, now_ms)));
                if chunk_tx.send(chunk).is_err() {
                    return;
                }
            }
        });
        let writer = s.spawn(move || write_all(found_rx, out, json));
        let mut found: Vec<Finding> = Vec::new();
        let mut last_tick: Option<u64> = None;
        let mut failed = None;
        for chunk in chunk_rx.iter() {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            chunk.with_dependent(|_, lines| {
                for parsed in lines {
                    stats.lines += 1;
                    pipeline.apply(parsed, now_ms, &mut found);
                    let clock = pipeline.log_clock_ms();
                    if last_tick.is_none_or(|t| clock >= t + TICK_MS) {
                        pipeline.tick(clock, &mut found);
                        last_tick = Some(clock);
                    }
                }
            });
            // The reader may reuse the buffer (it is gone at the end).
            let _ = spare_tx.send(chunk.into_owner().into_bytes());
            if !found.is_empty() && found_tx.send(std::mem::take(&mut found)).is_err() {
                // The writer stopped (a closed pipe): its error says why.
                break;
            }
        }
        // Dropped so that a reader still blocked on a full channel ends.
        drop(chunk_rx);
        if failed.is_none() {
            // Close every window: a week later in log time. The agents' clocks
            // first learn where the log ended (a tick right after its last
            // lines), or they would take the jump for the log's own offset.
            let end = pipeline.log_clock_ms();
            pipeline.tick(end, &mut found);
            pipeline.tick(end.saturating_add(86_400_000 * 8), &mut found);
            let _ = found_tx.send(found);
        }
        drop(found_tx);
        let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("the replay's writer panicked")));
        match (failed, written) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(n)) => Ok(n),
        }
    });
    stats.findings = outcome?;
    stats.events = pipeline.events();
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Bytes read from the input at a time, and the size of a chunk.
const CHUNK: usize = 256 * 1024;
/// Chunks (and batches of findings) waiting between two threads at most.
const CHUNKS_IN_FLIGHT: usize = 4;
/// A line longer than this is cut here (the rest is the next line), so
/// that a file without newlines cannot grow a chunk without bound.
const MAX_LINE: usize = 1024 * 1024;

/// Reads `input` into chunks of whole lines (the last may lack its `\n`),
/// each checked as UTF-8 and repaired if it is not (invalid bytes become
/// U+FFFD; a line end is never inside a character, so only the bad line
/// changes), and sends them in order. Stops at the end, at a read error
/// (passed on), or when `send` says the receiver is gone.
fn read_chunks(
    mut input: impl Read,
    spare: &mpsc::Receiver<Vec<u8>>,
    mut send: impl FnMut(io::Result<String>) -> bool,
) {
    let mut carry: Vec<u8> = Vec::new();
    let mut eof = false;
    while !eof {
        let mut buf = spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(2 * CHUNK));
        buf.clear();
        buf.append(&mut carry);
        let cut = loop {
            let last_end = memchr::memrchr(b'\n', &buf).map(|i| i + 1);
            match last_end {
                Some(end) if buf.len() >= CHUNK => break end,
                _ if buf.len() - last_end.unwrap_or(0) >= MAX_LINE => break last_end.unwrap_or(0) + MAX_LINE,
                _ => {}
            }
            // Up to CHUNK more bytes (fewer only at the end), without
            // zeroing the buffer first.
            match (&mut input).take(CHUNK as u64).read_to_end(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break buf.len();
                }
                Ok(_) => {}
                Err(e) => {
                    send(Err(e));
                    return;
                }
            }
        };
        carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let text = match String::from_utf8(buf) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        if !text.is_empty() && !send(Ok(text)) {
            return;
        }
    }
}

/// Writes the findings as they come; returns how many.
fn write_all(found: mpsc::Receiver<Vec<Finding>>, mut out: impl Write, json: bool) -> io::Result<u64> {
    let mut text = String::new();
    let mut n = 0;
    for mut batch in found {
        n += batch.len() as u64;
        write_findings(&mut batch, &mut out, &mut text, json)?;
    }
    out.flush()?;
    Ok(n)
}

fn write_findings(found: &mut Vec<Finding>, out: &mut impl Write, text: &mut String, json: bool) -> io::Result<()> {
    for f in found.drain(..) {
        text.clear();
        if json {
            finding_json(&f, text);
        } else {
            let what = match f.stage {
                Stage::New => "finding",
                Stage::Update => "update",
                Stage::Closed => "closed",
            };
            text.push_str(&format!("{what} {} sev={} count={}: {}", f.kind, f.severity.get(), f.count, f.summary));
        }
        text.push('\n');
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// One finding as a JSON object.
pub fn finding_json(f: &Finding, out: &mut String) {
    let mut j = JsonObject::open(out);
    j.str("agent", Some(&f.agent));
    j.str("kind", Some(&f.kind));
    j.num("severity", Some(f.severity.get().into()));
    j.ip("src_ip", f.subject.src_ip);
    j.str("mac", f.subject.mac.as_deref());
    j.str("iface", f.subject.iface.as_deref());
    j.str("user", f.subject.user.as_deref());
    j.str("service", f.subject.service.as_deref());
    j.str("host", f.subject.host.as_deref());
    j.num("count", Some(f.count.into()));
    j.num("first_ms", Some(f.first_ms));
    j.num("last_ms", Some(f.last_ms));
    j.str("summary", Some(&f.summary));
    let mut ev = String::from("[");
    for (i, e) in f.evidence.iter().enumerate() {
        if i > 0 {
            ev.push(',');
        }
        crate::events::push_json_str(&mut ev, e);
    }
    ev.push(']');
    j.raw("evidence", &ev);
    j.str("stage", Some(f.stage.as_str()));
    j.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `input` as `replay` cuts them, read `step` bytes at a time.
    fn split(input: &[u8], step: usize) -> Vec<String> {
        struct Slow<'a>(&'a [u8], usize);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let (_spare_tx, spare_rx) = mpsc::channel();
        let mut chunks = Vec::new();
        read_chunks(Slow(input, step), &spare_rx, |c| {
            chunks.push(c.unwrap());
            true
        });
        // Each chunk ends its last line, as in `replay`.
        chunks.iter().flat_map(|c| c.split_terminator('\n')).map(str::to_owned).collect()
    }

    #[test]
    fn lines_are_cut_wherever_the_reads_end() {
        let text = b"one\ntwo\r\n\nthree without a newline";
        let want = ["one", "two\r", "", "three without a newline"];
        for step in [1, 2, 3, 7, 1000, CHUNK + 3] {
            assert_eq!(split(text, step), want, "reads of {step}");
        }
        assert!(split(b"", 10).is_empty());
        // Many lines over many chunks arrive whole and in order.
        let many: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let got = split(many.as_bytes(), 70_000);
        assert_eq!(got.len(), 200_000);
        assert!(got.iter().enumerate().all(|(i, l)| *l == format!("line {i}")));
        // A line longer than MAX_LINE is cut there.
        let long = vec![b'x'; MAX_LINE + 10];
        let got = split(&long, CHUNK);
        assert_eq!(got.iter().map(String::len).collect::<Vec<_>>(), vec![MAX_LINE, 10]);
    }

    #[test]
    fn a_read_error_is_returned_after_what_came_before() {
        struct Broken(bool);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(io::Error::other("disk on fire"));
                }
                let l = b"x\n";
                buf[..2].copy_from_slice(l);
                Ok(2)
            }
        }
        let err = replay(Broken(false), Vec::new(), &AgentsConfig::default(), 1_780_000_000_000, true).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn a_line_that_is_not_utf8_is_repaired_not_dropped() {
        let log = b"Thu Dec  5 17:43:00 2024 authpriv.warn dropbear[1]: Bad password attempt for '\xff' from 203.0.113.9:4000\n";
        let mut out = Vec::new();
        let s = replay(&log[..], &mut out, &AgentsConfig::default(), 1_780_000_000_000, true).unwrap();
        assert_eq!((s.lines, s.events), (1, 1));
    }

    #[test]
    fn a_brute_force_in_an_old_log_is_found_once_with_its_final_count() {
        let mut log = String::new();
        for i in 0..30 {
            log.push_str(&format!(
                "Thu Dec  5 17:43:{:02} 2024 authpriv.warn dropbear[{}]: Bad password attempt for 'root' from 203.0.113.9:{}\n",
                i,
                100 + i,
                4000 + i
            ));
        }
        let mut out = Vec::new();
        let s = replay(log.as_bytes(), &mut out, &AgentsConfig::default(), 1_780_000_000_000, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(s.lines, 30);
        assert_eq!(s.events, 30);
        let brute: Vec<&str> = text.lines().filter(|l| l.contains("\"ssh.bruteforce\"")).collect();
        assert!(!brute.is_empty(), "{text}");
        assert!(brute[0].contains("\"stage\":\"new\""), "{text}");
        // The last word on the brute force carries all 30 failures.
        assert!(brute.last().unwrap().contains("\"count\":30"), "{text}");
    }

    #[test]
    fn the_threads_find_what_one_line_at_a_time_finds() {
        // Several chunks of brute forces, scans, floods and junk.
        let mut log = String::new();
        for i in 0..60_000u32 {
            let (m, sec) = (i / 60 % 60, i % 60);
            let line = match i % 5 {
                0 => format!("Thu Dec  5 17:{m:02}:{sec:02} 2024 authpriv.warn dropbear[{}]: Bad password attempt for 'root' from 203.0.113.{}:4000", i % 900, i % 7),
                1 => format!("Thu Dec  5 17:{m:02}:{sec:02} 2024 kern.warn kernel: [1.0] reject wan in: IN=eth1 OUT= MAC= SRC=198.51.100.{} DST=203.0.113.1 LEN=40 PROTO=TCP SPT=4000 DPT={} WINDOW=1024", i % 3, i % 700),
                2 => format!("Thu Dec  5 17:{m:02}:{sec:02} 2024 daemon.info hostapd: wlan0: AP-STA-DISCONNECTED 02:00:00:00:{:02x}:01", i % 200),
                3 => "not a log line at all \u{0}".to_owned(),
                _ => format!("<30>Dec  5 17:{m:02}:{sec:02} gw sshd[{}]: Invalid user u{} from 192.0.2.{} port 22", i, i % 50, i % 11),
            };
            log.push_str(&line);
            log.push('\n');
        }
        assert!(log.len() > 3 * CHUNK);
        let now = 1_780_000_000_000;
        let mut out = Vec::new();
        let stats = replay(log.as_bytes(), &mut out, &AgentsConfig::default(), now, true).unwrap();

        let mut p = Pipeline::new(&AgentsConfig::default());
        let mut found = Vec::new();
        let mut last_tick: Option<u64> = None;
        for line in log.lines() {
            p.feed(line, now, &mut found);
            let clock = p.log_clock_ms();
            if last_tick.is_none_or(|t| clock >= t + TICK_MS) {
                p.tick(clock, &mut found);
                last_tick = Some(clock);
            }
        }
        let end = p.log_clock_ms();
        p.tick(end, &mut found);
        p.tick(end + 86_400_000 * 8, &mut found);
        let mut want = String::new();
        for f in &found {
            finding_json(f, &mut want);
            want.push('\n');
        }
        assert!(found.len() > 10, "{want}");
        assert_eq!((stats.lines, stats.findings), (60_000, found.len() as u64));
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
