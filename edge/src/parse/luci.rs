//! LuCI log-viewer exports: `[Jul 5, 2026, 1:21:12 PM GMT+2]`, whole or
//! with the date cut.

use super::*;

/// `[Jul 5, 2026, 1:21:12 PM GMT+2] ` (LuCI's log viewer, `en-US` locale;
/// 24-hour clocks and zones `GMT`, `UTC`, `GMT±h[:mm]` too; an unknown zone
/// name is read as UTC) → timestamp and the rest after `] `.
#[inline]
pub(super) fn luci_date(line: &str) -> Option<(u64, &str)> {
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
#[inline]
pub(super) fn zone_offset_ms(zone: &str) -> i64 {
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
