//! GETs against the REST API through the [`Governor`], with the retries a good
//! client makes: 5xx, timeouts, dropped connections and answers that do not
//! parse are retried with exponential backoff and jitter; 429 and 418 pause
//! every caller for their `Retry-After`; a 400 is Binance saying no, and is an
//! error at once. Every error names the URL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use super::governor::{Cost, Governor};
use crate::sources::retry::{self, Attempt, Policy};
use crate::sources::{Failure, FailureKind};

/// Tries per request: 8 failures (5xx, transport errors, unusable answers);
/// 100 refusals (429/418), which are pacing, not failures: each pauses every
/// caller for its `Retry-After`.
const POLICY: Policy = Policy {
    attempts: 8,
    refusals: 100,
};
/// How far outside an answer's whole-second `Date` the clock estimate may be
/// (the answer's time in flight) before it is corrected.
const DATE_SLACK: Duration = Duration::from_millis(1500);

/// A REST client bound to one base URL and one governor.
pub struct Client {
    http: reqwest::blocking::Client,
    base_url: String,
    governor: Arc<Governor>,
    /// Suffix of the used-weight header (`1m`), from `exchangeInfo`.
    weight_header: String,
    retries: AtomicU64,
    refusals: AtomicU64,
    /// The symbols `exchangeInfo` lists.
    symbols: BTreeMap<String, Listing>,
    /// Set: every request from now on fails at once (a daemon stopping).
    stop: Arc<AtomicBool>,
}

/// A symbol as `exchangeInfo` lists it: the fields that say whether bml keeps
/// it (`ALL` means every trading perpetual) and from when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// `contractType` is `PERPETUAL` and `status` is `TRADING`.
    pub trading_perpetual: bool,
    /// `onboardDate` (epoch ms): its history starts there.
    pub onboard_ms: Option<i64>,
}

/// A symbol the exchange does not list, with the closest one it does.
#[derive(Debug, thiserror::Error)]
#[error("the exchange lists no symbol {symbol}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
pub struct UnknownSymbol {
    /// The symbol asked for.
    pub symbol: String,
    /// The listed symbol nearest to it, if any is near.
    pub suggestion: Option<String>,
}

/// Counters for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests retried (5xx, transport errors, unparsable answers).
    pub retries: u64,
    /// 429 and 418 answers received.
    pub refusals: u64,
}

impl Client {
    /// A client for `base_url` (e.g. `https://fapi.binance.com`). Reads the
    /// request-weight budget and the exchange's clock from `exchangeInfo` and
    /// hands them to `governor`; returns the client and the exchange's
    /// `serverTime`.
    pub fn connect(base_url: &str, governor: Arc<Governor>) -> anyhow::Result<(Client, i64)> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("bml/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut client = Client {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            governor,
            weight_header: "1m".into(),
            retries: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            symbols: BTreeMap::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (budget, server_time, symbols) =
            client.get("/fapi/v1/exchangeInfo", &[], Cost::weight(1), |v| {
                let limit = v["rateLimits"]
                    .as_array()
                    .and_then(|l| l.iter().find(|l| l["rateLimitType"] == "REQUEST_WEIGHT"))
                    .context("no REQUEST_WEIGHT in rateLimits")?;
                let num = limit["intervalNum"].as_u64().context("intervalNum")?;
                let (seconds, letter) = match limit["interval"].as_str() {
                    Some("SECOND") => (num, "s"),
                    Some("MINUTE") => (num * 60, "m"),
                    Some("HOUR") => (num * 3600, "h"),
                    Some("DAY") => (num * 86_400, "d"),
                    other => bail!("unknown interval {other:?}"),
                };
                let weight = limit["limit"].as_u64().context("limit")?;
                let server_time = v["serverTime"].as_i64().context("serverTime")?;
                let symbols = v["symbols"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(|s| {
                                let listing = Listing {
                                    trading_perpetual: s["contractType"] == "PERPETUAL"
                                        && s["status"] == "TRADING",
                                    onboard_ms: s["onboardDate"].as_i64(),
                                };
                                Some((s["symbol"].as_str()?.to_string(), listing))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((
                    (weight as u32, seconds, format!("{num}{letter}")),
                    server_time,
                    symbols,
                ))
            })?;
        client.symbols = symbols;
        client.governor.set_server_time(server_time);
        client
            .governor
            .set_limit(budget.0, Duration::from_secs(budget.1));
        client.weight_header = budget.2;
        Ok((client, server_time))
    }

    /// Refuses the first of `symbols` the exchange does not list (as an
    /// [`UnknownSymbol`] error), before any request is spent on it. An
    /// `exchangeInfo` without a symbol list checks nothing.
    pub fn check_symbols(&self, symbols: &[String]) -> anyhow::Result<()> {
        if self.symbols.is_empty() {
            return Ok(());
        }
        for symbol in symbols {
            if !self.symbols.contains_key(symbol) {
                let suggestion = self
                    .symbols
                    .keys()
                    .map(|s| (edit_distance(s, symbol), s))
                    .filter(|(d, _)| *d <= 3)
                    .min()
                    .map(|(_, s)| s.clone());
                return Err(UnknownSymbol {
                    symbol: symbol.clone(),
                    suggestion,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Makes every request after `stop` is set fail at once, without
    /// retrying: a process shutting down does not wait for the exchange.
    pub fn stop_on(&mut self, stop: Arc<AtomicBool>) {
        self.stop = stop;
    }

    /// True once the client was told to stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Every symbol `exchangeInfo` listed, by name.
    pub fn listings(&self) -> &BTreeMap<String, Listing> {
        &self.symbols
    }

    /// What its governor let through so far.
    pub fn governor_stats(&self) -> super::governor::GovernorStats {
        self.governor.stats()
    }

    /// What went wrong and was survived so far.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            retries: self.retries.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
        }
    }

    /// The exchange's clock now (as measured at connect, corrected by the
    /// `Date` of every answer since).
    pub fn server_now(&self) -> i64 {
        self.governor.server_now()
    }

    /// GETs `path?query` (costing `cost`) and hands the JSON answer to
    /// `parse`. A failure to parse (broken JSON, a missing field, a page that
    /// does not continue the previous one) is retried like a dropped
    /// connection: a fresh answer is usually whole.
    pub fn get<T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        cost: Cost,
        parse: impl Fn(&Value) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base_url), query)
            .with_context(|| format!("bad URL {}{path}", self.base_url))?;
        retry::get(&url, POLICY, |attempt| {
            if self.stopped() {
                return Attempt::Fatal(Failure::error(
                    FailureKind::Unreachable,
                    format!("GET {url}: not sent: shutting down"),
                ));
            }
            if attempt > 1 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.governor.acquire(cost);
            let response = match self.http.get(url.clone()).send() {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Failed(format!("request failed: {}", retry::error_chain(&e)))
                }
            };
            let status = response.status();
            self.observe_headers(&response);
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 418 {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                let wait = retry::retry_after(&response).unwrap_or(60);
                tracing::warn!(%url, "HTTP {status}: pausing every request for {wait} s");
                self.governor.pause(Duration::from_secs(wait));
                return Attempt::Refused(format!("HTTP {status}"));
            }
            let body = match response.bytes() {
                Ok(body) => body,
                Err(e) => return Attempt::Failed(format!("answer cut short: {e}")),
            };
            if status.is_server_error() {
                return Attempt::Failed(format!("HTTP {status}"));
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                return Attempt::Fatal(retry::refused(format!("GET {url}: HTTP {status}: {text}")));
            }
            let parsed = serde_json::from_slice::<Value>(&body)
                .map_err(|e| anyhow!("not JSON: {e}"))
                .and_then(|v| parse(&v));
            match parsed {
                Ok(value) => Attempt::Done(value),
                Err(e) => Attempt::Unusable(format!("unusable answer: {e:#}")),
            }
        })
    }

    /// Takes note of what every answer says besides its body: the exchange's
    /// clock (`Date`) and the weight used (`X-MBX-USED-WEIGHT-…`).
    fn observe_headers(&self, response: &reqwest::blocking::Response) {
        if let Some(date) = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v.to_str().ok()?).ok())
        {
            self.governor
                .observe_date(date.timestamp_millis(), DATE_SLACK);
        }
        if let Some(used) = response
            .headers()
            .get(format!("x-mbx-used-weight-{}", self.weight_header))
            .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
        {
            self.governor.observe_used(used);
        }
    }
}

/// The Levenshtein distance between `a` and `b` (symbols are short ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_character_changes() {
        assert_eq!(edit_distance("BTCUSDT", "BTCUSDT"), 0);
        assert_eq!(edit_distance("BTCUSD", "BTCUSDT"), 1);
        assert_eq!(edit_distance("BTCUSTD", "BTCUSDT"), 2);
        assert_eq!(edit_distance("ETHUSDT", "BTCUSDT"), 2);
        assert_eq!(edit_distance("", "ABC"), 3);
    }
}
