//! The one retry policy of every HTTP GET bml makes (Vision archives, REST
//! pages): transient failures (5xx, transport errors, answers cut short or
//! unusable) are retried with exponential backoff and jitter, up to a number
//! of attempts; refusals (429, 418) are pacing, not failures: the caller
//! pauses as told and they count against their own, larger allowance; any
//! other answer is final. The give-up error is a [`Failure`] (unreachable, or
//! bad data when the last answer came whole but unusable) naming the URL, the
//! counts and the last failure.

use std::fmt::Display;
use std::time::Duration;

use super::{Failure, FailureKind};

/// How one try went.
pub enum Attempt<T> {
    /// The answer.
    Done(T),
    /// A transient failure, described: retried after a backoff.
    Failed(String),
    /// An answer that came whole but cannot be used (it does not parse, or
    /// does not continue what came before): retried like a failure, since a
    /// fresh answer is usually whole; if it is the last, the data is bad.
    Unusable(String),
    /// The server asked to slow down and the caller has paused as told:
    /// retried at once, without using an attempt.
    Refused(String),
    /// An answer retrying cannot change (a 4xx): returned as the error
    /// (a [`Failure`] of kind `Refused`, see [`refused`]).
    Fatal(anyhow::Error),
}

/// How many tries a request gets.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Transient failures before giving up.
    pub attempts: u32,
    /// Refusals before giving up.
    pub refusals: u32,
}

/// Runs `try_once` (told which attempt it is, from 1) until it is done, fails
/// for good, or the policy's allowances are spent.
pub fn get<T>(
    url: &dyn Display,
    policy: Policy,
    mut try_once: impl FnMut(u32) -> Attempt<T>,
) -> anyhow::Result<T> {
    let (mut attempt, mut refusals) = (1, 0);
    let (kind, last_error) = loop {
        let (kind, why) = match try_once(attempt) {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fatal(e) => return Err(e),
            Attempt::Refused(why) => {
                refusals += 1;
                if refusals >= policy.refusals {
                    break (FailureKind::Unreachable, why);
                }
                continue;
            }
            Attempt::Failed(why) => (FailureKind::Unreachable, why),
            Attempt::Unusable(why) => (FailureKind::BadData, why),
        };
        tracing::warn!(%url, attempt, "{why}");
        if attempt >= policy.attempts {
            break (kind, why);
        }
        std::thread::sleep(backoff(attempt));
        attempt += 1;
    };
    Err(Failure::error(
        kind,
        format!(
            "GET {url}: gave up after {attempt} attempts and {refusals} refusals: {last_error}"
        ),
    ))
}

/// The error for a final "no" from the server.
pub fn refused(message: String) -> anyhow::Error {
    Failure::error(FailureKind::Refused, message)
}

/// A `Retry-After` header's seconds, if the answer has one.
pub fn retry_after(response: &reqwest::blocking::Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// How long to wait before retry `attempt` (1, 2, …) of a failed request:
/// exponential from 200 ms, capped at 10 s, plus up to 200 ms of jitter so that
/// callers that failed together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let exponential = 200u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(10_000);
    Duration::from_millis(exponential + fastrand::u64(0..200))
}

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
