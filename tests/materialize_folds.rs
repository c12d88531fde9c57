//! The per-minute folds against values computed independently: the aggTrade
//! fold by hand for a small case and with plain fixed-point integers straight
//! from the CSV text of the real aggTrades sample in ../shared/data; both folds
//! for independence from arrival order.

mod support;

use std::path::Path;
use std::str::FromStr;

use bml::event::{AggTrade, BookTicker, Decimal, Timed, VisionKind};
use bml::materialize::book::BookMinute;
use bml::materialize::trades::TradeMinute;
use bml::sources::vision::split::Lines;

fn trade(
    id: u64,
    t: i64,
    price: &str,
    qty: &str,
    first: u64,
    last: u64,
    buyer_maker: bool,
) -> AggTrade {
    AggTrade {
        agg_trade_id: id,
        price: Decimal::from_str(price).unwrap(),
        quantity: Decimal::from_str(qty).unwrap(),
        first_trade_id: first,
        last_trade_id: last,
        transact_time: t,
        is_buyer_maker: buyer_maker,
    }
}

#[test]
fn a_hand_computed_minute() {
    let trades = [
        trade(1, 1000, "100000.0", "1.000", 1, 3, false), // buy, notional 100 000: whale
        trade(2, 2000, "100.0", "5.000", 4, 4, true),     // sell, notional 500: retail
        trade(3, 3000, "101.0", "0.010", 5, 6, false),    // buy, notional 1.01: retail
    ];
    let m = TradeMinute::fold(&trades);
    assert_eq!(m.agg_trades, 3);
    assert_eq!(m.last_transact_time, Some(3000));
    assert_eq!(m.quantity.to_f64(), 6.01);
    assert_eq!(m.notional.to_f64(), 100501.01);
    assert_eq!(
        (m.buy_quantity.to_f64(), m.sell_quantity.to_f64()),
        (1.01, 5.0)
    );
    assert_eq!(m.max_quantity.unwrap().to_string(), "5.000");
    assert_eq!((m.count_buy_trades, m.count_sell_trades), (5, 1));
    assert_eq!(
        (
            m.whale_buy_quantity.to_f64(),
            m.whale_sell_quantity.to_f64()
        ),
        (1.0, 0.0)
    );
    assert_eq!(
        (
            m.retail_buy_quantity.to_f64(),
            m.retail_sell_quantity.to_f64()
        ),
        (0.01, 5.0)
    );
    assert_eq!(m.whale_trades, 1);
    assert_eq!(m.vwap(0.0), 100501.01 / 6.01);
    assert_eq!(m.net_taker_volume(), -3.99);
    assert_eq!(m.taker_buy_ratio(), Some(1.01 / 6.01));
    let expected_vol =
        ((100.0f64 / 100000.0).ln().powi(2) + (101.0f64 / 100.0).ln().powi(2)).sqrt();
    assert_eq!(m.realized_vol, expected_vol);

    let empty = TradeMinute::fold(&[]);
    assert_eq!(
        (
            empty.vwap(42.5),
            empty.taker_buy_ratio(),
            empty.realized_vol
        ),
        (42.5, None, 0.0)
    );
}

#[test]
fn the_first_minute_of_the_real_sample_matches_fixed_point_arithmetic() {
    let zip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/binance/vision/format_refs/BTCUSD_PERP-aggTrades-2026-05-08.zip");
    let csv = support::csv_of(&zip);
    let start = 1_778_198_400_000i64;
    let rows: Vec<Vec<&str>> = support::data_rows(&csv)
        .into_iter()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| (start..start + 60_000).contains(&f[5].parse::<i64>().unwrap()))
        .collect();
    assert!(rows.len() > 50, "a busy minute");

    // Independent arithmetic: this file has one decimal in price and quantity,
    // so tenths as integers, notional in hundredths.
    let tenths = |s: &str| -> i128 { s.replace('.', "").parse().unwrap() };
    let qty: i128 = rows.iter().map(|f| tenths(f[2])).sum();
    let notional: i128 = rows.iter().map(|f| tenths(f[1]) * tenths(f[2])).sum();
    let buys: Vec<&Vec<&str>> = rows.iter().filter(|f| f[6] == "false").collect();
    let count_buy: u64 = buys
        .iter()
        .map(|f| f[4].parse::<u64>().unwrap() - f[3].parse::<u64>().unwrap() + 1)
        .sum();
    let whales = rows
        .iter()
        .filter(|f| tenths(f[1]) * tenths(f[2]) >= 100_000 * 100)
        .count() as u64;
    let max_qty = rows.iter().map(|f| tenths(f[2])).max().unwrap();

    let trades: Vec<AggTrade> = Lines::new(csv.as_bytes(), 1)
        .skip(1)
        .map(|line| {
            match bml::sources::vision::rows::parse_row(VisionKind::AggTrades, &line).unwrap() {
                bml::event::Event::AggTrade(t) => t,
                other => panic!("{other:?}"),
            }
        })
        .filter(|t| (start..start + 60_000).contains(&t.transact_time))
        .collect();
    let m = TradeMinute::fold(&trades);
    assert_eq!(m.agg_trades as usize, rows.len());
    assert_eq!(m.quantity.to_f64(), qty as f64 / 10.0);
    assert_eq!(
        m.notional.to_f64(),
        format!("{}.{:02}", notional / 100, notional % 100)
            .parse::<f64>()
            .unwrap()
    );
    assert_eq!(m.count_buy_trades, count_buy);
    assert_eq!(m.whale_trades, whales);
    assert_eq!(tenths(&m.max_quantity.unwrap().to_string()), max_qty);
    assert_eq!(
        m.last_transact_time,
        rows.iter().map(|f| f[5].parse::<i64>().unwrap()).max()
    );
    let vwap = m.vwap(0.0);
    let (low, high) = rows
        .iter()
        .map(|f| f[1].parse::<f64>().unwrap())
        .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p), h.max(p)));
    assert!(
        low <= vwap && vwap <= high,
        "vwap {vwap} outside [{low}, {high}]"
    );
}

#[test]
fn any_arrival_order_folds_to_the_same_minute() {
    let mut rng = fastrand::Rng::with_seed(11);
    let trades: Vec<AggTrade> = (0..500u64)
        .map(|i| {
            let price = format!("{}.{}", 60_000 + rng.u32(0..50), rng.u32(0..10));
            let qty = format!("{}.{:03}", rng.u32(0..3), rng.u32(1..1000));
            trade(
                1000 + i,
                1_000 + (i as i64) * 100 + rng.i64(0..3),
                &price,
                &qty,
                i * 10,
                i * 10 + rng.u64(0..4),
                rng.bool(),
            )
        })
        .collect();
    let mut sorted = trades.clone();
    sorted.sort_by_key(|t| (t.transact_time, t.agg_trade_id));
    let reference = TradeMinute::fold(&sorted);
    for _ in 0..20 {
        let mut shuffled = trades.clone();
        rng.shuffle(&mut shuffled);
        shuffled.sort_by_key(|t| (t.transact_time, t.agg_trade_id));
        assert_eq!(TradeMinute::fold(&shuffled), reference);
    }
}

#[test]
fn any_arrival_order_folds_to_the_same_book_minute() {
    let mut rng = fastrand::Rng::with_seed(12);
    let d = |s: String| Decimal::from_str(&s).unwrap();
    let updates: Vec<BookTicker> = (0..700u64)
        .map(|i| {
            let bid = 60_000 * 10 + rng.u64(0..30);
            BookTicker {
                update_id: 3_000_000 + i * 7,
                bid_price: d(format!("{}.{}", bid / 10, bid % 10)),
                bid_qty: d(format!("{}.{:03}", rng.u32(0..20), rng.u32(0..1000))),
                ask_price: d(format!("{}.{}", (bid + 1) / 10, (bid + 1) % 10)),
                ask_qty: d(format!("{}.{:03}", rng.u32(0..20), rng.u32(0..1000))),
                transaction_time: if i % 5 == 0 {
                    0
                } else {
                    1_000 + (i as i64) * 80
                },
                event_time: 1_001 + (i as i64) * 80,
            }
        })
        .collect();
    let order = |u: &BookTicker| (u.time(), u.update_id);
    let mut sorted = updates.clone();
    sorted.sort_by_key(order);
    let reference = BookMinute::fold(&sorted).unwrap();
    for _ in 0..20 {
        let mut shuffled = updates.clone();
        rng.shuffle(&mut shuffled);
        shuffled.sort_by_key(order);
        assert_eq!(BookMinute::fold(&shuffled).unwrap(), reference);
    }
}
