//! `bml materialize`, `bml show-watermark`, `bml status`: the lake and the ledger.

use std::io::Write;
use std::path::Path;

use clap::Args;

use super::{exit, Outcome, Ui};
use crate::lake::Lake;
use crate::ledger::{Ledger, LedgerError};
use crate::materialize::run;
use crate::materialize::state::{self, State};
use crate::time::{utc_hour, utc_minute};

#[derive(Debug, Args)]
pub(super) struct MaterializeArgs {
    /// Re-derive every partition reached by a record at this log offset or later
    /// (reading all the records those partitions need). `--from 0` re-derives
    /// everything. Default: the checkpoint, i.e. only what the log gained since
    /// the last run (plus partitions made stale by a new schema).
    #[arg(long, value_name = "OFFSET")]
    from: Option<u64>,
    /// Hours derived in parallel. Each job holds one hour's facts in memory
    /// (about 60 MB for a busy symbol). Default: one per core.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Delete the ledger unread and rebuild it from the log (it is derived
    /// state: nothing is lost), then derive every partition again. For a
    /// damaged ledger; a ledger that no longer matches its log is rebuilt
    /// without asking.
    #[arg(long)]
    rebuild_ledger: bool,
    /// Time travel: derive the lake as the log stood when it ended at this
    /// offset (records at or after it ignored) into --lake-dir, which must
    /// not be the data dir's lake; the ledger and the lake of the data dir
    /// are not touched. The files are byte-identical to those a plain
    /// materialize wrote when the log ended there (`bml wal offset-at TIME`
    /// finds the offset of a time).
    #[arg(long, value_name = "OFFSET", conflicts_with_all = ["from", "rebuild_ledger"])]
    as_of: Option<u64>,
}

#[derive(Debug, Args)]
pub(super) struct WatermarkArgs {
    /// Only this symbol.
    #[arg(long)]
    symbol: Option<String>,
}

pub(super) fn materialize(
    args: &MaterializeArgs,
    data_dir: &Path,
    lake: &Lake,
    ui: &Ui,
) -> Outcome {
    if args.as_of.is_some() && is_the_data_dirs_lake(data_dir, lake)? {
        return super::usage(
            "--as-of derives a lake of its own: give --lake-dir DIR (or --lake-url), not the data dir's lake",
        );
    }
    // The as-of ledger is thrown away with this dir.
    let scratch = tempfile::tempdir()?;
    let options = run::Options {
        from: args.from,
        lake: lake.clone(),
        layout: lake.layout(),
        days_closed_before: lake.days_closed_before(chrono::Utc::now().timestamp_millis()),
        jobs: args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
        rebuild_ledger: args.rebuild_ledger,
        rederive: Default::default(),
        as_of: args.as_of.map(|end| run::AsOf {
            end,
            ledger: scratch.path().join("ledger.redb"),
            files: true,
        }),
    };
    let bars = ui.bars();
    let summary = match run::run(data_dir, &options, &bars) {
        Ok(summary) => summary,
        Err(e) => {
            if let Some(e @ run::MaterializeError::StartPastEnd { .. }) = e.downcast_ref() {
                return super::usage(&e.to_string());
            }
            if let Some(e @ run::MaterializeError::AsOfPastEnd { .. }) = e.downcast_ref() {
                return super::usage(&e.to_string());
            }
            return Err(e);
        }
    };
    let seconds = summary.elapsed.as_secs_f64();
    let mut out = std::io::stdout().lock();
    if let Some(end) = args.as_of {
        writeln!(
            out,
            "the lake as the log stood at offset {end} (a throwaway ledger; the data dir's is untouched); {} files the log did not hold then removed",
            summary.orphans_removed
        )?;
    } else if let Some(reason) = &summary.rebuilt {
        writeln!(
            out,
            "ledger rebuilt from the log: {reason}; {} partition files the log no longer holds removed",
            summary.orphans_removed
        )?;
    }
    writeln!(
        out,
        "materialized offsets {}..{} ({} new records indexed) into {}",
        summary.from,
        summary.head,
        summary.indexed,
        lake.location()
    )?;
    writeln!(
        out,
        "  {} hours: {} written, {} unchanged, {} without a complete minute{}",
        summary.hours,
        summary.written,
        summary.unchanged,
        summary.without_minute.len(),
        hours_without_minute(&summary.without_minute)
    )?;
    writeln!(
        out,
        "  {} rows, {} findings; {} record reads ({} events; a record reaching several hours is read for each) in {seconds:.2} s ({:.0} events/s)",
        summary.rows,
        summary.findings,
        summary.records_read,
        summary.events_read,
        summary.events_read as f64 / seconds.max(1e-9)
    )?;
    Ok(exit::OK)
}

/// Whether `lake` is the lake the data dir's ledger writes (or its default
/// one).
fn is_the_data_dirs_lake(data_dir: &Path, lake: &Lake) -> anyhow::Result<bool> {
    let same = |other: &str| match lake.local_root() {
        Some(dir) => {
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            canonical(Path::new(other)) == canonical(dir)
        }
        None => other == lake.location(),
    };
    if same(
        &crate::data_dir::default_lake(data_dir)
            .display()
            .to_string(),
    ) {
        return Ok(true);
    }
    if !crate::data_dir::ledger(data_dir).exists() {
        return Ok(false);
    }
    let root = Ledger::open(data_dir)?.lake_root()?;
    Ok(root.is_some_and(|r| same(&r)))
}

/// Which hours some record reached without filling a minute: a REST range or a
/// statistic running past the last kline, a funding time before the first one.
/// They get no file; naming a few says why the hour count is larger than the
/// files written.
fn hours_without_minute(hours: &[(String, i64)]) -> String {
    const SHOWN: usize = 4;
    if hours.is_empty() {
        return String::new();
    }
    let mut named: Vec<String> = hours
        .iter()
        .take(SHOWN)
        .map(|(symbol, hour)| format!("{symbol} {}", utc_hour(*hour)))
        .collect();
    if hours.len() > SHOWN {
        named.push(format!("{} more", hours.len() - SHOWN));
    }
    format!(
        " (records reach them, but no minute of them has its trade, mark and index klines, so no file: {})",
        named.join(", ")
    )
}

pub(super) fn show_watermark(args: &WatermarkArgs, data_dir: &Path, lake: &Lake) -> Outcome {
    let (state, note) = current_state(data_dir, lake)?;
    if let Some(note) = &note {
        eprintln!("note: {note}");
    }
    if let Some(reason) = &state.stale_ledger {
        eprintln!("warning: the ledger does not describe this log ({reason}); these watermarks are not to be trusted until `bml materialize` rebuilds it");
    }
    let damaged = state.missing_files + state.damaged_files + state.log_damage.len() as u64;
    if damaged > 0 {
        eprintln!(
            "warning: `bml status` knows of {damaged} problems in the lake or the log; `bml audit` names each"
        );
    }
    let marks = &state.watermarks;
    let mut out = std::io::stdout().lock();
    let symbols: Vec<String> = match &args.symbol {
        Some(s) => vec![s.clone()],
        None => marks.keys().cloned().collect(),
    };
    if symbols.is_empty() {
        writeln!(out, "no symbol has a committed minute yet")?;
    }
    for symbol in symbols {
        match marks.get(&symbol) {
            Some(&minute) => writeln!(out, "{symbol}\t{}", utc_minute(minute))?,
            None => writeln!(out, "{symbol}\tnone (no committed minute)")?,
        }
    }
    Ok(if state.stale_ledger.is_some() {
        exit::FOUND_PROBLEMS
    } else {
        exit::OK
    })
}

pub(super) fn status(data_dir: &Path, lake: &Lake) -> Outcome {
    let (s, note) = current_state(data_dir, lake)?;
    let mut out = std::io::stdout().lock();
    if let Some(note) = &note {
        writeln!(out, "note            {note}")?;
    }
    writeln!(out, "log head        {}", s.log_head)?;
    writeln!(out, "checkpoint      {}", s.checkpoint)?;
    writeln!(
        out,
        "lag             {} records",
        s.log_head.saturating_sub(s.checkpoint)
    )?;
    writeln!(
        out,
        "partitions      {} committed, {} without a complete minute, {} stale (older schema)",
        s.committed, s.empty, s.stale_partitions
    )?;
    writeln!(out, "rows            {}", s.rows)?;
    writeln!(out, "findings        {}", s.findings)?;
    if s.lost_records > 0 {
        writeln!(
            out,
            "lost            {} records taken out by `bml wal repair` (what they covered is \
             fetched again by `bml ingest`)",
            s.lost_records
        )?;
    }
    if let Some(root) = &s.lake_root {
        writeln!(out, "lake            {root}")?;
    }
    for (symbol, minute) in &s.watermarks {
        writeln!(out, "watermark       {symbol} {}", utc_minute(*minute))?;
    }
    for (symbol, b) in &s.books {
        writeln!(
            out,
            "order book      {symbol} {} hours: {} minutes in sync of {} with depth diffs; {} breaks, {} resynced ({:.1} min out of sync)",
            b.hours,
            b.minutes_in_sync,
            b.minutes_with_diffs,
            b.breaks,
            b.resyncs,
            b.resync_ms as f64 / 60_000.0
        )?;
    }
    for (symbol, inputs) in &s.inputs {
        let missing: Vec<String> = inputs
            .missing
            .iter()
            .map(|m| format!("{} lacks {} ({})", m.class, m.minutes, m.reason))
            .collect();
        writeln!(
            out,
            "inputs          {symbol} {} to {}, {} minutes in the lake: {}",
            utc_hour(inputs.from),
            utc_hour(inputs.to),
            inputs.minutes,
            if missing.is_empty() {
                "every column's input present".to_string()
            } else {
                missing.join("; ")
            }
        )?;
    }
    let mut problems = false;
    if s.missing_files > 0 {
        writeln!(
            out,
            "lake files      {} MISSING; `bml materialize --from 0` writes them again",
            s.missing_files
        )?;
        problems = true;
    }
    if s.damaged_files > 0 {
        writeln!(
            out,
            "lake files      {} DAMAGED (not whole Parquet files); `bml materialize --from 0` \
             writes them again",
            s.damaged_files
        )?;
        problems = true;
    }
    if let Some(reason) = &s.stale_ledger {
        writeln!(
            out,
            "ledger          STALE: {reason}; the next `bml materialize` rebuilds it from the log"
        )?;
        problems = true;
    }
    for damage in &s.log_damage {
        writeln!(out, "log             {damage}")?;
        problems = true;
    }
    if problems {
        writeln!(
            out,
            "audit           `bml audit` checks every file against the log and names each \
             problem; `bml audit --repair` mends the lake and the ledger"
        )?;
    }
    Ok(if problems {
        exit::FOUND_PROBLEMS
    } else {
        exit::OK
    })
}

/// The ledger, to read: read-only where this user cannot write.
pub(super) fn open_for_reading(data_dir: &Path) -> anyhow::Result<Ledger> {
    match Ledger::open(data_dir) {
        Err(e) if matches!(e.downcast_ref(), Some(LedgerError::NotWritable { .. })) => {
            Ledger::open_read_only(data_dir)
        }
        opened => opened,
    }
}

/// The state from the ledger; while another process holds the ledger (a
/// running materialize), the state the last materialize saved, with a note.
fn current_state(data_dir: &Path, lake: &Lake) -> anyhow::Result<(State, Option<String>)> {
    let path = crate::data_dir::ledger(data_dir);
    if !path.exists() {
        anyhow::bail!(
            "no ledger at {} (run `bml init-state` or `bml materialize` first)",
            path.display()
        );
    }
    match open_for_reading(data_dir) {
        Ok(ledger) => Ok((state::read(data_dir, &ledger, Some(lake))?, None)),
        Err(e) if matches!(e.downcast_ref(), Some(LedgerError::InUse { .. })) => {
            let saved = state::saved(data_dir)?
                .ok_or_else(|| e.context("and no earlier materialize saved its state"))?;
            let note = format!(
                "the ledger is in use (a materialize running?): the state its last run saved, as of {}",
                utc_minute(saved.as_of_ms)
            );
            Ok((saved, Some(note)))
        }
        Err(e) => Err(e),
    }
}
