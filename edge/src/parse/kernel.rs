//! Kernel lines: the `[ 12.345678]` uptime of the ring buffer and `dmesg`.

/// Length of a leading `[ 12.345678]` kernel uptime, with one following space.
#[inline]
pub(super) fn uptime_len(s: &str) -> Option<usize> {
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
#[inline]
pub(super) fn strip_uptime(msg: &str) -> &str {
    match uptime_len(msg) {
        Some(n) => &msg[n..],
        None => msg,
    }
}
