//! The column table in `src/schema.rs` is the contract in `spec/schema.md`:
//! same columns, same order, same types and classes. Read from the spec itself.

use std::path::Path;

use bml::schema::{schema_hash, schema_text, Class, ColumnClass, COLUMNS};

#[test]
fn columns_match_the_spec_table_row_for_row() {
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/schema.md"),
    )
    .unwrap();
    let rows: Vec<Vec<&str>> = spec
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() > 5 && cells[1].parse::<usize>().is_ok()).then(|| cells[1..5].to_vec())
        })
        .collect();
    assert_eq!(rows.len(), 58);
    assert_eq!(COLUMNS.len(), 58);
    for (row, column) in rows.iter().zip(COLUMNS.iter()) {
        let ours = [column.name, column.ty.spec_name(), column.class.spec_name()];
        assert_eq!(&row[1..4], ours, "column #{}", row[0]);
    }
}

#[test]
fn the_schema_hash_covers_every_column_definition() {
    let text = schema_text();
    assert_eq!(text.lines().count(), 58);
    assert!(text.starts_with("event_time|BigInt|LIVE_ONLY|1\n"));
    assert!(text.ends_with("next_funding_time|BigInt|LIVE_ONLY|1\n"));
    let hash = schema_hash();
    assert_eq!(hash, schema_hash(), "stable");
    assert_eq!(
        hex::encode(hash),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))
    );
}

/// The column classes the audit reports coverage in: every column but the
/// minute itself (#8) in exactly one, live-only columns only in live-only
/// classes, and `ALL` in declaration order (a class indexes it).
#[test]
fn column_classes_partition_the_columns() {
    let mut seen = [0usize; 59];
    for (i, class) in ColumnClass::ALL.into_iter().enumerate() {
        assert_eq!(class as usize, i, "{class:?}");
        for &n in class.columns() {
            seen[n] += 1;
            let live = COLUMNS[n - 1].class == Class::LiveOnly;
            assert_eq!(
                live,
                class.support() == Class::LiveOnly,
                "column #{n} in {class:?}"
            );
        }
    }
    for (n, &times) in seen.iter().enumerate().skip(1) {
        assert_eq!(times, usize::from(n != 8), "column #{n}");
    }
}
