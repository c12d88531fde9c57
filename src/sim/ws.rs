//! The simulator's WebSocket side: Binance's routed bases `/public` (book
//! streams) and `/market` (the other market streams), and the old unrouted base
//! (`/stream`, `/ws/…`) that accepts every subscription but serves only the
//! book streams: a `/market` stream there gets silence, not an error, as on
//! the real exchange (`../shared/spec/binance.md`).
//!
//! One tape ([`super::tape`]) plays the market from `--ws-start` at `--speed`
//! into a broadcast channel; each connection sends what it subscribed to,
//! wrapped in `{"stream","data"}` on `/stream?streams=…`, bare on `/ws/<name>`.
//! `SUBSCRIBE`, `UNSUBSCRIBE` and `LIST_SUBSCRIPTIONS` work on either; more
//! than 10 client messages in a second, a missed pong, or the connection's
//! lifetime closes it. Faults ([`WsFaults`]) break connections on purpose.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::depth;
use super::tape::{self, Message};
use super::Sim;
use crate::time::MINUTE_MS;

/// How the live side runs.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// The market instant the tape starts at (default: the market's first minute).
    pub start_ms: Option<i64>,
    /// Market time per wall-clock time (1 = real time).
    pub speed: f64,
    /// How often the server pings (Binance: 3 minutes).
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the server drops the client
    /// (Binance: 10 minutes).
    pub pong_timeout: Duration,
    /// How long a connection lives (Binance: 24 hours).
    pub lifetime: Duration,
    /// Client messages per second before the server drops the client (Binance: 10).
    pub max_client_messages_per_s: u32,
    /// Hold the tape until a client first subscribes, then 0.3 s more (so
    /// that redundant connections subscribe too): a test or benchmark then sees
    /// the market from its first message.
    pub wait_for_subscriber: bool,
    /// Faults to inject.
    pub faults: WsFaults,
    /// The depth diff at this market instant is not sent (a `pu` break), and
    /// `/fapi/v1/depth` answers 503 from then for `depth_outage_ms`.
    pub depth_gap_at: Option<i64>,
    /// How long the snapshot outage after the depth gap lasts (market ms).
    pub depth_outage_ms: i64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            start_ms: None,
            speed: 1.0,
            ping_interval: Duration::from_secs(180),
            pong_timeout: Duration::from_secs(600),
            lifetime: Duration::from_secs(24 * 3600),
            max_client_messages_per_s: 10,
            wait_for_subscriber: false,
            faults: WsFaults::default(),
            depth_gap_at: None,
            depth_outage_ms: 0,
        }
    }
}

/// WebSocket faults, each on every connection the server accepts.
#[derive(Debug, Clone, Default)]
pub struct WsFaults {
    /// Every this long, break the oldest open connection with the next of
    /// `breaks` in turn: one connection at a time, as a flaky network does, so
    /// a redundant partner survives.
    pub break_every: Option<Duration>,
    /// How connections are broken, in turn.
    pub breaks: Vec<Break>,
    /// Stop sending anything (data and pings) this long after it opened, with
    /// the connection left open: a silent stall.
    pub stall_after: Option<Duration>,
    /// Never ping.
    pub no_pings: bool,
    /// Fraction of data messages sent twice.
    pub duplicates: f64,
    /// Fraction of data messages held back by `delay` (sent after later ones).
    pub delayed: f64,
    /// How long a delayed message is held back.
    pub delay: Duration,
    /// `/market` behaves like the old unrouted base: it accepts and lists
    /// subscriptions, then sends nothing for them (no error).
    pub silent_market: bool,
}

/// A way to break a connection (`--ws-breaks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Break {
    /// Drop it: no close frame.
    Drop,
    /// Send it one data message as broken JSON.
    Malformed,
}

/// Which base a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `/public`: the book streams.
    Public,
    /// `/market`: the other market streams.
    Market,
    /// The old unrouted base: subscribes to anything, serves the book streams only.
    Unrouted,
}

impl Base {
    /// Whether a subscription to `stream` on this base gets data.
    fn serves(self, stream: &str, faults: &WsFaults) -> bool {
        let book = stream.contains("@depth") || stream.ends_with("@bookTicker");
        match self {
            Base::Public | Base::Unrouted => book,
            Base::Market => !book && !faults.silent_market,
        }
    }
}

/// One message as every connection sends it: its texts are made once, not
/// once per connection.
pub struct Frame {
    stream: Arc<str>,
    /// The payload alone (`/ws/<name>`).
    bare: Utf8Bytes,
    /// The payload in its `{"stream","data"}` envelope (`/stream?streams=…`).
    combined: Utf8Bytes,
}

impl Frame {
    fn new(message: Message) -> Frame {
        let mut combined = String::with_capacity(message.data.len() + message.stream.len() + 22);
        combined.push_str(r#"{"stream":""#);
        combined.push_str(&message.stream);
        combined.push_str(r#"","data":"#);
        combined.push_str(&message.data);
        combined.push('}');
        Frame {
            stream: message.stream,
            bare: message.data.into(),
            combined: combined.into(),
        }
    }
}

/// The tape's channel: every message, to every connection, in batches of
/// the messages due together (a connection writes a batch with one flush).
pub type Tape = broadcast::Sender<Arc<[Frame]>>;

/// How many batches a connection may fall behind the tape before it is
/// dropped as too slow (as Binance drops clients that do not keep up).
pub const TAPE_BUFFER: usize = 1 << 12;

/// The most messages in one batch: a bound on the tape's memory and on how
/// long a message waits for its batch-mates.
const BATCH: usize = 512;

/// Plays the market into the simulator's tape, from `--ws-start` at `--speed`.
/// Breaks the oldest open connection every `--ws-break-every-s`, with each of
/// `--ws-breaks` in turn.
pub(super) fn break_connections(sim: Arc<Sim>) {
    let faults = &sim.config.live.faults;
    let (Some(every), false) = (faults.break_every, faults.breaks.is_empty()) else {
        return;
    };
    tokio::spawn(async move {
        let breaks = &sim.config.live.faults.breaks;
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        for turn in 0.. {
            tick.tick().await;
            let oldest = sim.open.lock().expect("open connections").first().copied();
            if let Some(id) = oldest {
                let _ = sim
                    .break_order
                    .send(Some((id, breaks[turn % breaks.len()])));
            }
        }
    });
}

pub(super) fn play(sim: Arc<Sim>) {
    tokio::spawn(async move {
        let live = &sim.config.live;
        if live.wait_for_subscriber {
            sim.subscribed.notified().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let pace = Pace {
            started: Instant::now(),
            speed: live.speed.max(1e-6),
        };
        match &sim.market.capture {
            Some(capture) => play_capture(&sim, capture, &pace).await,
            None => play_market(&sim, &pace).await,
        }
    });
}

/// When a message is due: its time after the tape's first, at `speed`.
struct Pace {
    started: Instant,
    speed: f64,
}

impl Pace {
    /// Sends `messages` (in time order, none before `first`) when each is
    /// due; those due together go out as one batch.
    async fn play(&self, sim: &Sim, first: i64, messages: impl IntoIterator<Item = Message>) {
        let mut batch = Vec::new();
        let mut last = first;
        for message in messages {
            let due = Duration::from_secs_f64((message.time - first) as f64 / 1000.0 / self.speed);
            let now = self.started.elapsed();
            if due > now + Duration::from_millis(2) {
                Self::send(sim, last, &mut batch);
                tokio::time::sleep(due - now).await;
            }
            last = message.time;
            batch.push(Frame::new(message));
            if batch.len() == BATCH {
                Self::send(sim, last, &mut batch);
            }
        }
        Self::send(sim, last, &mut batch);
    }

    /// Broadcasts the batch; `last` is the market instant of its last message.
    fn send(sim: &Sim, last: i64, batch: &mut Vec<Frame>) {
        if batch.is_empty() {
            return;
        }
        sim.tape_ms.store(last, Ordering::Relaxed);
        // No receivers is fine: nobody is listening yet.
        let _ = sim.tape.send(std::mem::take(batch).into());
    }
}

/// The recorded messages, byte for byte, at their recorded pace.
async fn play_capture(sim: &Sim, capture: &super::capture::Capture, pace: &Pace) {
    let Some(first) = capture.messages.first().map(|m| m.time) else {
        return;
    };
    pace.play(sim, first, capture.messages.iter().cloned())
        .await;
}

/// The market, minute by minute, from `--ws-start`.
async fn play_market(sim: &Sim, pace: &Pace) {
    let live = &sim.config.live;
    let Some(first) = live.start_ms.or_else(|| tape::first_minute(&sim.market)) else {
        return;
    };
    let end = sim.market.end_ms();
    let mut books: Vec<tape::BookTickers> = sim
        .market
        .symbols
        .iter()
        .map(|(symbol, m)| tape::BookTickers::open(symbol, m.book_ticker_archives.clone()))
        .collect();
    let symbols = sim.market.symbols.len();
    let depth_books: Vec<depth::Book<'_>> = (sim.market.symbols.iter().enumerate())
        .map(|(i, (symbol, m))| depth::Book::new(symbol, m, i, symbols))
        .collect();
    let mut minute = first.div_euclid(MINUTE_MS) * MINUTE_MS;
    while minute < end {
        let mut messages = tape::minute(&sim.market, minute);
        for book in &mut books {
            book.minute(minute, &mut messages).await;
        }
        if sim.depth_wanted.load(Ordering::Relaxed) {
            depth::minute(&depth_books, minute, live.depth_gap_at, &mut messages);
        }
        tape::in_order(&mut messages);
        let due = messages.into_iter().filter(|m| m.time >= first);
        pace.play(sim, first, due).await;
        minute += MINUTE_MS;
    }
}

/// `GET /{public,market}/stream?streams=a/b`, `/stream?streams=…` (unrouted).
pub(super) async fn combined(
    upgrade: WebSocketUpgrade,
    State((sim, base)): State<(Arc<Sim>, Base)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let streams = query
        .get("streams")
        .map(|s| {
            s.split('/')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    upgrade.on_upgrade(move |socket| connection(socket, sim, base, streams, true))
}

/// `GET /{public,market}/ws/<name>[/<name>…]`, `/ws/…` (unrouted).
pub(super) async fn raw(
    upgrade: WebSocketUpgrade,
    State((sim, base)): State<(Arc<Sim>, Base)>,
    Path(names): Path<String>,
) -> Response {
    let streams = names
        .split('/')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    upgrade.on_upgrade(move |socket| connection(socket, sim, base, streams, false))
}

/// Whether `name` is a stream the simulator knows (any symbol, any kind).
fn known_stream(name: &str) -> bool {
    name.split_once('@').is_some_and(|(symbol, kind)| {
        !symbol.is_empty()
            && symbol
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && (tape::STREAM_KINDS.contains(&kind)
                || kind == "bookTicker"
                || kind.starts_with("depth"))
    })
}

/// One client, until it leaves, breaks a rule, or a fault ends it.
async fn connection(
    mut socket: WebSocket,
    sim: Arc<Sim>,
    base: Base,
    streams: Vec<String>,
    combined: bool,
) {
    let mut subscribed: BTreeSet<String> = streams.into_iter().collect();
    if !subscribed.is_empty() {
        note_subscriptions(&sim, &subscribed);
    }
    let id = sim.stats.ws_connections.fetch_add(1, Ordering::Relaxed);
    sim.open.lock().expect("open connections").insert(id);
    let mut breaks = sim.break_order.subscribe();
    serve_client(
        &mut socket,
        &sim,
        base,
        &mut subscribed,
        combined,
        &mut breaks,
        id,
    )
    .await;
    sim.open.lock().expect("open connections").remove(&id);
}

/// Tells the tape that a client subscribed (`--ws-wait`), and whether it
/// wants depth diffs.
fn note_subscriptions(sim: &Sim, subscribed: &BTreeSet<String>) {
    if subscribed.iter().any(|s| s.contains("@depth")) {
        sim.depth_wanted.store(true, Ordering::Relaxed);
    }
    sim.subscribed.notify_one();
}

/// The connection's loop; returning drops it.
async fn serve_client(
    socket: &mut WebSocket,
    sim: &Sim,
    base: Base,
    subscribed: &mut BTreeSet<String>,
    combined: bool,
    breaks: &mut tokio::sync::watch::Receiver<Option<(u64, Break)>>,
    id: u64,
) {
    let mut malformed_next = false;
    // Messages held back (`--ws-delay-rate`): when each is due, and its text.
    let mut held: std::collections::VecDeque<(tokio::time::Instant, Utf8Bytes)> =
        std::collections::VecDeque::new();
    let live = &sim.config.live;
    let mut tape = sim.tape.subscribe();
    let opened = Instant::now();
    let mut ping = tokio::time::interval(live.ping_interval);
    ping.tick().await;
    let mut last_pong = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let lifetime = tokio::time::sleep(live.lifetime);
    tokio::pin!(lifetime);
    let stalled = |now: Instant| {
        live.faults
            .stall_after
            .is_some_and(|after| now.duration_since(opened) >= after)
    };
    loop {
        tokio::select! {
            _ = breaks.changed() => {
                match *breaks.borrow() {
                    Some((target, Break::Drop)) if target == id => return, // no close frame
                    Some((target, Break::Malformed)) if target == id => malformed_next = true,
                    _ => {}
                }
            },
            () = due(held.front().map(|(at, _)| *at)) => {
                if let Some((_, text)) = held.pop_front() {
                    if socket.send(WsMessage::Text(text)).await.is_err() {
                        return;
                    }
                }
            },
            received = tape.recv() => match received {
                Ok(frames) => {
                    if stalled(Instant::now()) {
                        continue;
                    }
                    for frame in frames.iter() {
                        if !subscribed.contains(&*frame.stream) || !base.serves(&frame.stream, &live.faults) {
                            continue;
                        }
                        let malformed = std::mem::take(&mut malformed_next);
                        if feed_data(socket, sim, frame, combined, malformed, &mut held).await.is_err() {
                            return;
                        }
                    }
                    if socket.flush().await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    close(socket, "client too slow").await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {}
            },
            incoming = socket.recv() => {
                let Some(Ok(incoming)) = incoming else { return };
                match incoming {
                    WsMessage::Text(text) => {
                        let now = Instant::now();
                        if now.duration_since(window.0) >= Duration::from_secs(1) {
                            window = (now, 0);
                        }
                        window.1 += 1;
                        if window.1 > live.max_client_messages_per_s {
                            close(socket, "too many messages").await;
                            return;
                        }
                        let answer = method(&text, subscribed);
                        if !subscribed.is_empty() {
                            note_subscriptions(sim, subscribed);
                        }
                        if socket.send(WsMessage::Text(answer.into())).await.is_err() {
                            return;
                        }
                    }
                    WsMessage::Pong(_) => last_pong = Instant::now(),
                    WsMessage::Close(_) => return,
                    _ => {}
                }
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > live.pong_timeout {
                    close(socket, "pong timeout").await;
                    return;
                }
                if !live.faults.no_pings && !stalled(Instant::now())
                    && socket.send(WsMessage::Ping(axum::body::Bytes::from_static(b"sim"))).await.is_err()
                {
                    return;
                }
            },
            () = &mut lifetime => {
                close(socket, "connection lifetime reached").await;
                return;
            },
        }
    }
}

/// Queues one data message on the socket (the batch's end flushes), with
/// the faults asked for: broken, held back, or sent twice.
async fn feed_data(
    socket: &mut WebSocket,
    sim: &Sim,
    frame: &Frame,
    combined: bool,
    malformed: bool,
    held: &mut std::collections::VecDeque<(tokio::time::Instant, Utf8Bytes)>,
) -> Result<(), axum::Error> {
    let faults = &sim.config.live.faults;
    let mut text = if combined {
        frame.combined.clone()
    } else {
        frame.bare.clone()
    };
    if malformed {
        text = text.as_str()[..text.len() / 2].to_owned().into();
    }
    if sim.chance(faults.delayed) {
        held.push_back((tokio::time::Instant::now() + faults.delay, text));
        return Ok(());
    }
    let copies = if sim.chance(faults.duplicates) { 2 } else { 1 };
    for _ in 0..copies {
        socket.feed(WsMessage::Text(text.clone())).await?;
        sim.stats.ws_messages.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Waits until `at`, or forever when nothing is held back.
async fn due(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn close(socket: &mut WebSocket, reason: &'static str) {
    let frame = CloseFrame {
        code: axum::extract::ws::close_code::AWAY,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = socket.send(WsMessage::Close(Some(frame))).await;
}

/// The answer to one client request (`SUBSCRIBE`, `UNSUBSCRIBE`,
/// `LIST_SUBSCRIPTIONS`); errors answer with Binance's `{"error":{code,msg}}`.
fn method(text: &str, subscribed: &mut BTreeSet<String>) -> String {
    let Ok(request) = serde_json::from_str::<Value>(text) else {
        return json!({"error": {"code": 3, "msg": "Invalid JSON"}, "id": null}).to_string();
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params: Vec<String> = request
        .get("params")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let invalid = || {
        json!({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": id})
            .to_string()
    };
    match request.get("method").and_then(Value::as_str) {
        Some("SUBSCRIBE") => {
            if params.is_empty() || !params.iter().all(|p| known_stream(p)) {
                return invalid();
            }
            subscribed.extend(params);
            json!({"result": null, "id": id}).to_string()
        }
        Some("UNSUBSCRIBE") => {
            for p in &params {
                subscribed.remove(p);
            }
            json!({"result": null, "id": id}).to_string()
        }
        Some("LIST_SUBSCRIPTIONS") => {
            json!({"result": subscribed.iter().collect::<Vec<_>>(), "id": id}).to_string()
        }
        _ => json!({"error": {"code": 1, "msg": "Invalid method"}, "id": id}).to_string(),
    }
}
