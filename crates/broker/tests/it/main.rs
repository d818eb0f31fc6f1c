//! Broker-level tests without sockets: requests go straight into `Broker::handle`, on a real
//! directory, and every response must encode at the version it was asked for.

mod acls;
mod admin;
mod authorization;
mod compaction;
mod concurrency;
mod configs;
mod data_dir;
mod fetch_limits;
mod idempotence;
mod producer_ids;
mod scram;
mod timers;
mod versions;
mod visibility;
