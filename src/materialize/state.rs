//! What `bml status` and `bml show-watermark` report, read from the ledger, and
//! saved by each `materialize` at its end so that they can still answer while a
//! later run holds the ledger (redb admits one process at a time).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::index;
use crate::eventlog;
use crate::lake::{Lake, Listed};
use crate::ledger::Ledger;
use crate::schema::schema_hash;
use crate::time::HOUR_MS;

/// The state of a data dir's log, ledger and lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When it was read (ms, local clock).
    pub as_of_ms: i64,
    /// The log's next offset.
    pub log_head: u64,
    /// The materializer's checkpoint.
    pub checkpoint: u64,
    /// Partitions with a file, under the current schema.
    pub committed: u64,
    /// Partitions with facts but no complete minute.
    pub empty: u64,
    /// Partitions written under another schema.
    pub stale_partitions: u64,
    /// Partitions the ledger names whose file is missing.
    pub missing_files: u64,
    /// Partition files that are not whole Parquet files (cut short, or their
    /// footer damaged): a cheap look at the last bytes, full hashes are `audit`'s.
    #[serde(default)]
    pub damaged_files: u64,
    /// Rows in the partitions.
    pub rows: u64,
    /// Findings recorded.
    pub findings: u64,
    /// The lake root partitions were written under.
    pub lake_root: Option<String>,
    /// Per symbol, the last minute of its unbroken committed run.
    pub watermarks: BTreeMap<String, i64>,
    /// Why the ledger does not describe the log, if it does not.
    pub stale_ledger: Option<String>,
    /// Damage a cheap look at the log's sealed segments finds.
    pub log_damage: Vec<String>,
    /// Offsets `bml wal repair` declared lost, as the ledger knows them.
    #[serde(default)]
    pub lost_records: u64,
    /// Per symbol, the L2 book's health over its hours with depth diffs.
    #[serde(default)]
    pub books: BTreeMap<String, Books>,
    /// Per symbol, the inputs missing from the minutes its lake holds in its
    /// last 24 hours.
    #[serde(default)]
    pub inputs: BTreeMap<String, Inputs>,
}

/// The inputs of a symbol's last 24 hours in the lake (each hour's
/// provenance): which column classes lack their input in minutes the lake
/// holds, and why. `bml audit` has the whole history, day by day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The first hour with minutes in the lake among them (start, ms).
    pub from: i64,
    /// The last (start, ms).
    pub to: i64,
    /// Minutes the lake holds in them.
    pub minutes: u64,
    /// Per column class and reason, the minutes held without its input.
    pub missing: Vec<Missing>,
}

/// Minutes a column class lacks its input, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// The class (`schema::ColumnClass::name`).
    pub class: String,
    /// Why (the planner's reason, or no collector, or no source yet).
    pub reason: String,
    /// How many minutes.
    pub minutes: u64,
}

/// The L2 book's health summed over a symbol's hours (`BookHealth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Books {
    /// Hours with depth diffs.
    pub hours: u64,
    /// Minutes with depth diffs.
    pub minutes_with_diffs: u64,
    /// Minutes in sync at their end.
    pub minutes_in_sync: u64,
    /// Breaks.
    pub breaks: u64,
    /// Resyncs after them.
    pub resyncs: u64,
    /// Time from breaks to resyncs, summed (ms).
    pub resync_ms: i64,
}

/// Reads the state from `ledger` (open) and the log of `data_dir`. The lake
/// looked at is `lake` if the ledger's partitions were written there, else
/// the one the ledger names (an object store reached through the standard
/// AWS environment).
pub fn read(data_dir: &Path, ledger: &Ledger, lake: Option<&Lake>) -> anyhow::Result<State> {
    let log_head = eventlog::head(data_dir)?;
    let lake_root = ledger.lake_root()?;
    let current = schema_hash();
    let mut state = State {
        as_of_ms: chrono::Utc::now().timestamp_millis(),
        log_head,
        checkpoint: ledger.checkpoint()?,
        committed: 0,
        empty: 0,
        stale_partitions: 0,
        missing_files: 0,
        damaged_files: 0,
        rows: 0,
        findings: 0,
        lake_root: lake_root.clone(),
        watermarks: ledger.watermarks()?,
        stale_ledger: index::stale_reason(data_dir, ledger)?,
        log_damage: eventlog::sealed_damage(data_dir)?,
        lost_records: ledger.lost_ranges()?.iter().map(|r| r.end - r.start).sum(),
        books: BTreeMap::new(),
        inputs: BTreeMap::new(),
    };
    let partitions = ledger.partitions()?;
    let symbols: std::collections::BTreeSet<&String> = partitions.keys().map(|(s, _)| s).collect();
    for symbol in symbols {
        if let Some(inputs) = recent_inputs(ledger, &partitions, symbol)? {
            state.inputs.insert(symbol.clone(), inputs);
        }
        let hours = ledger.books(symbol)?;
        if hours.is_empty() {
            continue;
        }
        let sum = state.books.entry(symbol.clone()).or_default();
        for h in hours.values() {
            sum.hours += 1;
            sum.minutes_with_diffs += u64::from(h.minutes_with_diffs);
            sum.minutes_in_sync += u64::from(h.minutes_in_sync);
            sum.breaks += u64::from(h.breaks);
            sum.resyncs += u64::from(h.resyncs);
            sum.resync_ms += h.resync_ms;
        }
    }
    let opened;
    let lake = match (lake, &lake_root) {
        (Some(lake), Some(root)) if lake.location() == *root => Some(lake),
        (_, Some(root)) => {
            opened = Lake::open(root, None)?;
            Some(&opened)
        }
        (_, None) => None,
    };
    // One listing of the lake, not a look per partition: in an object store
    // that is a few paged LISTs instead of a request per hour.
    let (found, etags) = match lake {
        Some(lake) if partitions.values().any(|p| p.path.is_some()) => {
            let found: BTreeMap<String, Listed> = lake
                .list_under(crate::lake::DATASET)?
                .into_iter()
                .map(|l| (l.key.clone(), l))
                .collect();
            (found, ledger.etags()?)
        }
        _ => Default::default(),
    };
    for ((symbol, hour), p) in &partitions {
        match (p.schema_hash == current, &p.path) {
            (false, _) => state.stale_partitions += 1,
            (true, Some(_)) => state.committed += 1,
            (true, None) => state.empty += 1,
        }
        if let (Some(lake), Some(key)) = (lake, &p.path) {
            let etag = etags.get(&(symbol.clone(), *hour)).map(String::as_str);
            match found.get(key) {
                None => state.missing_files += 1,
                Some(listed) if !lake.looks_whole(listed, etag) => state.damaged_files += 1,
                Some(_) => {}
            }
        }
        state.rows += u64::from(p.rows);
        state.findings += u64::from(p.findings);
    }
    Ok(state)
}

/// The inputs of `symbol`'s last 24 hours with a file; `None` without one.
fn recent_inputs(
    ledger: &Ledger,
    partitions: &BTreeMap<(String, i64), crate::ledger::Partition>,
    symbol: &str,
) -> anyhow::Result<Option<Inputs>> {
    let last = partitions
        .range((symbol.to_string(), i64::MIN)..=(symbol.to_string(), i64::MAX))
        .filter(|(_, p)| p.path.is_some())
        .map(|((_, hour), _)| *hour)
        .next_back();
    let Some(last) = last else {
        return Ok(None);
    };
    let mut inputs = Inputs {
        from: last,
        to: last,
        ..Inputs::default()
    };
    for (hour, provenance) in ledger.symbol_provenance(symbol, last - 23 * HOUR_MS..last + 1)? {
        let held = partitions
            .get(&(symbol.to_string(), hour))
            .map_or(0, |p| p.minutes);
        if held != 0 {
            inputs.from = inputs.from.min(hour);
        }
        inputs.minutes += u64::from(held.count_ones());
        for class in &provenance.coverage {
            for (reason, bits) in class.gaps() {
                let minutes = u64::from((bits & held).count_ones());
                if minutes == 0 {
                    continue;
                }
                let name = class.class.name();
                match inputs
                    .missing
                    .iter_mut()
                    .find(|m| m.class == name && m.reason == reason)
                {
                    Some(m) => m.minutes += minutes,
                    None => inputs.missing.push(Missing {
                        class: name.to_string(),
                        reason,
                        minutes,
                    }),
                }
            }
        }
    }
    Ok(Some(inputs))
}

fn saved_path(data_dir: &Path) -> PathBuf {
    crate::data_dir::saved_status(data_dir)
}

/// Saves `state` atomically (a temp file renamed over the last one).
pub fn save(data_dir: &Path, state: &State) -> anyhow::Result<()> {
    let path = saved_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(state).context("encoding the state")?;
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
}

/// The state the last `materialize` saved, if any.
pub fn saved(data_dir: &Path) -> anyhow::Result<Option<State>> {
    let path = saved_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
