//! The materializer: a pure function from the log's facts to the lake's rows.
//!
//! In progress (issue "The materializer, the lake and the ledger"). What is here:
//! [`exact`] sums that do not depend on order; the per-minute folds of aggTrades
//! ([`trades`]) and bookTicker updates ([`book`]); and [`hour`], which turns one
//! symbol-hour's facts into its rows (every column but `price_impact_100k`, which
//! needs the synchronized L2 book), with the HARD_REQUIRED gate, fill rules and
//! invariant findings; and [`collect`], which reduces records to an hour's facts
//! (one per natural key, source precedence, conflicts reported, look-back
//! windows). The lake writer is `crate::lake`. Still to come: the per-symbol-
//! hour offset index over the log, live-stream coverage, the redb ledger, and
//! `bml materialize`.

pub mod book;
pub mod collect;
pub mod exact;
pub mod hour;
pub mod index;
pub mod run;
pub mod trades;
