//! Crash safety, exhaustively: cut the last segment at every byte position and
//! check that reopening keeps exactly the whole frames and appends continue.

mod support;

use std::fs;

use bml_wal::{Options, SyncPolicy, Wal};

fn no_sync() -> Options {
    Options {
        sync: SyncPolicy::Never,
        segment_bytes: 1 << 20,
    }
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn cutting_the_last_segment_anywhere_keeps_exactly_the_whole_frames() {
    let original = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    // (file length after the append, records whole up to there)
    let mut boundaries = vec![(24u64, 0u64)];
    {
        let wal = Wal::open(original.path(), no_sync()).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        while records.len() < 300 {
            let batch: Vec<Vec<u8>> = (0..rng.usize(1..6))
                .map(|i| support::record(records.len() as u64 + i as u64, rng.usize(0..24)))
                .collect();
            wal.append_batch(&batch).unwrap();
            records.extend(batch);
            let segment = &support::segment_files(original.path())[0];
            boundaries.push((fs::metadata(segment).unwrap().len(), records.len() as u64));
        }
    }
    let segment_name = support::segment_files(original.path())[0]
        .file_name()
        .unwrap()
        .to_owned();
    let image = fs::read(original.path().join(&segment_name)).unwrap();
    assert_eq!(image.len() as u64, boundaries.last().unwrap().0);

    let dir = tempfile::tempdir().unwrap();
    for cut in 0..=image.len() {
        let segment = dir.path().join(&segment_name);
        fs::write(&segment, &image[..cut]).unwrap();
        let (whole_len, whole) = *boundaries
            .iter()
            .rev()
            .find(|b| b.0 <= cut as u64)
            .unwrap_or(&(24, 0));
        let wal = Wal::open(dir.path(), no_sync()).unwrap();
        let recovery = wal.recovery();
        assert_eq!(wal.next_offset(), whole, "cut at byte {cut}");
        if cut < 24 {
            assert!(recovery.rewrote_header, "cut at byte {cut}");
        } else if cut as u64 > whole_len {
            let torn = recovery
                .truncated
                .as_ref()
                .expect("a torn tail is reported");
            assert_eq!(
                (torn.position, torn.bytes, torn.offset),
                (whole_len, cut as u64 - whole_len, whole)
            );
            // Never deleted: moved to quarantine.
            assert_eq!(
                fs::read(&torn.quarantine).unwrap(),
                &image[whole_len as usize..cut],
                "cut at byte {cut}"
            );
        } else {
            assert_eq!(recovery, &bml_wal::Recovery::default(), "cut at byte {cut}");
        }
        assert_eq!(wal.append(b"next").unwrap(), whole, "cut at byte {cut}");
        drop(wal);
        let read = support::read_from(dir.path(), 0).unwrap();
        assert_eq!(read.len() as u64, whole + 1);
        for (offset, bytes) in &read[..whole as usize] {
            assert_eq!(bytes, &records[*offset as usize]);
        }
        assert_eq!(read.last().unwrap().1, b"next");
        fs::remove_file(&segment).unwrap();
    }
}
