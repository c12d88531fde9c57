//! Sources: the appenders. Each fetches from one place and appends events to the
//! log; none writes Parquet or touches the ledger.

pub mod catalog;
pub mod check;
mod failure;
pub mod rest;
pub mod retry;
pub mod vision;

pub use failure::{Failure, FailureKind};
