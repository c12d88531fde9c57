//! Arbitrary bytes as a segment, and valid logs with flipped bits and cut tails,
//! fed to the reader, `verify` and writer recovery. Must never panic, and must
//! never hand out a record that is not the one appended at its offset.
//! The property lives in `wal/tests/support/mutated_log.rs`, where the normal
//! test suite runs it on a bounded corpus.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../wal/tests/support/mod.rs"]
mod support;

fuzz_target!(|data: &[u8]| support::mutated_log::check(data));
