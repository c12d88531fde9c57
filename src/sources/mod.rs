//! Sources: the appenders. Each fetches from one place and appends events to the
//! log; none writes Parquet or touches the ledger.

pub mod catalog;
pub mod check;
mod failure;
pub(crate) mod json;
pub mod live;
pub mod rest;
pub mod retry;
pub mod vision;

pub use failure::{Failure, FailureKind};
