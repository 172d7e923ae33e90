//! logrus lines (`time="..." level=... msg="..."`), as the crowdsec
//! bouncer writes its own log file.

use super::*;

/// `time="03-08-2021 17:07:12" level=info msg="..."`: logrus's text format,
/// as the crowdsec firewall bouncer writes its own log file. Its time layout
/// is Go's `02-01-2006 15:04:05` (day first); logrus's default is RFC 3339.
#[inline]
pub(super) fn logrus(line: &str) -> Record<'_> {
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
#[inline]
pub(super) fn day_first_time(s: &str) -> Option<u64> {
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
#[inline]
pub(super) fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)?;
    Some(split_word(&s[i + key.len()..]).0)
}

/// `"quoted text"` (up to the closing quote not preceded by `\`) or a bare word.
#[inline]
pub(super) fn quoted_or_word(s: &str) -> &str {
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

#[inline]
pub(super) fn logrus_level(l: &str) -> Option<&'static str> {
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
