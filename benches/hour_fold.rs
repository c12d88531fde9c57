//! Baseline for the materializer's fold: a generated 24-hour Vision day (see
//! `scripts/bench-vision-ingest`, which generates it into target/bench/vision-day),
//! parsed into events, then per hour the `Collector` → `build_hour` →
//! `lake::encode`. Reports events/s of the fold. Run:
//! `cargo bench --bench hour_fold`.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use bml::event::{Event, Record, Sha256, Source, VisionKind};
use bml::materialize::collect::Collector;
use bml::materialize::hour::build_hour;
use bml::sources::vision::{rows, split::RawLines};
use bml::time::HOUR_MS;

fn main() {
    let Some(day) = support::generated_day() else {
        return;
    };
    let kinds = [
        (
            VisionKind::Klines,
            "klines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
        ),
        (
            VisionKind::MarkPriceKlines,
            "markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
        ),
        (
            VisionKind::IndexPriceKlines,
            "indexPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
        ),
        (
            VisionKind::PremiumIndexKlines,
            "premiumIndexKlines/BTCUSDT/1m/BTCUSDT-1m-2024-03-01.zip",
        ),
        (
            VisionKind::AggTrades,
            "aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip",
        ),
        (
            VisionKind::BookTicker,
            "bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-03-01.zip",
        ),
        (
            VisionKind::Metrics,
            "metrics/BTCUSDT/BTCUSDT-metrics-2024-03-01.zip",
        ),
    ];
    // Records of one hour each, as the Vision appender writes them.
    let mut by_hour: BTreeMap<i64, Vec<Record>> = BTreeMap::new();
    let mut events_total = 0usize;
    for (kind, rel) in kinds {
        let csv = support::inflate(&format!("{day}/{rel}"));
        let mut hours: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for line in RawLines::new(&csv, 1) {
            if rows::is_header(&line) {
                continue;
            }
            let event = rows::parse(kind, &line).unwrap();
            hours
                .entry(event.time().unwrap_or_default().div_euclid(HOUR_MS) * HOUR_MS)
                .or_default()
                .push(event);
            events_total += 1;
        }
        for (hour, events) in hours {
            for chunk in events.chunks(4096) {
                by_hour.entry(hour).or_default().push(Record {
                    symbol: "BTCUSDT".into(),
                    source: Source::Vision {
                        file: rel.into(),
                        sha256: Sha256([0; 32]),
                    },
                    received_ns: 0,
                    events: chunk.to_vec(),
                });
            }
        }
    }
    let hours: Vec<i64> = by_hour.keys().copied().collect();
    // One collector for every hour, as a materializer worker keeps one.
    let mut collector = Collector::new(0);
    let start = Instant::now();
    let (mut rows_out, mut bytes_out, mut folded) = (0usize, 0usize, 0usize);
    for &hour in &hours {
        let input: Vec<&Record> = by_hour
            .range(hour - HOUR_MS..=hour)
            .flat_map(|(_, records)| records.iter())
            .collect();
        folded += input.iter().map(|r| r.events.len()).sum::<usize>();
        collector.start(hour);
        for record in input {
            collector.add(record);
        }
        let (facts, _) = collector.finish();
        let out = build_hour(&facts);
        collector.reuse(facts);
        rows_out += out.rows.len();
        bytes_out += bml::lake::encode(&out.rows).unwrap().len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} hours, {events_total} events in the day ({folded} folded with look-back), {rows_out} rows, {bytes_out} Parquet bytes: {secs:.2} s, {:.2} M day-events/s, {:.2} M folded events/s",
        hours.len(),
        events_total as f64 / secs / 1e6,
        folded as f64 / secs / 1e6
    );
}
