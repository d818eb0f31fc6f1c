//! [`Authorizer`]: the ACLs of a cluster and Kafka's answer to "may this principal, from this
//! host, do this operation on this resource" (the semantics of Kafka's `AclAuthorizer` and
//! `StandardAuthorizer`):
//!
//! - a super user may do everything;
//! - the ACLs that apply to a resource are the literal ones with its name, the literal `*` of its
//!   type, and the prefixed ones whose prefix starts its name;
//! - if none applies at all (to anyone), the answer is `allow.everyone.if.no.acl.found`;
//! - otherwise a DENY for the principal (or `User:*`) and host (or `*`) of the operation (or
//!   ALL) refuses, whatever ALLOWs say; else an ALLOW of the operation, of an operation that
//!   implies it ([`Operation::allows`]) or of ALL grants; else the answer is no.
//!
//! ACLs are indexed by resource type and name so a check costs a few hash lookups, not a scan:
//! it runs for every topic of every Produce and Fetch.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::WILDCARD_NAME;
use crate::{
    AclBinding, AclBindingFilter, AclError, Operation, PatternType, Permission, Principal,
    Resource, ResourceType,
};

/// The authorizer's settings (`super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals allowed everything, whatever the ACLs say.
    pub super_users: Vec<Principal>,
    /// The answer for a resource no ACL applies to (Kafka's default: false, deny).
    pub allow_everyone_if_no_acl_found: bool,
}

/// The name Kafka's `authorizeByResourceType` asks about first, one no ACL is meant to match:
/// a super user, or anyone when no ACL matches and `allow.everyone.if.no.acl.found` holds, is
/// answered yes before the scan.
const NAME_NO_ACL_MEANS: &str = "hardcode";

/// One resource type's ACLs, by name.
#[derive(Debug, Default, Clone)]
struct Index {
    literal: HashMap<String, Vec<AclBinding>>,
    prefixed: HashMap<String, Vec<AclBinding>>,
    /// The lengths of the prefixes in `prefixed`, with how many prefixes have each: a check
    /// looks up only the prefixes of its name that have one of these lengths.
    prefix_lengths: BTreeMap<usize, usize>,
}

impl Index {
    fn by_pattern(&mut self, pattern: PatternType) -> &mut HashMap<String, Vec<AclBinding>> {
        match pattern {
            PatternType::Literal => &mut self.literal,
            PatternType::Prefixed => &mut self.prefixed,
        }
    }

    /// Every ACL that applies to a resource named `name`.
    fn applying<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self.literal.get(name).into_iter().flatten();
        let wildcard = (name != WILDCARD_NAME)
            .then(|| self.literal.get(WILDCARD_NAME))
            .flatten()
            .into_iter()
            .flatten();
        let prefixed = self
            .prefix_lengths
            .keys()
            .take_while(move |&&length| length <= name.len())
            .filter(move |&&length| name.is_char_boundary(length))
            .filter_map(move |&length| self.prefixed.get(&name[..length]))
            .flatten();
        literal.chain(wildcard).chain(prefixed)
    }

    fn all(&self) -> impl Iterator<Item = &AclBinding> {
        self.literal
            .values()
            .chain(self.prefixed.values())
            .flatten()
    }
}

/// The ACLs and the settings that judge requests by them.
#[derive(Debug, Clone)]
pub struct Authorizer {
    super_users: HashSet<Principal>,
    allow_everyone_if_no_acl_found: bool,
    /// By `slot(resource type)`.
    indexes: [Index; ResourceType::ALL.len()],
    len: usize,
}

fn slot(kind: ResourceType) -> usize {
    ResourceType::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every resource type is in ALL")
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Authorizer {
        Authorizer {
            super_users: config.super_users.into_iter().collect(),
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
            indexes: Default::default(),
            len: 0,
        }
    }

    /// How many ACLs there are.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an ACL after Kafka's checks ([`AclBinding::validate`]); false if it was there.
    pub fn add(&mut self, binding: AclBinding) -> Result<bool, AclError> {
        binding.validate()?;
        let index = &mut self.indexes[slot(binding.resource_type)];
        let pattern = binding.pattern;
        let length = binding.name.len();
        let same_name = index
            .by_pattern(pattern)
            .entry(binding.name.clone())
            .or_default();
        if same_name.contains(&binding) {
            return Ok(false);
        }
        let first_of_name = same_name.is_empty();
        same_name.push(binding);
        if pattern == PatternType::Prefixed && first_of_name {
            *index.prefix_lengths.entry(length).or_default() += 1;
        }
        self.len += 1;
        Ok(true)
    }

    /// Removes every ACL `filter` matches and returns them, in [`Authorizer::matching`]'s order.
    pub fn remove_matching(&mut self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let mut removed = Vec::new();
        for index in &mut self.indexes {
            for pattern in PatternType::ALL {
                let by_name = index.by_pattern(*pattern);
                by_name.retain(|_, bindings| {
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        bindings.drain(..).partition(|b| filter.matches(b));
                    removed.extend(gone);
                    *bindings = kept;
                    !bindings.is_empty()
                });
            }
            let prefixed = &index.prefixed;
            index.prefix_lengths = prefixed.keys().fold(BTreeMap::new(), |mut lengths, name| {
                *lengths.entry(name.len()).or_default() += 1;
                lengths
            });
        }
        self.len -= removed.len();
        removed.sort();
        removed
    }

    /// The ACLs `filter` matches, sorted (resource type, name, pattern, principal, ...).
    pub fn matching(&self, filter: &AclBindingFilter) -> Vec<&AclBinding> {
        let mut found: Vec<&AclBinding> = self
            .indexes
            .iter()
            .flat_map(Index::all)
            .filter(|b| filter.matches(b))
            .collect();
        found.sort();
        found
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.contains(principal)
    }

    /// Whether `principal`, connected from `host`, may do `operation` on `resource` (see the
    /// module comment for the rules).
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let mut any_applies = false;
        let mut allowed = false;
        for acl in self.indexes[slot(resource.kind)].applying(resource.name) {
            any_applies = true;
            if !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation.denies(operation) => return false,
                Permission::Allow if acl.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        if any_applies {
            allowed
        } else {
            self.allow_everyone_if_no_acl_found
        }
    }

    /// The operations of `resource`'s type that `principal` from `host` may do on it: what
    /// KIP-430's authorized-operations fields report (see [`crate::bit_field`]).
    pub fn authorized_operations<'a>(
        &'a self,
        principal: &'a Principal,
        host: &'a str,
        resource: Resource<'a>,
    ) -> impl Iterator<Item = Operation> + 'a {
        resource
            .kind
            .operations()
            .iter()
            .copied()
            .filter(move |&operation| self.authorize(principal, host, operation, resource))
    }

    /// Whether `principal` from `host` may do `operation` on at least one resource of type
    /// `kind` (Kafka's `authorizeByResourceType`, KIP-679: an idempotent producer needs WRITE on
    /// some topic). Yes if an ALLOW of the operation (or ALL) for the principal is not covered
    /// by a DENY: a literal DENY of the same name, a prefixed DENY of a prefix of its name, or a
    /// literal DENY of `*`, which covers everything.
    pub fn authorize_any(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        kind: ResourceType,
    ) -> bool {
        let unnamed = Resource {
            kind,
            name: NAME_NO_ACL_MEANS,
        };
        if self.authorize(principal, host, operation, unnamed) {
            return true;
        }
        let relevant = self.indexes[slot(kind)].all().filter(|acl| {
            acl.applies_to(principal, host)
                && (acl.operation == operation || acl.operation == Operation::All)
        });
        let mut denied: HashSet<(PatternType, &str)> = HashSet::new();
        let mut allowed: Vec<(PatternType, &str)> = Vec::new();
        for acl in relevant {
            let pattern = (acl.pattern, acl.name.as_str());
            match acl.permission {
                Permission::Deny => {
                    denied.insert(pattern);
                }
                Permission::Allow => allowed.push(pattern),
            }
        }
        let wildcard = (PatternType::Literal, WILDCARD_NAME);
        if denied.contains(&wildcard) {
            return false;
        }
        if allowed.contains(&wildcard) {
            return true;
        }
        allowed.into_iter().any(|(pattern, name)| {
            let literal_denied =
                pattern == PatternType::Literal && denied.contains(&(PatternType::Literal, name));
            let prefix_denied = (1..=name.len())
                .filter(|&length| name.is_char_boundary(length))
                .any(|length| denied.contains(&(PatternType::Prefixed, &name[..length])));
            !literal_denied && !prefix_denied
        })
    }
}

#[cfg(test)]
mod tests;
