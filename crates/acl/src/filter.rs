//! [`AclBindingFilter`]: which ACLs a DescribeAcls or DeleteAcls means, matched as Kafka matches
//! them. Every field may be ANY (`None` here); a pattern filter may also be MATCH, which selects
//! the ACLs that would apply to a resource of that name: literal ones with that name or `*`, and
//! prefixed ones whose prefix starts the name.

use crate::model::{ANY_CODE, WILDCARD_NAME};
use crate::{AclBinding, AclError, Operation, PatternType, Permission, ResourceType};

/// The MATCH pattern filter's code.
pub const MATCH_CODE: i8 = 2;

/// How a filter selects ACLs by their pattern type and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Every pattern type (ANY); a name in the filter must equal the ACL's.
    Any,
    /// The ACLs that apply to the filter's name (MATCH).
    Match,
    /// This pattern type only; a name in the filter must equal the ACL's.
    Exact(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Result<PatternFilter, AclError> {
        match code {
            ANY_CODE => Ok(PatternFilter::Any),
            MATCH_CODE => Ok(PatternFilter::Match),
            _ => PatternType::from_code(code)
                .map(PatternFilter::Exact)
                .ok_or(AclError::UnknownCode {
                    field: "pattern type",
                    code,
                }),
        }
    }
}

/// A filter over ACLs, Kafka's `AclBindingFilter` flattened: `None` is ANY (or, for a name,
/// principal or host, "any value").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    /// As the client wrote it: an ACL matches if its principal prints the same (Kafka compares
    /// the strings, so `User:*` here selects the wildcard ACLs, not every ACL).
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclBindingFilter {
    /// The filter that matches every ACL.
    pub const ANY: AclBindingFilter = AclBindingFilter {
        resource_type: None,
        name: None,
        pattern: PatternFilter::Any,
        principal: None,
        host: None,
        operation: None,
        permission: None,
    };

    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.resource_type
            .is_none_or(|t| t == binding.resource_type)
            && self.matches_pattern(binding)
            && self
                .principal
                .as_deref()
                .is_none_or(|p| binding.principal.is(p))
            && self.host.as_deref().is_none_or(|h| h == binding.host)
            && self.operation.is_none_or(|o| o == binding.operation)
            && self.permission.is_none_or(|p| p == binding.permission)
    }

    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if let PatternFilter::Exact(pattern) = self.pattern {
            if pattern != binding.pattern {
                return false;
            }
        }
        let Some(name) = &self.name else {
            return true;
        };
        match (self.pattern, binding.pattern) {
            (PatternFilter::Any | PatternFilter::Exact(_), _) => *name == binding.name,
            (PatternFilter::Match, PatternType::Literal) => {
                *name == binding.name || binding.name == WILDCARD_NAME
            }
            (PatternFilter::Match, PatternType::Prefixed) => name.starts_with(&binding.name),
        }
    }
}

/// A filter field's value from its code: ANY is `None`; UNKNOWN (0) and undefined codes are
/// an error (Kafka refuses a filter with UNKNOWN elements).
pub fn any_or<T>(
    code: i8,
    field: &'static str,
    from_code: fn(i8) -> Option<T>,
) -> Result<Option<T>, AclError> {
    if code == ANY_CODE {
        return Ok(None);
    }
    from_code(code)
        .map(Some)
        .ok_or(AclError::UnknownCode { field, code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;

    fn binding(kind: ResourceType, pattern: PatternType, name: &str) -> AclBinding {
        AclBinding {
            resource_type: kind,
            name: name.to_string(),
            pattern,
            principal: Principal::user("alice"),
            host: "*".to_string(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    fn filter(pattern: PatternFilter, name: Option<&str>) -> AclBindingFilter {
        AclBindingFilter {
            resource_type: Some(ResourceType::Topic),
            name: name.map(str::to_string),
            pattern,
            ..AclBindingFilter::ANY
        }
    }

    #[test]
    fn pattern_filters_match_as_kafkas() {
        use PatternFilter::*;
        use PatternType::*;
        // (filter pattern, filter name, ACL pattern, ACL name, matches)
        let cases: &[(PatternFilter, Option<&str>, PatternType, &str, bool)] = &[
            (Any, None, Literal, "orders", true),
            (Any, None, Prefixed, "ord", true),
            (Any, Some("orders"), Literal, "orders", true),
            (Any, Some("orders"), Prefixed, "orders", true),
            (Any, Some("orders"), Prefixed, "ord", false),
            (Any, Some("orders"), Literal, "*", false),
            (Exact(Literal), Some("orders"), Literal, "orders", true),
            (Exact(Literal), Some("orders"), Prefixed, "orders", false),
            (Exact(Prefixed), None, Prefixed, "ord", true),
            (Exact(Prefixed), None, Literal, "ord", false),
            (Match, Some("orders"), Literal, "orders", true),
            (Match, Some("orders"), Literal, "*", true),
            (Match, Some("orders"), Literal, "ord", false),
            (Match, Some("orders"), Prefixed, "ord", true),
            (Match, Some("orders"), Prefixed, "orders", true),
            (Match, Some("orders"), Prefixed, "orders-eu", false),
            (Match, Some("orders"), Prefixed, "x", false),
            (Match, None, Prefixed, "x", true),
        ];
        for &(pattern, name, acl_pattern, acl_name, expect) in cases {
            let got =
                filter(pattern, name).matches(&binding(ResourceType::Topic, acl_pattern, acl_name));
            assert_eq!(
                got, expect,
                "{pattern:?} {name:?} on {acl_pattern} {acl_name}"
            );
        }
    }

    #[test]
    fn entry_fields_match_exactly_or_any() {
        let acl = binding(ResourceType::Topic, PatternType::Literal, "t");
        let cases = [
            (AclBindingFilter::ANY, true),
            (
                AclBindingFilter {
                    resource_type: Some(ResourceType::Group),
                    ..AclBindingFilter::ANY
                },
                false,
            ),
            (
                AclBindingFilter {
                    principal: Some("User:alice".into()),
                    ..AclBindingFilter::ANY
                },
                true,
            ),
            (
                AclBindingFilter {
                    principal: Some("User:*".into()),
                    ..AclBindingFilter::ANY
                },
                false,
            ),
            (
                AclBindingFilter {
                    principal: Some("alice".into()),
                    ..AclBindingFilter::ANY
                },
                false,
            ),
            (
                AclBindingFilter {
                    host: Some("*".into()),
                    ..AclBindingFilter::ANY
                },
                true,
            ),
            (
                AclBindingFilter {
                    host: Some("10.0.0.1".into()),
                    ..AclBindingFilter::ANY
                },
                false,
            ),
            (
                AclBindingFilter {
                    operation: Some(Operation::Read),
                    ..AclBindingFilter::ANY
                },
                true,
            ),
            (
                AclBindingFilter {
                    operation: Some(Operation::All),
                    ..AclBindingFilter::ANY
                },
                false,
            ),
            (
                AclBindingFilter {
                    permission: Some(Permission::Deny),
                    ..AclBindingFilter::ANY
                },
                false,
            ),
        ];
        for (filter, expect) in cases {
            assert_eq!(filter.matches(&acl), expect, "{filter:?}");
        }
    }

    #[test]
    fn codes() {
        assert_eq!(PatternFilter::from_code(1), Ok(PatternFilter::Any));
        assert_eq!(PatternFilter::from_code(2), Ok(PatternFilter::Match));
        assert_eq!(
            PatternFilter::from_code(4),
            Ok(PatternFilter::Exact(PatternType::Prefixed))
        );
        assert!(PatternFilter::from_code(0).is_err());
        assert_eq!(any_or(1, "operation", Operation::from_code), Ok(None));
        assert_eq!(
            any_or(3, "operation", Operation::from_code),
            Ok(Some(Operation::Read))
        );
        assert_eq!(
            any_or(0, "operation", Operation::from_code),
            Err(AclError::UnknownCode {
                field: "operation",
                code: 0
            })
        );
    }
}
