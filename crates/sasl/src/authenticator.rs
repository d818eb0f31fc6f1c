//! One connection's SASL exchange on the server, whatever the mechanism: messages in, the next
//! server message or the authenticated user out. Any error ends the exchange.

use crate::credential::ScramCredential;
use crate::scram::{parse_client_first, ScramServer};
use crate::{plain, Mechanism, SaslError, ScramMechanism};

/// How the exchange finds a user's credential for a SCRAM mechanism (None: unknown user). It
/// is called at most twice per exchange (PLAIN tries SHA-512 then SHA-256), outside any hashing.
pub type Lookup<'a> = &'a dyn Fn(&str, ScramMechanism) -> Option<ScramCredential>;

/// What a client message led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `response` (SCRAM's server-final, empty for PLAIN).
    Done { user: String, response: Vec<u8> },
}

/// The server's side of one SASL exchange.
pub struct Authenticator {
    mechanism: Mechanism,
    server_nonce: String,
    /// Keys the fake credentials of unknown users (see `ScramCredential::fake`).
    unknown_user_secret: Vec<u8>,
    scram: ScramServer,
    /// The user the client named, once it has (for the server's traces).
    user: Option<String>,
    ended: bool,
}

impl Authenticator {
    /// A new exchange. `server_nonce` must be fresh and random for every exchange (printable
    /// ASCII without commas: base64 of 18+ random bytes); `unknown_user_secret` is random and
    /// the same for every exchange of a process, so an unknown user's fake salt does not change
    /// from one attempt to the next.
    pub fn new(
        mechanism: Mechanism,
        server_nonce: String,
        unknown_user_secret: &[u8],
    ) -> Authenticator {
        Authenticator {
            mechanism,
            server_nonce,
            unknown_user_secret: unknown_user_secret.to_vec(),
            scram: ScramServer::First,
            user: None,
            ended: false,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user the client named so far (not authenticated unless the exchange succeeded).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Takes the client's next message.
    pub fn step(&mut self, message: &[u8], lookup: Lookup<'_>) -> Result<Step, SaslError> {
        if self.ended {
            return Err(SaslError::Finished);
        }
        let step = self.advance(message, lookup);
        if !matches!(step, Ok(Step::Continue(_))) {
            self.ended = true;
        }
        step
    }

    fn advance(&mut self, message: &[u8], lookup: Lookup<'_>) -> Result<Step, SaslError> {
        let secret = &self.unknown_user_secret;
        let Some(mechanism) = self.mechanism.scram() else {
            let parsed = plain::parse(message)?;
            self.user = Some(parsed.user.to_string());
            plain::authenticate(&parsed, lookup, |m| {
                ScramCredential::fake(m, secret, parsed.user)
            })?;
            return Ok(Step::Done {
                user: parsed.user.to_string(),
                response: Vec::new(),
            });
        };
        let text = std::str::from_utf8(message)
            .map_err(|_| SaslError::malformed("SCRAM message", "not UTF-8"))?;
        match std::mem::replace(&mut self.scram, ScramServer::Ended) {
            ScramServer::First => {
                let first = parse_client_first(text)?;
                self.user = Some(first.user.clone());
                let credential = lookup(&first.user, mechanism);
                let fake = || ScramCredential::fake(mechanism, secret, &first.user);
                let (sent, server_first) =
                    ScramServer::server_first(&first, credential, fake, &self.server_nonce)?;
                self.scram = ScramServer::Final(Box::new(sent));
                Ok(Step::Continue(server_first.into_bytes()))
            }
            ScramServer::Final(sent) => {
                let server_final = ScramServer::server_final(&sent, mechanism, text)?;
                Ok(Step::Done {
                    user: sent.user().to_string(),
                    response: server_final.into_bytes(),
                })
            }
            ScramServer::Ended => Err(SaslError::Finished),
        }
    }
}
