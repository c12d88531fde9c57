//! `bml materialize`: from the log to the lake and the ledger.
//!
//! 1. Extend the offset index to the log's end ([`index::extend`]).
//! 2. Choose the hours to derive: those reached by a record at or after the
//!    starting offset (the checkpoint, or `--from N`), plus partitions written
//!    under another schema or lake root (stale).
//! 3. For each, read exactly the records its index entry lists, keep the visible
//!    ones, collect the hour's facts, build its rows, and commit the partition if
//!    its bytes changed; record it, its findings and its provenance in the ledger.
//! 4. Recompute the watermarks of the symbols touched; move the checkpoint to the
//!    log's end.
//!
//! Files are committed before the ledger says so, and the checkpoint moves last:
//! a crash anywhere leaves complete files, and the next run redoes the same hours
//! (rewriting nothing that is already right).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use sha2::Digest;

use super::collect::collect_hour;
use super::hour::{build_hour, HOUR_MS, MINUTE_MS};
use super::index;
use crate::event::{Record, Visibility};
use crate::eventlog::RecordReader;
use crate::lake;
use crate::ledger::{Finding, Ledger, Partition};
use crate::schema::schema_hash;

/// Commit the ledger (lazily) after this many hours.
const HOURS_PER_COMMIT: usize = 64;

/// What to derive, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Re-derive the hours reached by records at this offset or later; `None`
    /// means from the checkpoint.
    pub from: Option<u64>,
    /// The lake root.
    pub lake_root: PathBuf,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The offset it started from.
    pub from: u64,
    /// The log's end, now the checkpoint.
    pub head: u64,
    /// Records newly indexed.
    pub indexed: u64,
    /// Symbol-hours derived.
    pub hours: u64,
    /// Partitions whose file was written (new or changed).
    pub written: u64,
    /// Partitions derived again with identical bytes (not rewritten).
    pub unchanged: u64,
    /// Hours with facts but no complete minute (no file).
    pub empty: u64,
    /// Rows in the partitions derived.
    pub rows: u64,
    /// Findings recorded for the hours derived.
    pub findings: u64,
    /// Records read to derive them.
    pub records_read: u64,
    /// Events in those records.
    pub events_read: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// How a run reports progress: told the number of hours, then each hour done.
pub trait Progress {
    /// Indexing reached `offset` of a log ending at `head`.
    fn indexing(&mut self, offset: u64, head: u64);
    /// `total` hours are to be derived.
    fn deriving(&mut self, total: u64);
    /// One more hour is done.
    fn derived(&mut self, symbol: &str, hour: i64);
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn indexing(&mut self, _: u64, _: u64) {}
    fn deriving(&mut self, _: u64) {}
    fn derived(&mut self, _: &str, _: i64) {}
}

/// Runs the materializer over the log of `data_dir`.
pub fn run(
    data_dir: &Path,
    options: &Options,
    progress: &mut dyn Progress,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let ledger = Ledger::open(data_dir)?;
    let head = bml_wal::stat(&crate::eventlog::wal_dir(data_dir))
        .map(|s| s.next_offset)
        .unwrap_or(0);
    let extended = index::extend(data_dir, &ledger, |offset| progress.indexing(offset, head))?;
    let head = extended.head;
    let from = match options.from {
        Some(n) if n > head => bail!("--from {n} is past the log's end (offset {head})"),
        Some(n) => n,
        None => ledger.checkpoint()?,
    };
    let lake_root = options.lake_root.display().to_string();
    let moved = ledger.lake_root()?.is_some_and(|r| r != lake_root);
    let mut hours: BTreeSet<(String, i64)> = ledger
        .hours_reached_since(if moved { 0 } else { from })?
        .into_iter()
        .collect();
    let current = schema_hash();
    for ((symbol, hour), p) in ledger.partitions()? {
        if p.schema_hash != current {
            hours.insert((symbol, hour));
        }
    }

    let mut visibility = Visibility::new();
    for (file, offset, m) in ledger.vision_markers()? {
        visibility.observe_marker(&file, m.sha256, m.first_offset, offset, m.replaces);
    }
    let mut summary = Summary {
        from,
        head,
        indexed: extended.records,
        hours: hours.len() as u64,
        ..Summary::default()
    };
    progress.deriving(summary.hours);
    let mut reader = RecordReader::open(data_dir)?;
    let mut batch = ledger.batch()?;
    let mut since_commit = 0;
    for (symbol, hour) in &hours {
        let (partition, findings) = derive_hour(
            &ledger,
            &mut reader,
            &visibility,
            &options.lake_root,
            symbol,
            *hour,
            &mut summary,
        )?;
        batch.put_partition(symbol, *hour, &partition, &findings)?;
        since_commit += 1;
        if since_commit == HOURS_PER_COMMIT {
            std::mem::replace(&mut batch, ledger.batch()?).commit_lazily()?;
            since_commit = 0;
        }
        progress.derived(symbol, *hour);
    }
    batch.commit_lazily()?;

    let mut batch = ledger.batch()?;
    let symbols: BTreeSet<&str> = hours.iter().map(|(s, _)| s.as_str()).collect();
    let partitions = ledger.partitions()?;
    for symbol in symbols {
        batch.set_watermark(symbol, watermark(&partitions, symbol))?;
    }
    batch.set_lake_root(&lake_root)?;
    batch.set_checkpoint(head)?;
    batch.commit()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Derives one symbol-hour: its partition entry and findings (the file, if any,
/// is committed before this returns).
fn derive_hour(
    ledger: &Ledger,
    reader: &mut RecordReader,
    visibility: &Visibility,
    lake_root: &Path,
    symbol: &str,
    hour: i64,
    summary: &mut Summary,
) -> anyhow::Result<(Partition, Vec<Finding>)> {
    lake::remove_stale_temporaries(lake_root, symbol, hour)?;
    let offsets = ledger.index(symbol, hour)?;
    let mut records: Vec<Record> = Vec::with_capacity(offsets.len());
    let mut fed = Vec::with_capacity(offsets.len());
    for &offset in &offsets {
        let record = reader.read(offset)?;
        summary.records_read += 1;
        summary.events_read += record.events.len() as u64;
        if record.symbol == symbol && visibility.admits(offset, &record) {
            fed.push(offset);
            records.push(record);
        }
    }
    let (mut facts, conflicts) = collect_hour(hour, &records);
    let sources: BTreeSet<String> = records.iter().map(|r| r.source.to_string()).collect();
    // The facts are copies: the records' memory goes before the hour is built.
    drop(records);
    let hour_end = hour + HOUR_MS;
    facts.liquidation_coverage = ledger
        .stream_spans(symbol)?
        .into_iter()
        .filter(|(stream, _)| stream.ends_with("@forceOrder"))
        .map(|(_, span)| span.first..span.last + 1)
        .filter(|r| r.start < hour_end && hour < r.end)
        .collect();
    let out = build_hour(&facts);

    let mut findings: Vec<Finding> = Vec::new();
    if !facts.klines.is_empty() {
        findings.extend(out.incomplete.iter().map(|(minute, missing)| Finding {
            minute: *minute,
            check: "incomplete minute".into(),
            detail: format!("not written, missing: {}", missing.join(", ")),
        }));
    }
    findings.extend(out.findings.iter().map(|f| Finding {
        minute: f.minute,
        check: f.check.into(),
        detail: f.detail.clone(),
    }));
    findings.extend(conflicts.iter().map(|c| Finding {
        minute: hour,
        check: "conflict".into(),
        detail: format!("{}: kept {}, dropped {}", c.key, c.kept, c.dropped),
    }));
    let minutes = out.rows.iter().fold(0u64, |bits, row| {
        bits | 1 << ((row.timestamp - hour) / MINUTE_MS)
    });
    let mut partition = Partition {
        path: None,
        rows: out.rows.len() as u32,
        minutes,
        schema_hash: schema_hash(),
        content_hash: None,
        offsets: (
            fed.first().copied().unwrap_or(0),
            fed.last().copied().unwrap_or(0),
            fed.len() as u64,
        ),
        sources: sources.into_iter().collect(),
        findings: findings.len() as u32,
    };
    summary.rows += out.rows.len() as u64;
    summary.findings += findings.len() as u64;
    if out.rows.is_empty() {
        lake::remove_partition(lake_root, symbol, hour)?;
        summary.empty += 1;
        return Ok((partition, findings));
    }
    let bytes = lake::encode(&out.rows)?;
    let content_hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let path = lake::partition_path(lake_root, symbol, hour);
    let relative = path
        .strip_prefix(lake_root)
        .unwrap_or(&path)
        .display()
        .to_string();
    let previous = ledger.partition(symbol, hour)?;
    let on_disk = std::fs::metadata(&path).map(|m| m.len()).ok();
    let same = previous.as_ref().is_some_and(|p| {
        p.content_hash == Some(content_hash) && p.path.as_deref() == Some(relative.as_str())
    }) && on_disk == Some(bytes.len() as u64);
    if same {
        summary.unchanged += 1;
    } else {
        lake::commit_partition(lake_root, symbol, hour, &bytes)?;
        summary.written += 1;
    }
    partition.path = Some(relative);
    partition.content_hash = Some(content_hash);
    Ok((partition, findings))
}

/// The start of the last minute of the symbol's unbroken run of written minutes,
/// counted from its first written minute.
pub fn watermark(partitions: &BTreeMap<(String, i64), Partition>, symbol: &str) -> Option<i64> {
    let mut mark: Option<i64> = None;
    for ((s, hour), p) in partitions.range((symbol.to_string(), i64::MIN)..) {
        if s != symbol {
            break;
        }
        if p.minutes == 0 {
            if mark.is_some() {
                break;
            }
            continue;
        }
        // The run enters an hour only at its first minute, right after the mark.
        let start = match mark {
            None => p.minutes.trailing_zeros(),
            Some(m) if m + MINUTE_MS == *hour => 0,
            Some(_) => break,
        };
        let run = (p.minutes >> start).trailing_ones();
        if run == 0 {
            break;
        }
        mark = Some(hour + i64::from(start + run - 1) * MINUTE_MS);
        if start + run < 60 {
            break;
        }
    }
    mark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(list: &[(i64, u64)]) -> BTreeMap<(String, i64), Partition> {
        list.iter()
            .map(|&(h, minutes)| {
                let p = Partition {
                    path: None,
                    rows: minutes.count_ones(),
                    minutes,
                    schema_hash: [0; 32],
                    content_hash: None,
                    offsets: (0, 0, 0),
                    sources: Vec::new(),
                    findings: 0,
                };
                (("BTCUSDT".to_string(), h * HOUR_MS), p)
            })
            .collect()
    }

    const ALL: u64 = (1 << 60) - 1;

    #[test]
    fn the_watermark_is_the_end_of_the_first_unbroken_run() {
        let minute = |h: i64, m: i64| h * HOUR_MS + m * MINUTE_MS;
        assert_eq!(watermark(&hours(&[]), "BTCUSDT"), None);
        assert_eq!(watermark(&hours(&[(5, 0)]), "BTCUSDT"), None);
        assert_eq!(
            watermark(&hours(&[(5, ALL), (6, ALL)]), "BTCUSDT"),
            Some(minute(6, 59))
        );
        // The first stored minute may be inside an hour.
        assert_eq!(
            watermark(&hours(&[(5, ALL << 10 & ALL), (6, ALL)]), "BTCUSDT"),
            Some(minute(6, 59))
        );
        // A missing minute stops it; so does a missing hour or an hour without rows.
        assert_eq!(
            watermark(
                &hours(&[(5, ALL), (6, ALL & !(1 << 7)), (7, ALL)]),
                "BTCUSDT"
            ),
            Some(minute(6, 6))
        );
        assert_eq!(
            watermark(&hours(&[(5, ALL), (7, ALL)]), "BTCUSDT"),
            Some(minute(5, 59))
        );
        assert_eq!(
            watermark(&hours(&[(4, 0), (5, ALL), (6, 0), (7, ALL)]), "BTCUSDT"),
            Some(minute(5, 59))
        );
        assert_eq!(watermark(&hours(&[(5, ALL)]), "ETHUSDT"), None);
    }
}
