//! A log line, as any program on the router or any LAN client writing to
//! its syslog may craft it: parsed, classified and fed to the agents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opmas_edge::classify::classify;
use opmas_edge::parse::{parse_line, Context};

fuzz_target!(|data: &[u8]| {
    // Sources read bytes and replace what is not UTF-8, as here.
    let line = String::from_utf8_lossy(data);
    if let Ok(record) = parse_line(&line, Context::at(1_765_000_000_000)) {
        let _ = classify(&record);
    }
});
