//! Finding, fetching, verifying and opening one Vision archive. Nothing in here
//! touches the log: an archive is handed on only once its SHA-256 matches its
//! `.CHECKSUM` and its zip holds exactly the one CSV it should.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sha2::Digest;

use crate::event::{Sha256, VisionKind};
use crate::sources::retry::{self, Attempt, Policy};
use crate::time::{DAY_MS, MINUTE_MS};

/// Tries per archive request: 5 transient failures (5xx, timeouts, dropped
/// bodies), 10 refusals (429, each after its `Retry-After`).
const POLICY: Policy = Policy {
    attempts: 5,
    refusals: 10,
};

/// One archive: which kind, symbol and day (`YYYY-MM-DD`) or month (`YYYY-MM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Archive kind.
    pub kind: VisionKind,
    /// Upper-case symbol.
    pub symbol: String,
    /// Day or month.
    pub period: String,
}

impl FileSpec {
    /// `BTCUSDT-aggTrades-2024-03-01` (no extension). The four kline kinds share
    /// one name, `BTCUSDT-1m-2024-03-01`: only their folder tells them apart
    /// (binance-public-data's `download-futures-markPriceKlines.py` and siblings;
    /// `docs/binance-fidelity.md`).
    pub fn stem(&self) -> String {
        let (s, p) = (&self.symbol, &self.period);
        match self.kind {
            VisionKind::Klines
            | VisionKind::MarkPriceKlines
            | VisionKind::IndexPriceKlines
            | VisionKind::PremiumIndexKlines => format!("{s}-1m-{p}"),
            VisionKind::AggTrades => format!("{s}-aggTrades-{p}"),
            VisionKind::BookTicker => format!("{s}-bookTicker-{p}"),
            VisionKind::Metrics => format!("{s}-metrics-{p}"),
            VisionKind::BookDepth => format!("{s}-bookDepth-{p}"),
            VisionKind::FundingRate => format!("{s}-fundingRate-{p}"),
        }
    }

    /// The archive's file name.
    pub fn file_name(&self) -> String {
        format!("{}.zip", self.stem())
    }

    /// The times its rows may carry (epoch ms, as `rows::event_time` reads a
    /// row): its UTC day, or month for funding. A metrics file may also hold the
    /// next day's 00:00 (files before 2026-06-25 run 00:05 … 00:00); bookTicker
    /// rows are bucketed by transaction time, which near midnight may fall a
    /// moment before the day whose file holds them, so they get a minute either
    /// side. `None` if the period does not parse (then nothing is checked).
    pub fn time_range(&self) -> Option<std::ops::RangeInclusive<i64>> {
        let ms = |d: chrono::NaiveDate| {
            d.and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_millis()
        };
        if self.kind == VisionKind::FundingRate {
            let first =
                chrono::NaiveDate::parse_from_str(&format!("{}-01", self.period), "%Y-%m-%d")
                    .ok()?;
            let next = first.checked_add_months(chrono::Months::new(1))?;
            return Some(ms(first)..=ms(next) - 1);
        }
        let start = ms(chrono::NaiveDate::parse_from_str(&self.period, "%Y-%m-%d").ok()?);
        Some(match self.kind {
            VisionKind::Metrics => start..=start + DAY_MS,
            VisionKind::BookTicker => start - MINUTE_MS..=start + DAY_MS + MINUTE_MS - 1,
            _ => start..=start + DAY_MS - 1,
        })
    }

    /// The archive's identity in the log (its path under the USD-M base): the
    /// file name alone is not unique, since the kline kinds share it.
    pub fn id(&self) -> String {
        self.rel_path()
    }

    /// Path under the USD-M base (`…/futures/um/`), as on data.binance.vision.
    pub fn rel_path(&self) -> String {
        let s = &self.symbol;
        let dir = match self.kind {
            VisionKind::Klines => format!("daily/klines/{s}/1m"),
            VisionKind::MarkPriceKlines => format!("daily/markPriceKlines/{s}/1m"),
            VisionKind::IndexPriceKlines => format!("daily/indexPriceKlines/{s}/1m"),
            VisionKind::PremiumIndexKlines => format!("daily/premiumIndexKlines/{s}/1m"),
            VisionKind::AggTrades => format!("daily/aggTrades/{s}"),
            VisionKind::BookTicker => format!("daily/bookTicker/{s}"),
            VisionKind::Metrics => format!("daily/metrics/{s}"),
            VisionKind::BookDepth => format!("daily/bookDepth/{s}"),
            VisionKind::FundingRate => format!("monthly/fundingRate/{s}"),
        };
        format!("{dir}/{}", self.file_name())
    }
}

/// Where archives come from.
pub enum Store {
    /// A Vision-like HTTP server; `base_url` ends with `/futures/um/`.
    Http {
        /// Base URL with a trailing slash.
        base_url: String,
        /// Shared client.
        client: reqwest::blocking::Client,
    },
    /// Archives already on disk: Vision's own layout (under `DIR/`,
    /// `DIR/data/futures/um/`) or a flat folder of archive names.
    Dir(PathBuf),
}

/// The result of looking for something that may not exist.
pub enum Lookup<T> {
    /// It is there.
    Found(T),
    /// It is not (HTTP 404, or no such file).
    Missing {
        /// Where it was looked for.
        location: String,
        /// 404, or 0 for a local directory.
        status: u16,
    },
}

/// A hashed archive on local disk. It is read through the same open handle that
/// was hashed, so what is parsed is exactly what was verified, even if the file
/// at that path is replaced meanwhile.
pub struct Archive {
    /// The open archive (a temporary download, or the file in the local store).
    pub file: File,
    /// Where it came from (URL or path), for messages.
    pub location: String,
    /// Its SHA-256.
    pub sha256: Sha256,
    /// Its size.
    pub bytes: u64,
    _download: Option<tempfile::TempPath>,
}

impl Archive {
    /// A handle positioned at the start, for the zip reader.
    pub fn reopen(&self) -> io::Result<File> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

impl Store {
    /// A store over HTTP, with timeouts suited to large archives.
    pub fn http(base_url: &str) -> anyhow::Result<Store> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(900))
            .user_agent(concat!("bml/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base_url = if base_url.ends_with('/') {
            base_url.to_string()
        } else {
            format!("{base_url}/")
        };
        Ok(Store::Http { base_url, client })
    }

    /// The SHA-256 from the archive's `.CHECKSUM`.
    pub fn checksum(&self, spec: &FileSpec) -> anyhow::Result<Lookup<Sha256>> {
        let name = format!("{}.CHECKSUM", spec.file_name());
        let text = match self {
            Store::Http { base_url, client } => {
                let url = format!("{base_url}{}.CHECKSUM", spec.rel_path());
                match get(client, &url, |mut r| {
                    let mut s = String::new();
                    r.read_to_string(&mut s)?;
                    Ok(s)
                })? {
                    Lookup::Found(text) => (text, url),
                    Lookup::Missing { location, status } => {
                        return Ok(Lookup::Missing { location, status })
                    }
                }
            }
            Store::Dir(dir) => {
                let Some(zip) = find_local(dir, spec) else {
                    return Ok(Lookup::Missing {
                        location: dir.join(spec.rel_path()).display().to_string(),
                        status: 0,
                    });
                };
                let path = zip.with_file_name(&name);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "reading {} (every archive needs its .CHECKSUM)",
                        path.display()
                    )
                })?;
                (text, path.display().to_string())
            }
        };
        parse_checksum(&text.0, &spec.file_name())
            .map(Lookup::Found)
            .with_context(|| format!("bad checksum file {}", text.1))
    }

    /// Fetches the archive (streamed to a temporary file next to `tmp_dir`) and
    /// hashes it on the way.
    pub fn archive(&self, spec: &FileSpec, tmp_dir: &Path) -> anyhow::Result<Lookup<Archive>> {
        match self {
            Store::Http { base_url, client } => {
                let url = format!("{base_url}{}", spec.rel_path());
                std::fs::create_dir_all(tmp_dir)
                    .with_context(|| format!("creating {}", tmp_dir.display()))?;
                let fetched = get(client, &url, |mut response| {
                    let mut temp = tempfile::NamedTempFile::new_in(tmp_dir)?;
                    let mut hashing = HashingWriter::new(temp.as_file_mut());
                    let bytes = io::copy(&mut response, &mut hashing)?;
                    let sha256 = hashing.finish();
                    let file = temp.as_file().try_clone()?;
                    Ok((file, temp.into_temp_path(), sha256, bytes))
                })?;
                Ok(match fetched {
                    Lookup::Found((file, temp, sha256, bytes)) => Lookup::Found(Archive {
                        file,
                        location: url,
                        sha256,
                        bytes,
                        _download: Some(temp),
                    }),
                    Lookup::Missing { location, status } => Lookup::Missing { location, status },
                })
            }
            Store::Dir(dir) => {
                let Some(path) = find_local(dir, spec) else {
                    return Ok(Lookup::Missing {
                        location: dir.join(spec.rel_path()).display().to_string(),
                        status: 0,
                    });
                };
                let mut file =
                    File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                let mut hashing = HashingWriter::new(io::sink());
                let bytes = io::copy(&mut file, &mut hashing)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(Lookup::Found(Archive {
                    location: path.display().to_string(),
                    file,
                    sha256: hashing.finish(),
                    bytes,
                    _download: None,
                }))
            }
        }
    }
}

/// The archive in a local store: in Vision's layout, or in a flat folder. A
/// flat `BTCUSDT-1m-….zip` is taken for trade klines (what Binance's own kline
/// script downloads); mark, index and premium klines share that name, so they
/// are looked for in Vision's layout only.
fn find_local(dir: &Path, spec: &FileSpec) -> Option<PathBuf> {
    let rel = spec.rel_path();
    let ambiguous = spec.kind.is_kline() && spec.kind != VisionKind::Klines;
    let flat = (!ambiguous).then(|| dir.join(spec.file_name()));
    [
        Some(dir.join(&rel)),
        Some(dir.join("data/futures/um").join(&rel)),
        flat,
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// GETs `url` under the retry policy (`sources::retry`): 5xx, timeouts and
/// bodies cut short are retried; a 429 waits its `Retry-After` (at most a
/// minute). 404 is `Missing`.
fn get<T>(
    client: &reqwest::blocking::Client,
    url: &str,
    mut read: impl FnMut(reqwest::blocking::Response) -> io::Result<T>,
) -> anyhow::Result<Lookup<T>> {
    retry::get(&url, POLICY, |_| {
        let response = match client.get(url).send() {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed(format!("request failed: {}", retry::error_chain(&e)))
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Attempt::Done(Lookup::Missing {
                location: url.to_string(),
                status: 404,
            });
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = retry::retry_after(&response).unwrap_or(1).min(60);
            std::thread::sleep(Duration::from_secs(wait));
            return Attempt::Refused(format!("HTTP {status}"));
        }
        if status.is_server_error() {
            return Attempt::Failed(format!("HTTP {status}"));
        }
        if !status.is_success() {
            return Attempt::Fatal(retry::refused(format!("GET {url}: HTTP {status}")));
        }
        match read(response) {
            Ok(value) => Attempt::Done(Lookup::Found(value)),
            Err(e) => Attempt::Failed(format!("body cut short: {e}")),
        }
    })
}

/// Parses `<64 hex>  <file name>` with or without a trailing newline.
fn parse_checksum(text: &str, file_name: &str) -> anyhow::Result<Sha256> {
    let line = text.lines().next().unwrap_or_default().trim();
    let (hash, name) = line
        .split_once(char::is_whitespace)
        .map(|(h, n)| (h, n.trim_start().trim_start_matches('*')))
        .unwrap_or((line, ""));
    if !name.is_empty() && name != file_name {
        bail!("it names {name:?}, not {file_name:?}");
    }
    let mut sha = [0u8; 32];
    hex::decode_to_slice(hash, &mut sha)
        .map_err(|e| anyhow!("not a SHA-256 in hex ({e}): {hash:?}"))?;
    Ok(Sha256(sha))
}

/// Opens the archive's single CSV entry, refusing anything else in the zip.
pub fn open_csv<'a>(
    zip: &'a mut zip::ZipArchive<File>,
    spec: &FileSpec,
    location: &str,
) -> anyhow::Result<zip::read::ZipFile<'a, File>> {
    let expected = format!("{}.csv", spec.stem());
    if zip.len() != 1 {
        let names: Vec<String> = zip
            .file_names_raw()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        bail!(
            "{location}: expected one entry {expected:?}, found {}: {names:?}",
            zip.len()
        );
    }
    let entry = zip
        .by_index(0)
        .with_context(|| format!("{location}: unreadable zip entry"))?;
    let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
    if entry.enclosed_name().is_none() || name.contains('/') || name.contains('\\') {
        bail!("{location}: entry {name:?} escapes its directory");
    }
    if name != expected {
        bail!("{location}: unexpected entry {name:?}, expected {expected:?}");
    }
    // The zip reader keeps the last of entries that share a name; a Vision
    // archive's one entry starts the file, so a kept entry elsewhere means an
    // earlier one of the same name was hidden.
    if entry.header_start() != 0 {
        bail!(
            "{location}: more than one entry named {name:?} (the entry read starts at byte {})",
            entry.header_start()
        );
    }
    Ok(entry)
}

/// A writer that hashes what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
        }
    }

    fn finish(mut self) -> Sha256 {
        let _ = self.inner.flush();
        Sha256(self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_lines_with_and_without_newline() {
        let hex64 = "51cdeb4de7d5ef1d4eece80b6115e391bdf7a2d0803bf9ad8371ab23340b22d3";
        for text in [
            format!("{hex64}  X.zip\n"),
            format!("{hex64}  X.zip"),
            format!("{hex64}\n"),
        ] {
            assert_eq!(parse_checksum(&text, "X.zip").unwrap().to_string(), hex64);
        }
        assert!(parse_checksum(&format!("{hex64}  Y.zip"), "X.zip").is_err());
        assert!(parse_checksum("nothex  X.zip", "X.zip").is_err());
    }
}
