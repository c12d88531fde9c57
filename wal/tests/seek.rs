//! `Reader::seek`: any offset, in any order, across segments and inside frames,
//! gives the record that was appended there, and damage is still reported.

mod support;

use bml_wal::Reader;

fn payload(offset: u64) -> Vec<u8> {
    let len = (offset * 7919 % 300) as usize;
    (0..len).map(|i| (offset as usize + i) as u8).collect()
}

/// A log of `n` records in random batches over small segments.
fn log(n: u64, rng: &mut fastrand::Rng) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let wal = support::unsynced(dir.path(), 64 << 10);
    let mut next = 0;
    while next < n {
        let batch = rng.u64(1..=40).min(n - next);
        let records: Vec<Vec<u8>> = (next..next + batch).map(payload).collect();
        assert_eq!(wal.append_batch(&records).unwrap(), next..next + batch);
        next += batch;
    }
    dir
}

#[test]
fn random_seeks_read_the_records_appended_there() {
    let mut rng = fastrand::Rng::with_seed(7);
    let n = 5_000;
    let dir = log(n, &mut rng);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 5,
        "several segments"
    );
    let mut reader = Reader::open(dir.path(), 0).unwrap();
    for _ in 0..3_000 {
        let at = rng.u64(0..n + 3);
        reader.seek(at).unwrap();
        assert_eq!(reader.position(), at);
        for expected in at..(at + rng.u64(0..5)).min(n) {
            let record = reader.next().unwrap().expect("record");
            assert_eq!(record.offset, expected);
            assert_eq!(record.data, payload(expected), "offset {expected}");
        }
    }
    reader.seek(n).unwrap();
    assert!(reader.next().unwrap().is_none(), "the live end");
}

#[test]
fn ascending_seeks_over_a_fresh_reader_match_a_full_scan() {
    let mut rng = fastrand::Rng::with_seed(11);
    let n = 3_000;
    let dir = log(n, &mut rng);
    let mut wanted: Vec<u64> = (0..400).map(|_| rng.u64(0..n)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut reader = Reader::open(dir.path(), 0).unwrap();
    for &at in &wanted {
        reader.seek(at).unwrap();
        let record = reader.next().unwrap().expect("record");
        assert_eq!((record.offset, record.data), (at, &payload(at)[..]));
    }
}

#[test]
fn a_damaged_frame_is_reported_when_read_not_when_stepped_over() {
    let mut rng = fastrand::Rng::with_seed(3);
    let n = 2_000;
    let dir = log(n, &mut rng);
    let first = dir.path().join(format!("{:020}.wal", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    // A byte deep in the first segment's body area (past the segment and frame headers).
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let mut reader = Reader::open(dir.path(), 0).unwrap();
    let mut damaged = None;
    for offset in 0..n {
        reader.seek(offset).unwrap();
        if let Err(e) = reader.next() {
            damaged = Some((offset, e.to_string()));
            break;
        }
    }
    let (offset, message) = damaged.expect("the damage is reported");
    assert!(message.contains(&first.display().to_string()), "{message}");
    // Records in later segments stay readable by seeking past the damage.
    let later = n - 1;
    assert!(later > offset);
    let mut reader = Reader::open(dir.path(), 0).unwrap();
    reader.seek(later).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().data, payload(later));
}
