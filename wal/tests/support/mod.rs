//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod mutated_log;

use std::path::{Path, PathBuf};

use bml_wal::{Reader, Result};

/// Reads every record from `offset` to the live end.
pub fn read_from(dir: &Path, offset: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut reader = Reader::open(dir, offset)?;
    let mut out = Vec::new();
    while let Some(r) = reader.next()? {
        out.push((r.offset, r.data.to_vec()));
    }
    Ok(out)
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
