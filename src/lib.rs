//! bml, the Binance Minute Lake: a complete, checked 1-minute history of Binance
//! USD-M futures, kept event-sourced. Data flows one way:
//! sources → write-ahead log (`bml-wal`) → materializer → lake and ledger.
//!
//! This crate holds the stages; `cli` wires them and nothing below it knows
//! about the command line.

pub mod cli;
