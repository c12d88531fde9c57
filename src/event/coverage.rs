//! Coverage and lineage facts: what the appenders know about *what they fetched*,
//! as opposed to the market data itself. The materializer needs them to tell
//! "no trade happened" from "nobody was looking", and a user needs them to see
//! why a column is NULL.

use serde::{Deserialize, Serialize};

use super::Sha256;
use crate::schema::ColumnClass;

/// The heartbeat that proves a `/market` connection is served: its
/// `@markPrice@1s` stream, one message a second. A liquidation subscription
/// covers a minute only while the same connection delivers it
/// (`../shared/spec/schema.md`, liquidations).
pub const HEARTBEAT_STREAM_SUFFIX: &str = "@markPrice@1s";

/// The liquidation stream's suffix (`<symbol>@forceOrder`).
pub const LIQUIDATION_STREAM_SUFFIX: &str = "@forceOrder";

/// A pause between two heartbeats longer than this ends the coverage they give.
pub const HEARTBEAT_GAP_MS: i64 = 5_000;

/// The Binance Vision archive kinds bml reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum VisionKind {
    /// Daily 1m trade klines.
    Klines,
    /// Daily 1m mark price klines.
    MarkPriceKlines,
    /// Daily 1m index price klines.
    IndexPriceKlines,
    /// Daily 1m premium index klines.
    PremiumIndexKlines,
    /// Daily aggTrades.
    AggTrades,
    /// Daily bookTicker (not published after 2024-03-31).
    BookTicker,
    /// Daily metrics (open interest, ratios; 5-minute points).
    Metrics,
    /// Daily bookDepth.
    BookDepth,
    /// Monthly funding rates.
    FundingRate,
}

impl VisionKind {
    /// True for the four 1m kline kinds (trade, mark, index, premium), whose
    /// archives share one file name and differ only by folder.
    pub fn is_kline(self) -> bool {
        matches!(
            self,
            VisionKind::Klines
                | VisionKind::MarkPriceKlines
                | VisionKind::IndexPriceKlines
                | VisionKind::PremiumIndexKlines
        )
    }

    /// The columns its archive feeds; `None` for bookDepth, which feeds none.
    pub fn column_class(self) -> Option<ColumnClass> {
        Some(match self {
            VisionKind::Klines => ColumnClass::TradeKlines,
            VisionKind::MarkPriceKlines => ColumnClass::MarkKlines,
            VisionKind::IndexPriceKlines => ColumnClass::IndexKlines,
            VisionKind::PremiumIndexKlines => ColumnClass::PremiumKlines,
            VisionKind::AggTrades => ColumnClass::AggTrades,
            VisionKind::BookTicker => ColumnClass::BookTicker,
            VisionKind::Metrics => ColumnClass::Metrics,
            VisionKind::FundingRate => ColumnClass::Funding,
            VisionKind::BookDepth => return None,
        })
    }
}

/// An archive was appended completely. Written after its last row, in the same
/// durable commit: rows of that file are valid only in `first_offset..` this
/// record's own offset. Rows with no marker (a crash midway) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct VisionFileIngested {
    /// Archive kind.
    pub kind: VisionKind,
    /// Day (`YYYY-MM-DD`) or month (`YYYY-MM`) it covers.
    pub period: String,
    /// Archive file name, e.g. `BTCUSDT-aggTrades-2024-03-01.zip`.
    pub file: String,
    /// SHA-256 of the archive, as verified against its `.CHECKSUM`.
    pub sha256: Sha256,
    /// CSV data rows appended (header excluded).
    pub rows: u64,
    /// Log offset of the first row record of this file.
    pub first_offset: u64,
    /// When this replaces an earlier ingest whose archive had another SHA-256
    /// (Binance re-published the file), that SHA-256.
    pub replaces: Option<Sha256>,
}

/// An archive the exchange does not have (HTTP 404, or absent from a local dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct VisionFileMissing {
    /// Archive kind.
    pub kind: VisionKind,
    /// Day or month.
    pub period: String,
    /// Where it was looked for.
    pub url: String,
    /// HTTP status (404), or 0 for a local directory.
    pub http_status: u16,
}

/// A REST endpoint was read completely over a time range: every element in
/// `[start_ms, end_ms)` that the exchange has is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct RestRangeComplete {
    /// Endpoint path, e.g. `/fapi/v1/aggTrades`.
    pub endpoint: String,
    /// Range start, inclusive.
    pub start_ms: i64,
    /// Range end, exclusive.
    pub end_ms: i64,
    /// Elements appended for the range.
    pub rows: u64,
}

/// What no source can fill, found by bml's planner (`orchestrate::plan`) and
/// recorded once it is settled (the archive that would hold it was looked
/// for and is missing past the recent days, and REST cannot serve it), so
/// that the hours it spans carry an `unfillable` finding with its reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Unfillable {
    /// The series, by the Vision archive kind that would hold it.
    pub series: VisionKind,
    /// Range start, inclusive.
    pub start_ms: i64,
    /// Range end, exclusive.
    pub end_ms: i64,
    /// Why no source fills it.
    pub reason: String,
}

impl Unfillable {
    /// The longest range one event may name: the planner records a gap per
    /// archive period (a day; a month for funding). A longer one (a damaged
    /// or hand-made record) reaches no hour, so that it cannot make the
    /// index list millions of them.
    pub const MAX_SPAN_MS: i64 = 32 * crate::time::DAY_MS;

    /// The first and last start of the hours it spans; `None` for an empty
    /// or too long range.
    pub fn hours(&self) -> Option<(i64, i64)> {
        let span = self.end_ms.checked_sub(self.start_ms)?;
        if !(1..=Self::MAX_SPAN_MS).contains(&span) {
            return None;
        }
        let hour = crate::time::HOUR_MS;
        Some((
            self.start_ms.div_euclid(hour) * hour,
            (self.end_ms - 1).div_euclid(hour) * hour,
        ))
    }
}

/// A live stream connected or dropped. LIVE_ONLY columns are "covered" exactly
/// while their stream was connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct StreamStatus {
    /// Stream name, e.g. `btcusdt@forceOrder`.
    pub stream: String,
    /// Which connection (counts up per collector run), to pair connect with drop.
    pub connection: u64,
    /// Exchange time of the change, when known; else local time.
    pub time: i64,
    /// Why it dropped (empty on connect).
    pub reason: String,
}
