//! The audit's account of where each minute came from (coverage, per
//! symbol-day and column class) and of how the sources agreed where they
//! held the same facts (reconciliation), read from the provenance the fresh
//! derivation recorded (`crate::ledger::Provenance`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::{ClassCoverage, Ledger, Provenance};
use crate::schema::ColumnClass;
use crate::time::{utc_day, utc_hour, DAY_MS, HOUR_MS, MINUTE_MS};

pub use crate::ledger::{NOT_FETCHED, NO_COLLECTOR};

/// An hour inside a symbol's span that no record reaches.
pub const NOTHING: &str = "nothing in the log reaches this hour";
/// The rule by which conflicts are settled, as the report states it.
pub const PRECEDENCE: &str =
    "Vision > REST > live: where copies of one fact disagree, the best source's copy is in the lake";

/// How many conflicts the report shows field by field.
const CONFLICTS_SHOWN: usize = 20;

/// One symbol-day's coverage.
#[derive(Debug, Clone, Serialize)]
pub struct DayCoverage {
    /// The symbol.
    pub symbol: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Its minutes inside the symbol's span (the first to the last minute
    /// with a trade kline) and the audited range.
    pub minutes: u32,
    /// Per column class, in `ColumnClass::ALL` order.
    pub classes: Vec<ClassMinutes>,
}

/// One column class over a symbol-day (or, for the HTML page, an hour).
#[derive(Debug, Clone, Serialize)]
pub struct ClassMinutes {
    /// The class's name (`trade klines`, `aggTrades`, …).
    pub class: &'static str,
    /// Its support class (`HARD_REQUIRED`, `BACKFILL_AVAILABLE`, `LIVE_ONLY`).
    pub support: &'static str,
    /// Minutes Vision held its input for.
    pub vision: u32,
    /// Minutes REST held it for.
    pub rest: u32,
    /// Minutes a live stream held it for.
    pub live: u32,
    /// Minutes that need nothing (no trade happened).
    pub quiet: u32,
    /// Minutes covered one way or another.
    pub covered: u32,
    /// The minutes not covered, by reason.
    pub gaps: Vec<Gap>,
}

/// Minutes no source filled, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// How many.
    pub minutes: u32,
    /// Why: the planner's reason, [`NO_COLLECTOR`], [`NOT_FETCHED`] or [`NOTHING`].
    pub reason: String,
}

/// The facts two or more sources held, and how they agreed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reconciliation {
    /// How a disagreement is settled ([`PRECEDENCE`]).
    pub rule: &'static str,
    /// Per symbol, day, kind of fact and set of sources.
    pub days: Vec<ReconciledDay>,
    /// The first conflicts (at most 20), field by field.
    pub first_conflicts: Vec<ConflictShown>,
}

/// One kind of fact over one symbol-day, held by one set of sources.
#[derive(Debug, Clone, Serialize)]
pub struct ReconciledDay {
    /// The symbol.
    pub symbol: String,
    /// The UTC day.
    pub day: String,
    /// `kline`, `markPriceKline`, `aggTrade`, `funding`, …
    pub kind: String,
    /// The sources that held them, best first: `vision+rest`.
    pub sources: String,
    /// Facts whose copies were equal.
    pub equal: u64,
    /// Facts whose copies disagreed.
    pub conflicting: u64,
}

/// One conflict, as the fresh derivation recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictShown {
    /// The symbol.
    pub symbol: String,
    /// The hour, `YYYY-MM-DDTHHZ`.
    pub hour: String,
    /// The fact, the sources kept and dropped, and each field that differs.
    pub detail: String,
}

/// One symbol-hour's coverage (the HTML page's heatmap cells).
#[derive(Debug, Clone)]
pub struct HourCoverage {
    /// The symbol.
    pub symbol: String,
    /// The hour's start, ms.
    pub hour: i64,
    /// Its minutes inside the symbol's span.
    pub minutes: u32,
    /// Per column class, in `ColumnClass::ALL` order.
    pub classes: Vec<ClassMinutes>,
}

/// The coverage of each symbol-day and symbol-hour in the audited range
/// (`wanted`), from the hours' provenance.
pub fn coverage(
    provenance: &BTreeMap<(String, i64), Provenance>,
    wanted: impl Fn(&str, i64) -> bool,
) -> (Vec<DayCoverage>, Vec<HourCoverage>) {
    let mut days: Vec<DayCoverage> = Vec::new();
    let mut hours: Vec<HourCoverage> = Vec::new();
    for (symbol, (first, end)) in spans(provenance) {
        let mut hour = first.div_euclid(HOUR_MS) * HOUR_MS;
        while hour < end {
            if !wanted(&symbol, hour) {
                hour += HOUR_MS;
                continue;
            }
            let inside = minutes_between(hour, first, end);
            let day = utc_day(hour);
            if days
                .last()
                .is_none_or(|d| d.symbol != symbol || d.day != day)
            {
                days.push(DayCoverage {
                    symbol: symbol.clone(),
                    day,
                    minutes: 0,
                    classes: ColumnClass::ALL
                        .iter()
                        .map(|&c| ClassMinutes::new(c))
                        .collect(),
                });
            }
            let held = provenance.get(&(symbol.clone(), hour));
            let classes: Vec<ClassMinutes> = ColumnClass::ALL
                .into_iter()
                .enumerate()
                .map(|(i, class)| {
                    let mut minutes = ClassMinutes::new(class);
                    minutes.add(held.map(|p| &p.coverage[i]), inside);
                    minutes
                })
                .collect();
            let today = days.last_mut().expect("pushed above");
            today.minutes += inside.count_ones();
            for (sum, one) in today.classes.iter_mut().zip(&classes) {
                sum.merge(one);
            }
            hours.push(HourCoverage {
                symbol: symbol.clone(),
                hour,
                minutes: inside.count_ones(),
                classes,
            });
            hour += HOUR_MS;
        }
    }
    (days, hours)
}

/// Each symbol's span: from its first to past its last minute with a trade
/// kline (what bounds the minutes a gap can be counted in).
fn spans(provenance: &BTreeMap<(String, i64), Provenance>) -> BTreeMap<String, (i64, i64)> {
    let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for ((symbol, hour), p) in provenance {
        let klines = p
            .coverage
            .get(ColumnClass::TradeKlines as usize)
            .map_or(0, ClassCoverage::covered);
        if klines == 0 {
            continue;
        }
        let first = hour + i64::from(klines.trailing_zeros()) * MINUTE_MS;
        let end = hour + i64::from(64 - klines.leading_zeros()) * MINUTE_MS;
        let span = spans.entry(symbol.clone()).or_insert((first, end));
        span.0 = span.0.min(first);
        span.1 = span.1.max(end);
    }
    spans
}

/// The minutes of the hour starting at `hour` inside `[first, end)`.
fn minutes_between(hour: i64, first: i64, end: i64) -> u64 {
    (0..60)
        .filter(|m| (first..end).contains(&(hour + m * MINUTE_MS)))
        .fold(0, |bits, m| bits | 1 << m)
}

impl ClassMinutes {
    fn new(class: ColumnClass) -> ClassMinutes {
        ClassMinutes {
            class: class.name(),
            support: class.support().spec_name(),
            vision: 0,
            rest: 0,
            live: 0,
            quiet: 0,
            covered: 0,
            gaps: Vec::new(),
        }
    }

    /// Adds one hour: its coverage (none when no record reaches the hour),
    /// counted over the minutes `inside` the span.
    fn add(&mut self, held: Option<&ClassCoverage>, inside: u64) {
        let Some(c) = held else {
            self.gap(NOTHING, inside.count_ones());
            return;
        };
        let count = |bits: u64| (bits & inside).count_ones();
        self.vision += count(c.by_source[0]);
        self.rest += count(c.by_source[1]);
        self.live += count(c.by_source[2]);
        self.quiet += count(c.quiet & !(c.by_source[0] | c.by_source[1] | c.by_source[2]));
        self.covered += count(c.covered());
        for (reason, bits) in c.gaps() {
            self.gap(&reason, count(bits));
        }
    }

    /// Adds another span's counts.
    fn merge(&mut self, other: &ClassMinutes) {
        self.vision += other.vision;
        self.rest += other.rest;
        self.live += other.live;
        self.quiet += other.quiet;
        self.covered += other.covered;
        for gap in &other.gaps {
            self.gap(&gap.reason, gap.minutes);
        }
    }

    fn gap(&mut self, reason: &str, minutes: u32) {
        if minutes == 0 {
            return;
        }
        match self.gaps.iter_mut().find(|g| g.reason == reason) {
            Some(g) => g.minutes += minutes,
            None => self.gaps.push(Gap {
                minutes,
                reason: reason.to_string(),
            }),
        }
    }
}

/// The reconciliation of each symbol-day in the audited range, and the
/// first conflicts, read from the fresh ledger's findings.
pub fn reconciliation(
    provenance: &BTreeMap<(String, i64), Provenance>,
    fresh: &Ledger,
    wanted: impl Fn(&str, i64) -> bool,
) -> anyhow::Result<Reconciliation> {
    let mut days: BTreeMap<(String, i64, String, String), (u64, u64)> = BTreeMap::new();
    let mut first_conflicts = Vec::new();
    for ((symbol, hour), p) in provenance {
        if !wanted(symbol, *hour) {
            continue;
        }
        let day = hour.div_euclid(DAY_MS) * DAY_MS;
        for t in &p.reconciliation {
            let entry = days
                .entry((symbol.clone(), day, t.kind.clone(), t.source_names()))
                .or_default();
            entry.0 += t.equal;
            entry.1 += t.conflicting;
        }
        let conflicting = p.reconciliation.iter().any(|t| t.conflicting > 0);
        if conflicting && first_conflicts.len() < CONFLICTS_SHOWN {
            for finding in fresh.findings(symbol, *hour)? {
                if finding.check == "conflict" && first_conflicts.len() < CONFLICTS_SHOWN {
                    first_conflicts.push(ConflictShown {
                        symbol: symbol.clone(),
                        hour: utc_hour(*hour),
                        detail: finding.detail,
                    });
                }
            }
        }
    }
    Ok(Reconciliation {
        rule: PRECEDENCE,
        days: days
            .into_iter()
            .map(
                |((symbol, day, kind, sources), (equal, conflicting))| ReconciledDay {
                    symbol,
                    day: utc_day(day),
                    kind,
                    sources,
                    equal,
                    conflicting,
                },
            )
            .collect(),
        first_conflicts,
    })
}
