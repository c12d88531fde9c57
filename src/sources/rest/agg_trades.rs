//! aggTrades of one hour, complete and proven so, whichever end of a crowded
//! time window the exchange answers with.
//!
//! Binance does not document which `limit` trades a `startTime`/`endTime`
//! window holding more than `limit` answers with (ccxt, and Binance's spot
//! tracker, say the last). So time windows are used only to find where the hour
//! starts, and only when they hold fewer than `limit` trades (then they are
//! complete, whatever the end); the hour is then read by id:
//!
//! 1. the first id at or after the hour's start: the first trade of a window
//!    from the start that holds fewer than `limit` trades (windows halve while
//!    full, double while empty, up to the hour's end);
//! 2. pages by `fromId` from the trade *before* it, which proves the start edge
//!    (its time is before the hour; where it does not exist, the first page
//!    starts at the hour's first trade); each page must continue the previous
//!    one id by id: a page that does not is refused and fetched again, and a
//!    gap that persists fails the range;
//! 3. up to a trade at or after the hour's end, which proves the end edge, or
//!    to the newest trade on the exchange once the hour is over.

use anyhow::{anyhow, bail};
use serde_json::Value;

use super::{Client, Kind, Task};
use crate::event::{AggTrade, Event};
use crate::time::MINUTE_MS;

/// The largest page.
const LIMIT: usize = 1000;
/// The first window tried when looking for the hour's first trade.
const FIRST_WINDOW_MS: i64 = MINUTE_MS;

/// Reads the task's hour, handing each page's trades inside it to `send`.
pub(super) fn fetch(
    client: &Client,
    task: &Task,
    send: &mut dyn FnMut(Vec<Event>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Some(first) = first_id_in_hour(client, task)? else {
        return Ok(());
    };
    // From the trade before the hour's first, which may not exist: the first
    // page may then start at the first.
    let mut from = first.saturating_sub(1);
    let mut may_start_at = first;
    loop {
        let page = page_from(client, task, from, may_start_at)?;
        let full = page.len() == LIMIT;
        let Some(last) = page.last().map(|t| t.agg_trade_id) else {
            bail!("no aggTrades from id {from}, which a window of the hour holds");
        };
        let mut inside = Vec::with_capacity(page.len());
        let mut end_edge_seen = false;
        for trade in page {
            let before_first = trade.agg_trade_id < first;
            if before_first != (trade.transact_time < task.start_ms) {
                bail!(
                    "aggTrade {} at {} contradicts the hour's first trade {first}: \
                     the exchange's window and its ids disagree",
                    trade.agg_trade_id,
                    trade.transact_time
                );
            }
            if trade.transact_time >= task.end_ms {
                end_edge_seen = true;
                break;
            }
            if !before_first {
                inside.push(Event::AggTrade(trade));
            }
        }
        if !inside.is_empty() {
            send(inside)?;
        }
        if end_edge_seen {
            return Ok(());
        }
        if !full {
            // The newest trade: nothing later exists, so once the hour is over
            // on the exchange's clock, nothing more of it can appear.
            let now = client.server_now();
            if task.end_ms <= now {
                return Ok(());
            }
            bail!("the hour is not over on the exchange yet (its clock reads {now})");
        }
        from = last + 1;
        may_start_at = from;
    }
}

/// The id of the first trade at or after the hour's start, if the hour holds any.
fn first_id_in_hour(client: &Client, task: &Task) -> anyhow::Result<Option<u64>> {
    let mut width = FIRST_WINDOW_MS;
    loop {
        let to = task.start_ms.saturating_add(width).min(task.end_ms);
        let query = [
            ("symbol", task.symbol.clone()),
            ("startTime", task.start_ms.to_string()),
            ("endTime", (to - 1).to_string()),
            ("limit", LIMIT.to_string()),
        ];
        let page = client.get(
            Kind::AggTrades.path(),
            &query,
            Kind::AggTrades.cost(LIMIT as u32),
            trades,
        )?;
        if page.len() < LIMIT {
            // Fewer than `limit`: the whole window, whichever end was asked for.
            if let Some(first) = page.iter().find(|t| t.transact_time >= task.start_ms) {
                return Ok(Some(first.agg_trade_id));
            }
            if to >= task.end_ms {
                return Ok(None);
            }
            width = width.saturating_mul(2);
        } else if width == 1 {
            bail!(
                "more than {LIMIT} aggTrades in the millisecond {}: the hour's first cannot be found by time",
                task.start_ms
            );
        } else {
            width = (width / 2).max(1);
        }
    }
}

/// The page of trades from id `from`, refused (and so fetched again) unless it
/// starts at `from` (or at `may_start_at`, where `from` may not exist) and its
/// ids are consecutive.
fn page_from(
    client: &Client,
    task: &Task,
    from: u64,
    may_start_at: u64,
) -> anyhow::Result<Vec<AggTrade>> {
    let query = [
        ("symbol", task.symbol.clone()),
        ("fromId", from.to_string()),
        ("limit", LIMIT.to_string()),
    ];
    client.get(
        Kind::AggTrades.path(),
        &query,
        Kind::AggTrades.cost(LIMIT as u32),
        |v| {
            let page = trades(v)?;
            let start = match page.first() {
                Some(t) if t.agg_trade_id == may_start_at => may_start_at,
                _ => from,
            };
            for (expected, trade) in (start..).zip(&page) {
                if trade.agg_trade_id != expected {
                    return Err(anyhow!(
                        "aggTrade ids jump from {expected} to {} (a lost page?)",
                        trade.agg_trade_id
                    ));
                }
            }
            Ok(page)
        },
    )
}

fn trades(v: &Value) -> anyhow::Result<Vec<AggTrade>> {
    Kind::AggTrades
        .parse_page(v)?
        .into_iter()
        .map(|e| match e {
            Event::AggTrade(t) => Ok(t),
            other => Err(anyhow!("not an aggTrade: {other:?}")),
        })
        .collect()
}
