//! The history endpoints: how each is paged, and its JSON turned into events.
//! A page that lacks a field or holds a malformed number is refused whole
//! (and fetched again by the client): nothing from it reaches the log.

use anyhow::{anyhow, Context};
use serde_json::Value;

use super::governor::Cost;
use crate::binance;
use crate::event::{
    Event, FundingRate, Kline, KlineKind, LongShortRatio, OpenInterest, OpenInterestSource,
    RatioKind,
};
use crate::sources::json::{self, decimal, decimal_text, int, int_or_text};

/// A history endpoint `bml ingest rest` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `/fapi/v1/klines`.
    Klines,
    /// `/fapi/v1/markPriceKlines`.
    MarkPriceKlines,
    /// `/fapi/v1/indexPriceKlines`.
    IndexPriceKlines,
    /// `/fapi/v1/premiumIndexKlines`.
    PremiumIndexKlines,
    /// `/fapi/v1/aggTrades` (the last 48 hours only).
    AggTrades,
    /// `/fapi/v1/fundingRate`.
    FundingRate,
    /// `/futures/data/openInterestHist` (the last 30 days only).
    OpenInterestHist,
    /// `/futures/data/topLongShortAccountRatio` (the last 30 days only).
    TopLongShortAccountRatio,
    /// `/futures/data/topLongShortPositionRatio` (the last 30 days only).
    TopLongShortPositionRatio,
    /// `/futures/data/globalLongShortAccountRatio` (the last 30 days only).
    GlobalLongShortAccountRatio,
}

/// How an endpoint is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// By time: `startTime` moves past the last element of each page.
    Time {
        /// The largest `limit`.
        limit: u32,
        /// Extra parameters (`interval=1m`, `period=5m`).
        extra: &'static [(&'static str, &'static str)],
    },
    /// aggTrades: hour windows, then `fromId` while a window's pages are full.
    AggTrades,
}

impl Kind {
    /// Every kind, in the order a run fetches them.
    pub const ALL: [Kind; 10] = [
        Kind::Klines,
        Kind::MarkPriceKlines,
        Kind::IndexPriceKlines,
        Kind::PremiumIndexKlines,
        Kind::AggTrades,
        Kind::FundingRate,
        Kind::OpenInterestHist,
        Kind::TopLongShortAccountRatio,
        Kind::TopLongShortPositionRatio,
        Kind::GlobalLongShortAccountRatio,
    ];

    /// The endpoint's path; its last segment is the kind's name on the command line.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Klines => "/fapi/v1/klines",
            Kind::MarkPriceKlines => "/fapi/v1/markPriceKlines",
            Kind::IndexPriceKlines => "/fapi/v1/indexPriceKlines",
            Kind::PremiumIndexKlines => "/fapi/v1/premiumIndexKlines",
            Kind::AggTrades => "/fapi/v1/aggTrades",
            Kind::FundingRate => "/fapi/v1/fundingRate",
            Kind::OpenInterestHist => "/futures/data/openInterestHist",
            Kind::TopLongShortAccountRatio => "/futures/data/topLongShortAccountRatio",
            Kind::TopLongShortPositionRatio => "/futures/data/topLongShortPositionRatio",
            Kind::GlobalLongShortAccountRatio => "/futures/data/globalLongShortAccountRatio",
        }
    }

    /// The endpoint's last path segment.
    pub fn name(self) -> &'static str {
        self.path().rsplit('/').next().expect("paths have segments")
    }

    /// How far back from the exchange's time the endpoint serves, if limited.
    pub fn horizon_ms(self) -> Option<i64> {
        match self {
            Kind::AggTrades => Some(binance::AGG_TRADES_REST_HORIZON_MS),
            Kind::OpenInterestHist
            | Kind::TopLongShortAccountRatio
            | Kind::TopLongShortPositionRatio
            | Kind::GlobalLongShortAccountRatio => Some(binance::STATISTICS_HORIZON_MS),
            _ => None,
        }
    }

    /// The symbol parameter's name (`pair` for index price klines).
    pub fn symbol_param(self) -> &'static str {
        if self == Kind::IndexPriceKlines {
            "pair"
        } else {
            "symbol"
        }
    }

    /// How the endpoint is paged.
    pub fn paging(self) -> Paging {
        const KLINES: &[(&str, &str)] = &[("interval", "1m")];
        const STATS: &[(&str, &str)] = &[("period", "5m")];
        match self {
            Kind::Klines
            | Kind::MarkPriceKlines
            | Kind::IndexPriceKlines
            | Kind::PremiumIndexKlines => Paging::Time {
                limit: 1500,
                extra: KLINES,
            },
            Kind::AggTrades => Paging::AggTrades,
            Kind::FundingRate => Paging::Time {
                limit: 1000,
                extra: &[],
            },
            _ => Paging::Time {
                limit: 500,
                extra: STATS,
            },
        }
    }

    /// The `limit` to ask for, at most `max`, when `range_ms` is left to
    /// read: as many klines as the range has minutes (so that the minute
    /// job's few minutes cost the lowest weight tier), else `max`.
    pub fn page_limit(self, max: u32, range_ms: i64) -> u32 {
        let klines = matches!(
            self,
            Kind::Klines
                | Kind::MarkPriceKlines
                | Kind::IndexPriceKlines
                | Kind::PremiumIndexKlines
        );
        if !klines {
            return max;
        }
        let minutes = (range_ms.max(1) + crate::time::MINUTE_MS - 1) / crate::time::MINUTE_MS;
        u32::try_from(minutes).map_or(max, |m| m.min(max))
    }

    /// What a page of at most `limit` elements costs: klines by Binance's
    /// tiers (`binance::kline_weight`: 1 for the minute job's few minutes, 10
    /// for a full 1500); aggTrades 20; fundingRate one request of its own
    /// budget (and, conservatively, weight 1); the statistics 0 per the docs
    /// (reserved as 1: an undocumented limit costs more than a unit of weight).
    pub fn cost(self, limit: u32) -> Cost {
        match self {
            Kind::Klines
            | Kind::MarkPriceKlines
            | Kind::IndexPriceKlines
            | Kind::PremiumIndexKlines => Cost::weight(crate::binance::kline_weight(Some(limit))),
            Kind::AggTrades => Cost::weight(20),
            Kind::FundingRate => Cost {
                weight: 1,
                funding: 1,
            },
            _ => Cost::weight(1),
        }
    }

    /// The events of one page, all or nothing.
    pub fn parse_page(self, page: &Value) -> anyhow::Result<Vec<Event>> {
        let items = page
            .as_array()
            .ok_or_else(|| anyhow!("expected a JSON array"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.parse(item).with_context(|| format!("element {i}")))
            .collect()
    }

    fn parse(self, v: &Value) -> anyhow::Result<Event> {
        Ok(match self {
            Kind::Klines => kline(v, KlineKind::Trade)?,
            Kind::MarkPriceKlines => kline(v, KlineKind::Mark)?,
            Kind::IndexPriceKlines => kline(v, KlineKind::Index)?,
            Kind::PremiumIndexKlines => kline(v, KlineKind::Premium)?,
            Kind::AggTrades => Event::AggTrade(json::agg_trade(v)?),
            Kind::FundingRate => Event::FundingRate(FundingRate {
                funding_time: int(v, "fundingTime")?,
                rate: decimal(v, "fundingRate")?,
                interval_hours: None,
                mark_price: match v.get("markPrice").and_then(Value::as_str) {
                    Some("") | None => None,
                    Some(_) => Some(decimal(v, "markPrice")?),
                },
            }),
            Kind::OpenInterestHist => Event::OpenInterest(OpenInterest {
                source: OpenInterestSource::History5m,
                time: int_or_text(v, "timestamp")?,
                contracts: decimal(v, "sumOpenInterest")?,
                value_usdt: Some(decimal(v, "sumOpenInterestValue")?),
            }),
            Kind::TopLongShortAccountRatio => ratio(v, RatioKind::TopAccount)?,
            Kind::TopLongShortPositionRatio => ratio(v, RatioKind::TopPosition)?,
            Kind::GlobalLongShortAccountRatio => ratio(v, RatioKind::GlobalAccount)?,
        })
    }
}

fn ratio(v: &Value, kind: RatioKind) -> anyhow::Result<Event> {
    Ok(Event::LongShortRatio(LongShortRatio {
        kind,
        time: int_or_text(v, "timestamp")?,
        ratio: decimal(v, "longShortRatio")?,
        long: decimal(v, "longAccount")?,
        short: decimal(v, "shortAccount")?,
    }))
}

/// `[openTime, "o", "h", "l", "c", "v", closeTime, "qv", count, "tbv", "tbqv", "0"]`.
fn kline(v: &Value, kind: KlineKind) -> anyhow::Result<Event> {
    let a = v
        .as_array()
        .ok_or_else(|| anyhow!("expected a kline array"))?;
    if a.len() < 11 {
        return Err(anyhow!("kline array of {} fields, expected 12", a.len()));
    }
    let int = |i: usize| {
        a[i].as_i64()
            .ok_or_else(|| anyhow!("kline field {i}: expected an integer"))
    };
    let dec = |i: usize| {
        let text = a[i]
            .as_str()
            .ok_or_else(|| anyhow!("kline field {i}: expected a decimal string"))?;
        decimal_text(text, format_args!("kline field {i}"))
    };
    let open_time = int(0)?;
    let close_time = int(6)?;
    Ok(Event::Kline(Kline {
        kind,
        interval_ms: close_time + 1 - open_time,
        open_time,
        open: dec(1)?,
        high: dec(2)?,
        low: dec(3)?,
        close: dec(4)?,
        volume: dec(5)?,
        close_time,
        quote_volume: dec(7)?,
        trade_count: int(8)? as u64,
        taker_buy_volume: dec(9)?,
        taker_buy_quote_volume: dec(10)?,
        closed: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{DAY_MS, MINUTE_MS};

    #[test]
    fn a_short_kline_range_asks_for_its_minutes_and_costs_the_lowest_tier() {
        let limit = |kind: Kind, range_ms: i64| {
            let Paging::Time { limit, .. } = kind.paging() else {
                unreachable!("{kind:?} pages by time")
            };
            kind.page_limit(limit, range_ms)
        };
        assert_eq!(limit(Kind::Klines, 2 * MINUTE_MS), 2);
        assert_eq!(limit(Kind::MarkPriceKlines, 90_000), 2);
        assert_eq!(Kind::Klines.cost(2).weight, 1);
        assert_eq!(limit(Kind::IndexPriceKlines, DAY_MS), 1440);
        assert_eq!(Kind::IndexPriceKlines.cost(1440).weight, 10);
        assert_eq!(limit(Kind::PremiumIndexKlines, 30 * DAY_MS), 1500);
        // Not klines: the largest page whatever the range.
        assert_eq!(limit(Kind::OpenInterestHist, 5 * MINUTE_MS), 500);
        assert_eq!(limit(Kind::FundingRate, MINUTE_MS), 1000);
    }
}
