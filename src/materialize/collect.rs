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

use super::hour::{HourFacts, HOUR_MS, MINUTE_MS};
use crate::event::{
    AggTrade, BookTicker, DepthDiff, Event, FundingRate, Kline, Liquidation, LongShortRatio,
    MarkPrice, Metrics, OpenInterest, PremiumIndex, Record, Source,
};

/// How far before an hour a fact can still matter to it: the look-back of the
/// fill rules. The collector keeps facts inside the reach; the offset index lists
/// a record under every hour it reaches. One definition, so the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only the hour it falls in.
    Hour,
    /// Also the next hour: book updates and as-of points (60 minutes).
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

    /// The starts of the hours a fact at `time` matters to.
    pub fn hours(self, time: i64) -> impl Iterator<Item = i64> {
        let first = time.div_euclid(HOUR_MS) * HOUR_MS;
        let last = (time + self.before_ms()).div_euclid(HOUR_MS) * HOUR_MS;
        (first..=last).step_by(HOUR_MS as usize)
    }
}

/// A kind of market fact: its natural key, the time it is bucketed by, and
/// how far it reaches.
trait Fact: Clone + PartialEq + serde::Serialize {
    type Key: Ord + Debug;
    /// Names the kind in conflict reports.
    const NAME: &'static str;
    const REACH: Reach;
    fn key(&self) -> Self::Key;
    fn time(&self) -> i64;
    /// False only for a kline seen while still open: a closed copy beats it.
    fn closed(&self) -> bool {
        true
    }
}

/// `impl Fact for T`: name, reach, key type, key and time from a binding `f`.
macro_rules! fact {
    ($type:ty, $name:literal, $reach:ident, $key_type:ty, |$f:ident| $key:expr, $time:expr) => {
        impl Fact for $type {
            type Key = $key_type;
            const NAME: &'static str = $name;
            const REACH: Reach = Reach::$reach;
            fn key(&self) -> $key_type {
                let $f = self;
                $key
            }
            fn time(&self) -> i64 {
                let $f = self;
                $time
            }
        }
    };
}

fact!(
    AggTrade,
    "aggTrade",
    Hour,
    u64,
    |f| f.agg_trade_id,
    f.transact_time
);
fact!(
    BookTicker,
    "bookTicker",
    LookBack,
    u64,
    |f| f.update_id,
    f.time()
);
fact!(
    Metrics,
    "metrics",
    LookBack,
    i64,
    |f| f.create_time,
    f.create_time
);
fact!(
    FundingRate,
    "funding",
    Funding,
    i64,
    |f| f.funding_time,
    f.funding_time
);
fact!(PremiumIndex, "premiumIndex", Hour, i64, |f| f.time, f.time);
fact!(
    OpenInterest,
    "openInterest",
    LookBack,
    (u8, i64),
    |f| (f.source as u8, f.time),
    f.time
);
fact!(
    LongShortRatio,
    "ratio",
    LookBack,
    (u8, i64),
    |f| (f.kind as u8, f.time),
    f.time
);
fact!(
    MarkPrice,
    "markPrice",
    Hour,
    i64,
    |f| f.event_time,
    f.event_time
);
fact!(
    DepthDiff,
    "depthDiff",
    Hour,
    u64,
    |f| f.final_update_id,
    f.event_time
);
fact!(
    Liquidation,
    "liquidation",
    Hour,
    Vec<u8>,
    |f| encoded(f),
    f.trade_time
);

impl Fact for Kline {
    type Key = (u8, i64, i64);
    const NAME: &'static str = "kline";
    const REACH: Reach = Reach::Hour;
    fn key(&self) -> (u8, i64, i64) {
        (self.kind as u8, self.interval_ms, self.open_time)
    }
    fn time(&self) -> i64 {
        self.open_time
    }
    fn closed(&self) -> bool {
        self.closed
    }
}

/// The time and reach of a market event; `None` for coverage events.
fn time_and_reach(event: &Event) -> Option<(i64, Reach)> {
    fn of<T: Fact>(fact: &T) -> Option<(i64, Reach)> {
        Some((fact.time(), T::REACH))
    }
    match event {
        Event::Kline(e) => of(e),
        Event::AggTrade(e) => of(e),
        Event::BookTicker(e) => of(e),
        Event::Metrics(e) => of(e),
        Event::FundingRate(e) => of(e),
        Event::PremiumIndex(e) => of(e),
        Event::OpenInterest(e) => of(e),
        Event::LongShortRatio(e) => of(e),
        Event::MarkPrice(e) => of(e),
        Event::DepthDiff(e) => of(e),
        Event::Liquidation(e) => of(e),
        _ => None,
    }
}

/// The starts of the hours whose rows a market event can change.
pub fn hours_reached(event: &Event) -> impl Iterator<Item = i64> {
    time_and_reach(event)
        .map(|(time, reach)| reach.hours(time))
        .into_iter()
        .flatten()
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
}

/// Where a copy came from: its record's source and arrival.
struct Origin {
    /// Source precedence: 0 Vision, 1 REST, 2 WebSocket.
    rank: u8,
    received_ms: i64,
    source: Source,
}

/// A copy of a fact and the index of its [`Origin`].
type Copy<T> = (T, u32);

/// Every copy of one kind of fact offered so far.
struct Copies<T>(Vec<Copy<T>>);

impl<T> Default for Copies<T> {
    fn default() -> Self {
        Copies(Vec::new())
    }
}

impl<T: Fact> Copies<T> {
    /// Keeps the copy if its time is inside the fact's reach of the hour.
    fn offer(&mut self, fact: &T, origin: u32, hour: &Range<i64>) {
        if (hour.start - T::REACH.before_ms()..hour.end).contains(&fact.time()) {
            self.0.push((fact.clone(), origin));
        }
    }

    /// One fact per key. `arrival` ranks origins: among equal copies the one
    /// that arrived first (best source, earliest, then by source) is kept, so
    /// no tie is left to the log order.
    fn resolve(
        mut self,
        origins: &[Origin],
        arrival: &[u32],
        conflicts: &mut Vec<Conflict>,
    ) -> Vec<Copy<T>> {
        self.0.sort_by(|a, b| {
            a.0.key()
                .cmp(&b.0.key())
                .then(arrival[a.1 as usize].cmp(&arrival[b.1 as usize]))
        });
        // Resolve in place: each group's kept copy moves down to `kept`.
        let list = &mut self.0;
        let (mut kept, mut start) = (0, 0);
        while start < list.len() {
            let key = list[start].0.key();
            let end = start
                + list[start..]
                    .iter()
                    .take_while(|c| c.0.key() == key)
                    .count();
            let group = &list[start..end];
            let winner = if group.iter().all(|c| c.0 == group[0].0) {
                start
            } else {
                start + Self::precedence(group, &key, origins, conflicts)
            };
            list.swap(kept, winner);
            kept += 1;
            start = end;
        }
        list.truncate(kept);
        self.0
    }

    /// The winner among copies of one key that disagree (its index in `group`);
    /// each losing value is reported.
    fn precedence(
        group: &[Copy<T>],
        key: &T::Key,
        origins: &[Origin],
        conflicts: &mut Vec<Conflict>,
    ) -> usize {
        // Each distinct value, represented by its first-arrived copy.
        let mut distinct: Vec<usize> = Vec::new();
        for (i, copy) in group.iter().enumerate() {
            if !distinct.iter().any(|&d| group[d].0 == copy.0) {
                distinct.push(i);
            }
        }
        // Best source, a closed kline before an open one, then the larger
        // encoding (arbitrary, but never the log order).
        let rank = |c: &Copy<T>| (origins[c.1 as usize].rank, !c.0.closed());
        distinct.sort_by(|&a, &b| {
            let (a, b) = (&group[a], &group[b]);
            rank(a)
                .cmp(&rank(b))
                .then_with(|| encoded(&b.0).cmp(&encoded(&a.0)))
        });
        let kept = &origins[group[distinct[0]].1 as usize].source;
        conflicts.extend(distinct[1..].iter().map(|&loser| Conflict {
            key: format!("{}({key:?})", T::NAME),
            kept: kept.clone(),
            dropped: origins[group[loser].1 as usize].source.clone(),
        }));
        distinct[0]
    }
}

/// Reduces records, one at a time, to the facts of one hour.
pub struct Collector {
    hour: Range<i64>,
    origins: Vec<Origin>,
    origin_ids: FxHashMap<(i64, Source), u32>,
    klines: Copies<Kline>,
    agg_trades: Copies<AggTrade>,
    book_tickers: Copies<BookTicker>,
    /// Book updates of the last minute before the hour that has any: the only
    /// look-back minute the forward fill can carry (`hour::fill_book`), so the
    /// other 59 minutes of look-back are never kept.
    book_tail: Copies<BookTicker>,
    book_tail_minute: i64,
    metrics: Copies<Metrics>,
    funding: Copies<FundingRate>,
    premium_polls: Copies<PremiumIndex>,
    open_interest: Copies<OpenInterest>,
    ratios: Copies<LongShortRatio>,
    mark_prices: Copies<MarkPrice>,
    depth_diffs: Copies<DepthDiff>,
    liquidations: Copies<Liquidation>,
}

impl Collector {
    /// A collector for the hour starting at `hour_start`.
    pub fn new(hour_start: i64) -> Collector {
        Collector {
            hour: hour_start..hour_start + HOUR_MS,
            origins: Vec::new(),
            origin_ids: FxHashMap::default(),
            klines: Copies::default(),
            agg_trades: Copies::default(),
            book_tickers: Copies::default(),
            book_tail: Copies::default(),
            book_tail_minute: i64::MIN,
            metrics: Copies::default(),
            funding: Copies::default(),
            premium_polls: Copies::default(),
            open_interest: Copies::default(),
            ratios: Copies::default(),
            mark_prices: Copies::default(),
            depth_diffs: Copies::default(),
            liquidations: Copies::default(),
        }
    }

    /// Takes in the facts of one record that matter to the hour.
    pub fn add(&mut self, record: &Record) {
        let next = self.origins.len() as u32;
        let origin = *self
            .origin_ids
            .entry((record.received_ms, record.source.clone()))
            .or_insert(next);
        if origin == next {
            self.origins.push(Origin {
                rank: match record.source {
                    Source::Vision { .. } => 0,
                    Source::Rest { .. } => 1,
                    Source::WebSocket { .. } => 2,
                },
                received_ms: record.received_ms,
                source: record.source.clone(),
            });
        }
        let hour = &self.hour;
        for event in &record.events {
            match event {
                Event::Kline(e) => self.klines.offer(e, origin, hour),
                Event::AggTrade(e) => self.agg_trades.offer(e, origin, hour),
                Event::BookTicker(e) if e.time() >= hour.start => {
                    self.book_tickers.offer(e, origin, hour)
                }
                Event::BookTicker(e) => {
                    let minute = e.time().div_euclid(MINUTE_MS) * MINUTE_MS;
                    if minute > self.book_tail_minute {
                        self.book_tail.0.clear();
                        self.book_tail_minute = minute;
                    }
                    if minute == self.book_tail_minute {
                        self.book_tail.offer(e, origin, hour);
                    }
                }
                Event::Metrics(e) => self.metrics.offer(e, origin, hour),
                Event::FundingRate(e) => self.funding.offer(e, origin, hour),
                Event::PremiumIndex(e) => self.premium_polls.offer(e, origin, hour),
                Event::OpenInterest(e) => self.open_interest.offer(e, origin, hour),
                Event::LongShortRatio(e) => self.ratios.offer(e, origin, hour),
                Event::MarkPrice(e) => self.mark_prices.offer(e, origin, hour),
                Event::DepthDiff(e) => self.depth_diffs.offer(e, origin, hour),
                Event::Liquidation(e) => self.liquidations.offer(e, origin, hour),
                _ => {}
            }
        }
    }

    /// The sources of the records taken in (`Source`'s display form).
    pub fn sources(&self) -> BTreeSet<String> {
        self.origins.iter().map(|o| o.source.to_string()).collect()
    }

    /// One fact per key, and the disagreements found, listed by key.
    pub fn finish(mut self) -> (HourFacts, Vec<Conflict>) {
        let arrival = self.arrival();
        // The tail comes from earlier records: ahead of the hour, the copies
        // usually form one run of ids, which the sort only has to check.
        self.book_tail.0.append(&mut self.book_tickers.0);
        self.book_tickers = self.book_tail;
        let mut conflicts = Vec::new();
        let (o, a, c) = (&self.origins[..], &arrival[..], &mut conflicts);
        // The folds want trades and book updates in (time, id) order.
        let agg_trades = in_time_order(facts(self.agg_trades.resolve(o, a, c)), |t| t.agg_trade_id);
        let book_tickers =
            in_time_order(facts(self.book_tickers.resolve(o, a, c)), |b| b.update_id);
        let hour_facts = HourFacts {
            hour_start: self.hour.start,
            klines: facts(self.klines.resolve(o, a, c)),
            agg_trades,
            book_tickers,
            metrics: facts(self.metrics.resolve(o, a, c)),
            open_interest: facts(self.open_interest.resolve(o, a, c)),
            ratios: facts(self.ratios.resolve(o, a, c)),
            funding: facts(self.funding.resolve(o, a, c)),
            mark_prices: facts(self.mark_prices.resolve(o, a, c)),
            premium_polls: facts(self.premium_polls.resolve(o, a, c)),
            depth_diffs: (self.depth_diffs.resolve(o, a, c).into_iter())
                .map(|(d, i)| (d, o[i as usize].received_ms))
                .collect(),
            liquidations: facts(self.liquidations.resolve(o, a, c)),
            liquidation_coverage: Vec::new(),
        };
        // Resolution order is by kind: list conflicts by key, losers in
        // precedence order.
        conflicts.sort_by(|a, b| a.key.cmp(&b.key));
        (hour_facts, conflicts)
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
fn in_time_order<T: Fact>(mut facts: Vec<T>, id: impl Fn(&T) -> u64) -> Vec<T> {
    let order = |f: &T| (f.time(), id(f));
    let mut budget = 8 * facts.len();
    for i in 1..facts.len() {
        let mut j = i;
        while j > 0 && order(&facts[j - 1]) > order(&facts[j]) {
            if budget == 0 {
                // Keys are unique (ids are), so an unstable sort is deterministic.
                facts.sort_unstable_by_key(order);
                return facts;
            }
            facts.swap(j - 1, j);
            j -= 1;
            budget -= 1;
        }
    }
    facts
}

/// The facts of resolved copies.
fn facts<T>(copies: Vec<Copy<T>>) -> Vec<T> {
    copies.into_iter().map(|(fact, _)| fact).collect()
}

/// Reduces `records` to the facts of the hour starting at `hour_start`.
pub fn collect_hour<'a>(
    hour_start: i64,
    records: impl IntoIterator<Item = &'a Record>,
) -> (HourFacts, Vec<Conflict>) {
    let mut collector = Collector::new(hour_start);
    for record in records {
        collector.add(record);
    }
    collector.finish()
}

fn encoded(value: &impl serde::Serialize) -> Vec<u8> {
    postcard::to_stdvec(value).expect("serializing into a Vec cannot fail")
}
