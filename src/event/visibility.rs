//! Which records count. A Vision archive is all-or-nothing: its row records are
//! valid only between the file's first row and its `VisionFileIngested` marker.
//! Rows a crash left without a marker, or rows of an aborted attempt, never
//! reach the lake. When Binance re-publishes an archive (another SHA-256), the
//! new marker names the old version, whose rows then stop counting. When
//! `bml wal repair` declared records lost inside a file's range (or its marker
//! with them), the file is no longer whole in the log: none of its rows count,
//! and the appender fetches it again. Every reader of the log (materializer,
//! audit, dump) asks here.

use std::collections::HashMap;
use std::ops::Range;

use super::{Event, Record, RecordClass, Sha256, Source};

/// The committed ranges of Vision rows, built from the markers in the log.
#[derive(Debug, Default, Clone)]
pub struct Visibility {
    committed: HashMap<(String, Sha256), Vec<Range<u64>>>,
    /// Offsets of the markers that replaced a version of a file.
    replaced: HashMap<(String, Sha256), Vec<u64>>,
    /// Ranges of offsets a repair declared lost.
    lost: Vec<Range<u64>>,
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
                self.observe_marker(&m.file, m.sha256, m.first_offset, offset, m.replaces);
            }
        }
    }

    /// Takes note of one marker: `file` at `sha256` has rows in
    /// `first_offset..offset` and replaces the version `replaces`, if any.
    pub fn observe_marker(
        &mut self,
        file: &str,
        sha256: Sha256,
        first_offset: u64,
        offset: u64,
        replaces: Option<Sha256>,
    ) {
        self.committed
            .entry((file.to_string(), sha256))
            .or_default()
            .push(first_offset..offset);
        if let Some(old) = replaces {
            self.replaced
                .entry((file.to_string(), old))
                .or_default()
                .push(offset);
        }
    }

    /// Takes note of offsets a repair declared lost: a file whose rows or
    /// marker lay there is no longer committed.
    pub fn observe_lost(&mut self, lost: Range<u64>) {
        self.lost.push(lost);
    }

    /// True if some lost range touches `first..=last`.
    pub fn touches_lost(&self, first: u64, last: u64) -> bool {
        overlaps(&self.lost, first, last)
    }

    /// True if the record at `offset` is valid: always for coverage records and
    /// for REST/WebSocket data; for Vision rows, inside a committed range that no
    /// later marker replaced.
    pub fn admits(&self, offset: u64, record: &Record) -> bool {
        self.admits_class(offset, record.class(), &record.source)
    }

    /// [`Visibility::admits`] from what a record's envelope says: its class
    /// and its source.
    pub fn admits_class(&self, offset: u64, class: RecordClass, source: &Source) -> bool {
        match source {
            Source::Vision { file, sha256 } if class == RecordClass::Data => {
                let key = (file.clone(), *sha256);
                let replaced_after = |end: u64| {
                    self.replaced
                        .get(&key)
                        .is_some_and(|at| at.iter().any(|&m| m >= end))
                };
                self.committed.get(&key).is_some_and(|ranges| {
                    ranges.iter().any(|r| {
                        r.contains(&offset)
                            && !replaced_after(r.end)
                            && !self.touches_lost(r.start, r.end)
                    })
                })
            }
            _ => true,
        }
    }

    /// Whether the Vision row record at `offset`, of archive `file` with
    /// digest `sha256`, is outside every range a marker committed: then no
    /// reader can see it, as of any offset, ever (a later attempt's marker
    /// commits only rows from its own first offset on, which is past the
    /// log's end when it starts). Only such rows may be compacted away.
    pub fn never_visible(&self, offset: u64, file: &str, sha256: Sha256) -> bool {
        self.committed
            .get(&(file.to_string(), sha256))
            .is_none_or(|ranges| !ranges.iter().any(|r| r.contains(&offset)))
    }
}

/// True if one of `ranges` shares an offset with `first..=last`.
pub fn overlaps(ranges: &[Range<u64>], first: u64, last: u64) -> bool {
    ranges.iter().any(|r| r.start <= last && first < r.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(file: &str, sha: u8) -> Record {
        Record {
            symbol: "BTCUSDT".into(),
            source: Source::Vision {
                file: file.into(),
                sha256: Sha256([sha; 32]),
            },
            received_ns: 0,
            events: Vec::new(),
        }
    }

    #[test]
    fn rows_count_between_their_first_offset_and_marker_until_replaced() {
        let mut v = Visibility::new();
        let f = "BTCUSDT-1m-2024-03-01.zip";
        v.observe_marker(f, Sha256([1; 32]), 10, 20, None);
        assert!(!v.admits(9, &row(f, 1)));
        assert!(v.admits(10, &row(f, 1)) && v.admits(19, &row(f, 1)));
        assert!(
            !v.admits(20, &row(f, 1)),
            "after the marker: another attempt"
        );
        assert!(
            !v.admits(15, &row(f, 2)),
            "another version, never committed"
        );
        // Binance re-published the file: version 2 replaces version 1.
        v.observe_marker(f, Sha256([2; 32]), 30, 40, Some(Sha256([1; 32])));
        assert!(!v.admits(15, &row(f, 1)));
        assert!(v.admits(35, &row(f, 2)));
        // Version 1 ingested again after that: its new rows count again.
        v.observe_marker(f, Sha256([1; 32]), 50, 60, None);
        assert!(v.admits(55, &row(f, 1)) && !v.admits(15, &row(f, 1)));
    }

    #[test]
    fn a_file_with_lost_records_in_its_range_does_not_count() {
        let mut v = Visibility::new();
        let f = "BTCUSDT-1m-2024-03-01.zip";
        v.observe_marker(f, Sha256([1; 32]), 10, 20, None);
        v.observe_marker("other.zip", Sha256([1; 32]), 21, 30, None);
        v.observe_lost(20..21);
        assert!(!v.admits(15, &row(f, 1)), "its marker was lost");
        assert!(v.admits(25, &row("other.zip", 1)));
        v.observe_lost(5..11);
        assert!(!v.admits(15, &row(f, 1)));
        assert!(v.admits(25, &row("other.zip", 1)), "untouched");
    }
}
