//! RFC 3339 timestamps (`2024-12-05T17:43:57.5+01:00`), as rsyslog and
//! RFC 5424 write them.

use super::*;

/// `YYYY-MM-DDThh:mm:ss[.frac][Z|±hh:mm]` → unix ms and the rest after one space.
#[inline]
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
