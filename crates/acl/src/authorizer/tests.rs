//! The authorizer as tables: ACLs written one per line
//! (`PERMISSION PRINCIPAL HOST OPERATION RESOURCE_TYPE PATTERN NAME`), a question, the answer;
//! then properties against a scan of every ACL through a MATCH filter.

use proptest::prelude::*;

use super::*;
use crate::{bit_field, PatternFilter};

fn by_name<T: Copy + std::fmt::Display>(all: &[T], text: &str) -> T {
    *all.iter()
        .find(|v| v.to_string() == text)
        .unwrap_or_else(|| panic!("no value named {text}"))
}

fn acl(line: &str) -> AclBinding {
    line.parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn authorizer(config: AuthorizerConfig, acls: &[&str]) -> Authorizer {
    let mut authorizer = Authorizer::new(config);
    for line in acls {
        assert!(authorizer.add(acl(line)).unwrap(), "added twice: {line}");
    }
    authorizer
}

/// `User:alice 10.0.0.1 READ TOPIC orders`
fn ask(authorizer: &Authorizer, question: &str) -> bool {
    let words: Vec<&str> = question.split_whitespace().collect();
    let [principal, host, operation, kind, name] = words[..] else {
        panic!("a question has 5 words: {question}");
    };
    let resource = Resource {
        kind: by_name(ResourceType::ALL, kind),
        name,
    };
    let principal = Principal::parse(principal).unwrap();
    authorizer.authorize(
        &principal,
        host,
        by_name(Operation::ALL, operation),
        resource,
    )
}

const ALLOW_EVERYONE: AuthorizerConfig = AuthorizerConfig {
    super_users: Vec::new(),
    allow_everyone_if_no_acl_found: true,
};

#[test]
fn kafkas_rules() {
    let deny_none = AuthorizerConfig::default;
    let admin = || AuthorizerConfig {
        super_users: vec![Principal::user("admin")],
        ..AuthorizerConfig::default()
    };
    // (config, ACLs, question, answer)
    let cases: Vec<(AuthorizerConfig, &[&str], &str, bool)> = vec![
        // No ACL applies: allow.everyone.if.no.acl.found decides.
        (deny_none(), &[], "User:alice h READ TOPIC t", false),
        (ALLOW_EVERYONE, &[], "User:alice h READ TOPIC t", true),
        (
            ALLOW_EVERYONE,
            &["ALLOW User:bob * READ TOPIC LITERAL t"],
            "User:alice h READ TOPIC t",
            false,
        ),
        (
            ALLOW_EVERYONE,
            &["ALLOW User:bob * READ TOPIC LITERAL u"],
            "User:alice h READ TOPIC t",
            true,
        ),
        (
            ALLOW_EVERYONE,
            &["ALLOW User:bob * READ GROUP LITERAL t"],
            "User:alice h READ TOPIC t",
            true,
        ),
        // Super users pass every DENY.
        (
            admin(),
            &["DENY User:admin * ALL TOPIC LITERAL t"],
            "User:admin h WRITE TOPIC t",
            true,
        ),
        (
            admin(),
            &[],
            "User:admin h ALTER CLUSTER kafka-cluster",
            true,
        ),
        (
            admin(),
            &[],
            "User:alice h ALTER CLUSTER kafka-cluster",
            false,
        ),
        // An ALLOW grants its operation and those it implies, nothing else.
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC LITERAL t"],
            "User:alice h READ TOPIC t",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC LITERAL t"],
            "User:alice h DESCRIBE TOPIC t",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC LITERAL t"],
            "User:alice h WRITE TOPIC t",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * DESCRIBE TOPIC LITERAL t"],
            "User:alice h READ TOPIC t",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * ALTER_CONFIGS TOPIC LITERAL t"],
            "User:alice h DESCRIBE_CONFIGS TOPIC t",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * ALL GROUP LITERAL g"],
            "User:alice h DELETE GROUP g",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC LITERAL t"],
            "User:alice h READ TOPIC t2",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ GROUP LITERAL t"],
            "User:alice h READ TOPIC t",
            false,
        ),
        // DENY beats ALLOW, for its operation (or ALL) only.
        (
            deny_none(),
            &[
                "ALLOW User:alice * ALL TOPIC LITERAL t",
                "DENY User:alice * READ TOPIC LITERAL t",
            ],
            "User:alice h READ TOPIC t",
            false,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * ALL TOPIC LITERAL t",
                "DENY User:alice * READ TOPIC LITERAL t",
            ],
            "User:alice h WRITE TOPIC t",
            true,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * ALL TOPIC LITERAL t",
                "DENY User:alice * READ TOPIC LITERAL t",
            ],
            "User:alice h DESCRIBE TOPIC t",
            true,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC LITERAL t",
                "DENY User:alice * ALL TOPIC LITERAL t",
            ],
            "User:alice h READ TOPIC t",
            false,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC LITERAL t",
                "DENY User:bob * ALL TOPIC LITERAL t",
            ],
            "User:alice h READ TOPIC t",
            true,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC LITERAL t",
                "DENY User:* * READ TOPIC LITERAL *",
            ],
            "User:alice h READ TOPIC t",
            false,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC PREFIXED t",
                "DENY User:alice h2 READ TOPIC LITERAL t",
            ],
            "User:alice h READ TOPIC t",
            true,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC PREFIXED t",
                "DENY User:alice h READ TOPIC LITERAL t",
            ],
            "User:alice h READ TOPIC t",
            false,
        ),
        // Wildcards: the principal User:*, the host *, the literal name *.
        (
            deny_none(),
            &["ALLOW User:* * READ TOPIC LITERAL t"],
            "User:alice h READ TOPIC t",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:* * READ TOPIC LITERAL t"],
            "Group:ops h READ TOPIC t",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:al* * READ TOPIC LITERAL t"],
            "User:alice h READ TOPIC t",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice 10.0.0.1 READ TOPIC LITERAL t"],
            "User:alice 10.0.0.1 READ TOPIC t",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice 10.0.0.1 READ TOPIC LITERAL t"],
            "User:alice 10.0.0.2 READ TOPIC t",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC LITERAL *"],
            "User:alice h READ TOPIC anything",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC LITERAL t*"],
            "User:alice h READ TOPIC t1",
            false,
        ),
        // Prefixed patterns (KIP-290).
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED ord"],
            "User:alice h READ TOPIC orders",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED ord"],
            "User:alice h READ TOPIC ord",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED ord"],
            "User:alice h READ TOPIC or",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED ord"],
            "User:alice h READ TOPIC xord",
            false,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED *"],
            "User:alice h READ TOPIC orders",
            false,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC LITERAL *",
                "DENY User:alice * READ TOPIC PREFIXED orders-",
            ],
            "User:alice h READ TOPIC orders-eu",
            false,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC LITERAL *",
                "DENY User:alice * READ TOPIC PREFIXED orders-",
            ],
            "User:alice h READ TOPIC orders",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED é"],
            "User:alice h READ TOPIC été",
            true,
        ),
        (
            deny_none(),
            &["ALLOW User:alice * READ TOPIC PREFIXED ét"],
            "User:alice h READ TOPIC été",
            true,
        ),
        (
            deny_none(),
            &[
                "ALLOW User:alice * READ TOPIC PREFIXED a",
                "ALLOW User:bob * READ TOPIC PREFIXED ét",
            ],
            "User:alice h READ TOPIC éa",
            false,
        ),
    ];
    for (config, acls, question, expect) in cases {
        let authorizer = authorizer(config, acls);
        assert_eq!(
            ask(&authorizer, question),
            expect,
            "{question} with {acls:?}"
        );
    }
}

/// ACLs, principal, resource type, name, the operations it may do.
type OperationsCase<'a> = (
    &'a [&'a str],
    &'a str,
    ResourceType,
    &'a str,
    &'a [Operation],
);

#[test]
fn authorized_operations_are_kafkas_bit_fields() {
    let cases: &[OperationsCase] = &[
        (&[], "User:alice", ResourceType::Topic, "t", &[]),
        (
            &["ALLOW User:alice * READ TOPIC LITERAL t"],
            "User:alice",
            ResourceType::Topic,
            "t",
            &[Operation::Read, Operation::Describe],
        ),
        (
            &[
                "ALLOW User:alice * ALL TOPIC LITERAL t",
                "DENY User:alice * WRITE TOPIC LITERAL t",
            ],
            "User:alice",
            ResourceType::Topic,
            "t",
            &[
                Operation::Read,
                Operation::Create,
                Operation::Describe,
                Operation::Delete,
                Operation::Alter,
                Operation::DescribeConfigs,
                Operation::AlterConfigs,
            ],
        ),
        (
            &["ALLOW User:alice * ALL GROUP PREFIXED g"],
            "User:alice",
            ResourceType::Group,
            "g1",
            &[Operation::Read, Operation::Describe, Operation::Delete],
        ),
        (
            &["ALLOW User:alice * ALTER CLUSTER LITERAL kafka-cluster"],
            "User:alice",
            ResourceType::Cluster,
            "kafka-cluster",
            &[Operation::Alter, Operation::Describe],
        ),
        (
            &["ALLOW User:alice * WRITE TRANSACTIONAL_ID LITERAL tx"],
            "User:alice",
            ResourceType::TransactionalId,
            "tx",
            &[Operation::Describe, Operation::Write],
        ),
        (
            &["ALLOW User:alice * WRITE TRANSACTIONAL_ID LITERAL tx"],
            "User:bob",
            ResourceType::TransactionalId,
            "tx",
            &[],
        ),
    ];
    for (acls, principal, kind, name, expect) in cases {
        let authorizer = authorizer(AuthorizerConfig::default(), acls);
        let principal = Principal::parse(principal).unwrap();
        let resource = Resource { kind: *kind, name };
        let got = authorizer.authorized_operations(&principal, "h", resource);
        assert_eq!(
            bit_field(got),
            bit_field(expect.iter().copied()),
            "{acls:?} {principal} {kind}:{name}"
        );
    }
}

#[test]
fn write_on_any_topic_as_kip_679_decides() {
    let admin = AuthorizerConfig {
        super_users: vec![Principal::user("admin")],
        ..AuthorizerConfig::default()
    };
    // (config, ACLs, principal, answer)
    let cases: Vec<(AuthorizerConfig, &[&str], &str, bool)> = vec![
        (AuthorizerConfig::default(), &[], "User:alice", false),
        (ALLOW_EVERYONE, &[], "User:alice", true),
        (
            admin.clone(),
            &["DENY User:admin * ALL TOPIC LITERAL *"],
            "User:admin",
            true,
        ),
        (admin, &[], "User:alice", false),
        (
            AuthorizerConfig::default(),
            &["ALLOW User:alice * WRITE TOPIC LITERAL t"],
            "User:alice",
            true,
        ),
        (
            AuthorizerConfig::default(),
            &["ALLOW User:alice * WRITE TOPIC LITERAL t"],
            "User:bob",
            false,
        ),
        (
            AuthorizerConfig::default(),
            &["ALLOW User:* * ALL TOPIC PREFIXED t"],
            "User:bob",
            true,
        ),
        (
            AuthorizerConfig::default(),
            &["ALLOW User:alice * READ TOPIC LITERAL t"],
            "User:alice",
            false,
        ),
        (
            AuthorizerConfig::default(),
            &["ALLOW User:alice * WRITE GROUP LITERAL t"],
            "User:alice",
            false,
        ),
        (
            AuthorizerConfig::default(),
            &[
                "ALLOW User:alice * WRITE TOPIC LITERAL t",
                "DENY User:alice * WRITE TOPIC LITERAL t",
            ],
            "User:alice",
            false,
        ),
        (
            AuthorizerConfig::default(),
            &[
                "ALLOW User:alice * WRITE TOPIC LITERAL t",
                "DENY User:alice * WRITE TOPIC LITERAL u",
            ],
            "User:alice",
            true,
        ),
        (
            AuthorizerConfig::default(),
            &[
                "ALLOW User:alice * WRITE TOPIC PREFIXED ab",
                "DENY User:alice * ALL TOPIC PREFIXED a",
            ],
            "User:alice",
            false,
        ),
        (
            AuthorizerConfig::default(),
            &[
                "ALLOW User:alice * WRITE TOPIC LITERAL ab",
                "DENY User:alice * WRITE TOPIC PREFIXED abc",
            ],
            "User:alice",
            true,
        ),
        (
            AuthorizerConfig::default(),
            &["ALLOW User:alice * WRITE TOPIC LITERAL *"],
            "User:alice",
            true,
        ),
        (
            AuthorizerConfig::default(),
            &[
                "ALLOW User:alice * WRITE TOPIC LITERAL *",
                "DENY User:* * WRITE TOPIC LITERAL *",
            ],
            "User:alice",
            false,
        ),
    ];
    for (config, acls, principal, expect) in cases {
        let authorizer = authorizer(config, acls);
        let principal = Principal::parse(principal).unwrap();
        let got = authorizer.authorize_any(&principal, "h", Operation::Write, ResourceType::Topic);
        assert_eq!(got, expect, "{principal} with {acls:?}");
    }
}

#[test]
fn adding_removing_and_listing() {
    let mut authorizer = authorizer(
        AuthorizerConfig::default(),
        &[
            "ALLOW User:alice * READ TOPIC LITERAL t",
            "ALLOW User:alice * READ TOPIC PREFIXED t",
            "DENY User:bob * WRITE GROUP LITERAL g",
        ],
    );
    assert_eq!(
        authorizer.add(acl("ALLOW User:alice * READ TOPIC LITERAL t")),
        Ok(false)
    );
    assert_eq!(
        authorizer.add(AclBinding {
            name: "c".into(),
            ..acl("ALLOW User:alice * READ CLUSTER LITERAL kafka-cluster")
        }),
        Err(AclError::ClusterName("c".into()))
    );
    assert_eq!(authorizer.len(), 3);
    let topics = AclBindingFilter {
        resource_type: Some(ResourceType::Topic),
        ..AclBindingFilter::ANY
    };
    assert_eq!(authorizer.matching(&topics).len(), 2);
    let removed = authorizer.remove_matching(&AclBindingFilter {
        pattern: PatternFilter::Exact(PatternType::Prefixed),
        ..topics
    });
    assert_eq!(
        removed,
        vec![acl("ALLOW User:alice * READ TOPIC PREFIXED t")]
    );
    assert_eq!(authorizer.len(), 2);
    assert!(
        !ask(&authorizer, "User:alice h READ TOPIC t1"),
        "the prefix is gone"
    );
    assert!(ask(&authorizer, "User:alice h READ TOPIC t"));
    assert_eq!(authorizer.remove_matching(&AclBindingFilter::ANY).len(), 2);
    assert!(authorizer.is_empty());
    assert!(authorizer.matching(&AclBindingFilter::ANY).is_empty());
}

/// The rules applied to every ACL a MATCH filter selects for the resource, without the index:
/// what `authorize` must agree with.
fn scan(
    authorizer: &Authorizer,
    principal: &Principal,
    host: &str,
    operation: Operation,
    resource: Resource<'_>,
) -> bool {
    if authorizer.is_super_user(principal) {
        return true;
    }
    let filter = AclBindingFilter {
        resource_type: Some(resource.kind),
        name: Some(resource.name.to_string()),
        pattern: PatternFilter::Match,
        ..AclBindingFilter::ANY
    };
    let applying = authorizer.matching(&filter);
    if applying.is_empty() {
        return authorizer.allow_everyone_if_no_acl_found;
    }
    let mine = applying
        .iter()
        .filter(|acl| acl.applies_to(principal, host));
    let (deny, allow): (Vec<&&AclBinding>, Vec<&&AclBinding>) =
        mine.partition(|acl| acl.permission == Permission::Deny);
    !deny.iter().any(|acl| acl.operation.denies(operation))
        && allow.iter().any(|acl| acl.operation.allows(operation))
}

fn arb_acl() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
        prop::sample::select(vec!["a", "ab", "abc", "b", "*", "é", "éa"]),
        prop::sample::select(PatternType::ALL.to_vec()),
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(vec!["*", "h1", "h2"]),
        prop::sample::select(Operation::ALL.to_vec()),
        prop::sample::select(Permission::ALL.to_vec()),
    )
        .prop_map(
            |(resource_type, name, pattern, principal, host, operation, permission)| AclBinding {
                resource_type,
                name: name.to_string(),
                pattern,
                principal: Principal::parse(principal).unwrap(),
                host: host.to_string(),
                operation,
                permission,
            },
        )
}

type Question = (
    Principal,
    &'static str,
    Operation,
    ResourceType,
    &'static str,
);

fn arb_question() -> impl Strategy<Value = Question> {
    (
        prop::sample::select(vec!["alice", "bob", "carol"]),
        prop::sample::select(vec!["h1", "h2"]),
        prop::sample::select(Operation::ALL.to_vec()),
        prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
        prop::sample::select(vec!["a", "ab", "abc", "abd", "b", "é", "éa", "x"]),
    )
        .prop_map(|(user, host, operation, kind, name)| {
            (Principal::user(user), host, operation, kind, name)
        })
}

fn build(acls: &[AclBinding], allow_everyone_if_no_acl_found: bool) -> Authorizer {
    let mut authorizer = Authorizer::new(AuthorizerConfig {
        super_users: vec![Principal::user("carol")],
        allow_everyone_if_no_acl_found,
    });
    for acl in acls {
        authorizer.add(acl.clone()).unwrap();
    }
    authorizer
}

proptest! {
    #[test]
    fn the_index_agrees_with_a_scan_of_every_acl(
        acls in prop::collection::vec(arb_acl(), 0..12),
        allow_everyone in any::<bool>(),
        questions in prop::collection::vec(arb_question(), 1..16),
    ) {
        let authorizer = build(&acls, allow_everyone);
        for (principal, host, operation, kind, name) in questions {
            let resource = Resource { kind, name };
            prop_assert_eq!(
                authorizer.authorize(&principal, host, operation, resource),
                scan(&authorizer, &principal, host, operation, resource),
                "{} {} {} {}:{}", principal, host, operation, kind, name
            );
        }
    }

    #[test]
    fn adding_a_deny_never_grants(
        acls in prop::collection::vec(arb_acl(), 0..12),
        deny in arb_acl(),
        allow_everyone in any::<bool>(),
        questions in prop::collection::vec(arb_question(), 1..16),
    ) {
        let before = build(&acls, allow_everyone);
        let mut after = before.clone();
        after.add(AclBinding { permission: Permission::Deny, ..deny }).unwrap();
        for (principal, host, operation, kind, name) in questions {
            let resource = Resource { kind, name };
            prop_assert!(
                !after.authorize(&principal, host, operation, resource)
                    || before.authorize(&principal, host, operation, resource)
            );
            prop_assert!(
                !after.authorize_any(&principal, host, operation, kind)
                    || before.authorize_any(&principal, host, operation, kind)
            );
        }
    }

    #[test]
    fn removing_what_a_filter_matches_leaves_the_rest(
        acls in prop::collection::vec(arb_acl(), 0..12),
        kind in prop::sample::select(vec![None, Some(ResourceType::Topic)]),
        permission in prop::sample::select(vec![None, Some(Permission::Deny)]),
    ) {
        let mut authorizer = build(&acls, false);
        let filter = AclBindingFilter { resource_type: kind, permission, ..AclBindingFilter::ANY };
        let all: Vec<AclBinding> = authorizer.matching(&AclBindingFilter::ANY).into_iter().cloned().collect();
        let removed = authorizer.remove_matching(&filter);
        let kept: Vec<AclBinding> = authorizer.matching(&AclBindingFilter::ANY).into_iter().cloned().collect();
        prop_assert!(removed.iter().all(|b| filter.matches(b)));
        prop_assert!(kept.iter().all(|b| !filter.matches(b)));
        prop_assert_eq!(removed.len() + kept.len(), all.len());
        prop_assert_eq!(authorizer.len(), kept.len());
        // The prefix index follows removals: what is left still answers as a scan does.
        for name in ["a", "ab", "abc", "éa"] {
            let alice = Principal::user("alice");
            let resource = Resource::topic(name);
            prop_assert_eq!(
                authorizer.authorize(&alice, "h1", Operation::Read, resource),
                scan(&authorizer, &alice, "h1", Operation::Read, resource)
            );
        }
    }
}
