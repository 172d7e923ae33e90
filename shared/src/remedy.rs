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

/// hostapd's `del_client` arguments: `ban_time` in milliseconds (0 lifts a
/// ban); reason 5 is "AP unable to handle all associated stations" as
/// OpenWRT's own tools use, 1 "unspecified".
pub fn del_client_json(mac: &Mac, ban_s: u32, deauth: bool) -> String {
    let ban_ms = u64::from(ban_s) * 1000;
    let reason = if deauth { 5 } else { 1 };
    format!(r#"{{"addr":"{mac}","reason":{reason},"deauth":{deauth},"ban_time":{ban_ms}}}"#)
}
