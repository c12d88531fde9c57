//! `bml ingest …`: the appenders.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::{exit, Outcome, Ui};
use crate::eventlog::EventLog;
use crate::sources::vision::{self, Catalog, Store};

/// Vision's public base for USD-M futures.
const VISION_BASE: &str = "https://data.binance.vision/data/futures/um/";

#[derive(Debug, Subcommand)]
pub(super) enum IngestCommand {
    /// Binance Vision archives (cold history) into the log. Each archive is
    /// checked against its .CHECKSUM before a row is appended, and is
    /// all-or-nothing; archives already in the log with the same SHA-256 are
    /// skipped, re-published ones are ingested again. Exits 1 if any archive failed.
    Vision(VisionArgs),
}

#[derive(Debug, Args)]
pub(super) struct VisionArgs {
    /// Symbols, comma-separated (e.g. BTCUSDT,ETHUSDT).
    #[arg(long, value_delimiter = ',', required = true)]
    symbol: Vec<String>,
    /// First day (UTC), YYYY-MM-DD.
    #[arg(long)]
    start: NaiveDate,
    /// Last day (UTC), inclusive; defaults to --start.
    #[arg(long)]
    end: Option<NaiveDate>,
    /// Archive kinds, comma-separated, Vision's names: klines, markPriceKlines,
    /// indexPriceKlines, premiumIndexKlines, aggTrades, bookTicker, metrics,
    /// bookDepth, fundingRate (monthly). Default: all.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Vision base URL for USD-M futures (point it at a mirror or a local simulator).
    #[arg(long, env = "BML_VISION_URL", default_value = VISION_BASE, conflicts_with = "from_dir")]
    base_url: String,
    /// Read archives from this directory instead of HTTP: Vision's own layout
    /// (daily/…, or data/futures/um/daily/…) or a flat folder of archive names.
    #[arg(long)]
    from_dir: Option<PathBuf>,
}

pub(super) fn run(cmd: &IngestCommand, data_dir: &Path, ui: &Ui) -> Outcome {
    match cmd {
        IngestCommand::Vision(args) => ingest_vision(args, data_dir, ui),
    }
}

fn ingest_vision(args: &VisionArgs, data_dir: &Path, ui: &Ui) -> Outcome {
    let end = args.end.unwrap_or(args.start);
    if end < args.start {
        bail!("--end {end} is before --start {}", args.start);
    }
    let kinds = if args.kinds.is_empty() {
        vision::ALL_KINDS.to_vec()
    } else {
        args.kinds
            .iter()
            .map(|k| vision::kind_from_name(k).ok_or_else(|| anyhow!("unknown archive kind {k:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let store = match &args.from_dir {
        Some(dir) => Store::Dir(dir.clone()),
        None => Store::http(&args.base_url)?,
    };
    let specs = vision::plan(&args.symbol, args.start, end, &kinds);
    let mut log = EventLog::open(data_dir)?;
    let mut catalog = Catalog::load(data_dir)?;
    let summary = vision::ingest(
        &mut log,
        &mut catalog,
        &store,
        &specs,
        &data_dir.join("tmp"),
        &ui.progress(),
    );
    log.commit()?;
    catalog.save(data_dir, log.next_offset())?;

    let mut out = std::io::stdout().lock();
    let failed: Vec<&(String, vision::Outcome)> = summary
        .files
        .iter()
        .filter(|(_, o)| matches!(o, vision::Outcome::Failed(_)))
        .collect();
    for (file, outcome) in &failed {
        if let vision::Outcome::Failed(why) = outcome {
            writeln!(out, "FAILED  {file}: {why}")?;
        }
    }
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "vision: {} archives: {} ingested, {} already in the log, {} missing, {} failed; {} rows, {} in {:.1} s ({:.0} rows/s)",
        summary.files.len(),
        summary.count(|o| matches!(o, vision::Outcome::Ingested { .. })),
        summary.count(|o| matches!(o, vision::Outcome::AlreadyIngested)),
        summary.count(|o| matches!(o, vision::Outcome::Missing)),
        failed.len(),
        summary.rows(),
        indicatif::BinaryBytes(summary.bytes()),
        secs,
        summary.rows() as f64 / secs
    )?;
    Ok(if failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
