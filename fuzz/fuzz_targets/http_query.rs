//! A query string of the API's list routes, decoded as axum's `Query` does.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(params) = serde_urlencoded::from_bytes::<HashMap<String, String>>(data) else { return };
    let _ = opmas_hub::http::findings::parse_query(&params);
    let _ = opmas_hub::http::incidents::parse_query(&params);
});
