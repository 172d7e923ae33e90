//! Log line → [`Record`]: timestamp, host, facility, severity, program, pid
//! and message, borrowed from the line (no allocation on the fast path).
//!
//! OpenWRT's default source is `logread`, whose format
//! (`Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: ...`) the
//! reference parser `syslog_loose` does not understand, so it has its own
//! fast path here; the same path takes LuCI exports that lack the date
//! (`authpriv.warn dropbear[8843]: ...`). Everything else (RFC 3164 with or
//! without `<PRI>` and hostname, RFC 5424) goes to `syslog_loose`.
//!
//! Timestamps without a zone are taken as UTC: windows and rates only need
//! differences, and the router's local zone is not in the line.

/// One parsed log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unix milliseconds, when the line has a usable timestamp.
    pub ts_ms: Option<u64>,
    pub host: Option<&'a str>,
    pub facility: Option<&'a str>,
    pub severity: Option<&'a str>,
    /// The syslog tag without the pid: `dropbear`, `hostapd`, `kernel`.
    pub program: Option<&'a str>,
    pub pid: Option<u32>,
    /// The message after `tag[pid]: `.
    pub msg: &'a str,
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
}

/// Year to assume for formats without one (RFC 3164), passed in so that
/// parsing stays pure.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub year: i32,
}

/// Parses one line.
pub fn parse_line<'a>(line: &'a str, ctx: Context) -> Result<Record<'a>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(r) = logread(line) {
        return Ok(r);
    }
    Ok(fallback(line, ctx))
}

/// `[Www Mmm dd HH:MM:SS YYYY ]facility.severity tag[pid]: msg`
fn logread(line: &str) -> Option<Record<'_>> {
    let mut rest = line;
    let mut ts_ms = None;
    if let Some((ts, after)) = logread_date(line) {
        ts_ms = Some(ts);
        rest = after;
    }
    let (prio, after) = rest.split_once(' ')?;
    let (facility, severity) = prio.split_once('.')?;
    if !is_facility(facility) || !is_severity(severity) {
        return None;
    }
    let (program, pid, msg) = tag_and_msg(after);
    Some(Record { ts_ms, host: None, facility: Some(facility), severity: Some(severity), program, pid, msg })
}

/// Parses `Www Mmm dd HH:MM:SS YYYY ` (day space-padded or not).
fn logread_date(line: &str) -> Option<(u64, &str)> {
    let b = line.as_bytes();
    if b.len() < 24 || b[3] != b' ' || !b[..3].iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let month = month_number(&line[4..7])?;
    let mut i = 8;
    if b[7] != b' ' {
        return None;
    }
    if b[i] == b' ' {
        i += 1;
    }
    let day_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let day: u32 = line[day_start..i].parse().ok()?;
    let t = line.get(i..i + 15)?;
    let tb = t.as_bytes();
    if tb[0] != b' ' || tb[3] != b':' || tb[6] != b':' || tb[9] != b' ' || tb.get(14).copied() != Some(b' ') {
        return None;
    }
    let h: u32 = t[1..3].parse().ok()?;
    let m: u32 = t[4..6].parse().ok()?;
    let s: u32 = t[7..9].parse().ok()?;
    let year: i32 = t[10..14].parse().ok()?;
    let ts = unix_ms(year, month, day, h, m, s)?;
    Some((ts, &line[i + 15..]))
}

/// Splits `tag[pid]: msg` or `tag: msg`; a line without a tag is all message.
fn tag_and_msg(s: &str) -> (Option<&str>, Option<u32>, &str) {
    let Some(colon) = s.find(": ").or_else(|| s.strip_suffix(':').map(|t| t.len())) else {
        return (None, None, s);
    };
    let tag = &s[..colon];
    let msg = s.get(colon + 2..).unwrap_or("");
    if tag.is_empty() || tag.contains(' ') {
        return (None, None, s);
    }
    match tag.split_once('[') {
        Some((prog, pid)) => {
            let pid = pid.strip_suffix(']').and_then(|p| p.parse().ok());
            (Some(prog).filter(|p| !p.is_empty()), pid, msg)
        }
        None => (Some(tag), None, msg),
    }
}

fn fallback(line: &str, ctx: Context) -> Record<'_> {
    use syslog_loose::{parse_message_with_year_exact, ProcId, Variant};
    let year = ctx.year;
    let Ok(m) = parse_message_with_year_exact(line, |_| year, Variant::Either) else {
        return Record { msg: line, ..Record::default() };
    };
    let pid = match &m.procid {
        Some(ProcId::PID(p)) => u32::try_from(*p).ok(),
        _ => None,
    };
    Record {
        ts_ms: m.timestamp.and_then(|t| u64::try_from(t.timestamp_millis()).ok()),
        host: m.hostname,
        facility: m.facility.map(|f| f.as_str()),
        severity: m.severity.map(|s| s.as_str()),
        program: m.appname,
        pid,
        msg: m.msg,
    }
}

fn is_facility(s: &str) -> bool {
    matches!(
        s,
        "kern"
            | "user"
            | "mail"
            | "daemon"
            | "auth"
            | "syslog"
            | "lpr"
            | "news"
            | "uucp"
            | "cron"
            | "authpriv"
            | "ftp"
            | "ntp"
            | "security"
            | "console"
            | "local0"
            | "local1"
            | "local2"
            | "local3"
            | "local4"
            | "local5"
            | "local6"
            | "local7"
    )
}

fn is_severity(s: &str) -> bool {
    matches!(s, "emerg" | "alert" | "crit" | "err" | "warn" | "warning" | "notice" | "info" | "debug")
}

fn month_number(m: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    MONTHS.iter().position(|&x| x == m).map(|i| i as u32 + 1)
}

/// Civil date and time (UTC) to unix milliseconds; `None` when out of range.
pub fn unix_ms(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// The (UTC) calendar year of a unix-milliseconds time.
pub fn year_of(ms: u64) -> i32 {
    // Howard Hinnant's civil_from_days.
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context = Context { year: 2024 };

    #[test]
    fn logread_line_with_padded_day() {
        let r = parse_line(
            "Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Login attempt for nonexistent user",
            CTX,
        )
        .unwrap();
        assert_eq!(r.ts_ms, Some(1_733_420_637_000));
        assert_eq!(r.facility, Some("authpriv"));
        assert_eq!(r.severity, Some("warn"));
        assert_eq!(r.program, Some("dropbear"));
        assert_eq!(r.pid, Some(12388));
        assert_eq!(r.msg, "Login attempt for nonexistent user");
    }

    #[test]
    fn logread_line_with_two_digit_day_and_kernel_tag() {
        let r = parse_line("Mon Sep 15 15:57:10 2025 kern.info kernel: [ 12.3] eth0: link up", CTX).unwrap();
        assert_eq!(r.program, Some("kernel"));
        assert_eq!(r.pid, None);
        assert_eq!(r.msg, "[ 12.3] eth0: link up");
    }

    #[test]
    fn luci_export_without_date() {
        let r =
            parse_line("authpriv.warn dropbear[8843]: Bad password attempt for 'root' from 192.168.9.204:63779", CTX)
                .unwrap();
        assert_eq!(r.ts_ms, None);
        assert_eq!(r.program, Some("dropbear"));
        assert_eq!(r.pid, Some(8843));
    }

    #[test]
    fn rfc3164_with_hostname_goes_through_syslog_loose() {
        let r = parse_line(
            "Feb  5 03:13:39 openwrt user.warn dropbear[10221]: bad password attempt for 'root' from 192.168.1.1:51570",
            CTX,
        )
        .unwrap();
        assert_eq!(r.host, Some("openwrt"));
        assert!(r.ts_ms.is_some());
        assert!(r.msg.contains("bad password attempt"), "{r:?}");
    }

    #[test]
    fn rfc3164_with_pri() {
        let r = parse_line("<38>Dec  5 17:43:57 gw sshd[99]: Failed password for root from 10.0.0.1 port 22 ssh2", CTX)
            .unwrap();
        assert_eq!(r.program, Some("sshd"));
        assert_eq!(r.pid, Some(99));
        assert_eq!(r.facility, Some("auth"));
        assert!(r.msg.starts_with("Failed password"));
    }

    #[test]
    fn blank_lines_are_rejected_and_garbage_is_kept_as_message() {
        assert_eq!(parse_line("   ", CTX), Err(ParseError::Empty));
        let r = parse_line("\u{1}\u{2} nonsense", CTX).unwrap();
        assert!(r.msg.contains("nonsense"));
    }

    #[test]
    fn years_of_times() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(1_733_420_637_000), 2024);
        assert_eq!(year_of(unix_ms(2025, 12, 31, 23, 59, 59).unwrap()), 2025);
        assert_eq!(year_of(unix_ms(2026, 1, 1, 0, 0, 0).unwrap()), 2026);
    }

    #[test]
    fn civil_dates_convert() {
        assert_eq!(unix_ms(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_ms(2000, 3, 1, 0, 0, 0), Some(951_868_800_000));
        assert_eq!(unix_ms(2024, 13, 1, 0, 0, 0), None);
    }
}
