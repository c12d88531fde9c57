//! Properties shared by the fuzz targets in `fuzz/` and the bounded-corpus test
//! `tests/fuzz_corpus.rs` (so CI checks them on stable Rust without a fuzzer).

use bml::event::{Record, VisionKind};
use bml::sources::vision::{rows, ALL_KINDS};

/// Arbitrary bytes as the CSV of an archive (the first byte picks the kind):
/// every row either parses or is an error naming a field of that kind. No panic.
pub fn csv_rows(data: &[u8]) {
    let Some((&pick, csv)) = data.split_first() else {
        return;
    };
    let kind: VisionKind = ALL_KINDS[pick as usize % ALL_KINDS.len()];
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv);
    for record in reader.byte_records() {
        let Ok(record) = record else { continue };
        if let Err(e) = rows::parse_row(kind, &record) {
            assert!(
                rows::columns(kind).contains(&e.field),
                "{kind:?}: error names unknown field {}",
                e.field
            );
        }
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
