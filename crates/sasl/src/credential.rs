//! Salted SCRAM credentials (RFC 5802 section 3) and the hash functions behind them. A
//! credential holds what a server needs to check a proof and sign its answer, and nothing a
//! client could log in with: StoredKey is a hash of the ClientKey, ServerKey only signs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::{SaslError, ScramMechanism};

/// Kafka's minimum SCRAM iteration count (`ScramMechanism.minIterations`): fewer makes a stolen
/// credential store cheap to attack.
pub const ITERATIONS_MIN: u32 = 4096;

/// Kafka's maximum SCRAM iteration count: every login costs the server this many HMACs, so a
/// higher count is a denial of service waiting to happen.
pub const ITERATIONS_MAX: u32 = 16384;

/// The iteration count of a credential made without one (Kafka's `kafka-configs` default).
pub const ITERATIONS_DEFAULT: u32 = 4096;

/// Bytes of salt in a credential ferry makes (RFC 5802 asks only for a random one; 32 bytes is
/// as long as the SHA-256 output).
pub const SALT_BYTES: usize = 32;

/// One user's salted keys for one SCRAM mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    /// Keys are not printed: traces and panics must not carry them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Makes a credential from a password, with the caller's random salt.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        check_iterations(iterations as i64)?;
        let salted = salted_password(mechanism, password, salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// Makes a credential from a SaltedPassword the client computed (Kafka's
    /// AlterUserScramCredentials sends it, never the password).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        check_iterations(iterations as i64)?;
        if salt.is_empty() {
            return Err(SaslError::EmptySalt(0));
        }
        Ok(ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash(mechanism, &client_key(mechanism, salted_password)),
            server_key: hmac(mechanism, salted_password, b"Server Key"),
        })
    }

    /// A credential for a user that does not exist, the same for the same name (so asking twice
    /// shows the same salt) and unguessable without `secret`: an unknown user gets a
    /// server-first message of the same shape as a known one and fails only at the proof.
    pub(crate) fn fake(mechanism: ScramMechanism, secret: &[u8], user: &str) -> ScramCredential {
        let derive = |label: &[u8]| hmac(mechanism, secret, &[label, user.as_bytes()].concat());
        let mut salt = derive(b"salt:");
        salt.truncate(SALT_BYTES);
        ScramCredential {
            salt,
            iterations: ITERATIONS_DEFAULT,
            stored_key: derive(b"stored:"),
            server_key: derive(b"server:"),
        }
    }

    /// Whether `client_key` hashes to this credential's StoredKey, in constant time.
    pub(crate) fn accepts_client_key(&self, mechanism: ScramMechanism, client_key: &[u8]) -> bool {
        bool::from(hash(mechanism, client_key).ct_eq(&self.stored_key))
    }

    /// Whether `password` is this credential's (PLAIN): the StoredKey derived from it with the
    /// stored salt and iterations is compared in constant time.
    pub(crate) fn accepts_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let salted = salted_password(mechanism, password, &self.salt, self.iterations);
        self.accepts_client_key(mechanism, &client_key(mechanism, &salted))
    }
}

/// Refuses iteration counts outside Kafka's bounds.
pub(crate) fn check_iterations(iterations: i64) -> Result<(), SaslError> {
    if (ITERATIONS_MIN as i64..=ITERATIONS_MAX as i64).contains(&iterations) {
        Ok(())
    } else {
        Err(SaslError::Iterations(iterations))
    }
}

/// SaltedPassword := Hi(password, salt, i), PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
        }
    }
}

/// ClientKey := HMAC(SaltedPassword, "Client Key").
pub(crate) fn client_key(mechanism: ScramMechanism, salted_password: &[u8]) -> Vec<u8> {
    hmac(mechanism, salted_password, b"Client Key")
}

pub(crate) fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes a key of any length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match mechanism {
        ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
        ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
    }
}

pub(crate) fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// ClientKey := ClientProof XOR ClientSignature; None when the proof is not as long as the
/// signature (the hash's length).
pub(crate) fn client_key_from_proof(proof: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    (proof.len() == signature.len()).then(|| xor(proof, signature))
}

/// `a XOR b`, byte by byte (both of the hash's length).
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_outside_kafkas_bounds_are_refused() {
        let make = |i| ScramCredential::from_password(ScramMechanism::Sha256, b"p", b"salt", i);
        assert_eq!(make(4095).unwrap_err(), SaslError::Iterations(4095));
        assert_eq!(make(16385).unwrap_err(), SaslError::Iterations(16385));
        assert!(make(ITERATIONS_MIN).is_ok());
        assert!(make(ITERATIONS_MAX).is_ok());
    }

    #[test]
    fn a_password_is_accepted_only_by_its_credential() {
        for mechanism in ScramMechanism::ALL {
            let credential =
                ScramCredential::from_password(mechanism, b"pencil", b"salt", 4096).unwrap();
            assert!(credential.accepts_password(mechanism, b"pencil"));
            assert!(!credential.accepts_password(mechanism, b"pencil "));
            assert!(!credential.accepts_password(mechanism, b""));
        }
    }

    #[test]
    fn fake_credentials_are_stable_per_user_and_differ_between_users() {
        let a = ScramCredential::fake(ScramMechanism::Sha512, b"secret", "alice");
        assert_eq!(
            a,
            ScramCredential::fake(ScramMechanism::Sha512, b"secret", "alice")
        );
        assert_ne!(
            a.salt,
            ScramCredential::fake(ScramMechanism::Sha512, b"secret", "bob").salt
        );
        assert_ne!(
            a.salt,
            ScramCredential::fake(ScramMechanism::Sha512, b"other", "alice").salt
        );
        assert_eq!(a.salt.len(), SALT_BYTES);
        assert!(!format!("{a:?}").contains("stored_key"));
    }
}
