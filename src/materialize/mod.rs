//! The materializer: a pure function from the log's facts to the lake's rows.
//!
//! In progress (issue "The materializer, the lake and the ledger"). What is here
//! are its exact building blocks: [`exact`] sums that do not depend on order,
//! and the per-minute folds of aggTrades ([`trades`]) and bookTicker updates
//! ([`book`]). The hour assembly (klines, as-of series, funding, fills, live
//! columns, DQ gates), the lake writer, the ledger and `bml materialize` come next.

pub mod book;
pub mod exact;
pub mod trades;
