//! From log records to one hour's [`HourFacts`]: the *set* of distinct facts.
//!
//! Each fact has a natural key (an aggTrade's id, a kline's kind and open time,
//! …). Copies of one fact collapse to one, whatever order, duplication or
//! batching the log holds them in. When copies disagree, the source precedence
//! Vision > REST > WebSocket decides, then (between equals) a closed kline beats
//! an open one, then the larger encoding: arbitrary but never the log order.
//! Disagreements are returned as [`Conflict`]s for the audit.
//!
//! The caller hands in the visible records that may touch the hour (see
//! `event::Visibility`); coverage of live streams is computed apart.

use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use super::hour::{HourFacts, HOUR_MS, MINUTE_MS};
use crate::event::{Event, Record, Source};

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

/// A market fact's natural key, the time it is bucketed by and its reach;
/// `None` for coverage events.
fn fact(event: &Event) -> Option<(Key, i64, Reach)> {
    Some(match event {
        Event::Kline(k) => (
            Key::Kline(k.kind as u8, k.interval_ms, k.open_time),
            k.open_time,
            Reach::Hour,
        ),
        Event::AggTrade(t) => (Key::AggTrade(t.agg_trade_id), t.transact_time, Reach::Hour),
        Event::BookTicker(b) => (Key::BookTicker(b.update_id), b.time(), Reach::LookBack),
        Event::Metrics(m) => (Key::Metrics(m.create_time), m.create_time, Reach::LookBack),
        Event::FundingRate(f) => (Key::Funding(f.funding_time), f.funding_time, Reach::Funding),
        Event::PremiumIndex(p) => (Key::PremiumIndex(p.time), p.time, Reach::Hour),
        Event::OpenInterest(o) => (
            Key::OpenInterest(o.source as u8, o.time),
            o.time,
            Reach::LookBack,
        ),
        Event::LongShortRatio(r) => (Key::Ratio(r.kind as u8, r.time), r.time, Reach::LookBack),
        Event::MarkPrice(m) => (Key::MarkPrice(m.event_time), m.event_time, Reach::Hour),
        Event::DepthDiff(d) => (Key::Depth(d.final_update_id), d.event_time, Reach::Hour),
        Event::Liquidation(l) => (Key::Liquidation(encoded(event)), l.trade_time, Reach::Hour),
        _ => return None,
    })
}

/// The starts of the hours whose rows a market event can change.
pub fn hours_reached(event: &Event) -> impl Iterator<Item = i64> {
    fact(event)
        .map(|(_, time, reach)| reach.hours(time))
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

/// The natural key of a fact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Kline(u8, i64, i64),
    AggTrade(u64),
    BookTicker(u64),
    Metrics(i64),
    Funding(i64),
    PremiumIndex(i64),
    OpenInterest(u8, i64),
    Ratio(u8, i64),
    MarkPrice(i64),
    Depth(u64),
    Liquidation(Vec<u8>),
}

/// A copy of a fact, borrowed from its record.
#[derive(Clone, Copy)]
struct Seen<'a> {
    /// Source precedence: 0 Vision, 1 REST, 2 WebSocket.
    source_rank: u8,
    event: &'a Event,
    record: &'a Record,
}

impl Seen<'_> {
    /// Between copies of the same value: best source, earliest arrival, then the
    /// source's encoding, so that no tie is left to the log order.
    fn arrives_before(&self, other: &Seen) -> bool {
        (self.source_rank, self.record.received_ms)
            .cmp(&(other.source_rank, other.record.received_ms))
            .then_with(|| encoded(&self.record.source).cmp(&encoded(&other.record.source)))
            .is_lt()
    }

    /// Between copies that disagree: best source, a closed kline before an open
    /// one, then the larger encoding (arbitrary, but never the log order).
    fn precedence(&self, other: &Seen) -> std::cmp::Ordering {
        let open = |c: &Seen| matches!(c.event, Event::Kline(k) if !k.closed);
        (self.source_rank, open(self))
            .cmp(&(other.source_rank, open(other)))
            .then_with(|| encoded(other.event).cmp(&encoded(self.event)))
    }
}

/// The distinct values seen for one key: the first, and others only when copies
/// disagree (so the common case allocates nothing).
struct Slot<'a> {
    first: Seen<'a>,
    others: Vec<Seen<'a>>,
}

impl<'a> Slot<'a> {
    fn add(&mut self, copy: Seen<'a>) {
        let same = std::iter::once(&mut self.first)
            .chain(self.others.iter_mut())
            .find(|c| c.event == copy.event);
        match same {
            Some(same) if copy.arrives_before(same) => *same = copy,
            Some(_) => {}
            None => self.others.push(copy),
        }
    }
}

/// Reduces `records` to the facts of the hour starting at `hour_start`.
pub fn collect_hour<'a>(
    hour_start: i64,
    records: impl IntoIterator<Item = &'a Record>,
) -> (HourFacts, Vec<Conflict>) {
    let end = hour_start + HOUR_MS;
    let records: Vec<&'a Record> = records.into_iter().collect();
    // Keys are the exchange's ids and times, not attacker-chosen: a fast hash, and
    // room for every event up front (no rehashing mid-hour).
    let events = records.iter().map(|r| r.events.len()).sum();
    let mut slots: FxHashMap<Key, Slot<'a>> =
        FxHashMap::with_capacity_and_hasher(events, Default::default());
    for record in records {
        let source_rank = match record.source {
            Source::Vision { .. } => 0,
            Source::Rest { .. } => 1,
            Source::WebSocket { .. } => 2,
        };
        for event in &record.events {
            let Some((key, time, reach)) = fact(event) else {
                continue;
            };
            if !(hour_start - reach.before_ms()..end).contains(&time) {
                continue;
            }
            let copy = Seen {
                source_rank,
                event,
                record,
            };
            match slots.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(Slot {
                        first: copy,
                        others: Vec::new(),
                    });
                }
                Entry::Occupied(mut o) => o.get_mut().add(copy),
            }
        }
    }
    let mut facts = HourFacts {
        hour_start,
        ..HourFacts::default()
    };
    let mut conflicts = Vec::new();
    for (key, slot) in slots {
        let mut winner = slot.first;
        if !slot.others.is_empty() {
            let mut distinct: Vec<Seen> = std::iter::once(slot.first).chain(slot.others).collect();
            distinct.sort_by(Seen::precedence);
            winner = distinct[0];
            for loser in &distinct[1..] {
                conflicts.push(Conflict {
                    key: format!("{key:?}"),
                    kept: winner.record.source.clone(),
                    dropped: loser.record.source.clone(),
                });
            }
        }
        match winner.event.clone() {
            Event::Kline(e) => facts.klines.push(e),
            Event::AggTrade(e) => facts.agg_trades.push(e),
            Event::BookTicker(e) => facts.book_tickers.push(e),
            Event::Metrics(e) => facts.metrics.push(e),
            Event::FundingRate(e) => facts.funding.push(e),
            Event::PremiumIndex(e) => facts.premium_polls.push(e),
            Event::OpenInterest(e) => facts.open_interest.push(e),
            Event::LongShortRatio(e) => facts.ratios.push(e),
            Event::MarkPrice(e) => facts.mark_prices.push(e),
            Event::DepthDiff(e) => facts.depth_diffs.push((e, winner.record.received_ms)),
            Event::Liquidation(e) => facts.liquidations.push(e),
            _ => {}
        }
    }
    // Hash order is arbitrary: the conflicts are listed by key, losers in precedence order.
    conflicts.sort_by(|a, b| a.key.cmp(&b.key));
    (facts, conflicts)
}

fn encoded(value: &impl serde::Serialize) -> Vec<u8> {
    postcard::to_stdvec(value).expect("serializing into a Vec cannot fail")
}
