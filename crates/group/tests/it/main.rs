//! The group crate's one integration-test binary: scripted clients against the coordinator,
//! checked against transcripts, plus property tests over random client behaviour.

mod admin;
mod harness;
mod membership;
mod offsets;
mod random;
mod replay;
