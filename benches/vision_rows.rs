//! The Vision ingest's per-row work on one thread, stage by stage, over the
//! generated 24-hour day's aggTrades and bookTicker CSVs (inflated into memory
//! first, so inflate and I/O are left out): finding lines; splitting them and
//! parsing the fields (`rows::parse_row`, the reference path); parsing in one
//! pass (`rows::parse`, what the ingest runs); and that with the records of
//! 4 096 rows encoded as the log stores them.
//! Best of five passes, in ns per row. Run: `cargo bench --bench vision_rows`
//! (after `scripts/bench-vision-ingest` generated the day).

mod support;

use std::time::{Duration, Instant};

use bml::event::{Record, Sha256, Source, VisionKind};
use bml::sources::vision::rows;
use bml::sources::vision::split::{Lines, RawLines};

fn main() {
    let Some(day) = support::generated_day() else {
        return;
    };
    for (kind, rel) in [
        (
            VisionKind::AggTrades,
            "aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip",
        ),
        (
            VisionKind::BookTicker,
            "bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-03-01.zip",
        ),
    ] {
        let csv = support::inflate(&format!("{day}/{rel}"));
        let rows = RawLines::new(&csv, 1).skip(1).count();
        let lines = best(|| {
            RawLines::new(&csv, 1)
                .map(|l| l.text().len())
                .sum::<usize>()
        });
        let split_parse = best(|| {
            for line in Lines::new(&csv, 1).skip(1) {
                std::hint::black_box(rows::parse_row(kind, &line).expect("generated rows parse"));
            }
        });
        let parse = best(|| {
            for line in RawLines::new(&csv, 1).skip(1) {
                std::hint::black_box(rows::parse(kind, &line).expect("generated rows parse"));
            }
        });
        let template = Record {
            symbol: "BTCUSDT".into(),
            source: Source::Vision {
                file: rel.into(),
                sha256: Sha256([0; 32]),
            },
            received_ns: 0,
            events: Vec::with_capacity(4096),
        };
        let encode = best(|| {
            let mut record = template.clone();
            let mut bytes = Vec::new();
            let mut total = 0;
            for line in RawLines::new(&csv, 1).skip(1) {
                let event = rows::parse(kind, &line).expect("generated rows parse");
                record.events.push(event);
                if record.events.len() == 4096 {
                    bytes.clear();
                    record.encode_into(&mut bytes);
                    total += bytes.len();
                    record.events.clear();
                }
            }
            total
        });
        let per_row = |d: Duration| d.as_nanos() as f64 / rows as f64;
        println!(
            "{kind:?}: {rows} rows, ns per row: lines {:.1}, split+parse_row {:.1}, parse {:.1}, parse+encode {:.1}",
            per_row(lines),
            per_row(split_parse),
            per_row(parse),
            per_row(encode)
        );
    }
}

/// The fastest of five runs of `work`.
fn best<T>(mut work: impl FnMut() -> T) -> Duration {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(work());
            started.elapsed()
        })
        .min()
        .expect("five runs")
}
