//! RFC 3164 (BSD syslog): the `Mmm dd hh:mm:ss` header, host and tag,
//! `fac.sev` priorities, and the split of a datagram holding several frames.

use super::*;

/// `Mmm dd [yyyy ]hh:mm:ss [[sec.ms] ]` → timestamp and the rest of the line.
#[inline]
pub(super) fn bsd_header(s: &str, ctx: Context) -> Shape<(u64, &str)> {
    let mut sc = Scan::at(s, 0);
    let Some(month) = sc.month() else { return Shape::No };
    if !sc.eat(b' ') {
        return Shape::No;
    }
    sc.eat(b' ');
    let (Some(day), true) = (sc.digits(1, 2), sc.eat(b' ')) else { return Shape::No };
    // syslog-ng and some routers put a year before the clock: "Aug  4 2020 16:49:07".
    let year = if sc.byte_at(4) == Some(b' ') {
        let (Some(y), true) = (sc.digits(4, 4), sc.eat(b' ')) else { return Shape::No };
        Some(y as i32)
    } else {
        None
    };
    let Some((h, m, sec)) = sc.clock() else { return Shape::No };
    if !sc.eat(b' ') && !sc.at_end() {
        return Shape::No;
    }
    let epoch = sc.epoch_ms();
    let ts = match (epoch, year) {
        (Some(e), _) => Some(e),
        (None, Some(y)) => unix_ms(y, month, day, h, m, sec),
        (None, None) => ctx.ts_without_year(month, day, h, m, sec),
    };
    match ts {
        Some(ts) => Shape::Ok((ts, sc.rest())),
        None => Shape::Bad,
    }
}

/// After an RFC 3164 timestamp: `[host ][fac.sev ]tag[pid]: msg`.
///
/// Without `<PRI>` or `fac.sev` the host is optional and looks like a tag
/// without its colon; so the first word is the tag when it ends in `:`
/// (`dnsmasq[19690]: ...`, `hostapd: ...`), a priority when it is
/// `fac.sev`, and otherwise the host. A host never ends in `:`.
#[inline]
pub(super) fn host_tag(rest: &str) -> Record<'_> {
    let (first, after) = split_word(rest);
    if first.ends_with(':') {
        return tagged(rest);
    }
    if let Some(r) = prio_rest(rest) {
        return r;
    }
    let host = Some(first).filter(|h| !h.is_empty() && *h != "-");
    match prio_rest(after) {
        Some(r) => Record { host, ..r },
        None => Record { host, ..tagged(after) },
    }
}

/// `fac.sev[:] tag[pid]: msg` (`logread` after its date; the `:` is LuCI's).
#[inline]
pub(super) fn prio_rest(s: &str) -> Option<Record<'_>> {
    // One pass over the first word, giving up at the first byte no
    // `fac.sev` has: most words tried here (hosts, tags) fail at once.
    let b = s.as_bytes();
    let mut dot = None;
    let mut end = 0;
    while end < b.len() {
        match b[end] {
            b'a'..=b'z' | b'0'..=b'9' => {}
            b'.' if dot.is_none() => dot = Some(end),
            b':' if b.get(end + 1).is_none_or(|&c| c == b' ') => break,
            b' ' => break,
            _ => return None,
        }
        end += 1;
    }
    let dot = dot?;
    let facility = facility_name(&s[..dot])?;
    let severity = severity_name(&s[dot + 1..end])?;
    let rest = s.get(end..).unwrap_or("");
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (program, pid, msg) = tag_and_msg(rest);
    Some(Record { facility: Some(facility), severity: Some(severity), program, pid, msg, ..Record::default() })
}

/// Splits `tag[pid]: msg` or `tag: msg`. The tag is the first word and ends
/// in `:`; a first word without one means the line has no tag. An empty tag
/// (`: luci: ...`, LuCI's own lines since 2021) gives no program.
#[inline]
pub(super) fn tag_and_msg(s: &str) -> (Option<&str>, Option<u32>, &str) {
    let (word, rest) = split_word(s);
    let Some(tag) = word.strip_suffix(':') else { return (None, None, s) };
    if tag.is_empty() {
        return (None, None, rest);
    }
    if let Some(inner) = tag.strip_suffix(']') {
        if let Some(open) = inner.bytes().rposition(|c| c == b'[') {
            if let Some(pid) = parse_u32(&inner[open + 1..]) {
                return (Some(&tag[..open]).filter(|t| !t.is_empty()), Some(pid), rest);
            }
        }
    }
    // `adblock-[3.4.3]`: brackets that hold no pid are part of the name.
    (Some(tag), None, rest)
}

/// Splits at the first space: (word, the rest after the space).
#[inline]
pub(super) fn split_word(s: &str) -> (&str, &str) {
    match s.as_bytes().iter().position(|&c| c == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// Frames sent over UDP without a separator and printed as one line by the
/// receiver (`...deactivated<6>May  2 12:15:20 OpenWrt kernel: ...`): the
/// message of the first ends where the next `<PRI>Mmm ` begins. The UDP
/// source splits datagrams, so this only matters for pasted captures.
#[inline]
pub(super) fn cut_next_frame(msg: &str) -> &str {
    let b = msg.as_bytes();
    if !has_byte(b, b'<') {
        return msg;
    }
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b'<') {
        let i = from + off;
        let mut j = i + 1;
        while j < b.len() && j <= i + 3 && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > i + 1
            && b.get(j) == Some(&b'>')
            && b.get(j + 1..j + 4).is_some_and(|m| month_number_bytes(m).is_some())
            && b.get(j + 4) == Some(&b' ')
        {
            return &msg[..i];
        }
        from = i + 1;
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_facility_is_read_and_hosts_and_tags_are_not() {
        let facilities = [
            "kern", "user", "mail", "daemon", "auth", "security", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
            "ftp", "ntp", "audit", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
        ];
        for f in facilities {
            assert!(facility_name(f).is_some(), "{f} is a facility");
            let line = format!("{f}.info dropbear[1]: x");
            let r = prio_rest(&line).unwrap_or_else(|| panic!("{f}.info"));
            assert_eq!((r.program, r.pid, r.msg), (Some("dropbear"), Some(1), "x"));
        }
        for word in ["OpenWrt hostapd: x", "hostapd: x", "dnsmasq-dhcp[1]: x", "dropbear[2]: x", "daemonx.info x"] {
            assert!(prio_rest(word).is_none(), "{word}");
        }
    }
}
