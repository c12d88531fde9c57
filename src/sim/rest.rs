//! The REST answers of the simulated exchange: Binance's paths, parameters,
//! limits, weights and JSON shapes (`spec/binance.md`), cut from the [`Market`].

use std::collections::HashMap;

use serde_json::{json, Value};

use super::market::{Market, SymbolMarket};
use super::{Behaviour, WindowEnd};
use crate::binance;
use crate::event::{Decimal, Kline, KlineKind};
use crate::time::HOUR_MS;

/// A Binance error answer: HTTP 400 with `{"code", "msg"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Binance's error code (negative).
    pub code: i32,
    /// Its message.
    pub msg: String,
}

fn error(code: i32, msg: impl Into<String>) -> ApiError {
    ApiError {
        code,
        msg: msg.into(),
    }
}

/// Query parameters.
pub type Params = HashMap<String, String>;

/// The request-weight budget, as `exchangeInfo` states it.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Weight per interval.
    pub limit: u32,
    /// `MINUTE` or `SECOND`.
    pub interval: &'static str,
    /// Interval length in those units.
    pub interval_num: i64,
}

/// The endpoints that share the funding budget (500 requests per 5 minutes per
/// IP, on top of the weight budget).
pub const FUNDING_PATHS: [&str; 2] = ["/fapi/v1/fundingRate", "/fapi/v1/fundingInfo"];

/// The REST endpoints the simulator knows, with their request weight; `None`
/// for an unknown path.
pub fn weight(path: &str, params: &Params) -> Option<u32> {
    let kline_weight =
        || crate::binance::kline_weight(params.get("limit").and_then(|l| l.parse::<u32>().ok()));
    Some(match path {
        "/fapi/v1/klines"
        | "/fapi/v1/markPriceKlines"
        | "/fapi/v1/indexPriceKlines"
        | "/fapi/v1/premiumIndexKlines" => kline_weight(),
        "/fapi/v1/aggTrades" => 20,
        "/fapi/v1/premiumIndex" | "/fapi/v1/openInterest" => 1,
        "/fapi/v1/ticker/bookTicker" => 2,
        "/fapi/v1/depth" => match params.get("limit").map(String::as_str) {
            Some("100") => 5,
            Some("500") | None => 10,
            Some("1000") => 20,
            _ => 2,
        },
        "/fapi/v1/exchangeInfo" => 1,
        // Its own budget instead (`FUNDING_PATHS`), not the weight.
        "/fapi/v1/fundingRate" | "/fapi/v1/fundingInfo" => 0,
        // Weight 0 per the docs.
        "/futures/data/openInterestHist"
        | "/futures/data/topLongShortAccountRatio"
        | "/futures/data/topLongShortPositionRatio"
        | "/futures/data/globalLongShortAccountRatio" => 0,
        _ => return None,
    })
}

/// The answer to `path?params` when the simulated time is `now_ms`.
pub fn answer(
    market: &Market,
    budget: &Budget,
    behaviour: &Behaviour,
    path: &str,
    params: &Params,
    now_ms: i64,
) -> Result<Value, ApiError> {
    if path == "/fapi/v1/exchangeInfo" {
        return Ok(exchange_info(market, budget, now_ms));
    }
    if path == "/fapi/v1/fundingInfo" {
        return Ok(funding_info(market));
    }
    let symbol_param = if path == "/fapi/v1/indexPriceKlines" {
        "pair"
    } else {
        "symbol"
    };
    let symbol = params.get(symbol_param).ok_or_else(|| {
        error(
            -1102,
            format!("Mandatory parameter '{symbol_param}' was not sent"),
        )
    })?;
    let m = market
        .symbols
        .get(symbol)
        .ok_or_else(|| error(-1121, "Invalid symbol."))?;
    let q = Query { params };
    match path {
        "/fapi/v1/klines" => klines(m, KlineKind::Trade, &q, now_ms),
        "/fapi/v1/markPriceKlines" => klines(m, KlineKind::Mark, &q, now_ms),
        "/fapi/v1/indexPriceKlines" => klines(m, KlineKind::Index, &q, now_ms),
        "/fapi/v1/premiumIndexKlines" => klines(m, KlineKind::Premium, &q, now_ms),
        "/fapi/v1/aggTrades" => agg_trades(m, &q, behaviour, now_ms),
        "/fapi/v1/fundingRate" => funding(m, symbol, &q, now_ms),
        "/fapi/v1/premiumIndex" => Ok(premium_index(m, symbol, now_ms)),
        "/fapi/v1/openInterest" => Ok(open_interest(m, symbol, now_ms)),
        "/fapi/v1/ticker/bookTicker" => Ok(book_ticker(m, symbol, now_ms)),
        "/fapi/v1/depth" => depth(market, symbol, &q, now_ms),
        _ => stats(m, symbol, path, &q, behaviour, now_ms),
    }
}

/// Typed access to the query parameters, with Binance's errors.
struct Query<'a> {
    params: &'a Params,
}

impl Query<'_> {
    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.params
            .get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    error(
                        -1100,
                        format!("Illegal characters found in parameter '{name}'"),
                    )
                })
            })
            .transpose()
    }

    /// [`window`] by the `startTime` and `endTime` parameters.
    fn window<'i, T>(
        &self,
        items: &'i [T],
        time: impl Fn(&T) -> i64,
        limit: usize,
    ) -> Result<&'i [T], ApiError> {
        Ok(window(
            items,
            time,
            self.int("startTime")?,
            self.int("endTime")?,
            limit,
        ))
    }

    /// `limit`, defaulted and checked against its maximum.
    fn limit(&self, default: i64, max: i64) -> Result<usize, ApiError> {
        let limit = self.int("limit")?.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            return Err(error(-1130, format!("Invalid limit: must be 1..={max}")));
        }
        Ok(limit as usize)
    }
}

/// The first `limit` items with time in `[start, end]`; with only an end, the
/// last `limit` up to it; with neither, the latest `limit`.
fn window<T>(
    items: &[T],
    time: impl Fn(&T) -> i64,
    start: Option<i64>,
    end: Option<i64>,
    limit: usize,
) -> &[T] {
    let from = start.map_or(0, |s| items.partition_point(|i| time(i) < s));
    let to = end.map_or(items.len(), |e| items.partition_point(|i| time(i) <= e));
    let to = to.max(from);
    if start.is_some() {
        &items[from..to.min(from + limit)]
    } else {
        &items[to.saturating_sub(limit).max(from)..to]
    }
}

/// Nothing is served from after the exchange's clock (a live-clock market
/// holds the rest of the day): klines up to the one open now, trades,
/// settlements and statistics up to now.
fn klines(m: &SymbolMarket, kind: KlineKind, q: &Query, now_ms: i64) -> Result<Value, ApiError> {
    if q.params.get("interval").map(String::as_str) != Some("1m") {
        return Err(error(
            -1120,
            "Invalid interval: the simulator serves 1m only.",
        ));
    }
    let limit = q.limit(500, 1500)?;
    let series: Vec<&Kline> = m
        .klines
        .range((kind, i64::MIN)..=(kind, now_ms))
        .map(|(_, k)| k)
        .collect();
    let picked = q.window(&series, |k| k.open_time, limit)?;
    Ok(Value::Array(
        picked
            .iter()
            .map(|k| {
                json!([
                    k.open_time,
                    k.open.to_string(),
                    k.high.to_string(),
                    k.low.to_string(),
                    k.close.to_string(),
                    k.volume.to_string(),
                    k.close_time,
                    k.quote_volume.to_string(),
                    k.trade_count,
                    k.taker_buy_volume.to_string(),
                    k.taker_buy_quote_volume.to_string(),
                    "0"
                ])
            })
            .collect(),
    ))
}

fn agg_trades(
    m: &SymbolMarket,
    q: &Query,
    behaviour: &Behaviour,
    now_ms: i64,
) -> Result<Value, ApiError> {
    let limit = q.limit(500, 1000)?;
    let (start, end, from_id) = (q.int("startTime")?, q.int("endTime")?, q.int("fromId")?);
    let trades = &m.agg_trades[..m.agg_trades.partition_point(|t| t.transact_time <= now_ms)];
    let picked = match (from_id, start, end) {
        (Some(id), _, _) => {
            let from = trades.partition_point(|t| (t.agg_trade_id as i64) < id);
            &trades[from..(from + limit).min(trades.len())]
        }
        (None, Some(s), Some(e)) => {
            if e - s > HOUR_MS || e < s {
                return Err(error(
                    -1127,
                    "More than 1 hours between startTime and endTime.",
                ));
            }
            let all = window(trades, |t| t.transact_time, Some(s), Some(e), trades.len());
            match behaviour.agg_trades_window_end {
                WindowEnd::First => &all[..all.len().min(limit)],
                WindowEnd::Last => &all[all.len().saturating_sub(limit)..],
            }
        }
        (None, None, None) => window(trades, |t| t.transact_time, None, None, limit),
        (None, Some(s), None) if !behaviour.refuse_start_without_end => {
            window(trades, |t| t.transact_time, Some(s), None, limit)
        }
        (None, None, Some(e)) if !behaviour.refuse_start_without_end => {
            window(trades, |t| t.transact_time, None, Some(e), limit)
        }
        _ => return Err(error(-1128, "startTime and endTime must be sent together.")),
    };
    if let Some(horizon) = behaviour.agg_trades_horizon_ms {
        if picked
            .first()
            .is_some_and(|t| t.transact_time < now_ms - horizon)
        {
            return Err(error(
                -4166,
                "aggTrades this old are not served (the simulator's assumed horizon).",
            ));
        }
    }
    Ok(Value::Array(
        picked
            .iter()
            .map(|t| {
                json!({
                    "a": t.agg_trade_id,
                    "p": t.price.to_string(),
                    "q": t.quantity.to_string(),
                    "f": t.first_trade_id,
                    "l": t.last_trade_id,
                    "T": t.transact_time,
                    "m": t.is_buyer_maker,
                })
            })
            .collect(),
    ))
}

fn funding(m: &SymbolMarket, symbol: &str, q: &Query, now_ms: i64) -> Result<Value, ApiError> {
    let limit = q.limit(100, 1000)?;
    let settled = &m.funding[..m.funding.partition_point(|f| f.funding_time <= now_ms)];
    let picked = q.window(settled, |f| f.funding_time, limit)?;
    Ok(Value::Array(
        picked
            .iter()
            .map(|f| {
                json!({
                    "symbol": symbol,
                    "fundingRate": f.rate.to_string(),
                    "fundingTime": f.funding_time,
                    "markPrice": f.mark_price.map(|p| p.to_string()).unwrap_or_default(),
                })
            })
            .collect(),
    ))
}

/// openInterestHist and the three ratio series, cut from the metrics points.
fn stats(
    m: &SymbolMarket,
    symbol: &str,
    path: &str,
    q: &Query,
    behaviour: &Behaviour,
    now_ms: i64,
) -> Result<Value, ApiError> {
    if q.params.get("period").map(String::as_str) != Some("5m") {
        return Err(error(
            -1120,
            "Invalid period: the simulator serves 5m only.",
        ));
    }
    let limit = q.limit(30, 500)?;
    let start = q
        .int("startTime")?
        .map(|s| s.max(now_ms - binance::STATISTICS_HORIZON_MS));
    let end = q.int("endTime")?;
    let horizon = m
        .metrics
        .partition_point(|p| p.create_time < now_ms - binance::STATISTICS_HORIZON_MS);
    let taken = m.metrics.partition_point(|p| p.create_time <= now_ms);
    let points = window(
        &m.metrics[horizon..taken.max(horizon)],
        |p| p.create_time,
        start,
        end,
        limit,
    );
    // The docs show the timestamp as text, recordings as a number.
    let stamp = |time: i64| {
        if behaviour.stats_timestamp_text {
            json!(time.to_string())
        } else {
            json!(time)
        }
    };
    let ratio = |r: Option<Decimal>, p_time: i64| {
        r.map(|r| {
            let value = r.to_f64();
            json!({
                "symbol": symbol,
                "longShortRatio": r.to_string(),
                "longAccount": format!("{:.4}", value / (1.0 + value)),
                "shortAccount": format!("{:.4}", 1.0 / (1.0 + value)),
                "timestamp": stamp(p_time),
            })
        })
    };
    let rows = points.iter().filter_map(|p| match path {
        "/futures/data/openInterestHist" => Some(json!({
            "symbol": symbol,
            "sumOpenInterest": p.sum_open_interest?.to_string(),
            "sumOpenInterestValue": p.sum_open_interest_value?.to_string(),
            "timestamp": stamp(p.create_time),
        })),
        "/futures/data/topLongShortAccountRatio" => {
            ratio(p.count_toptrader_long_short_ratio, p.create_time)
        }
        "/futures/data/topLongShortPositionRatio" => {
            ratio(p.sum_toptrader_long_short_ratio, p.create_time)
        }
        _ => ratio(p.count_long_short_ratio, p.create_time),
    });
    Ok(Value::Array(rows.collect()))
}

/// The latest kline of `kind` that opened before `now_ms`.
fn latest(m: &SymbolMarket, kind: KlineKind, now_ms: i64) -> Option<&Kline> {
    m.klines
        .range((kind, i64::MIN)..(kind, now_ms))
        .next_back()
        .map(|(_, k)| k)
}

/// The mark price state at "now": the latest mark and index closes, the last
/// settled rate, the next 8-hourly settlement.
fn premium_index(m: &SymbolMarket, symbol: &str, now_ms: i64) -> Value {
    let close = |kind| latest(m, kind, now_ms).map_or(Decimal::ZERO, |k| k.close);
    let index = close(KlineKind::Index);
    let funding = m.funding.iter().rev().find(|f| f.funding_time <= now_ms);
    let period = 8 * HOUR_MS;
    json!({
        "symbol": symbol,
        "markPrice": close(KlineKind::Mark).to_string(),
        "indexPrice": index.to_string(),
        "estimatedSettlePrice": index.to_string(),
        "lastFundingRate": funding.map_or("0.00000000".to_string(), |f| f.rate.to_string()),
        "interestRate": "0.00010000",
        "nextFundingTime": (now_ms.div_euclid(period) + 1) * period,
        "time": now_ms,
    })
}

/// Open interest at "now": the latest metrics point.
fn open_interest(m: &SymbolMarket, symbol: &str, now_ms: i64) -> Value {
    let point = m.metrics.iter().rev().find(|p| p.create_time <= now_ms);
    json!({
        "openInterest": point.and_then(|p| p.sum_open_interest).unwrap_or(Decimal::ZERO).to_string(),
        "symbol": symbol,
        "time": now_ms,
    })
}

/// The best bid and ask at "now": around the last trade (one tick wide, the
/// last trade's size on each side), updated with each trade.
fn book_ticker(m: &SymbolMarket, symbol: &str, now_ms: i64) -> Value {
    let last = m.agg_trades.iter().rev().find(|t| t.transact_time < now_ms);
    let (bid, ask, qty, id) = match last {
        Some(t) => {
            let tick = Decimal::new(t.price.mantissa() + 1, t.price.scale()).unwrap_or(t.price);
            (t.price, tick, t.quantity, t.agg_trade_id)
        }
        None => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, 0),
    };
    json!({
        "symbol": symbol,
        "bidPrice": bid.to_string(),
        "bidQty": qty.to_string(),
        "askPrice": ask.to_string(),
        "askQty": qty.to_string(),
        "time": now_ms,
        "lastUpdateId": id,
    })
}

/// The simulated order book at "now" (`super::depth`).
fn depth(market: &Market, symbol: &str, q: &Query, now_ms: i64) -> Result<Value, ApiError> {
    let limit = q.int("limit")?.unwrap_or(500);
    if ![5, 10, 20, 50, 100, 500, 1000].contains(&limit) {
        return Err(error(
            -1130,
            "Invalid limit: one of 5, 10, 20, 50, 100, 500, 1000",
        ));
    }
    let index = market.symbols.keys().position(|s| s == symbol).unwrap_or(0);
    let m = &market.symbols[symbol];
    let book = super::depth::Book::new(symbol, m, index, market.symbols.len());
    Ok(book.snapshot(now_ms, limit))
}

/// `/fapi/v1/fundingInfo`: symbols whose funding differs from the default; the
/// simulator's all settle every 8 hours, so it lists none.
fn funding_info(_market: &Market) -> Value {
    json!([])
}

fn exchange_info(market: &Market, budget: &Budget, now_ms: i64) -> Value {
    json!({
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": budget.interval,
                "intervalNum": budget.interval_num,
                "limit": budget.limit,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ],
        "symbols": market.symbols.iter()
            .map(|(s, m)| (s.clone(), m.klines.values().map(|k| k.open_time).min()))
            .chain(market.capture.iter().flat_map(|c| c.symbols()).map(|s| (s, None)))
            .map(|(s, first)| json!({
                "symbol": s, "pair": s, "contractType": "PERPETUAL", "status": "TRADING",
                // Binance's perpetuals carry this far-future delivery date.
                "deliveryDate": 4_133_404_800_000_i64,
                "onboardDate": first.unwrap_or(now_ms),
            }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Klines weigh by `limit`: [1, 100) → 1, [100, 500) → 2, [500, 1000] → 5,
    /// above → 10 (the default, 500, weighs 5).
    #[test]
    fn kline_weights_follow_the_limit_boundaries() {
        let weight_at = |limit: Option<&str>| {
            let params: Params = limit
                .map(|l| [("limit".to_string(), l.to_string())].into())
                .unwrap_or_default();
            weight("/fapi/v1/markPriceKlines", &params)
        };
        for (limit, expected) in [
            (Some("1"), 1),
            (Some("99"), 1),
            (Some("100"), 2),
            (Some("499"), 2),
            (Some("500"), 5),
            (Some("1000"), 5),
            (Some("1001"), 10),
            (Some("1500"), 10),
            (None, 5),
        ] {
            assert_eq!(weight_at(limit), Some(expected), "limit {limit:?}");
        }
    }
}
