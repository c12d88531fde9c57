//! The materializer is a function of the *set* of facts in the log: any order,
//! duplication, batching and split into runs gives byte-identical partitions and
//! the same ledger digest (`properties::materialize_determinism`, also a fuzz
//! target).

mod properties;

use properties::determinism;
use proptest::prelude::*;

#[test]
fn the_canonical_arrangement_gives_two_complete_hours() {
    let (files, _, days) = determinism::play(&determinism::canonical());
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].contains("hour=00") && names[1].contains("hour=01"));
    // In the day layout, one file holds both hours.
    let names: Vec<&String> = days.keys().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("day=01/part.parquet"), "{names:?}");
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

/// One column of a lake file, each batch's array in turn.
fn column(bytes: &[u8], name: &str) -> Vec<arrow_array::ArrayRef> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part.parquet");
    std::fs::write(&path, bytes).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|batch| batch.unwrap().column_by_name(name).unwrap().clone())
    .collect()
}

/// The canonical log's liquidation stream is watched from minute 10 to 40 (its
/// connection's heartbeat): those minutes count (0 when quiet), the others
/// are NULL but for minutes with a liquidation of their own.
#[test]
fn liquidations_count_only_while_the_heartbeat_runs() {
    use arrow_array::{Array, Int64Array};
    let (files, _, _) = determinism::play(&determinism::canonical());
    let (name, bytes) = files.iter().next().unwrap();
    assert!(name.contains("hour=00"), "{name}");
    let mut counts = Vec::new();
    for array in column(bytes, "liq_long_count") {
        let longs = array.as_any().downcast_ref::<Int64Array>().unwrap();
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

/// The canonical log's book: diffs from 00:04 to 01:29:30, synced at 00:04:30,
/// broken at 00:30, synced again at 00:33; the second hour syncs from the
/// look-back. #43 has a value exactly in the minutes in sync at their end.
#[test]
fn price_impact_follows_the_books_sync() {
    use arrow_array::{Array, Float64Array};
    let (files, _, _) = determinism::play(&determinism::canonical());
    let mut in_sync = Vec::new();
    for bytes in files.values() {
        for array in column(bytes, "price_impact_100k") {
            let impacts = array.as_any().downcast_ref::<Float64Array>().unwrap();
            in_sync.extend((0..impacts.len()).map(|i| impacts.is_valid(i)));
        }
    }
    assert_eq!(in_sync.len(), 120);
    for (minute, synced) in in_sync.iter().enumerate() {
        let expected = matches!(minute, 4..30 | 33..90);
        assert_eq!(*synced, expected, "minute {minute}");
    }
}
