//! The columnar encoding of a record's events (encoding 1 of format 3): for
//! a record whose events are all aggTrades or all bookTicker updates, which
//! is nearly every byte of a Vision day (a chunk of 4 096 rows of one file).
//!
//! Each event is a fixed row of integer *slots* (its fields, decimals as
//! mantissa and scale); the slots are written column by column, each value as
//! the zig-zag LEB128 varint of its difference from the one above it. Prices,
//! ids and times move little from row to row, so most values take one or two
//! bytes where postcard's row-by-row encoding takes five to eight; the result
//! is then compressed with zstd, which finds the columns' repetition (a scale
//! that never changes, a quantity that recurs). Any row of slots decodes: the
//! encoding is exact for every value of every field, not just typical ones.
//!
//! Layout: the kind (`0` aggTrade, `1` bookTicker), the row count (varint),
//! the uncompressed length (varint), then the zstd frame of the columns.

use super::{AggTrade, BookTicker, Decimal, DecodeError, Event};

/// zstd's level: 1 keeps compression well ahead of the ingest's other work
/// (`docs/performance.md` has the levels measured).
const ZSTD_LEVEL: i32 = 1;

/// Fewer events than this stay postcard: a live message is one event, and a
/// column of one value saves nothing.
const MIN_ROWS: usize = 16;

/// A kind of event with a columnar form: its slots, and back.
trait Columnar: Sized {
    /// The kind byte.
    const KIND: u8;
    /// Slots per row.
    const SLOTS: usize;
    /// This event's slots, appended to `out`; `None` if it has none (a
    /// decimal of a scale [`Decimal::new`] refuses, which only a decoded
    /// postcard record can hold: it stays postcard).
    fn slots(&self, out: &mut Vec<i64>) -> Option<()>;
    /// The event a row of slots is; `None` when the slots are not one (a
    /// scale over 18, a flag other than 0 or 1).
    fn from_slots(slots: &[i64]) -> Option<Self>;
}

fn decimal_slots(d: Decimal, out: &mut Vec<i64>) -> Option<()> {
    Decimal::new(d.mantissa(), d.scale()).ok()?;
    out.extend([d.mantissa(), i64::from(d.scale())]);
    Some(())
}

fn decimal_from(mantissa: i64, scale: i64) -> Option<Decimal> {
    Decimal::new(mantissa, u8::try_from(scale).ok()?).ok()
}

// Ids are u64: stored as their bit pattern (`as i64` and back), so every id
// round-trips. The last trade id and the event time are kept as distances
// (to the first trade id, to the transaction time), which barely vary.
impl Columnar for AggTrade {
    const KIND: u8 = 0;
    const SLOTS: usize = 9;
    fn slots(&self, out: &mut Vec<i64>) -> Option<()> {
        out.push(self.agg_trade_id as i64);
        decimal_slots(self.price, out)?;
        decimal_slots(self.quantity, out)?;
        out.extend([
            self.first_trade_id as i64,
            self.last_trade_id.wrapping_sub(self.first_trade_id) as i64,
            self.transact_time,
            i64::from(self.is_buyer_maker),
        ]);
        Some(())
    }
    fn from_slots(s: &[i64]) -> Option<Self> {
        let first_trade_id = s[5] as u64;
        Some(AggTrade {
            agg_trade_id: s[0] as u64,
            price: decimal_from(s[1], s[2])?,
            quantity: decimal_from(s[3], s[4])?,
            first_trade_id,
            last_trade_id: first_trade_id.wrapping_add(s[6] as u64),
            transact_time: s[7],
            is_buyer_maker: match s[8] {
                0 => false,
                1 => true,
                _ => return None,
            },
        })
    }
}

impl Columnar for BookTicker {
    const KIND: u8 = 1;
    const SLOTS: usize = 11;
    fn slots(&self, out: &mut Vec<i64>) -> Option<()> {
        out.push(self.update_id as i64);
        for d in [self.bid_price, self.bid_qty, self.ask_price, self.ask_qty] {
            decimal_slots(d, out)?;
        }
        out.extend([
            self.transaction_time,
            self.event_time.wrapping_sub(self.transaction_time),
        ]);
        Some(())
    }
    fn from_slots(s: &[i64]) -> Option<Self> {
        Some(BookTicker {
            update_id: s[0] as u64,
            bid_price: decimal_from(s[1], s[2])?,
            bid_qty: decimal_from(s[3], s[4])?,
            ask_price: decimal_from(s[5], s[6])?,
            ask_qty: decimal_from(s[7], s[8])?,
            transaction_time: s[9],
            event_time: s[9].wrapping_add(s[10]),
        })
    }
}

/// Appends the columnar encoding of `events` to `out`, if they have one (all
/// aggTrades or all bookTicker updates, at least [`MIN_ROWS`], every decimal
/// a valid one); false, with `out` untouched, if not. `buffers` lends its
/// zstd context and memory (an appender encodes record after record).
pub(super) fn encode_with(events: &[Event], buffers: &mut Buffers, out: &mut Vec<u8>) -> bool {
    if events.len() < MIN_ROWS {
        return false;
    }
    let slots = &mut buffers.slots;
    slots.clear();
    let kind = match &events[0] {
        Event::AggTrade(_) => fill::<AggTrade>(events, slots, |e| match e {
            Event::AggTrade(t) => Some(t),
            _ => None,
        }),
        Event::BookTicker(_) => fill::<BookTicker>(events, slots, |e| match e {
            Event::BookTicker(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    let Some((kind, width)) = kind else {
        return false;
    };
    let columns = &mut buffers.columns;
    columns.clear();
    columns.reserve(slots.len() * 2);
    for column in 0..width {
        let mut above = 0i64;
        for row in slots.chunks_exact(width) {
            write_varint(columns, zigzag(row[column].wrapping_sub(above)));
            above = row[column];
        }
    }
    let compressor = buffers.compressor.get_or_insert_with(|| {
        zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd makes a context at a valid level")
    });
    let compressed = &mut buffers.compressed;
    compressed.clear();
    compressed.reserve(zstd::zstd_safe::compress_bound(columns.len()));
    compressor
        .compress_to_buffer(columns.as_slice(), compressed)
        .expect("zstd compresses any input into a buffer of its bound");
    out.push(kind);
    write_varint(out, events.len() as u64);
    write_varint(out, columns.len() as u64);
    out.extend_from_slice(compressed);
    true
}

/// The slots of every event (all of kind `T`, as `pick` finds it), or `None`
/// if one is of another kind; with `T`'s kind byte and width.
fn fill<'a, T: Columnar + 'a>(
    events: &'a [Event],
    slots: &mut Vec<i64>,
    pick: impl Fn(&'a Event) -> Option<&'a T>,
) -> Option<(u8, usize)> {
    slots.reserve(events.len() * T::SLOTS);
    for event in events {
        pick(event)?.slots(slots)?;
    }
    Some((T::KIND, T::SLOTS))
}

/// What encoding and decoding columns allocate, kept from one record to the
/// next: a reader decoding record after record (the materializer's workers)
/// or an appender encoding them (the ingest) then reuses its zstd contexts and
/// memory instead of faulting in fresh pages for each record (an eighth of a
/// fresh materialize's time, perf).
#[derive(Default)]
pub struct Buffers {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    columns: Vec<u8>,
    compressed: Vec<u8>,
    slots: Vec<i64>,
    events: Vec<Event>,
}

impl Buffers {
    /// Takes back the events of a record decoded with these buffers.
    pub fn recycle(&mut self, mut events: Vec<Event>) {
        if events.capacity() > self.events.capacity() {
            events.clear();
            self.events = events;
        }
    }
}

/// [`encode_with`], in fresh buffers.
#[cfg(test)]
fn encode(events: &[Event], out: &mut Vec<u8>) -> bool {
    encode_with(events, &mut Buffers::default(), out)
}

/// Decodes the columnar encoding that is `bytes` (everything after the
/// encoding byte: the zstd frame ends the record).
#[cfg(test)]
fn decode(bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
    decode_with(bytes, &mut Buffers::default())
}

/// [`decode`], in `buffers`.
pub(super) fn decode_with(bytes: &[u8], buffers: &mut Buffers) -> Result<Vec<Event>, DecodeError> {
    let bad = |what: &str| DecodeError::Columns(what.to_string());
    let (&kind, rest) = bytes.split_first().ok_or_else(|| bad("no kind"))?;
    let (rows, read) = read_varint(rest).ok_or_else(|| bad("no row count"))?;
    let rest = &rest[read..];
    let (length, read) = read_varint(rest).ok_or_else(|| bad("no length"))?;
    let compressed = &rest[read..];
    let width = match kind {
        AggTrade::KIND => AggTrade::SLOTS,
        BookTicker::KIND => BookTicker::SLOTS,
        _ => return Err(bad(&format!("unknown kind {kind}"))),
    };
    // Every value takes at least one byte: a length below that, or one past
    // the largest record, is damage, and must not size an allocation.
    let cells = usize::try_from(rows)
        .ok()
        .and_then(|rows| rows.checked_mul(width))
        .filter(|&cells| cells as u64 <= length && length <= MAX_COLUMNS_BYTES)
        .ok_or_else(|| bad("row count and length disagree"))?;
    let zstd = match &mut buffers.zstd {
        Some(zstd) => zstd,
        empty => {
            empty.insert(zstd::bulk::Decompressor::new().map_err(|e| bad(&format!("zstd: {e}")))?)
        }
    };
    let columns = &mut buffers.columns;
    columns.clear();
    // zstd writes into the capacity; more than the length said is damage.
    columns.reserve_exact(length as usize);
    zstd.decompress_to_buffer(compressed, columns)
        .map_err(|e| bad(&format!("zstd: {e}")))?;
    if columns.len() as u64 != length {
        return Err(bad("uncompressed length differs"));
    }
    let rows = cells / width;
    let slots = &mut buffers.slots;
    slots.clear();
    slots.resize(cells, 0);
    let mut at = 0;
    for column in 0..width {
        let mut above = 0i64;
        for row in 0..rows {
            // One byte is the common case: read inline, the loop otherwise.
            let value = match columns.get(at) {
                Some(&byte) if byte < 0x80 => {
                    at += 1;
                    u64::from(byte)
                }
                _ => {
                    let (value, read) =
                        read_varint(&columns[at..]).ok_or_else(|| bad("columns end early"))?;
                    at += read;
                    value
                }
            };
            above = above.wrapping_add(unzigzag(value));
            slots[row * width + column] = above;
        }
    }
    if at != columns.len() {
        return Err(bad("bytes after the columns"));
    }
    let mut events = std::mem::take(&mut buffers.events);
    events.clear();
    let whole = match kind {
        AggTrade::KIND => rows_of(slots, Event::AggTrade, &mut events),
        _ => rows_of(slots, Event::BookTicker, &mut events),
    };
    whole.ok_or_else(|| bad("a row is not an event"))?;
    Ok(events)
}

/// Appends to `events` the events the rows of `slots` are, each made one by
/// `wrap`; `None` if a row is not one. A loop per kind, not `collect` over a
/// closure choosing the kind: that moved every event through two more
/// copies, a third of a replay's time (perf).
fn rows_of<T: Columnar>(
    slots: &[i64],
    wrap: fn(T) -> Event,
    events: &mut Vec<Event>,
) -> Option<()> {
    events.reserve(slots.len() / T::SLOTS);
    for row in slots.chunks_exact(T::SLOTS) {
        events.push(wrap(T::from_slots(row)?));
    }
    Some(())
}

/// The largest uncompressed columns a record may hold: a record is at most
/// 64 MiB (`docs/wal-format.md`), and a value a byte or more.
const MAX_COLUMNS_BYTES: u64 = 64 << 20;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A LEB128 varint of at most 10 bytes, and how many bytes it took; `None`
/// if the bytes end first or the value overflows 64 bits.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use arbitrary::{Arbitrary, Unstructured};

    use super::*;
    use crate::event::Record;

    /// Chunks of aggTrades and of bookTicker updates, from realistic runs
    /// (ids counting up, prices and times drifting) to arbitrary values of
    /// every field (u64 ids past i64, any scale, negative times).
    fn chunk(rng: &mut fastrand::Rng) -> Vec<Event> {
        let rows = rng.usize(MIN_ROWS..600);
        let wild = rng.bool();
        let bytes: Vec<u8> = (0..rows * 80).map(|_| rng.u8(..)).collect();
        let mut u = Unstructured::new(&bytes);
        let mut price = 600_000;
        let (mut id, mut time) = (rng.u64(..1 << 40), 1_709_251_200_000 + rng.i64(..1 << 30));
        let decimal = |m: i64, s: u8| Decimal::new(m, s).unwrap();
        let trades = rng.bool();
        (0..rows)
            .map(|_| {
                if wild {
                    // Any value of every field; a scale over 18 (which only
                    // arbitrary bytes give) in about one chunk in ten.
                    let mut fix = |d: Decimal| match rng.usize(..rows * 40) {
                        0 => d,
                        _ => decimal(d.mantissa(), d.scale() % 19),
                    };
                    return if trades {
                        let t = AggTrade::arbitrary(&mut u).unwrap();
                        let (price, quantity) = (fix(t.price), fix(t.quantity));
                        Event::AggTrade(AggTrade {
                            price,
                            quantity,
                            ..t
                        })
                    } else {
                        let b = BookTicker::arbitrary(&mut u).unwrap();
                        Event::BookTicker(BookTicker {
                            bid_price: fix(b.bid_price),
                            bid_qty: fix(b.bid_qty),
                            ask_price: fix(b.ask_price),
                            ask_qty: fix(b.ask_qty),
                            ..b
                        })
                    };
                }
                id += rng.u64(1..5);
                time += rng.i64(0..300);
                price += rng.i64(-3..=3);
                if trades {
                    let first = id * 3;
                    Event::AggTrade(AggTrade {
                        agg_trade_id: id,
                        price: decimal(price, 1),
                        quantity: decimal(rng.i64(1..50_000), 3),
                        first_trade_id: first,
                        last_trade_id: first + rng.u64(0..4),
                        transact_time: time,
                        is_buyer_maker: rng.bool(),
                    })
                } else {
                    Event::BookTicker(BookTicker {
                        update_id: id,
                        bid_price: decimal(price, 1),
                        bid_qty: decimal(rng.i64(1..50_000), 3),
                        ask_price: decimal(price + 1, 1),
                        ask_qty: decimal(rng.i64(1..50_000), 3),
                        transaction_time: time,
                        event_time: time + rng.i64(0..3),
                    })
                }
            })
            .collect()
    }

    /// Every chunk comes back from its columns as it went in: the postcard
    /// encoding is the oracle (the events it decodes to are the same), and
    /// the columns are smaller than it for realistic chunks.
    #[test]
    fn columns_give_back_the_events() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut tally = [0; 2];
        let mut buffers = Buffers::default();
        for _ in 0..400 {
            let events = chunk(&mut rng);
            let mut columns = Vec::new();
            let valid = events.iter().all(|e| {
                let decimals = match e {
                    Event::AggTrade(t) => vec![t.price, t.quantity],
                    Event::BookTicker(b) => vec![b.bid_price, b.bid_qty, b.ask_price, b.ask_qty],
                    _ => vec![],
                };
                decimals
                    .iter()
                    .all(|d| d.scale() <= crate::event::decimal::MAX_SCALE)
            });
            assert_eq!(encode(&events, &mut columns), valid);
            // Buffers that encoded and decoded every chunk before (the
            // appender's, the reader's) give the same bytes as fresh ones.
            let mut reusing = Vec::new();
            assert_eq!(encode_with(&events, &mut buffers, &mut reusing), valid);
            assert_eq!(reusing, columns);
            tally[usize::from(valid)] += 1;
            if !valid {
                let record = Record {
                    symbol: "BTCUSDT".into(),
                    source: crate::event::Source::Planner,
                    received_ns: 1,
                    events,
                };
                assert_eq!(Record::decode(&record.encode()).unwrap(), record);
                continue;
            }
            let postcard = postcard::to_allocvec(&events).unwrap();
            let oracle: Vec<Event> = postcard::from_bytes(&postcard).unwrap();
            assert_eq!(decode(&columns).unwrap(), oracle);
            // Buffers that decoded every chunk before (and failed on a cut
            // one) give the same events.
            let reused = decode_with(&columns, &mut buffers).unwrap();
            assert_eq!(reused, oracle);
            buffers.recycle(reused);
            // And right after that decode, which left its columns and slots
            // in them.
            let mut again = Vec::new();
            assert!(encode_with(&events, &mut buffers, &mut again));
            assert_eq!(again, columns);
            assert!(decode_with(&columns[..columns.len() / 2], &mut buffers).is_err());
            let record = Record {
                symbol: "BTCUSDT".into(),
                source: crate::event::Source::Planner,
                received_ns: 1,
                events,
            };
            let encoded = record.encode();
            assert_eq!(
                encoded[encoded.len() - columns.len() - 1],
                super::super::EVENTS_COLUMNS
            );
            assert_eq!(Record::decode(&encoded).unwrap(), record);
        }
        assert!(tally[0] > 5 && tally[1] > 300, "{tally:?}");
    }

    /// Mixed kinds, other kinds and short chunks stay postcard.
    #[test]
    fn only_long_chunks_of_one_kind_take_columns() {
        let mut rng = fastrand::Rng::with_seed(12);
        let mut events = chunk(&mut rng);
        let mut out = Vec::new();
        assert!(!encode(&events[..MIN_ROWS - 1], &mut out));
        let other = match &events[0] {
            Event::AggTrade(_) => chunk(&mut rng)
                .into_iter()
                .find(|e| matches!(e, Event::BookTicker(_))),
            _ => None,
        };
        if let Some(other) = other {
            events.push(other);
            assert!(!encode(&events, &mut out));
        }
        assert!(out.is_empty());
    }

    /// Damaged columns are an error naming what is wrong, never a panic or a
    /// wrong event: every truncation and many single-byte changes.
    #[test]
    fn damaged_columns_are_refused() {
        let mut rng = fastrand::Rng::with_seed(13);
        let events = chunk(&mut rng);
        let mut columns = Vec::new();
        assert!(encode(&events, &mut columns));
        for cut in 0..columns.len() {
            assert!(decode(&columns[..cut]).is_err(), "cut at {cut}");
        }
        for _ in 0..2000 {
            let mut damaged = columns.clone();
            let at = rng.usize(..damaged.len());
            damaged[at] ^= rng.u8(1..);
            if let Ok(decoded) = decode(&damaged) {
                assert_eq!(decoded.len(), events.len());
            }
        }
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1 << 62] {
            let mut out = Vec::new();
            write_varint(&mut out, zigzag(v));
            let (back, read) = read_varint(&out).unwrap();
            assert_eq!(read, out.len());
            assert_eq!(unzigzag(back), v);
        }
        assert_eq!(read_varint(&[0xff; 10]), None, "more than 64 bits");
        assert_eq!(read_varint(&[0x80]), None, "ends inside");
    }
}
