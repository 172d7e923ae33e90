//! A byte cursor for the fast paths: digits, fixed-width fields, words.

use super::*;

/// A cursor over the ASCII header of a line. It only ever steps over ASCII
/// bytes it has checked, so every position is a char boundary.
pub(super) struct Scan<'a> {
    pub(super) s: &'a str,
    pub(super) i: usize,
}

impl<'a> Scan<'a> {
    #[inline]
    pub(super) fn at(s: &'a str, i: usize) -> Self {
        Scan { s, i }
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    #[inline]
    pub(super) fn byte_at(&self, off: usize) -> Option<u8> {
        self.s.as_bytes().get(self.i + off).copied()
    }

    #[inline]
    pub(super) fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    #[inline]
    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `min` to `max` ASCII digits; `None` (nothing taken) if fewer, or if
    /// their value does not fit a `u32` (a ten-digit "pid" in a crafted
    /// line: found by the `log_line` fuzz target).
    #[inline]
    pub(super) fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let b = self.s.as_bytes();
        let mut n = 0u32;
        let mut k = 0;
        while k < max {
            match b.get(self.i + k) {
                Some(&c) if c.is_ascii_digit() => n = n.checked_mul(10)?.checked_add(u32::from(c - b'0'))?,
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

    #[inline]
    pub(super) fn month(&mut self) -> Option<u32> {
        let m = month_number_bytes(self.s.as_bytes().get(self.i..self.i + 3)?)?;
        self.i += 3;
        Some(m)
    }

    /// `hh:mm:ss`, read at fixed offsets (every line has one).
    #[inline]
    pub(super) fn clock(&mut self) -> Option<(u32, u32, u32)> {
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
    #[inline]
    pub(super) fn epoch_ms(&mut self) -> Option<u64> {
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

    #[inline]
    pub(super) fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }
}

/// 1 to 9 ASCII digits (no sign, no overflow possible).
#[inline]
pub(super) fn parse_u32(s: &str) -> Option<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_past_u32_are_not_a_number_and_take_nothing() {
        let mut sc = Scan::at("4294967295]", 0);
        assert_eq!(sc.digits(1, 10), Some(u32::MAX));
        let mut sc = Scan::at("4294967296]", 0);
        assert_eq!(sc.digits(1, 10), None);
        assert!(sc.eat(b'4'), "nothing was taken");
    }
}
