#![no_main]
//! See `coord_fuzz::znode_txn` for what this target feeds and which properties it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| coord_fuzz::znode_txn(data));
