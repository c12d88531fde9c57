//! The lake: one Parquet file per symbol-hour in a hive layout, written
//! byte-deterministically and committed atomically, on a local disk or in an
//! S3-compatible bucket.
//!
//! `{root}/futures/um/minute/symbol=SYM/year=YYYY/month=MM/day=DD/hour=HH/part.parquet`
//!
//! The root is a directory (`--lake-dir`, or `--lake-url file:///…`) or a
//! bucket and prefix (`--lake-url s3://bucket/prefix`); the keys under it are
//! the same. Each store makes a commit atomic its own way (`local`, `object`):
//! a reader sees the old file or the new one, never half of either.

pub mod claims;
mod local;
mod object;
mod parquet;
mod profile;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Datelike, Timelike};
use sha2::Digest;

pub use parquet::{arrow_schema, encode, encode_groups};

/// Where the lake is, and how its hours are laid out in files.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Store,
    /// `None`: the layout the lake was last written in.
    layout: Option<Layout>,
    /// How long after its end a day is closed (day layout).
    day_settle_ms: i64,
}

#[derive(Debug, Clone)]
enum Store {
    Local(local::Local),
    Object(object::Object),
}

/// What committing a partition stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The key, relative to the root.
    pub key: String,
    /// SHA-256 of the bytes.
    pub content_hash: [u8; 32],
    /// Their size.
    pub bytes: u64,
    /// The object store's ETag of the object (none on a local disk).
    pub etag: Option<String>,
}

/// A file or object found under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key, relative to the root.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its ETag (object stores only).
    pub etag: Option<String>,
}

impl Lake {
    /// A lake under a local directory.
    pub fn local(root: impl Into<PathBuf>) -> Lake {
        Lake::in_store(Store::Local(local::Local { root: root.into() }))
    }

    fn in_store(store: Store) -> Lake {
        Lake {
            store,
            layout: None,
            day_settle_ms: 0,
        }
    }

    /// The same lake in `layout` (`None`: as it was last written), a day
    /// closing `day_settle_ms` after its end.
    #[must_use]
    pub fn with_layout(self, layout: Option<Layout>, day_settle_ms: i64) -> Lake {
        Lake {
            layout,
            day_settle_ms,
            ..self
        }
    }

    /// The layout asked for (`None`: as the lake was last written).
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// In the day layout, the time before which a day is closed, at `now_ms`.
    pub fn days_closed_before(&self, now_ms: i64) -> i64 {
        now_ms - self.day_settle_ms
    }

    /// The lake `location` names: `s3://bucket[/prefix]`, `file:///dir`, or a
    /// path. `endpoint` is an S3-compatible server's URL (else
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the AWS profile's, else AWS
    /// itself).
    pub fn open(location: &str, endpoint: Option<&str>) -> anyhow::Result<Lake> {
        if location.starts_with("s3://") {
            let store = object::Object::open(location, endpoint)?;
            return Ok(Lake::in_store(Store::Object(store)));
        }
        if let Some(path) = location.strip_prefix("file://") {
            if !path.starts_with('/') {
                bail!("{location}: a file:// URL needs an absolute path (file:///…)");
            }
            return Ok(Lake::local(path));
        }
        if location.contains("://") {
            bail!("{location}: the lake is a directory, file:///… or s3://bucket/prefix");
        }
        Ok(Lake::local(location))
    }

    /// The root as the ledger records it and messages name it: the directory,
    /// or the `s3://` URL (never a credential).
    pub fn location(&self) -> String {
        match &self.store {
            Store::Local(l) => l.root.display().to_string(),
            Store::Object(o) => o.location(),
        }
    }

    /// The directory, for a lake on a local disk.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.store {
            Store::Local(l) => Some(&l.root),
            Store::Object(_) => None,
        }
    }

    /// Commits `bytes` as the object `key`, atomically.
    pub fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<Stored> {
        let etag = match &self.store {
            Store::Local(l) => l.put(key, bytes).map(|()| None)?,
            Store::Object(o) => o.put(key, bytes)?,
        };
        Ok(Stored {
            key: key.to_owned(),
            content_hash: sha2::Sha256::digest(bytes).into(),
            bytes: bytes.len() as u64,
            etag,
        })
    }

    /// Creates `key` with `bytes` unless it exists; false if it did (of two
    /// writers racing, exactly one creates it).
    pub fn create(&self, key: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        match &self.store {
            Store::Local(l) => l.create(key, bytes),
            Store::Object(o) => o.create(key, bytes),
        }
    }

    /// The bytes of `key`, if it exists.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match &self.store {
            Store::Local(l) => l.get(key),
            Store::Object(o) => o.get(key),
        }
    }

    /// Removes `key` if it exists.
    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        match &self.store {
            Store::Local(l) => l.delete(key).map(drop),
            Store::Object(o) => o.delete(key),
        }
    }

    /// Every file whose key starts with the directory `dir` (a key prefix
    /// ending at a `/`, without it), sorted by key: partitions, and any
    /// temporaries a killed writer left on a local disk.
    pub fn list_under(&self, dir: &str) -> anyhow::Result<Vec<Listed>> {
        let mut listed = match &self.store {
            Store::Local(l) => l.list(dir)?,
            Store::Object(o) => o.list(dir)?,
        };
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Removes what a killed writer left beside `key` (temporaries exist on a
    /// local disk only: an object store's PUT stages nothing under a name).
    pub fn remove_stale_temporaries(&self, key: &str) -> anyhow::Result<()> {
        match &self.store {
            Store::Local(l) => l.remove_stale_temporaries(key),
            Store::Object(_) => Ok(()),
        }
    }

    /// Whether `found` looks like the whole file the ledger recorded (its
    /// ETag, if it recorded one), without reading it: on a local disk, the
    /// Parquet footer's magic at its end; in an object store, the ETag, as
    /// an object is replaced whole or not at all.
    pub fn looks_whole(&self, found: &Listed, recorded_etag: Option<&str>) -> bool {
        match &self.store {
            Store::Local(l) => l.ends_like_parquet(&found.key),
            Store::Object(_) => recorded_etag.is_none_or(|e| found.etag.as_deref() == Some(e)),
        }
    }
}

/// The dataset's directory under the lake root: what readers point at.
pub const DATASET: &str = "futures/um/minute";

/// How the hours of a lake are laid out in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One file per symbol-hour, `…/day=DD/hour=HH/part.parquet` (the
    /// original project's contract).
    Hour,
    /// One file per closed symbol-day, `…/day=DD/part.parquet`, its hours as
    /// row groups; the hours of a day not yet closed as
    /// `…/day=DD/part-HH.parquet`. Every file sits at the same depth, so a
    /// hive reader sees one set of keys (symbol, year, month, day).
    Day,
}

impl Layout {
    /// Its name, on the command line and in the ledger.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Hour => "hour",
            Layout::Day => "day",
        }
    }

    /// The layout `name` names.
    pub fn from_name(name: &str) -> Option<Layout> {
        [Layout::Hour, Layout::Day]
            .into_iter()
            .find(|l| l.name() == name)
    }
}

/// The directory of a symbol-month, relative to the lake root.
pub fn month_dir(symbol: &str, time: i64) -> String {
    let t = DateTime::from_timestamp_millis(time).expect("time in range");
    format!(
        "{DATASET}/symbol={symbol}/year={:04}/month={:02}",
        t.year(),
        t.month()
    )
}

/// The directory of a symbol-day, relative to the lake root.
pub fn day_dir(symbol: &str, time: i64) -> String {
    let t = DateTime::from_timestamp_millis(time).expect("time in range");
    format!("{}/day={:02}", month_dir(symbol, time), t.day())
}

/// The key of a symbol-hour's partition in the hour layout.
pub fn partition_key(symbol: &str, hour_start: i64) -> String {
    let t = DateTime::from_timestamp_millis(hour_start).expect("hour start in range");
    format!(
        "{}/hour={:02}/part.parquet",
        day_dir(symbol, hour_start),
        t.hour()
    )
}

/// The key of the file holding a symbol-hour: in the hour layout its own
/// file; in the day layout its day's file once the day is `closed`, else a
/// file of its own in the day's directory.
pub fn file_key(layout: Layout, closed: bool, symbol: &str, hour_start: i64) -> String {
    match (layout, closed) {
        (Layout::Hour, _) => partition_key(symbol, hour_start),
        (Layout::Day, true) => format!("{}/part.parquet", day_dir(symbol, hour_start)),
        (Layout::Day, false) => {
            let t = DateTime::from_timestamp_millis(hour_start).expect("hour start in range");
            format!(
                "{}/part-{:02}.parquet",
                day_dir(symbol, hour_start),
                t.hour()
            )
        }
    }
}

/// The path of a symbol-hour's partition in a lake under the directory `root`.
pub fn partition_path(root: &Path, symbol: &str, hour_start: i64) -> PathBuf {
    root.join(partition_key(symbol, hour_start))
}

/// Whether a file's name is a local writer's temporary.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(".part") && name.ends_with(".tmp")
}

/// Whether the key is a partition's file, in either layout (rather than a
/// temporary or a stray).
pub fn is_partition(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or("");
    name == "part.parquet"
        || name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .is_some_and(|hh| hh.len() == 2 && hh.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes a symbol-hour's partition in a lake under the directory `root` (for
/// tests and tools; the materializer commits through a [`Lake`]).
pub fn write_partition(
    root: &Path,
    symbol: &str,
    hour_start: i64,
    rows: &[crate::schema::MinuteRow],
) -> anyhow::Result<Stored> {
    Lake::local(root)
        .put(&partition_key(symbol, hour_start), &encode(rows)?)
        .with_context(|| format!("writing the {symbol} hour {hour_start}"))
}

/// Every file of the dataset in a lake under the directory `root` (partitions
/// and temporaries; not the claims beside it), as paths relative to the root,
/// sorted (for checks and tests of a local lake).
pub fn files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(Lake::local(root)
        .list_under(DATASET)?
        .into_iter()
        .map(|l| PathBuf::from(l.key))
        .collect())
}
