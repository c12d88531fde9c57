//! `build_hour` on a generated Vision hour (parsed straight from its CSVs) and
//! on hand-made facts for each fill rule: HARD_REQUIRED gate, book forward fill
//! (≤ 60 min), funding carry (≤ 8 h 1 min), liquidation coverage, invariants,
//! and independence from input order.

mod support;

use std::str::FromStr;

use bml::event::{Decimal, KlineKind, Liquidation, Side};
use bml::materialize::hour::{build_hour, HourFacts};
use bml::time::{HOUR_MS, MINUTE_MS};

const DAY: &str = "2024-03-01";
const HOUR: i64 = 1_709_251_200_000; // 2024-03-01 00:00 UTC

fn generated_hour() -> HourFacts {
    support::generated_hour(DAY, HOUR)
}

#[test]
fn a_generated_hour_gives_sixty_consistent_rows() {
    let facts = generated_hour();
    let out = build_hour(&facts);
    assert_eq!(out.rows.len(), 60);
    assert!(out.incomplete.is_empty(), "{:?}", out.incomplete);
    assert!(
        out.findings.is_empty(),
        "the generator keeps the invariants: {:?}",
        out.findings
    );
    for (i, row) in out.rows.iter().enumerate() {
        let minute = HOUR + i as i64 * MINUTE_MS;
        let kline = |kind| {
            facts
                .klines
                .iter()
                .find(|k| k.kind == kind && k.open_time == minute)
                .unwrap()
        };
        let (trade, mark, index, premium) = (
            kline(KlineKind::Trade),
            kline(KlineKind::Mark),
            kline(KlineKind::Index),
            kline(KlineKind::Premium),
        );
        assert_eq!(row.timestamp, minute);
        assert_eq!(
            (row.open, row.close),
            (trade.open.to_f64(), trade.close.to_f64())
        );
        assert_eq!(
            (row.volume_btc, row.trade_count),
            (trade.volume.to_f64(), trade.trade_count as i64)
        );
        assert_eq!(
            (row.mark_price_open, row.index_price_close),
            (mark.open.to_f64(), index.close.to_f64())
        );
        assert_eq!(row.premium_index, Some(premium.close.to_f64()));
        assert_eq!(
            row.count_buy_trades.unwrap() + row.count_sell_trades.unwrap(),
            row.trade_count
        );
        assert!(row.micro_price_close.is_some() && row.avg_spread_usdt.is_some());
        // A day's metrics file (before 2026-06-25) holds the snapshots of
        // 00:05 … 24:00: minute i takes the one at ⌊i/5⌋·5, and the first five
        // minutes, with no snapshot at or before them in the day, have none.
        let point = facts
            .metrics
            .iter()
            .find(|m| m.create_time == HOUR + (i as i64 / 5) * 5 * MINUTE_MS);
        let Some(point) = point else {
            assert!(i < 5, "minute {i} has a snapshot");
            assert_eq!((row.oi_contracts, row.top_trader_long_pct), (None, None));
            continue;
        };
        assert_eq!(
            row.oi_contracts,
            point.sum_open_interest.map(bml::event::Decimal::to_f64)
        );
        let r = point.count_toptrader_long_short_ratio.unwrap().to_f64();
        assert_eq!(row.top_trader_long_pct, Some(r / (1.0 + r)));
        // Nothing live was recorded: LIVE_ONLY columns are NULL; no funding known.
        assert_eq!(
            (
                row.event_time,
                row.liq_long_count,
                row.predicted_funding,
                row.funding_rate
            ),
            (None, None, None, None)
        );
    }
}

#[test]
fn any_input_order_gives_the_same_rows() {
    let facts = generated_hour();
    let reference = build_hour(&facts);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..3 {
        let mut shuffled = facts.clone();
        rng.shuffle(&mut shuffled.klines);
        rng.shuffle(&mut shuffled.agg_trades);
        rng.shuffle(&mut shuffled.book_tickers);
        rng.shuffle(&mut shuffled.metrics);
        assert_eq!(build_hour(&shuffled), reference);
    }
}

#[test]
fn fill_rules_gates_and_findings() {
    let mut facts = generated_hour();
    // A minute without its mark price kline is not written, and says why.
    facts
        .klines
        .retain(|k| !(k.kind == KlineKind::Mark && k.open_time == HOUR + 7 * MINUTE_MS));
    // No book updates in minutes 10..20: the book columns carry minute 9's values.
    let in_minutes =
        |t: i64, a: i64, b: i64| (HOUR + a * MINUTE_MS..HOUR + b * MINUTE_MS).contains(&t);
    facts
        .book_tickers
        .retain(|b| !in_minutes(b.transaction_time, 10, 20));
    // A kline that disagrees with its trades is a finding, and still written.
    let k = facts
        .klines
        .iter_mut()
        .find(|k| k.kind == KlineKind::Trade && k.open_time == HOUR + 30 * MINUTE_MS)
        .unwrap();
    k.trade_count += 1;
    // Funding settled 7 h before the hour is carried all hour; liquidations covered for 30 minutes.
    facts.funding.push(bml::event::FundingRate {
        funding_time: HOUR - 7 * HOUR_MS,
        rate: Decimal::from_str("0.0001").unwrap(),
        interval_hours: Some(8),
        mark_price: None,
    });
    facts.liquidation_coverage.push(HOUR..HOUR + 30 * MINUTE_MS);
    let d = |s: &str| Decimal::from_str(s).unwrap();
    facts.liquidations.push(Liquidation {
        event_time: HOUR + 5 * MINUTE_MS + 10,
        side: Side::Sell,
        orig_qty: d("0.020"),
        price: d("59000.0"),
        avg_price: d("59100.0"),
        status: "FILLED".into(),
        last_filled_qty: d("0.015"),
        filled_qty: d("0.015"),
        trade_time: HOUR + 5 * MINUTE_MS + 9,
    });

    let out = build_hour(&facts);
    assert_eq!(out.rows.len(), 59);
    assert_eq!(
        out.incomplete,
        vec![(HOUR + 7 * MINUTE_MS, vec!["mark price kline"])]
    );
    assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
    assert_eq!(out.findings[0].minute, HOUR + 30 * MINUTE_MS);
    assert!(out.findings[0].check.starts_with("count_buy_trades"));

    let row = |i: i64| {
        out.rows
            .iter()
            .find(|r| r.timestamp == HOUR + i * MINUTE_MS)
            .unwrap()
    };
    for i in 10..20 {
        assert_eq!(
            row(i).micro_price_close,
            None,
            "minute {i} has no update of its own"
        );
        assert_eq!(
            row(i).avg_spread_usdt,
            row(9).avg_spread_usdt,
            "minute {i} carries minute 9"
        );
        assert_eq!(row(i).avg_bid_depth, row(9).avg_bid_depth);
    }
    assert_ne!(row(20).avg_bid_depth, row(9).avg_bid_depth);
    assert!(out.rows.iter().all(|r| r.funding_rate == Some(0.0001)));
    assert_eq!(
        (row(5).liq_long_count, row(5).liq_short_count),
        (Some(1), Some(0))
    );
    assert_eq!(row(5).liq_long_vol_usdt, Some(59100.0 * 0.015));
    assert_eq!(row(5).liq_unfilled_ratio, Some(0.25));
    assert_eq!(
        (row(6).liq_long_count, row(6).liq_avg_fill_price),
        (Some(0), None),
        "covered and quiet"
    );
    assert_eq!(row(40).liq_long_count, None, "not covered");

    // At the carry limits: funding is carried 8 h 1 min and no longer; a book
    // 61 minutes old is NULL.
    let mut stale = HourFacts {
        hour_start: HOUR,
        klines: facts.klines.clone(),
        ..HourFacts::default()
    };
    stale.funding.push(bml::event::FundingRate {
        funding_time: HOUR - 8 * HOUR_MS - MINUTE_MS,
        ..facts.funding[0].clone()
    });
    stale.book_tickers.push(bml::event::BookTicker {
        transaction_time: HOUR - 61 * MINUTE_MS,
        event_time: HOUR - 61 * MINUTE_MS,
        ..facts.book_tickers[0].clone()
    });
    let out = build_hour(&stale);
    assert_eq!(
        out.rows[0].funding_rate,
        Some(0.0001),
        "exactly 8 h 1 min old"
    );
    assert_eq!(out.rows[1].funding_rate, None, "8 h 2 min old");
    assert_eq!(out.rows[0].avg_spread_usdt, None);

    // A settlement counts from the minute that holds its timestamp: stamped
    // 00:10:00.001 (real settlements carry a few ms of jitter), it shows at
    // 00:10, not from 00:11; the minute before keeps the previous rate.
    let mut settling = HourFacts {
        hour_start: HOUR,
        klines: facts.klines.clone(),
        ..HourFacts::default()
    };
    settling.funding.push(facts.funding[0].clone());
    settling.funding.push(bml::event::FundingRate {
        funding_time: HOUR + 10 * MINUTE_MS + 1,
        rate: "0.00025".parse().unwrap(),
        ..facts.funding[0].clone()
    });
    let out = build_hour(&settling);
    let rate_at = |m: i64| {
        let row = out
            .rows
            .iter()
            .find(|r| r.timestamp == HOUR + m * MINUTE_MS);
        row.unwrap().funding_rate
    };
    assert_eq!(rate_at(9), Some(0.0001));
    assert_eq!(rate_at(10), Some(0.00025), "its own minute");
    assert_eq!(rate_at(11), Some(0.00025));
}
