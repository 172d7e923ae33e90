//! `opmas-edge`: the OPMAS agent that runs on each OpenWRT router.
//!
//! Reading order: [`uci`] (the config file format) → [`config`] (typed
//! settings) → [`sources`] (where lines come from) → [`parse`] (line →
//! record) → [`classify`] (record → [`events`]) → [`agents`] (event → finding) → [`spool`] (findings until
//! acked) → [`uplink`] (MQTT to the hub) → [`run`] (the loop that owns them).
//!
//! Architecture invariants: [`parse`], [`agents`] and [`spool`] do no I/O
//! and read no clock, so they are tested with plain data; every table and
//! queue has a fixed capacity; nothing is written to flash per line or per
//! finding.

pub mod act;
pub mod agents;
pub mod classify;
pub mod commands;
pub mod config;
pub mod date;
pub mod events;
pub mod explain;
pub mod machine;
pub mod parse;
pub mod pipeline;
pub mod replay;
pub mod run;
pub mod sources;
pub mod spool;
pub mod supervise;
pub mod tls;
pub mod uci;
pub mod uplink;
pub mod version;
