//! The Kafka wire format as ferry needs it: frames, request headers, the APIs and versions ferry
//! advertises, and a zero-copy view of v2 record batch headers.
//!
//! Message bodies are encoded and decoded by the `kafka-protocol` crate; this crate adds only what
//! that crate does not give: the header view used on the produce/fetch hot path (which never
//! decodes individual records) and the limits on frames.

pub mod batch;
pub mod compression;
pub mod errors;
pub mod fields;
pub mod frame;
pub mod legacy;
pub mod pieces;
pub mod retain;
pub mod versions;

pub use frame::{decode_request, encode_response, header_prefix, HeaderPrefix, Request};
pub use kafka_protocol;
