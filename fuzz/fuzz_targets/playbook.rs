//! A playbook document, as the API and the UI's editor take it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opmas_hub::act::playbook::{parse_yaml, Playbook};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = parse_yaml(text) {
        let _ = Playbook::compile(spec);
    }
});
