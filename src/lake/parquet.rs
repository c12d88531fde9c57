//! The Parquet bytes of a partition: fixed writer settings, a fixed
//! `created_by`, no clock in any metadata, so the same rows always give the
//! same bytes (and the same content hash in the ledger), whatever the store.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::schema::{schema_hash, Class, ColumnType, COLUMNS};
use crate::schema::{Cell, MinuteRow};

/// The Arrow schema of the canonical table (`spec/schema.md` types; HARD_REQUIRED
/// columns are not nullable).
pub fn arrow_schema() -> Schema {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|c| {
            let ty = match c.ty {
                ColumnType::BigInt | ColumnType::Int => DataType::Int64,
                ColumnType::Float => DataType::Float64,
                ColumnType::Datetime => {
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
                }
            };
            Field::new(c.name, ty, c.class != Class::HardRequired)
        })
        .collect();
    Schema::new(fields)
}

/// The Parquet bytes of `rows` (in the order given): an hour's file.
pub fn encode(rows: &[MinuteRow]) -> anyhow::Result<Vec<u8>> {
    encode_groups(&[rows])
}

/// The Parquet bytes of `groups` of rows, one row group each (empty groups
/// left out): a day's file holds its hours so, and a reader filtering on
/// time skips the hours it does not want by their statistics.
pub fn encode_groups(groups: &[&[MinuteRow]]) -> anyhow::Result<Vec<u8>> {
    let schema = Arc::new(arrow_schema());
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by("bml lake format 1".into())
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "bml.schema_hash".into(),
            hex::encode(schema_hash()),
        )]))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(properties))?;
    for rows in groups.iter().filter(|rows| !rows.is_empty()) {
        writer.write(&batch(&schema, rows)?)?;
        writer.flush()?;
    }
    writer.close()?;
    Ok(bytes)
}

/// The rows as one record batch of the canonical schema.
fn batch(schema: &Arc<Schema>, rows: &[MinuteRow]) -> anyhow::Result<RecordBatch> {
    let cells: Vec<[Cell; 58]> = rows.iter().map(MinuteRow::cells).collect();
    let columns: Vec<ArrayRef> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, column)| -> ArrayRef {
            let ints = || {
                cells.iter().map(|r| match r[i] {
                    Cell::Int(v) => v,
                    Cell::Float(_) => unreachable!("column {} holds integers", column.name),
                })
            };
            match column.ty {
                ColumnType::Float => {
                    Arc::new(Float64Array::from_iter(cells.iter().map(|r| match r[i] {
                        Cell::Float(v) => v,
                        Cell::Int(_) => unreachable!("column {} holds floats", column.name),
                    })))
                }
                ColumnType::Datetime => {
                    Arc::new(TimestampMillisecondArray::from_iter(ints()).with_timezone("UTC"))
                }
                ColumnType::BigInt | ColumnType::Int => Arc::new(Int64Array::from_iter(ints())),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).context("building the record batch")
}
