//! One WebSocket connection of the collector, from connect to its end: it
//! subscribes, confirms the subscriptions with `LIST_SUBSCRIPTIONS`, turns
//! every message into a record, and says when its coverage starts and ends.
//!
//! Coverage is per (stream, connection): `StreamConnected` once the exchange
//! lists the stream as subscribed, `StreamDisconnected` with the reason when
//! the connection ends for any reason. A connection that loses a message (a
//! malformed frame, a log that cannot keep up) ends there, so that a span of
//! one connection never hides a hole: the slot reconnects under a new number.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use super::payload;
use crate::event::{Event, Record, Source, StreamStatus};

/// What every connection shares.
#[derive(Clone)]
pub struct Context {
    /// Where records go (the log writer).
    pub records: mpsc::Sender<Record>,
    /// No message for this long: the connection is dead, whatever TCP says.
    pub silence_timeout: Duration,
    /// Counters for the summary.
    pub counters: std::sync::Arc<super::Counters>,
}

/// How a connection is asked to stop.
#[derive(Debug, Clone)]
pub struct Stop {
    /// Said in its disconnect records.
    pub reason: String,
    /// Rotation: go on until this message (the replacement's first, which
    /// both receive) has come through here too, so that nothing published
    /// between the two subscriptions is left unread (at most 5 s).
    pub after: Option<String>,
}

/// How many of the latest messages a connection remembers (by hash).
const RECENT: usize = 8192;

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    text.hash(&mut h);
    h.finish()
}

/// How long a rotated connection may take to catch up with its replacement.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Asked to stop (shutdown, rotation, duration reached).
    Stopped(String),
    /// It failed; the text says how.
    Failed(String),
}

impl End {
    fn reason(&self) -> &str {
        match self {
            End::Stopped(r) | End::Failed(r) => r,
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs one connection to `url` for `streams` until it ends; `first_data` is
/// handed the first data message (rotation waits for it), `stop` ends it
/// cleanly.
pub async fn run(
    context: &Context,
    url: &str,
    streams: &[String],
    number: u64,
    first_data: Option<oneshot::Sender<String>>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> End {
    let socket = tokio::select! {
        connected = tokio_tungstenite::connect_async(url) => match connected {
            Ok((socket, _)) => socket,
            Err(e) => return End::Failed(format!("connecting to {url}: {e}")),
        },
        _ = stop.changed() => return End::Stopped("stopped while connecting".into()),
    };
    context
        .counters
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut session = Session {
        context,
        streams,
        number,
        confirmed: Vec::new(),
        silent: streams.iter().cloned().collect(),
        recent: std::collections::VecDeque::with_capacity(RECENT),
        first_data,
    };
    let end = session.serve(socket, &mut stop, url).await;
    session.disconnect(&end).await;
    end
}

struct Session<'a> {
    context: &'a Context,
    streams: &'a [String],
    number: u64,
    /// Streams the exchange listed as subscribed: these are covered.
    confirmed: Vec<String>,
    /// Streams that delivered no data yet.
    silent: std::collections::BTreeSet<String>,
    /// Hashes of the latest messages, so that a rotation's marker that came
    /// through before the stop was asked for is recognised.
    recent: std::collections::VecDeque<u64>,
    first_data: Option<oneshot::Sender<String>>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Session<'_> {
    async fn serve(
        &mut self,
        mut socket: Socket,
        stop: &mut watch::Receiver<Option<Stop>>,
        url: &str,
    ) -> End {
        // One SUBSCRIBE and one LIST: two of the ten messages a second allowed.
        let subscribe = json!({"method": "SUBSCRIBE", "params": self.streams, "id": 1});
        let list = json!({"method": "LIST_SUBSCRIPTIONS", "id": 2});
        for request in [subscribe, list] {
            if let Err(e) = socket.send(Message::text(request.to_string())).await {
                return End::Failed(format!("subscribing on {url}: {e}"));
            }
        }
        // While rotating out: the message to reach, the reason, the deadline.
        let mut draining: Option<(String, String, tokio::time::Instant)> = None;
        loop {
            let deadline = draining.as_ref().map(|(_, _, d)| *d);
            let next = tokio::select! {
                next = tokio::time::timeout(self.context.silence_timeout, socket.next()) => next,
                _ = stop.changed(), if draining.is_none() => {
                    let asked = stop.borrow().clone();
                    let Stop { reason, after } = asked.unwrap_or(Stop { reason: "stopped".into(), after: None });
                    match after {
                        Some(marker) if !self.recent.contains(&text_hash(&marker)) => {
                            draining = Some((marker, reason, tokio::time::Instant::now() + CATCH_UP));
                            continue;
                        }
                        _ => {
                            let _ = socket.close(None).await;
                            return End::Stopped(reason);
                        }
                    }
                }
                () = sleep_until_some(deadline) => {
                    let reason = draining.take().map(|(_, r, _)| r).unwrap_or_default();
                    let _ = socket.close(None).await;
                    return End::Stopped(format!("{reason} (did not catch up with its replacement within {} s)", CATCH_UP.as_secs()));
                }
            };
            let message = match next {
                Err(_) => {
                    return End::Failed(format!(
                        "silent for {} s (no data, no ping)",
                        self.context.silence_timeout.as_secs_f64()
                    ))
                }
                Ok(None) => return End::Failed("the server closed the connection".into()),
                Ok(Some(Err(e))) => return End::Failed(format!("connection lost: {e}")),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    if self.recent.len() == RECENT {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(text_hash(&text));
                    if let Err(end) = self.on_text(&text).await {
                        return end;
                    }
                    if draining
                        .as_ref()
                        .is_some_and(|(marker, _, _)| marker.as_str() == text.as_str())
                    {
                        let reason = draining.take().map(|(_, r, _)| r).unwrap_or_default();
                        let _ = socket.close(None).await;
                        return End::Stopped(reason);
                    }
                }
                Message::Close(frame) => {
                    let why = frame.map_or_else(String::new, |f| format!(": {}", f.reason));
                    return End::Failed(format!("the server closed the connection{why}"));
                }
                // Pongs to the server's pings are sent by tungstenite itself.
                _ => {}
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let received_ns = crate::time::now_ns();
        let malformed = |e: &dyn std::fmt::Display| {
            End::Failed(format!(
                "malformed message ({e}): {}",
                text.chars().take(120).collect::<String>()
            ))
        };
        let read = payload::message(text).map_err(|e| malformed(&e))?;
        let Some((stream, symbol, event)) = read else {
            // Not data: the answer to a request, or a shape bml does not know.
            let value: Value = serde_json::from_str(text).map_err(|e| malformed(&e))?;
            if value.get("id").is_some()
                && (value.get("result").is_some() || value.get("error").is_some())
            {
                return self.on_answer(&value).await;
            }
            return Err(End::Failed(format!(
                "a message without stream/data: {}",
                text.chars().take(120).collect::<String>()
            )));
        };
        let stream = stream.to_owned();
        if let Some(first) = self.first_data.take() {
            let _ = first.send(text.to_owned());
        }
        if !self.silent.is_empty() {
            self.silent.remove(&stream);
        }
        let record = Record {
            symbol,
            source: Source::WebSocket {
                stream,
                connection: self.number,
            },
            received_ns,
            events: vec![event],
        };
        match self.context.records.try_send(record) {
            Ok(()) => {
                self.context
                    .counters
                    .messages
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                self.context
                    .counters
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(End::Failed(
                    "the log could not keep up: a message was dropped".into(),
                ))
            }
        }
    }

    /// The answer to SUBSCRIBE (id 1) or LIST_SUBSCRIPTIONS (id 2).
    async fn on_answer(&mut self, answer: &Value) -> Result<(), End> {
        if let Some(error) = answer.get("error") {
            return Err(End::Failed(format!(
                "the exchange refused the subscription: {error}"
            )));
        }
        if answer["id"] != 2 {
            return Ok(());
        }
        let listed: Vec<String> = answer["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<&String> = self
            .streams
            .iter()
            .filter(|s| !listed.contains(s))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(
                connection = self.number,
                ?missing,
                "the exchange does not list these subscriptions: not covered"
            );
        }
        let time = now_ms();
        for stream in self.streams.iter().filter(|s| listed.contains(s)) {
            self.confirmed.push(stream.clone());
            self.status(
                stream,
                Event::StreamConnected(StreamStatus {
                    stream: stream.clone(),
                    connection: self.number,
                    time,
                    reason: String::new(),
                }),
                time,
            )
            .await;
        }
        Ok(())
    }

    /// Sends a coverage record, waiting for room: coverage is never dropped.
    async fn status(&self, stream: &str, event: Event, time: i64) {
        let Some(symbol) = symbol_of(stream) else {
            return;
        };
        let record = Record {
            symbol,
            source: Source::WebSocket {
                stream: stream.to_owned(),
                connection: self.number,
            },
            received_ns: time.saturating_mul(crate::time::NS_PER_MS),
            events: vec![event],
        };
        let _ = self.context.records.send(record).await;
    }

    async fn disconnect(&self, end: &End) {
        let time = now_ms();
        let silent: Vec<&String> = self
            .confirmed
            .iter()
            .filter(|s| self.silent.contains(*s))
            .collect();
        if !silent.is_empty() {
            self.context
                .counters
                .silent_subscriptions
                .fetch_add(silent.len() as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                connection = self.number,
                ?silent,
                "subscriptions the exchange confirmed sent nothing on this connection \
                 (a base that does not serve them, such as the old unrouted one?): not coverage"
            );
        }
        for stream in &self.confirmed {
            self.status(
                stream,
                Event::StreamDisconnected(StreamStatus {
                    stream: stream.clone(),
                    connection: self.number,
                    time,
                    reason: end.reason().to_owned(),
                }),
                time,
            )
            .await;
        }
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `btcusdt@aggTrade` → `BTCUSDT`.
fn symbol_of(stream: &str) -> Option<String> {
    stream.split_once('@').map(|(s, _)| s.to_uppercase())
}
