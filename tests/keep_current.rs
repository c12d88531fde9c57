//! `bml run-once` and `bml backfill-*` against the simulated exchange over
//! 127.0.0.1: the planner's bands end to end (Vision for ended, published
//! days; REST for the rest; gaps named), idempotence, a late Vision day, holes
//! and the `--max-missing-hours` bound.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use bml::ledger::{Ledger, Partition};
use support::{bml, text, Sim};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// All 60 minutes of an hour written.
const FULL_HOUR: u64 = (1 << 60) - 1;

fn keep_args<'a>(
    command: &'a str,
    sim: &'a Sim,
    vision: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![command, "--rest-base", sim.url(), "--vision-base", vision];
    args.extend_from_slice(extra);
    args
}

/// Runs a keeping command; it must exit 0. Returns its stdout and stderr.
fn keep(data: &Path, command: &str, sim: &Sim, extra: &[&str]) -> String {
    let vision = sim.vision_url();
    let out = bml(data, &keep_args(command, sim, &vision, extra));
    let said = text(&out);
    assert!(out.status.success(), "{command} failed:\n{said}");
    said
}

/// The partitions with at least one minute (the ledger also knows hours a
/// record reached without completing one: a metrics row at the next midnight).
fn partitions(data: &Path) -> BTreeMap<(String, i64), Partition> {
    let mut all = Ledger::open_read_only(data).unwrap().partitions().unwrap();
    all.retain(|_, p| p.minutes != 0);
    all
}

fn watermark(data: &Path, symbol: &str) -> i64 {
    Ledger::open_read_only(data).unwrap().watermarks().unwrap()[symbol]
}

fn today_start() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(DAY)
}

/// A live-clock market: three days of history, yesterday not on Vision yet.
fn live_market(extra: &[&str]) -> Sim {
    let args = [
        &[
            "--live-clock",
            "--history-days",
            "3",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--trades-per-minute",
            "20",
            // The test's minutes are few: the budget is 10× Binance's so that
            // the hundred-odd aggTrades pages of a day do not take minutes.
            "--weight-limit",
            "24000",
        ][..],
        extra,
    ]
    .concat();
    Sim::serve(&args)
}

/// Every minute of `symbol` from `first` up to its watermark is in the lake,
/// in partitions fed by Vision for the published days (REST too, where it
/// came first: Vision wins, both are named) and by REST alone for the rest.
fn check_complete(data: &Path, symbol: &str, first: i64, published_until: i64, rest_first: bool) {
    let mark = watermark(data, symbol);
    let parts = partitions(data);
    let mut hour = first;
    while hour + HOUR <= mark {
        let p = parts
            .get(&(symbol.to_string(), hour))
            .unwrap_or_else(|| panic!("{symbol}: no partition at {hour}"));
        assert_eq!(p.minutes, FULL_HOUR, "{symbol} {hour}: minutes missing");
        let vision = p.sources.iter().any(|s| s.contains("daily/klines/"));
        let rest = p.sources.iter().any(|s| s.contains("/fapi/v1/klines"));
        if hour < published_until {
            assert!(
                vision && (rest_first || !rest),
                "{symbol} {hour}: {:?}",
                p.sources
            );
        } else {
            assert!(rest && !vision, "{symbol} {hour}: {:?}", p.sources);
        }
        hour += HOUR;
    }
    let first_partition = parts.keys().find(|(s, _)| s == symbol).map(|(_, h)| *h);
    assert_eq!(
        first_partition,
        Some(first),
        "{symbol}: history starts at its listing"
    );
}

#[test]
fn run_once_fills_the_last_days_from_vision_and_rest_and_a_second_run_fetches_nothing() {
    let sim = live_market(&[]);
    let data = tempfile::tempdir().unwrap();
    let started = chrono::Utc::now().timestamp_millis();
    let said = keep(
        data.path(),
        "run-once",
        &sim,
        &["--symbols", "BTCUSDT,ETHUSDT"],
    );
    assert!(said.contains("archives ingested"), "{said}");
    assert!(said.contains("not published by Vision yet"), "{said}");
    assert!(
        said.contains("bookDepth"),
        "the synthetic market has no bookDepth: {said}"
    );

    let today = today_start();
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        // Complete up to a minute or two ago.
        let mark = watermark(data.path(), symbol);
        assert!(
            mark >= started - 3 * 60_000,
            "{symbol}: watermark {mark}, started {started}\n{said}"
        );
        check_complete(data.path(), symbol, today - 3 * DAY, today - DAY, false);
    }
    // bookTicker after 2024-03-31 with no live stream: settled for the ended
    // days, recorded once in the log; their hours carry the finding.
    assert!(
        said.contains("newly settled, recorded in the log"),
        "{said}"
    );
    let ledger = Ledger::open(data.path()).unwrap();
    let findings = ledger
        .findings("BTCUSDT", today - 2 * DAY + 12 * HOUR)
        .unwrap();
    let unfillable: Vec<_> = findings
        .iter()
        .filter(|f| f.check == "unfillable")
        .collect();
    assert_eq!(unfillable.len(), 1, "{findings:?}");
    assert!(
        unfillable[0].detail.starts_with("bookTicker ")
            && unfillable[0].detail.contains("no live stream recorded it"),
        "{unfillable:?}"
    );
    drop(ledger);

    // Right after, nothing is left to fetch (if the minute turned meanwhile,
    // the one run after that).
    let again = keep(
        data.path(),
        "run-once",
        &sim,
        &["--symbols", "BTCUSDT,ETHUSDT"],
    );
    assert!(!again.contains("newly settled"), "recorded once: {again}");
    if !again.contains("nothing to fetch") {
        assert!(!again.contains("archives ingested (1"), "{again}");
        let third = keep(
            data.path(),
            "run-once",
            &sim,
            &["--symbols", "BTCUSDT,ETHUSDT"],
        );
        assert!(third.contains("nothing to fetch"), "{again}\n{third}");
    }
}

#[test]
fn a_day_vision_publishes_late_replaces_its_rest_rows_and_the_watermark_holds() {
    let data = tempfile::tempdir().unwrap();
    let today = today_start();
    let first_mark = {
        let sim = live_market(&[]);
        keep(data.path(), "run-once", &sim, &["--symbols", "BTCUSDT"]);
        watermark(data.path(), "BTCUSDT")
    };
    // The same market, now with yesterday on Vision.
    let sim = live_market(&["--unpublished-days", "0"]);
    let said = keep(
        data.path(),
        "run-once",
        &sim,
        &["--symbols", "BTCUSDT", "--recheck-vision"],
    );
    assert!(said.contains("archives ingested"), "{said}");
    assert!(watermark(data.path(), "BTCUSDT") >= first_mark);
    check_complete(data.path(), "BTCUSDT", today - 3 * DAY, today, true);
    // The two sources agreed on every fact of the day: no conflict found.
    let ledger = Ledger::open_read_only(data.path()).unwrap();
    for hour in (today - DAY..today).step_by(HOUR as usize) {
        let findings = ledger.findings("BTCUSDT", hour).unwrap();
        assert!(
            findings.iter().all(|f| f.check != "conflict"),
            "{hour}: {findings:?}"
        );
    }
}

#[test]
fn backfill_range_fills_exactly_the_holes_bounded_by_max_missing_hours() {
    let sim = Sim::synthetic(&[
        "--start-date",
        "2024-03-01",
        "--days",
        "2",
        "--symbols",
        "BTCUSDT",
        "--trades-per-minute",
        "20",
    ]);
    let data = tempfile::tempdir().unwrap();
    let range = [
        "--symbols",
        "BTCUSDT",
        "--start",
        "2024-03-01",
        "--end",
        "2024-03-03",
    ];
    let bounded = [&range[..], &["--max-missing-hours", "24"]].concat();

    let first = keep(data.path(), "backfill-range", &sim, &bounded);
    assert!(first.contains("24 missing symbol-hours left"), "{first}");
    let parts = partitions(data.path());
    assert_eq!(parts.len(), 24, "the newest day only");
    assert!(
        parts.keys().all(|(_, h)| *h >= 1_709_337_600_000),
        "{:?}",
        parts.keys()
    );

    let second = keep(data.path(), "backfill-range", &sim, &range);
    assert!(!second.contains("left for the next run"), "{second}");
    assert_eq!(partitions(data.path()).len(), 48);
    let third = keep(data.path(), "backfill-range", &sim, &range);
    assert!(third.contains("nothing to fetch"), "{third}");
    // What no source has is listed with its reason.
    assert!(third.contains("bookDepth"), "{third}");
    assert!(third.contains("REST serves no history of it"), "{third}");

    // Holes in the lake: the files come back, byte for byte.
    let lake = data.path().join("lake");
    let before = support::lake_files(&lake);
    let holes: Vec<_> = before.keys().take(2).cloned().collect();
    for hole in &holes {
        std::fs::remove_file(lake.join(hole)).unwrap();
    }
    let repaired = keep(data.path(), "backfill-range", &sim, &range);
    assert!(
        repaired.contains("2 partitions were gone from the lake"),
        "{repaired}"
    );
    assert_eq!(support::lake_files(&lake), before);
}

/// `bml run-daemon` as a child whose stdout lines arrive on a channel with
/// the local time each came.
struct Daemon {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(i64, String)>,
    /// Where its `/metrics` and `/health` are served.
    metrics: String,
}

impl Daemon {
    fn start(data: &Path, sim: &Sim, poll: &str, extra: &[&str]) -> Daemon {
        use std::io::BufRead;
        let ws = sim.url().replace("http://", "ws://");
        let vision = sim.vision_url();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bml"))
            .arg("--data-dir")
            .arg(data)
            .args(["--quiet", "run-daemon", "--symbols", "BTCUSDT,ETHUSDT"])
            .args(["--rest-base", sim.url(), "--vision-base", &vision])
            .args(["--ws-base", &ws, "--poll-seconds", poll])
            .args(["--metrics-addr", &port.to_string()])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send
                    .send((chrono::Utc::now().timestamp_millis(), line))
                    .is_err()
                {
                    return;
                }
            }
        });
        Daemon {
            child,
            lines,
            metrics: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `GET path` of its metrics endpoint: the status and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let answer = reqwest::blocking::get(format!("{}{path}", self.metrics))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        (answer.status().as_u16(), answer.text().unwrap())
    }

    /// Waits for `n` minute-job lines (after the catch-up); returns them with
    /// the local time each came. The catch-up fetches yesterday and today
    /// from REST, so it is longest late in the UTC day and under injected
    /// faults: it gets 6 minutes, each job after it 2.
    fn jobs(&self, n: usize) -> Vec<(i64, String)> {
        let mut jobs = Vec::new();
        while jobs.len() < n {
            let wait = if jobs.is_empty() { 360 } else { 120 };
            let (at, line) = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(wait))
                .unwrap_or_else(|e| panic!("a job line within {wait} s: {e}"));
            if line.contains(" job: ") {
                jobs.push((at, line));
            }
        }
        jobs
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The minute a job line says the lake is complete up to (epoch ms).
fn complete_up_to(line: &str) -> i64 {
    let text = line.rsplit("complete up to ").next().unwrap();
    let minute = &text[..17];
    chrono::NaiveDateTime::parse_from_str(minute, "%Y-%m-%dT%H:%MZ")
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .and_utc()
        .timestamp_millis()
}

#[test]
fn run_daemon_keeps_every_closed_minute_within_poll_and_15_s_through_kill_9_and_stops_on_sigterm() {
    let sim = live_market(&[]);
    let data = tempfile::tempdir().unwrap();
    const POLL_S: i64 = 10;
    // Each closed minute is in the lake within poll + 15 s of its close: at
    // each job's end, every minute closed by then minus that is in.
    let lagging = |jobs: &[(i64, String)]| {
        for (at, line) in jobs {
            let due = at - (POLL_S + 15) * 1000;
            let closed_by_due = due - due.rem_euclid(60_000);
            assert!(
                complete_up_to(line) + 60_000 >= closed_by_due,
                "{line}: printed at {at}, the minutes closed by {closed_by_due} should be in"
            );
        }
    };
    // Looking for deleted partitions at every poll: one deleted by hand is
    // back by the next job or the one after (the first may have been under
    // way when it went).
    let daemon = Daemon::start(
        data.path(),
        &sim,
        &POLL_S.to_string(),
        &["--lake-check-minutes", "0"],
    );
    let mut jobs = daemon.jobs(1);
    let lake = data.path().join("lake");
    let hole = deleted_partition(&lake, "BTCUSDT");
    jobs.extend(daemon.jobs(1));
    if !jobs[1].1.contains("(1 gone from the lake, derived again)") {
        jobs.extend(daemon.jobs(1));
        assert!(
            jobs[2].1.contains("(1 gone from the lake, derived again)"),
            "{jobs:?}"
        );
    }
    assert!(lake.join(&hole).exists(), "{hole:?} is back");
    lagging(&jobs);
    daemon.signal("-KILL");
    drop(daemon);

    // By default the lake is looked at once per 15 minutes (and at the
    // catch-up): a file deleted after it stays gone for the jobs after.
    let daemon = Daemon::start(data.path(), &sim, &POLL_S.to_string(), &[]);
    let mut jobs = daemon.jobs(1);
    let hole = deleted_partition(&lake, "ETHUSDT");
    jobs.extend(daemon.jobs(2));
    lagging(&jobs);
    assert!(
        !jobs
            .iter()
            .any(|(_, line)| line.contains(" gone from the lake")),
        "{jobs:?}"
    );
    assert!(
        !lake.join(&hole).exists(),
        "{hole:?} waits for the next look"
    );
    let asked = std::time::Instant::now();
    daemon.signal("-TERM");
    let mut daemon = daemon;
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "SIGTERM: {status}");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    // No minute missing from the listing to the watermark, kill -9 or not.
    let mark = no_minute_missing(data.path(), "BTCUSDT");
    assert!(mark >= complete_up_to(&jobs[2].1));
}

/// Deletes the oldest partition file of `symbol` from the lake; its path.
fn deleted_partition(lake: &Path, symbol: &str) -> std::path::PathBuf {
    let path = support::lake_files(lake)
        .into_keys()
        .find(|p| p.to_string_lossy().contains(&format!("symbol={symbol}/")))
        .expect("a partition of the symbol");
    std::fs::remove_file(lake.join(&path)).unwrap();
    path
}

/// Every minute of `symbol` from its listing (three days before today) up to
/// its watermark is in the lake; returns the watermark.
fn no_minute_missing(data: &Path, symbol: &str) -> i64 {
    let mark = watermark(data, symbol);
    let parts = partitions(data);
    let mut minute = today_start() - 3 * DAY;
    while minute <= mark {
        let hour = minute - minute.rem_euclid(HOUR);
        let p = &parts[&(symbol.to_string(), hour)];
        let bit = (minute - hour) / 60_000;
        assert!(
            p.minutes & (1 << bit) != 0,
            "{symbol}: minute {minute} missing"
        );
        minute += 60_000;
    }
    mark
}

#[test]
fn run_daemon_survives_429s_5xx_and_cut_answers_without_losing_a_minute_and_its_metrics_say_so() {
    let sim = live_market(&[
        "--throttle-rate",
        "0.05",
        "--fail-rate",
        "0.05",
        "--cut-rate",
        "0.05",
    ]);
    let data = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(data.path(), &sim, "10", &[]);
    let jobs = daemon.jobs(3);
    let (status, health) = daemon.get("/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    let (status, metrics) = daemon.get("/metrics");
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let lag = value(&format!("bml_lake_lag_seconds{{symbol=\"{symbol}\"}}"));
        assert!(
            (0.0..=10.0 + 15.0 + 60.0).contains(&lag),
            "{symbol} lag {lag}"
        );
    }
    assert!(value("bml_jobs_total") >= 4.0);
    assert!(value("bml_rest_refusals_total") > 0.0, "{metrics}");
    assert!(value("bml_rest_weight_total") > 0.0);
    assert!(value("bml_events_total{source=\"rest\"}") > 0.0);
    assert!(value("bml_events_total{source=\"live\"}") > 0.0);
    assert!(value("bml_live_connections_total") > 0.0);
    assert!(value("bml_log_head_offset") > 0.0);
    daemon.signal("-TERM");
    let mut daemon = daemon;
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "SIGTERM after faults: {status}");
    let stats = sim.stats();
    assert!(
        stats["too_many"].as_u64().unwrap() > 0,
        "no 429 was injected: {stats}"
    );
    assert_eq!(stats["banned"], 0, "{stats}");
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let mark = no_minute_missing(data.path(), symbol);
        assert!(mark >= complete_up_to(&jobs[2].1) - 60_000, "{symbol}");
    }
}
