//! `opmas-edge explain`: what the edge makes of each log line, as one JSON
//! object per input line, for operators checking their logs and for the
//! golden tests that pin the parser and classifier.
//!
//! ```text
//! {"line":3,"ts":"2024-12-05T17:43:57Z","program":"dropbear","pid":12388,"facility":"authpriv","severity":"warning","event":{"kind":"ssh.invalid_user"}}
//! {"line":4,"program":"dnsmasq","pid":1,"facility":"daemon","severity":"info","event":null}
//! {"line":5,"error":"empty line"}
//! ```
//!
//! Header fields the line does not have are left out; `event` is always
//! there (`null` for a line no agent uses). `ts` is RFC 3339 in UTC, with
//! milliseconds only when they are not zero. Lines that are not UTF-8 are
//! decoded lossily (U+FFFD), so a bad byte costs one field, not the line.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write};

use crate::classify::classify;
use crate::date::{civil_from_days, unix_ms};
use crate::events::JsonObject;
use crate::parse::{parse_line, Context};

/// What `explain` saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Input lines.
    pub lines: u64,
    /// Lines that carry an event.
    pub events: u64,
    /// Lines parsed that no agent uses (`"event":null`).
    pub no_event: u64,
    /// Lines rejected (`"error"`).
    pub errors: u64,
}

/// Explains every line of `input` to `out`. `now_ms` (unix ms) supplies the
/// year of timestamps that have none, and is the only clock used: the same
/// input and `now_ms` always give the same output.
pub fn explain(mut input: impl BufRead, mut out: impl Write, now_ms: u64) -> io::Result<Stats> {
    let ctx = Context::at(now_ms);
    let mut stats = Stats::default();
    let mut raw = Vec::new();
    let mut json = String::new();
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        stats.lines += 1;
        let text = String::from_utf8_lossy(&raw);
        json.clear();
        match explain_line(stats.lines, &text, ctx, &mut json) {
            Outcome::Event => stats.events += 1,
            Outcome::NoEvent => stats.no_event += 1,
            Outcome::Error => stats.errors += 1,
        }
        json.push('\n');
        out.write_all(json.as_bytes())?;
    }
    out.flush()?;
    Ok(stats)
}

/// How one line turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed, and an agent uses it.
    Event,
    /// Parsed; no agent uses it.
    NoEvent,
    /// Rejected by the parser.
    Error,
}

/// Appends the JSON object for line number `n` (no newline) to `out`.
pub fn explain_line(n: u64, line: &str, ctx: Context, out: &mut String) -> Outcome {
    let mut j = JsonObject::open(out);
    j.num("line", Some(n));
    let rec = match parse_line(line, ctx) {
        Ok(r) => r,
        Err(e) => {
            j.str("error", Some(&e.to_string()));
            j.close();
            return Outcome::Error;
        }
    };
    let ts = rec.ts_ms.map(format_ts);
    j.str("ts", ts.as_deref());
    j.str("host", rec.host);
    j.str("program", rec.program);
    j.num("pid", rec.pid.map(u64::from));
    j.str("facility", rec.facility);
    j.str("severity", rec.severity);
    let outcome = match classify(&rec) {
        Some(ev) => {
            let mut ev_json = String::new();
            ev.write_json(&mut ev_json);
            j.raw("event", &ev_json);
            Outcome::Event
        }
        None => {
            j.null("event");
            Outcome::NoEvent
        }
    };
    j.close();
    outcome
}

/// A "now" given on the command line (`--now`): `2026-06-01` (midnight
/// UTC), `2026-06-01T12:00:00Z` or with an offset, or unix milliseconds.
pub fn parse_now(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *s.as_bytes() {
        let num =
            |ds: &[u8]| ds.iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
        let year = i32::try_from(num(&[y0, y1, y2, y3])?).ok()?;
        return unix_ms(year, num(&[m0, m1])?, num(&[d0, d1])?, 0, 0, 0);
    }
    match crate::parse::rfc3339(s) {
        Some((ms, "")) => Some(ms),
        _ => None,
    }
}

/// Unix ms → `2024-12-05T17:43:57Z` (`.250Z` when there are milliseconds).
pub fn format_ts(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let mut s = String::with_capacity(24);
    let _ = write!(s, "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
    if ms % 1000 != 0 {
        let _ = write!(s, ".{:03}", ms % 1000);
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, Stats) {
        let mut out = Vec::new();
        let now = unix_ms(2026, 6, 1, 0, 0, 0).unwrap();
        let stats = explain(input, &mut out, now).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    #[test]
    fn one_object_per_line_with_event_null_or_error() {
        let input = b"Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Login attempt for nonexistent user\n\
Sep  3 15:54:12 dnsmasq[19690]: 3689 forwarded to\n\
\n\
<30>May  2 12:14:02 OpenWrt logread[8913]: Logread connected\r\n";
        let (out, stats) = run(input);
        let want = r#"{"line":1,"ts":"2024-12-05T17:43:57Z","program":"dropbear","pid":12388,"facility":"authpriv","severity":"warning","event":{"kind":"ssh.invalid_user"}}
{"line":2,"ts":"2025-09-03T15:54:12Z","program":"dnsmasq","pid":19690,"event":null}
{"line":3,"error":"empty line"}
{"line":4,"ts":"2026-05-02T12:14:02Z","host":"OpenWrt","program":"logread","pid":8913,"facility":"daemon","severity":"info","event":null}
"#;
        assert_eq!(out, want);
        assert_eq!(stats, Stats { lines: 4, events: 1, no_event: 2, errors: 1 });
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_a_last_line_needs_no_newline() {
        let (out, stats) = run(b"daemon.info x: caf\xe9\nuser.info y: z");
        assert_eq!(out, "{\"line\":1,\"program\":\"x\",\"facility\":\"daemon\",\"severity\":\"info\",\"event\":null}\n{\"line\":2,\"program\":\"y\",\"facility\":\"user\",\"severity\":\"info\",\"event\":null}\n");
        assert_eq!(stats.lines, 2);
    }

    #[test]
    fn now_from_the_command_line() {
        assert_eq!(parse_now("2026-06-01"), unix_ms(2026, 6, 1, 0, 0, 0));
        assert_eq!(parse_now("2026-06-01T12:30:00Z"), unix_ms(2026, 6, 1, 12, 30, 0));
        assert_eq!(parse_now("2026-06-01T14:30:00+02:00"), unix_ms(2026, 6, 1, 12, 30, 0));
        assert_eq!(parse_now("1780000000000"), Some(1_780_000_000_000));
        for bad in ["", "2026-13-01", "2026-06-01 junk", "yesterday", "2026-06-0x"] {
            assert_eq!(parse_now(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_print_in_utc_with_milliseconds_when_present() {
        assert_eq!(format_ts(1_733_420_637_000), "2024-12-05T17:43:57Z");
        assert_eq!(format_ts(1_733_420_637_250), "2024-12-05T17:43:57.250Z");
        assert_eq!(format_ts(0), "1970-01-01T00:00:00Z");
    }
}
