//! The canonical minute table: 58 columns, their types and support classes, in
//! file order, exactly as `spec/schema.md` (the contract) lists them; a test
//! re-reads the spec and compares. The schema hash stored with every partition
//! is computed here, so a change of definition makes old partitions visibly stale.

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

/// The 58 columns, in file order. Versions above 1, and why:
/// - 44–50 v2: as-of points keyed by snapshot time (Vision metrics labels moved
///   to the start of the period on 2026-06-25).
/// - 56 v2: a settlement counts from the minute holding its timestamp (v1: from
///   the next minute when stamped after the minute's start).
#[rustfmt::skip]
pub const COLUMNS: [Column; 58] = [
    col("event_time",                ColumnType::BigInt,  Class::LiveOnly),
    col("transact_time",             ColumnType::BigInt,  Class::BackfillAvailable),
    col("arrival_time",              ColumnType::BigInt,  Class::LiveOnly),
    col("latency_engine",            ColumnType::Int,     Class::LiveOnly),
    col("latency_network",           ColumnType::Int,     Class::LiveOnly),
    col("update_id_start",           ColumnType::BigInt,  Class::LiveOnly),
    col("update_id_end",             ColumnType::BigInt,  Class::LiveOnly),
    col("timestamp",                 ColumnType::Datetime, Class::HardRequired),
    col("open",                      ColumnType::Float,   Class::HardRequired),
    col("high",                      ColumnType::Float,   Class::HardRequired),
    col("low",                       ColumnType::Float,   Class::HardRequired),
    col("close",                     ColumnType::Float,   Class::HardRequired),
    col("vwap_1m",                   ColumnType::Float,   Class::BackfillAvailable),
    col("micro_price_close",         ColumnType::Float,   Class::BackfillAvailable),
    col("volume_btc",                ColumnType::Float,   Class::HardRequired),
    col("volume_usdt",               ColumnType::Float,   Class::HardRequired),
    col("trade_count",               ColumnType::Int,     Class::HardRequired),
    col("avg_trade_size_btc",        ColumnType::Float,   Class::BackfillAvailable),
    col("max_trade_size_btc",        ColumnType::Float,   Class::BackfillAvailable),
    col("taker_buy_vol_btc",         ColumnType::Float,   Class::BackfillAvailable),
    col("taker_buy_vol_usdt",        ColumnType::Float,   Class::BackfillAvailable),
    col("net_taker_vol_btc",         ColumnType::Float,   Class::BackfillAvailable),
    col("count_buy_trades",          ColumnType::Int,     Class::BackfillAvailable),
    col("count_sell_trades",         ColumnType::Int,     Class::BackfillAvailable),
    col("taker_buy_ratio",           ColumnType::Float,   Class::BackfillAvailable),
    col("vol_buy_whale_btc",         ColumnType::Float,   Class::BackfillAvailable),
    col("vol_sell_whale_btc",        ColumnType::Float,   Class::BackfillAvailable),
    col("vol_buy_retail_btc",        ColumnType::Float,   Class::BackfillAvailable),
    col("vol_sell_retail_btc",       ColumnType::Float,   Class::BackfillAvailable),
    col("whale_trade_count",         ColumnType::Int,     Class::BackfillAvailable),
    col("realized_vol_1m",           ColumnType::Float,   Class::BackfillAvailable),
    col("liq_long_vol_usdt",         ColumnType::Float,   Class::LiveOnly),
    col("liq_short_vol_usdt",        ColumnType::Float,   Class::LiveOnly),
    col("liq_long_count",            ColumnType::Int,     Class::LiveOnly),
    col("liq_short_count",           ColumnType::Int,     Class::LiveOnly),
    col("liq_avg_fill_price",        ColumnType::Float,   Class::LiveOnly),
    col("liq_unfilled_ratio",        ColumnType::Float,   Class::LiveOnly),
    col("avg_spread_usdt",           ColumnType::Float,   Class::BackfillAvailable),
    col("bid_ask_imbalance",         ColumnType::Float,   Class::BackfillAvailable),
    col("avg_bid_depth",             ColumnType::Float,   Class::BackfillAvailable),
    col("avg_ask_depth",             ColumnType::Float,   Class::BackfillAvailable),
    col("spread_pct",                ColumnType::Float,   Class::BackfillAvailable),
    col("price_impact_100k",         ColumnType::Float,   Class::LiveOnly),
    col("oi_contracts",              ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("oi_value_usdt",             ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("top_trader_ls_ratio_acct",  ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("global_ls_ratio_acct",      ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("ls_ratio_divergence",       ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("top_trader_long_pct",       ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("top_trader_short_pct",      ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("mark_price_open",           ColumnType::Float,   Class::HardRequired),
    col("mark_price_close",          ColumnType::Float,   Class::HardRequired),
    col("index_price_open",          ColumnType::Float,   Class::HardRequired),
    col("index_price_close",         ColumnType::Float,   Class::HardRequired),
    col("premium_index",             ColumnType::Float,   Class::BackfillAvailable),
    col("funding_rate",              ColumnType::Float,   Class::BackfillAvailable).v(2),
    col("predicted_funding",         ColumnType::Float,   Class::LiveOnly),
    col("next_funding_time",         ColumnType::BigInt,  Class::LiveOnly),
];

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
