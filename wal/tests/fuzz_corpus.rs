//! The `segment_reader` fuzz property (see `support/mutated_log.rs`), run on a
//! bounded, seeded corpus so that every CI run exercises it on stable Rust.

mod support;

/// Inputs the fuzzer once stopped on, kept as regressions.
const FOUND_BY_FUZZING: &[&[u8]] = &[
    // A cut exactly at a frame boundary: a valid, shorter log, not damage.
    b"\x01\x6e\x02\x00\x00\x00\x00\x79\x00\x00\x79\xff\xfc\x00",
    // The same bit chosen twice: two flips that cancel out.
    b"\x00\xf8\x09\x2a",
];

#[test]
fn inputs_found_by_fuzzing_still_pass() {
    for input in FOUND_BY_FUZZING {
        support::mutated_log::check(input);
    }
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn reader_never_panics_nor_returns_unverified_bytes() {
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    for case in 0..1500 {
        let len = rng.usize(0..2048);
        let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if case % 3 == 0 && data.len() >= 24 {
            // Give raw inputs a valid segment header so they reach the frame parser.
            data[..8].copy_from_slice(b"\x89BMLWAL\n");
        }
        support::mutated_log::check(&data);
    }
}
