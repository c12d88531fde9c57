//! CSV rows of Vision archives → events. Pure functions over one line, so the
//! fuzz target and the tests exercise exactly what ingest runs.
//!
//! Two paths give the same answers. [`parse_row`] splits a line at its commas
//! and checks each field in full (signs, padding, microseconds, every error
//! named): it is the reference. [`parse`] first tries to read an aggTrade or a
//! bookTicker row, nine rows in ten of a Vision day, in one pass over its
//! bytes, taking only the plainest form of each field (digits, one point,
//! lowercase booleans, millisecond times); any other byte sends the line to
//! [`parse_row`]. Splitting first and parsing after was half the ingest's
//! parsing time (`docs/performance.md`). `tests/properties::csv_rows` (a fuzz
//! target too) holds the two paths equal on every line.

use super::split::{Line, RawLine};

use crate::event::{
    AggTrade, BookDepth, BookTicker, Decimal, Event, FundingRate, Kline, KlineKind, Metrics,
    VisionKind,
};

/// A row that does not parse: which field, what it held, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason} ({value:?})")]
pub struct RowError {
    /// The column name (Vision's).
    pub field: &'static str,
    /// The text found there (cut to 40 bytes).
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// Column names per kind, in file order (also the expected header).
pub fn columns(kind: VisionKind) -> &'static [&'static str] {
    match kind {
        VisionKind::Klines
        | VisionKind::MarkPriceKlines
        | VisionKind::IndexPriceKlines
        | VisionKind::PremiumIndexKlines => &[
            "open_time",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "close_time",
            "quote_volume",
            "count",
            "taker_buy_volume",
            "taker_buy_quote_volume",
            "ignore",
        ],
        VisionKind::AggTrades => &[
            "agg_trade_id",
            "price",
            "quantity",
            "first_trade_id",
            "last_trade_id",
            "transact_time",
            "is_buyer_maker",
        ],
        VisionKind::BookTicker => &[
            "update_id",
            "best_bid_price",
            "best_bid_qty",
            "best_ask_price",
            "best_ask_qty",
            "transaction_time",
            "event_time",
        ],
        VisionKind::Metrics => &[
            "create_time",
            "symbol",
            "sum_open_interest",
            "sum_open_interest_value",
            "count_toptrader_long_short_ratio",
            "sum_toptrader_long_short_ratio",
            "count_long_short_ratio",
            "sum_taker_long_short_vol_ratio",
        ],
        VisionKind::BookDepth => &["timestamp", "percentage", "depth", "notional"],
        VisionKind::FundingRate => &["calc_time", "funding_interval_hours", "last_funding_rate"],
    }
}

/// Vision writes a header line in newer files only: a line that starts with a
/// letter is a header (every data row starts with a digit).
pub fn is_header(line: &RawLine) -> bool {
    line.text().first().is_some_and(u8::is_ascii_alphabetic)
}

/// Parses one data row of a `kind` archive: [`parse_row`]'s answer, read
/// straight from the text where the row is a plain aggTrade or bookTicker.
#[inline]
pub fn parse(kind: VisionKind, line: &RawLine) -> Result<Event, RowError> {
    let plain = match kind {
        VisionKind::AggTrades => Scan::new(line.text()).agg_trade(),
        VisionKind::BookTicker => Scan::new(line.text()).book_ticker(),
        _ => None,
    };
    match plain {
        Some(event) => Ok(event),
        None => parse_row(kind, &line.split()),
    }
}

/// A row read field by field in one pass. Every method takes only the
/// plainest form of its field and gives `None` for anything else, so that
/// [`parse_row`] decides (and names the error).
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a [u8]) -> Scan<'a> {
        Scan { text, at: 0 }
    }

    /// The run of digits at the cursor, appended to `onto`'s digits, and its
    /// length. Wrapping: callers refuse runs too long to be exact.
    #[inline(always)]
    fn digits(&mut self, onto: u64) -> (u64, usize) {
        let start = self.at;
        let mut value = onto;
        while let Some(&b) = self.text.get(self.at) {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
            self.at += 1;
        }
        (value, self.at - start)
    }

    /// The end of a field: a comma (passed) before another field, the end of
    /// the line after the last.
    #[inline(always)]
    fn end(&mut self, last: bool) -> Option<()> {
        if last {
            return (self.at == self.text.len()).then_some(());
        }
        (self.text.get(self.at) == Some(&b',')).then(|| self.at += 1)
    }

    /// 1 to 19 digits (always a u64), not the last field.
    #[inline(always)]
    fn uint(&mut self) -> Option<u64> {
        let (value, len) = self.digits(0);
        ((1..=19).contains(&len)).then_some(())?;
        self.end(false)?;
        Some(value)
    }

    /// Digits, then optionally a point and digits; at most 18 digits in all,
    /// so the mantissa is exact and the scale within bounds.
    #[inline(always)]
    fn decimal(&mut self) -> Option<Decimal> {
        let (int, int_len) = self.digits(0);
        let (mantissa, scale) = if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            match self.digits(int) {
                (_, 0) => return None,
                found => found,
            }
        } else {
            (int, 0)
        };
        if int_len == 0 || int_len + scale > 18 {
            return None;
        }
        self.end(false)?;
        Decimal::new(mantissa as i64, scale as u8).ok()
    }

    /// A 13-digit millisecond time (what every USD-M archive holds).
    #[inline(always)]
    fn time(&mut self, last: bool) -> Option<i64> {
        let (value, len) = self.digits(0);
        (len == 13).then_some(())?;
        self.end(last)?;
        Some(value as i64)
    }

    fn agg_trade(mut self) -> Option<Event> {
        Some(Event::AggTrade(AggTrade {
            agg_trade_id: self.uint()?,
            price: self.decimal()?,
            quantity: self.decimal()?,
            first_trade_id: self.uint()?,
            last_trade_id: self.uint()?,
            transact_time: self.time(false)?,
            is_buyer_maker: match &self.text[self.at..] {
                b"true" => true,
                b"false" => false,
                _ => return None,
            },
        }))
    }

    fn book_ticker(mut self) -> Option<Event> {
        Some(Event::BookTicker(BookTicker {
            update_id: self.uint()?,
            bid_price: self.decimal()?,
            bid_qty: self.decimal()?,
            ask_price: self.decimal()?,
            ask_qty: self.decimal()?,
            transaction_time: self.time(false)?,
            event_time: self.time(true)?,
        }))
    }
}

/// Parses one data row of a `kind` archive.
pub fn parse_row(kind: VisionKind, line: &Line) -> Result<Event, RowError> {
    let row = Row {
        line,
        names: columns(kind),
    };
    let expected = row.names.len();
    // Old kline files have no `ignore` column; nothing else may differ.
    let allowed = if row.names[expected - 1] == "ignore" {
        expected - 1..=expected
    } else {
        expected..=expected
    };
    if !allowed.contains(&line.len()) {
        let text = line.text();
        return Err(RowError {
            field: row.names[0],
            value: String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned(),
            reason: format!("{} fields, expected {expected}", line.len()),
        });
    }
    Ok(match kind {
        VisionKind::Klines => row.kline(KlineKind::Trade)?,
        VisionKind::MarkPriceKlines => row.kline(KlineKind::Mark)?,
        VisionKind::IndexPriceKlines => row.kline(KlineKind::Index)?,
        VisionKind::PremiumIndexKlines => row.kline(KlineKind::Premium)?,
        VisionKind::AggTrades => Event::AggTrade(AggTrade {
            agg_trade_id: row.uint(0)?,
            price: row.decimal(1)?,
            quantity: row.decimal(2)?,
            first_trade_id: row.uint(3)?,
            last_trade_id: row.uint(4)?,
            transact_time: row.time(5)?,
            is_buyer_maker: row.boolean(6)?,
        }),
        VisionKind::BookTicker => Event::BookTicker(BookTicker {
            update_id: row.uint(0)?,
            bid_price: row.decimal(1)?,
            bid_qty: row.decimal(2)?,
            ask_price: row.decimal(3)?,
            ask_qty: row.decimal(4)?,
            transaction_time: row.time_or_zero(5)?,
            event_time: row.time(6)?,
        }),
        VisionKind::Metrics => Event::Metrics(Metrics {
            create_time: row.datetime(0)?,
            sum_open_interest: row.optional_decimal(2)?,
            sum_open_interest_value: row.optional_decimal(3)?,
            count_toptrader_long_short_ratio: row.optional_decimal(4)?,
            sum_toptrader_long_short_ratio: row.optional_decimal(5)?,
            count_long_short_ratio: row.optional_decimal(6)?,
            sum_taker_long_short_vol_ratio: row.optional_decimal(7)?,
        }),
        VisionKind::BookDepth => Event::BookDepth(BookDepth {
            timestamp: row.datetime(0)?,
            percentage: row.decimal(1)?,
            depth: row.decimal(2)?,
            notional: row.decimal(3)?,
        }),
        VisionKind::FundingRate => Event::FundingRate(FundingRate {
            funding_time: row.time(0)?,
            interval_hours: Some(
                u32::try_from(row.uint(1)?).map_err(|_| row.error(1, "out of range".into()))?,
            ),
            rate: row.decimal(2)?,
            mark_price: None,
        }),
    })
}

struct Row<'r> {
    line: &'r Line<'r>,
    names: &'static [&'static str],
}

impl<'r> Row<'r> {
    fn field(&self, i: usize) -> &'r [u8] {
        self.line.field(i)
    }

    fn error(&self, i: usize, reason: String) -> RowError {
        let value = self.field(i);
        RowError {
            field: self.names[i],
            value: String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned(),
            reason,
        }
    }

    fn decimal(&self, i: usize) -> Result<Decimal, RowError> {
        Decimal::parse(self.field(i)).map_err(|e| self.error(i, e.to_string()))
    }

    fn optional_decimal(&self, i: usize) -> Result<Option<Decimal>, RowError> {
        if self.field(i).is_empty() {
            return Ok(None);
        }
        self.decimal(i).map(Some)
    }

    fn uint(&self, i: usize) -> Result<u64, RowError> {
        let text = self.field(i);
        if text.is_empty() {
            return Err(self.error(i, "not an unsigned integer".into()));
        }
        // 19 digits always fit in a u64: overflow checks only past that.
        let checked = text.len() > 19;
        let mut value: u64 = 0;
        for &b in text {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return Err(self.error(i, "not an unsigned integer".into()));
            }
            value = if checked {
                value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(digit)))
                    .ok_or_else(|| self.error(i, "integer too large".into()))?
            } else {
                value * 10 + u64::from(digit)
            };
        }
        Ok(value)
    }

    /// An epoch timestamp, as milliseconds. USD-M archives use ms (13 digits);
    /// spot archives switched to µs (16 digits) in 2025. Anything else is refused:
    /// misreading the unit would corrupt a whole day silently.
    fn time(&self, i: usize) -> Result<i64, RowError> {
        let digits = self.field(i).len();
        let value = self.uint(i)?;
        let ms = match digits {
            13 => value,
            16 => value / 1000,
            n => {
                return Err(self.error(
                    i,
                    format!("timestamp of {n} digits: neither ms (13) nor µs (16)"),
                ))
            }
        };
        i64::try_from(ms).map_err(|_| self.error(i, "timestamp out of range".into()))
    }

    /// Like `time`, but "0" (or empty) means absent.
    fn time_or_zero(&self, i: usize) -> Result<i64, RowError> {
        match self.field(i) {
            b"" | b"0" => Ok(0),
            _ => self.time(i),
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` in UTC, as epoch ms.
    fn datetime(&self, i: usize) -> Result<i64, RowError> {
        std::str::from_utf8(self.field(i))
            .ok()
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or_else(|| self.error(i, "not a YYYY-MM-DD HH:MM:SS time".into()))
    }

    fn boolean(&self, i: usize) -> Result<bool, RowError> {
        match self.field(i) {
            b"true" | b"True" | b"TRUE" => Ok(true),
            b"false" | b"False" | b"FALSE" => Ok(false),
            _ => Err(self.error(i, "not true/false".into())),
        }
    }

    fn kline(&self, kind: KlineKind) -> Result<Event, RowError> {
        let open_time = self.time(0)?;
        let close_time = self.time(6)?;
        if close_time < open_time {
            return Err(self.error(6, "close_time before open_time".into()));
        }
        Ok(Event::Kline(Kline {
            kind,
            interval_ms: close_time - open_time + 1,
            open_time,
            open: self.decimal(1)?,
            high: self.decimal(2)?,
            low: self.decimal(3)?,
            close: self.decimal(4)?,
            volume: self.decimal(5)?,
            close_time,
            quote_volume: self.decimal(7)?,
            trade_count: self.uint(8)?,
            taker_buy_volume: self.decimal(9)?,
            taker_buy_quote_volume: self.decimal(10)?,
            closed: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> Line<'_> {
        super::super::split::Lines::new(line.as_bytes(), 1)
            .next()
            .unwrap()
    }

    #[test]
    fn reads_each_kind_and_names_the_bad_field() {
        let e = parse_row(
            VisionKind::AggTrades,
            &record("480537903,79972.8,542.0,1123474160,1123474164,1778198400020,false"),
        )
        .unwrap();
        let Event::AggTrade(t) = e else { panic!() };
        assert_eq!(
            (
                t.agg_trade_id,
                t.price.to_string(),
                t.transact_time,
                t.is_buyer_maker
            ),
            (480537903, "79972.8".into(), 1778198400020, false)
        );

        let err = parse_row(
            VisionKind::AggTrades,
            &record("1,79972.8,abc,1,1,1778198400020,false"),
        )
        .unwrap_err();
        assert_eq!(err.field, "quantity");
        let err = parse_row(
            VisionKind::AggTrades,
            &record("1,1,1,1,1,177819840002,false"),
        )
        .unwrap_err();
        assert!(err.reason.contains("12 digits"), "{err}");
        let err = parse_row(VisionKind::AggTrades, &record("1,1,1")).unwrap_err();
        assert!(err.reason.contains("3 fields"), "{err}");

        let e = parse_row(
            VisionKind::Metrics,
            &record("2024-03-01 00:05:00,BTCUSDT,80000.1,1.5,1.3,1.1,1.6,"),
        )
        .unwrap();
        let Event::Metrics(m) = e else { panic!() };
        assert_eq!(m.create_time, 1709251500000);
        assert_eq!(m.sum_taker_long_short_vol_ratio, None);
    }

    /// Plain rows, as Vision writes them, are read in one pass (what the
    /// differential tests cannot see: they only hold the answers equal).
    #[test]
    fn plain_rows_are_read_in_one_pass() {
        let line = |text: &'static str| {
            super::super::split::RawLines::new(text.as_bytes(), 1)
                .next()
                .unwrap()
        };
        let trade = line("480537903,79972.8,542.0,1123474160,1123474164,1778198400020,false");
        let ticker = line("3000000000031,60005.2,6.131,60005.3,18.318,1709251200001,1709251200002");
        for (kind, line) in [
            (VisionKind::AggTrades, trade),
            (VisionKind::BookTicker, ticker),
        ] {
            let scanned = match kind {
                VisionKind::AggTrades => Scan::new(line.text()).agg_trade(),
                _ => Scan::new(line.text()).book_ticker(),
            };
            assert_eq!(scanned, Some(parse_row(kind, &line.split()).unwrap()));
        }
        let zero_time = line("3000000000031,60005.2,6.131,60005.3,18.318,0,1709251200002");
        assert_eq!(Scan::new(zero_time.text()).book_ticker(), None);
    }

    #[test]
    fn microsecond_timestamps_become_milliseconds() {
        let line = "1778198400000000,80006.00000000,80142.84000000,79729.72000000,79831.99000000,958.06006000,1778201999999999,76636658.96208970,67626,559.85461000,44801546.15802500,0";
        let Event::Kline(k) = parse_row(VisionKind::Klines, &record(line)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (k.open_time, k.close_time, k.interval_ms),
            (1778198400000, 1778201999999, 3_600_000)
        );
    }
}
