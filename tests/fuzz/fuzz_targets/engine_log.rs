#![no_main]
//! See `coord_fuzz::engine_log` for what this target feeds and which properties it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| coord_fuzz::engine_log(data));
