//! RFC 5424 and the odd RFC 3164 shapes the fast paths refuse, through
//! `syslog_loose`.

use super::*;

/// RFC 5424 through `syslog_loose`; on failure the text after `<PRI>` is the message.
#[inline]
pub(super) fn rfc5424<'a>(
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
#[inline]
pub(super) fn loose<'a>(
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
