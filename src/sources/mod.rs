//! Sources: the appenders. Each fetches from one place and appends events to the
//! log; none writes Parquet or touches the ledger.

pub mod vision;
