//! Bounded tables: the fixed-capacity map every agent keeps its subjects
//! in (second-chance eviction, counted), the key hashing, and fixed-size
//! strings.

use super::*;

/// The splitmix64 finaliser: spreads any input over all 64 bits, so that the
/// low bits index bitmaps evenly even for sequential ports or addresses.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-bit hash of an address.
#[inline]
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => mix(u64::from(u32::from(a))),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            mix(v as u64 ^ mix((v >> 64) as u64))
        }
    }
}

/// A 64-bit hash of a name (user, interface, process), exactly as written.
#[inline]
pub fn hash_str(s: &str) -> u64 {
    fnv(s.bytes())
}

/// A 64-bit hash of a MAC address, ASCII case folded: hostapd and dnsmasq
/// log them in lower case, other tools in upper.
#[inline]
pub fn hash_mac(s: &str) -> u64 {
    fnv(s.bytes().map(|b| b.to_ascii_lowercase()))
}

/// FNV-1a over `bytes`, then [`mix`].
#[inline]
pub(crate) fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// `s` cut to at most `N` bytes at a character boundary: names are kept
/// inline so that tracking one allocates nothing.
#[inline]
pub fn short<const N: usize>(s: &str) -> HString<N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = HString::new();
    let _ = out.push_str(&s[..end]);
    out
}

/// The text of an inline name, or `None` when it is empty.
#[inline]
pub fn opt<const N: usize>(s: &HString<N>) -> Option<String> {
    (!s.is_empty()).then(|| s.as_str().to_owned())
}

/// One entry of a [`BoundedMap`].
#[derive(Debug)]
pub(crate) struct Slot<K, V> {
    /// Its key, to unlink it from the index when the slot is reused.
    key: K,
    /// The entry.
    value: V,
    /// Hit since the clock hand last passed.
    referenced: bool,
}

/// A map of fixed capacity `N` that evicts by the clock (second-chance)
/// algorithm when full. `M`, the size of its key index, must be a power of
/// two of at least `2 N`: heapless's Robin Hood index slows down badly near
/// full load (measured: 2.3 times slower per insertion into a full table),
/// so it is kept at most half full.
///
/// Entries live in `N` fixed slots. To make room, the hand walks the slots:
/// an entry that is stale (the caller's predicate: its windows are over) is
/// replaced uncounted; one hit since the hand last passed loses its mark and
/// is skipped; otherwise it is replaced and counted as evicted. Each mark is
/// cleared once per hit, so an insertion costs O(1) amortised, and a flood
/// of one-off keys evicts one-off keys, not the busy ones. A slot is reused
/// in place: nothing moves, and entries are never removed otherwise.
pub struct BoundedMap<K, V, const N: usize, const M: usize> {
    /// Key → slot.
    index: FnvIndexMap<K, u16, M>,
    /// The entries; grows to `N`, then slots are reused.
    slots: heapless::Vec<Slot<K, V>, N>,
    /// The clock hand: the next slot to consider.
    hand: usize,
    /// Live entries evicted.
    evicted: u64,
}

impl<K: Eq + Hash + Clone, V, const N: usize, const M: usize> Default for BoundedMap<K, V, N, M> {
    #[inline]
    fn default() -> Self {
        let () = Self::SIZES_OK;
        BoundedMap { index: FnvIndexMap::new(), slots: heapless::Vec::new(), hand: 0, evicted: 0 }
    }
}

impl<K: Eq + Hash + Clone, V, const N: usize, const M: usize> BoundedMap<K, V, N, M> {
    /// Checked when a map is built (at compile time).
    const SIZES_OK: () = assert!(N > 0 && N <= u16::MAX as usize && M >= 2 * N && M.is_power_of_two());

    /// The entry for `key`, marked as hit.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = usize::from(*self.index.get(key)?);
        let s = self.slots.get_mut(i)?;
        s.referenced = true;
        Some(&mut s.value)
    }

    /// The entry for `key` without marking it.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = usize::from(*self.index.get(key)?);
        self.slots.get(i).map(|s| &s.value)
    }

    /// The entry for `key`, marked as hit, or a new one from `make`, in a
    /// slot freed by the clock when the map is full. `stale` tells entries
    /// that may go uncounted. `None` only if the index is inconsistent,
    /// which the construction rules out.
    #[inline]
    pub fn entry(&mut self, key: K, stale: impl Fn(&V) -> bool, make: impl FnOnce() -> V) -> Option<&mut V> {
        if let Some(&i) = self.index.get(&key) {
            let s = self.slots.get_mut(usize::from(i))?;
            s.referenced = true;
            return Some(&mut s.value);
        }
        let fresh = Slot { key: key.clone(), value: make(), referenced: false };
        let i = if self.slots.len() < N {
            self.slots.push(fresh).ok()?;
            self.slots.len() - 1
        } else {
            let i = self.victim(&stale);
            let old = self.slots.get_mut(i)?;
            let old_key = core::mem::replace(old, fresh).key;
            self.index.remove(&old_key);
            i
        };
        self.index.insert(key, i as u16).ok()?;
        self.slots.get_mut(i).map(|s| &mut s.value)
    }

    /// The slot to reuse, by the clock algorithm; counts a live eviction.
    #[inline]
    fn victim(&mut self, stale: &impl Fn(&V) -> bool) -> usize {
        // Two turns at most: the first clears every mark.
        for _ in 0..2 * N {
            let i = self.hand;
            self.hand = (self.hand + 1) % N;
            let Some(s) = self.slots.get_mut(i) else { continue };
            if stale(&s.value) {
                return i;
            }
            if !s.referenced {
                self.evicted += 1;
                return i;
            }
            s.referenced = false;
        }
        self.evicted += 1;
        self.hand
    }

    /// Entries held.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no entry is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Live entries evicted since the map was built.
    #[inline]
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}
