//! `bml check-exchange`: the assumptions bml makes about the exchange, each
//! tried once against a live exchange with a few cheap, read-only requests
//! (about 70 request weight and a few small downloads). The tests can only
//! run against bml's own simulator, so a misreading shared by the client and
//! the simulator would pass them all; this is how a user finds one.
//! `docs/binance-fidelity.md` lists the assumptions and their sources.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono::{Datelike, NaiveDate};
use serde_json::Value;

use super::rest::governor::Cost;
use super::rest::{Client, Governor};
use super::vision::{FileSpec, ALL_KINDS};
use crate::binance::{
    metrics_snapshot_time, LAST_BOOK_TICKER_DAY, METRICS_LABELS_MOVED, METRICS_PERIOD_MS,
};
use crate::event::VisionKind;
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The exchange behaves as bml assumes.
    Pass,
    /// It behaves otherwise, in a way bml copes with (said for the record).
    Note,
    /// It behaves otherwise, in a way that breaks bml.
    Fail,
}

/// One assumption and what the exchange said to it.
#[derive(Debug, Clone)]
pub struct Check {
    /// The assumption, in a few words.
    pub name: String,
    /// What was found.
    pub verdict: Verdict,
    /// What was seen (URL, value).
    pub detail: String,
}

/// Where to look, and at what.
#[derive(Debug, Clone)]
pub struct Target {
    /// REST base, e.g. `https://fapi.binance.com`.
    pub rest_base: String,
    /// Vision base ending in `/futures/um/`.
    pub vision_base: String,
    /// WebSocket host, e.g. `wss://fstream.binance.com` (the routed bases
    /// `/public` and `/market` are appended).
    pub ws_base: String,
    /// The symbol to try.
    pub symbol: String,
    /// The day whose archives to look for; default: two days before the
    /// exchange's today (Vision publishes a day after it ends).
    pub day: Option<NaiveDate>,
}

/// Runs every check; fails only if the exchange cannot be reached at all.
pub fn run(target: &Target) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("bml/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let rest = target.rest_base.trim_end_matches('/');
    let server_time = exchange_info(&http, rest, &mut checks)?;
    let client = Client::connect(rest, Arc::new(Governor::default()))?.0;
    let day = target.day.unwrap_or_else(|| {
        chrono::DateTime::from_timestamp_millis(server_time)
            .unwrap_or_default()
            .date_naive()
            - chrono::Days::new(2)
    });
    listings(&client, &target.symbol, server_time, &mut checks);
    vision_archives(&http, target, day, &mut checks);
    metrics_labels(&http, &client, target, day, &mut checks);
    agg_trades_window(&client, &target.symbol, server_time, &mut checks);
    agg_trades_horizon(&client, &target.symbol, server_time, &mut checks);
    statistics_timestamp(&client, &target.symbol, &mut checks);
    websocket(target, &mut checks);
    Ok(checks)
}

/// How long each WebSocket connection of the checks listens at most.
const LISTEN: Duration = Duration::from_secs(8);

/// The WebSocket side: each routed base serves its streams on the combined
/// endpoint, every payload reads with the collector's own reader, the
/// subscriptions are listed as asked, and depth diffs chain by `pu`; the old
/// unrouted base stays silent for a `/market` stream (bml never uses it).
fn websocket(target: &Target, checks: &mut Vec<Check>) {
    use crate::sources::live::streams::{Base, StreamKind};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return check(checks, "WebSocket checks", Verdict::Fail, e.to_string()),
    };
    let host = target.ws_base.trim_end_matches('/');
    let name = |kind: StreamKind| kind.stream(&target.symbol, "100ms");
    for base in [Base::Market, Base::Public] {
        let kinds: Vec<StreamKind> = [
            StreamKind::AggTrade,
            StreamKind::MarkPrice,
            StreamKind::BookTicker,
            StreamKind::Depth,
        ]
        .into_iter()
        .filter(|k| k.base() == base)
        .collect();
        let streams: Vec<String> = kinds.iter().map(|k| name(*k)).collect();
        let url = format!("{host}{}/stream?streams={}", base.path(), streams.join("/"));
        let heard = match runtime.block_on(listen(&url, &streams)) {
            Ok(heard) => heard,
            Err(e) => {
                let what = format!("{} serves its streams", base.path());
                check(checks, what, Verdict::Fail, format!("{url}: {e:#}"));
                continue;
            }
        };
        let listed = heard
            .listed
            .as_ref()
            .is_some_and(|l| streams.iter().all(|s| l.contains(s)));
        check(
            checks,
            format!(
                "{} lists the subscriptions asked for (LIST_SUBSCRIPTIONS)",
                base.path()
            ),
            if listed { Verdict::Pass } else { Verdict::Fail },
            format!("{url}: {:?}", heard.listed),
        );
        for (kind, stream) in kinds.iter().zip(&streams) {
            stream_check(*kind, stream, &url, &heard, checks);
        }
    }
    let stream = name(StreamKind::MarkPrice);
    let url = format!("{host}/stream?streams={stream}");
    let (verdict, detail) = match runtime.block_on(listen(&url, std::slice::from_ref(&stream))) {
        Ok(heard) if heard.data.is_empty() => (
            Verdict::Pass,
            format!("{url}: silent for {} s", LISTEN.as_secs()),
        ),
        Ok(heard) => (
            Verdict::Note,
            format!(
                "{url}: {} messages (served after all; bml uses /market)",
                heard.data.len()
            ),
        ),
        Err(e) => (Verdict::Note, format!("{url}: {e:#}")),
    };
    check(
        checks,
        "the old unrouted base is silent for /market streams",
        verdict,
        detail,
    );
}

/// What one connection heard.
#[derive(Default)]
struct Heard {
    /// LIST_SUBSCRIPTIONS' answer.
    listed: Option<Vec<String>>,
    /// Data messages: stream, and the message's text as it came.
    data: Vec<(String, String)>,
}

/// Subscribes to `streams` at `url` (combined), asks LIST_SUBSCRIPTIONS,
/// and listens until every stream sent 3 messages or [`LISTEN`] is over.
async fn listen(url: &str, streams: &[String]) -> anyhow::Result<Heard> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut socket, _) = tokio::time::timeout(LISTEN, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| anyhow!("no connection within {} s", LISTEN.as_secs()))??;
    socket
        .send(Message::text(r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#))
        .await?;
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + LISTEN;
    let enough = |heard: &Heard| {
        heard.listed.is_some()
            && streams
                .iter()
                .all(|s| heard.data.iter().filter(|(d, _)| d == s).count() >= 3)
    };
    while !enough(&heard) {
        let Ok(next) = tokio::time::timeout_at(deadline, socket.next()).await else {
            break;
        };
        let Some(message) = next else {
            anyhow::bail!("the server closed the connection");
        };
        let Message::Text(text) = message? else {
            continue;
        };
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
        match (
            value.get("stream").and_then(Value::as_str),
            value.get("data"),
        ) {
            (Some(stream), Some(_)) => heard.data.push((stream.to_owned(), text.to_string())),
            _ if value.get("id").is_some() => {
                heard.listed = value["result"].as_array().map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                });
            }
            _ => anyhow::bail!("neither data nor an answer: {text}"),
        }
    }
    let _ = socket.close(None).await;
    Ok(heard)
}

/// One stream's messages: every one reads; the mark price (each second) and
/// depth (each 100 ms) must come; depth diffs chain (`pu` = the last `u`).
fn stream_check(
    kind: crate::sources::live::StreamKind,
    stream: &str,
    url: &str,
    heard: &Heard,
    checks: &mut Vec<Check>,
) {
    use crate::event::Event;
    use crate::sources::live::StreamKind;
    let name = format!("{stream} payloads read as bml reads them");
    let mut events = Vec::new();
    for (_, text) in heard.data.iter().filter(|(s, _)| s == stream) {
        // The collector's own reading of the whole message, envelope and all.
        match crate::sources::live::payload::message(text) {
            Ok(Some((_, _, event))) => events.push(event),
            Ok(None) => {}
            Err(e) => return check(checks, name, Verdict::Fail, format!("{url}: {e:#}: {text}")),
        }
    }
    if events.is_empty() {
        let (verdict, why) = match kind {
            StreamKind::MarkPrice | StreamKind::Depth => (
                Verdict::Fail,
                "silent, though it sends every second or faster",
            ),
            _ => (Verdict::Note, "no message (a quiet market?)"),
        };
        return check(
            checks,
            name,
            verdict,
            format!("{url}: {why} in {} s", LISTEN.as_secs()),
        );
    }
    check(
        checks,
        name,
        Verdict::Pass,
        format!("{} messages", events.len()),
    );
    if kind == StreamKind::Depth {
        let diffs: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::DepthDiff(d) => Some((d.prev_final_update_id, d.final_update_id)),
                _ => None,
            })
            .collect();
        let breaks = diffs.windows(2).filter(|w| w[1].0 != w[0].1).count();
        check(
            checks,
            format!("{stream} diffs chain (each pu is the last u)"),
            if breaks == 0 {
                Verdict::Pass
            } else {
                Verdict::Note
            },
            format!("{} diffs, {breaks} breaks", diffs.len()),
        );
    }
}

fn check(checks: &mut Vec<Check>, name: impl Into<String>, verdict: Verdict, detail: String) {
    checks.push(Check {
        name: name.into(),
        verdict,
        detail,
    });
}

/// exchangeInfo: the weight budget, the clock, the used-weight header.
fn exchange_info(
    http: &reqwest::blocking::Client,
    rest: &str,
    checks: &mut Vec<Check>,
) -> anyhow::Result<i64> {
    let url = format!("{rest}/fapi/v1/exchangeInfo");
    let sent = chrono::Utc::now().timestamp_millis();
    let response = http
        .get(&url)
        .send()
        .with_context(|| format!("GET {url}"))?;
    let received = chrono::Utc::now().timestamp_millis();
    let headers = response.headers().clone();
    let body = response
        .error_for_status()
        .and_then(|r| r.bytes())
        .with_context(|| format!("GET {url}"))?;
    let info: Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))?;
    let server_time = info["serverTime"]
        .as_i64()
        .ok_or_else(|| anyhow!("GET {url}: no serverTime"))?;
    let offset = server_time - (sent + received) / 2;
    let verdict = if offset.abs() <= 1000 {
        Verdict::Pass
    } else {
        Verdict::Note
    };
    check(
        checks,
        "server clock near the local one (windows follow the server's anyway)",
        verdict,
        format!(
            "serverTime - local = {offset} ms (round trip {} ms)",
            received - sent
        ),
    );
    weight_limits(&info, &headers, &url, checks);
    Ok(server_time)
}

/// What `--symbols ALL` and the history start rest on: exchangeInfo read by
/// the client lists the symbol as a trading perpetual (`contractType`,
/// `status`) with an `onboardDate` in the past, and lists many such.
fn listings(client: &Client, symbol: &str, server_time: i64, checks: &mut Vec<Check>) {
    /// 2019-09-01, before the first USD-M perpetual (BTCUSDT, 2019-09-08).
    const FIRST_LISTING_MS: i64 = 1_567_296_000_000;
    let listings = client.listings();
    let perpetuals = listings.values().filter(|l| l.trading_perpetual).count();
    let (verdict, detail) = match listings.get(symbol) {
        None => (Verdict::Fail, format!("{symbol} is not listed")),
        Some(l) if !l.trading_perpetual => (
            Verdict::Fail,
            format!("{symbol} is not a TRADING PERPETUAL as bml reads contractType and status"),
        ),
        Some(l) => match l.onboard_ms {
            Some(t) if (FIRST_LISTING_MS..server_time).contains(&t) => (
                Verdict::Pass,
                format!(
                    "{symbol} onboardDate {}; {perpetuals} trading perpetuals listed",
                    crate::time::utc_minute(t)
                ),
            ),
            other => (
                Verdict::Fail,
                format!("{symbol} onboardDate {other:?} is not an epoch-ms time in the past"),
            ),
        },
    };
    check(
        checks,
        "exchangeInfo lists the symbol as a trading perpetual with its onboardDate",
        verdict,
        detail,
    );
}

/// The REQUEST_WEIGHT limit `exchangeInfo` states, and the used-weight header
/// its answer carries.
fn weight_limits(
    info: &Value,
    headers: &reqwest::header::HeaderMap,
    url: &str,
    checks: &mut Vec<Check>,
) {
    let weight = info["rateLimits"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["rateLimitType"] == "REQUEST_WEIGHT"));
    let Some(weight) = weight else {
        check(
            checks,
            "exchangeInfo states a REQUEST_WEIGHT limit",
            Verdict::Fail,
            format!("{url}: none in rateLimits"),
        );
        return;
    };
    let (interval, num) = (
        weight["interval"].as_str().unwrap_or("?"),
        weight["intervalNum"].as_u64().unwrap_or(0),
    );
    let per_minute = interval == "MINUTE" && num == 1;
    check(
        checks,
        "request weight counted per minute",
        if per_minute {
            Verdict::Pass
        } else {
            Verdict::Note
        },
        format!("{} per {num} {interval}", weight["limit"]),
    );
    let suffix = format!(
        "{num}{}",
        interval.chars().next().unwrap_or('?').to_ascii_lowercase()
    );
    let header = format!("x-mbx-used-weight-{suffix}");
    let used = headers.get(&header).and_then(|v| v.to_str().ok());
    check(
        checks,
        format!("answers carry {}", header.to_uppercase()),
        if used.is_some() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        match used {
            Some(v) => format!("{v} used"),
            None => format!("{url}: missing; the governor cannot see other processes' weight"),
        },
    );
}

/// Every archive kind is where bml asks for it (HEAD, for `day`; funding for
/// the month before), and bookTicker is absent after its last day.
fn vision_archives(
    http: &reqwest::blocking::Client,
    target: &Target,
    day: NaiveDate,
    checks: &mut Vec<Check>,
) {
    let base = vision_base(target);
    for kind in ALL_KINDS {
        let period = match kind {
            VisionKind::FundingRate => {
                let previous = day.with_day(1).unwrap_or(day) - chrono::Days::new(1);
                format!("{:04}-{:02}", previous.year(), previous.month())
            }
            _ => day.format("%Y-%m-%d").to_string(),
        };
        let spec = FileSpec {
            kind,
            symbol: target.symbol.to_uppercase(),
            period,
        };
        let url = format!("{base}{}", spec.rel_path());
        let expected = !(kind == VisionKind::BookTicker && day > LAST_BOOK_TICKER_DAY);
        let status = http.head(&url).send().map(|r| r.status());
        let (verdict, detail) = match status {
            Ok(s) if s.is_success() == expected => (Verdict::Pass, format!("{url}: {s}")),
            Ok(s) => (Verdict::Fail, format!("{url}: {s}")),
            Err(e) => (Verdict::Fail, format!("{url}: {e}")),
        };
        let name = if expected {
            format!(
                "Vision {} archive at bml's URL",
                super::vision::kind_name(kind)
            )
        } else {
            "no Vision bookTicker archive after 2024-03-31".to_string()
        };
        check(checks, name, verdict, detail);
    }
}

/// The day's metrics file, read twice: its first label must be 00:05 before
/// 2026-06-25 (a row is the snapshot at its label) and 00:00 from then on (the
/// snapshot 5 minutes after its label); and REST's openInterestHist, whose
/// `timestamp` bml takes for the snapshot time, must agree with the file's
/// snapshots at the same times.
fn metrics_labels(
    http: &reqwest::blocking::Client,
    client: &Client,
    target: &Target,
    day: NaiveDate,
    checks: &mut Vec<Check>,
) {
    let spec = FileSpec {
        kind: VisionKind::Metrics,
        symbol: target.symbol.to_uppercase(),
        period: day.format("%Y-%m-%d").to_string(),
    };
    let url = format!("{}{}", vision_base(target), spec.rel_path());
    let expected = if day >= METRICS_LABELS_MOVED {
        "00:00:00"
    } else {
        "00:05:00"
    };
    let name = format!("metrics file of {day} starts at {expected} (label convention)");
    let rows = || -> anyhow::Result<Vec<(String, String)>> {
        let bytes = http.get(&url).send()?.error_for_status()?.bytes()?;
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
        let mut text = String::new();
        zip.by_index(0)?.read_to_string(&mut text)?;
        // (create_time, sum_open_interest) of every data row.
        Ok(text
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[0].to_string(),
                    f.get(2).copied().unwrap_or("").to_string(),
                )
            })
            .collect())
    };
    let rows = match rows() {
        Ok(rows) if !rows.is_empty() => rows,
        Ok(_) => return check(checks, name, Verdict::Fail, format!("{url}: no data row")),
        Err(e) => return check(checks, name, Verdict::Fail, format!("{url}: {e:#}")),
    };
    let label = &rows[0].0;
    let verdict = if label.ends_with(expected) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    check(
        checks,
        name,
        verdict,
        format!("{url}: first row labelled {label}"),
    );
    rest_statistics_time(client, target, day, &rows, checks);
}

/// openInterestHist against the Vision file's snapshots: equal values at the
/// same snapshot times pass; equal values 5 minutes apart fail (the REST
/// `timestamp` would then not be the snapshot time bml takes it for).
fn rest_statistics_time(
    client: &Client,
    target: &Target,
    day: NaiveDate,
    rows: &[(String, String)],
    checks: &mut Vec<Check>,
) {
    let name = "openInterestHist timestamp is the snapshot time (as Vision's)";
    let vision: std::collections::HashMap<i64, f64> = rows
        .iter()
        .filter_map(|(label, oi)| {
            let label = chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%d %H:%M:%S").ok()?;
            let snapshot = metrics_snapshot_time(day, label.and_utc().timestamp_millis());
            Some((snapshot, oi.parse().ok()?))
        })
        .collect();
    let start = day
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis();
    let query = [
        ("symbol", target.symbol.clone()),
        ("period", "5m".to_string()),
        ("startTime", start.to_string()),
        ("endTime", (start + DAY_MS - 1).to_string()),
        ("limit", "500".to_string()),
    ];
    let points = client.get(
        "/futures/data/openInterestHist",
        &query,
        Cost::weight(1),
        |v| {
            let items = v.as_array().context("expected a JSON array")?;
            Ok(items
                .iter()
                .filter_map(|p| {
                    let t = &p["timestamp"];
                    let time = t.as_i64().or_else(|| t.as_str()?.parse().ok())?;
                    Some((time, p["sumOpenInterest"].as_str()?.parse::<f64>().ok()?))
                })
                .collect::<Vec<(i64, f64)>>())
        },
    );
    let points = match points {
        Ok(points) => points,
        Err(e) => return check(checks, name, Verdict::Fail, format!("{e:#}")),
    };
    let agree = |shift: i64| {
        points
            .iter()
            .filter(|(t, oi)| vision.get(&(t + shift)) == Some(oi))
            .count()
    };
    let (same, later) = (agree(0), agree(METRICS_PERIOD_MS));
    let detail = format!(
        "{} REST points of {day}: {same} equal Vision's snapshot at their timestamp, {later} the one 5 minutes later",
        points.len()
    );
    let verdict = if points.is_empty() {
        Verdict::Note
    } else if same > later {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    check(checks, name, verdict, detail);
}

/// Which end of a crowded aggTrades window comes back. bml reads hours by id
/// and copes with either; anything else (trades outside the window) breaks it.
fn agg_trades_window(client: &Client, symbol: &str, server_time: i64, checks: &mut Vec<Check>) {
    let start = (server_time.div_euclid(HOUR_MS) - 1) * HOUR_MS;
    let name = "aggTrades: a crowded time window answers with one end of it";
    let outcome = || -> anyhow::Result<(Verdict, String)> {
        let window = agg_trades(
            client,
            symbol,
            &[
                ("startTime", start.to_string()),
                ("endTime", (start + HOUR_MS - 1).to_string()),
            ],
            1000,
        )?;
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return Ok((Verdict::Note, "the hour before now holds no trade".into()));
        };
        let times = |t: &Value| t["T"].as_i64().unwrap_or(-1);
        if window
            .iter()
            .any(|t| !(start..start + HOUR_MS).contains(&times(t)))
        {
            return Ok((Verdict::Fail, "trades outside the window came back".into()));
        }
        if window.len() < 1000 {
            return Ok((
                Verdict::Note,
                format!("the hour held {} trades: too few to tell", window.len()),
            ));
        }
        let first_id = first["a"].as_u64().context("field a")?;
        let before = agg_trades(
            client,
            symbol,
            &[("fromId", first_id.saturating_sub(1).to_string())],
            1,
        )?;
        let before_in_window = before
            .first()
            .is_some_and(|t| t["a"].as_u64() != Some(first_id) && times(t) >= start);
        let end = if before_in_window { "last" } else { "first" };
        Ok((
            Verdict::Pass,
            format!(
                "the {end} 1000 (ids {first_id}..={}); bml reads by id either way",
                last["a"]
            ),
        ))
    };
    let (verdict, detail) = outcome().unwrap_or_else(|e| (Verdict::Fail, format!("{e:#}")));
    check(checks, name, verdict, detail);
}

/// bml plans aggTrades over REST for the last 48 hours only (what clients
/// report); if older ones are served, the horizon is merely conservative.
fn agg_trades_horizon(client: &Client, symbol: &str, server_time: i64, checks: &mut Vec<Check>) {
    let start = server_time - 72 * HOUR_MS;
    let answer = agg_trades(
        client,
        symbol,
        &[
            ("startTime", start.to_string()),
            ("endTime", (start + MINUTE_MS).to_string()),
        ],
        1,
    );
    let (verdict, detail) = match answer {
        Ok(page) if page.is_empty() => (Verdict::Pass, "72 hours ago: nothing served".into()),
        Ok(_) => (
            Verdict::Note,
            "72 hours ago is still served: the 48-hour horizon is conservative".into(),
        ),
        Err(e) => (Verdict::Pass, format!("72 hours ago refused: {e:#}")),
    };
    check(
        checks,
        "aggTrades over REST: 48 hours back",
        verdict,
        detail,
    );
}

/// The statistics' `timestamp`: a number (recordings) or text (the docs).
fn statistics_timestamp(client: &Client, symbol: &str, checks: &mut Vec<Check>) {
    let query = [
        ("symbol", symbol.to_string()),
        ("period", "5m".to_string()),
        ("limit", "1".to_string()),
    ];
    let answer = client.get(
        "/futures/data/openInterestHist",
        &query,
        Cost::weight(1),
        |v| Ok(v.get(0).map(|p| p["timestamp"].clone())),
    );
    let (verdict, detail) = match answer {
        Ok(Some(Value::Number(n))) => (Verdict::Pass, format!("a number ({n})")),
        Ok(Some(Value::String(s))) if s.parse::<i64>().is_ok() => {
            (Verdict::Pass, format!("text ({s:?}); bml reads both"))
        }
        Ok(other) => (Verdict::Fail, format!("{other:?}")),
        Err(e) => (Verdict::Fail, format!("{e:#}")),
    };
    check(
        checks,
        "statistics timestamp is a number or its text",
        verdict,
        detail,
    );
}

fn agg_trades(
    client: &Client,
    symbol: &str,
    params: &[(&'static str, String)],
    limit: u32,
) -> anyhow::Result<Vec<Value>> {
    let mut query = vec![("symbol", symbol.to_string()), ("limit", limit.to_string())];
    query.extend(params.iter().cloned());
    client.get("/fapi/v1/aggTrades", &query, Cost::weight(20), |v| {
        v.as_array().cloned().context("expected a JSON array")
    })
}

fn vision_base(target: &Target) -> String {
    let base = &target.vision_base;
    if base.ends_with('/') {
        base.clone()
    } else {
        format!("{base}/")
    }
}
