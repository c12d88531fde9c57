//! Market facts: what the exchange published, field for field. Times are epoch
//! milliseconds (UTC); prices and quantities are exact [`Decimal`]s. Field names
//! follow `spec/binance.md`. These types are part of the log format: add fields
//! only as new event variants or new format versions, never by editing.

use serde::{Deserialize, Serialize};

use super::Decimal;

/// Which 1-minute kline series a [`Kline`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum KlineKind {
    /// Trade klines (`klines`): OHLC of trades, volumes, counts.
    Trade,
    /// Mark price klines (volumes meaningless).
    Mark,
    /// Index price klines (volumes meaningless).
    Index,
    /// Premium index klines (volumes meaningless).
    Premium,
}

/// One kline (candle) of a [`KlineKind`] series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Kline {
    /// The series.
    pub kind: KlineKind,
    /// Interval length in milliseconds (60 000 for 1m).
    pub interval_ms: i64,
    /// Start of the interval; the natural key with `kind` and `interval_ms`.
    pub open_time: i64,
    /// Open price.
    pub open: Decimal,
    /// High price.
    pub high: Decimal,
    /// Low price.
    pub low: Decimal,
    /// Close price.
    pub close: Decimal,
    /// Base-asset volume.
    pub volume: Decimal,
    /// Last millisecond of the interval.
    pub close_time: i64,
    /// Quote-asset volume.
    pub quote_volume: Decimal,
    /// Number of trades.
    pub trade_count: u64,
    /// Taker-buy base volume.
    pub taker_buy_volume: Decimal,
    /// Taker-buy quote volume.
    pub taker_buy_quote_volume: Decimal,
    /// False for a still-open kline seen live (WebSocket `x: false`).
    pub closed: bool,
}

/// One aggregated trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct AggTrade {
    /// Aggregate trade id `a`: the natural key, consecutive per symbol.
    pub agg_trade_id: u64,
    /// Price.
    pub price: Decimal,
    /// Quantity (base asset).
    pub quantity: Decimal,
    /// First underlying trade id `f`.
    pub first_trade_id: u64,
    /// Last underlying trade id `l`.
    pub last_trade_id: u64,
    /// Transaction time `T`.
    pub transact_time: i64,
    /// `m`: the buyer was the maker (so the taker sold).
    pub is_buyer_maker: bool,
}

/// One best-bid/ask update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct BookTicker {
    /// Update id `u`: the natural key.
    pub update_id: u64,
    /// Best bid price.
    pub bid_price: Decimal,
    /// Best bid quantity.
    pub bid_qty: Decimal,
    /// Best ask price.
    pub ask_price: Decimal,
    /// Best ask quantity.
    pub ask_qty: Decimal,
    /// Transaction time `T` (0 when the source has none).
    pub transaction_time: i64,
    /// Event time `E`.
    pub event_time: i64,
}

/// The exchange time a market fact is about: the time the lake buckets it by
/// (`spec/schema.md`), and the time appenders group and page it by. Written
/// here once per kind.
pub trait Timed {
    /// That time, in ms.
    fn time(&self) -> i64;
}

/// `impl Timed for T` where the time is one field.
macro_rules! timed_by {
    ($($type:ty => $field:ident),* $(,)?) => {
        $(impl Timed for $type {
            fn time(&self) -> i64 {
                self.$field
            }
        })*
    };
}

timed_by!(
    Kline => open_time,
    AggTrade => transact_time,
    Metrics => create_time,
    BookDepth => timestamp,
    FundingRate => funding_time,
    PremiumIndex => time,
    OpenInterest => time,
    LongShortRatio => time,
    Liquidation => trade_time,
    DepthDiff => event_time,
    DepthSnapshot => event_time,
    MarkPrice => event_time,
);

/// Its transaction time, or its event time when the source has none (0).
impl Timed for BookTicker {
    fn time(&self) -> i64 {
        if self.transaction_time != 0 {
            self.transaction_time
        } else {
            self.event_time
        }
    }
}

/// One row of Vision's daily `metrics` file (a 5-minute point). The names are
/// Vision's, and misleading: see `spec/schema.md` ("Reading Vision metrics files").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Metrics {
    /// `create_time` as epoch ms: the label, as the file writes it. Which
    /// snapshot it labels depends on the file's day (`binance::metrics_snapshot_time`).
    pub create_time: i64,
    /// Open interest, contracts.
    pub sum_open_interest: Option<Decimal>,
    /// Open interest, USDT.
    pub sum_open_interest_value: Option<Decimal>,
    /// Top-trader long/short account ratio.
    pub count_toptrader_long_short_ratio: Option<Decimal>,
    /// Top-trader long/short position ratio.
    pub sum_toptrader_long_short_ratio: Option<Decimal>,
    /// Global long/short account ratio.
    pub count_long_short_ratio: Option<Decimal>,
    /// Taker buy/sell volume ratio.
    pub sum_taker_long_short_vol_ratio: Option<Decimal>,
}

/// One row of Vision's `bookDepth`: cumulative depth within ±`percentage` % of mid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct BookDepth {
    /// Snapshot time, epoch ms.
    pub timestamp: i64,
    /// Band, −5 … 5 (negative: bids).
    pub percentage: Decimal,
    /// Cumulative quantity in the band.
    pub depth: Decimal,
    /// Cumulative notional in the band (USDT).
    pub notional: Decimal,
}

/// A settled funding rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct FundingRate {
    /// Settlement time (`fundingTime`, Vision `calc_time`): the natural key.
    pub funding_time: i64,
    /// The settled rate.
    pub rate: Decimal,
    /// Funding interval in hours (Vision monthly files), when known.
    pub interval_hours: Option<u32>,
    /// Mark price at settlement (REST), when known.
    pub mark_price: Option<Decimal>,
}

/// A polled `/fapi/v1/premiumIndex` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct PremiumIndex {
    /// `time`.
    pub time: i64,
    /// `markPrice`.
    pub mark_price: Decimal,
    /// `indexPrice`.
    pub index_price: Decimal,
    /// `estimatedSettlePrice`.
    pub estimated_settle_price: Decimal,
    /// `lastFundingRate`: the predicted rate for the next settlement.
    pub last_funding_rate: Decimal,
    /// `interestRate`.
    pub interest_rate: Decimal,
    /// `nextFundingTime`.
    pub next_funding_time: i64,
}

/// Where an open-interest point comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum OpenInterestSource {
    /// A live `/fapi/v1/openInterest` snapshot (no USDT value).
    Snapshot,
    /// A 5-minute `/futures/data/openInterestHist` point.
    History5m,
}

/// Open interest at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct OpenInterest {
    /// Snapshot or history.
    pub source: OpenInterestSource,
    /// The point's time.
    pub time: i64,
    /// Contracts (base asset).
    pub contracts: Decimal,
    /// Value in USDT, when the endpoint gives it.
    pub value_usdt: Option<Decimal>,
}

/// Which long/short ratio series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum RatioKind {
    /// `topLongShortAccountRatio`.
    TopAccount,
    /// `topLongShortPositionRatio`.
    TopPosition,
    /// `globalLongShortAccountRatio`.
    GlobalAccount,
}

/// One 5-minute long/short ratio point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct LongShortRatio {
    /// The series.
    pub kind: RatioKind,
    /// The point's `timestamp`.
    pub time: i64,
    /// `longShortRatio`.
    pub ratio: Decimal,
    /// `longAccount` (or long position share).
    pub long: Decimal,
    /// `shortAccount` (or short position share).
    pub short: Decimal,
}

/// Side of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Side {
    /// BUY.
    Buy,
    /// SELL.
    Sell,
}

/// A liquidation order (`forceOrder` stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Liquidation {
    /// Event time `E`.
    pub event_time: i64,
    /// `S`: SELL closes a long, BUY closes a short.
    pub side: Side,
    /// `q`: original quantity.
    pub orig_qty: Decimal,
    /// `p`: order price.
    pub price: Decimal,
    /// `ap`: average fill price.
    pub avg_price: Decimal,
    /// `X`: order status text (e.g. FILLED).
    pub status: String,
    /// `l`: last filled quantity.
    pub last_filled_qty: Decimal,
    /// `z`: filled quantity so far.
    pub filled_qty: Decimal,
    /// `T`: order trade time.
    pub trade_time: i64,
}

/// A price level: price and quantity (0 removes the level).
pub type Level = (Decimal, Decimal);

/// One order-book diff (`depthUpdate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct DepthDiff {
    /// Event time `E`.
    pub event_time: i64,
    /// Transaction time `T`.
    pub transaction_time: i64,
    /// First update id `U`.
    pub first_update_id: u64,
    /// Final update id `u`.
    pub final_update_id: u64,
    /// Previous final update id `pu`.
    pub prev_final_update_id: u64,
    /// Bid levels.
    pub bids: Vec<Level>,
    /// Ask levels.
    pub asks: Vec<Level>,
}

/// A REST order-book snapshot (`/fapi/v1/depth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct DepthSnapshot {
    /// `lastUpdateId`.
    pub last_update_id: u64,
    /// `E`.
    pub event_time: i64,
    /// `T`.
    pub transaction_time: i64,
    /// Bid levels, best first.
    pub bids: Vec<Level>,
    /// Ask levels, best first.
    pub asks: Vec<Level>,
}

/// A `markPriceUpdate` from the `@markPrice@1s` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct MarkPrice {
    /// `E`.
    pub event_time: i64,
    /// `p`.
    pub mark_price: Decimal,
    /// `i`.
    pub index_price: Decimal,
    /// `P`.
    pub estimated_settle_price: Decimal,
    /// `r`: the predicted funding rate.
    pub funding_rate: Decimal,
    /// `T`: next funding time.
    pub next_funding_time: i64,
}
