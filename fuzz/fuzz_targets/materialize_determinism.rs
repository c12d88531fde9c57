//! Fuzzer-chosen orders, copies, batchings and run splits of one fact set give
//! the canonical lake and ledger (`tests/properties/mod.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/properties/mod.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::materialize_determinism(data));
