//! The canonical minute table: 58 columns, their types and support classes, in
//! file order, exactly as `spec/schema.md` (the contract) lists them (a test
//! re-reads the spec and compares), and the row type the materializer fills and
//! the lake writer stores, declared from the same one table. The schema hash stored with every partition
//! is computed here, so a change of definition makes old partitions visibly stale.

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A column's type, spelled as in the spec (which also defines `Bool`; no
/// column uses it, so neither does this enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Arrow `Int64`.
    BigInt,
    /// Arrow `Int64`.
    Int,
    /// Arrow `Float64`.
    Float,
    /// Arrow `Timestamp(Millisecond, "UTC")`.
    Datetime,
}

/// What a missing input means for a column (`spec/schema.md`, "Support classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Every stored minute has it; a minute without it is not written.
    HardRequired,
    /// Rebuildable from history; missing input follows the column's fill rule.
    BackfillAvailable,
    /// Only where a live collector ran; NULL where none covered the minute.
    LiveOnly,
}

/// One column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Its support class.
    pub class: Class,
    /// Version of its definition; bumped when its formula or fill rule changes.
    pub rule_version: u32,
}

const fn col(name: &'static str, ty: ColumnType, class: Class) -> Column {
    Column {
        name,
        ty,
        class,
        rule_version: 1,
    }
}

impl Column {
    /// The column with its definition at version `n`.
    const fn v(self, n: u32) -> Column {
        Column {
            rule_version: n,
            ..self
        }
    }
}

/// Declares the table once, in file order: for each column its name (the
/// field of [`MinuteRow`]), the row's Rust type (`Option` where the column can
/// be NULL), its type and class in the spec, and its rule version. From it come
/// [`COLUMNS`], [`MinuteRow`] and [`MinuteRow::cells`], which therefore cannot
/// disagree about the order.
macro_rules! table {
    ($($name:ident: $rust:ty = $ty:ident, $class:ident, $version:literal;)*) => {
        /// The 58 columns, in file order.
        pub const COLUMNS: [Column; 58] = [
            $(col(stringify!($name), ColumnType::$ty, Class::$class).v($version),)*
        ];

        /// One row of the canonical table; fields in column order, `None` is NULL.
        #[derive(Debug, Clone, Default, PartialEq)]
        #[allow(missing_docs)]
        pub struct MinuteRow {
            $(pub $name: $rust,)*
        }

        impl MinuteRow {
            /// The row's values in [`COLUMNS`] order (the lake writer's input).
            pub fn cells(&self) -> [Cell; 58] {
                [$(self.$name.cell(),)*]
            }
        }
    };
}

// Versions above 1, and why:
// - 44–50 v2: as-of points keyed by snapshot time (Vision metrics labels moved
//   to the start of the period on 2026-06-25).
// - 56 v2: a settlement counts from the minute holding its timestamp (v1: from
//   the next minute when stamped after the minute's start).
#[rustfmt::skip]
table! {
    event_time: Option<i64> = BigInt, LiveOnly, 1;
    transact_time: Option<i64> = BigInt, BackfillAvailable, 1;
    arrival_time: Option<i64> = BigInt, LiveOnly, 1;
    latency_engine: Option<i64> = Int, LiveOnly, 1;
    latency_network: Option<i64> = Int, LiveOnly, 1;
    update_id_start: Option<i64> = BigInt, LiveOnly, 1;
    update_id_end: Option<i64> = BigInt, LiveOnly, 1;
    timestamp: i64 = Datetime, HardRequired, 1;
    open: f64 = Float, HardRequired, 1;
    high: f64 = Float, HardRequired, 1;
    low: f64 = Float, HardRequired, 1;
    close: f64 = Float, HardRequired, 1;
    vwap_1m: Option<f64> = Float, BackfillAvailable, 1;
    micro_price_close: Option<f64> = Float, BackfillAvailable, 1;
    volume_btc: f64 = Float, HardRequired, 1;
    volume_usdt: f64 = Float, HardRequired, 1;
    trade_count: i64 = Int, HardRequired, 1;
    avg_trade_size_btc: Option<f64> = Float, BackfillAvailable, 1;
    max_trade_size_btc: Option<f64> = Float, BackfillAvailable, 1;
    taker_buy_vol_btc: Option<f64> = Float, BackfillAvailable, 1;
    taker_buy_vol_usdt: Option<f64> = Float, BackfillAvailable, 1;
    net_taker_vol_btc: Option<f64> = Float, BackfillAvailable, 1;
    count_buy_trades: Option<i64> = Int, BackfillAvailable, 1;
    count_sell_trades: Option<i64> = Int, BackfillAvailable, 1;
    taker_buy_ratio: Option<f64> = Float, BackfillAvailable, 1;
    vol_buy_whale_btc: Option<f64> = Float, BackfillAvailable, 1;
    vol_sell_whale_btc: Option<f64> = Float, BackfillAvailable, 1;
    vol_buy_retail_btc: Option<f64> = Float, BackfillAvailable, 1;
    vol_sell_retail_btc: Option<f64> = Float, BackfillAvailable, 1;
    whale_trade_count: Option<i64> = Int, BackfillAvailable, 1;
    realized_vol_1m: Option<f64> = Float, BackfillAvailable, 1;
    liq_long_vol_usdt: Option<f64> = Float, LiveOnly, 1;
    liq_short_vol_usdt: Option<f64> = Float, LiveOnly, 1;
    liq_long_count: Option<i64> = Int, LiveOnly, 1;
    liq_short_count: Option<i64> = Int, LiveOnly, 1;
    liq_avg_fill_price: Option<f64> = Float, LiveOnly, 1;
    liq_unfilled_ratio: Option<f64> = Float, LiveOnly, 1;
    avg_spread_usdt: Option<f64> = Float, BackfillAvailable, 1;
    bid_ask_imbalance: Option<f64> = Float, BackfillAvailable, 1;
    avg_bid_depth: Option<f64> = Float, BackfillAvailable, 1;
    avg_ask_depth: Option<f64> = Float, BackfillAvailable, 1;
    spread_pct: Option<f64> = Float, BackfillAvailable, 1;
    price_impact_100k: Option<f64> = Float, LiveOnly, 1;
    oi_contracts: Option<f64> = Float, BackfillAvailable, 2;
    oi_value_usdt: Option<f64> = Float, BackfillAvailable, 2;
    top_trader_ls_ratio_acct: Option<f64> = Float, BackfillAvailable, 2;
    global_ls_ratio_acct: Option<f64> = Float, BackfillAvailable, 2;
    ls_ratio_divergence: Option<f64> = Float, BackfillAvailable, 2;
    top_trader_long_pct: Option<f64> = Float, BackfillAvailable, 2;
    top_trader_short_pct: Option<f64> = Float, BackfillAvailable, 2;
    mark_price_open: f64 = Float, HardRequired, 1;
    mark_price_close: f64 = Float, HardRequired, 1;
    index_price_open: f64 = Float, HardRequired, 1;
    index_price_close: f64 = Float, HardRequired, 1;
    premium_index: Option<f64> = Float, BackfillAvailable, 1;
    funding_rate: Option<f64> = Float, BackfillAvailable, 2;
    predicted_funding: Option<f64> = Float, LiveOnly, 1;
    next_funding_time: Option<i64> = BigInt, LiveOnly, 1;
}

/// One value of a [`MinuteRow`], typed as its column's storage: integers
/// (BigInt, Int, Datetime as ms) or floats. `None` is NULL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// An Int64-backed column.
    Int(Option<i64>),
    /// A Float64 column.
    Float(Option<f64>),
}

/// A row field's value as a [`Cell`].
trait IntoCell {
    fn cell(&self) -> Cell;
}

impl IntoCell for i64 {
    fn cell(&self) -> Cell {
        Cell::Int(Some(*self))
    }
}

impl IntoCell for Option<i64> {
    fn cell(&self) -> Cell {
        Cell::Int(*self)
    }
}

impl IntoCell for f64 {
    fn cell(&self) -> Cell {
        Cell::Float(Some(*self))
    }
}

impl IntoCell for Option<f64> {
    fn cell(&self) -> Cell {
        Cell::Float(*self)
    }
}

impl ColumnType {
    /// The spec's spelling.
    pub fn spec_name(self) -> &'static str {
        match self {
            ColumnType::BigInt => "BigInt",
            ColumnType::Int => "Int",
            ColumnType::Float => "Float",
            ColumnType::Datetime => "Datetime",
        }
    }
}

impl Class {
    /// The spec's spelling.
    pub fn spec_name(self) -> &'static str {
        match self {
            Class::HardRequired => "HARD_REQUIRED",
            Class::BackfillAvailable => "BACKFILL_AVAILABLE",
            Class::LiveOnly => "LIVE_ONLY",
        }
    }
}

/// The text the schema hash is taken over: one line per column, in order,
/// `name|type|class|rule-version`, each ending in a newline.
pub fn schema_text() -> String {
    COLUMNS
        .iter()
        .map(|c| {
            format!(
                "{}|{}|{}|{}\n",
                c.name,
                c.ty.spec_name(),
                c.class.spec_name(),
                c.rule_version
            )
        })
        .collect()
}

/// SHA-256 of [`schema_text`], stored with every partition.
pub fn schema_hash() -> [u8; 32] {
    sha2::Sha256::digest(schema_text().as_bytes()).into()
}

/// A group of columns fed by one input (`spec/schema.md`, the input column):
/// the unit in which the audit reports where each minute came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ColumnClass {
    /// Trade klines: OHLC, volumes, counts (9–12, 15–18, 20–21).
    TradeKlines,
    /// Mark price klines (51–52).
    MarkKlines,
    /// Index price klines (53–54).
    IndexKlines,
    /// Premium index klines (55).
    PremiumKlines,
    /// aggTrades: the trade folds (2, 13, 19, 22–31).
    AggTrades,
    /// bookTicker updates: micro-price and the book averages (14, 38–42).
    BookTicker,
    /// Open interest and long/short ratios, as-of (44–50).
    Metrics,
    /// Settled funding rates, carried (56).
    Funding,
    /// Depth diffs and snapshots: the L2 book and its timing (1, 3–7, 43).
    DepthBook,
    /// The liquidation stream (32–37).
    Liquidations,
    /// The live funding estimate: markPrice stream, premiumIndex polls (57–58).
    FundingEstimate,
}

impl ColumnClass {
    /// Every class, in report order (its declaration order: `class as usize`
    /// is its place here).
    pub const ALL: [ColumnClass; 11] = [
        ColumnClass::TradeKlines,
        ColumnClass::MarkKlines,
        ColumnClass::IndexKlines,
        ColumnClass::PremiumKlines,
        ColumnClass::AggTrades,
        ColumnClass::BookTicker,
        ColumnClass::Metrics,
        ColumnClass::Funding,
        ColumnClass::DepthBook,
        ColumnClass::Liquidations,
        ColumnClass::FundingEstimate,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ColumnClass::TradeKlines => "trade klines",
            ColumnClass::AggTrades => "aggTrades",
            ColumnClass::BookTicker => "bookTicker",
            ColumnClass::DepthBook => "L2 book",
            ColumnClass::Liquidations => "liquidations",
            ColumnClass::Metrics => "metrics",
            ColumnClass::MarkKlines => "mark klines",
            ColumnClass::IndexKlines => "index klines",
            ColumnClass::PremiumKlines => "premium klines",
            ColumnClass::Funding => "funding",
            ColumnClass::FundingEstimate => "funding estimate",
        }
    }

    /// Its columns, by number (1-based, as in the spec).
    pub fn columns(self) -> &'static [usize] {
        match self {
            ColumnClass::TradeKlines => &[9, 10, 11, 12, 15, 16, 17, 18, 20, 21],
            ColumnClass::AggTrades => &[2, 13, 19, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31],
            ColumnClass::BookTicker => &[14, 38, 39, 40, 41, 42],
            ColumnClass::DepthBook => &[1, 3, 4, 5, 6, 7, 43],
            ColumnClass::Liquidations => &[32, 33, 34, 35, 36, 37],
            ColumnClass::Metrics => &[44, 45, 46, 47, 48, 49, 50],
            ColumnClass::MarkKlines => &[51, 52],
            ColumnClass::IndexKlines => &[53, 54],
            ColumnClass::PremiumKlines => &[55],
            ColumnClass::Funding => &[56],
            ColumnClass::FundingEstimate => &[57, 58],
        }
    }

    /// The support class of its first column: whether a gap in it keeps a
    /// minute out, is filled by rule, or only means no live collector ran.
    pub fn support(self) -> Class {
        COLUMNS[self.columns()[0] - 1].class
    }
}
