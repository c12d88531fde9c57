//! What the benchmarks over the generated 24-hour Vision day share.

use std::io::Read;

/// The generated day's `daily` directory, or `None` (with a hint printed)
/// until `scripts/bench-vision-ingest` has generated it.
pub fn generated_day() -> Option<&'static str> {
    let day = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/bench/vision-day/data/futures/um/daily"
    );
    if !std::path::Path::new(day).exists() {
        eprintln!("no generated day at {day}: run scripts/bench-vision-ingest once");
        return None;
    }
    Some(day)
}

/// The single CSV entry of a Vision zip, inflated.
pub fn inflate(path: &str) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("the generated day's archive opens");
    let mut zip = zip::ZipArchive::new(file).expect("a zip");
    let mut csv = Vec::new();
    zip.by_index(0)
        .expect("one entry")
        .read_to_end(&mut csv)
        .expect("inflates");
    csv
}
