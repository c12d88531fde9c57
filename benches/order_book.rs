//! The L2 book's cost: a made-up day of BTCUSDT-like `@depth@100ms` (864 000
//! diffs of about 20 levels around a random-walk mid, a 1 000-level snapshot
//! every 30 minutes), then
//! 1. the rebuild alone on one core (`order_book::rebuild` per hour, each
//!    walking its hour and the hour before): diffs walked per second;
//! 2. the whole day's `materialize` with two jobs, from a log holding one
//!    record per diff (as `bml ingest live` writes them), the snapshots, and
//!    trade/mark/index klines so that every minute is a row.
//!
//! Run: `cargo bench --bench order_book` (figures in docs/order-book.md);
//! `BML_BENCH_ONLY=rebuild` stops after the first part (for a profiler).

use std::collections::BTreeMap;
use std::time::Instant;

use bml::event::{
    Decimal, DepthDiff, DepthSnapshot, Event, Kline, KlineKind, Level, Record, Source,
};
use bml::eventlog::EventLog;
use bml::materialize::order_book;
use bml::materialize::run;
use bml::progress::Silent;
use bml::time::{HOUR_MS, MINUTE_MS};

const DAY: i64 = 1_709_251_200_000; // 2024-03-01
const TICK_MS: i64 = 100;
const DIFFS: i64 = 864_000;
const SNAPSHOT_EVERY: i64 = 30 * MINUTE_MS;

fn price(steps: i64) -> Decimal {
    Decimal::new(steps, 1).expect("scale 1")
}

fn qty(thousandths: i64) -> Decimal {
    Decimal::new(thousandths, 3).expect("scale 3")
}

/// A model book in price steps of 0.1 (bids and asks: step → size).
struct Model {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    mid: i64,
}

impl Model {
    fn snapshot(&self, last_update_id: u64, time: i64) -> DepthSnapshot {
        let side = |levels: &mut dyn Iterator<Item = (&i64, &i64)>| -> Vec<Level> {
            levels
                .take(1000)
                .map(|(&p, &q)| (price(p), qty(q)))
                .collect()
        };
        DepthSnapshot {
            last_update_id,
            event_time: time,
            transaction_time: time,
            bids: side(&mut self.bids.iter().rev()),
            asks: side(&mut self.asks.iter()),
        }
    }
}

/// The day: diffs (one per tick) and snapshots (every 30 minutes).
fn day() -> (Vec<DepthDiff>, Vec<DepthSnapshot>) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mid = 600_000; // 60 000.0
    let mut model = Model {
        bids: (1..=1500)
            .map(|i| (mid - i, 1 + rng.i64(0..2000)))
            .collect(),
        asks: (1..=1500)
            .map(|i| (mid + i, 1 + rng.i64(0..2000)))
            .collect(),
        mid,
    };
    let (mut diffs, mut snapshots) = (Vec::with_capacity(DIFFS as usize), Vec::new());
    let mut last_u = 10_000_000_000u64;
    for k in 0..DIFFS {
        let time = DAY + k * TICK_MS;
        model.mid += rng.i64(-1..=1);
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let bid = rng.bool();
            let offset = 1 + (rng.f64().powi(3) * 400.0) as i64;
            let (side, out, at) = if bid {
                (&mut model.bids, &mut bids, model.mid - offset)
            } else {
                (&mut model.asks, &mut asks, model.mid + offset)
            };
            let size = if rng.u8(..) < 40 {
                0
            } else {
                1 + rng.i64(0..3000)
            };
            if size == 0 {
                side.remove(&at);
            } else {
                side.insert(at, size);
            }
            out.push((price(at), qty(size)));
        }
        // Levels the mid moved through leave the other side.
        let crossed_bids: Vec<i64> = model.bids.range(model.mid..).map(|(p, _)| *p).collect();
        for p in crossed_bids {
            model.bids.remove(&p);
            bids.push((price(p), qty(0)));
        }
        let crossed_asks: Vec<i64> = model.asks.range(..=model.mid).map(|(p, _)| *p).collect();
        for p in crossed_asks {
            model.asks.remove(&p);
            asks.push((price(p), qty(0)));
        }
        // Ids are shared with other symbols: gaps between diffs are normal.
        let first = last_u + 1 + rng.u64(0..50);
        let u = first + rng.u64(0..30);
        diffs.push(DepthDiff {
            event_time: time,
            transaction_time: time - 2,
            first_update_id: first,
            final_update_id: u,
            prev_final_update_id: last_u,
            bids,
            asks,
        });
        last_u = u;
        if (time - DAY) % SNAPSHOT_EVERY == 50 * TICK_MS {
            snapshots.push(model.snapshot(u, time + 30));
        }
    }
    (diffs, snapshots)
}

fn main() {
    let started = Instant::now();
    let (diffs, snapshots) = day();
    let levels: usize = diffs.iter().map(|d| d.bids.len() + d.asks.len()).sum();
    println!(
        "generated {} diffs ({:.1} levels each) and {} snapshots in {:.1} s",
        diffs.len(),
        levels as f64 / diffs.len() as f64,
        snapshots.len(),
        started.elapsed().as_secs_f64()
    );

    // 1. The rebuild alone, one core.
    let with_arrival: Vec<(DepthDiff, i64)> = diffs
        .iter()
        .map(|d| (d.clone(), d.event_time + 20))
        .collect();
    let (mut walked, mut in_sync) = (0usize, 0u32);
    let started = Instant::now();
    for hour in (DAY..DAY + 24 * HOUR_MS).step_by(HOUR_MS as usize) {
        let window = |t: i64| (hour - HOUR_MS..hour + HOUR_MS).contains(&t);
        let from = with_arrival.partition_point(|(d, _)| d.event_time < hour - HOUR_MS);
        let to = with_arrival.partition_point(|(d, _)| d.event_time < hour + HOUR_MS);
        let shots: Vec<DepthSnapshot> = snapshots
            .iter()
            .filter(|s| window(s.event_time))
            .cloned()
            .collect();
        let book = order_book::rebuild(hour, &shots, &with_arrival[from..to]);
        walked += to - from;
        in_sync += book.health.minutes_in_sync;
        assert_eq!(book.health.breaks, 0);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rebuild, one core: {walked} diffs walked (each hour and its look-back) in {seconds:.2} s: {:.2} M diffs/s; {in_sync} of 1440 minutes in sync",
        walked as f64 / seconds / 1e6
    );

    if std::env::var("BML_BENCH_ONLY").is_ok_and(|only| only == "rebuild") {
        return;
    }

    // 2. The day's materialize, two jobs.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = EventLog::open(dir.path()).expect("log");
    let started = Instant::now();
    for d in diffs {
        log.push(&Record {
            symbol: "BTCUSDT".into(),
            source: Source::WebSocket {
                stream: "btcusdt@depth@100ms".into(),
                connection: 1,
            },
            received_ns: (d.event_time + 20) * 1_000_000,
            events: vec![Event::DepthDiff(d)],
        })
        .expect("push");
    }
    for s in snapshots {
        log.push(&Record {
            symbol: "BTCUSDT".into(),
            source: Source::Rest {
                endpoint: "/fapi/v1/depth".into(),
            },
            received_ns: s.event_time * 1_000_000,
            events: vec![Event::DepthSnapshot(s)],
        })
        .expect("push");
    }
    for kind in [KlineKind::Trade, KlineKind::Mark, KlineKind::Index] {
        let klines = (0..1440)
            .map(|m| {
                let open_time = DAY + m * MINUTE_MS;
                Event::Kline(Kline {
                    kind,
                    interval_ms: MINUTE_MS,
                    open_time,
                    open: price(600_000),
                    high: price(600_010),
                    low: price(599_990),
                    close: price(600_001),
                    volume: qty(0),
                    close_time: open_time + MINUTE_MS - 1,
                    quote_volume: qty(0),
                    trade_count: 0,
                    taker_buy_volume: qty(0),
                    taker_buy_quote_volume: qty(0),
                    closed: true,
                })
            })
            .collect();
        log.push(&Record {
            symbol: "BTCUSDT".into(),
            source: Source::Rest {
                endpoint: "/fapi/v1/klines".into(),
            },
            received_ns: DAY * 1_000_000,
            events: klines,
        })
        .expect("push");
    }
    log.commit().expect("commit");
    drop(log);
    let size: u64 = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "log: written in {:.1} s, {:.0} MiB",
        started.elapsed().as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    let options = run::Options {
        from: None,
        lake: bml::lake::Lake::local(dir.path().join("lake")),
        layout: None,
        days_closed_before: 0,
        jobs: 2,
        rebuild_ledger: false,
        rederive: Default::default(),
        as_of: None,
    };
    let started = Instant::now();
    let summary = run::run(dir.path(), &options, &Silent).expect("materialize");
    println!(
        "materialize, 2 jobs: {} hours, {} rows in {:.2} s",
        summary.hours,
        summary.rows,
        started.elapsed().as_secs_f64()
    );
}
