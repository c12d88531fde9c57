//! `bml ingest rest` against `bml sim serve`: the real reqwest client over a
//! real socket on 127.0.0.1, the exchange's limits and its bad days.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use bml::event::{Event, RecordClass, Source, Timed};
use support::{bml, text, Sim};

const DATE: &str = "2024-03-01";
const START: i64 = 1_709_251_200_000;
const HOUR: i64 = 3_600_000;

/// The columns a REST-built lake cannot match a Vision-built one on: the book
/// columns (REST has no bookTicker history), and the top-trader shares (REST
/// gives the exchange's 4-decimal figures, Vision metrics give r/(1+r)).
const ONLY_VISION_GIVES: &str = "micro_price_close,avg_spread_usdt,bid_ask_imbalance,\
avg_bid_depth,avg_ask_depth,spread_pct,top_trader_long_pct,top_trader_short_pct";

/// Every history endpoint, by name.
const ALL_KINDS: [&str; 10] = [
    "klines",
    "markPriceKlines",
    "indexPriceKlines",
    "premiumIndexKlines",
    "aggTrades",
    "fundingRate",
    "openInterestHist",
    "topLongShortAccountRatio",
    "topLongShortPositionRatio",
    "globalLongShortAccountRatio",
];

/// `ingest rest` of BTCUSDT for the test day from `sim`, plus `extra` arguments.
fn rest_args<'a>(sim: &'a Sim, extra: &[&'a str]) -> Vec<&'a str> {
    support::rest_ingest_args(DATE, "2024-03-02", sim.url(), extra)
}

fn ingest_rest(sim: &Sim, data: &Path, kinds: &str) -> std::process::Output {
    bml(data, &rest_args(sim, &["--kinds", kinds]))
}

/// A coverage record: endpoint, start, end, rows.
type Range = (String, i64, i64, u64);

/// The REST facts of a log: every market event, and the coverage ranges.
fn rest_log(data: &Path) -> (BTreeSet<String>, Vec<Range>) {
    let mut facts = BTreeSet::new();
    let mut ranges = Vec::new();
    for (_, record, _) in support::log_records(data) {
        assert!(matches!(record.source, Source::Rest { .. }));
        for event in record.events {
            match event {
                Event::RestRangeComplete(r) => {
                    ranges.push((r.endpoint, r.start_ms, r.end_ms, r.rows));
                }
                e => {
                    facts.insert(format!("{e:?}"));
                }
            }
        }
    }
    ranges.sort();
    (facts, ranges)
}

/// Every range the plan makes for `hours` of data, all complete, and the rows
/// they claim are the rows in the log.
fn assert_complete(data: &Path, kinds: &[&str], hours: i64) {
    let (facts, ranges) = rest_log(data);
    let mut expected: Vec<(String, i64, i64)> = Vec::new();
    for kind in kinds {
        let endpoint = if kind.contains("Ratio") || *kind == "openInterestHist" {
            format!("/futures/data/{kind}")
        } else {
            format!("/fapi/v1/{kind}")
        };
        if *kind == "aggTrades" {
            for h in 0..hours {
                expected.push((endpoint.clone(), START + h * HOUR, START + (h + 1) * HOUR));
            }
        } else {
            expected.push((endpoint, START, START + hours * HOUR));
        }
    }
    expected.sort();
    let got: Vec<(String, i64, i64)> = ranges.iter().map(|r| (r.0.clone(), r.1, r.2)).collect();
    assert_eq!(got, expected, "one coverage record per range, none missing");
    assert_eq!(
        ranges.iter().map(|r| r.3).sum::<u64>() as usize,
        facts.len()
    );
}

/// The same simulated day through REST and through the simulator's Vision
/// archives gives the same lake, except where the spec says it cannot: REST
/// has no bookTicker history (book columns NULL), and its top-trader shares
/// are the exchange's rounded figures, not r/(1+r).
#[test]
fn rest_and_vision_give_the_same_lake_where_both_supply_the_columns() {
    let day = support::vision_day_at_rates(DATE, 2, 5, Some((2.0, 5.0)));
    let sim = Sim::start(day.path(), &[]);
    let (rest, vision) = both_channels(&sim, 120);
    // The book columns differ because REST has no bookTicker history at all.
    assert!(rest_log(rest.path())
        .0
        .iter()
        .all(|f| !f.starts_with("BookTicker")));
    // The same trade is the same aggTrade on both channels.
    let trades = |data: &Path| -> BTreeSet<String> {
        support::log_records(data)
            .into_iter()
            .filter(|(_, r, visible)| *visible && r.class() == RecordClass::Data)
            .flat_map(|(_, r, _)| r.events)
            .filter(|e| matches!(e, Event::AggTrade(_)))
            .map(|e| format!("{e:?}"))
            .collect()
    };
    assert_eq!(trades(rest.path()), trades(vision.path()));
}

/// A market made up from a seed is one set of facts on both channels too: the
/// two lakes differ only where the spec says they must.
/// The same seed makes the same archives, byte for byte; another seed does not.
#[test]
fn a_seeded_market_is_the_same_over_rest_and_vision_and_repeats_exactly() {
    let sim = Sim::synthetic(&["--seed", "7", "--trades-per-minute", "20"]);
    both_channels(&sim, 1440);
    let checksum = |sim: &Sim| {
        let url = format!(
            "{}daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{DATE}.zip.CHECKSUM",
            sim.vision_url()
        );
        reqwest::blocking::get(url).unwrap().text().unwrap()
    };
    let again = Sim::synthetic(&["--seed", "7", "--trades-per-minute", "20"]);
    let other = Sim::synthetic(&["--seed", "8", "--trades-per-minute", "20"]);
    assert_eq!(checksum(&sim), checksum(&again));
    assert_ne!(checksum(&sim), checksum(&other));
}

/// A symbol the exchange does not list is refused before any range is
/// fetched: exit 2, the nearest listed symbol suggested; polls likewise.
#[test]
fn an_unknown_symbol_is_a_bad_command_line_with_a_suggestion() {
    let day = support::vision_day_at_rates(DATE, 1, 3, Some((0.25, 0.5)));
    let sim = Sim::start(day.path(), &[]);
    let data = tempfile::tempdir().unwrap();
    let mut args = rest_args(&sim, &[]);
    args[3] = "BTCUSTD";
    let out = bml(data.path(), &args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("no symbol BTCUSTD") && all.contains("did you mean BTCUSDT?"),
        "{all}"
    );
    assert_eq!(
        sim.stats()["served"],
        1,
        "only exchangeInfo: {}",
        sim.stats()
    );
    let out = bml(
        data.path(),
        &[
            "ingest",
            "poll",
            "--symbol",
            "FOOBAR",
            "--base-url",
            sim.url(),
        ],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("no symbol FOOBAR") && !all.contains("did you mean"),
        "{all}"
    );
}

/// Polls answer the exchange's state at its "now" (the end of the market's
/// data), one record each, the 1000-level book included.
#[test]
fn polls_append_the_state_at_the_exchanges_now() {
    let sim = Sim::synthetic(&["--seed", "7", "--trades-per-minute", "20"]);
    let data = tempfile::tempdir().unwrap();
    let out = bml(
        data.path(),
        &[
            "ingest",
            "poll",
            "--symbol",
            "BTCUSDT",
            "--base-url",
            sim.url(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The exchange's clock starts at the end of the data and runs on.
    let start = START + 24 * HOUR;
    let near = |t: i64| (start..start + 60_000).contains(&t);
    let events: Vec<Event> = support::log_records(data.path())
        .into_iter()
        .flat_map(|(_, r, _)| r.events)
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
    for event in events {
        match event {
            Event::PremiumIndex(p) => {
                assert!(near(p.time) && p.next_funding_time == start + 8 * HOUR);
                assert!(p.mark_price.to_f64() > 0.0 && p.index_price.to_f64() > 0.0);
            }
            Event::OpenInterest(o) => {
                assert!(near(o.time));
                assert!(o.contracts.to_f64() > 0.0 && o.value_usdt.is_none());
            }
            Event::BookTicker(b) => {
                assert!(near(b.time()));
                assert_eq!(
                    b.ask_price.mantissa() - b.bid_price.mantissa(),
                    1,
                    "one tick wide"
                );
            }
            Event::DepthSnapshot(d) => {
                assert!(near(d.event_time));
                assert_eq!((d.bids.len(), d.asks.len()), (1000, 1000));
                assert!(
                    d.bids[0].0.mantissa() < d.asks[0].0.mantissa(),
                    "not crossed"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Ingests everything `sim` serves once over REST (all endpoints) and once as
/// Vision archives into two data dirs, materializes both (`rows` rows, no
/// finding), and checks the lakes differ only in [`ONLY_VISION_GIVES`] and that
/// every REST range has its coverage record. Returns (REST dir, Vision dir).
fn both_channels(sim: &Sim, rows: usize) -> (tempfile::TempDir, tempfile::TempDir) {
    let (rest, vision) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = bml(rest.path(), &rest_args(sim, &[]));
    assert!(
        out.status.success() && text(&out).contains("0 failed"),
        "{}",
        text(&out)
    );
    assert_complete(rest.path(), &ALL_KINDS, rows as i64 / 60);
    let vision_url = sim.vision_url();
    let out = bml(
        vision.path(),
        &support::vision_ingest_args(DATE, &vision_url, &[]),
    );
    assert!(text(&out).contains("0 failed"), "{}", text(&out));
    for data in [&rest, &vision] {
        let out = bml(data.path(), &["materialize"]);
        let expected = format!("{rows} rows, 0 findings");
        assert!(
            out.status.success() && text(&out).contains(&expected),
            "{}",
            text(&out)
        );
    }
    assert_eq!(
        support::differing_columns(&rest.path().join("lake"), &vision.path().join("lake"), rows),
        ONLY_VISION_GIVES
    );
    (rest, vision)
}

/// One governor paces every caller of a process: ten ranges fetched at once
/// against a small weight budget draw no 429 at all. Ten processes at once
/// (ten governors, one IP budget) race for it: they draw 429s, which they wait
/// out, so nobody is banned, no page is lost, and every log holds the same facts.
#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn ten_ranges_at_once_draw_no_429_and_parallel_processes_no_ban() {
    let day = support::vision_day_at_rates(DATE, 2, 6, Some((0.25, 1.0)));
    let sim = Sim::start(
        day.path(),
        &["--weight-limit", "60", "--weight-window-s", "2"],
    );
    let one = tempfile::tempdir().unwrap();
    let out = bml(one.path(), &rest_args(&sim, &["--concurrency", "10"]));
    assert!(out.status.success(), "{}", text(&out));
    let stats = sim.stats();
    assert_eq!(
        (stats["too_many"].as_u64(), stats["banned"].as_u64()),
        (Some(0), Some(0)),
        "{stats}"
    );

    assert_complete(one.path(), &ALL_KINDS, 2);

    let dirs: Vec<tempfile::TempDir> = (0..10).map(|_| tempfile::tempdir().unwrap()).collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            Command::new(env!("CARGO_BIN_EXE_bml"))
                .arg("--quiet")
                .arg("--data-dir")
                .arg(d.path())
                .args(rest_args(&sim, &["--kinds", "klines,aggTrades"]))
                .output_async()
        })
        .collect();
    let mut refusals = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let count = stdout
            .split(" refusals (429/418)")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        refusals += count.unwrap_or_else(|| panic!("no refusal count in: {stdout}"));
    }
    let stats = sim.stats();
    assert_eq!(stats["banned"], 0, "{stats}");
    // The race happened (one IP budget, ten governors), every 429 the exchange
    // sent was seen and waited out by the process it was sent to, and no
    // window served more than the budget.
    assert!(stats["too_many"].as_u64().unwrap() > 0, "no race: {stats}");
    assert_eq!(Some(refusals), stats["too_many"].as_u64(), "{stats}");
    let limit = stats["weight_limit"].as_u64().unwrap();
    for served in stats["weight_per_window"].as_array().unwrap() {
        assert!(served.as_u64().unwrap() <= limit, "{stats}");
    }
    let reference = rest_log(dirs[0].path()).0;
    for d in &dirs {
        assert_complete(d.path(), &["klines", "aggTrades"], 2);
        assert_eq!(rest_log(d.path()).0, reference);
    }
    eprintln!("sim after ten processes: {stats}");
}

/// Bursts of 429s and 5xx, bodies cut mid-way and malformed answers are all
/// survived: the log ends up with exactly the facts of a clean run.
#[test]
#[ignore = "heavy tier: run by CI (cargo test --workspace -- --include-ignored)"]
fn throttles_server_errors_cut_and_malformed_answers_are_survived_without_a_gap() {
    let day = support::vision_day_at_rates(DATE, 2, 7, Some((5.0, 1.0)));
    let clean = tempfile::tempdir().unwrap();
    {
        let sim = Sim::start(day.path(), &[]);
        assert!(
            ingest_rest(&sim, clean.path(), "klines,aggTrades,openInterestHist")
                .status
                .success()
        );
    }
    let sim = Sim::start(
        day.path(),
        &[
            "--throttle-rate",
            "0.2",
            "--fail-rate",
            "0.2",
            "--cut-rate",
            "0.2",
            "--malformed-rate",
            "0.2",
            "--seed",
            "3",
        ],
    );
    let faulty = tempfile::tempdir().unwrap();
    let out = ingest_rest(&sim, faulty.path(), "klines,aggTrades,openInterestHist");
    assert!(out.status.success(), "{}", text(&out));
    let stats = sim.stats();
    for fault in ["too_many", "server_errors", "cut", "malformed"] {
        assert!(
            stats[fault].as_u64().unwrap() > 0,
            "no {fault} injected: {stats}"
        );
    }
    assert_eq!(stats["banned"], 0, "{stats}");
    assert_complete(
        faulty.path(),
        &["klines", "aggTrades", "openInterestHist"],
        2,
    );
    assert_eq!(rest_log(faulty.path()), rest_log(clean.path()));
}

/// An exchange that only ever answers garbage: the run gives up with an error
/// naming the URL and appends nothing.
#[test]
fn an_answer_that_never_parses_is_a_named_error_and_nothing_is_appended() {
    let day = support::vision_day_at_rates(DATE, 1, 8, Some((0.5, 1.0)));
    let sim = Sim::start(day.path(), &["--malformed-rate", "1"]);
    let data = tempfile::tempdir().unwrap();
    let out = ingest_rest(&sim, data.path(), "klines");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains(&format!("GET {}/fapi/v1/exchangeInfo", sim.url()))
            && message.contains("gave up after"),
        "{message}"
    );
    assert!(support::log_records(data.path()).is_empty());
}

/// `Command::output` without blocking: spawn with piped output.
trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// The hour of a busy market (about 20 000 aggTrades), read over REST with the
/// exchange answering crowded time windows with their first and then with
/// their last 1 000 trades: either way every trade arrives, so the REST-built
/// lake equals the Vision-built one in every column.
#[test]
fn agg_trades_are_complete_whichever_end_of_a_window_comes_back() {
    let day = support::vision_day_at_rates(DATE, 1, 21, Some((5.6, 0.2)));
    let kinds = "klines,markPriceKlines,indexPriceKlines,premiumIndexKlines,aggTrades";
    let vision = tempfile::tempdir().unwrap();
    support::ingest_day(vision.path(), day.path(), DATE, kinds);
    let trades = support::visible_events(vision.path(), "aggTrades").len();
    assert!((19_000..21_000).contains(&trades), "{trades} trades");
    assert!(bml(vision.path(), &["materialize"]).status.success());
    for end in ["first", "last"] {
        let sim = Sim::start(day.path(), &["--agg-trades-window-end", end]);
        let rest = tempfile::tempdir().unwrap();
        let out = ingest_rest(&sim, rest.path(), kinds);
        assert!(out.status.success(), "{end}: {}", text(&out));
        let agg: Vec<u64> = support::log_records(rest.path())
            .into_iter()
            .flat_map(|(_, r, _)| r.events)
            .filter_map(|e| match e {
                Event::AggTrade(t) => Some(t.agg_trade_id),
                _ => None,
            })
            .collect();
        assert_eq!(agg.len(), trades, "{end}: every trade once");
        assert!(bml(rest.path(), &["materialize"]).status.success());
        let differing =
            support::differing_columns(&rest.path().join("lake"), &vision.path().join("lake"), 60);
        assert_eq!(differing, "", "{end}: REST and Vision lakes differ");
    }
}

/// A page lost on the way (the exchange skips a page's worth of ids) is seen
/// as an id gap: fetched again, and where the gap persists the hour fails and
/// gets no coverage record.
#[test]
fn a_lost_page_of_agg_trades_is_a_gap_and_the_hour_is_not_complete() {
    let day = support::vision_day_at_rates(DATE, 1, 22, Some((1.0, 0.2)));
    let sim = Sim::start(day.path(), &["--agg-trade-gap-rate", "1"]);
    let data = tempfile::tempdir().unwrap();
    let out = ingest_rest(&sim, data.path(), "aggTrades");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("aggTrade ids jump from"),
        "{}",
        text(&out)
    );
    assert!(sim.stats()["gaps"].as_u64().unwrap() > 0);
    let covered = support::log_records(data.path())
        .into_iter()
        .flat_map(|(_, r, _)| r.events)
        .any(|e| matches!(e, Event::RestRangeComplete(_)));
    assert!(!covered, "no coverage for an hour with a gap");
}

/// A year of funding for three symbols: wide windows of up to 1 000
/// settlements, paced by fundingRate's own budget (500 requests per 5 minutes
/// per IP). It takes two requests per symbol and draws no 429.
#[test]
fn a_year_of_funding_for_three_symbols_takes_a_few_requests_and_no_429() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("data/futures/um/daily")).unwrap();
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
    let year = 1_735_689_600_000i64; // 2025-01-01
    let next_year = 1_767_225_600_000i64; // 2026-01-01
    for symbol in symbols {
        let folder = root
            .path()
            .join(format!("data/futures/um/monthly/fundingRate/{symbol}"));
        std::fs::create_dir_all(&folder).unwrap();
        for month in 1..=12u32 {
            let first = chrono::NaiveDate::from_ymd_opt(2025, month, 1).unwrap();
            let next = first + chrono::Months::new(1);
            let ms =
                |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
            let mut csv = "calc_time,funding_interval_hours,last_funding_rate\n".to_string();
            for t in (ms(first)..ms(next)).step_by(8 * HOUR as usize) {
                csv.push_str(&format!("{},8,0.0001{}\n", t + 3, (t / HOUR) % 10));
            }
            let name = format!("{symbol}-fundingRate-2025-{month:02}");
            support::write_archive(
                &folder.join(format!("{name}.zip")),
                &[(&format!("{name}.csv"), csv.as_bytes())],
            );
        }
    }
    let now = next_year.to_string();
    let sim = Sim::start(
        root.path(),
        &["--symbols", &symbols.join(","), "--now-ms", &now],
    );
    let data = tempfile::tempdir().unwrap();
    let out = bml(
        data.path(),
        &[
            "ingest",
            "rest",
            "--symbol",
            &symbols.join(","),
            "--start",
            "2025-01-01",
            "--end",
            "2026-01-01",
            "--kinds",
            "fundingRate",
            "--base-url",
            sim.url(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let settlements = support::log_records(data.path())
        .into_iter()
        .flat_map(|(_, r, _)| r.events)
        .filter(
            |e| matches!(e, Event::FundingRate(f) if (year..next_year).contains(&f.funding_time)),
        )
        .count();
    assert_eq!(settlements, 3 * 365 * 3);
    let stats = sim.stats();
    let requests = stats["served"].as_u64().unwrap() - 1; // exchangeInfo
    println!("a year of funding, 3 symbols: {requests} requests, {stats}");
    assert_eq!(
        (
            stats["too_many"].as_u64(),
            stats["funding_too_many"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(requests, 6, "two wide windows per symbol");
}

/// The statistics endpoints' `timestamp` as the docs show it (text) reads like
/// the number recordings show.
#[test]
fn statistics_timestamps_sent_as_text_are_read() {
    let sim = Sim::synthetic(&[
        "--seed",
        "4",
        "--trades-per-minute",
        "5",
        "--stats-timestamp-text",
    ]);
    let data = tempfile::tempdir().unwrap();
    let kinds = "openInterestHist,topLongShortAccountRatio,globalLongShortAccountRatio";
    let out = ingest_rest(&sim, data.path(), kinds);
    assert!(
        out.status.success() && text(&out).contains("0 failed"),
        "{}",
        text(&out)
    );
    let points = support::log_records(data.path())
        .into_iter()
        .flat_map(|(_, r, _)| r.events)
        .filter(|e| matches!(e, Event::OpenInterest(_) | Event::LongShortRatio(_)))
        .count();
    // The day's snapshots are 00:05 … 24:00; the last is the next day's.
    assert_eq!(points, 3 * 287);
}

/// Re-running a range appends nothing: ranges the log already holds read to
/// their end are not fetched again, unless `--refetch` asks.
#[test]
fn a_range_already_complete_is_not_fetched_again_unless_asked() {
    let sim = Sim::synthetic(&["--seed", "9", "--trades-per-minute", "5"]);
    let data = tempfile::tempdir().unwrap();
    let kinds = "klines,markPriceKlines,fundingRate";
    let head = |d: &Path| bml_wal::stat(&d.join("wal")).unwrap().next_offset;
    let out = ingest_rest(&sim, data.path(), kinds);
    assert!(
        text(&out).contains("3 ranges: 3 complete, 0 failed, 0 already"),
        "{}",
        text(&out)
    );
    let after_first = head(data.path());
    let out = ingest_rest(&sim, data.path(), kinds);
    assert!(
        text(&out).contains("3 ranges: 0 complete, 0 failed, 3 already in the log"),
        "{}",
        text(&out)
    );
    assert_eq!(head(data.path()), after_first, "nothing appended");
    let out = bml(
        data.path(),
        &rest_args(&sim, &["--kinds", kinds, "--refetch"]),
    );
    assert!(
        text(&out).contains("3 ranges: 3 complete"),
        "{}",
        text(&out)
    );
    assert!(head(data.path()) > after_first);
}
