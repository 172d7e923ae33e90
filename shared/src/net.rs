//! The typed parameters of router actions: an address or prefix
//! ([`IpNet`]) and a station's MAC address ([`Mac`]), each parsed and
//! checked once, so that nothing but an address can reach an action's argv.
//!
//! Both serialize as their text (`"198.51.100.0/24"`, `"02:00:00:00:00:01"`)
//! in human-readable formats (the hub's JSON) and as plain bytes in postcard
//! (the wire), and both check what they decode: a crafted message cannot
//! carry a prefix length of 200 or a host part in a network.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network: an address with a prefix length, host bits zero.
/// A bare address is the network of itself (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text or a pair is not an [`IpNet`] or a [`Mac`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{0:?} is not an IP address or prefix (like 198.51.100.7, 198.51.100.0/24 or 2001:db8::/48)")]
    Syntax(String),
    #[error("prefix length {prefix} is longer than an {family} address ({max} bits)")]
    PrefixTooLong { prefix: u8, family: &'static str, max: u8 },
    #[error("{0} has bits set after its prefix length; the network is {1}")]
    HostBits(String, String),
    #[error("{0:?} is not a MAC address (like 02:11:22:33:44:55)")]
    Mac(String),
}

impl IpNet {
    /// The network `addr/prefix`; host bits must be zero.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet, NetError> {
        let max = max_prefix(&addr);
        if prefix > max {
            let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(NetError::PrefixTooLong { prefix, family, max });
        }
        let net = IpNet { addr: truncate(addr, prefix), prefix };
        if net.addr != addr {
            return Err(NetError::HostBits(format!("{addr}/{prefix}"), net.to_string()));
        }
        Ok(net)
    }

    /// One address.
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, prefix: max_prefix(&addr) }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// A single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(&self.addr)
    }

    /// Whether `other` lies inside this network (or is it).
    pub fn contains(&self, other: &IpNet) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && other.prefix >= self.prefix
            && truncate(other.addr, self.prefix) == self.addr
    }

    /// Whether `addr` lies inside this network.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        self.contains(&IpNet::host(addr))
    }
}

fn max_prefix(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` with every bit after `prefix` cleared.
fn truncate(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl FromStr for IpNet {
    type Err = NetError;
    fn from_str(s: &str) -> Result<IpNet, NetError> {
        let syntax = || NetError::Syntax(s.to_owned());
        match s.split_once('/') {
            None => s.parse().map(IpNet::host).map_err(|_| syntax()),
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| syntax())?;
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let prefix: u8 = p.parse().map_err(|_| syntax())?;
                IpNet::new(addr, prefix)
            }
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            (self.addr, self.prefix).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let (addr, prefix) = <(IpAddr, u8)>::deserialize(d)?;
            IpNet::new(addr, prefix).map_err(serde::de::Error::custom)
        }
    }
}

/// A station's MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A group (multicast or broadcast) address: no one station.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for Mac {
    type Err = NetError;
    /// `aa:bb:cc:dd:ee:ff` or with `-`, either case.
    fn from_str(s: &str) -> Result<Mac, NetError> {
        let bad = || NetError::Mac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 6]>::deserialize(d).map(Mac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_with_their_mistakes_named() {
        assert_eq!("198.51.100.7".parse::<IpNet>().unwrap().to_string(), "198.51.100.7");
        assert_eq!("198.51.100.0/24".parse::<IpNet>().unwrap().prefix(), 24);
        assert_eq!("2001:db8::/48".parse::<IpNet>().unwrap().to_string(), "2001:db8::/48");
        assert_eq!("2001:db8::1/128".parse::<IpNet>().unwrap().to_string(), "2001:db8::1");
        assert_eq!(
            "198.51.100.7/24".parse::<IpNet>().unwrap_err().to_string(),
            "198.51.100.7/24 has bits set after its prefix length; the network is 198.51.100.0/24"
        );
        assert!(matches!("10.0.0.0/33".parse::<IpNet>(), Err(NetError::PrefixTooLong { .. })));
        for bad in ["", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/ 8", "x", "10.0.0.0/8/8", "1.2.3.4; drop"] {
            assert!(matches!(bad.parse::<IpNet>(), Err(NetError::Syntax(_))), "{bad}");
        }
        assert_eq!("0.0.0.0/0".parse::<IpNet>().unwrap().prefix(), 0);
    }

    #[test]
    fn containment_is_by_family_and_prefix() {
        let net: IpNet = "198.51.100.0/24".parse().unwrap();
        assert!(net.contains(&"198.51.100.7".parse().unwrap()));
        assert!(net.contains(&net));
        assert!(!net.contains(&"198.51.0.0/16".parse().unwrap()));
        assert!(!net.contains(&"198.51.101.1".parse().unwrap()));
        assert!(!net.contains(&"::ffff:198.51.100.7".parse().unwrap()));
        assert!("::/0".parse::<IpNet>().unwrap().contains_addr("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn both_encodings_check_what_they_read() {
        let net: IpNet = "2001:db8::/48".parse().unwrap();
        assert_eq!(serde_json::to_string(&net).unwrap(), "\"2001:db8::/48\"");
        assert_eq!(serde_json::from_str::<IpNet>("\"2001:db8::/48\"").unwrap(), net);
        assert!(serde_json::from_str::<IpNet>("\"2001:db8::1/48\"").is_err());
        let bytes = postcard::to_allocvec(&net).unwrap();
        assert_eq!(postcard::from_bytes::<IpNet>(&bytes).unwrap(), net);
        let forged = postcard::to_allocvec(&("198.51.100.7".parse::<IpAddr>().unwrap(), 24u8)).unwrap();
        assert!(postcard::from_bytes::<IpNet>(&forged).is_err(), "host bits in a network");
        let forged = postcard::to_allocvec(&("198.51.100.7".parse::<IpAddr>().unwrap(), 200u8)).unwrap();
        assert!(postcard::from_bytes::<IpNet>(&forged).is_err());
        let mac: Mac = "02-11-22-33-44-AA".parse().unwrap();
        assert_eq!(mac.to_string(), "02:11:22:33:44:aa");
        assert!(!mac.is_group());
        assert_eq!(serde_json::to_string(&mac).unwrap(), "\"02:11:22:33:44:aa\"");
        assert!("ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap().is_group());
        for bad in ["02:11:22:33:44", "02:11:22:33:44:55:66", "0211.2233.4455", "02:11:22:33:44:5g", "2:11:22:33:44:55"]
        {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
