//! Evidence for findings: the log lines a finding quotes (cut to a
//! fixed length, kept in a shared fixed pool per agent), and building the
//! finding itself.

use super::*;

/// Truncates `line` to at most [`MAX_EVIDENCE_LEN`] bytes at a character boundary.
#[inline]
pub fn evidence(line: &str) -> String {
    let (head, dots) = cut(line);
    let mut s = String::with_capacity(head.len() + dots.len());
    s.push_str(head);
    s.push_str(dots);
    s
}

/// `line` as evidence: its head and `...` when the head had to be cut to
/// fit [`MAX_EVIDENCE_LEN`] bytes.
#[inline]
pub(crate) fn cut(line: &str) -> (&str, &'static str) {
    if line.len() <= MAX_EVIDENCE_LEN {
        return (line, "");
    }
    let mut end = MAX_EVIDENCE_LEN - 3;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    (&line[..end], "...")
}

/// A new finding (`seq` 0, `update` false) from `agent` of `kind`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn finding(
    agent: &str,
    kind: &Kind,
    subject: Subject,
    count: u32,
    first_ms: u64,
    last_ms: u64,
    summary: String,
    evidence: Vec<String>,
) -> Finding {
    Finding {
        seq: 0,
        agent: agent.into(),
        kind: kind.name.into(),
        severity: kind.severity,
        subject,
        count,
        first_ms,
        last_ms: last_ms.max(first_ms),
        summary,
        evidence,
        stage: Stage::New,
    }
}

/// The subject in words: `from 192.0.2.1, user root, on wlan0`.
#[inline]
pub fn describe(s: &Subject) -> String {
    let mut out = String::new();
    describe_into(s, &mut out);
    out.trim_start().to_owned()
}

/// [`describe`] appended to `out`, with a space before it when not empty.
pub fn describe_into(s: &Subject, out: &mut String) {
    use std::fmt::Write;
    let mut sep = " ";
    if let Some(ip) = s.src_ip {
        let _ = write!(out, "{sep}from {ip}");
        sep = ", ";
    }
    let texts =
        [("from ", &s.host), ("station ", &s.mac), ("user ", &s.user), ("on ", &s.iface), ("service ", &s.service)];
    for (label, value) in texts {
        if let Some(v) = value {
            out.push_str(sep);
            out.push_str(label);
            out.push_str(v);
            sep = ", ";
        }
    }
}

/// A reference to a line kept in an [`EvidencePool`]; stale once the slot is reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvRef {
    /// The slot.
    slot: u16,
    /// The slot's generation when kept; 0 for none.
    gen: u32,
}

/// A ring of inline line buffers for evidence, so that keeping the first
/// lines of every subject's run costs a copy, not an allocation.
///
/// Under a flood of new subjects the ring turns over quickly and an older
/// subject's lines may be gone when it fires: its finding then carries only
/// the lines still here plus the line that fired it.
pub struct EvidencePool<const N: usize> {
    /// The kept lines, truncated like [`evidence`]; raw bytes so that a copy
    /// is one `memcpy` (heapless's `push_str` copies byte by byte).
    slots: [[u8; MAX_EVIDENCE_LEN]; N],
    /// Bytes used in each slot.
    lens: [u8; N],
    /// Generation of each slot's line.
    gens: [u32; N],
    /// Next slot to reuse.
    next: usize,
    /// Last generation handed out.
    gen: u32,
}

impl<const N: usize> Default for EvidencePool<N> {
    #[inline]
    fn default() -> Self {
        EvidencePool { slots: [[0; MAX_EVIDENCE_LEN]; N], lens: [0; N], gens: [0; N], next: 0, gen: 0 }
    }
}

impl<const N: usize> EvidencePool<N> {
    /// Copies `line` (truncated) into the oldest slot.
    #[inline]
    pub fn keep(&mut self, line: &str) -> EvRef {
        let slot = self.next;
        let (Some(buf), Some(len), Some(gen)) =
            (self.slots.get_mut(slot), self.lens.get_mut(slot), self.gens.get_mut(slot))
        else {
            return EvRef::default();
        };
        self.next = (slot + 1) % N;
        self.gen = self.gen.wrapping_add(1).max(1);
        *gen = self.gen;
        let (head, dots) = cut(line);
        buf[..head.len()].copy_from_slice(head.as_bytes());
        buf[head.len()..head.len() + dots.len()].copy_from_slice(dots.as_bytes());
        *len = (head.len() + dots.len()) as u8;
        EvRef { slot: slot as u16, gen: self.gen }
    }

    /// The line behind `r`, if its slot was not reused since.
    #[inline]
    pub fn get(&self, r: EvRef) -> Option<&str> {
        let i = usize::from(r.slot);
        if r.gen == 0 || self.gens.get(i) != Some(&r.gen) {
            return None;
        }
        let len = usize::from(*self.lens.get(i)?);
        core::str::from_utf8(self.slots.get(i)?.get(..len)?).ok()
    }
}

/// The first lines of a run: [`MAX_EVIDENCE`] − 1 of them, the last
/// evidence line being the one that fires the finding.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvList {
    /// Kept lines, unused ones default.
    refs: [EvRef; MAX_EVIDENCE - 1],
    /// Lines offered since the last clear (saturating).
    seen: u8,
}

impl EvList {
    /// Offers `line`; kept if there is room.
    #[inline]
    pub fn note<const N: usize>(&mut self, pool: &mut EvidencePool<N>, line: &str) {
        if let Some(r) = self.refs.get_mut(usize::from(self.seen)) {
            *r = pool.keep(line);
        }
        self.seen = self.seen.saturating_add(1);
    }

    /// Forgets the kept lines.
    #[inline]
    pub fn clear(&mut self) {
        *self = EvList::default();
    }

    /// The kept lines still in `pool`.
    #[inline]
    fn kept<const N: usize>(&self, pool: &EvidencePool<N>) -> Vec<String> {
        self.refs.iter().filter_map(|r| pool.get(*r)).map(str::to_owned).collect()
    }

    /// The evidence of a finding fired by `current`, the line offered last:
    /// the kept lines, then `current` unless it is one of them.
    #[inline]
    pub fn lines<const N: usize>(&self, pool: &EvidencePool<N>, current: &str) -> Vec<String> {
        let mut v = self.kept(pool);
        if usize::from(self.seen) > self.refs.len() || v.is_empty() {
            v.push(evidence(current));
        }
        v.truncate(MAX_EVIDENCE);
        v
    }

    /// The kept lines, then `other`, a line that was not offered.
    #[inline]
    pub fn lines_then<const N: usize>(&self, pool: &EvidencePool<N>, other: &str) -> Vec<String> {
        let mut v = self.kept(pool);
        v.truncate(MAX_EVIDENCE - 1);
        v.push(evidence(other));
        v
    }
}
