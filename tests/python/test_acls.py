"""ACLs through both admin clients: confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient create, describe (with ANY and MATCH filters) and delete ACLs on a broker with
the authorizer on; the ACLs they create decide what a non-super client may do, after a crash
too; a malformed ACL is INVALID_REQUEST. Without an authorizer both clients get
SECURITY_DISABLED and everything else works (the control).

Every connection here is User:ANONYMOUS (PLAINTEXT): a test makes it the super user to create
ACLs, then restarts the broker without super users to see the ACLs at work."""

import confluent_kafka
import kafka.errors
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KpResourceType

TIMEOUT_S = 15
ANONYMOUS = "User:ANONYMOUS"
AUTHORIZING = {"authorizer.enabled": "true", "super.users": ANONYMOUS}


def produce_error(bootstrap, topic):
    """Produce one record with confluent-kafka; None, or the delivery's KafkaError code."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "message.timeout.ms": 10000, "enable.idempotence": False}
    )
    outcome = []
    producer.produce(topic, b"v", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(TIMEOUT_S)
    assert len(outcome) == 1, "no delivery report"
    return None if outcome[0] is None else outcome[0].code()


def confluent_binding(resource_type, name, pattern, operation, permission=AclPermissionType.ALLOW, principal=ANONYMOUS):
    return AclBinding(resource_type, name, pattern, principal, "*", operation, permission)


@pytest.mark.parametrize("broker_settings", [AUTHORIZING])
def test_confluent_admin_acls_decide_what_clients_may_do(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    grants = [
        confluent_binding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, AclOperation.ALTER),
        confluent_binding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, AclOperation.CREATE),
        confluent_binding(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, AclOperation.WRITE),
        confluent_binding(
            ResourceType.TOPIC, "orders-secret", ResourcePatternType.LITERAL, AclOperation.ALL, AclPermissionType.DENY
        ),
    ]
    for future in admin.create_acls(grants, request_timeout=TIMEOUT_S).values():
        assert future.result(TIMEOUT_S) is None
    # A principal without its type is the broker's INVALID_REQUEST.
    bad = confluent_binding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, AclOperation.READ, principal="alice")
    with pytest.raises(KafkaException) as failure:
        admin.create_acls([bad], request_timeout=TIMEOUT_S)[bad].result(TIMEOUT_S)
    assert failure.value.args[0].code() == KafkaError.INVALID_REQUEST

    # MATCH: the ACLs that apply to topic orders-eu (the prefixed WRITE), not orders-secret's.
    match = AclBindingFilter(
        ResourceType.TOPIC, "orders-eu", ResourcePatternType.MATCH, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    assert admin.describe_acls(match, request_timeout=TIMEOUT_S).result(TIMEOUT_S) == [grants[2]]
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    assert sorted(map(str, admin.describe_acls(everything).result(TIMEOUT_S))) == sorted(map(str, grants))

    # Without a super user, after a crash: the ACLs decide.
    broker.settings.pop("super.users")
    broker.restart(crash=True)
    assert produce_error(broker.bootstrap, "orders-eu") is None
    assert produce_error(broker.bootstrap, "orders-secret") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(broker.bootstrap, "invoices") == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # ALTER on the cluster lets the same admin delete; the grant goes, and so does the produce.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    prefixed = AclBindingFilter(
        ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    deleted = admin.delete_acls([prefixed], request_timeout=TIMEOUT_S)[prefixed].result(TIMEOUT_S)
    assert deleted == [grants[2]]
    assert produce_error(broker.bootstrap, "orders-eu") == KafkaError.TOPIC_AUTHORIZATION_FAILED


def kp_acl(resource_type, name, pattern, operation, permission=ACLPermissionType.ALLOW, principal=ANONYMOUS):
    return ACL(principal, "*", operation, permission, ResourcePattern(resource_type, name, pattern))


@pytest.mark.parametrize("broker_settings", [AUTHORIZING])
def test_kafka_python_admin_creates_describes_and_deletes(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    try:
        read = kp_acl(KpResourceType.TOPIC, "events", ACLResourcePatternType.LITERAL, ACLOperation.READ)
        group = kp_acl(KpResourceType.GROUP, "readers-", ACLResourcePatternType.PREFIXED, ACLOperation.READ)
        bad = kp_acl(KpResourceType.TOPIC, "events", ACLResourcePatternType.LITERAL, ACLOperation.READ, principal="bob")
        result = admin.create_acls([read, group, bad])
        assert result["succeeded"] == [read, group]
        assert result["failed"] == [kafka.errors.InvalidRequestError]

        anything = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        acls, error = admin.describe_acls(anything)
        assert error is kafka.errors.NoError
        assert sorted(map(repr, acls)) == sorted(map(repr, [read, group]))

        groups = ACLFilter(
            principal=ANONYMOUS,
            host="*",
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.GROUP, None, ACLResourcePatternType.ANY),
        )
        [(_, deleted, error)] = admin.delete_acls([groups])
        assert error is kafka.errors.NoError
        assert deleted == [group]
        acls, _ = admin.describe_acls(anything)
        assert acls == [read]
    finally:
        admin.close()


def test_without_an_authorizer_acl_apis_are_security_disabled(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    grant = confluent_binding(ResourceType.TOPIC, "events", ResourcePatternType.LITERAL, AclOperation.READ)
    with pytest.raises(KafkaException) as failure:
        admin.create_acls([grant], request_timeout=TIMEOUT_S)[grant].result(TIMEOUT_S)
    assert failure.value.args[0].code() == KafkaError.SECURITY_DISABLED
    # librdkafka drops DescribeAcls' top-level error code (its response parser reads it and
    # returns success), so confluent-kafka's describe_acls cannot show SECURITY_DISABLED;
    # kafka-python's does.
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_S * 1000)
    try:
        anything = ACLFilter(
            principal=None,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        with pytest.raises(kafka.errors.SecurityDisabledError):
            kp.describe_acls(anything)
        kp_grant = kp_acl(KpResourceType.TOPIC, "events", ACLResourcePatternType.LITERAL, ACLOperation.READ)
        assert kp.create_acls([kp_grant])["failed"] == [kafka.errors.SecurityDisabledError]
    finally:
        kp.close()
    # Control: everything else works as before.
    assert produce_error(broker.bootstrap, "events") is None
