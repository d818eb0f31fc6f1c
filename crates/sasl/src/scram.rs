//! The server's side of a SCRAM exchange (RFC 5802 as Kafka uses it, KIP-84): client-first in,
//! server-first out; client-final in, server-final out. Kafka's grammar: the gs2 header is `n,,`
//! or `n,a=<user>,` (no channel binding), extensions after the nonce are allowed except
//! `tokenauth` (delegation tokens), and user names are not SASLprep'd, only `=2C`/`=3D` escaped.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::credential::{client_key_from_proof, hmac};
use crate::{SaslError, ScramCredential, ScramMechanism};

/// Where a SCRAM exchange is.
pub(crate) enum ScramServer {
    /// Waiting for the client-first message.
    First,
    /// Server-first sent, waiting for the client-final message.
    Final(Box<Sent>),
    /// Done or failed: any further message is an error.
    Ended,
}

/// What the server keeps between its first and final messages.
pub(crate) struct Sent {
    user: String,
    /// False when `credential` is a fake for an unknown user: the exchange fails at the proof.
    known: bool,
    credential: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    client_nonce: String,
}

impl Sent {
    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    /// Whether the client-final nonce is this exchange's: the combined nonce, or the client
    /// nonce followed by the combined nonce, which librdkafka up to 2.0 sends (it prefixes the
    /// server's `r=` value, already the combined nonce, with its own nonce again; Kafka accepts
    /// it, checking only that the final nonce ends with the combined one). Either way it holds
    /// this exchange's fresh server nonce, so a final message from another exchange fails.
    fn accepts_nonce(&self, nonce: &str) -> bool {
        nonce == self.nonce
            || nonce
                .strip_prefix(self.client_nonce.as_str())
                .is_some_and(|rest| rest == self.nonce)
    }
}

/// A parsed client-first message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFirst<'a> {
    pub gs2_header: &'a str,
    pub user: String,
    pub nonce: &'a str,
    pub bare: &'a str,
}

/// Parses a client-first message: `n,[a=<authzid>],n=<user>,r=<nonce>[,<ext>=<value>]*`.
pub(crate) fn parse_client_first(message: &str) -> Result<ClientFirst<'_>, SaslError> {
    let bad = |detail: &str| SaslError::malformed("client-first message", detail);
    let rest = message
        .strip_prefix("n,")
        .ok_or_else(|| bad("the gs2 header must start with `n,` (no channel binding)"))?;
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| bad("the gs2 header has no second comma"))?;
    let gs2_header = &message[..message.len() - bare.len()];
    let authzid = match authzid {
        "" => None,
        a => Some(decode_name(a.strip_prefix("a=").ok_or_else(|| {
            bad("the authorization id must start with `a=`")
        })?)?),
    };
    let mut attributes = bare.split(',');
    let user = attributes
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or_else(|| bad("the user (`n=`) must come first"))?;
    let user = decode_name(user)?;
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| bad("the nonce (`r=`) must follow the user"))?;
    check_nonce(nonce)?;
    for extension in attributes {
        let (key, _) = extension
            .split_once('=')
            .ok_or_else(|| bad("an extension is not `key=value`"))?;
        if key == "tokenauth" {
            return Err(SaslError::TokenAuth);
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("an extension's key is not alphanumeric"));
        }
    }
    if let Some(authzid) = authzid {
        if authzid != user {
            return Err(SaslError::AuthorizationId { authzid, user });
        }
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce,
        bare,
    })
}

/// Decodes a saslname: `=2C` is a comma, `=3D` an equals sign, any other `=` is an error.
pub(crate) fn decode_name(name: &str) -> Result<String, SaslError> {
    let bad = |detail: &str| SaslError::malformed("user name", detail);
    if name.is_empty() {
        return Err(bad("empty"));
    }
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with("=2C") {
            decoded.push(',');
        } else if rest.starts_with("=3D") {
            decoded.push('=');
        } else {
            return Err(bad("`=` not followed by 2C or 3D"));
        }
        rest = &rest[3..];
    }
    decoded.push_str(rest);
    if decoded.contains('\0') {
        return Err(bad("holds a NUL"));
    }
    Ok(decoded)
}

/// Encodes a user name as a saslname (the client's side of [`decode_name`]).
pub(crate) fn encode_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A nonce is printable ASCII without a comma.
fn check_nonce(nonce: &str) -> Result<(), SaslError> {
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(SaslError::malformed(
            "nonce",
            "empty, or not printable ASCII without commas",
        ));
    }
    Ok(())
}

impl ScramServer {
    /// Takes the client-first message and answers the server-first one. `credential` is the
    /// user's, or None for an unknown user, who then gets `fake` (same shape) and fails at the
    /// proof.
    pub(crate) fn server_first(
        first: &ClientFirst<'_>,
        credential: Option<ScramCredential>,
        fake: impl FnOnce() -> ScramCredential,
        server_nonce: &str,
    ) -> Result<(Sent, String), SaslError> {
        check_nonce(server_nonce)?;
        let known = credential.is_some();
        let credential = credential.unwrap_or_else(fake);
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let sent = Sent {
            user: first.user.clone(),
            known,
            credential,
            gs2_header: first.gs2_header.to_string(),
            client_first_bare: first.bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            client_nonce: first.nonce.to_string(),
        };
        Ok((sent, server_first))
    }

    /// Takes the client-final message `c=<binding>,r=<nonce>[,ext]*,p=<proof>`, checks it and
    /// answers the server-final message `v=<signature>`.
    pub(crate) fn server_final(
        sent: &Sent,
        mechanism: ScramMechanism,
        message: &str,
    ) -> Result<String, SaslError> {
        let bad = |detail: &str| SaslError::malformed("client-final message", detail);
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or_else(|| bad("no proof (`p=`) at the end"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| bad("the channel binding (`c=`) must come first"))?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| bad("the nonce (`r=`) must follow the channel binding"))?;
        if binding != BASE64.encode(&sent.gs2_header) {
            return Err(SaslError::ChannelBinding);
        }
        if !sent.accepts_nonce(nonce) {
            return Err(SaslError::NonceMismatch);
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| bad("the proof is not base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            sent.client_first_bare, sent.server_first
        );
        let credential = &sent.credential;
        let signature = hmac(mechanism, &credential.stored_key, auth_message.as_bytes());
        let client_key = client_key_from_proof(&proof, &signature)
            .ok_or_else(|| bad("the proof is not as long as the hash"))?;
        if !sent.known {
            return Err(SaslError::UnknownUser(sent.user.clone()));
        }
        if !credential.accepts_client_key(mechanism, &client_key) {
            return Err(SaslError::BadCredentials(sent.user.clone()));
        }
        let server_signature = hmac(mechanism, &credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client-first messages and what parsing says: the user, or the error.
    #[test]
    fn client_first_messages() {
        let check = |message: &str, expect: Result<&str, &str>| {
            let got = parse_client_first(message)
                .map(|first| first.user)
                .map_err(|error| error.to_string());
            let expect = expect.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, expect, "{message:?}");
        };
        check("n,,n=user,r=abc", Ok("user"));
        check("n,a=user,n=user,r=abc", Ok("user"));
        check("n,,n=a=2Cb=3Dc,r=abc", Ok("a,b=c"));
        check("n,,n=user,r=abc,ext=1", Ok("user"));
        check("n,,n=üser,r=abc", Ok("üser"));
        check(
            "n,a=other,n=user,r=abc",
            Err("authorization id \"other\" differs from the user \"user\""),
        );
        check(
            "n,,n=user,r=abc,tokenauth=true",
            Err("delegation tokens (the tokenauth extension) are not supported"),
        );
        check("y,,n=user,r=abc", Err("malformed client-first message: the gs2 header must start with `n,` (no channel binding)"));
        check("p=tls-unique,,n=user,r=abc", Err("malformed client-first message: the gs2 header must start with `n,` (no channel binding)"));
        check("", Err("malformed client-first message: the gs2 header must start with `n,` (no channel binding)"));
        check(
            "n,",
            Err("malformed client-first message: the gs2 header has no second comma"),
        );
        check(
            "n,x=user,n=user,r=abc",
            Err("malformed client-first message: the authorization id must start with `a=`"),
        );
        check(
            "n,,m=ext,n=user,r=abc",
            Err("malformed client-first message: the user (`n=`) must come first"),
        );
        check(
            "n,,r=abc,n=user",
            Err("malformed client-first message: the user (`n=`) must come first"),
        );
        check(
            "n,,n=user",
            Err("malformed client-first message: the nonce (`r=`) must follow the user"),
        );
        check(
            "n,,n=user,x=abc",
            Err("malformed client-first message: the nonce (`r=`) must follow the user"),
        );
        check("n,,n=,r=abc", Err("malformed user name: empty"));
        check(
            "n,,n=us=er,r=abc",
            Err("malformed user name: `=` not followed by 2C or 3D"),
        );
        check(
            "n,,n=user=2,r=abc",
            Err("malformed user name: `=` not followed by 2C or 3D"),
        );
        check("n,,n=us\0er,r=abc", Err("malformed user name: holds a NUL"));
        check(
            "n,,n=user,r=",
            Err("malformed nonce: empty, or not printable ASCII without commas"),
        );
        check(
            "n,,n=user,r=a b",
            Err("malformed nonce: empty, or not printable ASCII without commas"),
        );
        check(
            "n,,n=user,r=abc,novalue",
            Err("malformed client-first message: an extension is not `key=value`"),
        );
        check(
            "n,,n=user,r=abc,=v",
            Err("malformed client-first message: an extension's key is not alphanumeric"),
        );
    }

    #[test]
    fn names_escape_and_unescape() {
        for name in ["user", "a,b", "a=b", "=2C", ",,==", "ü"] {
            assert_eq!(decode_name(&encode_name(name)).unwrap(), name);
        }
    }
}
