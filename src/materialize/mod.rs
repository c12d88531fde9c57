//! The materializer: a pure function from the log's facts to the lake's rows.
//!
//! Data flows one way through these modules: [`index`] lists, per symbol-hour,
//! the log offsets that can change it; [`run`] reads exactly those records for
//! each hour to derive and hands them to a [`collect::Collector`], which reduces
//! them to the hour's distinct facts (one per natural key, source precedence,
//! conflicts reported, look-back windows); [`hour`] folds the facts into rows
//! (per minute: [`trades`], [`book`]; [`exact`] sums that do not depend on
//! order), with the HARD_REQUIRED gate, fill rules and invariant findings;
//! [`provenance`] records where each minute's inputs came from; the
//! lake writer (`crate::lake`) and the ledger (`crate::ledger`) take the result.
//! [`order_book`] rebuilds the synchronized L2 book for the depth columns.

pub mod book;
pub mod collect;
pub mod exact;
pub mod hour;
pub mod index;
pub mod order_book;
pub mod provenance;
pub mod run;
pub mod state;
pub mod trades;
