//! The txn crate's one integration-test binary: scripted producers against the coordinator,
//! checked against transcripts, a table of Kafka's error answers, and property tests over random
//! client behaviour, crashes included.

mod admin;
mod errors;
mod flows;
mod harness;
mod init;
mod random;
mod recovery;
mod timeouts;
