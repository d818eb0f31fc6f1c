//! [`Principal`]: who a request acts as, `type:name` as Kafka writes it. The authorizer matches
//! ACLs against it; SASL, TLS client certificates and the anonymous default produce it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Kafka principal, `type:name`: `User:alice` after SASL, `User:CN=client,O=ferry` for a TLS
/// client certificate, `User:ANONYMOUS` without authentication, `User:*` in an ACL for everyone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// Kafka's only principal type.
    pub const USER: &'static str = "User";

    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: Principal::USER.to_string(),
            name: name.into(),
        }
    }

    /// The principal of an unauthenticated connection.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// Parses `type:name` (the name may itself hold colons, as a certificate subject can); None
    /// without a colon or with an empty type.
    pub fn parse(text: &str) -> Option<Principal> {
        let (kind, name) = text.split_once(':')?;
        (!kind.is_empty()).then(|| Principal {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }

    /// Whether this is `User:*`, the ACL principal that stands for every principal (Kafka
    /// matches only this one as a wildcard: `User:al*` is a literal name).
    pub fn is_wildcard(&self) -> bool {
        self.kind == Principal::USER && self.name == "*"
    }

    /// Whether `text` is this principal written as `type:name`, without allocating (filters hold
    /// principals as the text the client sent).
    pub fn is(&self, text: &str) -> bool {
        text.split_once(':') == Some((self.kind.as_str(), self.name.as_str()))
    }
}

impl Default for Principal {
    fn default() -> Principal {
        Principal::anonymous()
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Written as its text, `User:alice`, in the ACL file.
impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Principal, D::Error> {
        let text = String::deserialize(deserializer)?;
        Principal::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("principal {text:?} is not type:name")))
    }
}

#[cfg(test)]
mod tests {
    use super::Principal;

    #[test]
    fn principals_print_and_parse_as_kafka_writes_them() {
        let cert = Principal::parse("User:CN=client,O=ferry").unwrap();
        assert_eq!(cert, Principal::user("CN=client,O=ferry"));
        assert_eq!(cert.to_string(), "User:CN=client,O=ferry");
        assert!(cert.is("User:CN=client,O=ferry"));
        assert!(!cert.is("User:CN=client"));
        assert_eq!(Principal::default().to_string(), "User:ANONYMOUS");
        assert_eq!(Principal::parse("alice"), None);
        assert_eq!(Principal::parse(":alice"), None);
        assert!(Principal::parse("User:*").unwrap().is_wildcard());
        assert!(!Principal::parse("Group:*").unwrap().is_wildcard());
        assert!(!Principal::user("al*").is_wildcard());
    }
}
