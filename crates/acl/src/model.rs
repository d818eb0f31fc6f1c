//! Kafka's ACL vocabulary with its numeric codes (the wire's `int8`s) and names (`TOPIC`,
//! `PREFIXED`, `DESCRIBE_CONFIGS`): resource types, pattern types, operations, permissions, and
//! [`AclBinding`], one ACL. The filter-only values (ANY, MATCH) are not here: a binding can
//! never hold them, and [`crate::AclBindingFilter`] spells them as `None` or its own variants.

use serde::{Deserialize, Serialize};

use crate::{AclError, Principal};

/// The code every Kafka ACL enum gives ANY, the filter value that matches every value.
pub const ANY_CODE: i8 = 1;
/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name that stands for every resource of its type.
pub const WILDCARD_NAME: &str = "*";
/// The host that stands for every host.
pub const WILDCARD_HOST: &str = "*";

/// An enum with Kafka's codes and names; `from_code` is None for UNKNOWN (0), ANY and codes
/// Kafka does not define, which a binding cannot hold.
macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Kafka's numeric code.
            pub const fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            pub fn from_code(code: i8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// Kafka's name (`TOPIC`, `DESCRIBE_CONFIGS`).
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum! {
    /// What an ACL protects (Kafka's `ResourceType`; DELEGATION_TOKEN and USER are not here:
    /// ferry has neither).
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
    }
}

kafka_enum! {
    /// How an ACL's name selects resources (KIP-290): the name itself (or `*`, every resource),
    /// or every name that starts with it.
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// What a request does to a resource (Kafka's `AclOperation`, without the token operations).
    Operation {
        /// In an ACL, every operation.
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
    }
}

kafka_enum! {
    /// Whether a matching ACL grants or refuses.
    Permission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

impl ResourceType {
    /// The operations that apply to this resource type, as KIP-430's authorized-operations
    /// fields report them (Kafka's `AclEntry.supportedOperations`; ALL is never reported).
    pub const fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
        }
    }
}

impl Operation {
    /// Whether an ALLOW of `self` grants `wanted`: ALL grants everything; READ, WRITE, DELETE
    /// and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS (Kafka's implied
    /// operations: whoever may change a thing may see it).
    pub fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` refuses `wanted`: only the operation itself or ALL (a DENY of
    /// READ leaves DESCRIBE to the ALLOWs, as in Kafka).
    pub fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// KIP-430's authorized-operations bit field: bit `code` set for each operation.
pub fn bit_field(operations: impl IntoIterator<Item = Operation>) -> i32 {
    operations
        .into_iter()
        .fold(0, |bits, operation| bits | (1 << operation.code()))
}

/// A resource a request acts on: a topic, group or transactional id by name, or the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub const CLUSTER: Resource<'static> = Resource {
        kind: ResourceType::Cluster,
        name: CLUSTER_NAME,
    };

    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Topic,
            name,
        }
    }

    pub fn group(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::Group,
            name,
        }
    }

    pub fn transactional_id(name: &'a str) -> Resource<'a> {
        Resource {
            kind: ResourceType::TransactionalId,
            name,
        }
    }
}

/// One ACL: `permission` for `principal` from `host` to do `operation` on the resources of
/// `resource_type` that `name` selects under `pattern`. Kafka's `AclBinding`, flattened.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    pub principal: Principal,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Kafka's checks on a new ACL: a resource name (CLUSTER's only name is `kafka-cluster`).
    /// The enums and the principal's `type:` are checked by their types.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.name.is_empty() {
            return Err(AclError::EmptyName);
        }
        if self.resource_type == ResourceType::Cluster && self.name != CLUSTER_NAME {
            return Err(AclError::ClusterName(self.name.clone()));
        }
        if self.host.is_empty() {
            return Err(AclError::EmptyHost);
        }
        Ok(())
    }

    /// Whether this ACL speaks for `principal` connecting from `host`.
    pub fn applies_to(&self, principal: &Principal, host: &str) -> bool {
        (self.principal == *principal || self.principal.is_wildcard())
            && (self.host == WILDCARD_HOST || self.host == host)
    }
}

/// One line, the form traces, the documentation and tests write an ACL in:
/// `ALLOW User:alice 10.0.0.1 READ TOPIC PREFIXED orders-` (permission, principal, host,
/// operation, resource type, pattern type, name). The name is the rest of the line; the
/// principal and host hold no blanks.
impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {}",
            self.permission,
            self.principal,
            self.host,
            self.operation,
            self.resource_type,
            self.pattern,
            self.name
        )
    }
}

impl std::str::FromStr for AclBinding {
    type Err = AclError;

    fn from_str(line: &str) -> Result<AclBinding, AclError> {
        let line_error = || AclError::Line(line.to_string());
        let mut words = line.trim().splitn(7, char::is_whitespace);
        let mut word = || {
            words
                .next()
                .filter(|w| !w.is_empty())
                .ok_or_else(line_error)
        };
        fn named<T: Copy + std::fmt::Display>(all: &[T], word: &str) -> Option<T> {
            all.iter()
                .copied()
                .find(|v| v.to_string().eq_ignore_ascii_case(word))
        }
        let permission = named(Permission::ALL, word()?).ok_or_else(line_error)?;
        let principal = crate::parse_principal(word()?)?;
        let host = word()?.to_string();
        let operation = named(Operation::ALL, word()?).ok_or_else(line_error)?;
        let resource_type = named(ResourceType::ALL, word()?).ok_or_else(line_error)?;
        let pattern = named(PatternType::ALL, word()?).ok_or_else(line_error)?;
        let name = word()?.trim().to_string();
        let binding = AclBinding {
            resource_type,
            name,
            pattern,
            principal,
            host,
            operation,
            permission,
        };
        binding.validate()?;
        Ok(binding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    #[test]
    fn codes_and_names_are_kafkas() {
        let cases: &[(i8, &str, i8, &str)] = &[
            (
                ResourceType::Topic.code(),
                ResourceType::Topic.name(),
                2,
                "TOPIC",
            ),
            (
                ResourceType::TransactionalId.code(),
                ResourceType::TransactionalId.name(),
                5,
                "TRANSACTIONAL_ID",
            ),
            (
                PatternType::Prefixed.code(),
                PatternType::Prefixed.name(),
                4,
                "PREFIXED",
            ),
            (
                Permission::Allow.code(),
                Permission::Allow.name(),
                3,
                "ALLOW",
            ),
            (
                IdempotentWrite.code(),
                IdempotentWrite.name(),
                12,
                "IDEMPOTENT_WRITE",
            ),
        ];
        for (code, name, expect_code, expect_name) in cases {
            assert_eq!((code, name), (expect_code, expect_name));
        }
        for code in [0, ANY_CODE, 2, 6, 12, 13, -1] {
            let operation = Operation::from_code(code);
            assert_eq!(
                operation.map(Operation::code),
                (2..=12).contains(&code).then_some(code)
            );
        }
        assert_eq!(PatternType::from_code(2), None, "MATCH is a filter value");
        assert_eq!(
            serde_json::to_string(&ResourceType::TransactionalId).unwrap(),
            "\"TRANSACTIONAL_ID\""
        );
    }

    #[test]
    fn implied_operations() {
        // (granted, wanted, allowed, denied)
        let cases = [
            (All, Read, true, true),
            (Read, Describe, true, false),
            (Write, Describe, true, false),
            (Delete, Describe, true, false),
            (Alter, Describe, true, false),
            (Create, Describe, false, false),
            (AlterConfigs, DescribeConfigs, true, false),
            (DescribeConfigs, AlterConfigs, false, false),
            (Describe, Read, false, false),
            (Read, Read, true, true),
            (Read, Write, false, false),
            (Alter, AlterConfigs, false, false),
        ];
        for (granted, wanted, allowed, denied) in cases {
            assert_eq!(granted.allows(wanted), allowed, "{granted} allows {wanted}");
            assert_eq!(granted.denies(wanted), denied, "{granted} denies {wanted}");
        }
    }

    #[test]
    fn every_operation_of_a_resource_type_is_a_bit() {
        // What Kafka reports with no authorizer: every supported operation.
        let expect = [
            (ResourceType::Topic, 0b1101_1111_1000),
            (ResourceType::Group, 0b1_0100_1000),
            (ResourceType::Cluster, 0b1_1111_1010_0000),
            (ResourceType::TransactionalId, 0b1_0001_0000),
        ];
        for (kind, bits) in expect {
            assert_eq!(bit_field(kind.operations().iter().copied()), bits, "{kind}");
        }
    }

    #[test]
    fn one_line_form_round_trips() {
        let cases = [
            ("ALLOW User:alice * READ TOPIC LITERAL orders", true),
            ("DENY User:* 10.0.0.1 ALL GROUP PREFIXED g-", true),
            (
                "ALLOW User:CN=a,O=b * WRITE TRANSACTIONAL_ID LITERAL tx with blanks",
                true,
            ),
            ("allow User:alice * read topic literal t", true),
            ("ALLOW alice * READ TOPIC LITERAL t", false),
            ("ALLOW User:alice * READ TOPIC MATCH t", false),
            ("ALLOW User:alice * READ TOPIC LITERAL", false),
            ("ALLOW User:alice * READ CLUSTER LITERAL c", false),
        ];
        for (line, valid) in cases {
            let parsed = line.parse::<AclBinding>();
            assert_eq!(parsed.is_ok(), valid, "{line}: {parsed:?}");
            if let Ok(binding) = parsed {
                assert_eq!(
                    binding.to_string().parse::<AclBinding>(),
                    Ok(binding.clone())
                );
                assert!(binding.to_string().eq_ignore_ascii_case(line), "{binding}");
            }
        }
    }

    #[test]
    fn validation() {
        let binding = |kind: ResourceType, name: &str, host: &str| AclBinding {
            resource_type: kind,
            name: name.to_string(),
            pattern: PatternType::Literal,
            principal: Principal::user("alice"),
            host: host.to_string(),
            operation: Read,
            permission: Permission::Allow,
        };
        let cases = [
            (binding(ResourceType::Topic, "t", "*"), Ok(())),
            (
                binding(ResourceType::Topic, "", "*"),
                Err(AclError::EmptyName),
            ),
            (binding(ResourceType::Cluster, CLUSTER_NAME, "*"), Ok(())),
            (
                binding(ResourceType::Cluster, "other", "*"),
                Err(AclError::ClusterName("other".into())),
            ),
            (
                binding(ResourceType::Group, "g", ""),
                Err(AclError::EmptyHost),
            ),
        ];
        for (binding, expect) in cases {
            assert_eq!(binding.validate(), expect, "{binding}");
        }
    }
}
