//! The market as the exchange's live streams tell it: every message of every
//! stream, minute by minute, in time order, cut from the same facts as the
//! REST and Vision sides (an aggTrade has the same id, price and time on all
//! three). Payloads are the shapes of `../shared/spec/binance.md`.
//!
//! Streams per symbol `s` (lower case): `s@bookTicker` (the Vision archive's
//! rows, read as the tape goes: [`BookTickers`]), `s@aggTrade`, `s@kline_1m` (the closed
//! kline, at the minute's end), `s@markPrice@1s` (the mark and index klines'
//! closes, each second; `r` is the rate the next settlement will fix, `T` its
//! time), `s@forceOrder` (liquidations, made up: at most one per second, see
//! [`liquidation`]).

use std::fmt::Write as _;
use std::sync::Arc;

use super::market::{Market, SymbolMarket};
use crate::event::{AggTrade, Kline, KlineKind};
use crate::time::MINUTE_MS;

/// Binance settles funding every 8 hours on the hour unless the market says
/// otherwise (the spec's default interval).
const DEFAULT_FUNDING_INTERVAL_MS: i64 = 8 * 60 * MINUTE_MS;

/// One message of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// When the exchange sends it (its `E`), ms.
    pub time: i64,
    /// The stream's name, e.g. `btcusdt@aggTrade` (shared by its messages).
    pub stream: Arc<str>,
    /// The payload, JSON text (the `data` of a combined stream's envelope).
    pub data: String,
}

/// The streams a subscription to `symbol` may name, by kind suffix.
pub const STREAM_KINDS: [&str; 5] = [
    "aggTrade",
    "kline_1m",
    "markPrice@1s",
    "forceOrder",
    "bookTicker",
];

/// Every message sent during the minute starting at `minute`, in no
/// particular order across streams ([`in_order`] sorts them).
pub fn minute(market: &Market, minute: i64) -> Vec<Message> {
    let mut out = Vec::new();
    for (symbol, m) in &market.symbols {
        let lower = symbol.to_lowercase();
        agg_trades(&mut out, symbol, &lower, m, minute);
        mark_prices(&mut out, symbol, &lower, m, minute);
        if let Some(k) = m.klines.get(&(KlineKind::Trade, minute)) {
            out.push(kline(symbol, &lower, k));
        }
    }
    out
}

/// Puts messages in time order (ties: stream name, then the order the
/// stream would send them: the sort is stable).
pub fn in_order(messages: &mut [Message]) {
    messages.sort_by(|a, b| (a.time, &a.stream).cmp(&(b.time, &b.stream)));
}

/// The first minute the market has a kline for.
pub fn first_minute(market: &Market) -> Option<i64> {
    market
        .symbols
        .values()
        .filter_map(|m| m.klines.keys().map(|(_, t)| *t).min())
        .min()
}

fn trades_in(m: &SymbolMarket, from: i64, to: i64) -> &[AggTrade] {
    let start = m.agg_trades.partition_point(|t| t.transact_time < from);
    let end = m.agg_trades.partition_point(|t| t.transact_time < to);
    &m.agg_trades[start..end]
}

fn agg_trades(out: &mut Vec<Message>, symbol: &str, lower: &str, m: &SymbolMarket, minute: i64) {
    let stream: Arc<str> = format!("{lower}@aggTrade").into();
    let liquidations: Arc<str> = format!("{lower}@forceOrder").into();
    let mut last_liquidation_second = i64::MIN;
    for t in trades_in(m, minute, minute + MINUTE_MS) {
        let data = format!(
            r#"{{"e":"aggTrade","E":{},"s":"{symbol}","a":{},"p":"{}","q":"{}","f":{},"l":{},"T":{},"m":{}}}"#,
            t.transact_time,
            t.agg_trade_id,
            t.price,
            t.quantity,
            t.first_trade_id,
            t.last_trade_id,
            t.transact_time,
            t.is_buyer_maker,
        );
        out.push(Message {
            time: t.transact_time,
            stream: stream.clone(),
            data,
        });
        let second = t.transact_time.div_euclid(1000);
        if second != last_liquidation_second {
            if let Some(liq) = liquidation(symbol, &liquidations, t) {
                last_liquidation_second = second;
                out.push(liq);
            }
        }
    }
}

/// A made-up liquidation riding on `trade`: one in 53 trades (by id) is
/// one, at most one per second per symbol (Binance pushes only the latest
/// liquidation of each second). A taker sell (`m` true) closes a long: SELL.
pub fn liquidation(symbol: &str, stream: &Arc<str>, trade: &AggTrade) -> Option<Message> {
    if !trade.agg_trade_id.is_multiple_of(53) {
        return None;
    }
    let side = if trade.is_buyer_maker { "SELL" } else { "BUY" };
    let (price, qty, time) = (trade.price, trade.quantity, trade.transact_time);
    let data = format!(
        r#"{{"e":"forceOrder","E":{time},"o":{{"s":"{symbol}","S":"{side}","o":"LIMIT","f":"IOC","q":"{qty}","p":"{price}","ap":"{price}","X":"FILLED","l":"{qty}","z":"{qty}","T":{time}}}}}"#
    );
    Some(Message {
        time,
        stream: stream.clone(),
        data,
    })
}

fn kline(symbol: &str, lower: &str, k: &Kline) -> Message {
    let mut data = format!(
        r#"{{"e":"kline","E":{},"s":"{symbol}","k":{{"t":{},"T":{},"s":"{symbol}","i":"1m","f":0,"L":0,"#,
        k.close_time + 1,
        k.open_time,
        k.close_time,
    );
    let _ = write!(
        data,
        r#""o":"{}","c":"{}","h":"{}","l":"{}","v":"{}","n":{},"x":true,"q":"{}","V":"{}","Q":"{}","B":"0"}}}}"#,
        k.open,
        k.close,
        k.high,
        k.low,
        k.volume,
        k.trade_count,
        k.quote_volume,
        k.taker_buy_volume,
        k.taker_buy_quote_volume,
    );
    Message {
        time: k.close_time + 1,
        stream: format!("{lower}@kline_1m").into(),
        data,
    }
}

/// Each second of the minute: the mark and index klines' closes, and the
/// funding the next settlement fixes (its rate when the market knows it).
fn mark_prices(out: &mut Vec<Message>, symbol: &str, lower: &str, m: &SymbolMarket, minute: i64) {
    let (Some(mark), Some(index)) = (
        m.klines.get(&(KlineKind::Mark, minute)),
        m.klines.get(&(KlineKind::Index, minute)),
    ) else {
        return;
    };
    let stream: Arc<str> = format!("{lower}@markPrice@1s").into();
    for second in 0..60 {
        let time = minute + second * 1000;
        let next = m.funding.iter().find(|f| f.funding_time > time);
        let (rate, next_time) = next.map_or_else(
            || {
                let t = (time.div_euclid(DEFAULT_FUNDING_INTERVAL_MS) + 1)
                    * DEFAULT_FUNDING_INTERVAL_MS;
                ("0.00010000".to_string(), t)
            },
            |f| (f.rate.to_string(), f.funding_time),
        );
        let (mark, index) = (mark.close, index.close);
        let data = format!(
            r#"{{"e":"markPriceUpdate","E":{time},"s":"{symbol}","p":"{mark}","i":"{index}","P":"{mark}","r":"{rate}","T":{next_time}}}"#
        );
        out.push(Message {
            time,
            stream: stream.clone(),
            data,
        });
    }
}

/// A symbol's bookTicker rows, read from its Vision archives as the tape
/// advances (a busy day holds millions: never all in memory). A thread
/// unpacks the archives in order and hands rows over a bounded channel.
pub struct BookTickers {
    symbol: String,
    stream: Arc<str>,
    rows: tokio::sync::mpsc::Receiver<Vec<String>>,
    /// A row read past the minute asked for, kept for the next one.
    ahead: Option<Vec<String>>,
}

impl BookTickers {
    /// Starts reading `archives` (bookTicker zips of `symbol`, in day order).
    pub fn open(symbol: &str, archives: Vec<std::path::PathBuf>) -> BookTickers {
        let (sender, rows) = tokio::sync::mpsc::channel(4096);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for path in archives {
                let Ok(file) = std::fs::File::open(&path) else {
                    continue;
                };
                let Ok(mut zip) = zip::ZipArchive::new(file) else {
                    continue;
                };
                let Ok(entry) = zip.by_index(0) else { continue };
                for line in std::io::BufReader::new(entry).lines() {
                    let Ok(line) = line else { break };
                    if line.is_empty() || line.starts_with(|c: char| c.is_ascii_alphabetic()) {
                        continue;
                    }
                    let fields: Vec<String> = line.split(',').map(str::to_owned).collect();
                    if fields.len() >= 7 && sender.blocking_send(fields).is_err() {
                        return;
                    }
                }
            }
        });
        BookTickers {
            symbol: symbol.to_owned(),
            stream: format!("{}@bookTicker", symbol.to_lowercase()).into(),
            rows,
            ahead: None,
        }
    }

    /// The updates of the minute starting at `minute` (by event time), as
    /// `@bookTicker` messages; earlier rows are skipped.
    pub async fn minute(&mut self, minute: i64, out: &mut Vec<Message>) {
        loop {
            let row = match self.ahead.take() {
                Some(row) => row,
                None => match self.rows.recv().await {
                    Some(row) => row,
                    None => return,
                },
            };
            let Ok(event_time) = row[6].parse::<i64>() else {
                continue;
            };
            if event_time >= minute + MINUTE_MS {
                self.ahead = Some(row);
                return;
            }
            if event_time < minute {
                continue;
            }
            let data = format!(
                r#"{{"e":"bookTicker","u":{},"E":{event_time},"T":{},"s":"{}","b":"{}","B":"{}","a":"{}","A":"{}"}}"#,
                row[0].parse::<u64>().unwrap_or_default(),
                row[5].parse::<i64>().unwrap_or_default(),
                self.symbol,
                row[1],
                row[2],
                row[3],
                row[4],
            );
            out.push(Message {
                time: event_time,
                stream: self.stream.clone(),
                data,
            });
        }
    }
}
