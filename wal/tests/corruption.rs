//! Corruption: flip every bit of a small log, one at a time. `verify` must point
//! at the damaged frame every time, and no read may return wrong bytes.

mod support;

use std::fs;

use bml_wal::{verify, Error, Options, ProblemKind, Wal};

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn every_single_bit_flip_is_reported_and_never_read_as_valid() {
    let original = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    let mut frame_starts = vec![24u64];
    {
        let wal = support::unsynced(original.path(), 1 << 20);
        for i in 0..6u64 {
            let batch = vec![
                support::record(i, 10 + i as usize * 7),
                support::record(100 + i, 3),
            ];
            wal.append_batch(&batch).unwrap();
            records.extend(batch);
            let len = fs::metadata(&support::segment_files(original.path())[0])
                .unwrap()
                .len();
            frame_starts.push(len);
        }
    }
    let segment = support::segment_files(original.path())[0].clone();
    let image = fs::read(&segment).unwrap();
    let last_frame = frame_starts[frame_starts.len() - 2];

    for bit in 0..image.len() * 8 {
        let byte = (bit / 8) as u64;
        let mut damaged = image.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        fs::write(&segment, &damaged).unwrap();

        let report = verify(original.path()).unwrap();
        let frame_start = *frame_starts
            .iter()
            .rev()
            .find(|&&s| s <= byte)
            .unwrap_or(&0);
        let expected_position = if byte < 24 { 0 } else { frame_start };
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.position == expected_position),
            "bit {bit}: verify did not point at byte {expected_position}: {:?}",
            report.problems
        );

        let (read, error) = support::read_until_error(original.path());
        for (offset, bytes) in &read {
            assert_eq!(
                bytes, &records[*offset as usize],
                "bit {bit}: wrong bytes at offset {offset}"
            );
        }
        assert!(
            read.len() < records.len(),
            "bit {bit}: damage read past as if valid"
        );

        // Opening as a writer: a damaged header refuses; a last frame whose
        // header no longer verifies is a torn tail, cut into quarantine; a
        // whole frame whose body fails (anywhere, the last one too) is never
        // cut: it is reported, and appends go on after it.
        let whole_last = records.len() as u64 - 2..records.len() as u64;
        let mut expected = records.clone();
        match Wal::open(original.path(), Options::default()) {
            Err(Error::BadSegmentHeader { .. }) => assert!(byte < 24, "bit {bit}"),
            Err(e) => panic!("bit {bit}: {e}"),
            Ok(wal) if byte >= last_frame && byte < last_frame + 24 => {
                let torn = wal.recovery().truncated.clone().expect("cut");
                assert_eq!(wal.next_offset(), whole_last.start);
                assert_eq!(
                    fs::read(&torn.quarantine).unwrap(),
                    &damaged[last_frame as usize..],
                    "bit {bit}: the cut bytes are kept"
                );
                expected.truncate(whole_last.start as usize);
            }
            Ok(wal) => {
                assert!(byte >= 24, "bit {bit}");
                assert_eq!(
                    wal.recovery().truncated,
                    None,
                    "bit {bit}: cut acknowledged records"
                );
                let problem = &wal.recovery().problems[0];
                assert!(matches!(problem.kind, ProblemKind::DamagedFrame(_)));
                if byte >= last_frame {
                    assert_eq!(problem.offsets, whole_last, "bit {bit}");
                }
                assert_eq!(wal.next_offset(), records.len() as u64);
                assert!(
                    matches!(error, Some(Error::Corrupt { .. })),
                    "bit {bit}: {error:?}"
                );
            }
        }
        // `repair` then takes the damage out: everything else reads through.
        let (kept, lost) = support::repair_and_check(original.path(), &expected);
        let lost_count: u64 = lost.iter().map(|r| r.end - r.start).sum();
        assert_eq!(
            kept.len() as u64 + lost_count,
            expected.len() as u64,
            "bit {bit}"
        );
        let _ = fs::remove_dir_all(original.path().join("quarantine"));
    }
}

#[test]
fn damage_in_a_sealed_segment_is_an_error_naming_segment_byte_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let wal = support::unsynced(dir.path(), 200);
    for i in 0..40u64 {
        wal.append(&support::record(i, 30)).unwrap();
    }
    let segments = support::segment_files(dir.path());
    assert!(segments.len() > 3);
    let mut image = fs::read(&segments[1]).unwrap();
    let len = image.len();
    image[len - 5] ^= 0x10;
    fs::write(&segments[1], &image).unwrap();

    let (read, error) = support::read_until_error(dir.path());
    let message = error.expect("an error").to_string();
    let expected_offset = read.len();
    assert!(
        message.contains(&segments[1].display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("offset {expected_offset}")),
        "{message}"
    );
    assert!(message.contains("byte "), "{message}");
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::TruncatedSegment | ProblemKind::DamagedFrame(_)
    ));
    // Appending goes on; readers from past the damage read on.
    assert_eq!(wal.append(b"more").unwrap(), 40);
    let after = support::read_from(dir.path(), 39).unwrap();
    assert_eq!(after.iter().map(|r| r.0).collect::<Vec<_>>(), vec![39, 40]);
}
