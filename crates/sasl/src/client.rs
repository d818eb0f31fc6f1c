//! The client's side of SCRAM and PLAIN, for ferry's tests and tools that speak raw frames (the
//! broker never uses it). It follows RFC 5802 as librdkafka does: gs2 header `n,,`, no
//! extensions, and it checks the server's signature.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

pub use crate::credential::salted_password;
use crate::credential::{client_key, hash, hmac, xor};
use crate::scram::encode_name;
use crate::{SaslError, ScramMechanism};

/// A PLAIN message for `user` and `password`, without an authorization id.
pub fn plain_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// One client exchange.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
    /// The ServerSignature the server-final message must carry, once the proof is sent.
    expected_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// `nonce` is printable ASCII without commas, fresh per exchange.
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str, nonce: &str) -> ScramClient {
        ScramClient {
            mechanism,
            password: password.as_bytes().to_vec(),
            client_first_bare: format!("n={},r={nonce}", encode_name(user)),
            client_nonce: nonce.to_string(),
            expected_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The client-final message answering `server_first`.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, SaslError> {
        let bad = |detail: &str| SaslError::malformed("server-first message", detail);
        let mut attributes = server_first.split(',');
        let mut next = |key: &str| {
            attributes
                .next()
                .and_then(|a| a.strip_prefix(key))
                .ok_or_else(|| bad(key))
        };
        let nonce = next("r=")?;
        let salt = BASE64.decode(next("s=")?).map_err(|_| bad("salt"))?;
        let iterations: u32 = next("i=")?.parse().map_err(|_| bad("iterations"))?;
        if !nonce.starts_with(&self.client_nonce) {
            return Err(SaslError::NonceMismatch);
        }
        let salted = salted_password(self.mechanism, &self.password, &salt, iterations);
        let key = client_key(self.mechanism, &salted);
        let without_proof = format!("c={},r={nonce}", BASE64.encode("n,,"));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let stored_key = hash(self.mechanism, &key);
        let signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let server_key = hmac(self.mechanism, &salted, b"Server Key");
        self.expected_signature = Some(hmac(self.mechanism, &server_key, auth_message.as_bytes()));
        Ok(format!(
            "{without_proof},p={}",
            BASE64.encode(xor(&key, &signature))
        ))
    }

    /// Checks the server-final message's signature: a server that does not hold the user's
    /// credential cannot make it.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), SaslError> {
        let signature = server_final
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| SaslError::malformed("server-final message", "no `v=` signature"))?;
        match &self.expected_signature {
            Some(expected) if *expected == signature => Ok(()),
            _ => Err(SaslError::malformed(
                "server-final message",
                "wrong server signature",
            )),
        }
    }
}
