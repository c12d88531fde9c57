//! Stream payloads (`../shared/spec/binance.md`, WebSocket) into events: one
//! message, one event. Unknown fields are ignored; a missing or malformed
//! known field is an error naming it.

use serde_json::Value;

use crate::event::{BookTicker, DepthDiff, Event, Kline, KlineKind, Liquidation, MarkPrice, Side};
use crate::sources::json::{self, boolean, decimal, field, int, levels, text, uint};

/// The event a payload holds, by its `e` (bookTicker's payload has one too).
pub fn parse(data: &Value) -> anyhow::Result<Event> {
    Ok(match text(data, "e")? {
        "aggTrade" => Event::AggTrade(json::agg_trade(data)?),
        "bookTicker" => Event::BookTicker(BookTicker {
            update_id: uint(data, "u")?,
            bid_price: decimal(data, "b")?,
            bid_qty: decimal(data, "B")?,
            ask_price: decimal(data, "a")?,
            ask_qty: decimal(data, "A")?,
            transaction_time: int(data, "T")?,
            event_time: int(data, "E")?,
        }),
        "markPriceUpdate" => Event::MarkPrice(MarkPrice {
            event_time: int(data, "E")?,
            mark_price: decimal(data, "p")?,
            index_price: decimal(data, "i")?,
            estimated_settle_price: decimal(data, "P")?,
            funding_rate: decimal(data, "r")?,
            next_funding_time: int(data, "T")?,
        }),
        "forceOrder" => {
            let o = field(data, "o")?;
            Event::Liquidation(Liquidation {
                event_time: int(data, "E")?,
                side: match text(o, "S")? {
                    "BUY" => Side::Buy,
                    "SELL" => Side::Sell,
                    other => anyhow::bail!("field \"S\": {other:?} is neither BUY nor SELL"),
                },
                orig_qty: decimal(o, "q")?,
                price: decimal(o, "p")?,
                avg_price: decimal(o, "ap")?,
                status: text(o, "X")?.to_owned(),
                last_filled_qty: decimal(o, "l")?,
                filled_qty: decimal(o, "z")?,
                trade_time: int(o, "T")?,
            })
        }
        "depthUpdate" => Event::DepthDiff(DepthDiff {
            event_time: int(data, "E")?,
            transaction_time: int(data, "T")?,
            first_update_id: uint(data, "U")?,
            final_update_id: uint(data, "u")?,
            prev_final_update_id: uint(data, "pu")?,
            bids: levels(data, "b")?,
            asks: levels(data, "a")?,
        }),
        "kline" => {
            let k = field(data, "k")?;
            let (open_time, close_time) = (int(k, "t")?, int(k, "T")?);
            Event::Kline(Kline {
                kind: KlineKind::Trade,
                interval_ms: close_time + 1 - open_time,
                open_time,
                open: decimal(k, "o")?,
                high: decimal(k, "h")?,
                low: decimal(k, "l")?,
                close: decimal(k, "c")?,
                volume: decimal(k, "v")?,
                close_time,
                quote_volume: decimal(k, "q")?,
                trade_count: uint(k, "n")?,
                taker_buy_volume: decimal(k, "V")?,
                taker_buy_quote_volume: decimal(k, "Q")?,
                closed: boolean(k, "x")?,
            })
        }
        other => anyhow::bail!("an event of type {other:?}, which bml does not read"),
    })
}

/// The symbol a payload is about (`s`, or `o.s` for a liquidation).
pub fn symbol(data: &Value) -> anyhow::Result<&str> {
    data.get("s")
        .or_else(|| data.get("o").and_then(|o| o.get("s")))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("no symbol (field \"s\")"))
}
