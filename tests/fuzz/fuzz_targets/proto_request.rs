#![no_main]
//! See `coord_fuzz::proto_request` for what this target feeds and which properties it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| coord_fuzz::proto_request(data));
