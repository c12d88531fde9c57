//! `bml audit`: the lake and the ledger proved against the log (`audit`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap::Args;

use super::ingest::parse_time;
use super::{exit, Outcome, Ui};
use crate::audit::{self, Problem, Report};
use crate::lake::Lake;

#[derive(Debug, Args)]
pub(super) struct AuditArgs {
    /// Only these symbols, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    symbols: Vec<String>,
    /// Only the hours from this time (UTC): YYYY-MM-DD, YYYY-MM-DDTHH:MM, or
    /// epoch ms.
    #[arg(long, value_parser = parse_time)]
    start: Option<i64>,
    /// Only the hours before this time, same forms.
    #[arg(long, value_parser = parse_time)]
    end: Option<i64>,
    /// Print the report as one JSON document (docs/audit.md) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the report as one self-contained HTML page (no network
    /// needed to view it): a coverage heatmap per column class (symbol-day ×
    /// hour, coloured by source or gap reason), the problems, the
    /// reconciliation and the lag.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Make the lake and the ledger what the log says: rewrite divergent and
    /// missing files (atomically), remove strays and temporaries, put the
    /// derived ledger entries and watermarks back. Damage in the log itself
    /// is `bml wal repair`'s. Exit 0 when everything found was repaired.
    #[arg(long)]
    repair: bool,
    /// Hours derived in parallel (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
}

pub(super) fn run(args: &AuditArgs, data_dir: &Path, lake: &Lake, ui: &Ui) -> Outcome {
    let options = audit::Options {
        lake: lake.clone(),
        symbols: args.symbols.iter().map(|s| s.to_uppercase()).collect(),
        hours: match (args.start, args.end) {
            (None, None) => None,
            (start, end) => Some(start.unwrap_or(i64::MIN)..end.unwrap_or(i64::MAX)),
        },
        jobs: args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
        repair: args.repair,
    };
    let report = audit::run(data_dir, &options, &ui.bars())?;
    if let Some(file) = &args.html {
        write_page(file, &audit::html::page(&report, &lake.location()))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["problems"] = report.problems().into();
        doc["unrepaired"] = report.unrepaired().into();
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        table(&report, lake, &mut out)?;
    }
    Ok(if report.unrepaired() == 0 {
        exit::OK
    } else {
        exit::FOUND_PROBLEMS
    })
}

/// Writes the page whole or not at all: a temporary beside `file`, renamed
/// over it.
fn write_page(file: &Path, page: &str) -> anyhow::Result<()> {
    let name = file
        .file_name()
        .map_or("audit.html".into(), |n| n.to_string_lossy());
    let temporary = file.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, page)
        .and_then(|()| std::fs::rename(&temporary, file))
        .with_context(|| format!("writing {}", file.display()))
        .inspect_err(|_| drop(std::fs::remove_file(&temporary)))
}

fn table(report: &Report, lake: &Lake, out: &mut dyn Write) -> std::io::Result<()> {
    let log = &report.log;
    let state = if log.problems.is_empty() {
        "clean"
    } else {
        "DAMAGED"
    };
    writeln!(
        out,
        "log     {state}: {} segments, {} records, next offset {}",
        log.segments, log.records, log.next_offset
    )?;
    for problem in &log.problems {
        writeln!(out, "  BAD  {problem}")?;
    }
    if !log.problems.is_empty() {
        writeln!(out, "  `bml wal repair` moves the damage out of the log")?;
    }
    let l = &report.lake;
    match &l.skipped {
        Some(why) => writeln!(out, "lake    not checked: {why}")?,
        None => {
            writeln!(
                out,
                "lake    {}: {} partitions derived afresh from the log as of offset {} and compared with {}",
                verdict(&l.problems),
                l.partitions,
                l.as_of,
                lake.location()
            )?;
            if l.behind > 0 {
                writeln!(
                    out,
                    "  the log holds {} records not materialized yet (`bml materialize`): not audited",
                    l.behind
                )?;
            }
        }
    }
    problems(&l.problems, out)?;
    writeln!(out, "ledger  {}", verdict(&report.ledger.problems))?;
    problems(&report.ledger.problems, out)?;
    coverage(&report.coverage, out)?;
    reconciliation(&report.reconciliation, out)?;
    for lag in &report.lag {
        writeln!(
            out,
            "lag     {}: watermark {}, {} minutes behind now",
            lag.symbol, lag.watermark, lag.minutes
        )?;
    }
    let found = report.problems();
    if found == 0 {
        writeln!(out, "audit: clean")
    } else {
        let counts: Vec<String> =
            audit::counts(&[&l.problems[..], &report.ledger.problems[..]].concat())
                .into_iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
        writeln!(
            out,
            "audit: {found} problems ({}{}), {} repaired, {} left",
            counts.join(", "),
            if log.problems.is_empty() {
                String::new()
            } else {
                format!(
                    "{}{} in the log",
                    if counts.is_empty() { "" } else { ", " },
                    log.problems.len()
                )
            },
            found - report.unrepaired(),
            report.unrepaired()
        )
    }
}

/// Per symbol, each class's minutes by source over the audited days, then
/// the gaps by symbol, class and reason (the JSON has them per day).
fn coverage(days: &[audit::DayCoverage], out: &mut dyn Write) -> std::io::Result<()> {
    let mut symbols: BTreeMap<&str, Vec<&audit::DayCoverage>> = BTreeMap::new();
    for day in days {
        symbols.entry(&day.symbol).or_default().push(day);
    }
    for (symbol, days) in &symbols {
        let minutes: u32 = days.iter().map(|d| d.minutes).sum();
        writeln!(
            out,
            "coverage {symbol}: {} to {}, {} days, {minutes} minutes (a minute may have several sources)",
            days[0].day,
            days[days.len() - 1].day,
            days.len()
        )?;
        writeln!(
            out,
            "  {:<17} {:<19} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "class", "support", "vision", "rest", "live", "quiet", "covered"
        )?;
        let mut gaps: BTreeMap<(usize, &str), (u32, Vec<&str>)> = BTreeMap::new();
        for (i, first) in days[0].classes.iter().enumerate() {
            let sum = |f: fn(&audit::ClassMinutes) -> u32| -> u32 {
                days.iter().map(|d| f(&d.classes[i])).sum()
            };
            let covered = sum(|c| c.covered);
            writeln!(
                out,
                "  {:<17} {:<19} {:>8} {:>8} {:>8} {:>8} {:>7.1}%",
                first.class,
                first.support,
                sum(|c| c.vision),
                sum(|c| c.rest),
                sum(|c| c.live),
                sum(|c| c.quiet),
                100.0 * f64::from(covered) / f64::from(minutes.max(1))
            )?;
            for day in days {
                for gap in &day.classes[i].gaps {
                    let entry = gaps.entry((i, gap.reason.as_str())).or_default();
                    entry.0 += gap.minutes;
                    entry.1.push(&day.day);
                }
            }
        }
        for ((i, reason), (minutes, on)) in gaps {
            let when = if on.len() == 1 {
                on[0].to_string()
            } else {
                format!("{} days, {} to {}", on.len(), on[0], on[on.len() - 1])
            };
            writeln!(
                out,
                "  GAP  {}: {minutes} minutes ({when}): {reason}",
                days[0].classes[i].class
            )?;
        }
    }
    Ok(())
}

/// The facts two sources held, per symbol, kind and sources over the audited
/// days, and the first conflicts field by field.
fn reconciliation(r: &audit::Reconciliation, out: &mut dyn Write) -> std::io::Result<()> {
    if r.days.is_empty() {
        return Ok(());
    }
    writeln!(out, "reconciliation ({})", r.rule)?;
    let mut totals: BTreeMap<(&str, &str, &str), (u64, u64, usize)> = BTreeMap::new();
    for d in &r.days {
        let entry = totals.entry((&d.symbol, &d.kind, &d.sources)).or_default();
        entry.0 += d.equal;
        entry.1 += d.conflicting;
        entry.2 += 1;
    }
    for ((symbol, kind, sources), (equal, conflicting, days)) in totals {
        writeln!(
            out,
            "  {symbol} {kind} held by {sources}: {equal} equal, {conflicting} conflicting ({days} days)"
        )?;
    }
    for c in &r.first_conflicts {
        writeln!(out, "  CONFLICT {} {}: {}", c.symbol, c.hour, c.detail)?;
    }
    Ok(())
}

fn verdict(problems: &[Problem]) -> String {
    if problems.is_empty() {
        "clean".into()
    } else {
        format!("{} PROBLEMS", problems.len())
    }
}

fn problems(problems: &[Problem], out: &mut dyn Write) -> std::io::Result<()> {
    for p in problems {
        writeln!(
            out,
            "  {:<12} {}: {}{}",
            p.kind.to_uppercase(),
            p.what,
            p.detail,
            if p.repaired { " [repaired]" } else { "" }
        )?;
    }
    Ok(())
}
