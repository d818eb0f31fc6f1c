//! Why an exchange failed. Every failure ends the exchange; the server tells the client only
//! that authentication failed (what [`SaslError::client_message`] says), and logs the reason.

/// A failed SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// A message that does not parse as its mechanism's grammar.
    #[error("malformed {message}: {detail}")]
    Malformed {
        message: &'static str,
        detail: String,
    },
    /// The client asked to act as someone else than the user it authenticates as.
    #[error("authorization id {authzid:?} differs from the user {user:?}")]
    AuthorizationId { authzid: String, user: String },
    /// Kafka's `tokenauth` extension (delegation tokens), which ferry does not have.
    #[error("delegation tokens (the tokenauth extension) are not supported")]
    TokenAuth,
    /// The client-final message's nonce is not this exchange's (replayed or foreign).
    #[error("client-final nonce is not this exchange's")]
    NonceMismatch,
    /// The channel binding is not the base64 of the client's gs2 header.
    #[error("channel binding does not match the gs2 header")]
    ChannelBinding,
    /// No credential for this user and mechanism.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// A wrong password (PLAIN) or proof (SCRAM).
    #[error("wrong password for user {0:?}")]
    BadCredentials(String),
    /// A message after the exchange ended.
    #[error("the exchange has already ended")]
    Finished,
    /// An iteration count outside Kafka's bounds.
    #[error("iterations {0} outside {min}..={max}", min = crate::ITERATIONS_MIN, max = crate::ITERATIONS_MAX)]
    Iterations(i64),
    /// A salt shorter than a SCRAM salt may be.
    #[error("salt of {0} bytes is empty")]
    EmptySalt(usize),
}

impl SaslError {
    pub(crate) fn malformed(message: &'static str, detail: impl Into<String>) -> SaslError {
        SaslError::Malformed {
            message,
            detail: detail.into(),
        }
    }

    /// What the client is told: one message for every credential failure, so an unknown user
    /// and a wrong password look the same (Kafka's wording).
    pub fn client_message(&self, mechanism: crate::Mechanism) -> String {
        match self {
            SaslError::UnknownUser(_) | SaslError::BadCredentials(_) => format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            ),
            other => format!("Authentication failed: {other}"),
        }
    }
}
