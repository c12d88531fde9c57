//! The real Binance archives in ../shared/data, ingested as a user would (`bml
//! ingest vision --from-dir`), checked against values read by hand from the CSVs.

mod support;

use std::path::{Path, PathBuf};

use bml::event::{Event, KlineKind, VisionKind};
use bml::sources::vision::split::Lines;
use support::{bml, text, visible_events};

fn samples(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/binance/vision")
        .join(dir)
}

fn ingest_from(dir: &Path, symbol: &str, start: &str, end: &str, kind: &str) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let from = dir.to_str().unwrap();
    let args = [
        "ingest",
        "vision",
        "--symbol",
        symbol,
        "--start",
        start,
        "--end",
        end,
        "--kinds",
        kind,
        "--from-dir",
        from,
    ];
    let out = bml(data.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 ingested"),
        "{}",
        text(&out)
    );
    data
}

#[test]
fn real_usdm_monthly_funding_rates() {
    let data = ingest_from(
        &samples("um_monthly_fundingRate"),
        "BTCUSDT",
        "2026-04-01",
        "2026-04-30",
        "fundingRate",
    );
    let events = visible_events(data.path(), "fundingRate-2026-04");
    assert_eq!(events.len(), 90);
    let rate = |e: &Event| match e {
        Event::FundingRate(f) => (f.funding_time, f.interval_hours, f.rate.to_string()),
        other => panic!("{other:?}"),
    };
    // First and last lines of BTCUSDT-fundingRate-2026-04.csv.
    assert_eq!(
        rate(&events[0]),
        (1775001600000, Some(8), "-0.00003449".to_string())
    );
    assert_eq!(
        rate(&events[1]),
        (1775030400000, Some(8), "-0.00000461".to_string())
    );
    assert_eq!(
        rate(&events[89]),
        (1777564800000, Some(8), "-0.00002904".to_string())
    );
}

#[test]
fn real_klines_without_header_in_milliseconds() {
    // Spot 1m klines (no header, ms): same CSV layout as USD-M klines.
    let data = ingest_from(
        &samples("format_refs"),
        "BTCUSDT",
        "2020-01-01",
        "2020-01-01",
        "klines",
    );
    let events = visible_events(data.path(), "BTCUSDT-1m-2020-01-01");
    assert_eq!(events.len(), 1440);
    let Event::Kline(first) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (first.kind, first.open_time, first.interval_ms),
        (KlineKind::Trade, 1577836800000, 60_000)
    );
    assert_eq!(
        [first.open, first.high, first.low, first.close, first.volume].map(|d| d.to_string()),
        [
            "7195.24000000",
            "7196.25000000",
            "7183.14000000",
            "7186.68000000",
            "51.64281200"
        ]
    );
    assert_eq!(
        (first.trade_count, first.taker_buy_volume.to_string()),
        (493, "19.59823000".to_string())
    );
    assert_eq!(first.quote_volume.to_string(), "371233.51835535");
    let Event::Kline(last) = &events[1439] else {
        panic!()
    };
    assert_eq!(
        (last.open_time, last.close.to_string(), last.trade_count),
        (1577923140000, "7200.85000000".to_string(), 89)
    );
}

#[test]
fn real_aggtrades_with_header() {
    // COIN-M daily aggTrades (header line, ms); its CHECKSUM has no trailing newline.
    let data = ingest_from(
        &samples("format_refs"),
        "BTCUSD_PERP",
        "2026-05-08",
        "2026-05-08",
        "aggTrades",
    );
    let events = visible_events(data.path(), "aggTrades");
    assert_eq!(events.len(), 105_280);
    let Event::AggTrade(first) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (
            first.agg_trade_id,
            first.price.to_string(),
            first.quantity.to_string()
        ),
        (480537903, "79972.8".into(), "542.0".into())
    );
    assert_eq!(
        (
            first.first_trade_id,
            first.last_trade_id,
            first.transact_time,
            first.is_buyer_maker
        ),
        (1123474160, 1123474164, 1778198400020, false)
    );
    let Event::AggTrade(last) = &events[105_279] else {
        panic!()
    };
    assert_eq!(
        (
            last.agg_trade_id,
            last.price.to_string(),
            last.transact_time
        ),
        (480643182, "80153.7".into(), 1778284799655)
    );
}

#[test]
fn real_microsecond_klines_become_milliseconds() {
    // Spot 1h klines from 2026 use µs timestamps; parsed here row by row.
    let zip = samples("format_refs").join("BTCUSDT-1h-2026-05-08.zip");
    let csv = support::csv_of(&zip);
    let rows: Vec<Event> = Lines::new(csv.as_bytes(), 1)
        .map(|line| bml::sources::vision::rows::parse_row(VisionKind::Klines, &line).unwrap())
        .collect();
    assert_eq!(rows.len(), 24);
    let Event::Kline(first) = &rows[0] else {
        panic!()
    };
    assert_eq!(
        (first.open_time, first.close_time, first.interval_ms),
        (1778198400000, 1778201999999, 3_600_000)
    );
    assert_eq!(
        (
            first.open.to_string(),
            first.close.to_string(),
            first.trade_count
        ),
        ("80006.00000000".into(), "79831.99000000".into(), 67626)
    );
}
