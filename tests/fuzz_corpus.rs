//! The fuzz properties (see `properties/mod.rs`) on a bounded, seeded corpus.

mod properties;

use std::str::FromStr;

use bml::event::{AggTrade, Decimal, Event, Record, Sha256, Source};

/// `cases` seeded inputs of up to `max_len` bytes: every other one drawn from
/// `alphabet` (the bytes a parser cares about), the others from any byte.
fn corpus(seed: u64, cases: usize, max_len: usize, alphabet: &[u8]) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..cases)
        .map(|case| {
            let len = rng.usize(0..max_len);
            if case % 2 == 0 {
                (0..len)
                    .map(|_| alphabet[rng.usize(..alphabet.len())])
                    .collect()
            } else {
                (0..len).map(|_| rng.u8(..)).collect()
            }
        })
        .collect()
}

#[test]
fn csv_row_parsers_never_panic() {
    for data in corpus(7, 20_000, 200, b"0123456789.,-\n\"truefalsTRUE eE+x:") {
        properties::csv_rows(&data);
    }
}

#[test]
fn the_csv_splitter_agrees_with_the_csv_crate() {
    for data in corpus(9, 20_000, 300, b"0123456789.,\n\r\"-a") {
        properties::csv_split(&data);
    }
}

#[test]
fn event_decoding_never_panics() {
    let mut rng = fastrand::Rng::with_seed(8);
    // One aggTrade (postcard), and a chunk of them (the columnar encoding).
    let trade = |i: u64| {
        Event::AggTrade(AggTrade {
            agg_trade_id: i,
            price: Decimal::from_str("1.5").unwrap(),
            quantity: Decimal::from_str("2").unwrap(),
            first_trade_id: i,
            last_trade_id: i + 1,
            transact_time: 3 + i as i64,
            is_buyer_maker: i.is_multiple_of(3),
        })
    };
    let chunk = Record {
        symbol: "BTCUSDT".into(),
        source: Source::Planner,
        received_ns: 1,
        events: (0..40).map(trade).collect(),
    }
    .encode();
    let valid = Record {
        symbol: "BTCUSDT".into(),
        source: Source::Vision {
            file: "f.zip".into(),
            sha256: Sha256([7; 32]),
        },
        received_ns: 1_000_000,
        events: vec![Event::AggTrade(AggTrade {
            agg_trade_id: 1,
            price: Decimal::from_str("1.5").unwrap(),
            quantity: Decimal::from_str("2").unwrap(),
            first_trade_id: 1,
            last_trade_id: 2,
            transact_time: 3,
            is_buyer_maker: true,
        })],
    }
    .encode();
    for case in 0..20_000 {
        // Mutations of a valid record reach deep into the decoder; raw bytes too.
        let mut data = if case % 2 == 0 {
            valid.clone()
        } else {
            chunk.clone()
        };
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..data.len());
            data[i] = rng.u8(..);
        }
        data.truncate(rng.usize(..=data.len()));
        properties::event_decode(&data);
        let raw: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
        properties::event_decode(&raw);
    }
}
