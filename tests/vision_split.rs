//! The ingest's hand-written CSV splitter against its oracle, the csv crate
//! (`properties::csv_split`, also the `vision_csv_split` fuzz target): random
//! bytes, random Vision-like rows with every kind of line end, and the real
//! recorded archives.

mod properties;
mod support;

use std::path::Path;

use proptest::prelude::*;

/// Bytes drawn mostly from the ones a splitter cares about.
fn csv_like() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"0123456789.,,,\n\n\r\"-atrue ".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..600)
}

/// Vision-like rows (numeric fields, sometimes a header) ended by `\n`,
/// `\r\n` or `\r`, blank lines between some, the last line end sometimes absent.
fn vision_like() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        any::<u64>().prop_map(|v| v.to_string()),
        (any::<i32>(), 0u32..9).prop_map(|(m, s)| format!("{m}.{}", "5".repeat(s as usize))),
        Just(String::new()),
        Just("true".to_string()),
    ];
    let row = prop::collection::vec(field, 1..14).prop_map(|f| f.join(","));
    let end = prop::sample::select(vec!["\n", "\r\n", "\r", "\n\n", "\r\n\r\n"]);
    (prop::collection::vec((row, end), 0..60), any::<bool>()).prop_map(|(rows, last_end)| {
        let mut text = String::from("agg_trade_id,price,quantity\n");
        let count = rows.len();
        for (i, (row, end)) in rows.into_iter().enumerate() {
            text.push_str(&row);
            if i + 1 < count || last_end {
                text.push_str(end);
            }
        }
        text.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn the_splitter_splits_arbitrary_bytes_as_the_csv_crate(step in 1u8..=255, data in csv_like()) {
        properties::csv_split(&[&[step][..], &data].concat());
    }

    #[test]
    fn the_splitter_splits_vision_rows_as_the_csv_crate(step in 1u8..=255, data in vision_like()) {
        properties::csv_split(&[&[step][..], &data].concat());
    }
}

#[test]
fn the_splitter_splits_the_recorded_archives_as_the_csv_crate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance/vision");
    let mut archives = 0;
    for sub in std::fs::read_dir(&dir).unwrap() {
        for file in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "zip") {
                let csv = support::csv_of(&path);
                for step in [7, 255] {
                    properties::csv_split(&[&[step][..], csv.as_bytes()].concat());
                }
                archives += 1;
            }
        }
    }
    assert!(archives >= 4, "{archives} archives under {}", dir.display());
}
