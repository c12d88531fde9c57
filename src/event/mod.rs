//! The event vocabulary: everything bml ever writes into the log.
//!
//! A log record is one [`Record`]: an envelope (symbol, source, local receive time)
//! and one or more [`Event`]s from that one fetch (a REST page, a chunk of a Vision
//! file, a WebSocket message). The encoding is a format-version byte, a class byte
//! (market data or coverage, so scanners can skip data cheaply) and the postcard
//! encoding of the record. Postcard encodes enum variants by index, so variants
//! are only ever *appended*, never reordered or changed: a log written today must
//! decode in ten years. `tests/event_golden.rs` pins the bytes of every version.
//!
//! Versions: 1 kept the receive time in ms; 2 keeps it in ns, so that
//! messages of one stream arriving in the same millisecond keep their local
//! order and spacing (a version-1 record decodes as its time × 10⁶); 3
//! (written since) puts an [`Envelope`] before the events, with the times the
//! facts are about, so that the materializer's index reads envelopes only.
//!
//! Version 3 layout: `3`, the class byte, the postcard encoding of the
//! [`Envelope`] (symbol, source, receive time in ns, [`TimeRun`]s), a byte
//! naming how the events are encoded (`0`: postcard; later encodings take
//! new numbers, an encoding is never changed), then the events. A decoder
//! checks the runs against the events, so an envelope never says something
//! its events do not.

mod columns;
pub use columns::Buffers;
mod coverage;
mod decimal;
mod market;
mod visibility;

use serde::{Deserialize, Serialize};

use crate::time::{HOUR_MS, NS_PER_MS};

pub use coverage::{
    RestRangeComplete, StreamStatus, Unfillable, VisionFileIngested, VisionFileMissing, VisionKind,
    HEARTBEAT_GAP_MS, HEARTBEAT_STREAM_SUFFIX, LIQUIDATION_STREAM_SUFFIX,
};
pub(crate) use decimal::nearest_f64;
pub use decimal::{Decimal, DecimalError};
pub use market::{
    AggTrade, BookDepth, BookTicker, DepthDiff, DepthSnapshot, FundingRate, Kline, KlineKind,
    Level, Liquidation, LongShortRatio, MarkPrice, Metrics, OpenInterest, OpenInterestSource,
    PremiumIndex, RatioKind, Side, Timed,
};
pub use visibility::{overlaps, Visibility};

/// The event encoding this build writes (first byte of every record); it
/// reads this one and every earlier one.
pub const FORMAT_VERSION: u8 = 3;

/// How a version-3 record's events follow its envelope: postcard's encoding
/// of the `Vec<Event>`.
const EVENTS_POSTCARD: u8 = 0;

/// Or in columns, compressed (`columns.rs`): a chunk of aggTrades or of
/// bookTicker updates.
const EVENTS_COLUMNS: u8 = 1;

/// A SHA-256 digest (of a Vision archive). Printed in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Sha256(pub [u8; 32]);

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Where the events of a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Source {
    /// A Binance Vision archive, by file name and verified SHA-256.
    Vision {
        /// Archive file name.
        file: String,
        /// Its SHA-256 (all zeros in a record saying the archive is missing).
        sha256: Sha256,
    },
    /// A REST endpoint (path, e.g. `/fapi/v1/klines`).
    Rest {
        /// Endpoint path.
        endpoint: String,
    },
    /// A WebSocket stream on one connection.
    WebSocket {
        /// Stream name.
        stream: String,
        /// Connection number (see [`StreamStatus`]).
        connection: u64,
    },
    /// bml's planner, about what no source can fill ([`Unfillable`]).
    Planner,
}

/// `vision:<file>`, `rest:<endpoint>`, `ws:<stream>#<connection>`, `planner`.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Vision { file, .. } => write!(f, "vision:{file}"),
            Source::Rest { endpoint } => write!(f, "rest:{endpoint}"),
            Source::WebSocket { stream, connection } => write!(f, "ws:{stream}#{connection}"),
            Source::Planner => write!(f, "planner"),
        }
    }
}

/// One fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum Event {
    /// A kline of any kind.
    Kline(Kline),
    /// An aggregated trade.
    AggTrade(AggTrade),
    /// A best bid/ask update.
    BookTicker(BookTicker),
    /// A Vision metrics row.
    Metrics(Metrics),
    /// A Vision bookDepth row.
    BookDepth(BookDepth),
    /// A settled funding rate.
    FundingRate(FundingRate),
    /// A premiumIndex poll.
    PremiumIndex(PremiumIndex),
    /// An open-interest point.
    OpenInterest(OpenInterest),
    /// A long/short ratio point.
    LongShortRatio(LongShortRatio),
    /// A liquidation.
    Liquidation(Liquidation),
    /// An order-book diff.
    DepthDiff(DepthDiff),
    /// An order-book snapshot.
    DepthSnapshot(DepthSnapshot),
    /// A mark price stream update.
    MarkPrice(MarkPrice),
    /// Coverage: a Vision archive was appended completely.
    VisionFileIngested(VisionFileIngested),
    /// Coverage: a Vision archive does not exist.
    VisionFileMissing(VisionFileMissing),
    /// Coverage: a REST range was read completely.
    RestRangeComplete(RestRangeComplete),
    /// Coverage: a stream connected.
    StreamConnected(StreamStatus),
    /// Coverage: a stream dropped.
    StreamDisconnected(StreamStatus),
    /// Coverage: what no source can fill, and why (from [`Source::Planner`]).
    Unfillable(Unfillable),
}

impl Event {
    /// The exchange time a market fact is about ([`Timed`]); `None` for
    /// coverage facts.
    pub fn time(&self) -> Option<i64> {
        Some(match self {
            Event::Kline(e) => e.time(),
            Event::AggTrade(e) => e.time(),
            Event::BookTicker(e) => e.time(),
            Event::Metrics(e) => e.time(),
            Event::BookDepth(e) => e.time(),
            Event::FundingRate(e) => e.time(),
            Event::PremiumIndex(e) => e.time(),
            Event::OpenInterest(e) => e.time(),
            Event::LongShortRatio(e) => e.time(),
            Event::Liquidation(e) => e.time(),
            Event::DepthDiff(e) => e.time(),
            Event::DepthSnapshot(e) => e.time(),
            Event::MarkPrice(e) => e.time(),
            _ => return None,
        })
    }

    /// The kind of a market fact; `None` for coverage facts.
    pub fn kind(&self) -> Option<FactKind> {
        Some(match self {
            Event::Kline(_) => FactKind::Kline,
            Event::AggTrade(_) => FactKind::AggTrade,
            Event::BookTicker(_) => FactKind::BookTicker,
            Event::Metrics(_) => FactKind::Metrics,
            Event::BookDepth(_) => FactKind::BookDepth,
            Event::FundingRate(_) => FactKind::FundingRate,
            Event::PremiumIndex(_) => FactKind::PremiumIndex,
            Event::OpenInterest(_) => FactKind::OpenInterest,
            Event::LongShortRatio(_) => FactKind::LongShortRatio,
            Event::Liquidation(_) => FactKind::Liquidation,
            Event::DepthDiff(_) => FactKind::DepthDiff,
            Event::DepthSnapshot(_) => FactKind::DepthSnapshot,
            Event::MarkPrice(_) => FactKind::MarkPrice,
            _ => return None,
        })
    }

    /// True for coverage and lineage facts, false for market data.
    pub fn is_coverage(&self) -> bool {
        matches!(
            self,
            Event::VisionFileIngested(_)
                | Event::VisionFileMissing(_)
                | Event::RestRangeComplete(_)
                | Event::StreamConnected(_)
                | Event::StreamDisconnected(_)
                | Event::Unfillable(_)
        )
    }
}

/// The kinds of market fact, in [`Event`]'s order. Variants are only ever
/// appended (postcard encodes them by index in every [`Envelope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub enum FactKind {
    /// [`Event::Kline`].
    Kline,
    /// [`Event::AggTrade`].
    AggTrade,
    /// [`Event::BookTicker`].
    BookTicker,
    /// [`Event::Metrics`].
    Metrics,
    /// [`Event::BookDepth`].
    BookDepth,
    /// [`Event::FundingRate`].
    FundingRate,
    /// [`Event::PremiumIndex`].
    PremiumIndex,
    /// [`Event::OpenInterest`].
    OpenInterest,
    /// [`Event::LongShortRatio`].
    LongShortRatio,
    /// [`Event::Liquidation`].
    Liquidation,
    /// [`Event::DepthDiff`].
    DepthDiff,
    /// [`Event::DepthSnapshot`].
    DepthSnapshot,
    /// [`Event::MarkPrice`].
    MarkPrice,
}

/// Facts of one kind in a record, from the earliest time to the latest, with
/// no gap of more than an hour between neighbouring times: so every hour
/// from the first's to the last's holds one, and the hours such facts reach
/// (whatever their look-back) are one unbroken range, known from the two
/// ends alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct TimeRun {
    /// The kind of the facts.
    pub kind: FactKind,
    /// The earliest time ([`Event::time`]), epoch ms.
    pub first: i64,
    /// The latest time, epoch ms.
    pub last: i64,
}

/// The runs of a record's market facts: each fact joins the latest run of
/// its kind that it is within an hour of, or starts a new one. A function of
/// the events in their order, so a decoder can check an envelope's runs.
fn time_runs(events: &[Event]) -> Vec<TimeRun> {
    let mut runs: Vec<TimeRun> = Vec::new();
    for event in events {
        let (Some(kind), Some(time)) = (event.kind(), event.time()) else {
            continue;
        };
        let near = |run: &TimeRun| {
            run.first.saturating_sub(HOUR_MS) <= time && time <= run.last.saturating_add(HOUR_MS)
        };
        match runs.iter_mut().rev().find(|run| run.kind == kind) {
            Some(run) if near(run) => {
                run.first = run.first.min(time);
                run.last = run.last.max(time);
            }
            _ => runs.push(TimeRun {
                kind,
                first: time,
                last: time,
            }),
        }
    }
    runs
}

/// What a record says before its events: enough to index it without
/// decoding them (`materialize`'s offset index, `log offset-at`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    /// Upper-case symbol.
    pub symbol: String,
    /// Where the events came from.
    pub source: Source,
    /// Local receive time, epoch ns (UTC).
    pub received_ns: i64,
    /// The times of its market facts, by kind ([`TimeRun`]).
    pub runs: Vec<TimeRun>,
}

impl Envelope {
    /// The local receive time, epoch ms (UTC).
    pub fn received_ms(&self) -> i64 {
        self.received_ns.div_euclid(NS_PER_MS)
    }
}

/// An [`Envelope`] as written: the same encoding, borrowed from the record.
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    symbol: &'a str,
    source: &'a Source,
    received_ns: i64,
    runs: &'a [TimeRun],
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(arbitrary::Arbitrary))]
pub struct Record {
    /// Upper-case symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Where the events came from.
    pub source: Source,
    /// Local receive time, epoch ns (UTC). May be behind exchange times (clock skew).
    pub received_ns: i64,
    /// The facts, in the order the source gave them. Never empty.
    pub events: Vec<Event>,
}

/// A record as format version 2 wrote it (and as version 1 did, with
/// [`RecordV1`]'s time): the envelope's fields without the runs, then the
/// events.
#[derive(Deserialize)]
struct RecordV2 {
    symbol: String,
    source: Source,
    received_ns: i64,
    events: Vec<Event>,
}

/// A record as format version 1 wrote it: the receive time in ms.
#[derive(Deserialize)]
struct RecordV1 {
    symbol: String,
    source: Source,
    received_ms: i64,
    events: Vec<Event>,
}

/// Whether a record holds market data or coverage facts (the second byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordClass {
    /// Market data events only.
    Data = 0,
    /// At least one coverage event.
    Coverage = 1,
}

/// Why bytes from the log are not a record this build can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Empty or one-byte input.
    #[error("record too short ({0} bytes)")]
    Short(usize),
    /// Written by a newer bml (or not a record).
    #[error("event format version {0} is not one this build reads (1 to {FORMAT_VERSION})")]
    Version(u8),
    /// Unknown class byte.
    #[error("unknown record class {0}")]
    Class(u8),
    /// The postcard payload does not decode.
    #[error("undecodable record: {0}")]
    Payload(#[from] postcard::Error),
    /// Columns that do not decode ([`EVENTS_COLUMNS`]).
    #[error("undecodable event columns: {0}")]
    Columns(String),
    /// An encoding of the events this build does not know (a newer bml's).
    #[error("events encoded in a way this build does not read ({0})")]
    Encoding(u8),
    /// The envelope's time runs are not its events' (a writer's bug, never
    /// trusted: the index would miss hours).
    #[error("the record's envelope does not match its events")]
    Envelope,
}

impl Record {
    /// The class byte this record is stored with.
    pub fn class(&self) -> RecordClass {
        if self.events.iter().any(Event::is_coverage) {
            RecordClass::Coverage
        } else {
            RecordClass::Data
        }
    }

    /// The local receive time, epoch ms (UTC): what the materializer orders
    /// copies by.
    pub fn received_ms(&self) -> i64 {
        self.received_ns.div_euclid(NS_PER_MS)
    }

    /// The envelope of this record.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            symbol: self.symbol.clone(),
            source: self.source.clone(),
            received_ns: self.received_ns,
            runs: time_runs(&self.events),
        }
    }

    /// Appends the encoding of this record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_with(&mut Buffers::default(), out);
    }

    /// [`Record::encode_into`], reusing `buffers` (an appender's, from one
    /// record to the next).
    pub fn encode_with(&self, buffers: &mut Buffers, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        out.push(self.class() as u8);
        let runs = time_runs(&self.events);
        let envelope = EnvelopeRef {
            symbol: &self.symbol,
            source: &self.source,
            received_ns: self.received_ns,
            runs: &runs,
        };
        let buf = std::mem::take(out);
        let mut buf =
            postcard::to_extend(&envelope, buf).expect("serializing into a Vec cannot fail");
        buf.push(EVENTS_COLUMNS);
        if columns::encode_with(&self.events, buffers, &mut buf) {
            *out = buf;
            return;
        }
        *buf.last_mut().expect("just pushed") = EVENTS_POSTCARD;
        *out = postcard::to_extend(&self.events, buf).expect("serializing into a Vec cannot fail");
    }

    /// The encoding of this record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a record of any version this build reads, checking class
    /// (and, from version 3, the envelope).
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        Record::decode_with(bytes, &mut Buffers::default())
    }

    /// [`Record::decode`], reusing `buffers` (give the record's events back
    /// with [`Buffers::recycle`] once read).
    pub fn decode_with(bytes: &[u8], buffers: &mut Buffers) -> Result<Record, DecodeError> {
        let class = peek_class(bytes)?;
        let payload = &bytes[2..];
        let (record, rest) = match bytes[0] {
            1 => {
                let (v1, rest): (RecordV1, &[u8]) = postcard::take_from_bytes(payload)?;
                let record = Record {
                    symbol: v1.symbol,
                    source: v1.source,
                    received_ns: v1.received_ms.saturating_mul(NS_PER_MS),
                    events: v1.events,
                };
                (record, rest)
            }
            2 => {
                let (v2, rest): (RecordV2, &[u8]) = postcard::take_from_bytes(payload)?;
                let record = Record {
                    symbol: v2.symbol,
                    source: v2.source,
                    received_ns: v2.received_ns,
                    events: v2.events,
                };
                (record, rest)
            }
            _ => {
                let (envelope, rest): (Envelope, &[u8]) = postcard::take_from_bytes(payload)?;
                let (events, rest): (Vec<Event>, &[u8]) = match rest {
                    [EVENTS_POSTCARD, events @ ..] => postcard::take_from_bytes(events)?,
                    [EVENTS_COLUMNS, columns @ ..] => {
                        (columns::decode_with(columns, buffers)?, &[][..])
                    }
                    [other, ..] => return Err(DecodeError::Encoding(*other)),
                    [] => return Err(DecodeError::Short(bytes.len())),
                };
                if time_runs(&events) != envelope.runs {
                    return Err(DecodeError::Envelope);
                }
                let record = Record {
                    symbol: envelope.symbol,
                    source: envelope.source,
                    received_ns: envelope.received_ns,
                    events,
                };
                (record, rest)
            }
        };
        if !rest.is_empty() {
            return Err(DecodeError::Payload(
                postcard::Error::DeserializeUnexpectedEnd,
            ));
        }
        if record.class() != class {
            return Err(DecodeError::Class(class as u8));
        }
        Ok(record)
    }
}

/// The class and envelope of an encoded record. From version 3 the events
/// are not decoded (nor checked: [`Record::decode`] does that); an older
/// record is decoded whole.
pub fn decode_envelope(bytes: &[u8]) -> Result<(RecordClass, Envelope), DecodeError> {
    match written_envelope(bytes)? {
        Some(found) => Ok(found),
        None => Ok((peek_class(bytes)?, Record::decode(bytes)?.envelope())),
    }
}

/// The class and envelope of an encoded record if it was written with one
/// (version 3 on), without decoding its events; `None` for an older record,
/// whose envelope only decoding it whole gives.
pub fn written_envelope(bytes: &[u8]) -> Result<Option<(RecordClass, Envelope)>, DecodeError> {
    let class = peek_class(bytes)?;
    if bytes[0] < 3 {
        return Ok(None);
    }
    let (envelope, _events): (Envelope, &[u8]) = postcard::take_from_bytes(&bytes[2..])?;
    Ok(Some((class, envelope)))
}

/// Whether the bytes of a log record are those of a record `bml wal compact`
/// emptied, because no reader could ever see it (a Vision row no marker
/// committed). Every encoding writes at least two bytes, so an empty record
/// is never anything else; readers skip it.
pub fn is_compacted(bytes: &[u8]) -> bool {
    bytes.is_empty()
}

/// The class of an encoded record, from its first two bytes only.
pub fn peek_class(bytes: &[u8]) -> Result<RecordClass, DecodeError> {
    match bytes {
        [] | [_] => Err(DecodeError::Short(bytes.len())),
        [v, _, ..] if !(1..=FORMAT_VERSION).contains(v) => Err(DecodeError::Version(*v)),
        [_, 0, ..] => Ok(RecordClass::Data),
        [_, 1, ..] => Ok(RecordClass::Coverage),
        [_, c, ..] => Err(DecodeError::Class(*c)),
    }
}

#[cfg(test)]
mod tests {
    use arbitrary::{Arbitrary, Unstructured};

    use super::*;

    /// Any record encodes and decodes to itself (random records from random bytes).
    #[test]
    fn every_record_round_trips() {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut tried = 0;
        while tried < 5000 {
            let bytes: Vec<u8> = (0..rng.usize(16..4096)).map(|_| rng.u8(..)).collect();
            let Ok(mut record) = Record::arbitrary(&mut Unstructured::new(&bytes)) else {
                continue;
            };
            if record.events.is_empty() {
                record.events.push(Event::AggTrade(AggTrade {
                    agg_trade_id: 1,
                    price: Decimal::ZERO,
                    quantity: Decimal::ZERO,
                    first_trade_id: 1,
                    last_trade_id: 1,
                    transact_time: 0,
                    is_buyer_maker: false,
                }));
            }
            let encoded = record.encode();
            assert_eq!(Record::decode(&encoded).unwrap(), record);
            tried += 1;
        }
    }

    /// A version-3 record whose envelope's runs are not its events' is
    /// refused: the index, which reads envelopes only, would miss hours.
    #[test]
    fn refuses_an_envelope_that_is_not_its_events() {
        let trade = |time| {
            Event::AggTrade(AggTrade {
                agg_trade_id: 1,
                price: Decimal::ZERO,
                quantity: Decimal::ZERO,
                first_trade_id: 1,
                last_trade_id: 1,
                transact_time: time,
                is_buyer_maker: false,
            })
        };
        let record = Record {
            symbol: "BTCUSDT".into(),
            source: Source::Planner,
            received_ns: 5,
            events: vec![trade(0), trade(10 * HOUR_MS)],
        };
        let envelope = record.envelope();
        assert_eq!(envelope.runs.len(), 2, "ten hours apart: two runs");
        let encoded = record.encode();
        assert_eq!(decode_envelope(&encoded).unwrap().1, envelope);
        let mut lying = vec![FORMAT_VERSION, RecordClass::Data as u8];
        let envelope = EnvelopeRef {
            symbol: &record.symbol,
            source: &record.source,
            received_ns: record.received_ns,
            runs: &envelope.runs[..1],
        };
        lying = postcard::to_extend(&envelope, lying).unwrap();
        let mut unknown = lying.clone();
        lying.push(EVENTS_POSTCARD);
        lying = postcard::to_extend(&record.events, lying).unwrap();
        unknown.push(9);
        unknown = postcard::to_extend(&record.events, unknown).unwrap();
        assert!(matches!(
            Record::decode(&unknown),
            Err(DecodeError::Encoding(9))
        ));
        assert!(matches!(Record::decode(&lying), Err(DecodeError::Envelope)));
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(matches!(Record::decode(&[]), Err(DecodeError::Short(0))));
        assert!(matches!(
            Record::decode(&[4, 0, 0]),
            Err(DecodeError::Version(4))
        ));
        assert!(matches!(
            Record::decode(&[0, 0, 0]),
            Err(DecodeError::Version(0))
        ));
        assert!(matches!(
            Record::decode(&[1, 7, 0]),
            Err(DecodeError::Class(7))
        ));
        assert!(Record::decode(&[1, 0, 0xff, 0xff]).is_err());
    }
}
