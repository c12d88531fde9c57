//! The property behind the `segment_reader` fuzz target, shared with the normal
//! test suite (`tests/fuzz_corpus.rs`) so that CI exercises it on stable Rust.
//!
//! The input drives two checks:
//! - **raw**: the bytes are a segment file as they are. Reading, verifying and
//!   opening it as a writer must not panic and must terminate.
//! - **mutated**: the bytes choose records and batches, a valid log is written,
//!   then the last segment may be cut short and up to three bits flipped in what
//!   remains. Every record a reader returns must equal the one appended at that
//!   offset: CRC-32 detects every error of three bits or fewer in frames this
//!   small, so returning anything else would mean handing out unverified bytes.
//!   Every flipped bit must show up in `verify`; a cut alone is what a crash
//!   leaves (a shorter log, at most a torn tail) and must show as nothing worse.

use std::path::Path;

use bml_wal::{verify, Options, Reader, SyncPolicy, Wal};

/// Frames stay under CRC-32's Hamming-distance-4 length (about 11 KiB), where
/// every error of up to three bits is detected.
const MAX_RECORD: usize = 200;
const MAX_RECORDS: usize = 40;

/// Runs both checks on one input. Panics (the fuzzer's signal) on a violation.
pub fn check(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    check_raw(dir.path(), data);
    let dir = tempfile::tempdir().expect("temp dir");
    check_mutated(dir.path(), data);
}

fn check_raw(dir: &Path, data: &[u8]) {
    let segment = dir.join(format!("{:020}.wal", 0));
    std::fs::write(&segment, data).expect("write segment");
    let mut reader = Reader::open(dir, 0).expect("open reader");
    for _ in 0..=data.len() {
        match reader.next() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let _ = verify(dir);
    let _ = Wal::open(dir, no_sync());
}

fn check_mutated(dir: &Path, data: &[u8]) {
    let mut input = Input(data);
    let count = input.byte() as usize % MAX_RECORDS;
    let segment_bytes = 64 + u64::from(input.byte()) * 8;
    let mut records: Vec<Vec<u8>> = Vec::with_capacity(count);
    {
        let wal = Wal::open(
            dir,
            Options {
                sync: SyncPolicy::Never,
                segment_bytes,
            },
        )
        .expect("open writer");
        while records.len() < count {
            let batch = 1 + input.byte() as usize % 4;
            let start = records.len();
            for _ in 0..batch.min(count - start) {
                let len = input.byte() as usize % MAX_RECORD;
                records.push(input.take(len));
            }
            let got = wal.append_batch(&records[start..]).expect("append");
            assert_eq!(got, start as u64..records.len() as u64);
        }
    }
    let files = super::segment_files(dir);
    let mut images: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let cut = input.byte() % 4 == 0;
    if cut {
        let last = images.last_mut().expect("a segment");
        let at = input.u32() as usize % (last.len() + 1);
        last.truncate(at);
    }
    let total: usize = images.iter().map(Vec::len).sum();
    let wanted = if total == 0 { 0 } else { input.byte() % 4 };
    // Distinct bits: flipping one bit twice would be no damage at all.
    let bits: std::collections::BTreeSet<usize> = (0..wanted)
        .map(|_| input.u32() as usize % (total * 8))
        .collect();
    let flips = bits.len();
    for bit in bits {
        flip(&mut images, bit);
    }
    for (file, image) in files.iter().zip(&images) {
        std::fs::write(file, image).unwrap();
    }

    let (read, _error) = super::read_until_error(dir);
    for (offset, bytes) in &read {
        assert_eq!(
            bytes, &records[*offset as usize],
            "reader returned wrong bytes at offset {offset}"
        );
    }
    let report = verify(dir).expect("verify runs");
    if flips > 0 {
        // Every flipped bit lies in the files, so it must show.
        assert!(!report.is_clean(), "{flips} flipped bit(s) went unreported");
    } else if !cut {
        assert!(
            report.is_clean(),
            "clean log reported damaged: {:?}",
            report.problems
        );
        assert_eq!(read.len(), records.len());
    } else {
        // A cut is what a crash leaves: a shorter log, at most with a torn tail.
        assert!(
            report.problems.iter().all(|p| matches!(
                p.kind,
                bml_wal::ProblemKind::TornTail { .. } | bml_wal::ProblemKind::BadSegmentHeader(_)
            )),
            "a cut reported as {:?}",
            report.problems
        );
    }
    let mut expected = records;
    if let Ok(wal) = Wal::open(dir, no_sync()) {
        let next = wal.next_offset();
        let appended = wal.append(b"after").expect("append after recovery");
        assert_eq!(appended, next);
        expected.resize(next as usize, Vec::new());
        expected.push(b"after".to_vec());
    }
    // Whatever the damage, a repair leaves a log that reads through, densely,
    // with every surviving record intact.
    super::repair_and_check(dir, &expected);
}

fn flip(images: &mut [Vec<u8>], mut bit: usize) {
    for image in images {
        if bit < image.len() * 8 {
            image[bit / 8] ^= 1 << (bit % 8);
            return;
        }
        bit -= image.len() * 8;
    }
}

fn no_sync() -> Options {
    Options {
        sync: SyncPolicy::Never,
        ..Options::default()
    }
}

/// Reads fuzzer bytes as a stream of choices; runs out into zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn take(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}
