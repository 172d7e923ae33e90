//! A correlation rule document, as the API and the UI's editor take it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opmas_hub::correlate::rule::{parse_yaml, Rule};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(specs) = parse_yaml(text) {
        for spec in specs {
            let _ = Rule::compile(spec);
        }
    }
});
