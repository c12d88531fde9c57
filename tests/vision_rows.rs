//! The ingest's one-pass row parser (`rows::parse`) against the reference that
//! splits first (`rows::parse_row`), through `properties::csv_rows` (also the
//! `vision_csv_rows` fuzz target): aggTrade and bookTicker rows whose fields
//! are mostly plain and sometimes at an edge the one-pass parser leaves to the
//! reference (signs, padding, lone points, too many digits, microseconds,
//! capitalised booleans, missing or extra fields), and the recorded archive.

mod properties;
mod support;

use std::path::Path;

use bml::event::VisionKind;
use bml::sources::vision::ALL_KINDS;
use proptest::prelude::*;

fn plain_uint() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|v| (v >> (v % 64)).to_string())
}

fn uint() -> BoxedStrategy<String> {
    prop_oneof![
        6 => plain_uint(),
        1 => prop::sample::select(vec![
            "", "0", "18446744073709551615", "18446744073709551616",
            "99999999999999999999", "0000000000000000000001", "-1", " 7", "7 ", "1.0", "x",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

fn decimal() -> BoxedStrategy<String> {
    let plain =
        (0u64..1_000_000, 0usize..9, 0u64..100_000_000).prop_map(
            |(int, scale, frac)| match scale {
                0 => int.to_string(),
                s => format!("{int}.{:0>s$}", frac % 10u64.pow(s as u32)),
            },
        );
    prop_oneof![
        6 => plain,
        1 => prop::sample::select(vec![
            "", ".", ".5", "5.", "-1.5", "-0", " 1.5", "1.5 ", "1e5", "+1", "1.2.3",
            "999999999999999999", "9999999999999999999", "99999999.9999999999",
            "0.000000000000000001", "0.0000000000000000001", "00000000000000000000.1",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

fn time() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (1_000_000_000_000i64..9_999_999_999_999).prop_map(|t| t.to_string()),
        1 => prop::sample::select(vec![
            "", "0", "170925120000", "1709251200000000", "17092512000001", "-1709251200000",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

fn boolean() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(vec!["true", "false"]).prop_map(String::from),
        1 => prop::sample::select(vec!["True", "FALSE", "", "1", "truex", " true"])
            .prop_map(String::from),
    ]
    .boxed()
}

/// A row of `fields`, sometimes with a field dropped or one added.
fn row(fields: Vec<BoxedStrategy<String>>) -> impl Strategy<Value = String> {
    (fields, 0u8..12).prop_map(|(mut fields, change)| {
        match change {
            0 => {
                fields.pop();
            }
            1 => fields.push("0".into()),
            _ => {}
        }
        fields.join(",")
    })
}

fn agg_trades() -> impl Strategy<Value = String> {
    row(vec![
        uint(),
        decimal(),
        decimal(),
        uint(),
        uint(),
        time(),
        boolean(),
    ])
}

fn book_tickers() -> impl Strategy<Value = String> {
    row(vec![
        uint(),
        decimal(),
        decimal(),
        decimal(),
        decimal(),
        time(),
        time(),
    ])
}

/// `rows` as the CSV of a `kind` archive, in the form `properties::csv_rows` takes.
fn csv(kind: VisionKind, rows: &[String]) -> Vec<u8> {
    let pick = ALL_KINDS.iter().position(|k| *k == kind).expect("a kind") as u8;
    [&[pick][..], rows.join("\n").as_bytes()].concat()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn agg_trade_rows_parse_in_one_pass_as_the_reference(rows in prop::collection::vec(agg_trades(), 1..20)) {
        properties::csv_rows(&csv(VisionKind::AggTrades, &rows));
    }

    #[test]
    fn book_ticker_rows_parse_in_one_pass_as_the_reference(rows in prop::collection::vec(book_tickers(), 1..20)) {
        properties::csv_rows(&csv(VisionKind::BookTicker, &rows));
    }
}

#[test]
fn the_recorded_agg_trades_parse_in_one_pass_as_the_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/binance/vision/format_refs/BTCUSD_PERP-aggTrades-2026-05-08.zip");
    let text = support::csv_of(&path);
    let rows: Vec<String> = support::data_rows(&text)
        .into_iter()
        .map(String::from)
        .collect();
    assert!(rows.len() > 1000, "{} rows", rows.len());
    properties::csv_rows(&csv(VisionKind::AggTrades, &rows));
}
