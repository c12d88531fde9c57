//! `bml wal …`: look at the log as it is on disk.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::{exit, Outcome, Ui};
use crate::event::{Record, RecordClass, Visibility};

#[derive(Debug, Subcommand)]
pub(super) enum WalCommand {
    /// Segments, first and next offset, size on disk.
    Stat,
    /// Check every checksum and the offset sequence of the whole log. Lists each
    /// damaged record (segment file, byte position, offsets) and exits with 3 if
    /// there is any. Safe beside a running writer.
    Verify,
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
}

pub(super) fn run(cmd: &WalCommand, dir: &Path, ui: &Ui) -> Outcome {
    if !dir.is_dir() {
        bail!(
            "no log at {} (nothing has been ingested into this data dir yet)",
            dir.display()
        );
    }
    match cmd {
        WalCommand::Stat => stat(dir),
        WalCommand::Verify => verify(dir, ui),
        WalCommand::Dump { from, limit, raw } => dump(dir, *from, *limit, *raw),
    }
}

/// Opening the log as its writer creates it if needed and recovers a torn tail.
pub(super) fn init_state(data_dir: &Path) -> Outcome {
    let dir = &crate::eventlog::wal_dir(data_dir);
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
    let lost = recovery
        .truncated
        .as_ref()
        .is_some_and(|t| t.damaged_frame.is_some());
    Ok(
        if damage.is_empty() && recovery.problems.is_empty() && !lost {
            exit::OK
        } else {
            exit::FOUND_PROBLEMS
        },
    )
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

fn verify(dir: &Path, ui: &Ui) -> Outcome {
    let total = bml_wal::stat(dir)?.bytes;
    let bar = ui.bytes_bar(total, "verifying");
    let report = bml_wal::verify_with_progress(dir, |done| bar.set_position(done))
        .with_context(|| format!("verifying the log at {}", dir.display()))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(out, "BAD  {problem}")?;
    }
    writeln!(
        out,
        "{}: {} segments, {} records, {} bytes, next offset {}, {} problem(s)",
        if report.is_clean() {
            "clean"
        } else {
            "DAMAGED"
        },
        report.segments,
        report.records,
        report.bytes,
        report.next_offset,
        report.problems.len()
    )?;
    Ok(if report.is_clean() {
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
        let Some(record) = reader.next()? else { break };
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
        |offset, record| {
            visibility.observe(offset, &record);
            Ok(())
        },
    )?;
    Ok(visibility)
}
