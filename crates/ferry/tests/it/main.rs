//! ferry's integration tests: the real `ferry` binary as a child process, driven by real Kafka
//! clients (the `rdkafka` crate, i.e. librdkafka) and by raw frames for hostile input.

mod acls;
mod admin;
mod audit;
mod bench;
mod commit_windows;
mod compaction;
mod crash;
mod data_dir;
mod dead_letters;
mod descriptors;
mod exactly_once;
mod examples;
mod fetch_memory;
mod groups;
mod harness;
mod hostile;
mod idempotence;
mod lab;
mod metrics;
mod roundtrip;
mod sasl;
mod secured_lab;
mod sinks;
mod stress;
mod tls;
mod torture;
mod transactions;
