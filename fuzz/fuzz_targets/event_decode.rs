//! Arbitrary bytes as a log record: decoding never panics and round-trips
//! (`tests/properties/mod.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/properties/mod.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::event_decode(data));
