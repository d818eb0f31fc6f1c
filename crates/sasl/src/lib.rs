//! SASL as Kafka brokers speak it: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677,
//! Kafka's KIP-84), as pure logic. The server's side of an exchange is an [`Authenticator`]: it
//! takes the client's messages one at a time and answers the next server message, or the
//! authenticated user at the end. Nothing here reads a socket, a file, a clock or a random
//! source: the caller supplies the server nonce, the salt of a new credential and the secret
//! that fakes credentials for unknown users, and looks credentials up through a closure.
//!
//! Both mechanisms share one store of salted SCRAM keys ([`ScramCredential`]): PLAIN's password
//! is checked by deriving the SCRAM StoredKey from it, so no password is ever kept.

mod authenticator;
pub mod client;
mod credential;
mod error;
mod mechanism;
mod plain;
mod scram;

pub use authenticator::{Authenticator, Lookup, Step};
pub use credential::{
    ScramCredential, ITERATIONS_DEFAULT, ITERATIONS_MAX, ITERATIONS_MIN, SALT_BYTES,
};
pub use error::SaslError;
pub use mechanism::{Mechanism, ScramMechanism};

#[cfg(test)]
mod tests;
