//! Stream payloads (`../shared/spec/binance.md`, WebSocket) into events: one
//! message, one event. This is the collector's hot path, so each payload is
//! parsed from its text straight into typed fields (no `serde_json::Value`,
//! no copy of a decimal's text). The stream's name says which payload to
//! expect, and the payload's `e` must agree. Unknown fields are ignored; a
//! missing or malformed known field is an error that names the field or
//! where it is in the text.

use serde::Deserialize;

use crate::event::{
    BookTicker, Decimal, DepthDiff, Event, Kline, KlineKind, Level, Liquidation, MarkPrice, Side,
};
use crate::sources::json::{de_decimal, de_levels, AggTradeFields};

/// The symbol and event of the payload `data` of `stream`.
pub fn parse(stream: &str, data: &str) -> anyhow::Result<(String, Event)> {
    let kind = stream.split_once('@').map_or("", |(_, kind)| kind);
    let (e, expected, symbol, event) = if kind == "aggTrade" {
        let m: AggTradeFields = serde_json::from_str(data)?;
        let symbol = m.s.ok_or_else(|| anyhow::anyhow!("missing field `s`"))?;
        let e = m.e.ok_or_else(|| anyhow::anyhow!("missing field `e`"))?;
        (e, "aggTrade", symbol, Event::AggTrade(m.event()))
    } else if kind == "bookTicker" {
        let m: BookTickerFields = serde_json::from_str(data)?;
        (m.e, "bookTicker", m.s, Event::BookTicker(m.event()))
    } else if kind.starts_with("markPrice") {
        let m: MarkPriceFields = serde_json::from_str(data)?;
        (m.e, "markPriceUpdate", m.s, Event::MarkPrice(m.event()))
    } else if kind == "forceOrder" {
        let m: ForceOrderFields = serde_json::from_str(data)?;
        (m.e, "forceOrder", m.o.s, Event::Liquidation(m.event()?))
    } else if kind.starts_with("kline") {
        let m: KlineFields = serde_json::from_str(data)?;
        (m.e, "kline", m.s, Event::Kline(m.k.event()))
    } else if kind.starts_with("depth") {
        let m: DepthFields = serde_json::from_str(data)?;
        (m.e, "depthUpdate", m.s, Event::DepthDiff(m.event()))
    } else {
        anyhow::bail!("a stream bml does not read");
    };
    if e != expected {
        anyhow::bail!("an event of type {e:?} where {expected:?} belongs");
    }
    Ok((symbol.to_owned(), event))
}

#[derive(Deserialize)]
struct BookTickerFields<'a> {
    e: &'a str,
    s: &'a str,
    u: u64,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "T")]
    transaction_time: i64,
    #[serde(deserialize_with = "de_decimal")]
    b: Decimal,
    #[serde(rename = "B", deserialize_with = "de_decimal")]
    bid_qty: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    a: Decimal,
    #[serde(rename = "A", deserialize_with = "de_decimal")]
    ask_qty: Decimal,
}

impl BookTickerFields<'_> {
    fn event(&self) -> BookTicker {
        BookTicker {
            update_id: self.u,
            bid_price: self.b,
            bid_qty: self.bid_qty,
            ask_price: self.a,
            ask_qty: self.ask_qty,
            transaction_time: self.transaction_time,
            event_time: self.event_time,
        }
    }
}

#[derive(Deserialize)]
struct MarkPriceFields<'a> {
    e: &'a str,
    s: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(deserialize_with = "de_decimal")]
    p: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    i: Decimal,
    #[serde(rename = "P", deserialize_with = "de_decimal")]
    estimated_settle_price: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    r: Decimal,
    #[serde(rename = "T")]
    next_funding_time: i64,
}

impl MarkPriceFields<'_> {
    fn event(&self) -> MarkPrice {
        MarkPrice {
            event_time: self.event_time,
            mark_price: self.p,
            index_price: self.i,
            estimated_settle_price: self.estimated_settle_price,
            funding_rate: self.r,
            next_funding_time: self.next_funding_time,
        }
    }
}

#[derive(Deserialize)]
struct ForceOrderFields<'a> {
    e: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(borrow)]
    o: OrderFields<'a>,
}

/// A liquidation's order (`o`).
#[derive(Deserialize)]
struct OrderFields<'a> {
    s: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    #[serde(deserialize_with = "de_decimal")]
    q: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    p: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    ap: Decimal,
    #[serde(rename = "X")]
    status: &'a str,
    #[serde(deserialize_with = "de_decimal")]
    l: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    z: Decimal,
    #[serde(rename = "T")]
    trade_time: i64,
}

impl ForceOrderFields<'_> {
    fn event(&self) -> anyhow::Result<Liquidation> {
        let o = &self.o;
        Ok(Liquidation {
            event_time: self.event_time,
            side: match o.side {
                "BUY" => Side::Buy,
                "SELL" => Side::Sell,
                other => anyhow::bail!("field `S`: {other:?} is neither BUY nor SELL"),
            },
            orig_qty: o.q,
            price: o.p,
            avg_price: o.ap,
            status: o.status.to_owned(),
            last_filled_qty: o.l,
            filled_qty: o.z,
            trade_time: o.trade_time,
        })
    }
}

#[derive(Deserialize)]
struct KlineFields<'a> {
    e: &'a str,
    s: &'a str,
    k: KlineBody,
}

/// A kline's body (`k`).
#[derive(Deserialize)]
struct KlineBody {
    t: i64,
    #[serde(rename = "T")]
    close_time: i64,
    #[serde(deserialize_with = "de_decimal")]
    o: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    h: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    l: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    c: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    v: Decimal,
    #[serde(deserialize_with = "de_decimal")]
    q: Decimal,
    n: u64,
    #[serde(rename = "V", deserialize_with = "de_decimal")]
    taker_buy_volume: Decimal,
    #[serde(rename = "Q", deserialize_with = "de_decimal")]
    taker_buy_quote_volume: Decimal,
    x: bool,
}

impl KlineBody {
    fn event(&self) -> Kline {
        Kline {
            kind: KlineKind::Trade,
            interval_ms: self.close_time + 1 - self.t,
            open_time: self.t,
            open: self.o,
            high: self.h,
            low: self.l,
            close: self.c,
            volume: self.v,
            close_time: self.close_time,
            quote_volume: self.q,
            trade_count: self.n,
            taker_buy_volume: self.taker_buy_volume,
            taker_buy_quote_volume: self.taker_buy_quote_volume,
            closed: self.x,
        }
    }
}

#[derive(Deserialize)]
struct DepthFields<'a> {
    e: &'a str,
    s: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "T")]
    transaction_time: i64,
    #[serde(rename = "U")]
    first_update_id: u64,
    u: u64,
    pu: u64,
    #[serde(deserialize_with = "de_levels")]
    b: Vec<Level>,
    #[serde(deserialize_with = "de_levels")]
    a: Vec<Level>,
}

impl DepthFields<'_> {
    fn event(self) -> DepthDiff {
        DepthDiff {
            event_time: self.event_time,
            transaction_time: self.transaction_time,
            first_update_id: self.first_update_id,
            final_update_id: self.u,
            prev_final_update_id: self.pu,
            bids: self.b,
            asks: self.a,
        }
    }
}
