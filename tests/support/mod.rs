//! Helpers for end-to-end tests: the real `bml` binary, a generated Vision day,
//! a real HTTP server on 127.0.0.1 that serves it like data.binance.vision, and
//! the log read back the way every reader must (honouring visibility).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bml::event::{Event, Record, RecordClass, Visibility};
use bml::eventlog::Scanned;

/// Runs `bml --data-dir DATA ARGS…` quietly and returns its output.
pub fn bml(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bml"))
        .arg("--quiet")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run bml")
}

/// Like [`bml`], but a run still going after `limit` is killed and the test
/// fails at once: a hang is a failure, not a stalled CI.
pub fn bml_within(data_dir: &Path, args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bml"))
        .arg("--quiet")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bml");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait for bml").is_none() {
        if started.elapsed() > limit {
            child.kill().expect("kill bml");
            panic!("bml {args:?} still running after {limit:?}: a hang");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("bml's output")
}

/// Every file under the lake root, relative path → SHA-256 of its bytes.
pub fn lake_files(lake: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use sha2::Digest;
    bml::lake::files(lake)
        .unwrap()
        .into_iter()
        .map(|rel| {
            let hash = sha2::Sha256::digest(std::fs::read(lake.join(&rel)).unwrap());
            (rel, hex::encode(hash))
        })
        .collect()
}

/// A number from the environment (`name`), or `default`: the knobs that make a
/// bounded randomized test run longer or replay a seed.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The log's last segment file, if it has one.
pub fn last_segment(data: &Path) -> Option<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop()
}

/// The lake a fresh data dir derives from a copy of `data`'s log (its segments
/// and id; no ledger, no lake): what the log holds, whatever `data`'s own
/// ledger and lake say.
pub fn lake_derived_afresh(data: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let fresh = tempfile::tempdir().unwrap();
    let wal = fresh.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_file() && name != "LOCK" {
            std::fs::copy(&path, wal.join(name)).unwrap();
        }
    }
    let out = bml(fresh.path(), &["materialize"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fresh derivation: {}",
        text(&out)
    );
    lake_files(&fresh.path().join("lake"))
}

/// `ingest vision` of BTCUSDT for `day` from `base_url`, plus `extra` arguments.
pub fn vision_ingest_args<'a>(day: &'a str, base_url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "ingest",
        "vision",
        "--symbols",
        "BTCUSDT",
        "--start",
        day,
        "--vision-base",
        base_url,
    ];
    args.extend_from_slice(extra);
    args
}

/// `ingest rest` of BTCUSDT from `start` to `end` from `base_url`, plus
/// `extra` arguments.
pub fn rest_ingest_args<'a>(
    start: &'a str,
    end: &'a str,
    base_url: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "ingest",
        "rest",
        "--symbols",
        "BTCUSDT",
        "--start",
        start,
        "--end",
        end,
        "--rest-base",
        base_url,
    ];
    args.extend_from_slice(extra);
    args
}

/// Ingests a generated day's BTCUSDT archives of `kinds` (Vision names,
/// comma-separated) from its directory; panics unless bml exits 0. Returns
/// what it printed.
pub fn ingest_day(data_dir: &Path, day: &Path, date: &str, kinds: &str) -> String {
    let out = bml(
        data_dir,
        &[
            "ingest",
            "vision",
            "--symbol",
            "BTCUSDT",
            "--start",
            date,
            "--kinds",
            kinds,
            "--from-dir",
            day.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    text(&out)
}

/// Stdout and stderr of a run, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The shared generator that writes a synthetic Vision day in Vision's layout.
/// The project's Python (`scripts/python`): its own environment with numpy,
/// pyarrow, DuckDB and Polars, made on first use, so the tests never depend on
/// what the system Python has installed.
pub fn python() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python"))
}

/// Reads the lake of `data` back with pyarrow (hive partitioning) as `t`,
/// sorted by timestamp, then runs `body`, which prints JSON; returns it.
pub fn lake_query(data: &Path, body: &str) -> serde_json::Value {
    let script = format!(
        "import sys, json, pyarrow as pa, pyarrow.dataset as ds\n\
         t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table().sort_by('timestamp')\n\
         {body}"
    );
    let out = python()
        .args(["-c", &script])
        .arg(data.join("lake"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_vision_day.py")
}

/// Writes a synthetic Vision day (`hours` long) under a new temp dir; returns it.
/// Its archives are under `data/futures/um/daily/…`.
pub fn vision_day(date: &str, hours: u32, seed: u32) -> tempfile::TempDir {
    vision_day_at_rates(date, hours, seed, None)
}

/// A generated day with `(trades, book updates)` per second instead of the
/// generator's realistic defaults (small logs for end-to-end tests).
pub fn vision_day_at_rates(
    date: &str,
    hours: u32,
    seed: u32,
    rates: Option<(f64, f64)>,
) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let rates: Vec<String> = rates.map_or(Vec::new(), |(trades, book)| {
        vec![
            "--trades-per-sec".into(),
            trades.to_string(),
            "--book-per-sec".into(),
            book.to_string(),
        ]
    });
    let status = python()
        .arg(generator())
        .args([
            "--symbol",
            "BTCUSDT",
            "--date",
            date,
            "--hours",
            &hours.to_string(),
        ])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(out.path())
        .args(&rates)
        .output()
        .expect("scripts/python runs the generator");
    assert!(
        status.status.success(),
        "generator failed: {}",
        text(&status)
    );
    out
}

/// Path of a generated archive of `kind` (Vision's directory name) for `date`.
pub fn archive_path(root: &Path, kind: &str, date: &str) -> PathBuf {
    let daily = root.join("data/futures/um/daily");
    let name = match kind {
        "klines" | "markPriceKlines" | "indexPriceKlines" | "premiumIndexKlines" => {
            format!("{kind}/BTCUSDT/1m/BTCUSDT-1m-{date}.zip")
        }
        other => format!("{other}/BTCUSDT/BTCUSDT-{other}-{date}.zip"),
    };
    daily.join(name)
}

/// The CSV inside a zip archive, as text.
pub fn csv_of(zip_path: &Path) -> String {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    let mut entry = zip.by_index(0).unwrap();
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    text
}

/// Data rows of a CSV (a first line starting with a letter is the header).
pub fn data_rows(csv: &str) -> Vec<&str> {
    csv.lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .filter(|(i, l)| !(*i == 0 && l.as_bytes()[0].is_ascii_alphabetic()))
        .map(|(_, l)| l)
        .collect()
}

/// Writes `entries` (name, contents) as a zip at `path` and its `.CHECKSUM`.
pub fn write_archive(path: &Path, entries: &[(&str, &[u8])]) {
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, contents) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(contents).unwrap();
        }
        zip.finish().unwrap();
    }
    write_checksum(path);
}

/// Binance re-publishes the generated day's klines archive (under `day`)
/// with one volume changed: a new SHA-256, one fact different.
pub fn republish_klines(day: &Path, date: &str) {
    alter_archive(day, "klines", date, &[0], 5);
}

/// Re-publishes the generated archive of `kind` for `date` (under `day`)
/// with `field` (0-based) of each data row in `rows` (0-based) changed: a
/// digit appended, so that the number stays a number and differs.
pub fn alter_archive(day: &Path, kind: &str, date: &str, rows: &[usize], field: usize) {
    rewrite_archive(&archive_path(day, kind, date), |csv| {
        let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
        let header = usize::from(lines[0].as_bytes()[0].is_ascii_alphabetic());
        for &row in rows {
            let mut fields: Vec<String> =
                lines[header + row].split(',').map(str::to_string).collect();
            fields[field].push('1');
            lines[header + row] = fields.join(",");
        }
        lines.join("\n") + "\n"
    });
}

/// Re-publishes the archive at `path` with its CSV as `change` makes it
/// (same entry name, a matching `.CHECKSUM`).
pub fn rewrite_archive(path: &Path, change: impl FnOnce(String) -> String) {
    let csv = change(csv_of(path));
    let name = path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .replace(".zip", ".csv");
    write_archive(path, &[(&name, csv.as_bytes())]);
}

/// Writes the `.CHECKSUM` that matches the archive at `path` as it is now.
pub fn write_checksum(path: &Path) {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()));
    let name = path.file_name().unwrap().to_str().unwrap();
    std::fs::write(
        path.with_file_name(format!("{name}.CHECKSUM")),
        format!("{sha}  {name}\n"),
    )
    .unwrap();
}

/// A static HTTP server for `root` on 127.0.0.1, like data.binance.vision: GET of
/// a path under it returns the file or 404. It can be told to answer the next N
/// requests with 503.
pub struct VisionServer {
    pub addr: SocketAddr,
    fail_next: Arc<AtomicUsize>,
    requests: Requests,
    _runtime: tokio::runtime::Runtime,
}

/// The paths a [`VisionServer`] was asked for, each with when it was asked.
type Requests = Arc<std::sync::Mutex<Vec<(String, std::time::SystemTime)>>>;

impl VisionServer {
    pub fn start(root: &Path) -> VisionServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fail_next = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = (root.to_path_buf(), fail_next.clone(), requests.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(serve).with_state(state);
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        VisionServer {
            addr,
            fail_next,
            requests,
            _runtime: runtime,
        }
    }

    /// The `--base-url` for USD-M futures.
    pub fn base_url(&self) -> String {
        format!("http://{}/data/futures/um/", self.addr)
    }

    /// Answers the next `n` requests with 503 Service Unavailable.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The paths asked for so far, in order.
    pub fn paths(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|(path, _)| path.clone()).collect()
    }

    /// When a path ending in `suffix` was first asked for.
    pub fn asked_at(&self, suffix: &str) -> Option<std::time::SystemTime> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .find(|(path, _)| path.ends_with(suffix))
            .map(|(_, at)| *at)
    }
}

type ServerState = (PathBuf, Arc<AtomicUsize>, Requests);

async fn serve(
    axum::extract::State((root, fail_next, requests)): axum::extract::State<ServerState>,
    uri: axum::http::Uri,
) -> (axum::http::StatusCode, Vec<u8>) {
    requests
        .lock()
        .unwrap()
        .push((uri.path().to_string(), std::time::SystemTime::now()));
    if fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            b"busy".to_vec(),
        );
    }
    let rel = uri.path().trim_start_matches('/');
    if rel.split('/').any(|part| part == "..") {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    }
    match tokio::fs::read(root.join(rel)).await {
        Ok(bytes) => (axum::http::StatusCode::OK, bytes),
        Err(_) => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
    }
}

/// Every record in the log, with whether readers may use it.
pub fn log_records(data_dir: &Path) -> Vec<(u64, Record, bool)> {
    let (mut all, mut lost_ranges) = (Vec::new(), Vec::new());
    bml::eventlog::scan(
        data_dir,
        0,
        |_| true,
        |scanned| {
            match scanned {
                Scanned::Record(offset, record) => all.push((offset, record)),
                Scanned::Lost(lost) => lost_ranges.push(lost),
            }
            Ok(())
        },
    )
    .unwrap();
    let mut visibility = Visibility::new();
    for lost in lost_ranges {
        visibility.observe_lost(lost);
    }
    for (offset, record) in &all {
        if record.class() == RecordClass::Coverage {
            visibility.observe(*offset, record);
        }
    }
    all.into_iter()
        .map(|(offset, record)| {
            let visible = visibility.admits(offset, &record);
            (offset, record, visible)
        })
        .collect()
}

/// The market events readers may use, from archives whose file name contains `file_part`.
pub fn visible_events(data_dir: &Path, file_part: &str) -> Vec<Event> {
    log_records(data_dir)
        .into_iter()
        .filter(|(_, r, visible)| {
            *visible && r.class() == RecordClass::Data && source_file(r).contains(file_part)
        })
        .flat_map(|(_, r, _)| r.events)
        .collect()
}

/// The archive file name of a Vision record ("" for other sources).
pub fn source_file(record: &Record) -> &str {
    match &record.source {
        bml::event::Source::Vision { file, .. } => file,
        _ => "",
    }
}

/// The facts of the first hour of a generated day (generated and parsed once per
/// test binary), straight from the archives' CSV rows.
pub fn generated_hour(date: &str, hour_start: i64) -> bml::materialize::hour::HourFacts {
    static FACTS: std::sync::OnceLock<bml::materialize::hour::HourFacts> =
        std::sync::OnceLock::new();
    FACTS
        .get_or_init(|| {
            use bml::event::VisionKind;
            use bml::sources::vision::{rows, split::RawLines};
            let day = vision_day(date, 1, 5);
            let mut facts = bml::materialize::hour::HourFacts {
                hour_start,
                ..Default::default()
            };
            for (kind, name) in [
                (VisionKind::Klines, "klines"),
                (VisionKind::MarkPriceKlines, "markPriceKlines"),
                (VisionKind::IndexPriceKlines, "indexPriceKlines"),
                (VisionKind::PremiumIndexKlines, "premiumIndexKlines"),
                (VisionKind::AggTrades, "aggTrades"),
                (VisionKind::BookTicker, "bookTicker"),
                (VisionKind::Metrics, "metrics"),
            ] {
                let csv = csv_of(&archive_path(day.path(), name, date));
                for line in RawLines::new(csv.as_bytes(), 1) {
                    if rows::is_header(&line) {
                        continue;
                    }
                    match rows::parse(kind, &line).unwrap() {
                        Event::Kline(k) => facts.klines.push(k),
                        Event::AggTrade(t) => facts.agg_trades.push(t),
                        Event::BookTicker(b) => facts.book_tickers.push(b),
                        Event::Metrics(m) => facts.metrics.push(m),
                        other => panic!("{other:?}"),
                    }
                }
            }
            facts
        })
        .clone()
}

/// `bml sim serve` running as a child process on a free port of 127.0.0.1,
/// killed on drop.
pub struct Sim {
    child: std::process::Child,
    url: String,
}

impl Sim {
    /// Serves the Vision day under `day` with extra `serve` arguments (faults,
    /// limits); returns once it listens.
    pub fn start(day: &Path, args: &[&str]) -> Sim {
        let day = day.to_str().expect("a UTF-8 temp path");
        Sim::serve(&[&["--from-vision", day], args].concat())
    }

    /// Serves a synthetic market made up from the `serve` arguments (`--seed`, …).
    pub fn synthetic(args: &[&str]) -> Sim {
        Sim::serve(args)
    }

    /// Serves with `serve` arguments only (a capture, a synthetic market).
    pub fn serve(args: &[&str]) -> Sim {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_bml"))
            .args(["--quiet", "sim", "serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the simulator");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("simulator said {line:?}"))
            .to_string();
        Sim { child, url }
    }

    /// The REST base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its Vision base URL.
    pub fn vision_url(&self) -> String {
        format!("{}/data/futures/um/", self.url)
    }

    /// Its counters (`GET /sim/stats`).
    pub fn stats(&self) -> serde_json::Value {
        let body = reqwest::blocking::get(format!("{}/sim/stats", self.url))
            .unwrap()
            .text()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bml ingest live` of `symbols` from `sim` (its WebSocket and REST sides)
/// into `data`, plus `extra` arguments; it must exit 0. Returns what it printed.
pub fn collect_live(sim: &Sim, data: &Path, symbols: &str, extra: &[&str]) -> String {
    let ws = sim.url().replace("http://", "ws://");
    let args = [
        &[
            "ingest",
            "live",
            "--symbols",
            symbols,
            "--ws-base",
            &ws,
            "--rest-base",
            sim.url(),
        ][..],
        extra,
    ]
    .concat();
    let out = bml(data, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    text(&out)
}

/// The columns whose values differ between two lakes of `rows` rows each
/// (read back with pyarrow, hive partitioning), comma-separated.
pub fn differing_columns(a: &Path, b: &Path, rows: usize) -> String {
    let script = r#"
import sys, pyarrow.dataset as ds
def load(p):
    return ds.dataset(p, format="parquet", partitioning="hive").to_table().sort_by("timestamp")
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.num_rows == b.num_rows == int(sys.argv[3]), (a.num_rows, b.num_rows)
assert a.schema == b.schema
print(",".join(c for c in a.schema.names if a[c].to_pylist() != b[c].to_pylist()))
"#;
    let out = python()
        .args(["-c", script])
        .arg(a)
        .arg(b)
        .arg(rows.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Debian's Chromium, installed on first use (`apt-get`, as the machine's
/// root); panics with the way to install it when that is not possible.
pub fn chromium() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    if !path.exists() {
        let status = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(
            status.is_ok_and(|s| s.success()) && path.exists(),
            "this test needs Debian's chromium (apt-get install chromium)"
        );
    }
    path
}

/// Opens `page` in headless Chromium with nothing reachable (no network, no
/// background services): returns the DOM once loaded and its scripts run,
/// and saves a screenshot at `shot`.
pub fn headless_chromium(page: &Path, shot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--window-size=1400,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("run chromium");
        assert!(out.status.success(), "chromium: {}", text(&out));
        out
    };
    let dom = String::from_utf8(run(&["--dump-dom".to_string()]).stdout).unwrap();
    run(&[format!("--screenshot={}", shot.display())]);
    dom
}
