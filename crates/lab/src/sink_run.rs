//! The sink rows' public names, where `lib.rs` and the sink throughput test
//! (`crates/ferry/tests/it/sinks.rs`) know them; the runs themselves are the runner's
//! (`runner/sinks/`), which every row shares.

pub use crate::runner::sinks::ledger::{
    apply_transfers, AppliedRow, LedgerDb, PostgresLedger, SinkEnv, SqliteLedger,
};
pub use crate::runner::sinks::run;
