//! SASL PLAIN (RFC 4616): one message, `authzid NUL authcid NUL password`. The password is
//! checked against the user's stored SCRAM credential, so PLAIN needs no password store.

use crate::{SaslError, ScramCredential, ScramMechanism};

/// A parsed PLAIN message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlainMessage<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
}

/// Parses `authzid NUL user NUL password`: the authorization id empty or the user's, neither
/// user nor password empty (Kafka's rules), the names UTF-8.
pub(crate) fn parse(message: &[u8]) -> Result<PlainMessage<'_>, SaslError> {
    let bad = |detail: &str| SaslError::malformed("PLAIN message", detail);
    let mut parts = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not three fields separated by NUL"));
    };
    let authzid = std::str::from_utf8(authzid).map_err(|_| bad("authorization id not UTF-8"))?;
    let user = std::str::from_utf8(user).map_err(|_| bad("user not UTF-8"))?;
    if user.is_empty() {
        return Err(bad("empty user"));
    }
    if password.is_empty() {
        return Err(bad("empty password"));
    }
    if password.contains(&0) {
        return Err(bad("a NUL in the password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::AuthorizationId {
            authzid: authzid.to_string(),
            user: user.to_string(),
        });
    }
    Ok(PlainMessage { user, password })
}

/// Checks a PLAIN message's password against the user's credential (SCRAM-SHA-512's if it has
/// one, else SCRAM-SHA-256's); an unknown user's password is checked against a fake credential
/// all the same, so both take one PBKDF2's time.
pub(crate) fn authenticate(
    message: &PlainMessage<'_>,
    lookup: &dyn Fn(&str, ScramMechanism) -> Option<ScramCredential>,
    fake: impl FnOnce(ScramMechanism) -> ScramCredential,
) -> Result<(), SaslError> {
    let found = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| lookup(message.user, m).map(|c| (m, c)));
    let known = found.is_some();
    let (mechanism, credential) =
        found.unwrap_or_else(|| (ScramMechanism::Sha512, fake(ScramMechanism::Sha512)));
    let accepted = credential.accepts_password(mechanism, message.password);
    match (known, accepted) {
        (false, _) => Err(SaslError::UnknownUser(message.user.to_string())),
        (true, false) => Err(SaslError::BadCredentials(message.user.to_string())),
        (true, true) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages() {
        let check = |message: &[u8], expect: Result<(&str, &[u8]), &str>| {
            let got = parse(message)
                .map(|m| (m.user.to_string(), m.password.to_vec()))
                .map_err(|e| e.to_string());
            let expect = expect
                .map(|(u, p)| (u.to_string(), p.to_vec()))
                .map_err(str::to_string);
            assert_eq!(got, expect, "{message:?}");
        };
        check(b"\0alice\0secret", Ok(("alice", b"secret")));
        check(b"alice\0alice\0secret", Ok(("alice", b"secret")));
        check(b"\0alice\0sec ret", Ok(("alice", b"sec ret")));
        check(
            b"bob\0alice\0secret",
            Err("authorization id \"bob\" differs from the user \"alice\""),
        );
        check(
            b"\0alice",
            Err("malformed PLAIN message: not three fields separated by NUL"),
        );
        check(
            b"",
            Err("malformed PLAIN message: not three fields separated by NUL"),
        );
        check(b"\0\0secret", Err("malformed PLAIN message: empty user"));
        check(b"\0alice\0", Err("malformed PLAIN message: empty password"));
        check(
            b"\0alice\0se\0cret",
            Err("malformed PLAIN message: a NUL in the password"),
        );
        check(
            b"\0\xff\0secret",
            Err("malformed PLAIN message: user not UTF-8"),
        );
        check(
            b"\xff\0a\0secret",
            Err("malformed PLAIN message: authorization id not UTF-8"),
        );
    }
}
