//! The materializer is a function of the *set* of facts in the log: any order,
//! duplication, batching and split into runs gives byte-identical partitions and
//! the same ledger digest (`properties::materialize_determinism`, also a fuzz
//! target).

mod properties;

use properties::determinism;
use proptest::prelude::*;

#[test]
fn the_canonical_arrangement_gives_two_complete_hours() {
    let (files, _) = determinism::play(&determinism::canonical());
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].contains("hour=00") && names[1].contains("hour=01"));
}

#[test]
fn an_aborted_attempt_and_incremental_runs_change_nothing() {
    let canonical = determinism::play(&determinism::canonical());
    // Every block twice, in reverse, one event per record, a run after each block.
    let n = determinism::blocks().len();
    let arrangement = determinism::Arrangement {
        blocks: (0..n).rev().flat_map(|b| [(b, 1), (b, 1)]).collect(),
        runs_after: (0..2 * n).collect(),
    };
    assert_eq!(determinism::play(&arrangement), canonical);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_arrangement_gives_the_canonical_lake_and_ledger(
        data in proptest::collection::vec(any::<u8>(), 0..160)
    ) {
        properties::materialize_determinism(&data);
    }
}
