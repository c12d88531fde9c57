//! Stream payloads (`../shared/spec/binance.md`, WebSocket) into events: one
//! message, one event. This is the collector's hot path, so each payload is
//! parsed from its text straight into typed fields (no `serde_json::Value`,
//! no copy of a decimal's text). The stream's name says which payload to
//! expect, and the payload's `e` must agree. Unknown fields are ignored; a
//! missing or malformed known field is an error that names the field or
//! where it is in the text.

use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{
    BookTicker, Decimal, DepthDiff, Event, Kline, KlineKind, Level, Liquidation, MarkPrice, Side,
};
use crate::sources::json::{de_decimal, de_levels, AggTradeFields};

/// A combined stream's message (`{"stream","data"}`) read in one pass:
/// Binance sends `stream` first, and it picks what `data` is parsed as
/// (were `data` first, it is kept as text and parsed after). `None`: not a
/// data message (the answer to a request, say).
pub fn message(text: &str) -> anyhow::Result<Option<(&str, String, Event)>> {
    let mut d = serde_json::Deserializer::from_str(text);
    let read = d.deserialize_map(Envelope)?;
    d.end()?;
    Ok(match read {
        Some((stream, Payload::Parsed(symbol, event))) => Some((stream, symbol, event)),
        Some((stream, Payload::Later(data))) => {
            let (symbol, event) = parse(stream, data.get())?;
            Some((stream, symbol, event))
        }
        None => None,
    })
}

/// The symbol and event of the payload `data` of `stream`.
fn parse(stream: &str, data: &str) -> anyhow::Result<(String, Event)> {
    let mut d = serde_json::Deserializer::from_str(data);
    let parsed = PayloadOf(stream).deserialize(&mut d)?;
    d.end()?;
    Ok(parsed)
}

/// `data` read as the stream says, or kept for later.
enum Payload<'a> {
    Parsed(String, Event),
    Later(&'a RawValue),
}

struct Envelope;

impl<'de> Visitor<'de> for Envelope {
    type Value = Option<(&'de str, Payload<'de>)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut stream, mut payload): (Option<&'de str>, _) = (None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            match (key, stream) {
                ("stream", _) => stream = Some(map.next_value()?),
                ("data", Some(s)) => {
                    let (symbol, event) = map.next_value_seed(PayloadOf(s))?;
                    payload = Some(Payload::Parsed(symbol, event));
                }
                ("data", None) => payload = Some(Payload::Later(map.next_value()?)),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(stream.zip(payload))
    }
}

/// The payload of one stream: its name says which fields to expect, and the
/// payload's `e` must agree.
#[derive(Clone, Copy)]
struct PayloadOf<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for PayloadOf<'_> {
    type Value = (String, Event);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(String, Event), D::Error> {
        let kind = self.0.split_once('@').map_or("", |(_, kind)| kind);
        let (e, expected, symbol, event) = if kind == "aggTrade" {
            let m = AggTradeFields::deserialize(d)?;
            let symbol = m.s.ok_or_else(|| D::Error::missing_field("s"))?;
            let e = m.e.ok_or_else(|| D::Error::missing_field("e"))?;
            (e, "aggTrade", symbol, Event::AggTrade(m.event()))
        } else if kind == "bookTicker" {
            let m = BookTickerFields::deserialize(d)?;
            (m.e, "bookTicker", m.s, Event::BookTicker(m.event()))
        } else if kind.starts_with("markPrice") {
            let m = MarkPriceFields::deserialize(d)?;
            (m.e, "markPriceUpdate", m.s, Event::MarkPrice(m.event()))
        } else if kind == "forceOrder" {
            let m = ForceOrderFields::deserialize(d)?;
            let event = m.event().map_err(D::Error::custom)?;
            (m.e, "forceOrder", m.o.s, Event::Liquidation(event))
        } else if kind.starts_with("kline") {
            let m = KlineFields::deserialize(d)?;
            (m.e, "kline", m.s, Event::Kline(m.k.event()))
        } else if kind.starts_with("depth") {
            let m = DepthFields::deserialize(d)?;
            (m.e, "depthUpdate", m.s, Event::DepthDiff(m.event()))
        } else {
            return Err(D::Error::custom(format!(
                "{:?}: a stream bml does not read",
                self.0
            )));
        };
        if e != expected {
            return Err(D::Error::custom(format!(
                "an event of type {e:?} where {expected:?} belongs"
            )));
        }
        Ok((symbol.to_owned(), event))
    }
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
    fn event(&self) -> Result<Liquidation, String> {
        let o = &self.o;
        Ok(Liquidation {
            event_time: self.event_time,
            side: match o.side {
                "BUY" => Side::Buy,
                "SELL" => Side::Sell,
                other => return Err(format!("field `S`: {other:?} is neither BUY nor SELL")),
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

#[cfg(test)]
mod tests {
    use super::*;

    const TRADE: &str = r#"{"e":"aggTrade","E":1709251200123,"s":"BTCUSDT","a":5,"p":"61000.10","q":"0.002","f":7,"l":8,"T":1709251200120,"m":true}"#;

    fn enveloped(stream: &str, data: &str) -> String {
        format!(r#"{{"stream":"{stream}","data":{data}}}"#)
    }

    #[test]
    fn reads_a_message_in_one_pass_or_with_data_first() {
        let one_pass = enveloped("btcusdt@aggTrade", TRADE);
        let data_first = format!(r#"{{"data":{TRADE},"stream":"btcusdt@aggTrade"}}"#);
        let (stream, symbol, event) = message(&one_pass).unwrap().unwrap();
        assert_eq!((stream, symbol.as_str()), ("btcusdt@aggTrade", "BTCUSDT"));
        let Event::AggTrade(t) = &event else {
            panic!("{event:?}")
        };
        assert_eq!(
            (t.agg_trade_id, t.price.to_string()),
            (5, "61000.10".into())
        );
        assert_eq!(message(&data_first).unwrap().unwrap().2, event);
        assert_eq!(parse("btcusdt@aggTrade", TRADE).unwrap().1, event);
    }

    #[test]
    fn an_answer_is_not_data() {
        assert!(message(r#"{"result":null,"id":1}"#).unwrap().is_none());
        assert!(message(r#"{"result":["btcusdt@aggTrade"],"id":2}"#)
            .unwrap()
            .is_none());
    }

    #[test]
    fn refuses_naming_what_is_wrong() {
        let error = |text: &str| message(text).unwrap_err().to_string();
        let no_price = TRADE.replace(r#""p":"61000.10","#, "");
        assert!(error(&enveloped("btcusdt@aggTrade", &no_price)).contains("missing field `p`"));
        let bad_price = TRADE.replace("61000.10", "61e3");
        assert!(error(&enveloped("btcusdt@aggTrade", &bad_price)).contains("\"61e3\""));
        let other = enveloped("btcusdt@markPrice@1s", TRADE);
        assert!(error(&other).contains("missing field"), "{}", error(&other));
        let wrong_e = TRADE.replace("aggTrade", "trade");
        let e = error(&enveloped("btcusdt@aggTrade", &wrong_e));
        assert!(
            e.contains(r#"type "trade" where "aggTrade" belongs"#),
            "{e}"
        );
        assert!(error(&enveloped("btcusdt@trade", TRADE)).contains("a stream bml does not read"));
        assert!(error(&TRADE[..40]).contains("EOF"));
        assert!(error(&format!("{} x", enveloped("btcusdt@aggTrade", TRADE))).contains("trailing"));
    }

    #[test]
    fn reads_every_stream_kind() {
        let cases = [
            (
                "btcusdt@bookTicker",
                r#"{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
            ),
            (
                "btcusdt@markPrice@1s",
                r#"{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}"#,
            ),
            (
                "btcusdt@forceOrder",
                r#"{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}"#,
            ),
            (
                "btcusdt@kline_1m",
                r#"{"e":"kline","E":1638747660000,"s":"BTCUSDT","k":{"t":1638747600000,"T":1638747659999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}"#,
            ),
            (
                "btcusdt@depth@100ms",
                r#"{"e":"depthUpdate","E":123456789,"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"],["0.0027","0"]]}"#,
            ),
        ];
        for (stream, data) in cases {
            let (symbol, event) = message(&enveloped(stream, data))
                .unwrap()
                .map(|(_, s, e)| (s, e))
                .unwrap();
            assert_eq!(symbol, "BTCUSDT", "{stream}");
            if let Event::DepthDiff(d) = &event {
                assert_eq!(
                    (d.bids.len(), d.asks.len(), d.prev_final_update_id),
                    (1, 2, 149)
                );
            }
        }
        let sideways = cases[2].1.replace("SELL", "LEFT");
        let e = message(&enveloped("btcusdt@forceOrder", &sideways))
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither BUY nor SELL"), "{e}");
    }
}
