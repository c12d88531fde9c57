//! Which archives the log already holds, read back from the log's own coverage
//! records: re-running a range appends nothing for a file already ingested with
//! the same SHA-256, and a file Binance re-published is ingested again.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::event::{Event, RecordClass, Sha256};
use crate::eventlog;

/// Archives known to the log.
#[derive(Debug, Default)]
pub struct Catalog {
    ingested: HashMap<String, Sha256>,
    missing: HashSet<String>,
}

impl Catalog {
    /// Scans the coverage records of the log in `data_dir` (data records are
    /// skipped by their class byte, undecoded).
    pub fn load(data_dir: &Path) -> anyhow::Result<Catalog> {
        let mut catalog = Catalog::default();
        eventlog::scan(
            data_dir,
            0,
            |c| c == RecordClass::Coverage,
            |_, record| {
                for event in &record.events {
                    match event {
                        Event::VisionFileIngested(m) => catalog.note_ingested(&m.file, m.sha256),
                        Event::VisionFileMissing(_) => {
                            if let crate::event::Source::Vision { file, .. } = &record.source {
                                if !catalog.ingested.contains_key(file) {
                                    catalog.missing.insert(file.clone());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Ok(())
            },
        )?;
        Ok(catalog)
    }

    /// The SHA-256 of the last ingest of `file`, if any.
    pub fn ingested(&self, file: &str) -> Option<Sha256> {
        self.ingested.get(file).copied()
    }

    /// True if the log already says `file` does not exist.
    pub fn known_missing(&self, file: &str) -> bool {
        self.missing.contains(file)
    }

    /// Records a committed ingest.
    pub fn note_ingested(&mut self, file: &str, sha256: Sha256) {
        self.missing.remove(file);
        self.ingested.insert(file.to_string(), sha256);
    }

    /// Records a missing archive.
    pub fn note_missing(&mut self, file: &str) {
        self.missing.insert(file.to_string());
    }
}
