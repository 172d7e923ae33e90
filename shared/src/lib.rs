//! The OPMAS wire contract, shared by `opmas-edge` and `opmas-hub`.
//!
//! Everything that crosses MQTT is defined here and nowhere else: topic names
//! ([`topic`]), identities and secrets ([`ids`]), the message bodies
//! ([`msg`]) and the authenticated envelope that carries them ([`envelope`]).
//!
//! Architecture invariant: this crate does no I/O and pulls in no runtime. It
//! is pure encode/decode over byte slices, so both sides, the tests and the
//! fuzzers can use it without sockets or clocks (callers pass the time in).
//!
//! Reading order: [`ids`] → [`topic`] → [`msg`] → [`envelope`]; [`agents`] is
//! the schema of the agents' configuration that [`msg::ConfigDoc`] carries.

pub mod agents;
pub mod envelope;
pub mod ids;
pub mod kinds;
pub mod local_response;
pub mod msg;
pub mod net;
pub mod pattern;
pub mod remedy;
pub mod topic;

pub use envelope::{Body, DecodeError, EncodeError, Envelope, FORMAT_VERSION};
pub use ids::{DeviceId, DeviceIdError, Secret, SecretError};
pub use topic::{Channel, Topic, TopicError};
