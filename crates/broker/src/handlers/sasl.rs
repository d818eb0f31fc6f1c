//! SaslHandshake (17) and SaslAuthenticate (36) as the broker sees them: never during a SASL
//! exchange, which the server's connection runs before any request reaches the broker, but on
//! a listener without SASL or after authentication. Kafka answers both with ILLEGAL_SASL_STATE
//! then, and so does ferry.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};

use super::{code, str_bytes};

pub fn handshake() -> ResponseKind {
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default().with_error_code(code(ResponseError::IllegalSaslState)),
    )
}

pub fn authenticate() -> ResponseKind {
    ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default()
            .with_error_code(code(ResponseError::IllegalSaslState))
            .with_error_message(Some(str_bytes(
                "SaslAuthenticate outside a SASL exchange (no SASL on this listener, or already authenticated)",
            ))),
    )
}
