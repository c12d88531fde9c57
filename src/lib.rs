//! bml, the Binance Minute Lake: a complete, checked 1-minute history of Binance
//! USD-M futures, kept event-sourced. Data flows one way:
//! sources → write-ahead log (`bml-wal`, typed by [`eventlog`]) → materializer →
//! lake and ledger.
//!
//! - [`binance`]: facts about the exchange that several stages share.
//! - [`event`]: the vocabulary of the log (market facts and coverage facts).
//! - [`eventlog`]: records in and out of the log.
//! - [`sources`]: the appenders (Vision, REST).
//! - [`sim`]: the simulated exchange the sources are tested against.
//! - [`materialize`]: the log into the lake and the ledger.
//! - [`audit`]: the lake and the ledger proved against the log.
//! - [`orchestrate`]: keeping the lake current (planner, run-once, daemon).
//! - [`cli`]: wires the stages to the command line; nothing below it knows it.

pub mod audit;
pub mod binance;
pub mod cli;
pub mod data_dir;
pub mod event;
pub mod eventlog;
pub mod lake;
pub mod ledger;
pub mod materialize;
pub mod orchestrate;
pub mod progress;
pub mod schema;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sources;
pub mod time;
