//! The log against the simplest possible model, a `Vec` of records: random
//! appends, batches, syncs, reopens and reads from random offsets, with tiny
//! segments so that rolls happen all the time.

mod support;

use std::time::Duration;

use bml_wal::{verify, Options, SyncPolicy, Wal};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Sync,
    Reopen,
    Read(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let record = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        4 => record.clone().prop_map(Op::Append),
        3 => proptest::collection::vec(record, 0..12).prop_map(Op::Batch),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        2 => any::<u64>().prop_map(Op::Read),
    ]
}

fn policy() -> impl Strategy<Value = SyncPolicy> {
    prop_oneof![
        Just(SyncPolicy::Never),
        Just(SyncPolicy::Always),
        (1u64..4096, 0u64..500).prop_map(|(b, us)| SyncPolicy::Group {
            max_bytes: b,
            max_delay: Duration::from_micros(us),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn log_behaves_like_a_vec(
        ops in proptest::collection::vec(op(), 1..40),
        sync in policy(),
        segment_bytes in 24u64..2048,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { sync, segment_bytes };
        let mut wal = Wal::open(dir.path(), options).unwrap();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            match op {
                Op::Append(r) => {
                    prop_assert_eq!(wal.append(&r).unwrap(), model.len() as u64);
                    model.push(r);
                }
                Op::Batch(rs) => {
                    let start = model.len() as u64;
                    prop_assert_eq!(wal.append_batch(&rs).unwrap(), start..start + rs.len() as u64);
                    model.extend(rs);
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    prop_assert_eq!(wal.durable_offset(), model.len() as u64);
                }
                Op::Reopen => {
                    drop(wal);
                    wal = Wal::open(dir.path(), options).unwrap();
                    prop_assert_eq!(wal.recovery(), &bml_wal::Recovery::default());
                }
                Op::Read(from) => {
                    let from = from % (model.len() as u64 + 2);
                    let read = support::read_from(dir.path(), from).unwrap();
                    let expected: Vec<(u64, Vec<u8>)> = model
                        .iter()
                        .cloned()
                        .enumerate()
                        .skip(from as usize)
                        .map(|(i, r)| (i as u64, r))
                        .collect();
                    prop_assert_eq!(read, expected);
                }
            }
            prop_assert_eq!(wal.next_offset(), model.len() as u64);
        }
        let report = verify(dir.path()).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        prop_assert_eq!(report.records, model.len() as u64);
        prop_assert_eq!(report.next_offset, model.len() as u64);
    }
}
