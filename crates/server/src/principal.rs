//! The principal of a TLS client certificate, as Kafka's default principal builder names it:
//! `User:` and the subject's distinguished name as Java's `X500Principal.getName()` prints it
//! (RFC 2253: the last RDN first, `,` between RDNs and `+` inside one, RFC 2253's keywords for
//! the attributes it names and the dotted OID with the DER value in hex for the others, and
//! `,=+<>#;"\` escaped with a backslash). ACLs written for a Kafka cluster then match ferry's
//! principals as they are.

use broker::Principal;
use thiserror::Error;
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use x509_cert::der::{Decode, Encode, Tag, Tagged};
use x509_cert::name::Name;
use x509_cert::Certificate;

#[derive(Debug, Error)]
pub enum PrincipalError {
    #[error("read client certificate: {0}")]
    Certificate(x509_cert::der::Error),
}

/// The principal named by a DER certificate's subject.
pub fn from_certificate(der: &[u8]) -> Result<Principal, PrincipalError> {
    let certificate = Certificate::from_der(der).map_err(PrincipalError::Certificate)?;
    Ok(Principal::user(rfc2253(
        &certificate.tbs_certificate.subject,
    )))
}

/// The keywords Java prints in RFC 2253 form, by OID; every other attribute prints as its OID.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// Characters escaped with a backslash wherever they appear in a value.
const ESCAPED: &str = ",=+<>#;\"\\";

/// A name as Java's `X500Principal.getName()` (RFC 2253) prints it.
fn rfc2253(name: &Name) -> String {
    let mut out = String::new();
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attribute.oid.to_string();
            let keyword = KEYWORDS.iter().find(|(o, _)| *o == oid).map(|(_, k)| *k);
            match (keyword, string_value(&attribute.value)) {
                (Some(keyword), Some(value)) => {
                    out.push_str(keyword);
                    out.push('=');
                    escape_into(&mut out, value);
                }
                (keyword, _) => {
                    out.push_str(keyword.unwrap_or(&oid));
                    out.push_str("=#");
                    for byte in attribute.value.to_der().unwrap_or_default() {
                        out.push_str(&format!("{byte:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// The text of a string-typed value; None for any other type (printed as DER hex).
fn string_value(value: &x509_cert::der::Any) -> Option<&str> {
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::PrintableString => PrintableStringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(value).ok().map(|s| s.as_str()),
        _ => None,
    }
}

/// Appends `value` with RFC 2253's escapes as Java writes them: the special characters
/// anywhere, NUL as `\00`, and a space at either end.
fn escape_into(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        if ESCAPED.contains(c) || (c == ' ' && (i == 0 || i == last)) {
            out.push('\\');
            out.push(c);
        } else if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// `name` is in RFC 4514 string form (parsed by x509-cert, values as UTF8String, the last
    /// RDN first, as printed).
    fn check(name: &str, expect: &str) {
        let name = Name::from_str(name).expect("parse name");
        assert_eq!(rfc2253(&name), expect);
    }

    #[test]
    fn subjects_print_as_java_prints_them() {
        check("CN=client,O=ferry", "CN=client,O=ferry");
        check(
            "CN=broker,OU=eng,O=ferry,L=Oslo,ST=Oslo,C=NO",
            "CN=broker,OU=eng,O=ferry,L=Oslo,ST=Oslo,C=NO",
        );
        check("CN=a+UID=b,DC=example", "CN=a+UID=b,DC=example");
        check("CN=a\\,b\\=c\\+d", "CN=a\\,b\\=c\\+d");
        check("CN=\\#x\\;y\\<z\\>", "CN=\\#x\\;y\\<z\\>");
        check("CN=\\ padded\\ ", "CN=\\ padded\\ ");
        check("CN=née", "CN=née");
        // emailAddress has no RFC 2253 keyword: Java prints its OID and the DER value in hex.
        check(
            "CN=x,1.2.840.113549.1.9.1=#160b6140666572722e726f636b",
            "CN=x,1.2.840.113549.1.9.1=#160b6140666572722e726f636b",
        );
    }
}
