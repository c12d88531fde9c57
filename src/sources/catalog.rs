//! What the log already holds, read back from its own coverage records: the
//! Vision archives (re-running a range appends nothing for a file already
//! ingested with the same SHA-256, and a file Binance re-published is ingested
//! again), and the REST ranges read to their end (not fetched again unless
//! asked).
//!
//! Scanning a years-long log at every start would cost minutes, so what was
//! learned is kept in `<data-dir>/index/vision-catalog.bin` together with the log
//! offset it covers; a start reads only the records appended since. The file is
//! derived: delete it and the next start rebuilds it from the log.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::event::{overlaps, Event, RecordClass, Sha256, Source, VisionKind};
use crate::eventlog::{self, Scanned};

/// Bumped whenever the cached layout changes; an unknown version is rebuilt.
const CACHE_VERSION: u32 = 5;

/// Archives known to the log.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    version: u32,
    /// Every record below this offset is reflected here.
    scanned_to: u64,
    ingested: BTreeMap<String, Sha256>,
    /// Archives found missing → when they were last looked for (ms). The
    /// log records a missing archive once; later checks are kept here only
    /// (losing them costs one early re-check, nothing else).
    missing: BTreeMap<String, i64>,
    /// REST ranges read to their end: (symbol, endpoint) → (start, end) ms,
    /// disjoint and not touching (adjacent ranges are merged).
    rest_complete: BTreeMap<(String, String), BTreeSet<(i64, i64)>>,
    /// Offset of the last REST range marker per (symbol, endpoint): the pages
    /// of the next range lie after it.
    rest_last_marker: BTreeMap<(String, String), u64>,
    /// Offsets a repair declared lost.
    lost: Vec<Range<u64>>,
    /// Coverage whose marker survived but whose records lost ranges took
    /// away: archive files and `symbol endpoint start..end` REST ranges.
    voided: BTreeSet<String>,
    /// What the planner recorded as unfillable: (symbol, series) → ranges,
    /// joined.
    unfillable: BTreeMap<(String, VisionKind), Vec<(i64, i64)>>,
}

impl Catalog {
    /// The catalog of the log in `data_dir`: the cached one brought up to date
    /// with the records appended since, or one rebuilt from the whole log when
    /// the cache is absent, unreadable, or ahead of the log.
    pub fn load(data_dir: &Path) -> anyhow::Result<Catalog> {
        let next = eventlog::head(data_dir)?;
        let mut catalog = std::fs::read(cache_path(data_dir))
            .ok()
            .and_then(|bytes| postcard::from_bytes::<Catalog>(&bytes).ok())
            .filter(|c| c.version == CACHE_VERSION && c.scanned_to <= next)
            .unwrap_or(Catalog {
                version: CACHE_VERSION,
                ..Catalog::default()
            });
        let from = catalog.scanned_to;
        eventlog::scan(
            data_dir,
            from,
            |c| c == RecordClass::Coverage,
            |scanned| {
                let (offset, record) = match scanned {
                    Scanned::Record(offset, record) => (offset, record),
                    Scanned::Lost(range) => {
                        catalog.scanned_to = range.end;
                        catalog.lost.push(range);
                        return Ok(());
                    }
                };
                for event in &record.events {
                    match (event, &record.source) {
                        (Event::VisionFileIngested(m), _) => {
                            if overlaps(&catalog.lost, m.first_offset, offset) {
                                catalog.voided.insert(m.file.clone());
                            } else {
                                catalog.note_ingested(&m.file, m.sha256);
                            }
                        }
                        (Event::VisionFileMissing(_), Source::Vision { file, .. })
                            if !catalog.ingested.contains_key(file) =>
                        {
                            catalog.note_missing(file, record.received_ms());
                        }
                        (Event::Unfillable(u), Source::Planner) => {
                            catalog.note_unfillable(&record.symbol, u.series, u.start_ms..u.end_ms);
                        }
                        (Event::RestRangeComplete(r), _) => {
                            let key = (record.symbol.clone(), r.endpoint.clone());
                            let after = catalog.rest_last_marker.insert(key, offset);
                            let first = after.map_or(0, |m| m + 1);
                            if overlaps(&catalog.lost, first, offset) {
                                catalog.voided.insert(format!(
                                    "{} {} {}..{}",
                                    record.symbol, r.endpoint, r.start_ms, r.end_ms
                                ));
                            } else {
                                catalog.note_rest_complete(
                                    &record.symbol,
                                    &r.endpoint,
                                    r.start_ms..r.end_ms,
                                );
                            }
                        }
                        _ => {}
                    }
                }
                catalog.scanned_to = offset + 1;
                Ok(())
            },
        )?;
        catalog.scanned_to = catalog.scanned_to.max(next);
        Ok(catalog)
    }

    /// The catalog read from the whole log, ignoring the cache (after a
    /// repair changed the log under it).
    pub fn rebuild(data_dir: &Path) -> anyhow::Result<Catalog> {
        match std::fs::remove_file(cache_path(data_dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let path = cache_path(data_dir);
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
        }
        Catalog::load(data_dir)
    }

    /// Writes the catalog, valid for the log up to `log_next_offset` (everything
    /// appended so far must be noted in it). Atomic: a temp file renamed over.
    pub fn save(&mut self, data_dir: &Path, log_next_offset: u64) -> anyhow::Result<()> {
        self.scanned_to = log_next_offset;
        let path = cache_path(data_dir);
        let dir = path.parent().expect("cache path has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, postcard::to_stdvec(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    /// The SHA-256 of the last ingest of `file`, if any.
    pub fn ingested(&self, file: &str) -> Option<Sha256> {
        self.ingested.get(file).copied()
    }

    /// What `before` (the catalog of the same log before a repair) held
    /// complete and this one does not, with [`Catalog::voided`]: archive
    /// files, and REST ranges as `symbol endpoint start..end`.
    pub fn no_longer_complete(&self, before: Option<&Catalog>) -> BTreeSet<String> {
        let mut gone = self.voided.clone();
        let Some(before) = before else {
            return gone;
        };
        for (file, sha) in &before.ingested {
            if self.ingested.get(file) != Some(sha) {
                gone.insert(file.clone());
            }
        }
        for ((symbol, endpoint), ranges) in &before.rest_complete {
            for &(start, end) in ranges {
                if !self.rest_complete(symbol, endpoint, start..end) {
                    gone.insert(format!("{symbol} {endpoint} {start}..{end}"));
                }
            }
        }
        gone
    }

    /// True if the log already says `file` does not exist.
    pub fn known_missing(&self, file: &str) -> bool {
        self.missing.contains_key(file)
    }

    /// When `file` was last found missing (ms), if it is not ingested.
    pub fn missing_checked(&self, file: &str) -> Option<i64> {
        self.missing.get(file).copied()
    }

    /// Records a committed ingest.
    pub fn note_ingested(&mut self, file: &str, sha256: Sha256) {
        self.missing.remove(file);
        self.ingested.insert(file.to_string(), sha256);
    }

    /// Records that `file` was found missing at `checked_ms`.
    pub fn note_missing(&mut self, file: &str, checked_ms: i64) {
        let last = self.missing.entry(file.to_string()).or_insert(checked_ms);
        *last = (*last).max(checked_ms);
    }

    /// Records a REST range read to its end, merged with the ranges it
    /// overlaps or touches (a daemon appends one short range a minute).
    pub fn note_rest_complete(&mut self, symbol: &str, endpoint: &str, range: Range<i64>) {
        if range.is_empty() {
            return;
        }
        let ranges = self
            .rest_complete
            .entry((symbol.to_string(), endpoint.to_string()))
            .or_default();
        let (mut start, mut end) = (range.start, range.end);
        let touching: Vec<(i64, i64)> = ranges
            .iter()
            .copied()
            .filter(|&(s, e)| s <= end && start <= e)
            .collect();
        for (s, e) in touching {
            ranges.remove(&(s, e));
            start = start.min(s);
            end = end.max(e);
        }
        ranges.insert((start, end));
    }

    /// Notes that the log records `range` of `symbol`'s `series` as unfillable.
    pub fn note_unfillable(&mut self, symbol: &str, series: VisionKind, range: Range<i64>) {
        let key = (symbol.to_string(), series);
        let ranges = self.unfillable.entry(key).or_default();
        let joined = crate::time::joined(
            ranges
                .iter()
                .map(|&(a, b)| a..b)
                .chain(std::iter::once(range)),
        );
        *ranges = joined.into_iter().map(|r| (r.start, r.end)).collect();
    }

    /// The parts of `range` of `symbol`'s `series` the log does not record as
    /// unfillable yet.
    pub fn unfillable_unrecorded(
        &self,
        symbol: &str,
        series: VisionKind,
        range: Range<i64>,
    ) -> Vec<Range<i64>> {
        let key = (symbol.to_string(), series);
        let recorded = self.unfillable.get(&key).into_iter().flatten();
        crate::time::uncovered(range, recorded.map(|&(a, b)| a..b))
    }

    /// The parts of `range` the log does not hold `endpoint` of `symbol` read
    /// to their end for, in order.
    pub fn rest_gaps(&self, symbol: &str, endpoint: &str, range: Range<i64>) -> Vec<Range<i64>> {
        let covered = self
            .rest_complete
            .get(&(symbol.to_string(), endpoint.to_string()));
        crate::time::uncovered(range, covered.into_iter().flatten().map(|&(s, e)| s..e))
    }

    /// True if the log holds `endpoint` of `symbol` read to its end over
    /// all of `range`.
    pub fn rest_complete(&self, symbol: &str, endpoint: &str, range: Range<i64>) -> bool {
        self.rest_gaps(symbol, endpoint, range).is_empty()
    }
}

fn cache_path(data_dir: &Path) -> PathBuf {
    crate::data_dir::catalog(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_ranges_merge_and_leave_exactly_the_gaps() {
        let mut c = Catalog::default();
        let (s, e) = ("BTCUSDT", "/fapi/v1/klines");
        c.note_rest_complete(s, e, 10..20);
        c.note_rest_complete(s, e, 30..40);
        assert_eq!(c.rest_gaps(s, e, 0..50), vec![0..10, 20..30, 40..50]);
        assert_eq!(c.rest_gaps(s, e, 12..18), Vec::<Range<i64>>::new());
        assert_eq!(c.rest_gaps(s, e, 15..35), vec![20..30]);
        // Touching ranges merge into one: a daemon's minute-by-minute ranges
        // stay one entry.
        c.note_rest_complete(s, e, 20..30);
        assert_eq!(c.rest_complete[&(s.into(), e.into())].len(), 1);
        assert!(c.rest_complete(s, e, 10..40));
        assert!(!c.rest_complete(s, e, 10..41));
        assert_eq!(c.rest_gaps("ETHUSDT", e, 0..5), vec![0..5]);
        assert_eq!(
            c.rest_gaps(s, "/fapi/v1/aggTrades", 5..5),
            Vec::<Range<i64>>::new()
        );
    }

    #[test]
    fn a_missing_archive_keeps_its_latest_check() {
        let mut c = Catalog::default();
        c.note_missing("f", 20);
        c.note_missing("f", 10);
        assert_eq!(c.missing_checked("f"), Some(20));
        c.note_ingested("f", Sha256([1; 32]));
        assert_eq!(c.missing_checked("f"), None);
    }
}
