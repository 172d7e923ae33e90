//! `opmas-hub`: the central OPMAS service.
//!
//! Reading order: [`config`] (settings) → [`store`] (database) → [`keys`]
//! (device secrets) → [`broker`] (embedded MQTT and device auth) → [`ingest`]
//! (envelopes to rows and acks, with [`watermark`] deciding what is stored
//! and acked; [`events`] carries what it committed) → [`http`] (REST API) → [`web`] (the web UI's pages, on the API's store functions) → [`serve`] (wiring) →
//! [`enrol`] (device commands). The demo fleet lives in the `opmas-demo`
//! crate, so that this crate does not link the edge.
//!
//! Architecture invariant: only [`broker`] knows rumqttd; only [`store`]
//! writes SQL; handlers and ingest see typed rows and `opmas-proto` types.

pub mod act;
pub mod alert;
pub mod archive;
pub mod broker;
pub mod command;
pub mod config;
pub mod correlate;
pub mod enrol;
pub mod events;
pub mod files;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod leader;
pub mod lifecycle;
pub mod mqtt;
pub mod seed;
pub mod serve;
pub mod stats;
pub mod store;
pub mod watermark;
pub mod web;
