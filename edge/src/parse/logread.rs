//! OpenWrt's `logread` format: `Www Mmm dd hh:mm:ss yyyy fac.sev tag[pid]: msg`,
//! also with `-t`'s `[sec.ms]`, and the same without its date.

use super::*;

/// `Www Mmm dd hh:mm:ss yyyy [sec.ms] fac.sev tag[pid]: msg` (ctime's day is
/// space-padded; an unpadded one is accepted too).
#[inline]
pub(super) fn logread(line: &str) -> Shape<Record<'_>> {
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
