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

/// The canonical log's liquidation stream is watched from minute 10 to 40 (its
/// connection's heartbeat): those minutes count (0 when quiet), the others
/// are NULL but for minutes with a liquidation of their own.
#[test]
fn liquidations_count_only_while_the_heartbeat_runs() {
    use arrow_array::{Array, Int64Array};
    let (files, _) = determinism::play(&determinism::canonical());
    let (name, bytes) = files.iter().next().unwrap();
    assert!(name.contains("hour=00"), "{name}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part.parquet");
    std::fs::write(&path, bytes).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut counts = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch.column_by_name("liq_long_count").unwrap();
        let longs = column.as_any().downcast_ref::<Int64Array>().unwrap();
        counts.extend((0..longs.len()).map(|i| longs.is_valid(i).then(|| longs.value(i))));
    }
    assert_eq!(counts.len(), 60);
    for (minute, count) in counts.iter().enumerate() {
        let expected = match minute {
            12 | 15 => Some(1),
            10..40 => Some(0),
            _ => None,
        };
        assert_eq!(*count, expected, "minute {minute}");
    }
}
