//! From log records to one hour's [`HourFacts`]: the *set* of distinct facts.
//!
//! Each fact has a natural key (an aggTrade's id, a kline's kind and open time,
//! …). Copies of one fact collapse to one, whatever order, duplication or
//! batching the log holds them in. When copies disagree, the source precedence
//! Vision > REST > WebSocket decides, then (between equals) a closed kline beats
//! an open one, then the larger encoding: arbitrary but never the log order.
//! Disagreements are returned as [`Conflict`]s for the audit.
//!
//! The [`Collector`] streams: the run hands it one decoded record at a time and
//! drops the record, so an hour costs the memory of its facts, not of its
//! records. Facts are kept per kind, as plain vectors of copies; resolving sorts
//! each vector by key once (the log mostly holds them in key order already, and
//! the sort is adaptive) and walks runs of equal keys. The caller hands in the
//! visible records that may touch the hour (see `event::Visibility`); coverage
//! of live streams is computed apart.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::ops::Range;

use rustc_hash::FxHashMap;

use super::hour::HourFacts;
use crate::event::KlineKind;
use crate::event::{
    AggTrade, BookTicker, DepthDiff, DepthSnapshot, Event, FactKind, FundingRate, Kline,
    Liquidation, LongShortRatio, MarkPrice, Metrics, OpenInterest, PremiumIndex, Record, Source,
    TimeRun, Timed, Unfillable,
};
use crate::ledger::{ClassCoverage, Provenance, Tally};
use crate::schema::ColumnClass;
use crate::time::{HOUR_MS, MINUTE_MS};

/// How far before an hour a fact can still matter to it: the look-back of the
/// fill rules. The collector keeps facts inside the reach; the offset index lists
/// a record under every hour it reaches. One definition, so the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only the hour it falls in.
    Hour,
    /// Also the next hour: book updates, as-of points, and the depth diffs and
    /// snapshots the L2 book is rebuilt from (60 minutes).
    LookBack,
    /// Funding settlements, carried 8 h 1 min.
    Funding,
}

impl Reach {
    /// How long before an hour's start a fact with this reach still matters.
    pub fn before_ms(self) -> i64 {
        match self {
            Reach::Hour => 0,
            Reach::LookBack => 60 * MINUTE_MS,
            Reach::Funding => 8 * HOUR_MS + MINUTE_MS,
        }
    }

    /// The first and last start of the hours a fact at `time` matters to.
    pub fn hours(self, time: i64) -> (i64, i64) {
        let first = time.div_euclid(HOUR_MS) * HOUR_MS;
        let last = (time + self.before_ms()).div_euclid(HOUR_MS) * HOUR_MS;
        (first, last)
    }
}

/// A kind of market fact: its natural key, the time it is bucketed by, and
/// how far it reaches.
trait Fact: Timed + Clone + PartialEq + Debug + serde::Serialize {
    type Key: Ord + Debug;
    /// Names the kind in conflict reports.
    const NAME: &'static str;
    const REACH: Reach;
    fn key(&self) -> Self::Key;
    /// The columns it feeds.
    fn class(&self) -> ColumnClass;
    /// Names the kind in reconciliation counts (a kline, by its series).
    fn label(&self) -> &'static str {
        Self::NAME
    }
    /// False only for a kline seen while still open: a closed copy beats it.
    fn closed(&self) -> bool {
        true
    }
}

/// `impl Fact for T`: name, reach, column class, key type, and key from a
/// binding `f`.
macro_rules! fact {
    ($type:ty, $name:literal, $reach:ident, $class:ident, $key_type:ty, |$f:ident| $key:expr) => {
        impl Fact for $type {
            type Key = $key_type;
            const NAME: &'static str = $name;
            const REACH: Reach = Reach::$reach;
            fn key(&self) -> $key_type {
                let $f = self;
                $key
            }
            fn class(&self) -> ColumnClass {
                ColumnClass::$class
            }
        }
    };
}

fact!(AggTrade, "aggTrade", Hour, AggTrades, u64, |f| f
    .agg_trade_id);
fact!(BookTicker, "bookTicker", LookBack, BookTicker, u64, |f| f
    .update_id);
fact!(Metrics, "metrics", LookBack, Metrics, i64, |f| f
    .create_time);
fact!(FundingRate, "funding", Funding, Funding, i64, |f| f
    .funding_time);
fact!(
    PremiumIndex,
    "premiumIndex",
    Hour,
    FundingEstimate,
    i64,
    |f| f.time
);
fact!(
    OpenInterest,
    "openInterest",
    LookBack,
    Metrics,
    (u8, i64),
    |f| (f.source as u8, f.time)
);
fact!(LongShortRatio, "ratio", LookBack, Metrics, (u8, i64), |f| (
    f.kind as u8,
    f.time
));
fact!(MarkPrice, "markPrice", Hour, FundingEstimate, i64, |f| f
    .event_time);
fact!(DepthDiff, "depthDiff", LookBack, DepthBook, u64, |f| f
    .final_update_id);
fact!(
    DepthSnapshot,
    "depthSnapshot",
    LookBack,
    DepthBook,
    u64,
    |f| f.last_update_id
);
fact!(
    Liquidation,
    "liquidation",
    Hour,
    Liquidations,
    Vec<u8>,
    |f| encoded(f)
);

impl Fact for Kline {
    type Key = (u8, i64, i64);
    const NAME: &'static str = "kline";
    const REACH: Reach = Reach::Hour;
    fn key(&self) -> (u8, i64, i64) {
        (self.kind as u8, self.interval_ms, self.open_time)
    }
    fn class(&self) -> ColumnClass {
        match self.kind {
            KlineKind::Trade => ColumnClass::TradeKlines,
            KlineKind::Mark => ColumnClass::MarkKlines,
            KlineKind::Index => ColumnClass::IndexKlines,
            KlineKind::Premium => ColumnClass::PremiumKlines,
        }
    }
    fn label(&self) -> &'static str {
        match self.kind {
            KlineKind::Trade => "kline",
            KlineKind::Mark => "markPriceKline",
            KlineKind::Index => "indexPriceKline",
            KlineKind::Premium => "premiumIndexKline",
        }
    }
    fn closed(&self) -> bool {
        self.closed
    }
}

/// A metrics point as the materializer keys it: at its snapshot time.
fn at_snapshot(point: &Metrics, source: &Source) -> Metrics {
    Metrics {
        create_time: snapshot_time(point.create_time, source),
        ..point.clone()
    }
}

/// The snapshot time of a metrics point labelled `label`: the log holds a
/// Vision row's label as the file wrote it; what the label means depends on
/// the file's day (`binance::metrics_snapshot_time`).
fn snapshot_time(label: i64, source: &Source) -> i64 {
    let day = match source {
        Source::Vision { file, .. } => crate::binance::vision_file_day(file),
        _ => None,
    };
    day.map_or(label, |day| {
        crate::binance::metrics_snapshot_time(day, label)
    })
}

/// The reach of a kind of market fact; `None` for Vision's bookDepth rows,
/// which no column is derived from.
fn reach_of(kind: FactKind) -> Option<Reach> {
    Some(match kind {
        FactKind::Kline => Kline::REACH,
        FactKind::AggTrade => AggTrade::REACH,
        FactKind::BookTicker => BookTicker::REACH,
        FactKind::Metrics => Metrics::REACH,
        FactKind::FundingRate => FundingRate::REACH,
        FactKind::PremiumIndex => PremiumIndex::REACH,
        FactKind::OpenInterest => OpenInterest::REACH,
        FactKind::LongShortRatio => LongShortRatio::REACH,
        FactKind::MarkPrice => MarkPrice::REACH,
        FactKind::DepthDiff => DepthDiff::REACH,
        FactKind::DepthSnapshot => DepthSnapshot::REACH,
        FactKind::Liquidation => Liquidation::REACH,
        FactKind::BookDepth => return None,
    })
}

/// The first and last start of the hours a fact of `kind` at `time`
/// (its [`Event::time`]) from `source` can change.
fn hours_of(kind: FactKind, time: i64, source: &Source) -> Option<(i64, i64)> {
    let time = match kind {
        FactKind::Metrics => snapshot_time(time, source),
        _ => time,
    };
    reach_of(kind).map(|reach| reach.hours(time))
}

/// The first and last start of the hours whose rows the facts of a
/// [`TimeRun`] from `source` can change: one unbroken range, since its facts
/// leave no hour between its ends empty.
pub fn hours_reached_by_run(run: &TimeRun, source: &Source) -> Option<(i64, i64)> {
    let (first, _) = hours_of(run.kind, run.first, source)?;
    let (_, last) = hours_of(run.kind, run.last, source)?;
    Some((first, last))
}

/// Two copies of one fact that disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The fact's natural key, readable.
    pub key: String,
    /// The source of the copy kept.
    pub kept: Source,
    /// The source of the copy dropped.
    pub dropped: Source,
    /// Each field that differs: `name: kept ≠ dropped`.
    pub fields: Vec<String>,
}

/// The fields in which two copies of a fact differ, as `name: a ≠ b`: their
/// debug forms line by line (one field a line), so every kind of fact is
/// shown field by field without a list of fields to keep.
fn differing_fields(kept: &impl Debug, dropped: &impl Debug) -> Vec<String> {
    let (a, b) = (format!("{kept:#?}"), format!("{dropped:#?}"));
    a.lines()
        .zip(b.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| {
            let field = |line: &str| line.trim().trim_end_matches(',').to_string();
            let (name, kept) = field(a)
                .split_once(": ")
                .map_or((String::new(), field(a)), |(n, v)| {
                    (n.to_string(), v.to_string())
                });
            let dropped = field(b)
                .split_once(": ")
                .map_or(field(b), |(_, v)| v.to_string());
            format!("{name}: {kept} ≠ {dropped}")
        })
        .collect()
}

/// Where a copy came from: its record's source and arrival.
struct Origin {
    /// Source precedence: 0 Vision, 1 REST, 2 WebSocket.
    rank: u8,
    received_ms: i64,
    source: Source,
}

/// Every copy of one kind of fact offered so far: the facts, and the index of
/// each one's [`Origin`]. Two vectors rather than one of pairs, so that the
/// facts vector goes into [`HourFacts`] as it is, and comes back (through
/// [`Collector::reuse`]) to hold the next hour's copies: a busy hour's memory is
/// allocated once per worker, not once per hour.
struct Copies<T> {
    facts: Vec<T>,
    origins: Vec<u32>,
}

impl<T> Default for Copies<T> {
    fn default() -> Self {
        Copies {
            facts: Vec::new(),
            origins: Vec::new(),
        }
    }
}

impl<T: Fact> Copies<T> {
    /// Keeps the copy if its time is inside the fact's reach of the hour.
    fn offer(&mut self, fact: &T, origin: u32, hour: &Range<i64>) {
        if (hour.start - T::REACH.before_ms()..hour.end).contains(&fact.time()) {
            self.push(fact.clone(), origin);
        }
    }

    fn push(&mut self, fact: T, origin: u32) {
        self.facts.push(fact);
        self.origins.push(origin);
    }

    fn clear(&mut self) {
        self.facts.clear();
        self.origins.clear();
    }

    /// Reduces the copies, in place, to one fact per key. `arrival` ranks
    /// origins: among equal copies the one that arrived first (best source,
    /// earliest, then by source) is kept, so no tie is left to the log order.
    /// Every copy is first marked in the hour's coverage.
    fn resolve(&mut self, r: &mut Resolving) {
        for (fact, &origin) in self.facts.iter().zip(&self.origins) {
            r.seen(fact.class(), fact.time(), r.origins[origin as usize].rank);
        }
        let (conflicts, tallies) = (r.conflicts.len(), r.tallies.len());
        // The log mostly holds a kind's facts in key order already: resolve in
        // one pass, and sort only if that pass finds them out of order.
        if !self.resolve_in_order(r) {
            r.conflicts.truncate(conflicts);
            r.tallies.truncate(tallies);
            let arrival = r.arrival;
            let mut pairs: Vec<(T, u32)> =
                self.facts.drain(..).zip(self.origins.drain(..)).collect();
            pairs.sort_by(|(a, ao), (b, bo)| {
                a.key()
                    .cmp(&b.key())
                    .then(arrival[*ao as usize].cmp(&arrival[*bo as usize]))
            });
            for (fact, origin) in pairs {
                self.push(fact, origin);
            }
            let sorted = self.resolve_in_order(r);
            debug_assert!(sorted, "sorted copies resolve in one pass");
        }
    }

    /// Resolves copies that are in (key, arrival) order, moving each group's
    /// kept copy down to the front, and counts the facts of the hour that
    /// more than one source held. Returns false as soon as it meets copies
    /// out of that order, having only permuted them.
    fn resolve_in_order(&mut self, r: &mut Resolving) -> bool {
        let (origins, arrival) = (r.origins, r.arrival);
        let (mut kept, mut start) = (0, 0);
        let mut previous: Option<T::Key> = None;
        while start < self.facts.len() {
            let key = self.facts[start].key();
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return false;
            }
            let end = start
                + self.facts[start..]
                    .iter()
                    .take_while(|f| f.key() == key)
                    .count();
            let (group, group_origins) = (&self.facts[start..end], &self.origins[start..end]);
            if group_origins
                .windows(2)
                .any(|w| arrival[w[0] as usize] > arrival[w[1] as usize])
            {
                return false;
            }
            let equal = group[1..].iter().all(|f| *f == group[0]);
            if group.len() > 1 && r.hour.contains(&group[0].time()) {
                let sources = group_origins
                    .iter()
                    .fold(0u8, |m, &o| m | 1 << origins[o as usize].rank);
                r.tally(group[0].label(), sources, equal);
            }
            let winner = if equal {
                start
            } else {
                start + precedence(group, group_origins, &key, origins, &mut r.conflicts)
            };
            if kept != winner {
                self.facts.swap(kept, winner);
                self.origins.swap(kept, winner);
            }
            kept += 1;
            start = end;
            previous = Some(key);
        }
        self.facts.truncate(kept);
        self.origins.truncate(kept);
        true
    }

    /// The resolved facts, leaving the copies empty.
    fn take(&mut self) -> Vec<T> {
        self.origins.clear();
        std::mem::take(&mut self.facts)
    }

    /// Gives back a vector [`Copies::take`] handed out, to be filled again.
    fn reuse(&mut self, mut facts: Vec<T>) {
        if facts.capacity() > self.facts.capacity() {
            facts.clear();
            self.facts = facts;
        }
    }
}

/// Among copies of one key that disagree, the index of the one kept; each
/// losing value is reported.
fn precedence<T: Fact>(
    group: &[T],
    group_origins: &[u32],
    key: &T::Key,
    origins: &[Origin],
    conflicts: &mut Vec<Conflict>,
) -> usize {
    let origin = |i: usize| &origins[group_origins[i] as usize];
    // Each distinct value, represented by its first-arrived copy.
    let mut distinct: Vec<usize> = Vec::new();
    for (i, fact) in group.iter().enumerate() {
        if !distinct.iter().any(|&d| group[d] == *fact) {
            distinct.push(i);
        }
    }
    // Best source, a closed kline before an open one, then the larger
    // encoding (arbitrary, but never the log order).
    let rank = |i: usize| (origin(i).rank, !group[i].closed());
    distinct.sort_by(|&a, &b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| encoded(&group[b]).cmp(&encoded(&group[a])))
    });
    let kept = &origin(distinct[0]).source;
    conflicts.extend(distinct[1..].iter().map(|&loser| Conflict {
        key: format!("{}({key:?})", group[0].label()),
        kept: kept.clone(),
        dropped: origin(loser).source.clone(),
        fields: differing_fields(&group[distinct[0]], &group[loser]),
    }));
    distinct[0]
}

/// What resolving an hour's copies found besides its facts.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Copies that disagreed, by key.
    pub conflicts: Vec<Conflict>,
    /// The minutes each source covered per column class, and the facts more
    /// than one source held. [`super::provenance::complete`] adds what the
    /// copies cannot tell.
    pub provenance: Provenance,
}

/// The state of resolving one hour: the origins and their arrival order,
/// and what the copies show on the way.
struct Resolving<'a> {
    origins: &'a [Origin],
    arrival: &'a [u32],
    hour: Range<i64>,
    conflicts: Vec<Conflict>,
    tallies: Vec<Tally>,
    coverage: Vec<ClassCoverage>,
    /// As-of points: (class, time, source rank), marked when all are in.
    points: Vec<(ColumnClass, i64, u8)>,
}

impl<'a> Resolving<'a> {
    fn new(origins: &'a [Origin], arrival: &'a [u32], hour: Range<i64>) -> Self {
        Resolving {
            origins,
            arrival,
            hour,
            conflicts: Vec::new(),
            tallies: Vec::new(),
            coverage: ColumnClass::ALL.map(ClassCoverage::new).to_vec(),
            points: Vec::new(),
        }
    }

    /// A copy of `class`'s input at `time` from a source of `rank`.
    fn seen(&mut self, class: ColumnClass, time: i64, rank: u8) {
        if as_of_window(class).is_some() {
            self.points.push((class, time, rank));
        } else if self.hour.contains(&time) {
            let minute = (time - self.hour.start) / MINUTE_MS;
            self.coverage[class as usize].by_source[usize::from(rank)] |= 1 << minute;
        }
    }

    /// One fact of the hour that the sources in `sources` held.
    fn tally(&mut self, kind: &'static str, sources: u8, equal: bool) {
        if sources.count_ones() < 2 {
            return;
        }
        let at = match self
            .tallies
            .iter()
            .position(|t| t.kind == kind && t.sources == sources)
        {
            Some(at) => at,
            None => {
                self.tallies.push(Tally {
                    kind: kind.to_string(),
                    sources,
                    equal: 0,
                    conflicting: 0,
                });
                self.tallies.len() - 1
            }
        };
        let tally = &mut self.tallies[at];
        if equal {
            tally.equal += 1;
        } else {
            tally.conflicting += 1;
        }
    }

    /// The conflicts by key, and the provenance with the as-of points marked.
    fn finish(mut self) -> Resolution {
        for &(class, time, rank) in &self.points {
            let Some(window) = as_of_window(class) else {
                continue;
            };
            let first = time.div_euclid(MINUTE_MS) * MINUTE_MS;
            for (i, minute) in self.hour.clone().step_by(MINUTE_MS as usize).enumerate() {
                if (first..time + window).contains(&minute) {
                    self.coverage[class as usize].by_source[usize::from(rank)] |= 1 << i;
                }
            }
        }
        // Resolution order is by kind: list conflicts by key, losers in
        // precedence order.
        self.conflicts.sort_by(|a, b| a.key.cmp(&b.key));
        self.tallies
            .sort_by(|a, b| (&a.kind, a.sources).cmp(&(&b.kind, b.sources)));
        Resolution {
            conflicts: self.conflicts,
            provenance: Provenance {
                coverage: self.coverage,
                reconciliation: self.tallies,
            },
        }
    }
}

/// For a class whose columns are as-of values, how long a point covers the
/// minutes from its own: a metrics point its 5-minute interval, a funding
/// settlement its carry (8 h 1 min). `None` for classes of events in the minute.
fn as_of_window(class: ColumnClass) -> Option<i64> {
    match class {
        ColumnClass::Metrics => Some(5 * MINUTE_MS),
        ColumnClass::Funding => Some(Reach::Funding.before_ms()),
        _ => None,
    }
}

/// Reduces records, one at a time, to the facts of one hour. A worker keeps
/// one collector for every hour it derives: [`Collector::start`] begins an
/// hour, [`Collector::finish`] ends it, [`Collector::reuse`] returns the
/// memory of its facts.
#[derive(Default)]
pub struct Collector {
    hour: Range<i64>,
    origins: Vec<Origin>,
    origin_ids: FxHashMap<(i64, Source), u32>,
    klines: Copies<Kline>,
    agg_trades: Copies<AggTrade>,
    book_tickers: Copies<BookTicker>,
    /// The book updates kept from before the hour: those of the last minute
    /// before it that has any, the only look-back minute the forward fill can
    /// carry (`hour::fill_book`); the other 59 minutes are never kept. They
    /// usually arrive first (earlier records) and then sit at the front of
    /// `book_tickers`, where the hour's own updates follow them in key order;
    /// those that arrive later wait in `book_tail`.
    book_tail_minute: i64,
    book_tail_in_front: usize,
    book_tail: Copies<BookTicker>,
    metrics: Copies<Metrics>,
    funding: Copies<FundingRate>,
    premium_polls: Copies<PremiumIndex>,
    open_interest: Copies<OpenInterest>,
    ratios: Copies<LongShortRatio>,
    mark_prices: Copies<MarkPrice>,
    depth_diffs: Copies<DepthDiff>,
    depth_snapshots: Copies<DepthSnapshot>,
    liquidations: Copies<Liquidation>,
    /// What the planner recorded as unfillable in the hour (each once).
    unfillable: BTreeSet<Unfillable>,
}

impl Collector {
    /// A collector for the hour starting at `hour_start`.
    pub fn new(hour_start: i64) -> Collector {
        let mut collector = Collector::default();
        collector.start(hour_start);
        collector
    }

    /// Forgets everything taken in and begins the hour starting at `hour_start`.
    pub fn start(&mut self, hour_start: i64) {
        self.hour = hour_start..hour_start + HOUR_MS;
        self.origins.clear();
        self.origin_ids.clear();
        self.book_tail_minute = i64::MIN;
        self.book_tail_in_front = 0;
        self.klines.clear();
        self.agg_trades.clear();
        self.book_tickers.clear();
        self.book_tail.clear();
        self.metrics.clear();
        self.funding.clear();
        self.premium_polls.clear();
        self.open_interest.clear();
        self.ratios.clear();
        self.mark_prices.clear();
        self.depth_diffs.clear();
        self.depth_snapshots.clear();
        self.liquidations.clear();
        self.unfillable.clear();
    }

    /// Takes in the facts of one record that matter to the hour.
    pub fn add(&mut self, record: &Record) {
        if record.source == Source::Planner {
            // Not a source of facts (it is kept out of the hour's sources).
            for event in &record.events {
                if let Event::Unfillable(u) = event {
                    let reaches = u
                        .hours()
                        .is_some_and(|(first, last)| (first..=last).contains(&self.hour.start));
                    if reaches {
                        self.unfillable.insert(u.clone());
                    }
                }
            }
            return;
        }
        let origin = self.add_origin(record.received_ms(), &record.source);
        let hour = &self.hour.clone();
        for event in &record.events {
            match event {
                Event::Kline(e) => self.klines.offer(e, origin, hour),
                Event::AggTrade(e) => self.agg_trades.offer(e, origin, hour),
                Event::BookTicker(e) if e.time() >= hour.start => {
                    self.book_tickers.offer(e, origin, hour);
                }
                Event::BookTicker(e) => self.offer_book_tail(e, origin),
                Event::Metrics(e) => {
                    self.metrics
                        .offer(&at_snapshot(e, &record.source), origin, hour);
                }
                Event::FundingRate(e) => self.funding.offer(e, origin, hour),
                Event::PremiumIndex(e) => self.premium_polls.offer(e, origin, hour),
                Event::OpenInterest(e) => self.open_interest.offer(e, origin, hour),
                Event::LongShortRatio(e) => self.ratios.offer(e, origin, hour),
                Event::MarkPrice(e) => self.mark_prices.offer(e, origin, hour),
                Event::DepthDiff(e) => self.depth_diffs.offer(e, origin, hour),
                Event::DepthSnapshot(e) => self.depth_snapshots.offer(e, origin, hour),
                Event::Liquidation(e) => self.liquidations.offer(e, origin, hour),
                _ => {}
            }
        }
    }

    /// Takes in where a record came from, without its facts: for a record
    /// none of whose facts can matter to the hour, so that the hour's
    /// sources are the same as if it had been taken in whole. Returns the
    /// origin's number.
    pub fn add_origin(&mut self, received_ms: i64, source: &Source) -> u32 {
        let next = self.origins.len() as u32;
        let origin = *self
            .origin_ids
            .entry((received_ms, source.clone()))
            .or_insert(next);
        if origin == next {
            self.origins.push(Origin {
                rank: match source {
                    Source::Vision { .. } => 0,
                    Source::Rest { .. } => 1,
                    Source::WebSocket { .. } | Source::Planner => 2,
                },
                received_ms,
                source: source.clone(),
            });
        }
        origin
    }

    /// Keeps a book update from before the hour if it is in the last minute
    /// with updates so far.
    fn offer_book_tail(&mut self, update: &BookTicker, origin: u32) {
        let minute = update.time().div_euclid(MINUTE_MS) * MINUTE_MS;
        if minute < self.hour.start - Reach::LookBack.before_ms() {
            return;
        }
        let book = &mut self.book_tickers;
        if minute > self.book_tail_minute {
            self.book_tail_minute = minute;
            book.facts.drain(..self.book_tail_in_front);
            book.origins.drain(..self.book_tail_in_front);
            self.book_tail_in_front = 0;
            self.book_tail.clear();
        }
        if minute == self.book_tail_minute {
            if book.facts.len() == self.book_tail_in_front {
                book.push(update.clone(), origin);
                self.book_tail_in_front += 1;
            } else {
                self.book_tail.push(update.clone(), origin);
            }
        }
    }

    /// What the planner recorded no source can fill in the hour, in order.
    pub fn unfillable(&self) -> impl Iterator<Item = &Unfillable> {
        self.unfillable.iter()
    }

    /// The sources of the records taken in (`Source`'s display form).
    pub fn sources(&self) -> BTreeSet<String> {
        self.origins.iter().map(|o| o.source.to_string()).collect()
    }

    /// One fact per key, and what resolving them found.
    pub fn finish(&mut self) -> (HourFacts, Resolution) {
        let arrival = self.arrival();
        // Late tail copies go in front too: ahead of the hour's, the copies
        // usually form one run of ids, which needs no sorting.
        let (book, tail) = (&mut self.book_tickers, &mut self.book_tail);
        if !tail.facts.is_empty() {
            book.facts.splice(0..0, tail.facts.drain(..));
            book.origins.splice(0..0, tail.origins.drain(..));
        }
        let o = &self.origins[..];
        let mut resolving = Resolving::new(o, &arrival, self.hour.clone());
        let r = &mut resolving;
        self.depth_diffs.resolve(r);
        let depth_diffs = (self
            .depth_diffs
            .facts
            .drain(..)
            .zip(&self.depth_diffs.origins))
        .map(|(d, &i)| (d, o[i as usize].received_ms))
        .collect();
        // The folds want trades and book updates in (time, id) order.
        let mut agg_trades = resolved(&mut self.agg_trades, r);
        in_time_order(&mut agg_trades, |t| t.agg_trade_id);
        let mut book_tickers = resolved(&mut self.book_tickers, r);
        in_time_order(&mut book_tickers, |b| b.update_id);
        let hour_facts = HourFacts {
            hour_start: self.hour.start,
            klines: resolved(&mut self.klines, r),
            agg_trades,
            book_tickers,
            metrics: resolved(&mut self.metrics, r),
            open_interest: resolved(&mut self.open_interest, r),
            ratios: resolved(&mut self.ratios, r),
            funding: resolved(&mut self.funding, r),
            mark_prices: resolved(&mut self.mark_prices, r),
            premium_polls: resolved(&mut self.premium_polls, r),
            depth_diffs,
            depth_snapshots: resolved(&mut self.depth_snapshots, r),
            liquidations: resolved(&mut self.liquidations, r),
            liquidation_coverage: Vec::new(),
        };
        (hour_facts, resolving.finish())
    }

    /// Takes back the memory of facts [`Collector::finish`] gave out, to hold
    /// the copies of a later hour.
    pub fn reuse(&mut self, facts: HourFacts) {
        self.klines.reuse(facts.klines);
        self.agg_trades.reuse(facts.agg_trades);
        self.book_tickers.reuse(facts.book_tickers);
        self.metrics.reuse(facts.metrics);
        self.open_interest.reuse(facts.open_interest);
        self.ratios.reuse(facts.ratios);
        self.funding.reuse(facts.funding);
        self.mark_prices.reuse(facts.mark_prices);
        self.premium_polls.reuse(facts.premium_polls);
        self.liquidations.reuse(facts.liquidations);
    }

    /// Each origin's position in arrival order: best source, earliest, then by
    /// the source's encoding.
    fn arrival(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.origins.len() as u32).collect();
        order.sort_by_cached_key(|&i| {
            let o = &self.origins[i as usize];
            (o.rank, o.received_ms, encoded(&o.source))
        });
        let mut arrival = vec![0u32; order.len()];
        for (position, &i) in order.iter().enumerate() {
            arrival[i as usize] = position as u32;
        }
        arrival
    }
}

/// Facts in `(time, id)` order. They arrive in id order, and bookTicker times
/// run slightly out of step with ids: only a few neighbours are out of place,
/// which an insertion sort fixes in place in about linear time (a general sort
/// finds no long runs to exploit and needs a buffer). Past a budget of moves,
/// input that is really out of order gets the general sort.
fn in_time_order<T: Fact>(facts: &mut [T], id: impl Fn(&T) -> u64) {
    let order = |f: &T| (f.time(), id(f));
    let mut budget = 8 * facts.len();
    for i in 1..facts.len() {
        let mut j = i;
        while j > 0 && order(&facts[j - 1]) > order(&facts[j]) {
            if budget == 0 {
                // Keys are unique (ids are), so an unstable sort is deterministic.
                facts.sort_unstable_by_key(order);
                return;
            }
            facts.swap(j - 1, j);
            j -= 1;
            budget -= 1;
        }
    }
}

/// The facts of one kind, resolved.
fn resolved<T: Fact>(copies: &mut Copies<T>, r: &mut Resolving) -> Vec<T> {
    copies.resolve(r);
    copies.take()
}

/// Reduces `records` to the facts of the hour starting at `hour_start`.
pub fn collect_hour<'a>(
    hour_start: i64,
    records: impl IntoIterator<Item = &'a Record>,
) -> (HourFacts, Resolution) {
    let mut collector = Collector::new(hour_start);
    for record in records {
        collector.add(record);
    }
    collector.finish()
}

fn encoded(value: &impl serde::Serialize) -> Vec<u8> {
    postcard::to_stdvec(value).expect("serializing into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use arbitrary::{Arbitrary, Unstructured};

    use super::*;
    use crate::event::Sha256;

    /// Moves a market event to `time`.
    fn set_time(event: &mut Event, time: i64) {
        match event {
            Event::Kline(e) => e.open_time = time,
            Event::AggTrade(e) => e.transact_time = time,
            Event::BookTicker(e) => (e.transaction_time, e.event_time) = (time, time),
            Event::Metrics(e) => e.create_time = time,
            Event::BookDepth(e) => e.timestamp = time,
            Event::FundingRate(e) => e.funding_time = time,
            Event::PremiumIndex(e) => e.time = time,
            Event::OpenInterest(e) => e.time = time,
            Event::LongShortRatio(e) => e.time = time,
            Event::Liquidation(e) => e.trade_time = time,
            Event::DepthDiff(e) => e.event_time = time,
            Event::DepthSnapshot(e) => e.event_time = time,
            Event::MarkPrice(e) => e.event_time = time,
            _ => {}
        }
    }

    /// The hours a record's market facts reach, from its envelope's runs,
    /// are the hours they reach one by one: random records, their facts
    /// minutes to hours apart, from every kind of source (a metrics file of
    /// a day after Vision moved its labels shifts them).
    #[test]
    fn runs_reach_the_hours_their_facts_reach() {
        let mut rng = fastrand::Rng::with_seed(7);
        let sources = [
            Source::Vision {
                file: "BTCUSDT-metrics-2026-07-01.zip".into(),
                sha256: Sha256([0; 32]),
            },
            Source::Vision {
                file: "BTCUSDT-metrics-2024-03-01.zip".into(),
                sha256: Sha256([0; 32]),
            },
            Source::Rest {
                endpoint: "/fapi/v1/klines".into(),
            },
            Source::Planner,
        ];
        let mut checked = 0;
        while checked < 3000 {
            let bytes: Vec<u8> = (0..rng.usize(64..8192)).map(|_| rng.u8(..)).collect();
            let Ok(mut record) = Record::arbitrary(&mut Unstructured::new(&bytes)) else {
                continue;
            };
            record.source = sources[rng.usize(..sources.len())].clone();
            let spread = [MINUTE_MS, 20 * MINUTE_MS, HOUR_MS, 3 * HOUR_MS][rng.usize(..4)];
            let mut time = 1_782_000_000_000 + rng.i64(..HOUR_MS);
            for event in &mut record.events {
                time += rng.i64(-spread..=spread);
                set_time(event, time);
            }
            let one_by_one: BTreeSet<i64> = record
                .events
                .iter()
                .filter_map(|e| hours_of(e.kind()?, e.time()?, &record.source))
                .flat_map(|(a, b)| (a..=b).step_by(HOUR_MS as usize))
                .collect();
            let envelope = record.envelope();
            let by_runs: BTreeSet<i64> = envelope
                .runs
                .iter()
                .filter_map(|run| hours_reached_by_run(run, &record.source))
                .flat_map(|(a, b)| (a..=b).step_by(HOUR_MS as usize))
                .collect();
            assert_eq!(by_runs, one_by_one, "{:?}", envelope.runs);
            checked += 1;
        }
    }
}
