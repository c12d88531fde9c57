//! `bml wal …`: look at the log as it is on disk.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::{exit, Outcome, Ui};
use crate::event::{Record, RecordClass, Visibility};
use crate::eventlog::Scanned;
use crate::progress::{Progress, Unit};
use crate::sources::catalog::Catalog;

#[derive(Debug, Subcommand)]
pub(super) enum WalCommand {
    /// Segments, first and next offset, size on disk.
    Stat,
    /// Check every checksum and the offset sequence of the whole log. Lists each
    /// damaged record (segment file, byte position, offsets) and exits with 3 if
    /// there is any. Safe beside a running writer.
    Verify {
        /// Also decode every record (checksums prove the bytes are the ones
        /// written, decoding that this bml reads them): prints the events
        /// decoded and the rate, and names any record that does not decode.
        #[arg(long)]
        decode: bool,
    },
    /// Take damage out of the log, explicitly (nothing does it on its own):
    /// every damaged frame, stretch of garbage, sealed segment cut short or
    /// missing segment is moved to `DATA/wal/quarantine/` and replaced by a
    /// lost range, so offsets stay dense and replays read on. Prints what was
    /// lost and the Vision archives and REST ranges that `bml ingest` will
    /// therefore fetch again; the next `bml materialize` rebuilds the ledger.
    /// Run it with no other bml writing to the data dir (it takes the log's
    /// writer lock). Exits 0 once the log reads through.
    Repair,
    /// Reclaim the bytes of records no reader will ever see: the rows of
    /// Vision archives that a killed or failed ingest left without their
    /// "ingested" marker. Each is replaced by an empty record in the sealed
    /// segments (every offset stays, every other record is untouched), one
    /// segment at a time, atomically. Takes the log's writer lock: run it with
    /// no ingest going. The lake does not change
    Compact,
    /// Print records decoded: offset, symbol, source, events. Vision rows whose
    /// archive never got its "ingested" marker are flagged UNCOMMITTED (readers
    /// ignore them).
    Dump {
        /// First offset to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many records at most.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Print length and bytes in hex instead of decoding.
        #[arg(long)]
        raw: bool,
    },
    /// Print the first offset received at or after TIME: the log as it stood
    /// at TIME ends there, so `bml materialize --as-of OFFSET --lake-dir DIR`
    /// rebuilds the lake of that time. Prints the log's end when every record
    /// was received before TIME.
    OffsetAt {
        /// UTC: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z], or epoch ms.
        #[arg(value_parser = super::ingest::parse_time)]
        time: i64,
    },
}

pub(super) fn run(cmd: &WalCommand, data_dir: &Path, ui: &Ui) -> Outcome {
    let dir = &crate::data_dir::wal(data_dir);
    if !dir.is_dir() {
        bail!(
            "no log at {} (nothing has been ingested into this data dir yet)",
            dir.display()
        );
    }
    match cmd {
        WalCommand::Stat => stat(dir),
        WalCommand::Verify { decode } => verify(data_dir, *decode, ui),
        WalCommand::Repair => repair(dir),
        WalCommand::Compact => compact(data_dir),
        WalCommand::Dump { from, limit, raw } => dump(dir, *from, *limit, *raw),
        WalCommand::OffsetAt { time } => {
            let at = crate::eventlog::offset_at(data_dir, time * crate::time::NS_PER_MS)?;
            let offset = match at {
                Some(offset) => offset,
                None => crate::eventlog::head(data_dir)?,
            };
            println!("{offset}");
            Ok(exit::OK)
        }
    }
}

/// Opening the log as its writer creates it if needed and recovers a torn tail.
pub(super) fn init_state(data_dir: &Path) -> Outcome {
    let dir = &crate::data_dir::wal(data_dir);
    let wal = bml_wal::Wal::open(dir, bml_wal::Options::default())
        .with_context(|| format!("opening the log at {}", dir.display()))?;
    let recovery = wal.recovery();
    crate::eventlog::report_recovery(recovery);
    let id = crate::eventlog::log_id(data_dir)?;
    println!(
        "log {id} ready at {} (next offset {})",
        dir.display(),
        wal.next_offset()
    );
    let ledger = crate::ledger::Ledger::open(data_dir)?;
    println!(
        "ledger ready at {} (checkpoint {})",
        ledger.path().display(),
        ledger.checkpoint()?
    );
    let damage = crate::eventlog::sealed_damage(data_dir)?;
    for problem in &damage {
        println!("{problem}");
    }
    Ok(if damage.is_empty() && recovery.problems.is_empty() {
        exit::OK
    } else {
        exit::FOUND_PROBLEMS
    })
}

fn stat(dir: &Path) -> Outcome {
    let stat =
        bml_wal::stat(dir).with_context(|| format!("reading the log at {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "log            {}", dir.display())?;
    writeln!(out, "segments       {}", stat.segments.len())?;
    writeln!(out, "first offset   {}", stat.first_offset)?;
    writeln!(out, "next offset    {}", stat.next_offset)?;
    writeln!(
        out,
        "bytes          {} ({})",
        stat.bytes,
        indicatif::BinaryBytes(stat.bytes)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<28} {:>20} {:>14}",
        "segment", "base offset", "bytes"
    )?;
    for seg in &stat.segments {
        let name = seg.path.file_name().unwrap_or_default().to_string_lossy();
        writeln!(out, "{name:<28} {:>20} {:>14}", seg.base, seg.bytes)?;
    }
    Ok(exit::OK)
}

fn verify(data_dir: &Path, decode: bool, ui: &Ui) -> Outcome {
    let dir = &crate::data_dir::wal(data_dir);
    let total = bml_wal::stat(dir)?.bytes;
    let bars = ui.bars();
    let bar = bars.bar("verifying", total, Unit::Bytes);
    let mut shown = 0;
    let report = bml_wal::verify_with_progress(dir, |done| {
        bar.inc(done.saturating_sub(shown));
        shown = shown.max(done);
    })
    .with_context(|| format!("verifying the log at {}", dir.display()))?;
    drop(bar);
    let mut out = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(out, "BAD  {problem}")?;
    }
    writeln!(
        out,
        "{}: {} segments, {} records, {} lost in repairs, {} bytes, next offset {}, {} problem(s)",
        if report.is_clean() {
            "clean"
        } else {
            "DAMAGED"
        },
        report.segments,
        report.records,
        report.lost,
        report.bytes,
        report.next_offset,
        report.problems.len()
    )?;
    if !report.is_clean() {
        writeln!(
            out,
            "`bml wal repair` moves the damage to quarantine so the log reads on"
        )?;
    }
    if !report.is_clean() {
        return Ok(exit::FOUND_PROBLEMS);
    }
    if decode {
        return decode_all(data_dir, total, ui);
    }
    Ok(exit::OK)
}

/// Decodes every record of a log whose checksums all hold, counting events;
/// the first record that does not decode is named (exit 3).
fn decode_all(data_dir: &Path, total: u64, ui: &Ui) -> Outcome {
    let bars = ui.bars();
    let bar = bars.bar("decoding", total, Unit::Bytes);
    let started = std::time::Instant::now();
    let (mut records, mut events) = (0u64, 0u64);
    let scanned = crate::eventlog::scan(
        data_dir,
        0,
        |_| true,
        |scanned| {
            if let Scanned::Record(_, record) = scanned {
                records += 1;
                events += record.events.len() as u64;
            }
            Ok(())
        },
    );
    drop(bar);
    let seconds = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    match scanned {
        Ok(()) => {
            writeln!(
                out,
                "decoded: {records} records, {events} events in {seconds:.2} s ({:.0} events/s)",
                events as f64 / seconds.max(1e-9)
            )?;
            Ok(exit::OK)
        }
        Err(e) => {
            writeln!(out, "BAD  {e:#}")?;
            Ok(exit::FOUND_PROBLEMS)
        }
    }
}

fn compact(data_dir: &Path) -> Outcome {
    let report = crate::eventlog::compact(data_dir)?;
    let mut out = std::io::stdout().lock();
    for (segment, why) in &report.skipped {
        writeln!(
            out,
            "SKIPPED {}: damaged ({why}); `bml wal repair` first",
            segment.display()
        )?;
    }
    writeln!(
        out,
        "compacted: {} records emptied in {} segments, {} → {} bytes ({} reclaimed)",
        report.blanked,
        report.segments_written.len(),
        report.bytes_before,
        report.bytes_after,
        report.bytes_before - report.bytes_after
    )?;
    Ok(if report.skipped.is_empty() {
        exit::OK
    } else {
        exit::FOUND_PROBLEMS
    })
}

fn dump(dir: &Path, from: u64, limit: u64, raw: bool) -> Outcome {
    const SHOWN: usize = 64;
    let visibility = if raw {
        Visibility::new()
    } else {
        committed_vision_rows(dir)?
    };
    let mut reader = bml_wal::Reader::open(dir, from)?;
    let mut out = std::io::stdout().lock();
    for _ in 0..limit {
        let record = match reader.next_entry()? {
            None => break,
            Some(bml_wal::Entry::Lost { offsets, note }) => {
                writeln!(
                    out,
                    "{:>12}  LOST offsets {}..{} (repaired): {note}",
                    offsets.start, offsets.start, offsets.end
                )?;
                continue;
            }
            Some(bml_wal::Entry::Record(record)) if crate::event::is_compacted(record.data) => {
                writeln!(
                    out,
                    "{:>12}  COMPACTED (no reader could see it)",
                    record.offset
                )?;
                continue;
            }
            Some(bml_wal::Entry::Record(record)) => record,
        };
        if raw {
            let hex: String = record
                .data
                .iter()
                .take(SHOWN)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if record.data.len() > SHOWN { "…" } else { "" };
            writeln!(
                out,
                "{:>12}  {:>8} B  {hex}{more}",
                record.offset,
                record.data.len()
            )?;
            continue;
        }
        let decoded = Record::decode(record.data)
            .with_context(|| format!("decoding the record at offset {}", record.offset))?;
        let flag = if visibility.admits(record.offset, &decoded) {
            ""
        } else {
            "  UNCOMMITTED"
        };
        let source = &decoded.source;
        writeln!(
            out,
            "{:>12}  {}  {source}  {} event(s){flag}",
            record.offset,
            decoded.symbol,
            decoded.events.len()
        )?;
        for event in decoded.events.iter().take(3) {
            writeln!(out, "{:>14}{event:?}", "")?;
        }
        if decoded.events.len() > 3 {
            writeln!(out, "{:>14}… {} more", "", decoded.events.len() - 3)?;
        }
    }
    Ok(exit::OK)
}

/// The committed ranges of Vision rows, from every coverage record in the log.
fn committed_vision_rows(dir: &Path) -> anyhow::Result<Visibility> {
    let data_dir = dir.parent().unwrap_or(dir);
    let mut visibility = Visibility::new();
    crate::eventlog::scan(
        data_dir,
        0,
        |c| c == RecordClass::Coverage,
        |scanned| {
            match scanned {
                Scanned::Record(offset, record) => visibility.observe(offset, &record),
                Scanned::Lost(lost) => visibility.observe_lost(lost),
            }
            Ok(())
        },
    )?;
    Ok(visibility)
}

fn repair(dir: &Path) -> Outcome {
    let data_dir = dir.parent().unwrap_or(dir);
    // What the log held complete before, to tell what the repair took away
    // (a lost range can hold an archive's marker itself). Damage can keep it
    // from being read: then only what the repaired log shows is reported.
    let before = Catalog::load(data_dir).ok();
    let report =
        bml_wal::repair(dir).with_context(|| format!("repairing the log at {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    if report.segments_written.is_empty() {
        writeln!(
            out,
            "the log at {} is whole: nothing to repair",
            dir.display()
        )?;
        return Ok(exit::OK);
    }
    for lost in &report.lost {
        writeln!(
            out,
            "LOST  offsets {}..{} ({} records): {}",
            lost.offsets.start,
            lost.offsets.end,
            lost.offsets.end - lost.offsets.start,
            lost.note
        )?;
    }
    for file in &report.quarantined {
        writeln!(out, "kept  {}", file.display())?;
    }
    // The log's content changed under everything derived from it: a new id
    // makes every ledger derived from the old content stale (the next
    // materialize rebuilds it), and the coverage catalog is read anew.
    crate::eventlog::renew_log_id(data_dir)?;
    let mut catalog = Catalog::rebuild(data_dir)?;
    let head = bml_wal::stat(dir)?.next_offset;
    catalog.save(data_dir, head)?;
    let lost: u64 = report
        .lost
        .iter()
        .map(|l| l.offsets.end - l.offsets.start)
        .sum();
    writeln!(
        out,
        "repaired: {} segment file(s) written, {lost} record(s) lost in {} range(s); the log \
         reads through to offset {head}",
        report.segments_written.len(),
        report.lost.len()
    )?;
    let gone = catalog.no_longer_complete(before.as_ref());
    if gone.is_empty() {
        writeln!(
            out,
            "no archive or REST range the log held completely was touched"
        )?;
    } else {
        writeln!(
            out,
            "no longer complete in the log, fetched again by `bml ingest`:"
        )?;
        for what in &gone {
            writeln!(out, "  {what}")?;
        }
    }
    if before.is_none() {
        writeln!(
            out,
            "(the log could not be read before the repair: archives whose marker was lost are \
             not listed, but `bml ingest` fetches every archive the log does not hold whole)"
        )?;
    }
    writeln!(
        out,
        "next: `bml ingest …` over the days above, then `bml materialize` (it rebuilds the \
         ledger from the repaired log)"
    )?;
    Ok(exit::OK)
}
