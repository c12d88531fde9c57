//! The lake in S3-compatible object storage (`--lake-url s3://…`), against a
//! real S3 server on 127.0.0.1: moto's standalone server, from PyPI, in a
//! Python environment of its own (`scripts/python-env .python/moto`). Between
//! bml and the server, where a test needs faults, stands a proxy that answers
//! PUTs with 503 or drops their connection.
//!
//! What a user would check: the bucket read back with pyarrow's S3
//! filesystem as a hive-partitioned dataset holds the same objects (byte for
//! byte) and rows as the lake on disk; a kill -9 leaves no partial object;
//! faults are retried; a bucket that keeps failing fails the run with the key
//! named and the ledger claims nothing; the secret key never shows.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::Value;
use support::{text, vision_day_at_rates};

const DATE: &str = "2024-03-01";
const KINDS: &str =
    "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades,bookTicker,metrics";
const BUCKET: &str = "minute-lake";
const ACCESS_KEY: &str = "bml-test-access";
/// The secret: no output of bml may ever hold it.
const SECRET_KEY: &str = "bml-SECRET-do-not-print-0123456789";

/// moto's S3 server on a free port of 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Moto {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(root.join("scripts/python-env"))
            .arg(root.join(".python/moto"))
            .arg("moto[server]==5.*")
            .output()
            .expect("run scripts/python-env");
        assert!(out.status.success(), "moto's environment: {}", text(&out));
        let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let addr = free_addr();
        let child = Command::new(python.with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, addr };
        let client = reqwest::blocking::Client::new();
        let started = Instant::now();
        loop {
            let made = client.put(format!("{}/{BUCKET}", moto.endpoint())).send();
            if made.is_ok_and(|r| r.status().is_success()) {
                return moto;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// What the proxy does to the PUTs it sees (by their count, from 0).
#[derive(Clone, Copy)]
enum Faults {
    /// None: the proxy only watches who signs the requests.
    None,
    /// Every 3rd PUT gets a 503, every 3rd+1 has its connection dropped
    /// before it reaches the server, every 3rd+2 after (stored, answer lost)
    /// — each only on its first attempt, as a flaky network would.
    Flaky,
    /// Every PUT of a partition gets a 503, forever.
    Down,
    /// Every DELETE of a partition is refused (403), as a bucket policy
    /// without `s3:DeleteObject` would.
    DeletesDenied,
}

/// An HTTP proxy in front of the S3 server that injects `Faults`.
struct Proxy {
    addr: SocketAddr,
    faults: Arc<AtomicUsize>,
    /// `ACCESS_KEY/REGION` of every request's signature.
    signers: Arc<Mutex<BTreeSet<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(upstream: SocketAddr, faults: Faults) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let injected = Arc::new(AtomicUsize::new(0));
        let puts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let signers = Arc::new(Mutex::new(BTreeSet::new()));
        let client = reqwest::Client::new();
        let (counter, signed) = (injected.clone(), signers.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, puts, seen, counter, signed) = (
                    client.clone(),
                    puts.clone(),
                    seen.clone(),
                    counter.clone(),
                    signed.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (client, puts, seen, counter) =
                            (client.clone(), puts.clone(), seen.clone(), counter.clone());
                        if let Some(signer) = signer(&req) {
                            signed.lock().unwrap().insert(signer);
                        }
                        async move {
                            forward(req, upstream, faults, &client, &puts, &seen, &counter).await
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy {
            addr,
            faults: injected,
            signers,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults injected so far.
    fn injected(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }

    /// Who signed the requests so far, as `ACCESS_KEY/REGION`.
    fn signers(&self) -> BTreeSet<String> {
        self.signers.lock().unwrap().clone()
    }
}

/// `ACCESS_KEY/REGION` of a request's AWS signature (version 4:
/// `Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
fn signer(req: &Request<Incoming>) -> Option<String> {
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let scope: Vec<&str> = auth
        .split("Credential=")
        .nth(1)?
        .split(',')
        .next()?
        .split('/')
        .collect();
    Some(format!("{}/{}", scope.first()?, scope.get(2)?))
}

/// One request: faulted if it is a PUT the faults pick, else passed to
/// `upstream` and its answer returned. An `Err` makes hyper drop the
/// connection without an answer.
async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
    faults: Faults,
    client: &reqwest::Client,
    puts: &AtomicUsize,
    seen: &Mutex<std::collections::HashSet<String>>,
    injected: &AtomicUsize,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let is_put = parts.method == hyper::Method::PUT;
    let first_try = is_put && seen.lock().unwrap().insert(path.clone());
    let fault = match faults {
        Faults::Down if is_put && path.contains("/futures/") => Some(0),
        Faults::Flaky if first_try => Some(puts.fetch_add(1, Ordering::SeqCst) % 3),
        _ => None,
    };
    if matches!(faults, Faults::DeletesDenied)
        && parts.method == hyper::Method::DELETE
        && path.contains("/futures/")
    {
        injected.fetch_add(1, Ordering::SeqCst);
        let xml = "<Error><Code>AccessDenied</Code><Message>injected</Message></Error>";
        return Ok(Response::builder()
            .status(403)
            .body(Full::new(Bytes::from(xml)))
            .unwrap());
    }
    let unavailable = || {
        let xml = "<Error><Code>SlowDown</Code><Message>injected</Message></Error>";
        Response::builder()
            .status(503)
            .body(Full::new(Bytes::from(xml)))
            .unwrap()
    };
    if let Some(0) = fault {
        injected.fetch_add(1, Ordering::SeqCst);
        return Ok(unavailable());
    }
    if let Some(1) = fault {
        injected.fetch_add(1, Ordering::SeqCst);
        return Err(std::io::Error::other("dropped before the server saw it"));
    }
    let mut request = client
        .request(parts.method.clone(), format!("http://{upstream}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.map_err(std::io::Error::other)?;
    if let Some(2) = fault {
        injected.fetch_add(1, Ordering::SeqCst);
        return Err(std::io::Error::other("dropped after the server stored it"));
    }
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != hyper::header::CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
    Ok(response.body(Full::new(bytes)).unwrap())
}

/// `bml` with the S3 credentials in its environment and the endpoint given.
fn bml_s3(data: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bml"));
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_ENDPOINT_URL")
        .arg("--data-dir")
        .arg(data)
        .args(["--s3-endpoint", endpoint])
        .args(args);
    command
}

fn run(mut command: Command) -> Output {
    let out = command.output().expect("run bml");
    let all = text(&out);
    assert!(
        !all.contains(SECRET_KEY),
        "the secret key was printed: {all}"
    );
    out
}

fn lake_url(prefix: &str) -> String {
    format!("s3://{BUCKET}/{prefix}")
}

/// A generated day ingested into a new data dir, and materialized into its
/// local lake: the reference every bucket is compared with.
fn ingested(hours: u32) -> (tempfile::TempDir, tempfile::TempDir) {
    let day = vision_day_at_rates(DATE, hours, 7, Some((2.0, 5.0)));
    let data = tempfile::tempdir().unwrap();
    support::ingest_day(data.path(), day.path(), DATE, KINDS);
    (day, data)
}

/// `tests/readers/read_s3.py COMMAND` against the server, its JSON answer.
fn pyarrow_s3(moto: &Moto, command: &str, args: &[&str]) -> Value {
    let out = support::python()
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/read_s3.py"))
        .args([command, &moto.endpoint()])
        .args(args)
        .output()
        .expect("run read_s3.py");
    assert!(out.status.success(), "read_s3.py: {}", text(&out));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    serde_json::from_str(&last).unwrap_or(Value::Null)
}

/// Every object under `prefix` as pyarrow sees it beside the local lake.
fn read_back(moto: &Moto, prefix: &str, local_lake: &Path) -> Value {
    let root = format!("{BUCKET}/{prefix}");
    pyarrow_s3(moto, "compare", &[&root, local_lake.to_str().unwrap()])
}

/// The objects of the bucket (`s3` of a read-back) equal the local lake's.
fn assert_same_lake(seen: &Value, hours: usize) {
    let (s3, local) = (&seen["s3"], &seen["local"]);
    assert_eq!(
        s3.as_object().unwrap().len(),
        hours,
        "one object per hour: {s3}"
    );
    assert_eq!(s3, local, "the same keys and bytes");
    assert_eq!(seen["rows"][0], seen["rows"][1], "{seen}");
    assert_eq!(seen["rows"][0], hours * 60, "{seen}");
    assert_eq!(seen["columns"][0], 58 + 5, "{seen}");
    assert_eq!(seen["equal"], true, "the same rows: {seen}");
}

#[test]
fn materialize_into_s3_reads_back_as_the_local_lake_and_status_and_audit_see_it() {
    let moto = Moto::start();
    let (_day, data) = ingested(3);
    let out = support::bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let local_lake = data.path().join("lake");

    // The same log into the bucket: the lake moved, so every hour is written.
    let url = lake_url("lake");
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["-vv", "materialize", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("into {url}")),
        "{}",
        text(&out)
    );
    assert_same_lake(&read_back(&moto, "lake", &local_lake), 3);

    // A second run rewrites nothing; status lists the bucket and finds it whole.
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["materialize", "--from", "0", "--lake-url", &url],
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 written, 3 unchanged"),
        "{}",
        text(&out)
    );
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["status", "--lake-url", &url],
    ));
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        status.contains(&format!("lake            {url}")),
        "{status}"
    );
    assert!(
        !status.contains("MISSING") && !status.contains("DAMAGED"),
        "{status}"
    );

    // An object replaced behind bml's back: status sees its ETag changed,
    // the audit names it and --repair puts the derived bytes back.
    let key = "futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=01/hour=01/part.parquet";
    pyarrow_s3(&moto, "overwrite", &[&format!("{BUCKET}/lake/{key}")]);
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["status", "--lake-url", &url],
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 DAMAGED"),
        "{}",
        text(&out)
    );
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["audit", "--lake-url", &url, "--repair"],
    ));
    assert!(text(&out).contains(key), "{}", text(&out));
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["audit", "--lake-url", &url],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "clean after the repair: {}",
        text(&out)
    );
    assert_same_lake(&read_back(&moto, "lake", &local_lake), 3);

    // The day layout in the bucket: the closed day is one object.
    let url = lake_url("days");
    let out = materialize_days(data.path(), &moto.endpoint(), &url, "0");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let seen = read_back(&moto, "days", &local_lake);
    assert_eq!(
        seen["s3"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=01/part.parquet"]
    );
    assert_eq!(seen["rows"], serde_json::json!([180, 180]), "{seen}");
}

/// `bml materialize` into `url` in the day layout, closing days `settle`
/// hours after their end.
fn materialize_days(data: &Path, endpoint: &str, url: &str, settle: &str) -> Output {
    run(bml_s3(
        data,
        endpoint,
        &[
            "materialize",
            "--lake-url",
            url,
            "--layout",
            "day",
            "--day-settle-hours",
            settle,
        ],
    ))
}

/// The keys of the objects under `prefix` (beside a local lake).
fn keys(seen: &Value) -> Vec<&str> {
    seen["s3"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn a_day_closes_file_first_then_ledger_then_deletes_and_a_cut_sweep_is_finished_by_the_next_run() {
    let moto = Moto::start();
    let (_day, data) = ingested(3);
    let local = tempfile::tempdir().unwrap();
    let closing = ["--layout", "day", "--day-settle-hours", "0"];
    let mut args = vec!["--lake-dir", local.path().to_str().unwrap(), "materialize"];
    args.extend(closing);
    let out = support::bml(data.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The day still open in the bucket: an object per hour.
    let url = lake_url("closing");
    let out = materialize_days(data.path(), &moto.endpoint(), &url, "1000000");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let day_dir = "futures/um/minute/symbol=BTCUSDT/year=2024/month=03/day=01";
    let hours: Vec<String> = (0..3)
        .map(|h| format!("{day_dir}/part-0{h}.parquet"))
        .collect();
    assert_eq!(keys(&read_back(&moto, "closing", local.path())), hours);

    // The day closes in a bucket that refuses deletes: its file is written
    // and the ledger names it before any hour's object would go; the run
    // fails naming the object it could not remove.
    let denied = Proxy::start(moto.addr, Faults::DeletesDenied);
    let out = materialize_days(data.path(), &denied.endpoint(), &url, "0");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("removing {url}/{day_dir}/part-0")),
        "{}",
        text(&out)
    );
    let day_file = format!("{day_dir}/part.parquet");
    let mut twice = hours.clone();
    twice.push(day_file.clone());
    twice.sort();
    assert_eq!(
        keys(&read_back(&moto, "closing", local.path())),
        twice,
        "no minute missing: the day's file and its hours' objects"
    );
    {
        let ledger = bml::ledger::Ledger::open(data.path()).unwrap();
        let paths: Vec<String> = ledger
            .partitions()
            .unwrap()
            .into_values()
            .filter_map(|p| p.path)
            .collect();
        assert_eq!(paths, vec![day_file.clone(); 3]);
        let due = ledger.pending_sweeps().unwrap();
        assert_eq!(due.len(), 1, "the day's sweep is left due: {due:?}");
    }

    // The next run finishes the sweep (and has nothing to write).
    let out = materialize_days(data.path(), &moto.endpoint(), &url, "0");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 written, 3 unchanged"),
        "{}",
        text(&out)
    );
    let seen = read_back(&moto, "closing", local.path());
    assert_eq!(keys(&seen), [day_file.as_str()]);
    assert_eq!(seen["s3"], seen["local"], "the local lake's bytes");
    let ledger = bml::ledger::Ledger::open(data.path()).unwrap();
    assert!(ledger.pending_sweeps().unwrap().is_empty());
}

/// `bml` with no AWS setting in its environment but `HOME` and `vars`.
fn bml_profiled(data: &Path, home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bml"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("BML_") {
            command.env_remove(name);
        }
    }
    command
        .env("HOME", home)
        .envs(vars.iter().copied())
        .arg("--data-dir")
        .arg(data)
        .args(args);
    command
}

#[test]
fn credentials_region_and_endpoint_come_from_the_aws_profile_files_when_the_environment_has_none() {
    let moto = Moto::start();
    let (_day, data) = ingested(3);
    let out = support::bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let watch = Proxy::start(moto.addr, Faults::None);
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = default-key\naws_secret_access_key = default-secret\n\n\
             # the lake's own\n[lake]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n\n\
             [roled]\nrole_arn = arn:aws:iam::123456789012:role/lake\nsource_profile = default\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = us-east-1\n\n[profile lake]\nregion = eu-west-1\ns3 =\n  endpoint_url = {}\n",
            watch.endpoint()
        ),
    )
    .unwrap();

    // AWS_PROFILE names the profile: its keys sign every request, its
    // region scopes them, its S3 endpoint is the server.
    let url = lake_url("profiled");
    let args = ["materialize", "--lake-url", url.as_str()];
    let out = run(bml_profiled(
        data.path(),
        home.path(),
        &[("AWS_PROFILE", "lake")],
        &["-vv"].into_iter().chain(args).collect::<Vec<_>>(),
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        watch.signers(),
        BTreeSet::from([format!("{ACCESS_KEY}/eu-west-1")])
    );
    assert_same_lake(&read_back(&moto, "profiled", &data.path().join("lake")), 3);

    // The environment's keys win over the profile's.
    let out = run(bml_profiled(
        data.path(),
        home.path(),
        &[
            ("AWS_PROFILE", "lake"),
            ("AWS_ACCESS_KEY_ID", "from-env"),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
        &["status", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(watch.signers().contains("from-env/eu-west-1"));

    // A profile that is not there, and one whose credentials come by a
    // role: refused, each named, with the way around it.
    for (profile, says) in [
        (
            "nobody",
            format!(
                "AWS_PROFILE=nobody: no such profile in {}",
                aws.join("config").display()
            ),
        ),
        (
            "roled",
            "eval \"$(aws configure export-credentials --profile roled --format env)\"".to_owned(),
        ),
    ] {
        let out = run(bml_profiled(
            data.path(),
            home.path(),
            &[("AWS_PROFILE", profile)],
            &args,
        ));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(&says), "{profile}: {}", text(&out));
    }
}

/// A materialize into the bucket, silent.
fn materialize_s3(data: &Path, endpoint: &str, url: &str) -> Child {
    bml_s3(
        data,
        endpoint,
        &["--quiet", "materialize", "--from", "0", "--lake-url", url],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn kill_9_during_a_materialize_to_s3_leaves_no_partial_object_and_a_rerun_converges() {
    const HOURS: usize = 8;
    let moto = Moto::start();
    let (_day, data) = ingested(HOURS as u32);
    let out = support::bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let reference = support::lake_files(&data.path().join("lake"));
    let reference: BTreeMap<String, String> = reference
        .into_iter()
        .map(|(k, v)| (k.display().to_string(), v))
        .collect();
    assert_eq!(reference.len(), HOURS);

    let url = lake_url("killed");
    let started = Instant::now();
    assert!(materialize_s3(data.path(), &moto.endpoint(), &url)
        .wait()
        .unwrap()
        .success());
    let full_run = started.elapsed();
    // Start over in an empty prefix, and kill runs at random instants.
    let url = lake_url("again");
    let mut rng = fastrand::Rng::with_seed(5);
    let mut interrupted = 0;
    for _ in 0..8 {
        let _ = std::fs::remove_file(data.path().join("ledger.redb"));
        let mut child = materialize_s3(data.path(), &moto.endpoint(), &url);
        std::thread::sleep(full_run.mul_f64(rng.f64()));
        interrupted += usize::from(child.try_wait().unwrap().is_none());
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
        // Whatever is visible is a whole object with the reference's bytes.
        let seen = read_back(&moto, "again", &data.path().join("lake"));
        for (key, hash) in seen["s3"].as_object().unwrap() {
            assert_eq!(
                Some(hash.as_str().unwrap()),
                reference.get(key).map(String::as_str),
                "{key} is not the whole partition"
            );
        }
    }
    assert!(interrupted > 0, "no kill landed inside a run");
    let out = run(bml_s3(
        data.path(),
        &moto.endpoint(),
        &["materialize", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same_lake(&read_back(&moto, "again", &data.path().join("lake")), HOURS);
}

#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn puts_answered_503_or_cut_are_retried_and_a_bucket_that_stays_down_fails_naming_the_key() {
    let moto = Moto::start();
    let (_day, data) = ingested(3);
    let out = support::bml(data.path(), &["materialize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Every object's first PUT is answered 503, cut before the server, or
    // cut after it stored the object: the run succeeds, the bucket is whole.
    let flaky = Proxy::start(moto.addr, Faults::Flaky);
    let url = lake_url("flaky");
    let out = run(bml_s3(
        data.path(),
        &flaky.endpoint(),
        &["materialize", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        flaky.injected(),
        4,
        "one fault per object's first PUT: the symbol's claim and 3 hours"
    );
    assert_same_lake(&read_back(&moto, "flaky", &data.path().join("lake")), 3);

    // A bucket that answers every PUT with 503: the retries run out, the run
    // fails with the object named, and the ledger of a new data dir claims
    // no partition.
    let (_day2, fresh) = ingested(3);
    let down = Proxy::start(moto.addr, Faults::Down);
    let url = lake_url("down");
    let started = Instant::now();
    let out = run(bml_s3(
        fresh.path(),
        &down.endpoint(),
        &["--quiet", "materialize", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("writing {url}/futures/um/minute/symbol=BTCUSDT/")),
        "the key is named: {stderr}"
    );
    assert!(down.injected() > 3, "retried before giving up");
    assert!(started.elapsed() < Duration::from_secs(300));
    let ledger = bml::ledger::Ledger::open(fresh.path()).unwrap();
    assert!(
        ledger
            .partitions()
            .unwrap()
            .values()
            .all(|p| p.path.is_none()),
        "the ledger claims no partition"
    );
}

/// A generated day of `symbol` ingested into a new data dir.
fn ingested_symbol(symbol: &str, hours: u32) -> (tempfile::TempDir, tempfile::TempDir) {
    let day = tempfile::tempdir().unwrap();
    let out = support::python()
        .arg(support::generator())
        .args([
            "--symbol",
            symbol,
            "--date",
            DATE,
            "--hours",
            &hours.to_string(),
        ])
        .args([
            "--seed",
            "11",
            "--trades-per-sec",
            "2",
            "--book-per-sec",
            "5",
            "--out",
        ])
        .arg(day.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let data = tempfile::tempdir().unwrap();
    let out = support::bml(
        data.path(),
        &[
            "ingest",
            "vision",
            "--symbols",
            symbol,
            "--start",
            DATE,
            "--kinds",
            KINDS,
            "--from-dir",
            day.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (day, data)
}

#[test]
fn two_instances_with_disjoint_symbols_share_a_bucket_and_a_third_claiming_a_taken_symbol_is_refused(
) {
    let moto = Moto::start();
    let (_btc_day, btc) = ingested(2);
    let (_eth_day, eth) = ingested_symbol("ETHUSDT", 2);
    let url = lake_url("fleet");
    for data in [&btc, &eth] {
        let out = run(bml_s3(
            data.path(),
            &moto.endpoint(),
            &["materialize", "--lake-url", &url],
        ));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    // A reader needs nothing but the bucket: both symbols are in it.
    let seen = pyarrow_s3(&moto, "symbols", &[&format!("{BUCKET}/fleet")]);
    assert_eq!(
        seen,
        serde_json::json!({"symbols": ["BTCUSDT", "ETHUSDT"], "rows": 240})
    );

    // A third instance with BTCUSDT in its log is refused, the holder named,
    // and writes nothing.
    let (_third_day, third) = ingested(2);
    let out = run(bml_s3(
        third.path(),
        &moto.endpoint(),
        &["materialize", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let holder = std::fs::read_to_string(btc.path().join("instance-id")).unwrap();
    assert!(
        stderr
            .contains("BTCUSDT in the lake s3://minute-lake/fleet is kept by another bml instance")
            && stderr.contains(holder.trim())
            && stderr.contains("_bml/claims/BTCUSDT.json"),
        "{stderr}"
    );
    let ledger = bml::ledger::Ledger::open(third.path()).unwrap();
    assert!(ledger.partitions().unwrap().is_empty(), "nothing derived");

    // An instance rebuilding its ledger removes its orphans, never the
    // other instance's files; its audit calls none of them strays.
    let out = run(bml_s3(
        eth.path(),
        &moto.endpoint(),
        &["materialize", "--rebuild-ledger", "--lake-url", &url],
    ));
    assert!(
        text(&out).contains("0 partition files the log no longer holds removed"),
        "{}",
        text(&out)
    );
    let out = run(bml_s3(
        eth.path(),
        &moto.endpoint(),
        &["audit", "--lake-url", &url],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
