//! Arbitrary bytes split by the ingest's hand-written CSV splitter (whole and
//! in chunks) and by the csv crate, its oracle: the same records, fields and
//! line numbers (`tests/properties/mod.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/properties/mod.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::csv_split(data));
