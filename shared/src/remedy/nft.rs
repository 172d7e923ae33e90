//! The nftables side of blocking: the scripts `nft -f -` reads.
//!
//! Blocks live in two sets of the `inet fw4` table (`opmas_block4`,
//! `opmas_block6`) used by one chain of our own (`opmas_drop`, hooked at
//! prerouting before connection tracking, so forwarded and local traffic
//! alike are dropped, established connections too).
//!
//! Each script is one transaction (nft applies all of it or none) that
//! first declares what blocking needs in the `inet fw4` table (declaring
//! what exists changes nothing; the table itself is created if fw4 is not
//! running), then puts the chain's two rules back (fw4's reload flushes
//! them), then changes elements. An element is deleted by adding it first
//! and deleting it in the same transaction, so a delete never fails because
//! fw4 restarted and the set is empty. Every value in a script is an
//! [`IpNet`] or a number printed by Rust; nothing else reaches nft.

use std::fmt::Write;

use crate::net::IpNet;

/// The table fw4 owns and rebuilds.
pub const TABLE: &str = "inet fw4";
pub const SET4: &str = "opmas_block4";
pub const SET6: &str = "opmas_block6";
/// Our chain: at prerouting with raw priority, before connection tracking,
/// so blocked sources lose established connections too.
pub const CHAIN: &str = "opmas_drop";

fn set_of(net: &IpNet) -> &'static str {
    if net.is_ipv4() {
        SET4
    } else {
        SET6
    }
}

/// The sets, the chain and its rules, as they must be.
fn header() -> String {
    format!(
        "table {TABLE} {{\n\
         \tset {SET4} {{ type ipv4_addr; flags interval, timeout; }}\n\
         \tset {SET6} {{ type ipv6_addr; flags interval, timeout; }}\n\
         \tchain {CHAIN} {{ type filter hook prerouting priority raw; policy accept; }}\n\
         }}\n\
         flush chain {TABLE} {CHAIN}\n\
         add rule {TABLE} {CHAIN} ip saddr @{SET4} drop\n\
         add rule {TABLE} {CHAIN} ip6 saddr @{SET6} drop\n"
    )
}

fn add(s: &mut String, net: &IpNet, secs: u64) {
    let _ = writeln!(s, "add element {TABLE} {} {{ {net} timeout {secs}s }}", set_of(net));
}

/// Deletes `net` whether or not the set still has it.
fn delete(s: &mut String, net: &IpNet) {
    add(s, net, 1);
    let _ = writeln!(s, "delete element {TABLE} {} {{ {net} }}", set_of(net));
}

/// Everything in force again: `entries` are networks with their seconds left.
pub fn ensure(entries: &[(IpNet, u64)]) -> String {
    let mut s = header();
    for (net, secs) in entries {
        add(&mut s, net, *secs);
    }
    s
}

/// Blocks `net` for `secs`, replacing the networks inside it.
pub fn block(replaced: &[IpNet], net: IpNet, secs: u64) -> String {
    let mut s = header();
    for r in replaced {
        delete(&mut s, r);
    }
    add(&mut s, &net, secs);
    s
}

/// Unblocks `nets`.
pub fn unblock(nets: &[IpNet]) -> String {
    let mut s = header();
    for n in nets {
        delete(&mut s, n);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_declares_what_it_needs_and_then_changes_elements() {
        let s = unblock(&["2001:db8::/48".parse().unwrap()]);
        let expected = "table inet fw4 {
\tset opmas_block4 { type ipv4_addr; flags interval, timeout; }
\tset opmas_block6 { type ipv6_addr; flags interval, timeout; }
\tchain opmas_drop { type filter hook prerouting priority raw; policy accept; }
}
flush chain inet fw4 opmas_drop
add rule inet fw4 opmas_drop ip saddr @opmas_block4 drop
add rule inet fw4 opmas_drop ip6 saddr @opmas_block6 drop
add element inet fw4 opmas_block6 { 2001:db8::/48 timeout 1s }
delete element inet fw4 opmas_block6 { 2001:db8::/48 }
";
        assert_eq!(s, expected);
    }
}
