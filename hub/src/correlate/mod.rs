//! Correlation: rules over the stored findings and heartbeats, turned into
//! incidents. `rule` holds the rule documents and their checks, `engine`
//! the pure matching; this module runs the engine on the hub's event bus
//! and keeps its results in the database.

pub mod engine;
pub mod rule;
