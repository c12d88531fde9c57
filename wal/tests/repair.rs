//! `repair`: the damage that a crash does not explain (a missing segment, a
//! zeroed block, a sealed segment cut short, a frame that fails its checksum)
//! is taken out of the live log into quarantine and replaced by lost-range
//! frames, so offsets stay dense and every reader reads through. The golden
//! file pins a repaired segment (its flag, its lost-range frame) byte for byte.

mod support;

use std::fs;
use std::path::Path;

use bml_wal::{repair, Entry, Error, Options, Reader, Wal};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1-repaired");

/// 60 records of 30 bytes in segments of about 200 bytes (3 records each).
fn small_segments(dir: &Path) -> Vec<Vec<u8>> {
    let wal = support::unsynced(dir, 200);
    let records: Vec<Vec<u8>> = (0..60).map(|i| support::record(i, 30)).collect();
    for r in &records {
        wal.append(r).unwrap();
    }
    records
}

#[test]
fn a_missing_segment_becomes_a_lost_range_and_the_log_reads_through() {
    let dir = tempfile::tempdir().unwrap();
    let records = small_segments(dir.path());
    let segments = support::segment_files(dir.path());
    fs::remove_file(&segments[3]).unwrap();
    let (_, error) = support::read_until_error(dir.path());
    assert!(matches!(error, Some(Error::Corrupt { .. })), "{error:?}");

    let (kept, lost) = support::repair_and_check(dir.path(), &records);
    assert_eq!(lost.len(), 1);
    assert_eq!(kept.len() as u64 + (lost[0].end - lost[0].start), 60);
    assert!(segments[3].exists(), "a segment holding the lost range");
    // `next` still stops at the lost range, naming it; `next_entry` reads on.
    let mut reader = Reader::open(dir.path(), 0).unwrap();
    let message = loop {
        match reader.next() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("read past a lost range"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(
        message.contains(&format!("offsets {}..{}", lost[0].start, lost[0].end))
            && message.contains("missing"),
        "{message}"
    );
    // Appends go on at the end; a reader opened inside the lost range starts
    // with the rest of it.
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(wal.append(b"after").unwrap(), 60);
    let mut reader = Reader::open(dir.path(), lost[0].start + 1).unwrap();
    match reader.next_entry().unwrap() {
        Some(Entry::Lost { offsets, .. }) => assert_eq!(offsets, lost[0].start + 1..lost[0].end),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_zeroed_block_and_a_cut_sealed_segment_lose_only_what_they_held() {
    let dir = tempfile::tempdir().unwrap();
    let wal = support::unsynced(dir.path(), 64 << 10);
    let records: Vec<Vec<u8>> = (0..2000).map(|i| support::record(i, 90)).collect();
    for chunk in records.chunks(5) {
        wal.append_batch(chunk).unwrap();
    }
    drop(wal);
    let segments = support::segment_files(dir.path());
    assert!(segments.len() >= 3);
    let mut first = fs::read(&segments[0]).unwrap();
    first[8192..12288].fill(0);
    fs::write(&segments[0], &first).unwrap();
    let second = fs::read(&segments[1]).unwrap();
    fs::write(&segments[1], &second[..second.len() - 100]).unwrap();

    let (kept, lost) = support::repair_and_check(dir.path(), &records);
    // About 4 KiB of 475-byte frames (the frame the block starts in, whose
    // header still verifies, then the zeros up to the next frame), and the
    // last frame of segment 1.
    let (last, zeroed) = lost.split_last().unwrap();
    let zeroed: u64 = zeroed.iter().map(|r| r.end - r.start).sum();
    assert!(
        (40..=55).contains(&zeroed),
        "{zeroed} records for 4 KiB: {lost:?}"
    );
    assert_eq!(last.end - last.start, 5);
    assert_eq!(kept.len() as u64 + zeroed + 5, 2000);
    let quarantined = fs::read_dir(dir.path().join("quarantine")).unwrap().count();
    assert_eq!(quarantined, lost.len(), "each damaged stretch kept");
}

#[test]
fn a_damaged_last_frame_is_kept_until_repair_and_appends_go_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    let records: Vec<Vec<u8>> = (0..4).map(|i| support::record(i, 50)).collect();
    wal.append_batch(&records[..2]).unwrap();
    wal.append_batch(&records[2..]).unwrap();
    drop(wal);
    let segment = support::segment_files(dir.path())[0].clone();
    let mut image = fs::read(&segment).unwrap();
    let len = image.len();
    image[len - 7] ^= 0x40;
    fs::write(&segment, &image).unwrap();

    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(
        wal.recovery().truncated,
        None,
        "an fsynced frame is never cut"
    );
    assert_eq!(wal.recovery().problems[0].offsets, 2..4);
    assert_eq!(wal.next_offset(), 4);
    assert_eq!(wal.append(b"later").unwrap(), 4);
    drop(wal);
    let mut expected = records.clone();
    expected.push(b"later".to_vec());
    let (kept, lost) = support::repair_and_check(dir.path(), &expected);
    assert_eq!(kept, vec![0, 1, 4]);
    assert_eq!((lost.len(), lost[0].clone()), (1, 2..4));
}

#[test]
fn a_repaired_segment_is_byte_for_byte_stable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = support::unsynced(dir.path(), 1 << 20);
    wal.append(b"kept").unwrap();
    wal.append_batch([&b"lost one"[..], b"lost two"]).unwrap();
    wal.append(b"kept too").unwrap();
    drop(wal);
    let segment = support::segment_files(dir.path())[0].clone();
    let mut image = fs::read(&segment).unwrap();
    // The body of the second frame (offsets 1..3): header 24 + frame 32.
    image[24 + 32 + 24 + 6] ^= 1;
    fs::write(&segment, &image).unwrap();
    let report = repair(dir.path()).unwrap();
    assert_eq!(report.lost.len(), 1);
    let name = segment.file_name().unwrap();
    let golden = Path::new(GOLDEN).join(name);
    let written = fs::read(&segment).unwrap();
    if std::env::var_os("BML_BLESS").is_some() {
        fs::create_dir_all(GOLDEN).unwrap();
        fs::write(&golden, &written).unwrap();
    }
    assert_eq!(written, fs::read(&golden).unwrap(), "{}", golden.display());
    let read = support::read_from(Path::new(GOLDEN), 3).unwrap();
    assert_eq!(read, vec![(3, b"kept too".to_vec())]);
}
