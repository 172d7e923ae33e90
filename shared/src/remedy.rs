//! What a router runs to carry out a block or a ban, as text: the
//! `nft -f -` scripts ([`nft`]) and hostapd's `del_client` arguments.
//!
//! Two callers run exactly these: the edge on its own router
//! (`edge/src/act`) and the hub's SSH transport for routers without an
//! agent (`hub/src/act/ssh.rs`), so a block looks the same in the router's
//! nftables whichever way it came, and one can lift the other's. Every
//! value in the text is a typed [`IpNet`](crate::net::IpNet),
//! [`Mac`] or number printed by Rust.

pub mod nft;

use crate::net::Mac;

/// What a ban or unban says when the router has no access point to ask.
pub const NO_ACCESS_POINT: &str = "no access point interface (ubus list shows no hostapd.*): is WiFi up?";

/// The access point objects in `ubus list 'hostapd.*'`'s output, one per
/// line; a line that is not a well-formed `hostapd.<iface>` is ignored (it
/// never reaches a command, an argv or the hub's remote command line).
pub fn hostapd_objects(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.strip_prefix("hostapd.").is_some_and(|iface| {
                !iface.is_empty()
                    && iface.len() <= 32
                    && iface.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            })
        })
        .collect()
}

/// hostapd's `del_client` arguments: `ban_time` in milliseconds (0 lifts a
/// ban); reason 5 is "AP unable to handle all associated stations" as
/// OpenWRT's own tools use, 1 "unspecified".
pub fn del_client_json(mac: &Mac, ban_s: u32, deauth: bool) -> String {
    let ban_ms = u64::from(ban_s) * 1000;
    let reason = if deauth { 5 } else { 1 };
    format!(r#"{{"addr":"{mac}","reason":{reason},"deauth":{deauth},"ban_time":{ban_ms}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_access_point_objects_are_taken() {
        let listing = "hostapd.wlan0\nhostapd.phy1-ap0\n hostapd.wlan1 \nhostapd.\nhostapd.x;reboot\nnetwork\n";
        assert_eq!(hostapd_objects(listing), ["hostapd.wlan0", "hostapd.phy1-ap0", "hostapd.wlan1"]);
    }
}
