//! Which records count. A Vision archive is all-or-nothing: its row records are
//! valid only between the file's first row and its `VisionFileIngested` marker.
//! Rows a crash left without a marker, or rows of an aborted attempt, never
//! reach the lake. Every reader of the log (materializer, audit, dump) asks here.

use std::collections::HashMap;
use std::ops::Range;

use super::{Event, Record, Sha256, Source};

/// The committed ranges of Vision rows, built from the markers in the log.
#[derive(Debug, Default, Clone)]
pub struct Visibility {
    committed: HashMap<(String, Sha256), Vec<Range<u64>>>,
}

impl Visibility {
    /// Nothing committed yet.
    pub fn new() -> Visibility {
        Visibility::default()
    }

    /// Takes note of the markers in the record at `offset`. Feed it every
    /// coverage record before asking about the rows they cover.
    pub fn observe(&mut self, offset: u64, record: &Record) {
        for event in &record.events {
            if let Event::VisionFileIngested(m) = event {
                self.committed
                    .entry((m.file.clone(), m.sha256))
                    .or_default()
                    .push(m.first_offset..offset);
            }
        }
    }

    /// True if the record at `offset` is valid: always for coverage records and
    /// for REST/WebSocket data, only inside a committed range for Vision rows.
    pub fn admits(&self, offset: u64, record: &Record) -> bool {
        match &record.source {
            Source::Vision { file, sha256 } if record.events.iter().all(|e| !e.is_coverage()) => {
                self.committed
                    .get(&(file.clone(), *sha256))
                    .is_some_and(|ranges| ranges.iter().any(|r| r.contains(&offset)))
            }
            _ => true,
        }
    }
}
