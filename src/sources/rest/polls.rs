//! Point-in-time polls for the hot band: the exchange's state now (premium
//! index and predicted funding, open interest, best bid/ask, the order book),
//! one record each.
//! A poll is a point, not a range: no coverage record follows it.

use anyhow::Context;
use serde_json::Value;

use super::governor::Cost;
use super::Client;
use crate::event::{
    BookTicker, DepthSnapshot, Event, OpenInterest, OpenInterestSource, PremiumIndex, Record,
    Source,
};
use crate::eventlog::EventLog;
use crate::sources::json::{decimal, int, levels, uint};

/// A point-in-time endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// `/fapi/v1/premiumIndex`: mark, index, last and predicted funding.
    PremiumIndex,
    /// `/fapi/v1/openInterest`: open interest now (contracts).
    OpenInterest,
    /// `/fapi/v1/ticker/bookTicker`: best bid and ask now.
    BookTicker,
    /// `/fapi/v1/depth?limit=1000`: the order book now (the live book's snapshot).
    Depth,
}

impl Poll {
    /// Every poll.
    pub const ALL: [Poll; 4] = [
        Poll::PremiumIndex,
        Poll::OpenInterest,
        Poll::BookTicker,
        Poll::Depth,
    ];

    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            Poll::PremiumIndex => "/fapi/v1/premiumIndex",
            Poll::OpenInterest => "/fapi/v1/openInterest",
            Poll::BookTicker => "/fapi/v1/ticker/bookTicker",
            Poll::Depth => "/fapi/v1/depth",
        }
    }

    /// Its name on the command line: the path's last segment.
    pub fn name(self) -> &'static str {
        self.path().rsplit('/').next().unwrap_or_default()
    }

    fn weight(self) -> u32 {
        match self {
            Poll::BookTicker => 2,
            Poll::Depth => 20,
            _ => 1,
        }
    }

    /// Query parameters beyond the symbol.
    fn extra(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Poll::Depth => &[("limit", "1000")],
            _ => &[],
        }
    }

    fn parse(self, v: &Value) -> anyhow::Result<Event> {
        Ok(match self {
            Poll::PremiumIndex => Event::PremiumIndex(PremiumIndex {
                time: int(v, "time")?,
                mark_price: decimal(v, "markPrice")?,
                index_price: decimal(v, "indexPrice")?,
                estimated_settle_price: decimal(v, "estimatedSettlePrice")?,
                last_funding_rate: decimal(v, "lastFundingRate")?,
                interest_rate: decimal(v, "interestRate")?,
                next_funding_time: int(v, "nextFundingTime")?,
            }),
            Poll::OpenInterest => Event::OpenInterest(OpenInterest {
                source: OpenInterestSource::Snapshot,
                time: int(v, "time")?,
                contracts: decimal(v, "openInterest")?,
                value_usdt: None,
            }),
            Poll::BookTicker => {
                let time = int(v, "time")?;
                Event::BookTicker(BookTicker {
                    update_id: uint(v, "lastUpdateId")?,
                    bid_price: decimal(v, "bidPrice")?,
                    bid_qty: decimal(v, "bidQty")?,
                    ask_price: decimal(v, "askPrice")?,
                    ask_qty: decimal(v, "askQty")?,
                    transaction_time: time,
                    event_time: time,
                })
            }
            Poll::Depth => Event::DepthSnapshot(DepthSnapshot {
                last_update_id: uint(v, "lastUpdateId")?,
                event_time: int(v, "E")?,
                transaction_time: int(v, "T")?,
                bids: levels(v, "bids")?,
                asks: levels(v, "asks")?,
            }),
        })
    }
}

/// Polls `p` once for `symbol`: the answer as one record.
pub fn fetch(client: &Client, symbol: &str, p: Poll) -> anyhow::Result<Record> {
    let mut query = vec![("symbol", symbol.to_string())];
    query.extend(p.extra().iter().map(|&(k, v)| (k, v.to_string())));
    let event = client
        .get(p.path(), &query, Cost::weight(p.weight()), |v| p.parse(v))
        .with_context(|| format!("polling {} for {symbol}", p.path()))?;
    Ok(Record {
        symbol: symbol.to_string(),
        source: Source::Rest {
            endpoint: p.path().to_string(),
        },
        received_ns: crate::time::now_ns(),
        events: vec![event],
    })
}

/// Polls each of `polls` once per symbol and appends one record per answer;
/// returns the records appended.
pub fn poll(
    log: &mut EventLog,
    client: &Client,
    symbols: &[String],
    polls: &[Poll],
) -> anyhow::Result<u64> {
    let mut appended = 0;
    for symbol in symbols {
        for &p in polls {
            log.push(&fetch(client, symbol, p)?)?;
            appended += 1;
        }
    }
    log.commit()?;
    Ok(appended)
}
