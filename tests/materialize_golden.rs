//! Golden values from a real archive: the first three minutes of the real
//! `BTCUSD_PERP-aggTrades-2026-05-08.zip` (../shared/data), computed here by hand
//! from its CSV rows with plain fixed-point integers, against every one of the 58
//! columns `bml materialize` writes, read back with pyarrow.
//!
//! No real USD-M daily kline archive exists in ../shared/data, so the test
//! appends the minute's klines itself (trade klines from the same CSV rows, as
//! Binance derives them; mark and index klines at fixed prices) as REST records.

#![recursion_limit = "256"]

mod support;

use std::path::Path;
use std::str::FromStr;

use bml::event::{Decimal, Event, Kline, KlineKind, Record, Source};
use bml::eventlog::EventLog;
use serde_json::Value;
use support::{bml, text};

/// 2026-05-08T00:00Z.
const HOUR: i64 = 1_778_198_400_000;
const MINUTES: i64 = 3;
/// Fixed-point scale for prices and quantities (they have at most 8 decimals).
const SCALE: i128 = 100_000_000;

fn fixed(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 8, "{text}");
    let frac_value: i128 = format!("{frac:0<8}").parse().unwrap();
    int.parse::<i128>().unwrap() * SCALE + frac_value
}

/// A fixed-point value with `scale` decimals as exact decimal text.
fn text_of(value: i128, scale: u32) -> String {
    let unit = 10i128.pow(scale);
    let digits = format!(
        "{}.{:0width$}",
        value / unit,
        value % unit,
        width = scale as usize
    );
    digits
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

struct Trade {
    id: u64,
    price: i128,
    qty: i128,
    trades: i64,
    time: i64,
    buyer_maker: bool,
}

/// The archive's rows of minute `m` of the hour.
fn minute_trades(csv: &str, m: i64) -> Vec<Trade> {
    let start = HOUR + m * 60_000;
    let mut trades: Vec<Trade> = support::data_rows(csv)
        .into_iter()
        .map(|row| {
            let f: Vec<&str> = row.split(',').collect();
            Trade {
                id: f[0].parse().unwrap(),
                price: fixed(f[1]),
                qty: fixed(f[2]),
                trades: f[4].parse::<i64>().unwrap() - f[3].parse::<i64>().unwrap() + 1,
                time: f[5].parse().unwrap(),
                buyer_maker: f[6] == "true",
            }
        })
        .filter(|t| (start..start + 60_000).contains(&t.time))
        .collect();
    trades.sort_by_key(|t| (t.time, t.id));
    trades
}

fn kline(kind: KlineKind, m: i64, ohlc: [i128; 4], vol: [i128; 4], count: u64) -> Event {
    let d = |v: i128, scale: u32| Decimal::from_str(&text_of(v, scale)).unwrap();
    Event::Kline(Kline {
        kind,
        interval_ms: 60_000,
        open_time: HOUR + m * 60_000,
        open: d(ohlc[0], 8),
        high: d(ohlc[1], 8),
        low: d(ohlc[2], 8),
        close: d(ohlc[3], 8),
        volume: d(vol[0], 8),
        close_time: HOUR + m * 60_000 + 59_999,
        quote_volume: d(vol[1], 16),
        trade_count: count,
        taker_buy_volume: d(vol[2], 8),
        taker_buy_quote_volume: d(vol[3], 16),
        closed: true,
    })
}

const READ_BACK: &str = r#"
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
rows = []
for r in t.to_pylist():
    rows.append({k: (int(v.timestamp() * 1000) if hasattr(v, "timestamp") else v) for k, v in r.items()})
print(json.dumps({"columns": t.column_names, "rows": rows}))
"#;

#[test]
fn every_column_of_three_real_minutes_matches_a_hand_computation() {
    let samples =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance/vision/format_refs");
    let archive = samples.join("BTCUSD_PERP-aggTrades-2026-05-08.zip");
    let csv = support::csv_of(&archive);
    let data = tempfile::tempdir().unwrap();
    let out = bml(
        data.path(),
        &[
            "ingest",
            "vision",
            "--symbol",
            "BTCUSD_PERP",
            "--start",
            "2026-05-08",
            "--kinds",
            "aggTrades",
            "--from-dir",
            samples.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let mut expected: Vec<serde_json::Map<String, Value>> = Vec::new();
    let mut klines = Vec::new();
    for m in 0..MINUTES {
        let trades = minute_trades(&csv, m);
        assert!(trades.len() > 10, "minute {m} has trades");
        let open = trades[0].price;
        let close = trades[trades.len() - 1].price;
        let high = trades.iter().map(|t| t.price).max().unwrap();
        let low = trades.iter().map(|t| t.price).min().unwrap();
        let qty: i128 = trades.iter().map(|t| t.qty).sum();
        let notional: i128 = trades.iter().map(|t| t.price * t.qty).sum();
        let buys: Vec<&Trade> = trades.iter().filter(|t| !t.buyer_maker).collect();
        let sells: Vec<&Trade> = trades.iter().filter(|t| t.buyer_maker).collect();
        let buy_qty: i128 = buys.iter().map(|t| t.qty).sum();
        let sell_qty: i128 = sells.iter().map(|t| t.qty).sum();
        let buy_notional: i128 = buys.iter().map(|t| t.price * t.qty).sum();
        let count: i64 = trades.iter().map(|t| t.trades).sum();
        let whale = |t: &Trade| t.price * t.qty >= 100_000 * SCALE * SCALE;
        let retail = |t: &Trade| t.price * t.qty <= 1_000 * SCALE * SCALE;
        let f = |v: i128| v as f64 / SCALE as f64;
        let f2 = |v: i128| text_of(v, 16).parse::<f64>().unwrap();
        let realized: f64 = trades
            .windows(2)
            .map(|w| (f(w[1].price) / f(w[0].price)).ln().powi(2))
            .sum::<f64>()
            .sqrt();
        klines.push(kline(
            KlineKind::Trade,
            m,
            [open, high, low, close],
            [qty, notional, buy_qty, buy_notional],
            count as u64,
        ));
        let mark = [
            fixed("80000.5"),
            fixed("80010.5"),
            fixed("79990.5"),
            fixed("80001.5"),
        ];
        let index = [
            fixed("79999.5"),
            fixed("80009.5"),
            fixed("79989.5"),
            fixed("80000.25"),
        ];
        klines.push(kline(KlineKind::Mark, m, mark, [0; 4], 0));
        klines.push(kline(KlineKind::Index, m, index, [0; 4], 0));
        let row = serde_json::json!({
            "event_time": null, "transact_time": trades.last().unwrap().time,
            "arrival_time": null, "latency_engine": null, "latency_network": null,
            "update_id_start": null, "update_id_end": null,
            "timestamp": HOUR + m * 60_000,
            "open": f(open), "high": f(high), "low": f(low), "close": f(close),
            "vwap_1m": f2(notional) / f(qty),
            "micro_price_close": null,
            "volume_btc": f(qty), "volume_usdt": f2(notional), "trade_count": count,
            "avg_trade_size_btc": f(qty) / count as f64,
            "max_trade_size_btc": f(trades.iter().map(|t| t.qty).max().unwrap()),
            "taker_buy_vol_btc": f(buy_qty), "taker_buy_vol_usdt": f2(buy_notional),
            "net_taker_vol_btc": f(buy_qty - sell_qty),
            "count_buy_trades": buys.iter().map(|t| t.trades).sum::<i64>(),
            "count_sell_trades": sells.iter().map(|t| t.trades).sum::<i64>(),
            "taker_buy_ratio": f(buy_qty) / f(qty),
            "vol_buy_whale_btc": f(buys.iter().filter(|t| whale(t)).map(|t| t.qty).sum()),
            "vol_sell_whale_btc": f(sells.iter().filter(|t| whale(t)).map(|t| t.qty).sum()),
            "vol_buy_retail_btc": f(buys.iter().filter(|t| retail(t)).map(|t| t.qty).sum()),
            "vol_sell_retail_btc": f(sells.iter().filter(|t| retail(t)).map(|t| t.qty).sum()),
            "whale_trade_count": trades.iter().filter(|t| whale(t)).count(),
            "realized_vol_1m": realized,
            "liq_long_vol_usdt": null, "liq_short_vol_usdt": null, "liq_long_count": null,
            "liq_short_count": null, "liq_avg_fill_price": null, "liq_unfilled_ratio": null,
            "avg_spread_usdt": null, "bid_ask_imbalance": null, "avg_bid_depth": null,
            "avg_ask_depth": null, "spread_pct": null, "price_impact_100k": null,
            "oi_contracts": null, "oi_value_usdt": null, "top_trader_ls_ratio_acct": null,
            "global_ls_ratio_acct": null, "ls_ratio_divergence": null,
            "top_trader_long_pct": null, "top_trader_short_pct": null,
            "mark_price_open": 80000.5, "mark_price_close": 80001.5,
            "index_price_open": 79999.5, "index_price_close": 80000.25,
            "premium_index": null, "funding_rate": null, "predicted_funding": null,
            "next_funding_time": null,
        });
        expected.push(row.as_object().unwrap().clone());
    }
    let mut log = EventLog::open(data.path()).unwrap();
    log.push(&Record {
        symbol: "BTCUSD_PERP".into(),
        source: Source::Rest {
            endpoint: "/fapi/v1/klines".into(),
        },
        received_ns: (HOUR + 3_600_000) * 1_000_000,
        events: klines,
    })
    .unwrap();
    log.commit().unwrap();
    drop(log);

    let out = bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let part = bml::lake::partition_path(&data.path().join("lake"), "BTCUSD_PERP", HOUR);
    let read = support::python()
        .args(["-c", READ_BACK])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let seen: Value = serde_json::from_slice(&read.stdout).unwrap();
    let columns: Vec<&str> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(columns.len(), 58);
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        MINUTES as usize,
        "only the minutes with all three klines"
    );
    for (m, (row, want)) in rows.iter().zip(&expected).enumerate() {
        for column in &columns {
            let (got, want) = (&row[*column], &want[*column]);
            let close = match (got.as_f64(), want.as_f64()) {
                (Some(g), Some(w)) => g == w || ((g - w) / w).abs() < 1e-12,
                _ => got == want,
            };
            assert!(close, "minute {m}, {column}: got {got}, computed {want}");
        }
    }
}
