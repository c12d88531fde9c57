//! Blanking dead records (`lock` + `Exclusive::blank`): sealed segments are
//! rewritten with the chosen records empty, every offset still there, every
//! other record byte for byte as it was; the last segment, lost ranges and
//! damaged segments are left alone; a crash between segments leaves a log
//! that reads through, and a second run finishes.

mod support;

use std::fs;
use std::path::Path;

use bml_wal::{lock, repair, verify, Entry, Error, Reader};

/// Every entry from offset 0: `Some(bytes)` per record, `None` per lost offset.
fn read_all(dir: &Path) -> Vec<Option<Vec<u8>>> {
    let mut reader = Reader::open(dir, 0).unwrap();
    let mut all = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        match entry {
            Entry::Record(r) => all.push(Some(r.data.to_vec())),
            Entry::Lost { offsets, .. } => all.extend(offsets.map(|_| None)),
        }
    }
    all
}

fn log_bytes(dir: &Path) -> u64 {
    support::segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn blanked_records_are_empty_and_everything_else_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let wal = support::unsynced(dir.path(), 4096);
    let records: Vec<Vec<u8>> = (0..300).map(|i| support::record(i, 200)).collect();
    for batch in records.chunks(7) {
        wal.append_batch(batch).unwrap();
    }
    drop(wal);
    let before = log_bytes(dir.path());
    let dead = [3..40, 41..42, 100..180, 290..300];
    let exclusive = lock(dir.path()).unwrap();
    let report = exclusive.blank(&dead).unwrap();
    let last_base = *support::segment_bases(dir.path()).last().unwrap();
    let expected: Vec<Option<Vec<u8>>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let i = i as u64;
            let blank = i < last_base && dead.iter().any(|d| d.contains(&i));
            Some(if blank { Vec::new() } else { r.clone() })
        })
        .collect();
    assert_eq!(read_all(dir.path()), expected);
    let blanked = expected
        .iter()
        .filter(|r| r.as_ref().unwrap().is_empty())
        .count();
    assert_eq!(report.blanked, blanked as u64);
    assert!(blanked > 100, "{blanked}");
    assert!(verify(dir.path()).unwrap().is_clean());
    let after = log_bytes(dir.path());
    assert_eq!(before - after, report.bytes_before - report.bytes_after);
    assert!(
        after + blanked as u64 * 200 <= before + 10,
        "{before} → {after}"
    );
    // Done is done: a second run blanks nothing and writes nothing.
    let again = exclusive.blank(&dead).unwrap();
    assert_eq!((again.blanked, again.segments_written.len()), (0, 0));
    // No writer while the lock is held; one again after.
    assert!(matches!(
        bml_wal::Wal::open(dir.path(), Default::default()),
        Err(Error::Locked { .. })
    ));
    drop(exclusive);
    let wal = bml_wal::Wal::open(dir.path(), Default::default()).unwrap();
    assert_eq!(wal.append(b"more").unwrap(), 300);
}

/// A segment left mid-rewrite by a crash (its temporary beside it) and a
/// repaired segment's lost range: the lock clears the temporary, the lost
/// range stays lost, the rest is blanked; a damaged segment is skipped and
/// named.
#[test]
fn lost_ranges_stay_and_damaged_segments_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = support::unsynced(dir.path(), 200);
    let records: Vec<Vec<u8>> = (0..60).map(|i| support::record(i, 30)).collect();
    for r in &records {
        wal.append(r).unwrap();
    }
    drop(wal);
    let segments = support::segment_files(dir.path());
    fs::remove_file(&segments[2]).unwrap();
    repair(dir.path()).unwrap();
    fs::write(dir.path().join("00000000000000000000.wal.tmp"), b"half").unwrap();
    let mut image = fs::read(&segments[5]).unwrap();
    image[40] ^= 1;
    fs::write(&segments[5], image).unwrap();
    let report = lock(dir.path()).unwrap().blank(&[0..30, 30..60]).unwrap();
    assert!(!dir.path().join("00000000000000000000.wal.tmp").exists());
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].0, segments[5]);
    assert!(report.skipped[0].1.contains("byte 24"), "{report:?}");
    let lost_at = support::segment_bases(dir.path())[2];
    let mut reader = Reader::open(dir.path(), lost_at).unwrap();
    assert!(matches!(
        reader.next_entry().unwrap(),
        Some(Entry::Lost { .. })
    ));
    let mut reader = Reader::open(dir.path(), 0).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().data, b"");
}
