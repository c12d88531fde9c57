//! `bml sim serve`: a simulated Binance USD-M exchange on a local socket.
//!
//! No test may touch Binance, yet every source must be exercised with its real
//! client over a real socket, bad days included. The simulator answers REST
//! ([`rest`]) with the exchange's paths, shapes, limits and weights, enforces
//! the per-minute weight budget ([`limits`]), serves the Vision archives it was
//! loaded from, and injects faults on request (latency, 5xx, throttling, bodies
//! cut mid-way, malformed JSON; missing days, damaged archives, wrong
//! checksums). Its market ([`market`]: Vision archives, real or made up from a
//! seed by [`synthetic`]) is one set of facts, so REST, Vision and the live
//! streams ([`ws`], played by [`tape`] on the same address) agree on every
//! trade.

pub mod capture;
pub mod depth;
pub mod limits;
pub mod market;
pub mod rest;
pub mod synthetic;
pub mod tape;
pub mod vision;
pub mod ws;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use limits::{Admission, Limits};
use market::Market;
use rest::Params;

/// Faults to inject, each a fraction of requests (0 = never).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added to every answer.
    pub latency: Duration,
    /// Answered 500 or 503.
    pub server_errors: f64,
    /// Answered 429 (`Retry-After: 1`), as if someone else used the budget.
    pub throttles: f64,
    /// REST bodies cut mid-way (the connection drops).
    pub cut_bodies: f64,
    /// REST bodies that are not valid JSON, or lack a field.
    pub malformed: f64,
    /// Days (`YYYY-MM-DD`) whose Vision archives are missing (404).
    pub missing_days: Vec<String>,
    /// Vision archives served with damaged bytes (file names, or the end of
    /// their path where the kline kinds share a name).
    pub corrupt_archives: Vec<String>,
    /// Vision archives whose `.CHECKSUM` names another hash (as above).
    pub wrong_checksums: Vec<String>,
    /// aggTrades pages by `fromId` that skip a page's worth of trades, as if
    /// a page had been lost.
    pub agg_trade_gaps: f64,
    /// Answers without the `X-MBX-USED-WEIGHT-…` header (a "wrong" exchange
    /// for `bml check-exchange` to notice).
    pub omit_weight_header: bool,
}

/// Which `limit` trades an aggTrades `startTime`/`endTime` window holding more
/// than `limit` answers with. Binance does not document it; ccxt says the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WindowEnd {
    /// The first `limit` trades of the window.
    First,
    /// The last `limit` trades of the window.
    Last,
}

/// How the exchange behaves where Binance's documentation is silent or bml's
/// reading of it is unverified: each one a named assumption the tests switch
/// (`docs/binance-fidelity.md`).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Which end of a crowded aggTrades time window comes back.
    pub agg_trades_window_end: WindowEnd,
    /// How far back aggTrades are served; older windows answer -4166 (the
    /// code and the figure are assumptions: clients report 48 hours, the
    /// USD-M docs say one year). `None`: no limit.
    pub agg_trades_horizon_ms: Option<i64>,
    /// `startTime` without `endTime` (or the reverse) answers -1128 (an
    /// assumption; the docs do not say).
    pub refuse_start_without_end: bool,
    /// Statistics `timestamp` as JSON text, as the docs show it (recordings
    /// show a number).
    pub stats_timestamp_text: bool,
    /// fundingRate and fundingInfo requests per IP per funding window
    /// (Binance: 500 per 5 minutes).
    pub funding_limit: u32,
    /// The funding window, ms.
    pub funding_window_ms: i64,
}

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (port 0: any free port; the address is printed).
    pub addr: SocketAddr,
    /// The request-weight budget per IP per window.
    pub weight_limit: u32,
    /// The budget's window, ms (Binance: one minute; shorter makes tests quick).
    pub weight_window_ms: i64,
    /// The simulated clock at start (epoch ms); it runs on from there at the
    /// local clock's pace. Horizons count back from it, weight windows are
    /// aligned to it, `serverTime` and the `Date` header tell it. Default: the
    /// end of the market's data.
    pub now_ms: Option<i64>,
    /// Where the exchange's behaviour is an assumption: which one.
    pub behaviour: Behaviour,
    /// Seed of the fault injection.
    pub seed: u64,
    /// Faults to inject.
    pub faults: Faults,
    /// The WebSocket side: where its tape starts, how fast, its rules and faults.
    pub live: ws::LiveConfig,
    /// Serve an archive only once its day (month) has ended on the
    /// simulator's clock, as Vision publishes (`--live-clock`). Off, every
    /// archive of the market is served, whatever the clock says.
    pub publish_ended_only: bool,
}

/// Counters of what the simulator answered (`GET /sim/stats`).
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    served: AtomicU64,
    weight_served: AtomicU64,
    too_many: AtomicU64,
    banned: AtomicU64,
    funding_too_many: AtomicU64,
    gaps: AtomicU64,
    server_errors: AtomicU64,
    cut: AtomicU64,
    malformed: AtomicU64,
    ws_connections: AtomicU64,
    ws_messages: AtomicU64,
}

struct Sim {
    market: Market,
    config: Config,
    /// The simulated clock at `started`.
    now_ms: i64,
    started: std::time::Instant,
    limits: Mutex<Limits>,
    rng: Mutex<fastrand::Rng>,
    stats: Stats,
    /// The live streams' messages, to every WebSocket connection.
    tape: ws::Tape,
    /// Told when a client subscribes to something (`--ws-wait`).
    subscribed: tokio::sync::Notify,
    /// Some client subscribed to a depth stream: the tape makes diffs.
    depth_wanted: std::sync::atomic::AtomicBool,
    /// The market instant of the last message the tape sent (0: none yet):
    /// the order book's "now" once a client follows the depth stream, so that
    /// a depth snapshot agrees with the diffs.
    tape_ms: std::sync::atomic::AtomicI64,
    /// The WebSocket connections open, by number.
    open: Mutex<std::collections::BTreeSet<u64>>,
    /// The connection to break next, and how (`--ws-break-every-s`).
    break_order: tokio::sync::watch::Sender<Option<(u64, ws::Break)>>,
}

/// Serves `market` until the process ends. Prints `listening on http://ADDR`
/// on stdout first, so that a caller that asked for port 0 learns the port.
pub fn serve(market: Market, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        tracing::info!(%addr, symbols = ?market.symbols.keys().collect::<Vec<_>>(), "simulated exchange up");
        let sim = Arc::new(Sim {
            now_ms: config.now_ms.unwrap_or_else(|| market.end_ms()),
            started: std::time::Instant::now(),
            limits: Mutex::new(Limits::new(
                config.weight_limit,
                config.weight_window_ms,
                config.behaviour.funding_limit,
                config.behaviour.funding_window_ms,
            )),
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            stats: Stats::default(),
            tape: tokio::sync::broadcast::channel(ws::TAPE_BUFFER).0,
            subscribed: tokio::sync::Notify::new(),
            depth_wanted: std::sync::atomic::AtomicBool::new(false),
            tape_ms: std::sync::atomic::AtomicI64::new(0),
            open: Mutex::default(),
            break_order: tokio::sync::watch::channel(None).0,
            market,
            config,
        });
        ws::play(sim.clone());
        ws::break_connections(sim.clone());
        let streams = |base| {
            Router::new()
                .route("/stream", get(ws::combined))
                .route("/ws/{*names}", get(ws::raw))
                .with_state((sim.clone(), base))
        };
        let app = Router::new()
            .nest("/public", streams(ws::Base::Public))
            .nest("/market", streams(ws::Base::Market))
            .merge(streams(ws::Base::Unrouted))
            .fallback(handle)
            .with_state(sim);
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
        Ok(())
    })
}

impl Sim {
    fn chance(&self, fraction: f64) -> bool {
        fraction > 0.0 && self.rng.lock().expect("rng lock").f64() < fraction
    }

    /// The exchange's clock now.
    fn clock_ms(&self) -> i64 {
        self.now_ms + self.started.elapsed().as_millis() as i64
    }
}

/// Every answer, with the `Date` of the exchange's clock (the server would
/// otherwise stamp the local clock's).
async fn handle(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    Query(params): Query<Params>,
) -> Response {
    let mut response = answer(&sim, peer, &uri, &params).await;
    response
        .headers_mut()
        .insert(header::DATE, date_header(sim.clock_ms()));
    response
}

async fn answer(sim: &Sim, peer: SocketAddr, uri: &Uri, params: &Params) -> Response {
    sim.stats.requests.fetch_add(1, Ordering::Relaxed);
    if !sim.config.faults.latency.is_zero() {
        tokio::time::sleep(sim.config.faults.latency).await;
    }
    let path = uri.path();
    if path == "/sim/stats" {
        return stats(sim).into_response();
    }
    if let Some(rel) = path.strip_prefix("/data/futures/um/") {
        if sim.chance(sim.config.faults.server_errors) {
            sim.stats.server_errors.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::SERVICE_UNAVAILABLE, "simulated server error").into_response();
        }
        return vision_file(sim, rel).await;
    }
    let Some(weight) = rest::weight(path, params) else {
        return (StatusCode::NOT_FOUND, "no such endpoint").into_response();
    };
    let throttle = sim.chance(sim.config.faults.throttles);
    let now = sim.clock_ms();
    let funding = rest::FUNDING_PATHS.contains(&path);
    let (admission, used, suffix) = {
        let mut limits = sim.limits.lock().expect("limits lock");
        let (admission, used) = limits.admit(peer.ip(), weight, now, throttle, funding);
        (admission, used, limits.interval().2)
    };
    let mut response = match admission {
        Admission::Served => {
            sim.stats.served.fetch_add(1, Ordering::Relaxed);
            sim.stats
                .weight_served
                .fetch_add(u64::from(weight), Ordering::Relaxed);
            rest_answer(sim, path, params, now)
        }
        Admission::FundingTooMany { retry_after_s } => {
            sim.stats.funding_too_many.fetch_add(1, Ordering::Relaxed);
            refusal(
                StatusCode::TOO_MANY_REQUESTS,
                retry_after_s,
                -1003,
                "Too many fundingRate/fundingInfo requests (500 per 5 minutes).",
            )
        }
        Admission::TooMany { retry_after_s } => {
            sim.stats.too_many.fetch_add(1, Ordering::Relaxed);
            refusal(
                StatusCode::TOO_MANY_REQUESTS,
                retry_after_s,
                -1003,
                "Too many requests; wait for Retry-After.",
            )
        }
        Admission::Banned { retry_after_s } => {
            sim.stats.banned.fetch_add(1, Ordering::Relaxed);
            refusal(
                StatusCode::IM_A_TEAPOT,
                retry_after_s,
                -1003,
                "IP banned for hammering after 429s.",
            )
        }
    };
    if !sim.config.faults.omit_weight_header {
        response.headers_mut().insert(
            header::HeaderName::try_from(format!("x-mbx-used-weight-{suffix}"))
                .expect("a header name"),
            HeaderValue::from_str(&used.to_string()).expect("digits"),
        );
    }
    response
}

/// The `Date` header of the exchange's clock (HTTP's format, whole seconds).
fn date_header(ms: i64) -> HeaderValue {
    let text = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    HeaderValue::from_str(&text).expect("ASCII")
}

fn refusal(status: StatusCode, retry_after_s: u64, code: i32, msg: &str) -> Response {
    let mut response = (
        status,
        axum::Json(serde_json::json!({"code": code, "msg": msg})),
    )
        .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after_s.to_string()).expect("digits"),
    );
    response
}

/// A served REST request: the answer, or an injected fault.
fn rest_answer(sim: &Sim, path: &str, params: &Params, now: i64) -> Response {
    let faults = &sim.config.faults;
    let mut params = std::borrow::Cow::Borrowed(params);
    if path == "/fapi/v1/aggTrades" && sim.chance(faults.agg_trade_gaps) {
        if let Some(from) = params.get("fromId").and_then(|f| f.parse::<u64>().ok()) {
            sim.stats.gaps.fetch_add(1, Ordering::Relaxed);
            let limit = params.get("limit").and_then(|l| l.parse::<u64>().ok());
            let skipped = from + limit.unwrap_or(500);
            params.to_mut().insert("fromId".into(), skipped.to_string());
        }
    }
    let params = params.as_ref();
    // The book is the tape's once a client follows it (its diffs must
    // bracket the snapshot); before that, the REST clock's, like every answer.
    let tape_ms = sim.tape_ms.load(Ordering::Relaxed);
    let followed = sim.depth_wanted.load(Ordering::Relaxed) && tape_ms != 0;
    let now = if path == "/fapi/v1/depth" && followed {
        tape_ms
    } else {
        now
    };
    let live = &sim.config.live;
    if path == "/fapi/v1/depth"
        && live
            .depth_gap_at
            .is_some_and(|gap| (gap..gap + live.depth_outage_ms).contains(&now))
    {
        sim.stats.server_errors.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "simulated depth outage").into_response();
    }
    if sim.chance(faults.server_errors) {
        sim.stats.server_errors.fetch_add(1, Ordering::Relaxed);
        let status = if sim.chance(0.5) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return (status, "simulated server error").into_response();
    }
    let (limit, (interval, interval_num, _)) = {
        let limits = sim.limits.lock().expect("limits lock");
        (limits.limit(), limits.interval())
    };
    let budget = rest::Budget {
        limit,
        interval,
        interval_num,
    };
    if let (Some(snapshot), "/fapi/v1/depth") = (
        sim.market
            .capture
            .as_ref()
            .and_then(|c| c.depth_snapshot.as_ref()),
        path,
    ) {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            snapshot.clone(),
        )
            .into_response();
    }
    let behaviour = &sim.config.behaviour;
    let value = match rest::answer(&sim.market, &budget, behaviour, path, params, now) {
        Ok(value) => value,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"code": e.code, "msg": e.msg})),
            )
                .into_response()
        }
    };
    let mut body = serde_json::to_vec(&value).expect("JSON values serialize");
    if sim.chance(faults.malformed) {
        sim.stats.malformed.fetch_add(1, Ordering::Relaxed);
        body = malformed(value, sim.chance(0.5));
    } else if sim.chance(faults.cut_bodies) && body.len() > 1 {
        sim.stats.cut.fetch_add(1, Ordering::Relaxed);
        return cut_body(body);
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Broken JSON text, or valid JSON whose first element lost a field.
fn malformed(value: serde_json::Value, broken_text: bool) -> Vec<u8> {
    let text = serde_json::to_vec(&value).expect("JSON values serialize");
    if broken_text || value.as_array().is_none_or(|a| a.is_empty()) {
        return text[..text.len() / 2].to_vec();
    }
    let mut value = value;
    match &mut value[0] {
        serde_json::Value::Object(o) => {
            let first = o.keys().next().cloned().expect("answers have fields");
            o.remove(&first);
        }
        serde_json::Value::Array(a) => {
            a.truncate(a.len() / 2);
        }
        _ => {}
    }
    serde_json::to_vec(&value).expect("JSON values serialize")
}

/// Announces the whole body, sends half, then drops the connection.
fn cut_body(body: Vec<u8>) -> Response {
    let half = body[..body.len() / 2].to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated drop",
        )),
    ];
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    response.headers_mut().insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&body.len().to_string()).expect("digits"),
    );
    response
}

/// A file of the Vision tree the market was loaded from.
async fn vision_file(sim: &Sim, rel: &str) -> Response {
    let Some(root) = &sim.market.vision_root else {
        return (StatusCode::NOT_FOUND, "no Vision archives loaded").into_response();
    };
    let rel = Path::new(rel);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    }
    let faults = &sim.config.faults;
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let archive = name.strip_suffix(".CHECKSUM").unwrap_or(name);
    // Vision publishes an archive after its day (month) has ended, and no
    // bookTicker archive after 2024-03-31.
    let unpublished = (sim.config.publish_ended_only
        && period_end(archive).is_some_and(|end| end > sim.clock_ms()))
        || (rel.starts_with("daily/bookTicker")
            && crate::binance::vision_file_day(archive)
                .is_some_and(|day| day > crate::binance::LAST_BOOK_TICKER_DAY));
    let missing = unpublished
        || faults
            .missing_days
            .iter()
            .any(|day| archive.ends_with(&format!("-{day}.zip")));
    let path: PathBuf = root.join(rel);
    let read = if missing {
        None
    } else {
        tokio::fs::read(&path).await.ok()
    };
    let Some(mut bytes) = read else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    // Faults name an archive by its path's end: a file name, or (the kline
    // kinds share one name) `markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-….zip`.
    let full = rel.to_str().unwrap_or_default();
    let archive_path = full.strip_suffix(".CHECKSUM").unwrap_or(full);
    let named = |list: &[String]| list.iter().any(|f| archive_path.ends_with(f.as_str()));
    if name.ends_with(".CHECKSUM") && named(&faults.wrong_checksums) {
        bytes = format!("{}  {archive}\n", "0".repeat(64)).into_bytes();
    } else if !name.ends_with(".CHECKSUM") && named(&faults.corrupt_archives) {
        let middle = bytes.len() / 2;
        if let Some(byte) = bytes.get_mut(middle) {
            *byte ^= 0xFF;
        }
    }
    bytes.into_response()
}

/// When the period of an archive named `name` ends (epoch ms): its day, or
/// its month (`…-2024-03.zip`).
fn period_end(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".zip")?;
    let tail = |n: usize| stem.get(stem.len().checked_sub(n)?..);
    let period = crate::binance::vision_period(tail(10)?)
        .or_else(|| crate::binance::vision_period(tail(7)?))?;
    Some(period.end)
}

fn stats(sim: &Sim) -> axum::Json<serde_json::Value> {
    let s = &sim.stats;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    axum::Json(serde_json::json!({
        "requests": n(&s.requests),
        "served": n(&s.served),
        "weight_served": n(&s.weight_served),
        "too_many": n(&s.too_many),
        "banned": n(&s.banned),
        "funding_too_many": n(&s.funding_too_many),
        "gaps": n(&s.gaps),
        "server_errors": n(&s.server_errors),
        "cut": n(&s.cut),
        "malformed": n(&s.malformed),
        "ws_connections": n(&s.ws_connections),
        "ws_messages": n(&s.ws_messages),
        "weight_limit": sim.config.weight_limit,
        "weight_per_window": sim.limits.lock().expect("limits lock").weight_per_window(),
    }))
}
