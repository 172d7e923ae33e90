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
//! | `[pid] Mmm dd hh:mm:ss` | dropbear's own log on stderr (`dropbear -E`) | fast path |
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
mod kernel;
mod logread;
mod logrus;
mod luci;
mod names;
mod rfc3164;
mod rfc5424;
mod scan;
mod timestamp;

use kernel::*;
use logread::*;
use logrus::*;
use luci::*;
use names::*;
use rfc3164::*;
use rfc5424::*;
use scan::*;
pub(crate) use timestamp::rfc3339;

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
        b'[' => bracket_line(line, ctx)?,
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

/// `[ 12.345] msg` (dmesg), `[Jul 5, 2026, 1:21:12 PM GMT+2] fac.sev: tag: msg`
/// (LuCI) or `[1234] Dec 07 10:25:09 msg` (dropbear's own log on standard
/// error, `dropbear -E`: a process id, then a date without a year).
fn bracket_line(line: &str, ctx: Context) -> Result<Record<'_>, ParseError> {
    if uptime_len(line).is_some() {
        return Ok(Record { program: Some("kernel"), msg: line, ..Record::default() });
    }
    if let Some((ts, rest)) = luci_date(line) {
        if let Some(r) = prio_rest(rest) {
            return Ok(Record { ts_ms: Some(ts), ..r });
        }
    }
    let mut sc = Scan::at(line, 1);
    if let (Some(pid), true, true) = (sc.digits(1, 10), sc.eat(b']'), sc.eat(b' ')) {
        match bsd_header(sc.rest(), ctx) {
            Shape::Ok((ts, msg)) => {
                return Ok(Record {
                    ts_ms: Some(ts),
                    program: Some("dropbear"),
                    pid: Some(pid),
                    msg,
                    ..Record::default()
                })
            }
            Shape::Bad => return Err(ParseError::BadTimestamp),
            Shape::No => {}
        }
    }
    Ok(body(line))
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

#[cfg(test)]
mod tests {

    /// Inputs the `log_line` fuzz target found to panic (`scripts/fuzz.sh`).
    #[test]
    fn crafted_lines_found_by_fuzzing_parse_or_fail_without_panicking() {
        let ctx = Context::at(1_765_000_000_000);
        let found = ["[555555555555555555555555555555555555555536405\u{e}\0\0\0\0\0\0\0"];
        for line in found {
            if let Ok(r) = parse_line(line, ctx) {
                let _ = crate::classify::classify(&r);
            }
        }
        // A pid too large for a pid is not one.
        let r = parse_line("[99999999999] Dec  7 10:00:00 dropbear: x", ctx);
        assert!(r.map_or(true, |r| r.pid.is_none()));
    }

    use super::*;

    const CTX: Context = Context { year: 2024, now_ms: None };

    fn p(line: &str) -> Record<'_> {
        parse_line(line, CTX).unwrap()
    }

    #[test]
    fn dropbear_logging_to_stderr_is_read_as_dropbear() {
        let r = p("[22949] Dec 07 10:25:09 Bad password attempt for 'root' from 10.77.0.2:44802");
        assert_eq!(r.ts_ms, Some(1_733_567_109_000));
        assert_eq!((r.program, r.pid), (Some("dropbear"), Some(22949)));
        assert_eq!(r.msg, "Bad password attempt for 'root' from 10.77.0.2:44802");
        // Other bracketed lines are what they were.
        assert_eq!(p("[22949] something").program, None);
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
