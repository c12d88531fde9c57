//! Sources: the appenders. Each fetches from one place and appends events to the
//! log; none writes Parquet or touches the ledger.

use std::time::Duration;

pub mod catalog;
pub mod check;
pub mod rest;
pub mod vision;

/// An error and every cause under it, joined with `: ` ("error sending
/// request for url (…): client error (Connect): tcp connect error: Connection
/// refused (os error 111)"): what went wrong is usually at the bottom.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        // Some errors repeat their cause in their own message.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

/// How long to wait before retry `attempt` (1, 2, …) of a failed request:
/// exponential from 200 ms, capped at 10 s, plus up to 200 ms of jitter so that
/// callers that failed together do not retry together.
pub fn backoff(attempt: u32) -> Duration {
    let exponential = 200u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(10_000);
    Duration::from_millis(exponential + fastrand::u64(0..200))
}
