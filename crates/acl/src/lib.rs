//! Kafka's ACL model and authorizer as pure logic: [`AclBinding`]s (who may or may not do what
//! on which resources), [`AclBindingFilter`]s (which ACLs a DescribeAcls or DeleteAcls means),
//! and the [`Authorizer`] that answers a request's question with Kafka's semantics (super users,
//! DENY over ALLOW, wildcards, prefixed patterns, implied operations,
//! `allow.everyone.if.no.acl.found`, KIP-430's authorized operations).
//!
//! No I/O and no wire format here: the broker keeps the ACLs in a file and turns requests into
//! questions; this crate only knows the model, so it can be tested as tables.

mod authorizer;
mod filter;
mod model;
mod principal;

pub use authorizer::{Authorizer, AuthorizerConfig};
pub use filter::{any_or, AclBindingFilter, PatternFilter, MATCH_CODE};
pub use model::{
    bit_field, AclBinding, Operation, PatternType, Permission, Resource, ResourceType, ANY_CODE,
    CLUSTER_NAME, WILDCARD_HOST, WILDCARD_NAME,
};
pub use principal::Principal;

use thiserror::Error;

/// Why an ACL, a filter or a setting is refused (answered INVALID_REQUEST on the wire).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AclError {
    #[error("invalid empty resource name")]
    EmptyName,
    #[error("the only valid name for the CLUSTER resource is {CLUSTER_NAME}, not {0:?}")]
    ClusterName(String),
    #[error("invalid empty host (use * for every host)")]
    EmptyHost,
    #[error("unknown {field} code {code}")]
    UnknownCode { field: &'static str, code: i8 },
    #[error(
        "ACL line {0:?} is not PERMISSION PRINCIPAL HOST OPERATION RESOURCE_TYPE PATTERN NAME"
    )]
    Line(String),
    #[error(
        "could not parse principal {0:?}: no colon separates the principal type from the \
         principal name (write User:NAME)"
    )]
    Principal(String),
}

/// Parses a principal as an ACL or a setting writes it, `type:name`.
pub fn parse_principal(text: &str) -> Result<Principal, AclError> {
    Principal::parse(text).ok_or_else(|| AclError::Principal(text.to_string()))
}

/// Parses `super.users` as Kafka writes it: principals separated by semicolons
/// (`User:admin;User:ops`); blanks around them and empty entries are ignored.
pub fn parse_super_users(text: &str) -> Result<Vec<Principal>, AclError> {
    text.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_principal)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_users_parse_as_kafka_writes_them() {
        let cases: &[(&str, Result<Vec<Principal>, AclError>)] = &[
            ("", Ok(vec![])),
            ("User:admin", Ok(vec![Principal::user("admin")])),
            (
                "User:admin; User:ops;",
                Ok(vec![Principal::user("admin"), Principal::user("ops")]),
            ),
            (
                "User:CN=a,O=b;User:x",
                Ok(vec![Principal::user("CN=a,O=b"), Principal::user("x")]),
            ),
            ("admin", Err(AclError::Principal("admin".into()))),
        ];
        for (text, expect) in cases {
            assert_eq!(&parse_super_users(text), expect, "{text:?}");
        }
    }
}
