//! The authenticated envelope around every message body.
//!
//! Wire layout (postcard, which writes `u8` and fixed arrays as raw bytes):
//!
//! ```text
//! version: u8 | device: str | seq: varint | ts_ms: varint | body: bytes | tag: [u8; 32]
//! ```
//!
//! `tag` is HMAC-SHA256 under the device secret over the channel code followed
//! by every byte before the tag. Binding the channel means a body signed for
//! one channel cannot be replayed on another; binding the device id means a
//! device cannot publish as another even through a broker without topic ACLs.
//! The version byte comes first so that a decoder can refuse an unknown
//! format before it tries to read anything else.

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{DeviceId, Secret};
use crate::msg::{Ack, Command, CommandResult, ConfigDoc, FindingBatch, Heartbeat, Status};
use crate::topic::{Channel, Topic};

mod private {
    pub trait Sealed {}
}

/// A message body, tied to the one channel it travels on: sealing a body
/// for another channel does not compile, and [`Envelope::body`] refuses to
/// decode one from the wrong channel. Sealed: only `opmas-proto`'s message
/// types are bodies.
pub trait Body: Serialize + DeserializeOwned + private::Sealed {
    const CHANNEL: Channel;
}

macro_rules! bodies {
    ($($t:ty => $c:ident),* $(,)?) => {$(
        impl private::Sealed for $t {}
        impl Body for $t {
            const CHANNEL: Channel = Channel::$c;
        }
    )*};
}
bodies!(
    Status => Status,
    Heartbeat => Heartbeat,
    FindingBatch => Finding,
    CommandResult => Result,
    Ack => Ack,
    ConfigDoc => Config,
    Command => Cmd,
);

/// A body or envelope that could not be encoded (postcard refused a value).
#[derive(Debug, thiserror::Error)]
#[error("encoding the {what} of a {channel} message: {source}")]
pub struct EncodeError {
    what: &'static str,
    channel: Channel,
    #[source]
    source: postcard::Error,
}

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 7;

/// Length of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// An opened (or to be sealed) envelope: who sent it, its sequence and time,
/// and the still-encoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sending (uplink) or addressed (downlink) device.
    pub device: DeviceId,
    /// Per-sender message counter; lets a receiver refuse replays.
    pub seq: u64,
    /// When the envelope was sealed (unix ms, sender's clock).
    pub ts_ms: u64,
    /// The channel it travels on: the body's when built, the topic's when opened.
    pub channel: Channel,
    /// The postcard-encoded body.
    pub body: Vec<u8>,
}

/// Why bytes received on a topic are not a valid envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("unknown envelope format version {got}; this build speaks version {supported}")]
    UnknownVersion { got: u8, supported: u8 },
    #[error("truncated {what}: the payload ended early ({len} bytes)")]
    Truncated { what: &'static str, len: usize },
    #[error("malformed {what}: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("{count} unexpected bytes after the {what}")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("envelope from device {envelope:?} arrived on the topic of device {topic:?}")]
    DeviceMismatch { topic: String, envelope: String },
    #[error(
        "bad tag: the envelope for device {device:?} on channel {channel} was not signed with that device's secret"
    )]
    BadTag { device: String, channel: Channel },
    #[error("a {got} message cannot hold a {wanted} body")]
    WrongChannel { got: Channel, wanted: Channel },
}

/// The wire form of format version 3 (2 had a boolean `update` instead of `Stage` and no `Subject::host`; 1 had no `floor`, `round` or `gap`). Field order is the wire layout.
#[derive(Serialize, Deserialize)]
struct WireV1 {
    version: u8,
    device: DeviceId,
    seq: u64,
    ts_ms: u64,
    body: Vec<u8>,
    tag: [u8; TAG_LEN],
}

impl Envelope {
    /// Builds an envelope around `body` for its channel, encoding it with postcard.
    pub fn new<B: Body>(device: DeviceId, seq: u64, ts_ms: u64, body: &B) -> Result<Envelope, EncodeError> {
        let channel = B::CHANNEL;
        let body = postcard::to_allocvec(body).map_err(|source| EncodeError { what: "body", channel, source })?;
        Ok(Envelope { device, seq, ts_ms, channel, body })
    }

    /// Builds and seals in one step: the bytes to publish on `B`'s channel.
    pub fn sealed<B: Body>(
        device: DeviceId,
        seq: u64,
        ts_ms: u64,
        body: &B,
        key: &Secret,
    ) -> Result<Vec<u8>, EncodeError> {
        Envelope::new(device, seq, ts_ms, body)?.seal(key)
    }

    /// Encodes and signs the envelope for publishing on its channel.
    pub fn seal(&self, key: &Secret) -> Result<Vec<u8>, EncodeError> {
        let channel = self.channel;
        let wire = WireV1 {
            version: FORMAT_VERSION,
            device: self.device.clone(),
            seq: self.seq,
            ts_ms: self.ts_ms,
            body: self.body.clone(),
            tag: [0; TAG_LEN],
        };
        let mut bytes =
            postcard::to_allocvec(&wire).map_err(|source| EncodeError { what: "envelope", channel, source })?;
        let signed_len = bytes.len() - TAG_LEN;
        let tag = compute_tag(key, channel, &bytes[..signed_len]);
        bytes[signed_len..].copy_from_slice(&tag);
        Ok(bytes)
    }

    /// Decodes `bytes` received on `topic` and verifies them under `key`.
    ///
    /// Checks, in order: version, framing, that the envelope's device is the
    /// topic's device, then the tag.
    pub fn open(topic: &Topic, bytes: &[u8], key: &Secret) -> Result<Envelope, DecodeError> {
        let &version = bytes.first().ok_or(DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion { got: version, supported: FORMAT_VERSION });
        }
        let (wire, rest): (WireV1, _) =
            postcard::take_from_bytes(bytes).map_err(|e| classify("envelope", bytes.len(), e))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { what: "envelope", count: rest.len() });
        }
        if wire.device != topic.device {
            return Err(DecodeError::DeviceMismatch {
                topic: topic.device.to_string(),
                envelope: wire.device.to_string(),
            });
        }
        let signed = &bytes[..bytes.len() - TAG_LEN];
        let mut mac = mac_for(key, topic.channel);
        mac.update(signed);
        mac.verify_slice(&wire.tag)
            .map_err(|_| DecodeError::BadTag { device: wire.device.to_string(), channel: topic.channel })?;
        Ok(Envelope { device: wire.device, seq: wire.seq, ts_ms: wire.ts_ms, channel: topic.channel, body: wire.body })
    }

    /// Decodes the body as `B`, refusing trailing bytes and a body of
    /// another channel.
    pub fn body<B: Body>(&self) -> Result<B, DecodeError> {
        if B::CHANNEL != self.channel {
            return Err(DecodeError::WrongChannel { got: self.channel, wanted: B::CHANNEL });
        }
        let (value, rest) = postcard::take_from_bytes(&self.body).map_err(|e| classify("body", self.body.len(), e))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { what: "body", count: rest.len() });
        }
        Ok(value)
    }
}

fn mac_for(key: &Secret, channel: Channel) -> HmacSha256 {
    // HMAC pads a key shorter than the hash's block (64 bytes for SHA-256)
    // with zeros, so this is HMAC under the 32-byte secret, without the
    // fallible slice constructor.
    let mut block = [0u8; 64];
    block[..key.as_bytes().len()].copy_from_slice(key.as_bytes());
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block.into());
    mac.update(&[channel.code()]);
    mac
}

fn compute_tag(key: &Secret, channel: Channel, signed: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = mac_for(key, channel);
    mac.update(signed);
    mac.finalize().into_bytes().into()
}

fn classify(what: &'static str, len: usize, e: postcard::Error) -> DecodeError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated { what, len },
        source => DecodeError::Malformed { what, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Ack;

    fn key(b: u8) -> Secret {
        Secret::from_bytes([b; 32])
    }

    fn topic(dev: &str, ch: Channel) -> Topic {
        Topic::new(DeviceId::new(dev).unwrap(), ch)
    }

    fn sealed() -> Vec<u8> {
        let ack = Ack { epoch: 3, upto: 9, gap: None };
        Envelope::sealed(DeviceId::new("gw-1").unwrap(), 7, 1_700_000_000_000, &ack, &key(1)).unwrap()
    }

    #[test]
    fn a_body_is_decoded_only_from_its_own_channel() {
        let env = Envelope::open(&topic("gw-1", Channel::Ack), &sealed(), &key(1)).unwrap();
        let err = env.body::<crate::msg::Status>().unwrap_err();
        assert_eq!(err.to_string(), "a ack message cannot hold a status body");
    }

    #[test]
    fn the_padded_key_is_hmac_under_the_secret() {
        // Known-answer check against the slice constructor it replaces.
        let k = key(9);
        let mut a = mac_for(&k, Channel::Ack);
        let mut b = HmacSha256::new_from_slice(k.as_bytes()).unwrap();
        b.update(&[Channel::Ack.code()]);
        a.update(b"x");
        b.update(b"x");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn sealed_envelope_opens_with_the_same_key_and_topic() {
        let env = Envelope::open(&topic("gw-1", Channel::Ack), &sealed(), &key(1)).unwrap();
        assert_eq!(env.seq, 7);
        assert_eq!(env.body::<Ack>().unwrap(), Ack { epoch: 3, upto: 9, gap: None });
    }

    #[test]
    fn wrong_key_is_a_bad_tag() {
        let err = Envelope::open(&topic("gw-1", Channel::Ack), &sealed(), &key(2)).unwrap_err();
        assert!(matches!(err, DecodeError::BadTag { .. }), "{err}");
    }

    #[test]
    fn replay_on_another_channel_is_a_bad_tag() {
        let err = Envelope::open(&topic("gw-1", Channel::Config), &sealed(), &key(1)).unwrap_err();
        assert!(matches!(err, DecodeError::BadTag { channel: Channel::Config, .. }), "{err}");
    }

    #[test]
    fn envelope_on_another_devices_topic_names_both() {
        let err = Envelope::open(&topic("gw-2", Channel::Ack), &sealed(), &key(1)).unwrap_err();
        assert_eq!(err.to_string(), "envelope from device \"gw-1\" arrived on the topic of device \"gw-2\"");
    }

    #[test]
    fn unknown_version_names_both_versions() {
        let mut bytes = sealed();
        bytes[0] = 9;
        let err = Envelope::open(&topic("gw-1", Channel::Ack), &bytes, &key(1)).unwrap_err();
        assert_eq!(err.to_string(), "unknown envelope format version 9; this build speaks version 7");
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = sealed();
        let t = topic("gw-1", Channel::Ack);
        assert!(matches!(Envelope::open(&t, &[], &key(1)), Err(DecodeError::Empty)));
        for n in 1..bytes.len() {
            let err = Envelope::open(&t, &bytes[..n], &key(1)).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::Truncated { .. } | DecodeError::BadTag { .. } | DecodeError::Malformed { .. }
                ),
                "cut at {n}: {err}"
            );
        }
    }

    #[test]
    fn flipped_bit_anywhere_is_refused() {
        let bytes = sealed();
        let t = topic("gw-1", Channel::Ack);
        for i in 1..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(Envelope::open(&t, &b, &key(1)).is_err(), "flip at byte {i} accepted");
        }
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut bytes = sealed();
        bytes.push(0);
        let err = Envelope::open(&topic("gw-1", Channel::Ack), &bytes, &key(1)).unwrap_err();
        assert!(matches!(err, DecodeError::TrailingBytes { count: 1, .. }), "{err}");
    }
}
