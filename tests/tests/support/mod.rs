//! Helpers the integration tests share (not a test target of its own).

pub mod browser;
