//! The planner: from what the log holds and the exchange's clock, what each
//! symbol is missing and which source can fill it, by band
//! (`../shared/DESIGN.md`, "Bands"; `docs/operations.md`).
//!
//! - **Cold**: a day (a month for funding) that has ended is Vision's. Its
//!   archive is asked for until the log holds it; one found missing is asked
//!   for again soon while the day is recent (Vision publishes the next day,
//!   sometimes later), rarely once it is not ([`Bands`]).
//! - **Warm**: what Vision does not hold (yet) comes from REST: the four kline
//!   kinds and funding at any age, the statistics within 30 days, aggTrades
//!   within 48 hours.
//! - **Hot**: today, up to the last closed minute, is REST's too; live streams
//!   add what only they see.
//!
//! What no source can fill (aggTrades older than REST's horizon with the
//! archive missing, bookTicker after 2024-03-31 without live coverage, the
//! statistics older than 30 days without metrics, bookDepth without its
//! archive) is a [`Gap`] with its reason, never a request.
//!
//! Pure: the log's state comes in through [`Known`], the clock as a number;
//! nothing here reads a file or a socket.

use std::collections::BTreeSet;
use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate};

use crate::binance;
use crate::event::VisionKind;
use crate::sources::rest::{self, Task};
use crate::sources::vision::{self, FileSpec};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// Where the bands meet: bml's choices, not the exchange's facts (those are
/// in `binance`), so `bml.toml` and the flags may move them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bands {
    /// A missing archive of a recent day is looked for again this long after
    /// the last look (default 1 h).
    pub recheck_recent_ms: i64,
    /// Older missing archives are looked for again this long after the last
    /// look (default 7 days).
    pub recheck_old_ms: i64,
    /// How long after its day ends an archive counts as recent (default 7
    /// days): Binance publishes the next day, sometimes days later, and
    /// re-publishes archives it fixed.
    pub recent_ms: i64,
    /// REST statistics ranges end this long before now (default 10 min).
    /// Binance does not say how soon a 5-minute point is served after its
    /// period ends; a range read to its end is never read again, so a point
    /// served late must not fall inside one.
    pub statistics_settle_ms: i64,
}

impl Default for Bands {
    fn default() -> Self {
        Bands {
            recheck_recent_ms: HOUR_MS,
            recheck_old_ms: 7 * DAY_MS,
            recent_ms: 7 * DAY_MS,
            statistics_settle_ms: 10 * MINUTE_MS,
        }
    }
}

/// What the log holds about one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveState {
    /// Ingested (some version of it).
    Ingested,
    /// Looked for and not found, last this long ago (ms, by the clock that
    /// looked: the local one, which the exchange's may not be in a test).
    Missing {
        /// How long ago it was last looked for.
        checked_ago_ms: i64,
    },
    /// Never looked for.
    Unknown,
}

/// What the planner needs to know about the log.
pub trait Known {
    /// The state of one Vision archive.
    fn archive(&self, spec: &FileSpec) -> ArchiveState;
    /// The parts of `range` for which the log holds no `kind` range of
    /// `symbol` read to its end.
    fn rest_gaps(&self, symbol: &str, kind: rest::Kind, range: Range<i64>) -> Vec<Range<i64>>;
    /// The parts of `range` no live bookTicker stream of `symbol` covered.
    fn book_ticker_gaps(&self, symbol: &str, range: Range<i64>) -> Vec<Range<i64>>;
}

/// One symbol to keep, from its first wanted instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Upper-case symbol.
    pub symbol: String,
    /// Nothing before this is wanted (its listing, or the range's start), ms.
    pub from_ms: i64,
}

/// Something no source can fill, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Upper-case symbol.
    pub symbol: String,
    /// The series, by the Vision archive kind that would hold it.
    pub kind: VisionKind,
    /// The time range it lacks, ms.
    pub range: Range<i64>,
    /// Why no source fills it.
    pub reason: String,
    /// No later run can change it: the archive that would hold it was
    /// looked for and is missing past the recent days (or Vision never
    /// publishes the series there), and REST cannot serve it. Only settled
    /// gaps are recorded in the log (`event::Unfillable`).
    pub settled: bool,
}

impl Gap {
    /// The series' name (Vision's: `aggTrades`, `bookTicker`, …).
    pub fn series(&self) -> &'static str {
        vision::kind_name(self.kind)
    }
}

/// What to fetch, and what cannot be.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Archives to ask Vision for.
    pub vision: Vec<FileSpec>,
    /// REST ranges to read.
    pub rest: Vec<Task>,
    /// What no source can fill.
    pub gaps: Vec<Gap>,
    /// Archives Vision has not published yet and that are not due for another
    /// look (REST stands in meanwhile).
    pub awaited: Vec<FileSpec>,
    /// The symbol-hours the fetches reach.
    pub hours: BTreeSet<(String, i64)>,
}

impl Plan {
    /// True when there is nothing to fetch.
    pub fn is_empty(&self) -> bool {
        self.vision.is_empty() && self.rest.is_empty()
    }

    /// The plan cut down to the `max` newest symbol-hours of [`Plan::hours`]
    /// (REST ranges are cut to them; a Vision archive that reaches one is
    /// kept whole), and how many hours were left for later.
    pub fn bounded(mut self, max: usize) -> (Plan, usize) {
        if self.hours.len() <= max {
            return (self, 0);
        }
        let mut newest: Vec<(String, i64)> = self.hours.iter().cloned().collect();
        newest.sort_by_key(|(symbol, hour)| (std::cmp::Reverse(*hour), symbol.clone()));
        let kept: BTreeSet<(String, i64)> = newest.into_iter().take(max).collect();
        let is_kept = |symbol: &str, hour: i64| kept.contains(&(symbol.to_string(), hour));
        self.vision.retain(|spec| {
            period_range(spec).is_some_and(|r| hours_of(r).any(|h| is_kept(&spec.symbol, h)))
        });
        let mut rest = Vec::new();
        for task in &self.rest {
            let mut run: Option<Range<i64>> = None;
            for hour in hours_of(task.start_ms..task.end_ms) {
                let part = hour.max(task.start_ms)..(hour + HOUR_MS).min(task.end_ms);
                match (&mut run, is_kept(&task.symbol, hour)) {
                    (Some(r), true) => r.end = part.end,
                    (None, true) => run = Some(part),
                    (Some(_), false) => rest.extend(run.take().map(|r| task.cut(r))),
                    (None, false) => {}
                }
            }
            rest.extend(run.map(|r| task.cut(r)));
        }
        self.rest = rest;
        let mut reached = BTreeSet::new();
        for spec in &self.vision {
            if let Some(r) = period_range(spec) {
                reached.extend(hours_of(r).map(|h| (spec.symbol.clone(), h)));
            }
        }
        for t in &self.rest {
            reached.extend(hours_of(t.start_ms..t.end_ms).map(|h| (t.symbol.clone(), h)));
        }
        let hours: BTreeSet<(String, i64)> = self.hours.intersection(&reached).cloned().collect();
        let left = self.hours.len() - hours.len();
        self.hours = hours;
        (self, left)
    }
}

trait Cut {
    fn cut(&self, range: Range<i64>) -> Task;
}

impl Cut for Task {
    /// The same range of the same endpoint, over `range`.
    fn cut(&self, range: Range<i64>) -> Task {
        Task {
            start_ms: range.start,
            end_ms: range.end,
            ..self.clone()
        }
    }
}

/// A series of the lake's inputs: the Vision archive that holds it, and the
/// REST endpoints that can stand in for it.
struct Series {
    vision: VisionKind,
    rest: &'static [rest::Kind],
}

const SERIES: [Series; 9] = [
    Series {
        vision: VisionKind::Klines,
        rest: &[rest::Kind::Klines],
    },
    Series {
        vision: VisionKind::MarkPriceKlines,
        rest: &[rest::Kind::MarkPriceKlines],
    },
    Series {
        vision: VisionKind::IndexPriceKlines,
        rest: &[rest::Kind::IndexPriceKlines],
    },
    Series {
        vision: VisionKind::PremiumIndexKlines,
        rest: &[rest::Kind::PremiumIndexKlines],
    },
    Series {
        vision: VisionKind::AggTrades,
        rest: &[rest::Kind::AggTrades],
    },
    Series {
        vision: VisionKind::Metrics,
        rest: &[
            rest::Kind::OpenInterestHist,
            rest::Kind::TopLongShortAccountRatio,
            rest::Kind::TopLongShortPositionRatio,
            rest::Kind::GlobalLongShortAccountRatio,
        ],
    },
    Series {
        vision: VisionKind::BookDepth,
        rest: &[],
    },
    Series {
        vision: VisionKind::BookTicker,
        rest: &[],
    },
    Series {
        vision: VisionKind::FundingRate,
        rest: &[rest::Kind::FundingRate],
    },
];

/// What to fetch so that `wanted` is complete over `range` (ms, end
/// exclusive; cut at the last minute closed at `now_ms`), given what the log
/// holds.
pub fn plan(
    wanted: &[Wanted],
    range: Range<i64>,
    now_ms: i64,
    bands: &Bands,
    known: &dyn Known,
) -> Plan {
    let end = range.end.min(now_ms.div_euclid(MINUTE_MS) * MINUTE_MS);
    let mut plan = Plan::default();
    for want in wanted {
        let start = range
            .start
            .max(want.from_ms.div_euclid(MINUTE_MS) * MINUTE_MS);
        if start >= end {
            continue;
        }
        for series in &SERIES {
            for period in periods(series.vision, &want.symbol, start..end) {
                let at = Clock { now_ms, bands };
                plan_period(&mut plan, series, period, start..end, at, known);
            }
        }
    }
    plan
}

/// The clock and the band edges it is read against.
#[derive(Clone, Copy)]
struct Clock<'a> {
    now_ms: i64,
    bands: &'a Bands,
}

/// One archive's period of one series: from Vision if it may be there, else
/// from what stands in for it.
fn plan_period(
    plan: &mut Plan,
    series: &Series,
    spec: FileSpec,
    wanted: Range<i64>,
    at: Clock<'_>,
    known: &dyn Known,
) {
    let Clock { now_ms, bands } = at;
    let Some(period) = period_range(&spec) else {
        return;
    };
    let part = period.start.max(wanted.start)..period.end.min(wanted.end);
    let closed = now_ms >= period.end;
    let published = closed
        && !(spec.kind == VisionKind::BookTicker
            && vision_day(&spec).is_some_and(|d| d > binance::LAST_BOOK_TICKER_DAY));
    let mut why_not = "Vision publishes it after the day ends".to_string();
    // Whether a gap found below can still close (see `Gap::settled`).
    let mut settled = false;
    if published {
        match known.archive(&spec) {
            ArchiveState::Ingested => return,
            ArchiveState::Unknown => {
                plan.note_hours(&spec.symbol, part);
                plan.vision.push(spec);
                return;
            }
            ArchiveState::Missing { checked_ago_ms } => {
                let recheck = if now_ms - period.end < bands.recent_ms {
                    bands.recheck_recent_ms
                } else {
                    bands.recheck_old_ms
                };
                if checked_ago_ms >= recheck {
                    plan.note_hours(&spec.symbol, part);
                    plan.vision.push(spec);
                    return;
                }
                why_not = "Vision has not published its archive (yet)".to_string();
                settled = now_ms - period.end >= bands.recent_ms;
                if settled {
                    why_not = "Vision has no archive for it".to_string();
                } else {
                    plan.awaited.push(spec.clone());
                }
            }
        }
    }
    if spec.kind == VisionKind::BookTicker {
        let reason = if published {
            format!("{why_not}, and REST serves no bookTicker history")
        } else if vision_day(&spec).is_some_and(|d| d > binance::LAST_BOOK_TICKER_DAY) {
            // The live spans of an ended day are in the ledger an hour on.
            settled = now_ms >= period.end + HOUR_MS;
            "Vision publishes no bookTicker after 2024-03-31 and no live stream recorded it"
                .to_string()
        } else {
            return;
        };
        for gap in known.book_ticker_gaps(&spec.symbol, part) {
            plan.gap(&spec, gap, &reason, settled);
        }
        return;
    }
    if series.rest.is_empty() {
        if published {
            let reason = format!("{why_not}, and REST serves no history of it");
            plan.gap(&spec, part, &reason, settled);
        }
        return;
    }
    for &kind in series.rest {
        let served_to = match kind.horizon_ms() {
            Some(binance::STATISTICS_HORIZON_MS) => now_ms - bands.statistics_settle_ms,
            _ => now_ms,
        };
        let part = part.start..part.end.min(served_to.div_euclid(MINUTE_MS) * MINUTE_MS);
        for gap in known.rest_gaps(&spec.symbol, kind, part) {
            // Whole minutes inside the horizon, as `bml ingest rest` asks.
            let oldest = kind.horizon_ms().map_or(i64::MIN, |h| {
                (now_ms - h).div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS
            });
            if gap.start < oldest {
                let lost = gap.start..gap.end.min(oldest);
                let reason = format!(
                    "{why_not}, and REST serves {} for the last {} only",
                    kind.name(),
                    span_text(kind.horizon_ms().unwrap_or(0))
                );
                plan.gap(&spec, lost, &reason, settled);
            }
            let fetch = gap.start.max(oldest)..gap.end;
            if !fetch.is_empty() {
                plan.note_hours(&spec.symbol, fetch.clone());
                plan.rest.push(Task {
                    symbol: spec.symbol.clone(),
                    kind,
                    start_ms: fetch.start,
                    end_ms: fetch.end,
                });
            }
        }
    }
}

impl Plan {
    fn note_hours(&mut self, symbol: &str, range: Range<i64>) {
        self.hours
            .extend(hours_of(range).map(|h| (symbol.to_string(), h)));
    }

    fn gap(&mut self, spec: &FileSpec, range: Range<i64>, reason: &str, settled: bool) {
        if range.is_empty() {
            return;
        }
        self.gaps.push(Gap {
            symbol: spec.symbol.clone(),
            kind: spec.kind,
            range,
            reason: reason.to_string(),
            settled,
        });
    }
}

/// The archives of `kind` whose periods overlap `range`: days, or months for
/// funding.
fn periods(kind: VisionKind, symbol: &str, range: Range<i64>) -> Vec<FileSpec> {
    let day = |ms: i64| DateTime::from_timestamp_millis(ms).map(|t| t.date_naive());
    let (Some(first), Some(last)) = (day(range.start), day(range.end - 1)) else {
        return Vec::new();
    };
    let mut specs: Vec<FileSpec> = Vec::new();
    for d in first.iter_days().take_while(|d| *d <= last) {
        let period = match kind {
            VisionKind::FundingRate => format!("{:04}-{:02}", d.year(), d.month()),
            _ => d.format("%Y-%m-%d").to_string(),
        };
        if specs.last().is_none_or(|s| s.period != period) {
            specs.push(FileSpec {
                kind,
                symbol: symbol.to_string(),
                period,
            });
        }
    }
    specs
}

/// The day of a daily archive.
fn vision_day(spec: &FileSpec) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&spec.period, "%Y-%m-%d").ok()
}

/// The times an archive's period covers: its UTC day, or month.
fn period_range(spec: &FileSpec) -> Option<Range<i64>> {
    binance::vision_period(&spec.period)
}

/// The hour starts of `range`.
fn hours_of(range: Range<i64>) -> impl Iterator<Item = i64> {
    let first = range.start.div_euclid(HOUR_MS) * HOUR_MS;
    (first..range.end).step_by(HOUR_MS as usize)
}

/// `48 hours`, `30 days`.
fn span_text(ms: i64) -> String {
    if ms % DAY_MS == 0 && ms > 2 * DAY_MS {
        format!("{} days", ms / DAY_MS)
    } else {
        format!("{} hours", ms / HOUR_MS)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::time::uncovered;

    /// 2026-03-10 00:00 UTC.
    const DAY0: i64 = 1_773_100_800_000;

    /// The log's state as plain maps.
    #[derive(Default)]
    struct Log {
        archives: BTreeMap<String, ArchiveState>,
        rest: BTreeMap<(String, rest::Kind), Vec<Range<i64>>>,
        live: Vec<Range<i64>>,
    }

    impl Known for Log {
        fn archive(&self, spec: &FileSpec) -> ArchiveState {
            self.archives
                .get(&spec.id())
                .copied()
                .unwrap_or(ArchiveState::Unknown)
        }
        fn rest_gaps(&self, symbol: &str, kind: rest::Kind, range: Range<i64>) -> Vec<Range<i64>> {
            let covered = self.rest.get(&(symbol.to_string(), kind));
            uncovered(range, covered.into_iter().flatten().cloned())
        }
        fn book_ticker_gaps(&self, _symbol: &str, range: Range<i64>) -> Vec<Range<i64>> {
            uncovered(range, self.live.iter().cloned())
        }
    }

    fn btc(from_ms: i64) -> Vec<Wanted> {
        vec![Wanted {
            symbol: "BTCUSDT".into(),
            from_ms,
        }]
    }

    fn day(n: i64) -> i64 {
        DAY0 + n * DAY_MS
    }

    /// Marks every archive of `days` for BTCUSDT as `state`.
    fn archives(log: &mut Log, days: Range<i64>, state: ArchiveState) {
        for n in days {
            for kind in vision::ALL_KINDS {
                let spec = periods(kind, "BTCUSDT", day(n)..day(n) + 1).remove(0);
                log.archives.insert(spec.id(), state);
            }
        }
    }

    fn rest_kinds(plan: &Plan) -> BTreeSet<rest::Kind> {
        plan.rest.iter().map(|t| t.kind).collect()
    }

    #[test]
    fn an_ended_day_is_asked_of_vision_first_and_of_nothing_else() {
        let now = day(1) + 2 * HOUR_MS;
        let plan = plan(
            &btc(day(0)),
            day(0)..day(1),
            now,
            &Bands::default(),
            &Log::default(),
        );
        let kinds: BTreeSet<VisionKind> = plan.vision.iter().map(|s| s.kind).collect();
        // Every daily kind but bookTicker (not published after 2024-03-31);
        // March's funding archive is not out while March runs.
        assert_eq!(kinds.len(), 7, "{kinds:?}");
        assert!(!kinds.contains(&VisionKind::BookTicker));
        assert!(!kinds.contains(&VisionKind::FundingRate));
        assert_eq!(rest_kinds(&plan), BTreeSet::from([rest::Kind::FundingRate]));
        assert_eq!(plan.hours.len(), 24);
        assert_eq!(plan.gaps.len(), 1, "{:?}", plan.gaps);
        assert_eq!(plan.gaps[0].series(), "bookTicker");
    }

    #[test]
    fn archives_vision_lacks_go_to_rest_within_its_horizons_and_the_rest_are_gaps() {
        // Day 0 ended 3 days ago: REST no longer serves its aggTrades.
        let now = day(3) + 30 * MINUTE_MS;
        let mut log = Log::default();
        let missing = ArchiveState::Missing {
            checked_ago_ms: MINUTE_MS,
        };
        archives(&mut log, 0..3, missing);
        let plan = plan(&btc(day(0)), day(0)..day(3), now, &Bands::default(), &log);
        assert!(plan.vision.is_empty());
        assert_eq!(
            plan.awaited.len(),
            3 * 7,
            "7 daily kinds (no bookTicker) × 3 days"
        );
        let agg: Vec<&Task> = plan
            .rest
            .iter()
            .filter(|t| t.kind == rest::Kind::AggTrades)
            .collect();
        let oldest = now - binance::AGG_TRADES_REST_HORIZON_MS;
        assert!(agg.iter().all(|t| t.start_ms > oldest), "{agg:?}");
        assert_eq!(agg.last().map(|t| t.end_ms), Some(day(3)));
        let gap = |series: &str| plan.gaps.iter().filter(|g| g.series() == series).count();
        assert_eq!(gap("bookTicker"), 3, "no live stream ran");
        assert_eq!(gap("aggTrades"), 2, "days 0 and 1 (before the horizon)");
        assert_eq!(gap("bookDepth"), 3);
        assert_eq!(gap("klines"), 0);
        for g in &plan.gaps {
            let why = if g.series() == "bookTicker" {
                "no bookTicker after 2024-03-31"
            } else {
                "not published"
            };
            assert!(g.reason.contains(why), "{g:?}");
        }
        // Statistics are within 30 days: fetched, not gaps.
        assert!(rest_kinds(&plan).contains(&rest::Kind::OpenInterestHist));
    }

    #[test]
    fn a_gap_is_settled_once_its_archive_is_missing_past_the_recent_days() {
        let bands = Bands::default();
        let missing = ArchiveState::Missing {
            checked_ago_ms: MINUTE_MS,
        };
        let mut log = Log::default();
        archives(&mut log, 0..1, missing);
        // Day 0 ended 3 days ago: its gaps may still close (Vision publishes
        // late), except bookTicker's after 2024-03-31, which no stream can
        // record any more.
        let now = day(3) + 30 * MINUTE_MS;
        let early = plan(&btc(day(0)), day(0)..day(1), now, &bands, &log);
        for g in &early.gaps {
            assert_eq!(g.settled, g.series() == "bookTicker", "{g:?}");
        }
        assert!(early.gaps.iter().any(|g| g.series() == "aggTrades"));
        // Past the recent days: settled, said so, and no longer awaited.
        let now = day(1) + bands.recent_ms;
        let late = plan(&btc(day(0)), day(0)..day(1), now, &bands, &log);
        assert!(late.awaited.is_empty(), "{:?}", late.awaited);
        let series: BTreeSet<&str> = late.gaps.iter().map(Gap::series).collect();
        assert_eq!(
            series,
            BTreeSet::from(["aggTrades", "bookDepth", "bookTicker"])
        );
        for g in &late.gaps {
            assert!(g.settled, "{g:?}");
            if g.series() != "bookTicker" {
                assert!(
                    g.reason.starts_with("Vision has no archive for it"),
                    "{g:?}"
                );
            }
        }
        // An ingested archive is no gap, settled or not.
        archives(&mut log, 0..1, ArchiveState::Ingested);
        let held = plan(&btc(day(0)), day(0)..day(1), now, &bands, &log);
        assert!(
            held.gaps.iter().all(|g| g.series() == "bookTicker"),
            "{:?}",
            held.gaps
        );
        // (Funding's month has not ended: REST stands in for it.)
        assert!(held.vision.is_empty(), "{held:?}");
        assert_eq!(rest_kinds(&held), BTreeSet::from([rest::Kind::FundingRate]));
    }

    #[test]
    fn today_is_rest_up_to_the_last_closed_minute_statistics_settle_longer() {
        let now = day(0) + 5 * HOUR_MS + 30 * MINUTE_MS + 20_000;
        let plan = plan(
            &btc(day(0)),
            day(0)..now,
            now,
            &Bands::default(),
            &Log::default(),
        );
        assert!(plan.vision.is_empty());
        let end = |kind| {
            plan.rest
                .iter()
                .filter(|t| t.kind == kind)
                .map(|t| t.end_ms)
                .max()
        };
        let closed = day(0) + 5 * HOUR_MS + 30 * MINUTE_MS;
        assert_eq!(end(rest::Kind::Klines), Some(closed));
        assert_eq!(end(rest::Kind::AggTrades), Some(closed));
        assert_eq!(
            end(rest::Kind::OpenInterestHist),
            Some(closed - Bands::default().statistics_settle_ms)
        );
        assert_eq!(plan.hours.len(), 6);
    }

    #[test]
    fn what_the_log_holds_is_not_asked_for_again() {
        let now = day(2) + 10 * MINUTE_MS;
        let mut log = Log::default();
        archives(&mut log, 0..1, ArchiveState::Ingested);
        for kind in rest::Kind::ALL {
            log.rest.insert(
                ("BTCUSDT".into(), kind),
                std::iter::once(day(-40)..day(2) + 10 * MINUTE_MS).collect(),
            );
        }
        // Day 1 ended: its archives are due, unless looked for a moment ago.
        archives(
            &mut log,
            1..2,
            ArchiveState::Missing {
                checked_ago_ms: MINUTE_MS,
            },
        );
        let plan = plan(&btc(day(0)), day(0)..now, now, &Bands::default(), &log);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_missing_archive_is_looked_for_again_hourly_while_recent_weekly_after() {
        let looked = |ago: i64, days_old: i64| {
            let mut log = Log::default();
            archives(
                &mut log,
                0..1,
                ArchiveState::Missing {
                    checked_ago_ms: ago,
                },
            );
            let now = day(days_old) + MINUTE_MS;
            !plan(&btc(day(0)), day(0)..day(1), now, &Bands::default(), &log)
                .vision
                .is_empty()
        };
        assert!(!looked(Bands::default().recheck_recent_ms - 1, 2));
        assert!(looked(Bands::default().recheck_recent_ms, 2));
        assert!(!looked(Bands::default().recheck_recent_ms, 20));
        assert!(looked(Bands::default().recheck_old_ms, 20));
    }

    #[test]
    fn nothing_before_the_listing_and_bookticker_is_a_gap_only_where_no_stream_ran() {
        let now = day(0) + 3 * HOUR_MS;
        let listed = day(0) + HOUR_MS;
        let log = Log {
            live: std::iter::once(listed + 30 * MINUTE_MS..now).collect(),
            ..Log::default()
        };
        let plan = plan(&btc(listed), day(-5)..now, now, &Bands::default(), &log);
        assert!(plan.rest.iter().all(|t| t.start_ms >= listed));
        assert_eq!(plan.hours.len(), 2);
        let ticker: Vec<&Gap> = plan
            .gaps
            .iter()
            .filter(|g| g.series() == "bookTicker")
            .collect();
        assert_eq!(ticker.len(), 1);
        assert_eq!(ticker[0].range, listed..listed + 30 * MINUTE_MS);
    }

    #[test]
    fn a_bound_keeps_the_newest_hours_and_says_how_many_wait() {
        let now = day(0) + 10 * HOUR_MS;
        let full = plan(
            &btc(day(0)),
            day(0)..now,
            now,
            &Bands::default(),
            &Log::default(),
        );
        assert_eq!(full.hours.len(), 10);
        let (bounded, left) = full.clone().bounded(24);
        assert_eq!((bounded, left), (full.clone(), 0));
        let (bounded, left) = full.bounded(3);
        assert_eq!(left, 7);
        assert_eq!(bounded.hours.len(), 3);
        assert!(!bounded.rest.is_empty());
        for t in &bounded.rest {
            assert!(t.start_ms >= day(0) + 7 * HOUR_MS, "{t:?}");
        }
    }
}
