//! Depth snapshots for the L2 book (`../shared/spec/binance.md`, "Local order
//! book"). The collector does not keep a book: it logs every diff and, beside
//! them, the REST snapshots the materializer needs to rebuild one from the log
//! alone (`materialize::order_book`). The log is the buffer, so the diff that
//! brackets a snapshot may be logged before or after it.
//!
//! [`Watch`] sees every record the writer appends and asks for a snapshot of a
//! symbol: at its first diff, at a `pu` that does not continue the previous
//! diff (a break), when the last snapshot is older than every diff since then
//! (it can never be bracketed), and every [`REFRESH`], so that every hour has
//! a snapshot in the hour before it (the materializer looks back 60 minutes).
//! A [`Fetcher`] thread answers through the REST governor and hands the
//! snapshot back to the writer like any record.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::event::{Event, Record};
use crate::sources::rest::{polls, Client, Poll};

/// A fresh snapshot at least this often per symbol.
pub const REFRESH: Duration = Duration::from_secs(30 * 60);
/// Asking again for a snapshot that came back unusable waits this long.
const RETRY: Duration = Duration::from_secs(1);

/// One symbol's diff chain as the log holds it.
#[derive(Debug)]
struct Chain {
    /// The largest final update id seen (over every connection's copy).
    last_u: u64,
    /// The first update id of the first diff since the last request: a
    /// snapshot older than it cannot be bracketed.
    first_since_request: u64,
    requested: Instant,
    /// A snapshot came back older than every diff since the request.
    stale: bool,
}

/// Watches the diffs going into the log and asks for snapshots.
pub struct Watch {
    chains: HashMap<String, Chain>,
    requests: std::sync::mpsc::Sender<String>,
    /// Breaks seen (redundant copies count once).
    pub breaks: u64,
}

impl Watch {
    /// A watch sending symbols to snapshot to `requests`.
    pub fn new(requests: std::sync::mpsc::Sender<String>) -> Watch {
        Watch {
            chains: HashMap::new(),
            requests,
            breaks: 0,
        }
    }

    /// Looks at one record on its way into the log.
    pub fn see(&mut self, record: &Record) {
        for event in &record.events {
            match event {
                Event::DepthDiff(d) => self.diff(&record.symbol, d),
                Event::DepthSnapshot(s) => {
                    if let Some(chain) = self.chains.get_mut(&record.symbol) {
                        chain.stale = s.last_update_id < chain.first_since_request;
                    }
                }
                _ => {}
            }
        }
    }

    fn diff(&mut self, symbol: &str, d: &crate::event::DepthDiff) {
        let now = Instant::now();
        let Some(chain) = self.chains.get_mut(symbol) else {
            self.chains.insert(
                symbol.to_owned(),
                Chain {
                    last_u: d.final_update_id,
                    first_since_request: d.first_update_id,
                    requested: now,
                    stale: false,
                },
            );
            let _ = self.requests.send(symbol.to_owned());
            return;
        };
        if d.final_update_id <= chain.last_u {
            return;
        }
        let broken = d.prev_final_update_id != chain.last_u;
        chain.last_u = d.final_update_id;
        if broken {
            self.breaks += 1;
            tracing::warn!(
                symbol,
                pu = d.prev_final_update_id,
                u = d.final_update_id,
                "depth diffs do not continue: asking for a new snapshot"
            );
        }
        let retry = chain.stale && now.duration_since(chain.requested) >= RETRY;
        if broken || retry || now.duration_since(chain.requested) >= REFRESH {
            chain.requested = now;
            chain.stale = false;
            chain.first_since_request = d.first_update_id;
            let _ = self.requests.send(symbol.to_owned());
        }
    }
}

/// The thread that fetches snapshots, one request at a time, through the
/// REST client's governor.
pub struct Fetcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    failed: Arc<AtomicU64>,
}

impl Fetcher {
    /// Starts fetching the symbols `requests` names, handing each snapshot to
    /// `records`.
    pub fn start(
        client: Client,
        requests: std::sync::mpsc::Receiver<String>,
        records: mpsc::Sender<Record>,
    ) -> anyhow::Result<Fetcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let (stopping, failures) = (stop.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("depth-snapshots".into())
            .spawn(move || {
                // Failed fetches, asked again after [`RETRY`].
                let mut again: VecDeque<(Instant, String)> = VecDeque::new();
                while !stopping.load(Ordering::Relaxed) {
                    let due = again.front().is_some_and(|(at, _)| *at <= Instant::now());
                    let symbol = match due {
                        true => again.pop_front().map(|(_, s)| s),
                        false => requests.recv_timeout(Duration::from_millis(100)).ok(),
                    };
                    let Some(symbol) = symbol else { continue };
                    match polls::fetch(&client, &symbol, Poll::Depth) {
                        Ok(record) => {
                            if records.blocking_send(record).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(symbol, "no depth snapshot, asking again: {e:#}");
                            again.push_back((Instant::now() + RETRY, symbol));
                        }
                    }
                }
            })?;
        Ok(Fetcher {
            stop,
            thread,
            failed,
        })
    }

    /// Stops after the fetch in progress; returns how many fetches failed.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.failed.load(Ordering::Relaxed)
    }
}
