//! `bml audit`: the lake proved against the log. The log's every checksum and
//! offset; then the lake derived afresh from the log as of the ledger's
//! checkpoint (a time-travel materialize that keeps each file's content hash
//! in a scratch ledger, not the file), compared file by file with the lake
//! on disk and entry by entry with the ledger; then the ledger's own
//! bookkeeping, and from the fresh derivation's provenance the coverage and
//! the reconciliation of sources (`coverage`). With `repair`, what differs
//! in the lake and the ledger is made what the log says (each file derived
//! again and replaced atomically, strays removed); damage in the log is
//! `bml wal repair`'s.

mod coverage;
pub mod html;

pub use coverage::{
    ClassMinutes, ConflictShown, DayCoverage, Gap, HourCoverage, ReconciledDay, Reconciliation,
    NOTHING, NOT_FETCHED, NO_COLLECTOR, PRECEDENCE,
};

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use sha2::Digest as _;

use crate::lake::{Lake, Layout};
use crate::ledger::{Ledger, Partition, Provenance};
use crate::materialize::run as materialize;
use crate::progress::Progress;
use crate::time::{utc_hour, utc_minute};

/// What to audit.
pub struct Options {
    /// The lake.
    pub lake: Lake,
    /// Only these symbols (all when empty).
    pub symbols: BTreeSet<String>,
    /// Only the hours starting in this range, ms (all when `None`).
    pub hours: Option<Range<i64>>,
    /// Hours derived at once.
    pub jobs: usize,
    /// Make the lake and the ledger what the log says.
    pub repair: bool,
}

/// What the audit found (and repaired): its JSON form is documented in
/// docs/audit.md and kept stable.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The log.
    pub log: LogCheck,
    /// The lake's files.
    pub lake: LakeCheck,
    /// The ledger.
    pub ledger: LedgerCheck,
    /// Per symbol-day and column class, the minutes each source covered and
    /// the gaps with their reasons.
    pub coverage: Vec<DayCoverage>,
    /// Where sources held the same facts: how many agreed, per day and kind.
    pub reconciliation: Reconciliation,
    /// How far behind each symbol's lake is.
    pub lag: Vec<Lag>,
    /// Each audited hour's coverage, for the HTML page (not in the JSON:
    /// `coverage` is its daily sum).
    #[serde(skip)]
    pub hours: Vec<HourCoverage>,
}

/// A symbol's watermark and how far behind now it is.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// The symbol.
    pub symbol: String,
    /// Its watermark, the last minute of the lake's unbroken run (`YYYY-MM-DDTHH:MMZ`).
    pub watermark: String,
    /// Minutes from the minute after it to now.
    pub minutes: i64,
}

/// The log's checksums and offsets.
#[derive(Debug, Default, Serialize)]
pub struct LogCheck {
    /// Segments, records, the next offset.
    pub segments: u64,
    /// Records read.
    pub records: u64,
    /// The log's end.
    pub next_offset: u64,
    /// Each damaged stretch, named (segment file, byte, offsets).
    pub problems: Vec<String>,
}

/// The lake's files against a fresh derivation.
#[derive(Debug, Default, Serialize)]
pub struct LakeCheck {
    /// Why it was not checked, if it was not (a damaged log).
    pub skipped: Option<String>,
    /// The offset the lake was derived as of (the ledger's checkpoint).
    pub as_of: u64,
    /// Records the log holds past it (not materialized yet: not a problem).
    pub behind: u64,
    /// Partitions compared.
    pub partitions: u64,
    /// Files that differ, are missing, or should not be there.
    pub problems: Vec<Problem>,
}

/// The ledger's entries and bookkeeping.
#[derive(Debug, Default, Serialize)]
pub struct LedgerCheck {
    /// Entries that differ from the fresh derivation's, and bookkeeping
    /// that disagrees with itself or the log.
    pub problems: Vec<Problem>,
}

/// One thing found, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `divergent`, `missing`, `stray`, `temporary`, `ledger entry`,
    /// `watermark`, `checkpoint`, `binding`.
    pub kind: &'static str,
    /// The file (relative to the lake root) or the ledger key it is about.
    pub what: String,
    /// In plain words.
    pub detail: String,
    /// `--repair` made it right.
    pub repaired: bool,
}

impl Report {
    /// Problems found.
    pub fn problems(&self) -> usize {
        self.log.problems.len() + self.lake.problems.len() + self.ledger.problems.len()
    }

    /// Problems found and not repaired.
    pub fn unrepaired(&self) -> usize {
        let open = |p: &[Problem]| p.iter().filter(|p| !p.repaired).count();
        self.log.problems.len() + open(&self.lake.problems) + open(&self.ledger.problems)
    }
}

/// Audits the data dir's log, lake and ledger.
pub fn run(data_dir: &Path, options: &Options, progress: &dyn Progress) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let wal = crate::data_dir::wal(data_dir);
    if wal.is_dir() {
        let checked = bml_wal::verify(&wal)
            .with_context(|| format!("verifying the log at {}", wal.display()))?;
        report.log = LogCheck {
            segments: checked.segments as u64,
            records: checked.records,
            next_offset: checked.next_offset,
            problems: checked.problems.iter().map(ToString::to_string).collect(),
        };
    }
    if !report.log.problems.is_empty() {
        report.lake.skipped =
            Some("the log is damaged: `bml wal repair`, then audit again".to_string());
        return Ok(report);
    }
    let ledger = Ledger::open(data_dir)?;
    let as_of = ledger.checkpoint()?;
    report.lake.as_of = as_of;
    report.lake.behind = report.log.next_offset.saturating_sub(as_of);
    if let Some(why) = crate::materialize::index::stale_reason(data_dir, &ledger)? {
        report.ledger.problems.push(Problem {
            kind: "binding",
            what: "ledger".into(),
            detail: format!("it does not describe this log: {why} (`bml materialize` rebuilds it)"),
            repaired: false,
        });
        report.lake.skipped = Some(
            "the ledger does not describe this log: `bml materialize`, then audit again".into(),
        );
        return Ok(report);
    }

    remove_stale_scratch(data_dir)?;
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(data_dir)
        .with_context(|| format!("a scratch dir in {}", data_dir.display()))?;
    let fresh_root = scratch.path().join("lake");
    let fresh_ledger = scratch.path().join("ledger.redb");
    // Laid out as the run audited laid the lake out, closing the same days.
    let layout = ledger
        .lake_layout()?
        .and_then(|name| Layout::from_name(&name))
        .unwrap_or(Layout::Hour);
    let days_closed_before = ledger.days_closed_before()?.unwrap_or(i64::MIN);
    let derive = |files: bool, rederive: BTreeSet<(String, i64)>| {
        materialize::run(
            data_dir,
            &materialize::Options {
                from: files.then_some(as_of),
                lake: Lake::local(&fresh_root),
                layout: Some(layout),
                days_closed_before,
                jobs: options.jobs,
                rebuild_ledger: false,
                rederive,
                as_of: Some(materialize::AsOf {
                    end: as_of,
                    ledger: fresh_ledger.clone(),
                    files,
                }),
            },
            progress,
        )
    };
    // The whole lake derived in memory: the fresh ledger holds each file's
    // content hash, and no second lake is written.
    derive(false, BTreeSet::new()).context("deriving the lake afresh from the log")?;
    let mut repairs = Vec::new();
    {
        let fresh = Ledger::open_at(fresh_ledger.clone())?;
        let me = crate::lake::claims::instance(data_dir)?;
        let compared = Compared {
            options,
            fresh: &fresh,
            ledger: &ledger,
            others: crate::lake::claims::others(&options.lake, &me)?,
        };
        compared.partitions(&mut report, &mut repairs)?;
        compared.strays(&mut report)?;
        compared.watermarks(&mut report)?;
    }
    if !repairs.is_empty() {
        // The files to mend, and only those, derived again with their bytes.
        let hours = repairs.iter().map(|r| r.hour.clone()).collect();
        derive(true, hours).context("deriving the files to repair")?;
        let partitions = ledger.partitions()?;
        for repair in &repairs {
            let bytes = std::fs::read(fresh_root.join(&repair.file))
                .with_context(|| format!("reading the fresh derivation of {}", repair.file))?;
            let stored = options.lake.put(&repair.file, &bytes)?;
            // Every hour the file holds (a day's file holds 24).
            let mut batch = ledger.batch()?;
            for (symbol, hour) in partitions
                .iter()
                .filter(|(_, p)| p.path.as_deref() == Some(repair.file.as_str()))
                .map(|(key, _)| key)
            {
                batch.set_etag(symbol, *hour, stored.etag.as_deref())?;
            }
            batch.commit()?;
            report.lake.problems[repair.problem].repaired = true;
        }
    }
    let fresh = Ledger::open_at(fresh_ledger)?;
    let wanted = |symbol: &str, hour: i64| options.wanted(symbol, hour);
    let provenance = fresh.provenances()?;
    (report.coverage, report.hours) = coverage::coverage(&provenance, wanted);
    report.reconciliation = coverage::reconciliation(&provenance, &fresh, wanted)?;
    report.lag = lag(&ledger, &options.symbols)?;
    if let Some(root) = ledger.lake_root()? {
        if root != options.lake.location() {
            report.ledger.problems.push(Problem {
                kind: "lake root",
                what: "ledger".into(),
                detail: format!(
                    "it describes the lake at {root}, not {}",
                    options.lake.location()
                ),
                repaired: false,
            });
        }
    }
    Ok(report)
}

/// The scratch dirs of fresh derivations (`<data-dir>/.audit-*`).
const SCRATCH_PREFIX: &str = ".audit-";

/// Removes the scratch dirs an audit killed before it could clean up left.
/// Called with the ledger open: it is exclusive, so no other audit of this
/// data dir is running.
fn remove_stale_scratch(data_dir: &Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(data_dir).with_context(|| format!("listing {}", data_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", data_dir.display()))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Each symbol's watermark (as the ledger holds it, after any repair) and
/// its distance to now.
fn lag(ledger: &Ledger, symbols: &BTreeSet<String>) -> anyhow::Result<Vec<Lag>> {
    let now = crate::time::now_ns() / crate::time::NS_PER_MS;
    Ok(ledger
        .watermarks()?
        .into_iter()
        .filter(|(symbol, _)| symbols.is_empty() || symbols.contains(symbol))
        .map(|(symbol, minute)| Lag {
            symbol,
            watermark: utc_minute(minute),
            minutes: (now - minute - crate::time::MINUTE_MS).max(0) / crate::time::MINUTE_MS,
        })
        .collect())
}

impl Options {
    /// Whether the symbol-hour is audited.
    fn wanted(&self, symbol: &str, hour: i64) -> bool {
        (self.symbols.is_empty() || self.symbols.contains(symbol))
            && self.hours.as_ref().is_none_or(|r| r.contains(&hour))
    }
}

/// A lake file `--repair` replaces with its fresh derivation.
struct Repair {
    /// Its symbol-hour.
    hour: (String, i64),
    /// Its path under the lake root.
    file: String,
    /// The problem it mends, in `report.lake.problems`.
    problem: usize,
}

/// The fresh derivation beside the lake and ledger audited.
struct Compared<'a> {
    options: &'a Options,
    fresh: &'a Ledger,
    ledger: &'a Ledger,
    /// The symbols other instances keep in the lake: their files are theirs.
    others: BTreeSet<String>,
}

impl Compared<'_> {
    /// Every partition: its ledger entry (and findings) and its file; the
    /// files to mend go into `repairs` when repairing.
    fn partitions(&self, report: &mut Report, repairs: &mut Vec<Repair>) -> anyhow::Result<()> {
        let fresh = self.fresh.partitions()?;
        let held = self.ledger.partitions()?;
        let (fresh_provenance, held_provenance) =
            (self.fresh.provenances()?, self.ledger.provenances()?);
        let keys: BTreeSet<&(String, i64)> = fresh.keys().chain(held.keys()).collect();
        let mut checked = BTreeSet::new();
        for (symbol, hour) in keys {
            if !self.options.wanted(symbol, *hour) {
                continue;
            }
            report.lake.partitions += 1;
            let key = format!("{symbol} {}", utc_hour(*hour));
            let (want, have) = (
                fresh.get(&(symbol.clone(), *hour)),
                held.get(&(symbol.clone(), *hour)),
            );
            let findings = |l: &Ledger| l.findings(symbol, *hour);
            let provenance = |all: &BTreeMap<(String, i64), Provenance>| {
                all.get(&(symbol.clone(), *hour)).cloned()
            };
            let provenance_differs = provenance(&fresh_provenance) != provenance(&held_provenance);
            if want != have || findings(self.fresh)? != findings(self.ledger)? || provenance_differs
            {
                let mut detail = entry_difference(want, have);
                if provenance_differs && want == have {
                    detail =
                        "its provenance (coverage, reconciliation) differs or is missing".into();
                }
                let repaired = self.options.repair && self.repair_entry(symbol, *hour, want)?;
                report.ledger.problems.push(Problem {
                    kind: "ledger entry",
                    what: key.clone(),
                    detail,
                    repaired,
                });
            }
            let file = want.and_then(|p| Some((p.path.as_deref()?, p.content_hash?)));
            // A day's file is named by each of its hours: looked at once.
            if let Some((rel, hash)) = file.filter(|(rel, _)| checked.insert(rel.to_string())) {
                if self.file(report, rel, hash)? && self.options.repair {
                    repairs.push(Repair {
                        hour: (symbol.clone(), *hour),
                        file: rel.to_string(),
                        problem: report.lake.problems.len() - 1,
                    });
                }
            }
        }
        Ok(())
    }

    /// One partition file against the content hash of its fresh
    /// derivation; true when it is reported (divergent or missing).
    fn file(&self, report: &mut Report, rel: &str, hash: [u8; 32]) -> anyhow::Result<bool> {
        let (kind, detail) = match self.options.lake.get(rel)? {
            Some(bytes) if sha2::Sha256::digest(&bytes)[..] == hash[..] => return Ok(false),
            Some(bytes) => (
                "divergent",
                format!(
                    "{} bytes on disk, SHA-256 {}…; derived from the log: {}…",
                    bytes.len(),
                    hex::encode(&sha2::Sha256::digest(&bytes)[..6]),
                    hex::encode(&hash[..6])
                ),
            ),
            None => (
                "missing",
                "the log holds this partition; the lake has no file".into(),
            ),
        };
        report.lake.problems.push(Problem {
            kind,
            what: rel.to_string(),
            detail,
            repaired: false,
        });
        Ok(true)
    }

    /// Files in the lake that the log does not name: strays and the
    /// temporaries a killed writer left.
    fn strays(&self, report: &mut Report) -> anyhow::Result<()> {
        let named: BTreeSet<String> = self
            .fresh
            .partitions()?
            .into_values()
            .filter_map(|p| p.path)
            .collect();
        let lake = &self.options.lake;
        for found in lake.list_under(crate::lake::DATASET)? {
            let rel = found.key;
            let theirs =
                crate::lake::claims::symbol_of(&rel).is_some_and(|s| self.others.contains(s));
            if named.contains(&rel) || !self.wanted_path(&rel) || theirs {
                continue;
            }
            let temporary = crate::lake::is_temporary(rel.rsplit('/').next().unwrap_or(""));
            let repaired = self.options.repair && {
                lake.delete(&rel)?;
                true
            };
            report.lake.problems.push(Problem {
                kind: if temporary { "temporary" } else { "stray" },
                what: rel,
                detail: if temporary {
                    "a temporary a killed writer left".into()
                } else {
                    "no partition of the log is this file".into()
                },
                repaired,
            });
        }
        Ok(())
    }

    /// A lake file is audited unless `--symbols` leaves its symbol out.
    fn wanted_path(&self, rel: &str) -> bool {
        self.options.symbols.is_empty()
            || rel.split('/').any(|c| {
                c.strip_prefix("symbol=")
                    .is_some_and(|s| self.options.symbols.contains(s))
            })
    }

    /// Each symbol's stored watermark against the one its partitions give.
    fn watermarks(&self, report: &mut Report) -> anyhow::Result<()> {
        let partitions = self.ledger.partitions()?;
        let stored = self.ledger.watermarks()?;
        let symbols: BTreeSet<&String> = partitions.keys().map(|(s, _)| s).collect();
        for symbol in symbols {
            if !self.options.symbols.is_empty() && !self.options.symbols.contains(symbol) {
                continue;
            }
            let derived = materialize::watermark(&partitions, symbol);
            if stored.get(symbol).copied() != derived {
                let repaired = self.options.repair && {
                    let mut batch = self.ledger.batch()?;
                    batch.set_watermark(symbol, derived)?;
                    batch.commit()?;
                    true
                };
                report.ledger.problems.push(Problem {
                    kind: "watermark",
                    what: symbol.clone(),
                    detail: format!(
                        "stored {}, its partitions give {}",
                        stored.get(symbol).map_or("none".into(), |m| utc_minute(*m)),
                        derived.map_or("none".into(), utc_minute)
                    ),
                    repaired,
                });
            }
        }
        Ok(())
    }

    /// Puts the fresh entry (or none) in the ledger; true when done.
    fn repair_entry(
        &self,
        symbol: &str,
        hour: i64,
        want: Option<&Partition>,
    ) -> anyhow::Result<bool> {
        let mut batch = self.ledger.batch()?;
        match want {
            Some(p) => {
                let findings = self.fresh.findings(symbol, hour)?;
                batch.put_partition(symbol, hour, p, &findings)?;
                if let Some(provenance) = self.fresh.provenance(symbol, hour)? {
                    batch.set_provenance(symbol, hour, &provenance)?;
                }
            }
            None => batch.remove_partition(symbol, hour)?,
        }
        batch.commit()?;
        Ok(true)
    }
}

/// What differs between the entry derived and the one held.
fn entry_difference(want: Option<&Partition>, have: Option<&Partition>) -> String {
    let (want, have) = match (want, have) {
        (None, None) => return "its findings differ".into(),
        (Some(_), None) => return "the log holds this partition; the ledger has no entry".into(),
        (None, Some(_)) => return "the ledger has an entry the log does not hold".into(),
        (Some(w), Some(h)) => (w, h),
    };
    let mut fields = Vec::new();
    let hex = |h: Option<[u8; 32]>| h.map_or("none".into(), |h| hex::encode(&h[..6]));
    if want.content_hash != have.content_hash {
        fields.push(format!(
            "content hash {}… held, {}… derived",
            hex(have.content_hash),
            hex(want.content_hash)
        ));
    }
    let mut differs = |name: &str, a: String, b: String| {
        if a != b {
            fields.push(format!("{name} {b} held, {a} derived"));
        }
    };
    differs("rows", want.rows.to_string(), have.rows.to_string());
    differs(
        "minutes",
        format!("{:#x}", want.minutes),
        format!("{:#x}", have.minutes),
    );
    differs(
        "path",
        format!("{:?}", want.path),
        format!("{:?}", have.path),
    );
    differs(
        "findings",
        want.findings.to_string(),
        have.findings.to_string(),
    );
    differs("sources", want.sources.join(","), have.sources.join(","));
    if fields.is_empty() {
        "its findings or lineage differ".into()
    } else {
        fields.join("; ")
    }
}

/// Group problems by kind, for a summary line.
pub fn counts(problems: &[Problem]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for p in problems {
        *counts.entry(p.kind).or_default() += 1;
    }
    counts
}
