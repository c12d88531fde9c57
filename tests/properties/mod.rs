//! Properties shared by the fuzz targets in `fuzz/` and the bounded-corpus test
//! `tests/fuzz_corpus.rs` (so CI checks them on stable Rust without a fuzzer).
//! Each test binary and fuzz target uses a part of it.
#![allow(dead_code)]

use bml::event::{Record, VisionKind};
use bml::sources::vision::split::{Chunk, Chunker, Line, Lines, RawLines};
use bml::sources::vision::{rows, ALL_KINDS};

/// Arbitrary bytes as the CSV of an archive (the first byte picks the kind):
/// every row either parses or is an error naming a field of that kind, and
/// the one-pass parser the ingest runs (`rows::parse`) gives exactly the
/// answer of the reference, which splits first (`rows::parse_row`). No panic.
pub fn csv_rows(data: &[u8]) {
    let Some((&pick, csv)) = data.split_first() else {
        return;
    };
    let kind: VisionKind = ALL_KINDS[pick as usize % ALL_KINDS.len()];
    for line in RawLines::new(csv, 1) {
        let reference = rows::parse_row(kind, &line.split());
        if let Err(e) = &reference {
            assert!(
                rows::columns(kind).contains(&e.field),
                "{kind:?}: error names unknown field {}",
                e.field
            );
        }
        assert_eq!(
            rows::parse(kind, &line),
            reference,
            "{kind:?}: {:?}",
            String::from_utf8_lossy(line.text())
        );
    }
}

/// Arbitrary bytes split by the ingest's hand-written splitter, whole and cut
/// into chunks of whole lines (read `data[0]` bytes at a time, into chunks just
/// large enough for the longest line or a little more), and by the csv
/// crate with the settings the ingest used before it: the same records with the
/// same fields. Line numbers are checked by counting: the csv crate's positions
/// leave out the blank lines before a record, the splitter's count every `\n`.
pub fn csv_split(data: &[u8]) {
    let Some((&step, csv_bytes)) = data.split_first() else {
        return;
    };
    let mut oracle = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .quoting(false)
        .from_reader(csv_bytes);
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .expect("no quoting: no error")
    {
        oracle.push(record.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
    }
    let split = |line: Line| {
        let fields: Vec<Vec<u8>> = (0..line.len()).map(|i| line.field(i).to_vec()).collect();
        let again: Vec<Vec<u8>> = line.fields().map(<[u8]>::to_vec).collect();
        assert_eq!(fields, again);
        (line.number(), fields)
    };
    // Newlines counted up to each line's start, from the previous one's.
    let (mut counted_to, mut newlines) = (0, 0);
    let whole: Vec<_> = Lines::new(csv_bytes, 1)
        .inspect(|line| {
            let start = line.text().as_ptr() as usize - csv_bytes.as_ptr() as usize;
            newlines += csv_bytes[counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted_to = start;
            assert_eq!(line.number(), newlines as u64 + 1, "line at byte {start}");
        })
        .map(split)
        .collect();
    let fields: Vec<_> = whole.iter().map(|(_, f)| f.clone()).collect();
    assert_eq!(fields, oracle, "split whole");

    let mut chunked = Vec::new();
    // A chunk holds at least one line end past a carried partial line.
    let longest = csv_bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    let capacity = longest + 1 + usize::from(step) % 32;
    let trickle = Trickle(csv_bytes, usize::from(step).max(1));
    let mut chunker = Chunker::with_capacity(trickle, capacity);
    let mut chunk = Chunk::default();
    while chunker
        .next_into(&mut chunk)
        .expect("lines shorter than a chunk")
    {
        chunked.extend(chunk.lines().map(|raw| split(raw.split())));
    }
    assert_eq!(
        chunked, whole,
        "split in chunks of {capacity} bytes, reads of {step} bytes"
    );
}

/// A reader that hands out at most `.1` bytes a read.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Arbitrary bytes as a log record: decoding never panics, and whatever decodes
/// re-encodes to bytes that decode to the same record.
pub fn event_decode(data: &[u8]) {
    if let Ok(record) = Record::decode(data) {
        let again =
            Record::decode(&record.encode()).expect("a decoded record re-encodes decodably");
        assert_eq!(again, record);
    }
}

/// Materializer determinism: one fixed set of facts (Vision files, REST copies
/// that agree and disagree, live streams, an aborted Vision attempt that must
/// stay invisible) appended in the order, duplication, batching and
/// materialize-run splits that `data` chooses gives the lake files and the
/// ledger digest of the canonical arrangement.
pub fn materialize_determinism(data: &[u8]) {
    static CANONICAL: std::sync::OnceLock<determinism::Outcome> = std::sync::OnceLock::new();
    let canonical = CANONICAL.get_or_init(|| determinism::play(&determinism::canonical()));
    let arranged = determinism::arrange(data);
    assert_eq!(&determinism::play(&arranged), canonical, "{arranged:?}");
}

pub mod determinism {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::str::FromStr;

    use bml::event::{
        AggTrade, BookTicker, Decimal, DepthDiff, DepthSnapshot, Event, FundingRate, Kline,
        KlineKind, Liquidation, MarkPrice, Metrics, Record, Sha256, Side, Source, StreamStatus,
        VisionFileIngested, VisionKind,
    };
    use bml::eventlog::EventLog;
    use bml::ledger::Ledger;
    use bml::materialize::run;
    use bml::progress::Silent;

    /// 2024-03-01T00:00Z, the first of the two hours.
    const HOUR: i64 = 1_709_251_200_000;
    const MINUTE: i64 = 60_000;

    /// A unit that is appended whole: a Vision file's rows then its marker, or
    /// one REST / WebSocket record.
    #[derive(Debug, Clone)]
    pub struct Block {
        /// The block's source.
        pub source: Source,
        /// Its events (market data; a Vision block gets its marker on append).
        pub events: Vec<Event>,
        /// Vision only: append the marker (false: an aborted attempt).
        pub committed: bool,
    }

    /// What to append and when to materialize.
    #[derive(Debug, Clone)]
    pub struct Arrangement {
        /// Blocks in append order, with the batch size of their records.
        pub blocks: Vec<(usize, usize)>,
        /// Run the materializer after these block positions (and at the end).
        pub runs_after: Vec<usize>,
    }

    /// Lake files (relative path → bytes) and the ledger digest.
    /// The hour layout's files, the ledger's digest, and the files of the
    /// same log materialized in the day layout (every day closed).
    pub type Outcome = (
        BTreeMap<String, Vec<u8>>,
        [u8; 32],
        BTreeMap<String, Vec<u8>>,
    );

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn kline(kind: KlineKind, minute: i64, close: &str) -> Event {
        let base = 60_000 + minute % 7;
        Event::Kline(Kline {
            kind,
            interval_ms: MINUTE,
            open_time: HOUR + minute * MINUTE,
            open: d(&format!("{base}.5")),
            high: d(&format!("{}.0", base + 20)),
            low: d(&format!("{}.0", base - 20)),
            close: d(close),
            volume: d("3.000"),
            close_time: HOUR + minute * MINUTE + MINUTE - 1,
            quote_volume: d("180000.0"),
            trade_count: 3,
            taker_buy_volume: d("1.000"),
            taker_buy_quote_volume: d("60000.0"),
            closed: true,
        })
    }

    fn vision(file: &str, events: Vec<Event>, committed: bool) -> Block {
        let sha = if committed { [1; 32] } else { [2; 32] };
        Block {
            source: Source::Vision {
                file: file.into(),
                sha256: Sha256(sha),
            },
            events,
            committed,
        }
    }

    /// The fact set: two hours of klines of every kind from Vision, aggTrades,
    /// bookTicker (also in the hour before, for the look-back), metrics, a REST
    /// funding settlement, REST kline copies (some disagreeing), a liquidation
    /// stream connected for part of the first hour, mark price updates.
    pub fn blocks() -> Vec<Block> {
        let mut blocks = Vec::new();
        for (kind, name) in [
            (KlineKind::Trade, "klines"),
            (KlineKind::Mark, "markPriceKlines"),
            (KlineKind::Index, "indexPriceKlines"),
            (KlineKind::Premium, "premiumIndexKlines"),
        ] {
            let events = (0..120)
                .map(|m| kline(kind, m, &format!("{}.25", 60_000 + m % 11)))
                .collect();
            blocks.push(vision(
                &format!("daily/{name}/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip"),
                events,
                true,
            ));
        }
        let trades = (0..90u64)
            .map(|i| {
                Event::AggTrade(AggTrade {
                    agg_trade_id: 1_000 + i,
                    price: d(&format!("{}.{}", 60_000 + i % 13, i % 10)),
                    quantity: d(&format!("{}.{:03}", i % 3, i * 7 % 1000)),
                    first_trade_id: 5_000 + 2 * i,
                    last_trade_id: 5_001 + 2 * i,
                    transact_time: HOUR + (i as i64) * 47_000,
                    is_buyer_maker: i % 3 == 0,
                })
            })
            .collect();
        blocks.push(vision("BTCUSDT-aggTrades-2024-03-01.zip", trades, true));
        let book = (0..150u64)
            .map(|i| {
                let t = HOUR - 40 * MINUTE + (i as i64) * 41_000;
                Event::BookTicker(BookTicker {
                    update_id: 90_000 + i,
                    bid_price: d(&format!("{}.1", 60_000 + i % 5)),
                    bid_qty: d(&format!("{}.5", 1 + i % 4)),
                    ask_price: d(&format!("{}.2", 60_000 + i % 5)),
                    ask_qty: d(&format!("{}.25", 2 + i % 3)),
                    transaction_time: t,
                    event_time: t + 3,
                })
            })
            .collect();
        blocks.push(vision("BTCUSDT-bookTicker-2024-03-01.zip", book, true));
        let metrics = (0..30)
            .map(|i| {
                Event::Metrics(Metrics {
                    create_time: HOUR - 30 * MINUTE + i * 5 * MINUTE,
                    sum_open_interest: Some(d(&format!("{}.5", 80_000 + i))),
                    sum_open_interest_value: Some(d(&format!("{}.0", 4_800_000_000 + i))),
                    count_toptrader_long_short_ratio: Some(d("1.25")),
                    sum_toptrader_long_short_ratio: Some(d("1.5")),
                    count_long_short_ratio: Some(d("0.875")),
                    sum_taker_long_short_vol_ratio: Some(d("1.01")),
                })
            })
            .collect();
        blocks.push(vision("BTCUSDT-metrics-2024-03-01.zip", metrics, true));
        // An attempt that died before its marker, with other values: never seen.
        blocks.push(vision(
            "daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
            (0..120)
                .map(|m| kline(KlineKind::Trade, m, "1.0"))
                .collect(),
            false,
        ));
        let rest = |endpoint: &str, events: Vec<Event>| Block {
            source: Source::Rest {
                endpoint: endpoint.into(),
            },
            events,
            committed: true,
        };
        blocks.push(rest(
            "/fapi/v1/fundingRate",
            vec![Event::FundingRate(FundingRate {
                funding_time: HOUR - 2 * 3_600_000,
                rate: d("0.000125"),
                interval_hours: Some(8),
                mark_price: Some(d("60000.5")),
            })],
        ));
        // REST copies of Vision klines: ten that agree, three that do not.
        blocks.push(rest(
            "/fapi/v1/klines",
            (30..40)
                .map(|m| kline(KlineKind::Trade, m, &format!("{}.25", 60_000 + m % 11)))
                .chain((50..53).map(|m| kline(KlineKind::Trade, m, "59999.75")))
                .collect(),
        ));
        let ws = |stream: &str, _received_ms: i64, events: Vec<Event>| Block {
            source: Source::WebSocket {
                stream: stream.into(),
                connection: 1,
            },
            events,
            committed: true,
        };
        let status = |time: i64, reason: &str| StreamStatus {
            stream: "btcusdt@forceOrder".into(),
            connection: 1,
            time,
            reason: reason.into(),
        };
        let liquidation = |time: i64, side: Side| {
            Event::Liquidation(Liquidation {
                event_time: time,
                side,
                orig_qty: d("0.5"),
                price: d("59000.0"),
                avg_price: d("59010.5"),
                status: "FILLED".into(),
                last_filled_qty: d("0.25"),
                filled_qty: d("0.5"),
                trade_time: time,
            })
        };
        let connected = HOUR + 10 * MINUTE;
        blocks.push(ws(
            "btcusdt@forceOrder",
            connected,
            vec![Event::StreamConnected(status(connected, ""))],
        ));
        for (i, side) in [(12, Side::Sell), (15, Side::Buy), (15, Side::Sell)] {
            let t = HOUR + i * MINUTE + 1_234;
            blocks.push(ws("btcusdt@forceOrder", t, vec![liquidation(t, side)]));
        }
        let dropped = HOUR + 40 * MINUTE;
        blocks.push(ws(
            "btcusdt@forceOrder",
            dropped,
            vec![Event::StreamDisconnected(status(dropped, "closed"))],
        ));
        // The connection's heartbeat from 10:00 to 40:00 (its second-by-second
        // mark price) in three records, so that stretches join in any order:
        // minutes 10–39 are watched, covered and quiet unless a liquidation.
        for third in 0..3 {
            let from = connected + third * 10 * MINUTE;
            let beats = (0..600)
                .map(|s| {
                    Event::MarkPrice(MarkPrice {
                        event_time: from + s * 1_000 + 7,
                        mark_price: d("60001.5"),
                        index_price: d("60000.5"),
                        estimated_settle_price: d("60000.75"),
                        funding_rate: d("0.0001"),
                        next_funding_time: HOUR + 8 * 3_600_000,
                    })
                })
                .collect();
            blocks.push(ws("btcusdt@markPrice@1s", from, beats));
        }
        for i in 0..4 {
            let t = HOUR + 3_600_000 + i * 7 * MINUTE;
            let mark = Event::MarkPrice(MarkPrice {
                event_time: t,
                mark_price: d("60001.5"),
                index_price: d("60000.5"),
                estimated_settle_price: d("60000.75"),
                funding_rate: d("0.0001"),
                next_funding_time: HOUR + 8 * 3_600_000,
            });
            blocks.push(ws("btcusdt@markPrice@1s", t, vec![mark]));
        }
        blocks.extend(depth_blocks());
        blocks
    }

    /// The first depth diff's time: 00:04.
    pub const DEPTH_FROM: i64 = HOUR + 4 * MINUTE;
    /// Diffs every 30 s from [`DEPTH_FROM`] to 01:29:30; the one at 00:30
    /// breaks the `pu` chain.
    const DEPTH_EVERY: i64 = 30_000;
    const DEPTH_DIFFS: i64 = 172;
    const DEPTH_BREAK: i64 = 52;

    /// An L2 book: diffs on two redundant connections (batched unlike each
    /// other), a snapshot bracketed by the second diff, a `pu` break at 00:30
    /// and a snapshot at 00:33 bracketed by the diff then.
    fn depth_blocks() -> Vec<Block> {
        let first_id = |k: i64| 1_000 + 10 * k as u64;
        let diff = |k: i64| {
            let (bid, ask) = (59_999 - k % 5, 60_001 + k % 5);
            let qty = format!("{}.{:03}", 1 + k % 3, k * 7 % 1000);
            Event::DepthDiff(DepthDiff {
                event_time: DEPTH_FROM + k * DEPTH_EVERY,
                transaction_time: DEPTH_FROM + k * DEPTH_EVERY - 4,
                first_update_id: first_id(k),
                final_update_id: first_id(k) + 9,
                prev_final_update_id: first_id(k) - 1 - u64::from(k == DEPTH_BREAK),
                bids: vec![(d(&format!("{bid}.0")), d(&qty))],
                asks: vec![(d(&format!("{ask}.0")), d(&qty))],
            })
        };
        let mut blocks = Vec::new();
        for (connection, batch) in [(7, 60), (8, 90)] {
            let diffs: Vec<Event> = (0..DEPTH_DIFFS).map(diff).collect();
            for chunk in diffs.chunks(batch) {
                blocks.push(Block {
                    source: Source::WebSocket {
                        stream: "btcusdt@depth@100ms".into(),
                        connection,
                    },
                    events: chunk.to_vec(),
                    committed: true,
                });
            }
        }
        let snapshot = |k: i64| {
            let level = |p: i64| (d(&format!("{p}.0")), d("1.000"));
            Event::DepthSnapshot(DepthSnapshot {
                last_update_id: first_id(k) + 3,
                event_time: DEPTH_FROM + k * DEPTH_EVERY + 5,
                transaction_time: DEPTH_FROM + k * DEPTH_EVERY + 5,
                bids: (0..20).map(|i| level(59_999 - i)).collect(),
                asks: (0..20).map(|i| level(60_001 + i)).collect(),
            })
        };
        for k in [1, DEPTH_BREAK + 6] {
            blocks.push(Block {
                source: Source::Rest {
                    endpoint: "/fapi/v1/depth".into(),
                },
                events: vec![snapshot(k)],
                committed: true,
            });
        }
        blocks
    }

    /// Every block once, in order, in one batch each; one run at the end.
    pub fn canonical() -> Arrangement {
        Arrangement {
            blocks: (0..blocks().len()).map(|b| (b, usize::MAX)).collect(),
            runs_after: Vec::new(),
        }
    }

    /// The arrangement `data` chooses: an order (a sort key per block), copies
    /// (a block appended up to three times), batch sizes, and materialize runs
    /// between blocks.
    pub fn arrange(data: &[u8]) -> Arrangement {
        let n = blocks().len();
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let mut keyed: Vec<(u8, usize, usize)> = Vec::new();
        for block in 0..n {
            let copies = 1 + byte(3 * block + 1) as usize % 3;
            for copy in 0..copies {
                keyed.push((byte(3 * block).wrapping_add(copy as u8 * 97), block, copy));
            }
        }
        keyed.sort();
        let blocks = keyed
            .iter()
            .enumerate()
            .map(|(i, &(_, block, _))| (block, 1 + byte(3 * block + 2 + i) as usize % 64))
            .collect::<Vec<_>>();
        let runs_after = (0..blocks.len())
            .filter(|&i| byte(3 * n + i) % 5 == 0 && !data.is_empty())
            .collect();
        Arrangement { blocks, runs_after }
    }

    /// Appends the arrangement to a fresh log, materializes as it says, and
    /// returns what a user would see.
    pub fn play(arrangement: &Arrangement) -> Outcome {
        let all = blocks();
        let data = tempfile::tempdir().expect("temp dir");
        let lake = data.path().join("lake");
        let options = run::Options {
            from: None,
            lake: bml::lake::Lake::local(&lake),
            layout: None,
            days_closed_before: 0,
            jobs: 2,
            rebuild_ledger: false,
            rederive: Default::default(),
            as_of: None,
        };
        // The same log beside it, materialized in the day layout.
        let day_data = tempfile::tempdir().expect("temp dir");
        let day_lake = day_data.path().join("lake");
        let day_options = run::Options {
            lake: bml::lake::Lake::local(&day_lake),
            layout: Some(bml::lake::Layout::Day),
            days_closed_before: i64::MAX,
            ..options.clone()
        };
        let mut logs = [data.path(), day_data.path()].map(|d| EventLog::open(d).expect("log"));
        let push = |logs: &mut [EventLog; 2], record: &Record| {
            for log in logs {
                log.push(record).expect("push");
            }
        };
        for (position, &(index, batch)) in arrangement.blocks.iter().enumerate() {
            let block = &all[index];
            let first_offset = logs[0].next_offset();
            for chunk in block.events.chunks(batch.min(block.events.len()).max(1)) {
                push(
                    &mut logs,
                    &Record {
                        symbol: "BTCUSDT".into(),
                        source: block.source.clone(),
                        received_ns: received(block) * 1_000_000,
                        events: chunk.to_vec(),
                    },
                );
            }
            if let (Source::Vision { file, sha256 }, true) = (&block.source, block.committed) {
                push(
                    &mut logs,
                    &Record {
                        symbol: "BTCUSDT".into(),
                        source: block.source.clone(),
                        received_ns: 0,
                        events: vec![Event::VisionFileIngested(VisionFileIngested {
                            kind: VisionKind::Klines,
                            period: "2024-03-01".into(),
                            file: file.clone(),
                            sha256: *sha256,
                            rows: block.events.len() as u64,
                            first_offset,
                            replaces: None,
                        })],
                    },
                );
            }
            for log in &mut logs {
                log.commit().expect("commit");
            }
            if arrangement.runs_after.contains(&position) {
                run::run(data.path(), &options, &Silent).expect("materialize");
                run::run(day_data.path(), &day_options, &Silent).expect("materialize days");
            }
        }
        run::run(data.path(), &options, &Silent).expect("materialize");
        run::run(day_data.path(), &day_options, &Silent).expect("materialize days");
        // Whatever the arrangement, the lake it left proves against its log.
        let audit = bml::audit::Options {
            lake: bml::lake::Lake::local(&lake),
            symbols: Default::default(),
            hours: None,
            jobs: 2,
            repair: false,
        };
        let audited = bml::audit::run(data.path(), &audit, &Silent).expect("audit");
        assert_eq!(audited.problems(), 0, "{audited:?}");
        let digest = Ledger::open(data.path())
            .expect("ledger")
            .digest()
            .expect("digest");
        (files(&lake), digest, files(&day_lake))
    }

    /// A record's arrival: for live data, its own time (so the stream's span is
    /// a property of the facts); for the rest, a constant.
    fn received(block: &Block) -> i64 {
        match (&block.source, block.events.first()) {
            (Source::WebSocket { .. }, Some(Event::Liquidation(l))) => l.trade_time,
            (Source::WebSocket { .. }, Some(Event::StreamConnected(s)))
            | (Source::WebSocket { .. }, Some(Event::StreamDisconnected(s))) => s.time,
            (Source::WebSocket { .. }, Some(Event::MarkPrice(m))) => m.event_time,
            (Source::WebSocket { .. }, Some(Event::DepthDiff(d))) => d.event_time + 25,
            (Source::Rest { .. }, Some(Event::DepthSnapshot(s))) => s.event_time,
            _ => HOUR,
        }
    }

    fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
        bml::lake::files(root)
            .expect("lake listing")
            .into_iter()
            .map(|rel| {
                let bytes = std::fs::read(root.join(&rel)).expect("read");
                (rel.display().to_string(), bytes)
            })
            .collect()
    }
}
