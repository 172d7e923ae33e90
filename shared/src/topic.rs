//! MQTT topic names: `opmas/v1/{device}/{channel}`.
//!
//! The protocol version lives in the path so that a future `v2` can run beside
//! `v1` on one broker. Builders and the parser are the only places that know
//! the layout; everything else handles a typed [`Topic`].

use std::fmt;

use crate::ids::{DeviceId, DeviceIdError};

/// First two levels of every OPMAS topic.
pub const PREFIX: &str = "opmas/v1";

/// The last level of a topic: what kind of message it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Up, retained: `online` / `offline` (the latter is the Last Will).
    Status,
    /// Up: periodic heartbeat.
    Heartbeat,
    /// Up: a batch of findings.
    Finding,
    /// Up: the result of a command.
    Result,
    /// Down: the highest finding sequence the hub has stored.
    Ack,
    /// Down, retained: the device's effective agent configuration.
    Config,
    /// Down: a command to run.
    Cmd,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Status,
        Channel::Heartbeat,
        Channel::Finding,
        Channel::Result,
        Channel::Ack,
        Channel::Config,
        Channel::Cmd,
    ];

    /// The topic level for this channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Status => "status",
            Channel::Heartbeat => "hb",
            Channel::Finding => "finding",
            Channel::Result => "result",
            Channel::Ack => "ack",
            Channel::Config => "config",
            Channel::Cmd => "cmd",
        }
    }

    fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// True for channels the edge publishes and the hub consumes.
    pub fn is_uplink(self) -> bool {
        matches!(self, Channel::Status | Channel::Heartbeat | Channel::Finding | Channel::Result)
    }

    /// A stable one-byte code, bound into the envelope's tag so that a body
    /// signed for one channel cannot be replayed on another.
    pub(crate) fn code(self) -> u8 {
        match self {
            Channel::Status => 1,
            Channel::Heartbeat => 2,
            Channel::Finding => 3,
            Channel::Result => 4,
            Channel::Ack => 5,
            Channel::Config => 6,
            Channel::Cmd => 7,
        }
    }

    /// The filter matching this channel for every device: `opmas/v1/+/{channel}`.
    pub fn filter_all_devices(self) -> String {
        format!("{PREFIX}/+/{}", self.as_str())
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed OPMAS topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    pub device: DeviceId,
    pub channel: Channel,
}

/// Why a topic string is not an OPMAS topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {topic:?} does not start with {PREFIX:?}")]
    Prefix { topic: String },
    #[error("topic {topic:?} must have exactly four levels: opmas/v1/<device>/<channel>")]
    Levels { topic: String },
    #[error("topic {topic:?} names unknown channel {channel:?}")]
    Channel { topic: String, channel: String },
    #[error("topic {topic:?}: {source}")]
    Device { topic: String, source: DeviceIdError },
}

impl Topic {
    pub fn new(device: DeviceId, channel: Channel) -> Self {
        Topic { device, channel }
    }

    /// Parses `opmas/v1/{device}/{channel}`.
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| TopicError::Prefix { topic: topic.to_owned() })?;
        let mut parts = rest.split('/');
        let (Some(device), Some(channel), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TopicError::Levels { topic: topic.to_owned() });
        };
        let channel = Channel::parse(channel)
            .ok_or_else(|| TopicError::Channel { topic: topic.to_owned(), channel: channel.to_owned() })?;
        let device = DeviceId::new(device).map_err(|source| TopicError::Device { topic: topic.to_owned(), source })?;
        Ok(Topic { device, channel })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}/{}/{}", self.device, self.channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    #[test]
    fn every_channel_round_trips() {
        for c in Channel::ALL {
            let t = Topic::new(dev("gw-1"), c);
            assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        }
        assert_eq!(Topic::new(dev("gw-1"), Channel::Heartbeat).to_string(), "opmas/v1/gw-1/hb");
    }

    #[test]
    fn foreign_and_malformed_topics_say_what_is_wrong() {
        assert!(matches!(Topic::parse("other/v1/a/hb"), Err(TopicError::Prefix { .. })));
        assert!(matches!(Topic::parse("opmas/v2/a/hb"), Err(TopicError::Prefix { .. })));
        assert!(matches!(Topic::parse("opmas/v1/a"), Err(TopicError::Levels { .. })));
        assert!(matches!(Topic::parse("opmas/v1/a/hb/x"), Err(TopicError::Levels { .. })));
        assert!(matches!(Topic::parse("opmas/v1/a/nope"), Err(TopicError::Channel { .. })));
        assert!(matches!(Topic::parse("opmas/v1/A/hb"), Err(TopicError::Device { .. })));
    }

    #[test]
    fn channel_codes_are_distinct() {
        let mut codes: Vec<u8> = Channel::ALL.iter().map(|c| c.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Channel::ALL.len());
    }
}
