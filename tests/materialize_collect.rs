//! `collect_hour`: the hour's rows depend on the *set* of facts in the log, not
//! on its order, duplication or batching; copies that disagree resolve by
//! source precedence and are reported; each fact lands in the hours whose
//! windows need it.

mod support;

use std::str::FromStr;

use bml::event::{Decimal, Event, FundingRate, KlineKind, Record, Sha256, Source};
use bml::materialize::collect::collect_hour;
use bml::materialize::hour::{build_hour, HourFacts};
use bml::time::{HOUR_MS, MINUTE_MS};

const DAY: &str = "2024-03-01";
const HOUR: i64 = 1_709_251_200_000;

fn vision(file: &str) -> Source {
    Source::Vision {
        file: file.into(),
        sha256: Sha256([1; 32]),
    }
}

/// The generated hour's facts as log records, in chunks of random sizes.
fn as_records(facts: &HourFacts, rng: &mut fastrand::Rng, source: &Source) -> Vec<Record> {
    let mut events: Vec<Event> = facts.klines.iter().cloned().map(Event::Kline).collect();
    events.extend(facts.agg_trades.iter().cloned().map(Event::AggTrade));
    events.extend(facts.book_tickers.iter().cloned().map(Event::BookTicker));
    events.extend(facts.metrics.iter().cloned().map(Event::Metrics));
    let mut records = Vec::new();
    while !events.is_empty() {
        let take = rng.usize(1..5000).min(events.len());
        records.push(Record {
            symbol: "BTCUSDT".into(),
            source: source.clone(),
            received_ns: (HOUR + 2 * HOUR_MS) * 1_000_000,
            events: events.drain(..take).collect(),
        });
    }
    records
}

#[test]
fn order_duplication_and_batching_do_not_change_the_hour() {
    let facts = support::generated_hour(DAY, HOUR);
    let reference = build_hour(&facts);
    let mut rng = fastrand::Rng::with_seed(9);
    for round in 0..2 {
        let mut records = as_records(&facts, &mut rng, &vision("a.zip"));
        // The same facts again, batched differently, some from another source.
        let again = if round % 2 == 0 {
            vision("a.zip")
        } else {
            Source::Rest {
                endpoint: "/fapi/v1/aggTrades".into(),
            }
        };
        records.extend(as_records(&facts, &mut rng, &again));
        rng.shuffle(&mut records);
        let (collected, resolution) = collect_hour(HOUR, &records);
        let tallies = &resolution.provenance.reconciliation;
        if round == 1 {
            // Every aggTrade of the hour was held by Vision and REST, equal.
            let trades = tallies.iter().find(|t| t.kind == "aggTrade").unwrap();
            assert_eq!(
                (trades.equal, trades.conflicting),
                (facts.agg_trades.len() as u64, 0)
            );
            assert_eq!(trades.source_names(), "vision+rest");
        } else {
            assert!(
                tallies.is_empty(),
                "one source is no reconciliation: {tallies:?}"
            );
        }
        let conflicts = resolution.conflicts;
        assert!(
            conflicts.is_empty(),
            "equal copies are no conflict: {conflicts:?}"
        );
        assert_eq!(build_hour(&collected), reference, "round {round}");
    }
}

#[test]
fn precedence_decides_disagreements_and_reports_them_the_same_way_every_time() {
    let facts = support::generated_hour(DAY, HOUR);
    let kline = facts
        .klines
        .iter()
        .find(|k| k.kind == KlineKind::Trade && k.open_time == HOUR)
        .unwrap()
        .clone();
    let with_close = |close: &str, closed: bool| {
        let mut k = kline.clone();
        k.close = Decimal::from_str(close).unwrap();
        k.closed = closed;
        Event::Kline(k)
    };
    let record = |source: Source, event: Event| Record {
        symbol: "BTCUSDT".into(),
        source,
        received_ns: (HOUR + 1000) * 1_000_000,
        events: vec![event],
    };
    let rest = Source::Rest {
        endpoint: "/fapi/v1/klines".into(),
    };
    let ws = Source::WebSocket {
        stream: "btcusdt@kline_1m".into(),
        connection: 1,
    };
    let copies = vec![
        record(ws.clone(), with_close("1.0", false)),
        record(rest.clone(), with_close("2.0", true)),
        record(rest.clone(), with_close("3.0", false)),
        record(vision("k.zip"), with_close("4.0", true)),
    ];
    let mut rng = fastrand::Rng::with_seed(4);
    let mut first = None;
    for _ in 0..10 {
        let mut shuffled = copies.clone();
        rng.shuffle(&mut shuffled);
        let (collected, resolution) = collect_hour(HOUR, &shuffled);
        let tallies = &resolution.provenance.reconciliation;
        assert_eq!(tallies.len(), 1, "{tallies:?}");
        assert_eq!(
            (tallies[0].kind.as_str(), tallies[0].source_names().as_str()),
            ("kline", "vision+rest+live")
        );
        assert_eq!((tallies[0].equal, tallies[0].conflicting), (0, 1));
        let conflicts = resolution.conflicts;
        assert_eq!(conflicts[0].fields, vec!["close: 4.0 ≠ 2.0".to_string()]);
        assert_eq!(
            conflicts[1].fields,
            vec!["close: 4.0 ≠ 3.0", "closed: true ≠ false"]
        );
        assert_eq!(collected.klines.len(), 1);
        assert_eq!(collected.klines[0].close.to_string(), "4.0", "Vision wins");
        assert_eq!(conflicts.len(), 3);
        assert!(conflicts.iter().all(|c| c.kept == vision("k.zip")));
        // Losers are listed best first: REST closed, REST open, WebSocket.
        assert_eq!(
            conflicts
                .iter()
                .map(|c| c.dropped.clone())
                .collect::<Vec<_>>(),
            vec![rest.clone(), rest.clone(), ws.clone()]
        );
        assert_eq!(*first.get_or_insert_with(|| conflicts.clone()), conflicts);
    }
    // Without Vision, the closed REST kline beats the open one.
    let (collected, _) = collect_hour(HOUR, &copies[..3]);
    assert_eq!(collected.klines[0].close.to_string(), "2.0");
}

/// The live streams' copies of Vision's facts (an aggTrade, a bookTicker
/// update) that disagree lose to Vision, and each is reported.
#[test]
fn a_stream_copy_that_disagrees_with_vision_loses_and_is_reported() {
    let facts = support::generated_hour(DAY, HOUR);
    let trade = facts.agg_trades[10].clone();
    let book = facts.book_tickers[10].clone();
    let mut stream_trade = trade.clone();
    stream_trade.quantity = Decimal::from_str("123.456").unwrap();
    let mut stream_book = book.clone();
    stream_book.ask_qty = Decimal::from_str("9.999").unwrap();
    let record = |source: Source, event: Event| Record {
        symbol: "BTCUSDT".into(),
        source,
        received_ns: (HOUR + 1000) * 1_000_000,
        events: vec![event],
    };
    let ws = |stream: &str| Source::WebSocket {
        stream: stream.into(),
        connection: 3,
    };
    let records = vec![
        record(ws("btcusdt@aggTrade"), Event::AggTrade(stream_trade)),
        record(vision("t.zip"), Event::AggTrade(trade.clone())),
        record(ws("btcusdt@bookTicker"), Event::BookTicker(stream_book)),
        record(vision("b.zip"), Event::BookTicker(book.clone())),
    ];
    let (collected, resolution) = collect_hour(HOUR, &records);
    let counted: Vec<(&str, String, u64, u64)> = resolution
        .provenance
        .reconciliation
        .iter()
        .map(|t| (t.kind.as_str(), t.source_names(), t.equal, t.conflicting))
        .collect();
    assert_eq!(
        counted,
        vec![
            ("aggTrade", "vision+live".to_string(), 0, 1),
            ("bookTicker", "vision+live".to_string(), 0, 1)
        ]
    );
    let conflicts = resolution.conflicts;
    assert!(
        conflicts[0]
            .fields
            .iter()
            .any(|f| f.starts_with("quantity: ") && f.ends_with(" ≠ 123.456")),
        "{:?}",
        conflicts[0].fields
    );
    assert_eq!(collected.agg_trades, vec![trade]);
    assert_eq!(collected.book_tickers, vec![book]);
    let reported: Vec<(String, Source)> =
        conflicts.into_iter().map(|c| (c.key, c.dropped)).collect();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(reported
        .iter()
        .all(|(_, dropped)| matches!(dropped, Source::WebSocket { .. })));
}

#[test]
fn each_fact_lands_in_the_windows_that_need_it() {
    let facts = support::generated_hour(DAY, HOUR);
    let d = |s: &str| Decimal::from_str(s).unwrap();
    let mut book = facts.book_tickers[0].clone();
    let mut events = Vec::new();
    for (id, minutes_before) in [(1u64, 61i64), (2, 59)] {
        book.update_id = id;
        book.transaction_time = HOUR - minutes_before * MINUTE_MS;
        events.push(Event::BookTicker(book.clone()));
    }
    for (time, rate) in [
        (HOUR - 8 * HOUR_MS - MINUTE_MS, "0.1"),
        (HOUR - 8 * HOUR_MS - 2 * MINUTE_MS, "0.2"),
    ] {
        events.push(Event::FundingRate(FundingRate {
            funding_time: time,
            rate: d(rate),
            interval_hours: Some(8),
            mark_price: None,
        }));
    }
    let mut next_hour_trade = facts.agg_trades[0].clone();
    next_hour_trade.transact_time = HOUR + HOUR_MS;
    events.push(Event::AggTrade(next_hour_trade));
    let record = Record {
        symbol: "BTCUSDT".into(),
        source: vision("w.zip"),
        received_ns: 0,
        events,
    };
    let (collected, _) = collect_hour(HOUR, [&record]);
    assert_eq!(
        collected
            .book_tickers
            .iter()
            .map(|b| b.update_id)
            .collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(
        collected
            .funding
            .iter()
            .map(|f| f.rate.to_string())
            .collect::<Vec<_>>(),
        vec!["0.1"]
    );
    assert!(collected.agg_trades.is_empty());
}

/// Of the book updates before the hour, only the last minute that has any is
/// kept (the only one the forward fill can carry), whatever order the records
/// come in: look-back first, last, or the newest look-back minute after the
/// hour's own updates.
#[test]
fn the_look_back_keeps_the_last_minute_with_book_updates_in_any_order() {
    let facts = support::generated_hour(DAY, HOUR);
    let template = facts.book_tickers[0].clone();
    let update = |id: u64, time: i64| {
        let mut b = template.clone();
        b.update_id = id;
        b.transaction_time = time;
        Event::BookTicker(b)
    };
    let record = |events: Vec<Event>| Record {
        symbol: "BTCUSDT".into(),
        source: vision("b.zip"),
        received_ns: 0,
        events,
    };
    let records = vec![
        record(vec![
            update(1, HOUR - 30 * MINUTE_MS),
            update(2, HOUR - 3 * MINUTE_MS),
        ]),
        record(vec![
            update(3, HOUR - 2 * MINUTE_MS + 5),
            update(4, HOUR - MINUTE_MS - 1),
        ]),
        record(vec![
            update(5, HOUR - 2 * MINUTE_MS + 9),
            update(6, HOUR - 61 * MINUTE_MS),
        ]),
        record(vec![update(10, HOUR + 1), update(11, HOUR + MINUTE_MS)]),
        record(vec![
            update(12, HOUR + 2 * MINUTE_MS),
            update(3, HOUR - 2 * MINUTE_MS + 5),
        ]),
    ];
    let mut rng = fastrand::Rng::with_seed(61);
    for _ in 0..50 {
        let mut shuffled = records.clone();
        rng.shuffle(&mut shuffled);
        let (collected, _) = collect_hour(HOUR, &shuffled);
        let ids: Vec<u64> = collected.book_tickers.iter().map(|b| b.update_id).collect();
        // Minute −2 (3, 5 and 4, in time order), then the hour's own.
        assert_eq!(ids, vec![3, 5, 4, 10, 11, 12]);
    }
}

/// A record of nothing but book updates from before the last minute with
/// any before the hour is not decoded for the hour (its envelope says so):
/// the hour's facts read from the log are those of every record, and its
/// sources still name it.
#[test]
fn records_of_earlier_book_updates_are_skipped_undecoded_without_changing_the_hour() {
    use bml::materialize::run::hour_facts;
    let facts = support::generated_hour(DAY, HOUR);
    let template = facts.book_tickers[0].clone();
    let mut rng = fastrand::Rng::with_seed(83);
    for round in 0..6 {
        let sources = [
            Source::WebSocket {
                stream: "btcusdt@bookTicker".into(),
                connection: 1,
            },
            Source::WebSocket {
                stream: "btcusdt@bookTicker".into(),
                connection: 2,
            },
            Source::Rest {
                endpoint: "/fapi/v1/ticker/bookTicker".into(),
            },
        ];
        // Updates from 70 minutes before the hour to 10 into it, some
        // repeated, in records of random sizes and sources.
        let mut updates: Vec<Event> = (0..400u64)
            .map(|id| {
                let mut b = template.clone();
                b.update_id = id;
                b.transaction_time = HOUR - 70 * MINUTE_MS + rng.i64(0..80 * MINUTE_MS);
                Event::BookTicker(b)
            })
            .collect();
        updates.sort_by_key(|e| match e {
            Event::BookTicker(b) => b.transaction_time,
            _ => 0,
        });
        let mut records = Vec::new();
        while !updates.is_empty() {
            let take = rng.usize(1..60).min(updates.len());
            records.push(Record {
                symbol: "BTCUSDT".into(),
                source: sources[rng.usize(..sources.len())].clone(),
                received_ns: rng.i64(1..4) * 1_000_000_000,
                events: updates.drain(..take).collect(),
            });
        }
        rng.shuffle(&mut records);
        let data = tempfile::tempdir().unwrap();
        let mut log = bml::eventlog::EventLog::open(data.path()).unwrap();
        for record in &records {
            log.push(record).unwrap();
        }
        log.commit().unwrap();
        drop(log);
        let out = support::bml(data.path(), &["materialize"]);
        assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));

        let ledger = bml::ledger::Ledger::open(data.path()).unwrap();
        let from_log = hour_facts(data.path(), &ledger, "BTCUSDT", HOUR).unwrap();
        let (every_record, _) = collect_hour(HOUR, &records);
        let updates = |facts: &HourFacts| -> Vec<(u64, i64)> {
            facts
                .book_tickers
                .iter()
                .map(|b| (b.update_id, b.transaction_time))
                .collect()
        };
        assert_eq!(updates(&from_log), updates(&every_record), "round {round}");
        let named: std::collections::BTreeSet<String> =
            records.iter().map(|r| r.source.to_string()).collect();
        let partition = ledger.partition("BTCUSDT", HOUR).unwrap().unwrap();
        assert_eq!(
            partition
                .sources
                .iter()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            named,
            "round {round}"
        );
        // Some record was skipped: fewer events decoded than the records
        // reaching the two hours hold.
        let reaching: usize = records
            .iter()
            .map(|r| {
                r.events.len()
                    * if r.events.iter().all(|e| e.time() < Some(HOUR - 3_600_000)) {
                        1
                    } else {
                        2
                    }
            })
            .sum();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let decoded: usize = stdout
            .split(" events;")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            decoded < reaching,
            "round {round}: {decoded} of {reaching}: {stdout}"
        );
    }
}
