//! Arbitrary bytes as a Vision CSV of any kind: the row parsers never panic and
//! every error names a column of that kind (`tests/properties/mod.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/properties/mod.rs"]
mod properties;

fuzz_target!(|data: &[u8]| properties::csv_rows(data));
