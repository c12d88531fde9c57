//! The lake: one Parquet file per symbol-hour in a hive layout, written
//! byte-deterministically and committed atomically.
//!
//! `{root}/futures/um/minute/symbol=SYM/year=YYYY/month=MM/day=DD/hour=HH/part.parquet`
//!
//! Byte-deterministic: fixed writer settings, a fixed `created_by`, no clock in
//! any metadata, so the same rows always give the same bytes (and the same
//! content hash in the ledger). Atomic: written to a temporary file in the same
//! directory, synced, renamed over the old file, directory synced; a crash leaves
//! the old file or the new one, never half of either.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::Digest;

use crate::schema::{schema_hash, Class, ColumnType, COLUMNS};
use crate::schema::{Cell, MinuteRow};

/// What writing a partition produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes.
    pub content_hash: [u8; 32],
    /// Its size.
    pub bytes: u64,
}

/// The path of a symbol-hour's partition under `root`.
pub fn partition_path(root: &Path, symbol: &str, hour_start: i64) -> PathBuf {
    let t = DateTime::from_timestamp_millis(hour_start).expect("hour start in range");
    root.join("futures/um/minute")
        .join(format!("symbol={symbol}"))
        .join(format!("year={:04}", t.year()))
        .join(format!("month={:02}", t.month()))
        .join(format!("day={:02}", t.day()))
        .join(format!("hour={:02}", t.hour()))
        .join("part.parquet")
}

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

/// The Parquet bytes of `rows` (in the order given).
pub fn encode(rows: &[MinuteRow]) -> anyhow::Result<Vec<u8>> {
    let cells: Vec<[Cell; 58]> = rows.iter().map(MinuteRow::cells).collect();
    let schema = Arc::new(arrow_schema());
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
    let batch =
        RecordBatch::try_new(schema.clone(), columns).context("building the record batch")?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by("bml lake format 1".into())
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "bml.schema_hash".into(),
            hex::encode(schema_hash()),
        )]))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(bytes)
}

/// Writes a symbol-hour's partition and commits it atomically.
pub fn write_partition(
    root: &Path,
    symbol: &str,
    hour_start: i64,
    rows: &[MinuteRow],
) -> anyhow::Result<Written> {
    commit_partition(root, symbol, hour_start, &encode(rows)?)
}

/// Commits already encoded partition bytes atomically.
pub fn commit_partition(
    root: &Path,
    symbol: &str,
    hour_start: i64,
    bytes: &[u8],
) -> anyhow::Result<Written> {
    let path = partition_path(root, symbol, hour_start);
    commit(&path, bytes)?;
    Ok(Written {
        content_hash: sha2::Sha256::digest(bytes).into(),
        bytes: bytes.len() as u64,
        path,
    })
}

/// Removes a symbol-hour's partition if there is one (the hour lost its last
/// complete minute, e.g. when a re-published archive replaced the one it came from).
pub fn remove_partition(root: &Path, symbol: &str, hour_start: i64) -> anyhow::Result<bool> {
    let path = partition_path(root, symbol, hour_start);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            let dir = path.parent().expect("partition path has a directory");
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing directory {}", dir.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Every file under the lake root, as paths relative to it, sorted: partitions,
/// and any temporaries a killed writer left (for checks and audits).
pub fn files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Removes temporary files a killed writer left in a symbol-hour's directory
/// (one materializer runs at a time: the ledger's lock sees to it).
pub fn remove_stale_temporaries(root: &Path, symbol: &str, hour_start: i64) -> anyhow::Result<()> {
    let path = partition_path(root, symbol, hour_start);
    let dir = path.parent().expect("partition path has a directory");
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(".part.") && name.ends_with(".tmp") {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the stale {}", path.display()))?;
        }
    }
    Ok(())
}

/// Temp file in the same directory → fsync → rename over → fsync the directory.
fn commit(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().expect("partition path has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // 0666 before the umask, as any file a program creates: readers running as
    // another user must be able to open the lake (temp files default to 0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(".part.")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}
