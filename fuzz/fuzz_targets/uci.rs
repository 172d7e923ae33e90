//! `/etc/config/opmas`, as a person (or a package upgrade) may leave it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opmas_edge::config::{AgentsConfig, EdgeConfig};
use opmas_edge::uci;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(pkg) = uci::parse(text) {
        let _ = EdgeConfig::from_package(&pkg);
        let _ = AgentsConfig::from_package(&pkg);
    }
});
