//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod mutated_log;

use std::path::{Path, PathBuf};

use bml_wal::{Reader, Result};

/// A writer on `dir` that never syncs (tests need no durability) and starts a
/// new segment every `segment_bytes`.
pub fn unsynced(dir: &Path, segment_bytes: u64) -> bml_wal::Wal {
    bml_wal::Wal::open(
        dir,
        bml_wal::Options {
            sync: bml_wal::SyncPolicy::Never,
            segment_bytes,
        },
    )
    .unwrap()
}

/// Reads every record from `offset` to the live end.
pub fn read_from(dir: &Path, offset: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut reader = Reader::open(dir, offset)?;
    let mut out = Vec::new();
    while let Some(r) = reader.next()? {
        out.push((r.offset, r.data.to_vec()));
    }
    Ok(out)
}

/// Repairs the log in `dir` and checks what a repaired log must be: `verify`
/// finds nothing, offsets run densely from 0, every record read equals the one
/// appended at its offset (`records`), and a second repair changes nothing.
/// Returns the offsets still holding records and the ranges declared lost.
pub fn repair_and_check(dir: &Path, records: &[Vec<u8>]) -> (Vec<u64>, Vec<std::ops::Range<u64>>) {
    let report = bml_wal::repair(dir).expect("repair runs");
    let verified = bml_wal::verify(dir).unwrap();
    assert!(verified.is_clean(), "after repair: {:?}", verified.problems);
    let mut reader = Reader::open(dir, 0).unwrap();
    let (mut kept, mut lost, mut next) = (Vec::new(), Vec::new(), 0);
    while let Some(entry) = reader.next_entry().expect("a repaired log reads through") {
        match entry {
            bml_wal::Entry::Record(r) => {
                assert_eq!(r.offset, next, "offsets stay dense");
                assert_eq!(
                    r.data,
                    &records[r.offset as usize][..],
                    "offset {}",
                    r.offset
                );
                kept.push(r.offset);
                next += 1;
            }
            bml_wal::Entry::Lost { offsets, note } => {
                assert_eq!(offsets.start, next, "offsets stay dense");
                assert!(!note.is_empty());
                next = offsets.end;
                lost.push(offsets);
            }
        }
    }
    assert_eq!(verified.next_offset, next);
    let lost_total: u64 = lost.iter().map(|r| r.end - r.start).sum();
    assert_eq!(verified.lost, lost_total);
    assert_eq!(
        report
            .lost
            .iter()
            .map(|l| l.offsets.clone())
            .collect::<Vec<_>>(),
        lost,
        "the report lists every lost range"
    );
    let again = bml_wal::repair(dir).expect("a second repair runs");
    assert!(
        again.segments_written.is_empty() && again.lost.is_empty(),
        "a second repair changed the log: {again:?}"
    );
    (kept, lost)
}

/// Reads until the first error or the end, keeping what was read before an error.
pub fn read_until_error(dir: &Path) -> (Vec<(u64, Vec<u8>)>, Option<bml_wal::Error>) {
    let mut out = Vec::new();
    let mut reader = match Reader::open(dir, 0) {
        Ok(r) => r,
        Err(e) => return (out, Some(e)),
    };
    loop {
        match reader.next() {
            Ok(Some(r)) => out.push((r.offset, r.data.to_vec())),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// A record of `len` bytes whose content depends on `seed`.
pub fn record(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// The segment files of a log, by base offset.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// The base offsets of a log's segments, in order.
pub fn segment_bases(dir: &Path) -> Vec<u64> {
    segment_files(dir)
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect()
}
