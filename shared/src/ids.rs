//! Device identities and the per-device shared secret.
//!
//! A device id appears in MQTT topics, client ids, usernames, log lines and
//! URLs, so it is restricted to a small alphabet that is safe in all of them.
//! The secret is 32 random bytes; its lowercase hex form is both the MQTT
//! password and, decoded, the HMAC-SHA256 key of the envelope.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted device id, in bytes. Long enough for a site prefix plus a
/// host name, short enough to keep topics and database keys small.
pub const MAX_DEVICE_ID_LEN: usize = 48;

/// A validated device id: 1 to [`MAX_DEVICE_ID_LEN`] characters from
/// `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter or digit.
///
/// The alphabet excludes MQTT wildcards (`+`, `#`), the topic separator `/`,
/// whitespace and upper case (so ids compare the same everywhere).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

/// Why a string is not a valid [`DeviceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {len} bytes long; at most {MAX_DEVICE_ID_LEN} are allowed")]
    TooLong { len: usize },
    #[error("device id {id:?} has {ch:?} at position {pos}; allowed are a-z, 0-9, '-', '_' and '.'")]
    BadChar { id: String, ch: char, pos: usize },
    #[error("device id {id:?} must start with a letter or a digit")]
    BadStart { id: String },
}

impl DeviceId {
    /// Validates `s` as a device id.
    pub fn new(s: impl Into<String>) -> Result<Self, DeviceIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if s.len() > MAX_DEVICE_ID_LEN {
            return Err(DeviceIdError::TooLong { len: s.len() });
        }
        if let Some((pos, ch)) =
            s.chars().enumerate().find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)))
        {
            return Err(DeviceIdError::BadChar { id: s, ch, pos });
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(DeviceIdError::BadStart { id: s });
        }
        Ok(DeviceId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DeviceId::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::new(s)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Length of a device secret in bytes.
pub const SECRET_LEN: usize = 32;

/// A device's shared secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

/// Why a string is not a valid [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret must be {} hex digits, got {len} characters", SECRET_LEN * 2)]
    Length { len: usize },
    #[error("secret is not hexadecimal")]
    NotHex,
}

impl Secret {
    /// Wraps raw key bytes (the caller draws them from the OS RNG).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Secret(bytes)
    }

    /// Parses the lowercase or uppercase hex form.
    pub fn from_hex(s: &str) -> Result<Self, SecretError> {
        let s = s.trim();
        if s.len() != SECRET_LEN * 2 {
            return Err(SecretError::Length { len: s.len() });
        }
        let mut out = [0u8; SECRET_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| SecretError::NotHex)?;
        Ok(Secret(out))
    }

    /// The lowercase hex form: the MQTT password and the UCI `secret` option.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_router_names() {
        for ok in ["gw-lab-1", "ap.kitchen", "r1", "site_12-ap3", "0router"] {
            DeviceId::new(ok).unwrap();
        }
    }

    #[test]
    fn rejects_topic_wildcards_slashes_and_upper_case() {
        assert!(matches!(DeviceId::new("a/b"), Err(DeviceIdError::BadChar { ch: '/', pos: 1, .. })));
        assert!(matches!(DeviceId::new("a+"), Err(DeviceIdError::BadChar { ch: '+', .. })));
        assert!(matches!(DeviceId::new("#"), Err(DeviceIdError::BadChar { .. })));
        assert!(matches!(DeviceId::new("Router"), Err(DeviceIdError::BadChar { ch: 'R', .. })));
        assert!(matches!(DeviceId::new("-x"), Err(DeviceIdError::BadStart { .. })));
        assert_eq!(DeviceId::new(""), Err(DeviceIdError::Empty));
        assert!(matches!(DeviceId::new("a".repeat(49)), Err(DeviceIdError::TooLong { len: 49 })));
    }

    #[test]
    fn secret_round_trips_through_hex_and_hides_itself() {
        let s = Secret::from_bytes([0xab; 32]);
        assert_eq!(Secret::from_hex(&s.to_hex()).unwrap(), s);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(Secret::from_hex("abc"), Err(SecretError::Length { len: 3 }));
        assert_eq!(Secret::from_hex(&"zz".repeat(32)), Err(SecretError::NotHex));
    }
}
