//! Golden encodings of the event format, one record per event variant, for
//! every version: the current one (3) must encode byte for byte as pinned,
//! and every earlier one must still decode. A failure means the log format
//! changed; logs already written would no longer decode. Add variants at the
//! end, bump the format version for anything else; never edit a golden file.
//! (New version: a new file, written by `BML_BLESS=1 cargo test --test event_golden`.)

use std::str::FromStr;

use bml::event::*;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/events-v3.hex");
/// Version 2: no envelope runs.
const GOLDEN_V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/events-v2.hex");
/// Version 1: the receive time in ms.
const GOLDEN_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/events-v1.hex");

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn golden_records() -> Vec<Record> {
    let sha = Sha256([0xAB; 32]);
    let vision = Source::Vision {
        file: "BTCUSDT-aggTrades-2024-03-01.zip".into(),
        sha256: sha,
    };
    let rest = Source::Rest {
        endpoint: "/fapi/v1/premiumIndex".into(),
    };
    let ws = Source::WebSocket {
        stream: "btcusdt@depth@100ms".into(),
        connection: 3,
    };
    let status = StreamStatus {
        stream: "btcusdt@forceOrder".into(),
        connection: 3,
        time: 1_709_251_200_000,
        reason: String::new(),
    };
    let events = vec![
        (vision.clone(), Event::Kline(Kline {
            kind: KlineKind::Mark,
            interval_ms: 60_000,
            open_time: 1_709_251_200_000,
            open: d("60000.1"),
            high: d("60010.5"),
            low: d("59990.0"),
            close: d("60001.2"),
            volume: d("0"),
            close_time: 1_709_251_259_999,
            quote_volume: d("0.0000"),
            trade_count: 0,
            taker_buy_volume: d("0"),
            taker_buy_quote_volume: d("0"),
            closed: true,
        })),
        (vision.clone(), Event::AggTrade(AggTrade {
            agg_trade_id: 2_000_000_000,
            price: d("60000.1"),
            quantity: d("0.012"),
            first_trade_id: 5_000_000_001,
            last_trade_id: 5_000_000_003,
            transact_time: 1_709_251_200_123,
            is_buyer_maker: true,
        })),
        (vision.clone(), Event::BookTicker(BookTicker {
            update_id: 3_000_000_000_017,
            bid_price: d("60000.0"),
            bid_qty: d("1.234"),
            ask_price: d("60000.1"),
            ask_qty: d("0.5"),
            transaction_time: 1_709_251_200_100,
            event_time: 1_709_251_200_101,
        })),
        (vision.clone(), Event::Metrics(Metrics {
            create_time: 1_709_251_500_000,
            sum_open_interest: Some(d("80066.9021")),
            sum_open_interest_value: Some(d("4804430473.89092")),
            count_toptrader_long_short_ratio: Some(d("1.31073")),
            sum_toptrader_long_short_ratio: None,
            count_long_short_ratio: Some(d("1.59088")),
            sum_taker_long_short_vol_ratio: Some(d("0.99646")),
        })),
        (vision.clone(), Event::BookDepth(BookDepth {
            timestamp: 1_709_251_208_000,
            percentage: d("-5"),
            depth: d("4425.018"),
            notional: d("2655240.90093"),
        })),
        (vision.clone(), Event::FundingRate(FundingRate {
            funding_time: 1_775_001_600_000,
            rate: d("-0.00003449"),
            interval_hours: Some(8),
            mark_price: None,
        })),
        (rest.clone(), Event::PremiumIndex(PremiumIndex {
            time: 1_709_251_200_000,
            mark_price: d("60001.50000000"),
            index_price: d("59998.12"),
            estimated_settle_price: d("60000.00"),
            last_funding_rate: d("0.00010000"),
            interest_rate: d("0.00010000"),
            next_funding_time: 1_709_280_000_000,
        })),
        (rest.clone(), Event::OpenInterest(OpenInterest {
            source: OpenInterestSource::History5m,
            time: 1_709_251_200_000,
            contracts: d("80066.902"),
            value_usdt: Some(d("4804430473.89")),
        })),
        (rest.clone(), Event::LongShortRatio(LongShortRatio {
            kind: RatioKind::GlobalAccount,
            time: 1_709_251_200_000,
            ratio: d("1.5909"),
            long: d("0.6140"),
            short: d("0.3860"),
        })),
        (ws.clone(), Event::Liquidation(Liquidation {
            event_time: 1_709_251_201_000,
            side: Side::Sell,
            orig_qty: d("0.014"),
            price: d("59800.0"),
            avg_price: d("59850.3"),
            status: "FILLED".into(),
            last_filled_qty: d("0.014"),
            filled_qty: d("0.014"),
            trade_time: 1_709_251_200_998,
        })),
        (ws.clone(), Event::DepthDiff(DepthDiff {
            event_time: 1_709_251_200_200,
            transaction_time: 1_709_251_200_198,
            first_update_id: 100,
            final_update_id: 104,
            prev_final_update_id: 99,
            bids: vec![(d("60000.0"), d("1.5")), (d("59999.9"), d("0"))],
            asks: vec![(d("60000.1"), d("0.25"))],
        })),
        (rest.clone(), Event::DepthSnapshot(DepthSnapshot {
            last_update_id: 102,
            event_time: 1_709_251_200_150,
            transaction_time: 1_709_251_200_149,
            bids: vec![(d("60000.0"), d("1.4"))],
            asks: vec![(d("60000.1"), d("0.3")), (d("60000.2"), d("2"))],
        })),
        (ws.clone(), Event::MarkPrice(MarkPrice {
            event_time: 1_709_251_201_000,
            mark_price: d("60001.2"),
            index_price: d("59998.7"),
            estimated_settle_price: d("60000.4"),
            funding_rate: d("0.00010000"),
            next_funding_time: 1_709_280_000_000,
        })),
        (vision.clone(), Event::VisionFileIngested(VisionFileIngested {
            kind: VisionKind::AggTrades,
            period: "2024-03-01".into(),
            file: "BTCUSDT-aggTrades-2024-03-01.zip".into(),
            sha256: sha,
            rows: 1_728_000,
            first_offset: 17,
            replaces: Some(Sha256([0x01; 32])),
        })),
        (vision.clone(), Event::VisionFileMissing(VisionFileMissing {
            kind: VisionKind::FundingRate,
            period: "2024-03".into(),
            url: "https://data.binance.vision/data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03.zip".into(),
            http_status: 404,
        })),
        (rest.clone(), Event::RestRangeComplete(RestRangeComplete {
            endpoint: "/fapi/v1/klines".into(),
            start_ms: 1_709_251_200_000,
            end_ms: 1_709_337_600_000,
            rows: 1440,
        })),
        (ws.clone(), Event::StreamConnected(status.clone())),
        (ws.clone(), Event::StreamDisconnected(StreamStatus {
            reason: "server closed the connection".into(),
            ..status
        })),
        (
            Source::Planner,
            Event::Unfillable(Unfillable {
                series: VisionKind::AggTrades,
                start_ms: 1_709_251_200_000,
                end_ms: 1_709_337_600_000,
                reason: "Vision has no archive for it, and REST serves aggTrades for the last 48 h only".into(),
            }),
        ),
    ];
    events
        .into_iter()
        .map(|(source, event)| Record {
            symbol: "BTCUSDT".into(),
            source,
            received_ns: 1_709_251_202_000_123_456,
            events: vec![event],
        })
        .collect()
}

#[test]
fn event_format_v3_is_byte_for_byte_stable() {
    let encoded: Vec<String> = golden_records()
        .iter()
        .map(|r| hex::encode(r.encode()))
        .collect();
    if std::env::var_os("BML_BLESS").is_some() {
        std::fs::write(GOLDEN, encoded.join("\n") + "\n").unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap();
    let golden: Vec<&str> = golden.lines().collect();
    assert_eq!(
        golden.len(),
        encoded.len(),
        "one golden line per event variant"
    );
    for (i, (now, then)) in encoded.iter().zip(&golden).enumerate() {
        assert_eq!(
            now,
            then,
            "record {i} ({:?}) encodes differently",
            golden_records()[i].events[0]
        );
    }
}

#[test]
fn golden_records_of_every_version_still_decode() {
    for file in [GOLDEN, GOLDEN_V2] {
        let golden = std::fs::read_to_string(file).unwrap();
        assert_eq!(golden.lines().count(), golden_records().len());
        for (line, expected) in golden.lines().zip(golden_records()) {
            let bytes = hex::decode(line).unwrap();
            let record = Record::decode(&bytes).unwrap();
            assert_eq!(record, expected);
            let (class, envelope) = decode_envelope(&bytes).unwrap();
            assert_eq!((class, envelope), (record.class(), record.envelope()));
        }
    }
    // Version 1 kept whole milliseconds: they decode as that many ns. It
    // knew the variants up to `StreamDisconnected`; those added since
    // (`Unfillable`) have no version-1 line.
    const V1_VARIANTS: usize = 18;
    let golden = std::fs::read_to_string(GOLDEN_V1).unwrap();
    assert_eq!(golden.lines().count(), V1_VARIANTS);
    for (line, mut expected) in golden.lines().zip(golden_records()) {
        expected.received_ns = 1_709_251_202_000_000_000;
        let record = Record::decode(&hex::decode(line).unwrap()).unwrap();
        assert_eq!(record, expected);
        assert_eq!(record.received_ms(), 1_709_251_202_000);
    }
}

/// Format 3's columnar encoding (encoding 1): a chunk of aggTrades and one of
/// bookTicker updates, with ids past 2⁶³ and a change of scale.
const GOLDEN_COLUMNS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/events-v3-columns.hex"
);

fn columnar_records() -> Vec<Record> {
    let vision = |file: &str| Source::Vision {
        file: file.into(),
        sha256: Sha256([0xCD; 32]),
    };
    let time = 1_709_251_200_000;
    let trades = (0..20u64)
        .map(|i| {
            Event::AggTrade(AggTrade {
                agg_trade_id: u64::MAX - 40 + i,
                price: d(if i == 7 { "60000.25" } else { "60000.1" }),
                quantity: d("0.012"),
                first_trade_id: 5_000_000_001 + 3 * i,
                last_trade_id: 5_000_000_003 + 3 * i,
                transact_time: time + 17 * i as i64,
                is_buyer_maker: i % 3 == 1,
            })
        })
        .collect();
    let tickers = (0..20u64)
        .map(|i| {
            Event::BookTicker(BookTicker {
                update_id: 3_000_000_000_017 + 5 * i,
                bid_price: d("60000.0"),
                bid_qty: d(&format!("1.{i}")),
                ask_price: d("60000.1"),
                ask_qty: d("0.5"),
                transaction_time: time + 40 * i as i64,
                event_time: time + 40 * i as i64 + 1,
            })
        })
        .collect();
    vec![
        Record {
            symbol: "BTCUSDT".into(),
            source: vision("BTCUSDT-aggTrades-2024-03-01.zip"),
            received_ns: 1_709_251_202_000_123_456,
            events: trades,
        },
        Record {
            symbol: "BTCUSDT".into(),
            source: vision("BTCUSDT-bookTicker-2024-03-01.zip"),
            received_ns: 1_709_251_202_000_123_457,
            events: tickers,
        },
    ]
}

#[test]
fn golden_columnar_records_still_decode() {
    if std::env::var_os("BML_BLESS").is_some() && !std::path::Path::new(GOLDEN_COLUMNS).exists() {
        let lines: Vec<String> = columnar_records()
            .iter()
            .map(|r| hex::encode(r.encode()))
            .collect();
        std::fs::write(GOLDEN_COLUMNS, lines.join("\n") + "\n").unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN_COLUMNS).unwrap();
    assert_eq!(golden.lines().count(), 2);
    for (line, expected) in golden.lines().zip(columnar_records()) {
        let bytes = hex::decode(line).unwrap();
        assert_eq!(Record::decode(&bytes).unwrap(), expected);
        // Columns: much smaller than the same record in postcard.
        assert!(bytes.len() * 3 < postcard::to_allocvec(&expected.events).unwrap().len());
    }
}
