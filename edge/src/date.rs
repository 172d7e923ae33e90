//! Calendar arithmetic without a time library: civil dates (UTC) to unix
//! milliseconds and back. The parser turns every log timestamp into unix
//! milliseconds through here; `explain` and the demo print dates with it.
//! The edge links no date crate (flash budget).

/// Civil date and time (UTC) to unix milliseconds; `None` when out of
/// range or before 1970. Day 31 of a short month rolls into the next, as
/// `mktime` does.
pub fn unix_ms(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<u64> {
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    let secs = days_from_civil(year as u32, month, day) * 86_400 + u64::from(h * 3600 + m * 60 + s);
    Some(secs * 1000)
}

/// Days since 1970-01-01 for a year from 1970 (unsigned arithmetic: every
/// line with a timestamp comes through here).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    const BEFORE_MONTH: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    // Leap days in the years before `y` since year 0.
    let leaps = |y: u32| y / 4 - y / 100 + y / 400;
    let is_leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_before_year = u64::from(year - 1970) * 365 + u64::from(leaps(year - 1) - leaps(1969));
    let days_in_year = BEFORE_MONTH[(month - 1) as usize] + u32::from(is_leap && month > 2) + day - 1;
    days_before_year + u64::from(days_in_year)
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((yoe + era * 400 + i64::from(month <= 2)) as i32, month, day)
}

/// The (UTC) calendar year of a unix-milliseconds time.
pub fn year_of(ms: u64) -> i32 {
    civil_from_days((ms / 86_400_000) as i64).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_of_times() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(1_733_420_637_000), 2024);
        assert_eq!(year_of(unix_ms(2025, 12, 31, 23, 59, 59).unwrap()), 2025);
        assert_eq!(year_of(unix_ms(2026, 1, 1, 0, 0, 0).unwrap()), 2026);
        assert_eq!(civil_from_days(unix_ms(2024, 2, 29, 0, 0, 0).unwrap() as i64 / 86_400_000), (2024, 2, 29));
    }

    #[test]
    fn civil_dates_convert() {
        assert_eq!(unix_ms(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_ms(2000, 3, 1, 0, 0, 0), Some(951_868_800_000));
        assert_eq!(unix_ms(2024, 13, 1, 0, 0, 0), None);
        assert_eq!(unix_ms(1969, 12, 31, 0, 0, 0), None);
        assert_eq!(unix_ms(2024, 2, 29, 12, 0, 0), Some(1_709_208_000_000));
        assert_eq!(unix_ms(2100, 3, 1, 0, 0, 0), Some(4_107_542_400_000));
        // Every day from 1970 to 2400 agrees with the inverse.
        for d in 0..157_000i64 {
            let (y, m, day) = civil_from_days(d);
            assert_eq!(unix_ms(y, m, day, 0, 0, 0), Some(d as u64 * 86_400_000), "{y}-{m}-{day}");
        }
    }
}
