//! Log line → [`Record`]: timestamp, host, facility, severity, program, pid
//! and message, borrowed from the line (no allocation on the fast paths).
//!
//! The first byte picks the format, so each line is tried against one
//! parser, not a chain of them:
//!
//! | starts with | format | parser |
//! | --- | --- | --- |
//! | `Www Mmm dd hh:mm:ss yyyy` | `logread` (OpenWrt's default source), also with `-t`'s `[sec.ms]` | fast path |
//! | `<PRI>Mmm dd hh:mm:ss` / `Mmm dd hh:mm:ss` | RFC 3164, with or without `<PRI>`, host, `fac.sev` | fast path |
//! | `<PRI>yyyy-mm-ddThh:mm:ss` | RFC 3164 framing with an RFC 3339 timestamp (rsyslog) | fast path |
//! | `<PRI>1 ` | RFC 5424 | `syslog_loose` |
//! | `<PRI>[ uptime]`, `[ uptime]` | kernel ring buffer (`<4>` printk level), `dmesg` | fast path |
//! | `[Jul 5, 2026, 1:21:12 PM GMT+2]`, `19:32:06]` | LuCI log-viewer export, whole or with the date cut | fast path |
//! | `fac.sev tag[pid]: msg` | `logread` without its date (LuCI, pastes) | fast path |
//! | `time="..." level=... msg="..."` | logrus (crowdsec bouncer's own log file) | fast path |
//! | anything else | a message body: `kernel: IPT_...`, `REJECT(src wan)IN=...` | `tag: msg` split |
//!
//! `syslog_loose` is kept for RFC 5424 and for odd RFC 3164 shapes the fast
//! path refuses (one-digit hours, say). It cannot be the main parser: it does
//! not know `logread`'s format, guesses the year of an RFC 3164 timestamp
//! without looking at the month, reads a message starting with `[` (every
//! kernel line) as structured data, and interprets zone-less times in the
//! machine's local zone, which would make output depend on `TZ`.
//!
//! Timestamps without a zone are taken as UTC: windows and rates only need
//! differences, and the router's zone is not in the line. RFC 3164 has no
//! year; [`Context`] supplies it, and a date that would lie in the future is
//! put in the year before (a December line read in January).
//!
//! Kernel lines get `program: "kernel"` (also the `dmesg` and ring-buffer
//! forms, which carry no tag) and their `[ 12.345678]` uptime is cut from
//! `msg`, so classification sees the kernel's own text first.
use crate::date::{unix_ms, year_of};

/// One parsed log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unix milliseconds, when the line has a usable timestamp.
    pub ts_ms: Option<u64>,
    /// The sending host (RFC 3164/5424 only; `logread` lines have none).
    pub host: Option<&'a str>,
    /// Canonical facility name: `kern`, `user`, `daemon`, `auth`, `authpriv`, `local0`...
    pub facility: Option<&'a str>,
    /// Canonical severity name: `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info`, `debug`
    /// (`logread`'s `warn` is written `warning` here, as in RFC 5424).
    pub severity: Option<&'a str>,
    /// The syslog tag without the pid: `dropbear`, `hostapd`, `kernel`.
    pub program: Option<&'a str>,
    /// The pid from `tag[pid]`.
    pub pid: Option<u32>,
    /// The message after `tag[pid]: ` (for the kernel, after the uptime too).
    pub msg: &'a str,
}

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty line")]
    Empty,
    /// A NUL byte: binary data (a log file cut by a power loss), not text.
    #[error("binary data (NUL byte at offset {0})")]
    Binary(usize),
    /// `<N>` with N above 191 (facility 23, severity 7).
    #[error("syslog priority <{0}> out of range 0-191")]
    BadPriority(u32),
    /// The header has the shape of a timestamp but no such date or time exists.
    #[error("invalid date or time in the header")]
    BadTimestamp,
}

/// How far ahead of "now" an RFC 3164 date may lie before it is taken to be
/// from the year before: routers log local time while `now` is UTC (up to
/// 14 h apart), and clocks drift.
pub const FUTURE_SLACK_MS: u64 = 2 * 86_400_000;

/// What the parser needs to know about the present: RFC 3164 timestamps
/// have no year. Passed in, so that parsing stays pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The year to assume for a date without one.
    pub year: i32,
    /// The current time (unix ms), when known: a date that would lie more
    /// than [`FUTURE_SLACK_MS`] after it is put in `year - 1`, so a December
    /// line read in January is dated last December. Dates are never put in
    /// the year after: a log line cannot come from the future.
    pub now_ms: Option<u64>,
}

impl Context {
    /// The context at `now_ms` (unix ms): its UTC year, and the New Year rule.
    pub fn at(now_ms: u64) -> Self {
        Context { year: year_of(now_ms), now_ms: Some(now_ms) }
    }

    /// A fixed year and no clock (no New Year rule): for tests and replays.
    pub fn in_year(year: i32) -> Self {
        Context { year, now_ms: None }
    }

    /// Unix ms of a date given without a year.
    fn ts_without_year(&self, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<u64> {
        let ts = unix_ms(self.year, month, day, h, m, s)?;
        match self.now_ms {
            Some(now) if ts > now.saturating_add(FUTURE_SLACK_MS) => {
                unix_ms(self.year.saturating_sub(1), month, day, h, m, s)
            }
            _ => Some(ts),
        }
    }

    /// The year of a date given without one (for `syslog_loose`).
    fn year_for(&self, (month, day, h, m, s): (u32, u32, u32, u32, u32)) -> i32 {
        match (unix_ms(self.year, month, day, h, m, s), self.now_ms) {
            (Some(ts), Some(now)) if ts > now.saturating_add(FUTURE_SLACK_MS) => self.year.saturating_sub(1),
            _ => self.year,
        }
    }
}

/// Parses one line. Never panics; every line is a record or an error.
pub fn parse_line(line: &str, ctx: Context) -> Result<Record<'_>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']).trim_start_matches([' ', '\t']);
    let b = line.as_bytes();
    let Some(&first) = b.first() else { return Err(ParseError::Empty) };
    let mut rec = match first {
        b'<' => pri_line(line, ctx)?,
        b'[' => bracket_line(line),
        b'0'..=b'9' => digit_line(line),
        b't' if line.starts_with("time=\"") => logrus(line),
        c if c.is_ascii_alphabetic() => letter_line(line, ctx)?,
        _ => body(line),
    };
    // A NUL byte in a line without any header we know means binary data (a
    // log file cut by a power loss is full of them). A line with a header is
    // text whatever its message holds, and skipping the scan there keeps a
    // pass over every byte off the fast paths.
    if rec.ts_ms.is_none() && rec.facility.is_none() && has_byte(b, 0) {
        return Err(ParseError::Binary(b.iter().position(|&c| c == 0).unwrap_or(0)));
    }
    if rec.program == Some("kernel") {
        rec.msg = strip_uptime(rec.msg);
    }
    Ok(rec)
}

/// Whether `b` holds the byte `x`. Lines pay for such scans in full, so this
/// is written to vectorise: OR-reduce 16-byte blocks without an early exit
/// inside a block (an early-exit `contains` is a byte-at-a-time loop here),
/// and finish with one overlapping block rather than a byte loop.
fn has_byte(b: &[u8], x: u8) -> bool {
    let block = |blk: &[u8]| blk.iter().fold(false, |acc, &c| acc | (c == x));
    if b.len() < 16 {
        return block(b);
    }
    let mut blocks = b.chunks_exact(16);
    if blocks.any(block) {
        return true;
    }
    // The tail as one more full block, overlapping the last one checked.
    block(&b[b.len() - 16..])
}

/// Lines starting with a letter: `logread`, RFC 3164 without `<PRI>`,
/// `fac.sev tag: msg`, or a message body.
fn letter_line(line: &str, ctx: Context) -> Result<Record<'_>, ParseError> {
    match logread(line) {
        Shape::Ok(r) => return Ok(r),
        Shape::Bad => return Err(ParseError::BadTimestamp),
        Shape::No => {}
    }
    match bsd_header(line, ctx) {
        Shape::Ok((ts, rest)) => return Ok(Record { ts_ms: Some(ts), ..host_tag(rest) }),
        Shape::Bad => return Err(ParseError::BadTimestamp),
        Shape::No => {}
    }
    if let Some(r) = prio_rest(line) {
        return Ok(r);
    }
    if line.get(..3).and_then(month_number).is_some() {
        // A month name the fast path did not take ("Jan  5 9:07:03 ..."): the reference parser may.
        if let Some(r) = loose(line, line, ctx, None, None) {
            return Ok(r);
        }
    }
    Ok(body(line))
}

/// `<PRI>` lines: RFC 3164, RFC 5424, or the kernel ring buffer (`<4>[ 1.2] ...`).
fn pri_line(line: &str, ctx: Context) -> Result<Record<'_>, ParseError> {
    let b = line.as_bytes();
    let mut i = 1;
    let mut pri = 0u32;
    while i < b.len() && i <= 3 && b[i].is_ascii_digit() {
        pri = pri * 10 + u32::from(b[i] - b'0');
        i += 1;
    }
    if i == 1 || b.get(i) != Some(&b'>') {
        return Ok(body(line));
    }
    if pri > 191 {
        return Err(ParseError::BadPriority(pri));
    }
    let facility = FACILITIES.get((pri >> 3) as usize).copied();
    let severity = SEVERITIES.get((pri & 7) as usize).copied();
    let rest = &line[i + 1..];
    let rb = rest.as_bytes();
    let mut rec = match rb.first() {
        Some(b'1') if rb.get(1) == Some(&b' ') => return Ok(rfc5424(line, rest, ctx, facility, severity)),
        Some(b'[') => Record { facility, severity, program: Some("kernel"), msg: rest, ..Record::default() },
        Some(c) if c.is_ascii_uppercase() => match bsd_header(rest, ctx) {
            Shape::Ok((ts, after)) => Record { ts_ms: Some(ts), ..host_tag(after) },
            Shape::Bad => return Err(ParseError::BadTimestamp),
            Shape::No => loose(line, rest, ctx, facility, severity).unwrap_or_else(|| tagged(rest)),
        },
        Some(c) if c.is_ascii_digit() => match rfc3339(rest) {
            Some((ts, after)) => Record { ts_ms: Some(ts), ..host_tag(after) },
            None => loose(line, rest, ctx, facility, severity).unwrap_or_else(|| tagged(rest)),
        },
        _ => tagged(rest),
    };
    // The header's `fac.sev`, when there is one, is the originating syslogd's
    // word; the PRI is the relay's.
    rec.facility = rec.facility.or(facility);
    rec.severity = rec.severity.or(severity);
    rec.msg = cut_next_frame(rec.msg);
    Ok(rec)
}

/// `[ 12.345] msg` (dmesg) or `[Jul 5, 2026, 1:21:12 PM GMT+2] fac.sev: tag: msg` (LuCI).
fn bracket_line(line: &str) -> Record<'_> {
    if uptime_len(line).is_some() {
        return Record { program: Some("kernel"), msg: line, ..Record::default() };
    }
    if let Some((ts, rest)) = luci_date(line) {
        if let Some(r) = prio_rest(rest) {
            return Record { ts_ms: Some(ts), ..r };
        }
    }
    body(line)
}

/// Lines starting with a digit: an RFC 3339 timestamp, or a LuCI export with
/// its date cut off (`19:32:06] cron.err: crond[1908]: ...`).
fn digit_line(line: &str) -> Record<'_> {
    if let Some((ts, rest)) = rfc3339(line) {
        return Record { ts_ms: Some(ts), ..host_tag(rest) };
    }
    body(line)
}

/// A line without a header we know: a message body, possibly with a tag
/// (`kernel: IPT_...`), or a header cut short before `] fac.sev: `.
fn body(line: &str) -> Record<'_> {
    if let Some(r) = cut_header(line) {
        return r;
    }
    tagged(line)
}

/// `tag[pid]: msg` or a bare message.
fn tagged(s: &str) -> Record<'_> {
    let (program, pid, msg) = tag_and_msg(s);
    Record { program, pid, msg, ..Record::default() }
}

/// A LuCI export whose date was cut: anything up to `] ` in the first few
/// bytes, then `fac.sev`. The timestamp is lost with the date.
fn cut_header(line: &str) -> Option<Record<'_>> {
    let head = line.as_bytes().get(..line.len().min(48))?;
    let close = head.windows(2).position(|w| w == b"] ")?;
    prio_rest(&line[close + 2..])
}

/// The outcome of matching a header shape.
enum Shape<T> {
    /// Not this format.
    No,
    /// This format, but an impossible date or time.
    Bad,
    Ok(T),
}

/// `Www Mmm dd hh:mm:ss yyyy [sec.ms] fac.sev tag[pid]: msg` (ctime's day is
/// space-padded; an unpadded one is accepted too).
fn logread(line: &str) -> Shape<Record<'_>> {
    let b = line.as_bytes();
    if b.len() < 24 || b[3] != b' ' || !b[..3].iter().all(u8::is_ascii_alphabetic) {
        return Shape::No;
    }
    let mut sc = Scan::at(line, 4);
    let Some(month) = sc.month() else { return Shape::No };
    if !sc.eat(b' ') {
        return Shape::No;
    }
    sc.eat(b' ');
    let (Some(day), true) = (sc.digits(1, 2), sc.eat(b' ')) else { return Shape::No };
    let Some((h, m, s)) = sc.clock() else { return Shape::No };
    if !sc.eat(b' ') {
        return Shape::No;
    }
    let Some(year) = sc.digits(4, 4) else { return Shape::No };
    if !sc.eat(b' ') && !sc.at_end() {
        return Shape::No;
    }
    let epoch = sc.epoch_ms();
    let Some(ts) = epoch.or_else(|| unix_ms(year as i32, month, day, h, m, s)) else { return Shape::Bad };
    let rest = sc.rest();
    let r = prio_rest(rest).unwrap_or_else(|| tagged(rest));
    Shape::Ok(Record { ts_ms: Some(ts), ..r })
}

/// `Mmm dd [yyyy ]hh:mm:ss [[sec.ms] ]` → timestamp and the rest of the line.
fn bsd_header(s: &str, ctx: Context) -> Shape<(u64, &str)> {
    let mut sc = Scan::at(s, 0);
    let Some(month) = sc.month() else { return Shape::No };
    if !sc.eat(b' ') {
        return Shape::No;
    }
    sc.eat(b' ');
    let (Some(day), true) = (sc.digits(1, 2), sc.eat(b' ')) else { return Shape::No };
    // syslog-ng and some routers put a year before the clock: "Aug  4 2020 16:49:07".
    let year = if sc.byte_at(4) == Some(b' ') {
        let (Some(y), true) = (sc.digits(4, 4), sc.eat(b' ')) else { return Shape::No };
        Some(y as i32)
    } else {
        None
    };
    let Some((h, m, sec)) = sc.clock() else { return Shape::No };
    if !sc.eat(b' ') && !sc.at_end() {
        return Shape::No;
    }
    let epoch = sc.epoch_ms();
    let ts = match (epoch, year) {
        (Some(e), _) => Some(e),
        (None, Some(y)) => unix_ms(y, month, day, h, m, sec),
        (None, None) => ctx.ts_without_year(month, day, h, m, sec),
    };
    match ts {
        Some(ts) => Shape::Ok((ts, sc.rest())),
        None => Shape::Bad,
    }
}

/// After an RFC 3164 timestamp: `[host ][fac.sev ]tag[pid]: msg`.
///
/// Without `<PRI>` or `fac.sev` the host is optional and looks like a tag
/// without its colon; so the first word is the tag when it ends in `:`
/// (`dnsmasq[19690]: ...`, `hostapd: ...`), a priority when it is
/// `fac.sev`, and otherwise the host. A host never ends in `:`.
fn host_tag(rest: &str) -> Record<'_> {
    let (first, after) = split_word(rest);
    if first.ends_with(':') {
        return tagged(rest);
    }
    if let Some(r) = prio_rest(rest) {
        return r;
    }
    let host = Some(first).filter(|h| !h.is_empty() && *h != "-");
    match prio_rest(after) {
        Some(r) => Record { host, ..r },
        None => Record { host, ..tagged(after) },
    }
}

/// `fac.sev[:] tag[pid]: msg` (`logread` after its date; the `:` is LuCI's).
fn prio_rest(s: &str) -> Option<Record<'_>> {
    // One pass over the first word, giving up at the first byte no
    // `fac.sev` has: most words tried here (hosts, tags) fail at once.
    let b = s.as_bytes();
    let mut dot = None;
    let mut end = 0;
    while end < b.len() {
        match b[end] {
            b'a'..=b'z' | b'0'..=b'9' => {}
            b'.' if dot.is_none() => dot = Some(end),
            b':' if b.get(end + 1).is_none_or(|&c| c == b' ') => break,
            b' ' => break,
            _ => return None,
        }
        end += 1;
    }
    let dot = dot?;
    let facility = facility_name(&s[..dot])?;
    let severity = severity_name(&s[dot + 1..end])?;
    let rest = s.get(end..).unwrap_or("");
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (program, pid, msg) = tag_and_msg(rest);
    Some(Record { facility: Some(facility), severity: Some(severity), program, pid, msg, ..Record::default() })
}

/// Splits `tag[pid]: msg` or `tag: msg`. The tag is the first word and ends
/// in `:`; a first word without one means the line has no tag. An empty tag
/// (`: luci: ...`, LuCI's own lines since 2021) gives no program.
fn tag_and_msg(s: &str) -> (Option<&str>, Option<u32>, &str) {
    let (word, rest) = split_word(s);
    let Some(tag) = word.strip_suffix(':') else { return (None, None, s) };
    if tag.is_empty() {
        return (None, None, rest);
    }
    if let Some(inner) = tag.strip_suffix(']') {
        if let Some(open) = inner.bytes().rposition(|c| c == b'[') {
            if let Some(pid) = parse_u32(&inner[open + 1..]) {
                return (Some(&tag[..open]).filter(|t| !t.is_empty()), Some(pid), rest);
            }
        }
    }
    // `adblock-[3.4.3]`: brackets that hold no pid are part of the name.
    (Some(tag), None, rest)
}

/// Splits at the first space: (word, the rest after the space).
fn split_word(s: &str) -> (&str, &str) {
    match s.as_bytes().iter().position(|&c| c == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// Frames sent over UDP without a separator and printed as one line by the
/// receiver (`...deactivated<6>May  2 12:15:20 OpenWrt kernel: ...`): the
/// message of the first ends where the next `<PRI>Mmm ` begins. The UDP
/// source splits datagrams, so this only matters for pasted captures.
fn cut_next_frame(msg: &str) -> &str {
    let b = msg.as_bytes();
    if !has_byte(b, b'<') {
        return msg;
    }
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b'<') {
        let i = from + off;
        let mut j = i + 1;
        while j < b.len() && j <= i + 3 && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > i + 1
            && b.get(j) == Some(&b'>')
            && b.get(j + 1..j + 4).is_some_and(|m| month_number_bytes(m).is_some())
            && b.get(j + 4) == Some(&b' ')
        {
            return &msg[..i];
        }
        from = i + 1;
    }
    msg
}

/// RFC 5424 through `syslog_loose`; on failure the text after `<PRI>` is the message.
fn rfc5424<'a>(
    line: &'a str,
    rest: &'a str,
    ctx: Context,
    facility: Option<&'a str>,
    severity: Option<&'a str>,
) -> Record<'a> {
    use syslog_loose::{parse_message_with_year_exact, ProcId, Variant};
    let Ok(m) = parse_message_with_year_exact(line, move |d| ctx.year_for(d), Variant::RFC5424) else {
        return Record { facility, severity, msg: rest, ..Record::default() };
    };
    let pid = match &m.procid {
        Some(ProcId::PID(p)) => u32::try_from(*p).ok(),
        Some(ProcId::Name(n)) => parse_u32(n),
        None => None,
    };
    Record {
        ts_ms: m.timestamp.and_then(|t| u64::try_from(t.timestamp_millis()).ok()),
        host: m.hostname,
        facility: m.facility.map(|f| f.as_str()).or(facility),
        severity: m.severity.map(|s| s.as_str()).or(severity),
        program: m.appname,
        pid,
        msg: m.msg,
    }
}

/// Anything else `syslog_loose` accepts (RFC 3164 shapes the fast path
/// refuses). `header` is the text after `<PRI>`: when its timestamp starts
/// with a letter it had no zone, and `syslog_loose` read it in the machine's
/// local zone, so the wall time is taken back and read as UTC, like every
/// other zone-less time here.
fn loose<'a>(
    line: &'a str,
    header: &'a str,
    ctx: Context,
    facility: Option<&'a str>,
    severity: Option<&'a str>,
) -> Option<Record<'a>> {
    use syslog_loose::{parse_message_with_year_exact, ProcId, Variant};
    let m = parse_message_with_year_exact(line, move |d| ctx.year_for(d), Variant::Either).ok()?;
    let zoneless = header.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
    let ts =
        m.timestamp.map(|t| if zoneless { t.naive_local().and_utc().timestamp_millis() } else { t.timestamp_millis() });
    let pid = match &m.procid {
        Some(ProcId::PID(p)) => u32::try_from(*p).ok(),
        Some(ProcId::Name(n)) => parse_u32(n),
        None => None,
    };
    Some(Record {
        ts_ms: ts.and_then(|t| u64::try_from(t).ok()),
        host: m.hostname,
        facility: m.facility.map(|f| f.as_str()).or(facility),
        severity: m.severity.map(|s| s.as_str()).or(severity),
        program: m.appname,
        pid,
        msg: m.msg,
    })
}

/// `time="03-08-2021 17:07:12" level=info msg="..."`: logrus's text format,
/// as the crowdsec firewall bouncer writes its own log file. Its time layout
/// is Go's `02-01-2006 15:04:05` (day first); logrus's default is RFC 3339.
fn logrus(line: &str) -> Record<'_> {
    let rest = &line[6..];
    let Some(close) = rest.find('"') else { return body(line) };
    let time = &rest[..close];
    let rest = &rest[close + 1..];
    let ts = rfc3339(time).map(|(t, _)| t).or_else(|| day_first_time(time));
    let severity = field(rest, " level=").and_then(logrus_level);
    let msg = match rest.find(" msg=") {
        Some(i) => quoted_or_word(&rest[i + 5..]),
        None => rest.trim_start(),
    };
    Record { ts_ms: ts, severity, msg, ..Record::default() }
}

/// `dd-mm-yyyy hh:mm:ss`.
fn day_first_time(s: &str) -> Option<u64> {
    let mut sc = Scan::at(s, 0);
    let day = sc.digits(2, 2)?;
    sc.eat(b'-').then_some(())?;
    let month = sc.digits(2, 2)?;
    sc.eat(b'-').then_some(())?;
    let year = sc.digits(4, 4)?;
    sc.eat(b' ').then_some(())?;
    let (h, m, sec) = sc.clock()?;
    unix_ms(year as i32, month, day, h, m, sec)
}

/// The value after `key` up to the next space.
fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)?;
    Some(split_word(&s[i + key.len()..]).0)
}

/// `"quoted text"` (up to the closing quote not preceded by `\`) or a bare word.
fn quoted_or_word(s: &str) -> &str {
    let Some(inner) = s.strip_prefix('"') else { return split_word(s).0 };
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return &inner[..i],
            _ => i += 1,
        }
    }
    inner
}

fn logrus_level(l: &str) -> Option<&'static str> {
    Some(match l {
        "panic" => "emerg",
        "fatal" => "crit",
        "error" => "err",
        "warning" | "warn" => "warning",
        "info" => "info",
        "debug" | "trace" => "debug",
        _ => return None,
    })
}

/// `[Jul 5, 2026, 1:21:12 PM GMT+2] ` (LuCI's log viewer, `en-US` locale;
/// 24-hour clocks and zones `GMT`, `UTC`, `GMT±h[:mm]` too; an unknown zone
/// name is read as UTC) → timestamp and the rest after `] `.
fn luci_date(line: &str) -> Option<(u64, &str)> {
    let mut sc = Scan::at(line, 1);
    let month = sc.month()?;
    sc.eat(b' ').then_some(())?;
    let day = sc.digits(1, 2)?;
    (sc.eat(b',') && sc.eat(b' ')).then_some(())?;
    let year = sc.digits(4, 4)?;
    (sc.eat(b',') && sc.eat(b' ')).then_some(())?;
    let mut h = sc.digits(1, 2)?;
    sc.eat(b':').then_some(())?;
    let m = sc.digits(2, 2)?;
    sc.eat(b':').then_some(())?;
    let s = sc.digits(2, 2)?;
    let close = sc.rest().find("] ")?;
    let tail = &sc.rest()[..close];
    let rest = &sc.rest()[close + 2..];
    let mut zone = tail.trim_start();
    if let Some(z) = zone.strip_prefix("AM").or_else(|| zone.strip_prefix("am")) {
        h = if h == 12 { 0 } else { h };
        zone = z.trim_start();
    } else if let Some(z) = zone.strip_prefix("PM").or_else(|| zone.strip_prefix("pm")) {
        h = if h == 12 { 12 } else { h + 12 };
        zone = z.trim_start();
    }
    let local = unix_ms(year as i32, month, day, h, m, s)?;
    let offset_ms = zone_offset_ms(zone);
    Some((u64::try_from(local as i64 - offset_ms).ok()?, rest))
}

/// `GMT+2`, `UTC-04:30`, `GMT+0530` → milliseconds east of UTC; other names → 0.
fn zone_offset_ms(zone: &str) -> i64 {
    let z = zone.strip_prefix("GMT").or_else(|| zone.strip_prefix("UTC")).unwrap_or("");
    let (sign, z) = match z.as_bytes().first() {
        Some(b'+') => (1, &z[1..]),
        Some(b'-') => (-1, &z[1..]),
        _ => return 0,
    };
    let (h, m) = match z.split_once(':') {
        Some((h, m)) => (parse_u32(h), parse_u32(m)),
        None if z.len() == 4 => (z.get(..2).and_then(parse_u32), z.get(2..).and_then(parse_u32)),
        None => (parse_u32(z), Some(0)),
    };
    match (h, m) {
        (Some(h), Some(m)) if h <= 14 && m < 60 => sign * (i64::from(h) * 3_600_000 + i64::from(m) * 60_000),
        _ => 0,
    }
}

/// `YYYY-MM-DDThh:mm:ss[.frac][Z|±hh:mm]` → unix ms and the rest after one space.
pub(crate) fn rfc3339(s: &str) -> Option<(u64, &str)> {
    let mut sc = Scan::at(s, 0);
    let year = sc.digits(4, 4)?;
    sc.eat(b'-').then_some(())?;
    let month = sc.digits(2, 2)?;
    sc.eat(b'-').then_some(())?;
    let day = sc.digits(2, 2)?;
    (sc.eat(b'T') || sc.eat(b't')).then_some(())?;
    let (h, m, sec) = sc.clock()?;
    let mut ms = 0u64;
    if sc.eat(b'.') {
        let start = sc.i;
        let mut scale = 100;
        while let Some(d) = sc.peek().filter(u8::is_ascii_digit) {
            ms += u64::from(d - b'0') * scale;
            scale /= 10;
            sc.i += 1;
        }
        if sc.i == start {
            return None;
        }
    }
    let offset_ms: i64 = if sc.eat(b'Z') || sc.eat(b'z') {
        0
    } else if let Some(sign) = sc.peek().filter(|c| *c == b'+' || *c == b'-') {
        sc.i += 1;
        let oh = sc.digits(2, 2)?;
        sc.eat(b':');
        let om = sc.digits(2, 2)?;
        let o = i64::from(oh) * 3_600_000 + i64::from(om) * 60_000;
        if sign == b'-' {
            -o
        } else {
            o
        }
    } else {
        0
    };
    if !sc.eat(b' ') && !sc.at_end() {
        return None;
    }
    let local = unix_ms(year as i32, month, day, h, m, sec)? + ms;
    Some((u64::try_from(local as i64 - offset_ms).ok()?, sc.rest()))
}

/// Length of a leading `[ 12.345678]` kernel uptime, with one following space.
fn uptime_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let mut i = 1;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == int_start || b.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let frac_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == frac_start || b.get(i) != Some(&b']') {
        return None;
    }
    i += 1;
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    Some(i)
}

/// The message without a leading kernel uptime.
fn strip_uptime(msg: &str) -> &str {
    match uptime_len(msg) {
        Some(n) => &msg[n..],
        None => msg,
    }
}

/// A cursor over the ASCII header of a line. It only ever steps over ASCII
/// bytes it has checked, so every position is a char boundary.
struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn at(s: &'a str, i: usize) -> Self {
        Scan { s, i }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn byte_at(&self, off: usize) -> Option<u8> {
        self.s.as_bytes().get(self.i + off).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `min` to `max` ASCII digits.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let b = self.s.as_bytes();
        let mut n = 0u32;
        let mut k = 0;
        while k < max {
            match b.get(self.i + k) {
                Some(&c) if c.is_ascii_digit() => n = n * 10 + u32::from(c - b'0'),
                _ => break,
            }
            k += 1;
        }
        if k < min {
            return None;
        }
        self.i += k;
        Some(n)
    }

    fn month(&mut self) -> Option<u32> {
        let m = month_number_bytes(self.s.as_bytes().get(self.i..self.i + 3)?)?;
        self.i += 3;
        Some(m)
    }

    /// `hh:mm:ss`, read at fixed offsets (every line has one).
    fn clock(&mut self) -> Option<(u32, u32, u32)> {
        let b = self.s.as_bytes().get(self.i..self.i + 8)?;
        if b[2] != b':' || b[5] != b':' {
            return None;
        }
        let two = |k: usize| {
            let (x, y) = (b[k].wrapping_sub(b'0'), b[k + 1].wrapping_sub(b'0'));
            (x < 10 && y < 10).then(|| u32::from(x) * 10 + u32::from(y))
        };
        let hms = (two(0)?, two(3)?, two(6)?);
        self.i += 8;
        Some(hms)
    }

    /// `[1733420637.123] ` (`logread -t`): the exact time, which also settles the year.
    fn epoch_ms(&mut self) -> Option<u64> {
        if self.peek() != Some(b'[') {
            return None;
        }
        let save = self.i;
        self.i += 1;
        let b = self.s.as_bytes();
        let mut secs = 0u64;
        let mut n = 0;
        while let Some(&c) = b.get(self.i).filter(|c| c.is_ascii_digit()) {
            secs = secs.saturating_mul(10).saturating_add(u64::from(c - b'0'));
            self.i += 1;
            n += 1;
        }
        let ms = if self.eat(b'.') { self.digits(3, 3) } else { None };
        match (n, ms, self.eat(b']') && (self.eat(b' ') || self.at_end())) {
            (9..=11, Some(ms), true) => Some(secs * 1000 + u64::from(ms)),
            _ => {
                self.i = save;
                None
            }
        }
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }
}

/// 1 to 9 ASCII digits (no sign, no overflow possible).
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// Facility names by code, as `syslog_loose` names them.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Severity names by code, as RFC 5424 and `syslog_loose` name them.
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// The canonical name of a facility as `logread` or syslogd print it.
fn facility_name(s: &str) -> Option<&'static str> {
    Some(match s {
        "kern" => "kern",
        "user" => "user",
        "mail" => "mail",
        "daemon" => "daemon",
        "auth" | "security" => "auth",
        "syslog" => "syslog",
        "lpr" => "lpr",
        "news" => "news",
        "uucp" => "uucp",
        "cron" => "cron",
        "authpriv" => "authpriv",
        "ftp" => "ftp",
        "ntp" => "ntp",
        "audit" => "audit",
        "local0" => "local0",
        "local1" => "local1",
        "local2" => "local2",
        "local3" => "local3",
        "local4" => "local4",
        "local5" => "local5",
        "local6" => "local6",
        "local7" => "local7",
        _ => return None,
    })
}

/// The canonical name of a severity (`warn` → `warning`, `error` → `err`, `panic` → `emerg`).
fn severity_name(s: &str) -> Option<&'static str> {
    Some(match s {
        "emerg" | "panic" => "emerg",
        "alert" => "alert",
        "crit" => "crit",
        "err" | "error" => "err",
        "warn" | "warning" => "warning",
        "notice" => "notice",
        "info" => "info",
        "debug" => "debug",
        _ => return None,
    })
}

fn month_number(m: &str) -> Option<u32> {
    month_number_bytes(m.as_bytes())
}

fn month_number_bytes(m: &[u8]) -> Option<u32> {
    Some(match m {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context = Context { year: 2024, now_ms: None };

    fn p(line: &str) -> Record<'_> {
        parse_line(line, CTX).unwrap()
    }

    #[test]
    fn logread_line_with_padded_day() {
        let r = p("Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Login attempt for nonexistent user");
        assert_eq!(r.ts_ms, Some(1_733_420_637_000));
        assert_eq!(r.host, None);
        assert_eq!(r.facility, Some("authpriv"));
        assert_eq!(r.severity, Some("warning"));
        assert_eq!(r.program, Some("dropbear"));
        assert_eq!(r.pid, Some(12388));
        assert_eq!(r.msg, "Login attempt for nonexistent user");
    }

    #[test]
    fn logread_kernel_line_loses_its_uptime() {
        let r = p("Mon Sep 15 15:57:10 2025 kern.info kernel: [  630.394949] eth0: link up");
        assert_eq!(r.program, Some("kernel"));
        assert_eq!(r.pid, None);
        assert_eq!(r.msg, "eth0: link up");
        let r = p("Sat Jan 25 09:40:15 2020 kern.warn kernel: [22040.811380]");
        assert_eq!(r.msg, "");
    }

    #[test]
    fn logread_with_t_flag_uses_the_exact_time() {
        let r = p("Thu Dec  5 18:43:57 2024 [1733420637.250] authpriv.warn dropbear[1]: x");
        assert_eq!(r.ts_ms, Some(1_733_420_637_250));
        assert_eq!(r.msg, "x");
    }

    #[test]
    fn bare_priority_and_luci_exports() {
        let r = p("authpriv.warn dropbear[8843]: Bad password attempt for 'root' from 192.168.9.204:63779");
        assert_eq!((r.ts_ms, r.program, r.pid), (None, Some("dropbear"), Some(8843)));
        let r = p("[Jul 5, 2026, 1:21:12 PM GMT+2] daemon.debug: hostapd: phy0-ap0: STA xx IEEE 802.11: authenticated");
        assert_eq!(r.ts_ms, unix_ms(2026, 7, 5, 11, 21, 12));
        assert_eq!((r.facility, r.severity, r.program), (Some("daemon"), Some("debug"), Some("hostapd")));
        assert_eq!(r.msg, "phy0-ap0: STA xx IEEE 802.11: authenticated");
        let r = p("[Apr 24, 2026, 12:05:00 AM GMT-4] daemon.notice: hostapd: x");
        assert_eq!(r.ts_ms, unix_ms(2026, 4, 24, 4, 5, 0));
        let r = p("19:32:06] cron.err: crond[1908]: crond (busybox 1.37.0) started, log level 7");
        assert_eq!(
            (r.ts_ms, r.facility, r.severity, r.program, r.pid),
            (None, Some("cron"), Some("err"), Some("crond"), Some(1908))
        );
    }

    #[test]
    fn empty_program_tag() {
        let r = p("user.info : luci: failed login on / for root from 192.168.0.2");
        assert_eq!(r.program, None);
        assert_eq!(r.msg, "luci: failed login on / for root from 192.168.0.2");
    }

    #[test]
    fn rfc3164_with_host_and_priority_text() {
        let r = p(
            "Feb  5 03:13:39 openwrt user.warn dropbear[10221]: bad password attempt for 'root' from 192.168.1.1:51570",
        );
        assert_eq!(r.host, Some("openwrt"));
        assert_eq!(r.ts_ms, unix_ms(2024, 2, 5, 3, 13, 39));
        assert_eq!((r.facility, r.severity, r.program), (Some("user"), Some("warning"), Some("dropbear")));
        assert_eq!(r.msg, "bad password attempt for 'root' from 192.168.1.1:51570");
    }

    #[test]
    fn rfc3164_host_or_tag() {
        let r = p("Aug 21 04:32:18 WifiAP-01 hostapd: wlan1-1: AP-STA-DISCONNECTED 06:fc:e4:4a:e5:05");
        assert_eq!((r.host, r.program), (Some("WifiAP-01"), Some("hostapd")));
        assert_eq!(r.msg, "wlan1-1: AP-STA-DISCONNECTED 06:fc:e4:4a:e5:05");
        let r = p("Sep  3 15:54:12 dnsmasq[19690]: 3689 forwarded to");
        assert_eq!((r.host, r.program, r.pid, r.msg), (None, Some("dnsmasq"), Some(19690), "3689 forwarded to"));
        let r = p("Feb 3 16:04:14 openwrt user.warn kernel: IPT_dsl-Rej IN=pppoe-dsl OUT=");
        assert_eq!((r.host, r.program, r.msg), (Some("openwrt"), Some("kernel"), "IPT_dsl-Rej IN=pppoe-dsl OUT="));
        let r = p("Nov 18 13:39:49 OpenWRT kernel: [10051.313745] DROP(src wan)IN=eth0 OUT=");
        assert_eq!((r.host, r.program, r.msg), (Some("OpenWRT"), Some("kernel"), "DROP(src wan)IN=eth0 OUT="));
        let r = p("Aug  4 2020 16:49:07 gw tag: m");
        assert_eq!(r.ts_ms, unix_ms(2020, 8, 4, 16, 49, 7));
    }

    #[test]
    fn rfc3164_with_pri() {
        let r = p("<38>Dec  5 17:43:57 gw sshd[99]: Failed password for root from 10.0.0.1 port 22 ssh2");
        assert_eq!((r.host, r.program, r.pid), (Some("gw"), Some("sshd"), Some(99)));
        assert_eq!((r.facility, r.severity), (Some("auth"), Some("info")));
        assert!(r.msg.starts_with("Failed password"));
        let r = p("<30>2024-05-27T17:26:51.5-04:00 OpenWrt netifd: Interface 'wan' is now up");
        assert_eq!(r.ts_ms, Some(unix_ms(2024, 5, 27, 21, 26, 51).unwrap() + 500));
        assert_eq!((r.host, r.program, r.msg), (Some("OpenWrt"), Some("netifd"), "Interface 'wan' is now up"));
    }

    #[test]
    fn frames_run_together_keep_only_the_first() {
        let r = p("<30>May  2 12:15:20 OpenWrt ipsec: 07[KNL] interface eth1 deactivated<6>May  2 12:15:20 OpenWrt kernel: [  272.870532] br-lan: x");
        assert_eq!((r.program, r.msg), (Some("ipsec"), "07[KNL] interface eth1 deactivated"));
        assert_eq!((r.facility, r.severity), (Some("daemon"), Some("info")));
    }

    #[test]
    fn rfc5424_goes_through_syslog_loose() {
        let r = p("<30>1 2024-05-27T17:26:51-04:00 OpenWrt logread 13023 - - logread[13023]: Logread connected to 192.168.1.11:514 via tcp");
        assert_eq!(r.ts_ms, unix_ms(2024, 5, 27, 21, 26, 51));
        assert_eq!((r.host, r.program, r.pid), (Some("OpenWrt"), Some("logread"), Some(13023)));
        assert_eq!(r.msg, "logread[13023]: Logread connected to 192.168.1.11:514 via tcp");
    }

    #[test]
    fn kernel_forms_without_syslog_header() {
        let r = p("<4>[ 1771.485552] Free swap  = 0kB");
        assert_eq!(
            (r.facility, r.severity, r.program, r.msg),
            (Some("kern"), Some("warning"), Some("kernel"), "Free swap  = 0kB")
        );
        let r = p("[364050.837032] Out of memory: Killed process 15486 (dnsmasq)");
        assert_eq!((r.program, r.msg), (Some("kernel"), "Out of memory: Killed process 15486 (dnsmasq)"));
        let r = p("kernel: IPT_dsl-Rej IN=pppoe-dsl OUT=");
        assert_eq!((r.program, r.msg), (Some("kernel"), "IPT_dsl-Rej IN=pppoe-dsl OUT="));
        let r = p("REJECT(src wan)IN=br-wan OUT= MAC=33:33:00");
        assert_eq!((r.program, r.msg), (None, "REJECT(src wan)IN=br-wan OUT= MAC=33:33:00"));
    }

    #[test]
    fn logrus_lines() {
        let r = p(r#"time="03-08-2021 17:07:12" level=info msg="ipset 'crowdsec-blacklists' doesn't \"exist\", skip""#);
        assert_eq!(r.ts_ms, unix_ms(2021, 8, 3, 17, 7, 12));
        assert_eq!(r.severity, Some("info"));
        assert_eq!(r.msg, r#"ipset 'crowdsec-blacklists' doesn't \"exist\", skip"#);
    }

    #[test]
    fn new_year_puts_december_in_the_year_before() {
        let jan = Context::at(unix_ms(2026, 1, 2, 8, 0, 0).unwrap());
        let r = parse_line("Dec 31 23:59:58 gw tag: m", jan).unwrap();
        assert_eq!(r.ts_ms, unix_ms(2025, 12, 31, 23, 59, 58));
        let r = parse_line("Jan  2 07:59:00 gw tag: m", jan).unwrap();
        assert_eq!(r.ts_ms, unix_ms(2026, 1, 2, 7, 59, 0));
        // A few hours ahead (a router on local time east of UTC) stays in this year.
        let r = parse_line("Jan  2 20:00:00 gw tag: m", jan).unwrap();
        assert_eq!(r.ts_ms, unix_ms(2026, 1, 2, 20, 0, 0));
        // January read in December is this year's, never next year's.
        let dec = Context::at(unix_ms(2025, 12, 31, 23, 0, 0).unwrap());
        let r = parse_line("Jan  1 00:00:01 gw tag: m", dec).unwrap();
        assert_eq!(r.ts_ms, unix_ms(2025, 1, 1, 0, 0, 1));
        // The same through syslog_loose (a one-digit hour the fast path refuses).
        let r = parse_line("<13>Dec 31 9:00:00 gw tag: m", jan).unwrap();
        assert_eq!(r.ts_ms, unix_ms(2025, 12, 31, 9, 0, 0));
    }

    #[test]
    fn rejections_have_reasons() {
        assert_eq!(parse_line("   ", CTX), Err(ParseError::Empty));
        assert_eq!(parse_line("\r\n", CTX), Err(ParseError::Empty));
        assert_eq!(parse_line("ab\0cd", CTX), Err(ParseError::Binary(2)));
        assert_eq!(parse_line("<192>Dec  5 17:43:57 gw a: b", CTX), Err(ParseError::BadPriority(192)));
        assert_eq!(parse_line("Thu Dec  5 25:43:57 2024 user.info a: b", CTX), Err(ParseError::BadTimestamp));
        assert_eq!(parse_line("Dec 45 17:43:57 gw a: b", CTX), Err(ParseError::BadTimestamp));
        assert_eq!(ParseError::BadPriority(192).to_string(), "syslog priority <192> out of range 0-191");
    }

    #[test]
    fn garbage_is_a_message_not_a_panic() {
        let r = p("\u{1}\u{2} nonsense");
        assert_eq!(r.msg, "\u{1}\u{2} nonsense");
        // Found by mutating the samples: a multi-byte character where an ASCII one was expected.
        for s in [
            "<",
            "<1",
            "<1>",
            "<1>[",
            "[",
            "[1.",
            "Dec",
            "Thu Dec",
            "time=\"",
            "12:00:00]",
            "é",
            "<13>1 ",
            "Dec  5 17:43:57",
            "[Jul 5, 2026, 1:21:12 PM GMT+é1] daemon.info: a: b",
        ] {
            let _ = parse_line(s, CTX);
        }
        let r = p("Dec  5 17:43:57");
        assert_eq!((r.ts_ms.is_some(), r.msg), (true, ""));
    }
}
