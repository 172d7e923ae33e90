//! An agent configuration layer, as `PUT /config/...` takes it: the JSON
//! body, then the checks of every agent's table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opmas_hub::store::config::{validate, Layer};
use opmas_proto::agents::AGENTS;

fuzz_target!(|data: &[u8]| {
    if let Ok(layer) = serde_json::from_slice::<Layer>(data) {
        for agent in AGENTS {
            let _ = validate(agent.name, &layer);
        }
    }
});
