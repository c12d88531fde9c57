//! Golden files: a small log written by format version 1, byte for byte. If this
//! fails, the on-disk format changed: that needs a new format version and a
//! reader for the old one, never an edited golden file. (To create golden files
//! for a *new* version: `BML_BLESS=1 cargo test -p bml-wal --test golden`.)

mod support;

use std::path::Path;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1");

fn golden_records() -> Vec<Vec<u8>> {
    vec![
        b"bml".to_vec(),
        Vec::new(),
        b"kline BTCUSDT 1704067200000".to_vec(),
        vec![0xFF; 5],
        b"a record in the second segment".to_vec(),
    ]
}

/// Offsets 0, then 1..4 as one batch, then 4 after the roll to a second segment.
fn write_golden_log(dir: &Path) {
    let wal = support::unsynced(dir, 64);
    let records = golden_records();
    assert_eq!(wal.append(&records[0]).unwrap(), 0);
    assert_eq!(wal.append_batch(&records[1..4]).unwrap(), 1..4);
    assert_eq!(wal.append(&records[4]).unwrap(), 4);
}

#[test]
fn format_v1_is_byte_for_byte_stable() {
    let dir = tempfile::tempdir().unwrap();
    write_golden_log(dir.path());
    let written = support::segment_files(dir.path());
    assert_eq!(written.len(), 2);
    if std::env::var_os("BML_BLESS").is_some() {
        std::fs::create_dir_all(GOLDEN).unwrap();
        for file in &written {
            std::fs::copy(file, Path::new(GOLDEN).join(file.file_name().unwrap())).unwrap();
        }
    }
    for file in &written {
        let golden = Path::new(GOLDEN).join(file.file_name().unwrap());
        assert_eq!(
            std::fs::read(file).unwrap(),
            std::fs::read(&golden).unwrap(),
            "{} differs from {}",
            file.display(),
            golden.display()
        );
    }
}

#[test]
fn golden_v1_log_stays_readable() {
    let read = support::read_from(Path::new(GOLDEN), 0).unwrap();
    let expected: Vec<(u64, Vec<u8>)> = golden_records()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i as u64, r))
        .collect();
    assert_eq!(read, expected);
    assert!(bml_wal::verify(Path::new(GOLDEN)).unwrap().is_clean());
}
