"""Topic administration through both admin clients: create (partitions, config overrides, every
error a single-node broker must give), describe configs, list, delete."""

import time

import confluent_kafka
import kafka
import kafka.errors
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import KafkaAdminClient

from support import confluent_consumer

TIMEOUT_S = 15
DEFAULT_RETENTION_MS = str(7 * 24 * 3600 * 1000)


def create_error(admin, new_topic):
    """Create one topic and return the KafkaError code it failed with."""
    future = admin.create_topics([new_topic], request_timeout=TIMEOUT_S)[new_topic.topic]
    with pytest.raises(KafkaException) as failure:
        future.result(TIMEOUT_S)
    return failure.value.args[0].code()


def topic_configs(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result(TIMEOUT_S)


def test_confluent_admin(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    futures = admin.create_topics(
        [
            NewTopic("orders", num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"}),
            NewTopic("events", num_partitions=1, replication_factor=1),
            NewTopic("defaulted"),  # -1/-1: broker defaults (num.partitions=1)
        ],
        request_timeout=TIMEOUT_S,
    )
    assert sorted(futures) == ["defaulted", "events", "orders"]
    for future in futures.values():
        assert future.result(TIMEOUT_S) is None

    metadata = admin.list_topics(timeout=TIMEOUT_S)
    assert {name: len(t.partitions) for name, t in metadata.topics.items()} == {
        "orders": 3,
        "events": 1,
        "defaulted": 1,
    }
    assert [(b.id, b.host, b.port) for b in metadata.brokers.values()] == [(1, "127.0.0.1", broker.port)]
    for topic in metadata.topics.values():
        assert topic.error is None
        for partition in topic.partitions.values():
            assert (partition.leader, partition.replicas, partition.isrs) == (1, [1], [1])

    configs = topic_configs(admin, "orders")
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    assert topic_configs(admin, "events")["retention.ms"].value == DEFAULT_RETENTION_MS

    broker_resource = ConfigResource(ResourceType.BROKER, "1")
    broker_configs = admin.describe_configs([broker_resource])[broker_resource].result(TIMEOUT_S)
    assert broker_configs["node.id"].value == "1"
    assert broker_configs["num.partitions"].value == "1"

    code = KafkaError
    assert create_error(admin, NewTopic("orders", 1, 1)) == code.TOPIC_ALREADY_EXISTS
    assert create_error(admin, NewTopic("replicated", 1, 3)) == code.INVALID_REPLICATION_FACTOR
    assert create_error(admin, NewTopic("bad name!", 1, 1)) == code.TOPIC_EXCEPTION
    assert create_error(admin, NewTopic("..", 1, 1)) == code.TOPIC_EXCEPTION
    assert create_error(admin, NewTopic("x" * 250, 1, 1)) == code.TOPIC_EXCEPTION
    assert create_error(admin, NewTopic("zero", 0, 1)) == code.INVALID_PARTITIONS
    assert create_error(admin, NewTopic("conf", 1, 1, config={"no.such.config": "1"})) == code.INVALID_CONFIG
    # None of the failed creations left a topic behind.
    assert sorted(admin.list_topics(timeout=TIMEOUT_S).topics) == ["defaulted", "events", "orders"]

    # validate_only checks without creating.
    future = admin.create_topics([NewTopic("dry", 2, 1)], validate_only=True)["dry"]
    assert future.result(TIMEOUT_S) is None
    assert "dry" not in admin.list_topics(timeout=TIMEOUT_S).topics

    futures = admin.delete_topics(["events", "defaulted"], request_timeout=TIMEOUT_S)
    for future in futures.values():
        assert future.result(TIMEOUT_S) is None
    assert sorted(admin.list_topics(timeout=TIMEOUT_S).topics) == ["orders"]

    with pytest.raises(KafkaException) as failure:
        admin.delete_topics(["events"], request_timeout=TIMEOUT_S)["events"].result(TIMEOUT_S)
    assert failure.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # Topics and their overrides survive a restart.
    broker.restart()
    metadata = admin.list_topics(timeout=TIMEOUT_S)
    assert {name: len(t.partitions) for name, t in metadata.topics.items()} == {"orders": 3}
    assert topic_configs(admin, "orders")["retention.ms"].value == "3600000"


def test_deleted_topic_is_recreated_empty(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("again", 1, 1)])["again"].result(TIMEOUT_S)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        producer.produce("again", value=b"%d" % i)
    assert producer.flush(TIMEOUT_S) == 0
    committer = confluent_consumer(broker.bootstrap, **{"group.id": "again-readers"})
    keep = [confluent_kafka.TopicPartition("again", 0, 7), confluent_kafka.TopicPartition("orders-kept", 0, 1)]
    producer.produce("orders-kept", value=b"x")
    assert producer.flush(TIMEOUT_S) == 0
    committer.commit(offsets=keep, asynchronous=False)
    committer.close()

    admin.delete_topics(["again"])["again"].result(TIMEOUT_S)
    admin.create_topics([NewTopic("again", 2, 1)])["again"].result(TIMEOUT_S)
    broker.restart()  # the offsets' tombstones are in the group log
    consumer = confluent_consumer(broker.bootstrap, **{"group.id": "again-readers"})
    try:
        for p in range(2):
            low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition("again", p), timeout=TIMEOUT_S
            )
            assert (low, high) == (0, 0), p
        # Kafka removes a deleted topic's committed offsets; the group's other offsets stay.
        committed = consumer.committed(
            [confluent_kafka.TopicPartition("again", 0), confluent_kafka.TopicPartition("orders-kept", 0)],
            timeout=TIMEOUT_S,
        )
        assert [tp.offset for tp in committed] == [confluent_kafka.OFFSET_INVALID, 1]
    finally:
        consumer.close()


@pytest.mark.parametrize("broker_settings", [{"auto.create.topics.enable": "false"}])
def test_auto_create_disabled(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    metadata = admin.list_topics(topic="missing", timeout=TIMEOUT_S)
    assert metadata.topics["missing"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000}
    )
    errors = []
    producer.produce("missing", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert len(errors) == 1
    assert errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT), errors[0]
    assert "missing" not in admin.list_topics(timeout=TIMEOUT_S).topics


def test_kafka_python_admin(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = admin.create_topics(
            {
                "kp-orders": {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "7200000"}},
                "kp-events": {"num_partitions": 5},
            }
        )
        assert sorted((t["name"], t["error_code"]) for t in result["topics"]) == [
            ("kp-events", 0),
            ("kp-orders", 0),
        ]
        assert sorted(admin.list_topics()) == ["kp-events", "kp-orders"]
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(["kp-orders", "kp-events"])}
        assert described == {"kp-orders": 2, "kp-events": 5}

        modified = admin.describe_configs([KpConfigResource("TOPIC", "kp-orders")])
        assert {k: v["value"] for k, v in modified["topic"]["kp-orders"].items()} == {"retention.ms": "7200000"}
        everything = admin.describe_configs([KpConfigResource("TOPIC", "kp-events")], config_filter="all")
        events = everything["topic"]["kp-events"]
        assert events["retention.ms"]["value"] == DEFAULT_RETENTION_MS
        assert events["retention.ms"]["config_source"] == "DEFAULT_CONFIG"

        with pytest.raises(kafka.errors.TopicAlreadyExistsError):
            admin.create_topics({"kp-orders": {"num_partitions": 1}})
        with pytest.raises(kafka.errors.InvalidReplicationFactorError):
            admin.create_topics({"kp-rf3": {"num_partitions": 1, "replication_factor": 3}})
        with pytest.raises(kafka.errors.InvalidTopicError):
            admin.create_topics({"bad/name": {"num_partitions": 1}})

        result = admin.delete_topics(["kp-events"])
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [("kp-events", 0)]
        assert admin.list_topics() == ["kp-orders"]
        with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
            admin.delete_topics(["kp-events"])
    finally:
        admin.close()


def test_create_partitions_with_both_admin_clients(broker):
    """CreatePartitions grows a topic (the new partitions take records, survive a restart, keep
    the old partitions' records) and refuses, with Kafka's errors, to shrink it, to keep its
    count, or to touch an unknown topic."""
    from confluent_kafka.admin import NewPartitions

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("grow", 2, 1)])["grow"].result(TIMEOUT_S)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce("grow", partition=1, value=b"before")
    assert producer.flush(TIMEOUT_S) == 0

    admin.create_partitions([NewPartitions("grow", 4)])["grow"].result(TIMEOUT_S)
    for request, code in [(NewPartitions("grow", 3), KafkaError.INVALID_PARTITIONS),
                          (NewPartitions("grow", 4), KafkaError.INVALID_PARTITIONS),
                          (NewPartitions("ghost", 2), KafkaError.UNKNOWN_TOPIC_OR_PART)]:
        with pytest.raises(KafkaException) as raised:
            admin.create_partitions([request])[request.topic].result(TIMEOUT_S)
        assert raised.value.args[0].code() == code, (request, raised.value)

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        from kafka.admin import NewPartitions as KpNewPartitions

        kp.create_partitions({"grow": KpNewPartitions(total_count=6)})
        with pytest.raises(kafka.errors.InvalidPartitionsError):
            kp.create_partitions({"grow": KpNewPartitions(total_count=6)})
    finally:
        kp.close()

    broker.restart()
    metadata = admin.list_topics(topic="grow", timeout=TIMEOUT_S)
    assert len(metadata.topics["grow"].partitions) == 6
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce("grow", partition=5, value=b"after")
    assert producer.flush(TIMEOUT_S) == 0
    consumer = confluent_consumer(broker.bootstrap)
    try:
        for partition, value in [(1, b"before"), (5, b"after")]:
            consumer.assign([confluent_kafka.TopicPartition("grow", partition, 0)])
            message = consumer.poll(TIMEOUT_S)
            assert message is not None and message.error() is None, message and message.error()
            assert message.value() == value
    finally:
        consumer.close()


def test_alter_topic_configs_with_both_admin_clients(broker):
    """IncrementalAlterConfigs and AlterConfigs change a topic's overrides: DescribeConfigs shows
    them, produce obeys them at once (max.message.bytes), they survive a restart, and bad values,
    unknown topics and broker resources are refused with Kafka's errors. An out-of-range
    segment.bytes, at CreateTopics too, is INVALID_CONFIG and the broker keeps serving."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("tuned", 1, 1, config={"retention.ms": "3600000"})])["tuned"].result(TIMEOUT_S)
    resource = ConfigResource(ResourceType.TOPIC, "tuned", incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT_S)
    configs = topic_configs(admin, "tuned")
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].value == DEFAULT_RETENTION_MS

    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    errors = []
    for value in [b"x" * 5000, b"small"]:  # one batch each
        producer.produce("tuned", value=value, on_delivery=lambda err, msg: errors.append(err))
        producer.flush(TIMEOUT_S)
    assert [e and e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE, None]

    bad = [
        ConfigResource(ResourceType.TOPIC, "tuned", incremental_configs=[
            ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)]),
        ConfigResource(ResourceType.TOPIC, "tuned", incremental_configs=[
            ConfigEntry("segment.bytes", "99999999999", incremental_operation=AlterConfigOpType.SET)]),
        ConfigResource(ResourceType.TOPIC, "tuned", incremental_configs=[
            ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)]),
        ConfigResource(ResourceType.TOPIC, "tuned", incremental_configs=[
            ConfigEntry("compression.type", "zstd", incremental_operation=AlterConfigOpType.SET)]),
        ConfigResource(ResourceType.TOPIC, "ghost", incremental_configs=[
            ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)]),
    ]
    expected = [KafkaError.INVALID_CONFIG] * 4 + [KafkaError.UNKNOWN_TOPIC_OR_PART]
    for resource, code in zip(bad, expected):
        with pytest.raises(KafkaException) as raised:
            admin.incremental_alter_configs([resource])[resource].result(TIMEOUT_S)
        assert raised.value.args[0].code() == code, (resource, raised.value)
    with pytest.raises(KafkaException) as raised:
        admin.create_topics([NewTopic("huge-segments", 1, 1, config={"segment.bytes": "99999999999"})])[
            "huge-segments"].result(TIMEOUT_S)
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # kafka-python's AlterConfigs (forced: it prefers IncrementalAlterConfigs when
        # advertised) re-sends the topic's other overrides, since AlterConfigs replaces them all.
        kp.alter_configs([KpConfigResource("TOPIC", "tuned", configs={"retention.ms": "7200000"})],
                         incremental=False)
    finally:
        kp.close()
    configs = topic_configs(admin, "tuned")
    assert (configs["retention.ms"].value, configs["max.message.bytes"].value) == ("7200000", "2000")
    # librdkafka's AlterConfigs sends only what it is given: the other override goes.
    resource = ConfigResource(ResourceType.TOPIC, "tuned", set_config={"retention.ms": "5400000"})
    admin.alter_configs([resource])[resource].result(TIMEOUT_S)
    broker.restart()
    configs = topic_configs(admin, "tuned")
    assert configs["retention.ms"].value == "5400000"
    assert configs["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value


def test_kafka_python_describe_log_dirs(broker):
    """DescribeLogDirs through kafka-python: ferry's one log directory, each partition's size
    (which grows with what is produced), and the file system's size and usable space (v4)."""
    topic = "logdirs"
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(10):
        producer.produce(topic, partition=0, value=b"x" * 1000)
    assert producer.flush(TIMEOUT_S) == 0
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        (per_broker,) = admin.describe_log_dirs()
        (log_dir,) = per_broker["log_dirs"]
        assert (log_dir["error_code"], log_dir["log_dir"]) == (0, str(broker.data_dir)), log_dir
        (topic_entry,) = [t for t in log_dir["topics"] if t["name"] == topic]
        (partition,) = topic_entry["partitions"]
        assert partition["partition_index"] == 0
        assert partition["partition_size"] > 10 * 1000, partition
        assert log_dir["total_bytes"] > log_dir["usable_bytes"] > 0, log_dir
        # The internal logs are described too, as Kafka describes its internal topics.
        (internal,) = admin.describe_log_dirs(topic_partitions={"__consumer_offsets": [0]})
        (log_dir,) = internal["log_dirs"]
        assert [t["name"] for t in log_dir["topics"]] == ["__consumer_offsets"], log_dir
        # Only what was asked for and is held: partition 5 does not exist.
        (only,) = admin.describe_log_dirs(topic_partitions={topic: [0, 5]})
        (log_dir,) = only["log_dirs"]
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in log_dir["topics"]] == [
            (topic, [0])
        ]
    finally:
        admin.close()


def test_topic_configs_kafka_users_set(broker):
    """message.timestamp.type=LogAppendTime stamps the broker's time on what is produced (the
    CreateTime control keeps the producer's); compression.type=producer and message.format.version
    are taken (the latter ignored, as Kafka 3.x does); a recompressing compression.type is refused
    with a clear INVALID_CONFIG, since ferry stores batches as the producer compressed them."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = [
        NewTopic("stamped", 1, 1, config={"message.timestamp.type": "LogAppendTime"}),
        NewTopic("created", 1, 1, config={"message.timestamp.type": "CreateTime",
                                           "compression.type": "producer",
                                           "message.format.version": "2.8-IV1"}),
    ]
    for future in admin.create_topics(topics).values():
        future.result(TIMEOUT_S)
    assert create_error(
        admin, NewTopic("recompressed", 1, 1, config={"compression.type": "gzip"})
    ) == KafkaError.INVALID_CONFIG

    old = 1_600_000_000_000
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    reports = []
    for topic in ("stamped", "created"):
        producer.produce(topic, value=b"v", timestamp=old, on_delivery=lambda e, m: reports.append(m))
    assert producer.flush(TIMEOUT_S) == 0
    before = int(time.time() * 1000) - 60_000
    stamped = {}
    for topic in ("stamped", "created"):
        consumer = confluent_consumer(broker.bootstrap)
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        msg = consumer.poll(TIMEOUT_S)
        assert msg is not None and msg.error() is None, msg and msg.error()
        stamped[topic] = msg.timestamp()
        consumer.close()
    kind, ts = stamped["stamped"]
    assert kind == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME and ts >= before, stamped
    assert stamped["created"] == (confluent_kafka.TIMESTAMP_CREATE_TIME, old)
    # The produce answer carries the broker's time too.
    by_topic = {m.topic(): m.timestamp() for m in reports}
    assert by_topic["stamped"] == stamped["stamped"], by_topic
    configs = topic_configs(admin, "stamped")
    assert configs["message.timestamp.type"].value == "LogAppendTime"


def test_manual_replica_assignment_on_the_one_node(broker):
    """CreateTopics with a replica assignment: each partition on this node (id 1) is what a single
    node can hold, and creates the topic; another broker id is INVALID_REPLICA_ASSIGNMENT."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("manual", num_partitions=3, replica_assignment=[[1], [1], [1]])])["manual"].result(
        TIMEOUT_S
    )
    metadata = admin.list_topics(timeout=TIMEOUT_S)
    assert sorted(metadata.topics["manual"].partitions) == [0, 1, 2]
    assert create_error(admin, NewTopic("elsewhere", num_partitions=2, replica_assignment=[[1], [2]])) == (
        KafkaError.INVALID_REPLICA_ASSIGNMENT
    )
    assert create_error(admin, NewTopic("twice", num_partitions=1, replica_assignment=[[1, 1]])) == (
        KafkaError.INVALID_REPLICA_ASSIGNMENT
    )
    # kafka-python sends the same request its own way.
    from kafka.admin import NewTopic as KpNewTopic

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        kp.create_topics([KpNewTopic("manual-kp", -1, -1, replica_assignments={0: [1], 1: [1]})])
        assert sorted(admin.list_topics(timeout=TIMEOUT_S).topics["manual-kp"].partitions) == [0, 1]
    finally:
        kp.close()


def test_authorized_operations_without_an_authorizer(broker):
    """Metadata v8+ and DescribeGroups v3+ report the operations the client may perform when
    asked; with no authorizer that is every operation of the resource, as Kafka reports it."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("authz", 1, 1)])["authz"].result(TIMEOUT_S)
    described = admin.describe_topics(
        TopicCollection(["authz"]), include_authorized_operations=True
    )["authz"].result(TIMEOUT_S)
    assert set(described.authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
        AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    }, described.authorized_operations
    cluster = admin.describe_cluster(include_authorized_operations=True).result(TIMEOUT_S)
    assert AclOperation.IDEMPOTENT_WRITE in cluster.authorized_operations, cluster
    assert AclOperation.READ not in cluster.authorized_operations
    # The control: not asked, not reported.
    plain = admin.describe_topics(TopicCollection(["authz"]))["authz"].result(TIMEOUT_S)
    assert not plain.authorized_operations
    committed = confluent_kafka.ConsumerGroupTopicPartitions(
        "authz-group", [confluent_kafka.TopicPartition("authz", 0, 1)]
    )
    admin.alter_consumer_group_offsets([committed])["authz-group"].result(TIMEOUT_S)
    group = admin.describe_consumer_groups(
        ["authz-group"], include_authorized_operations=True
    )["authz-group"].result(TIMEOUT_S)
    assert set(group.authorized_operations) == {
        AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE,
    }, group.authorized_operations


def test_dynamic_broker_configs(broker):
    """IncrementalAlterConfigs on the BROKER resource: the settings that are topic defaults
    change at run time (and show as DYNAMIC_BROKER_CONFIG on the broker and on topics without
    an override), survive a restart, and the settings fixed at start are refused."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    created = admin.create_topics(
        [NewTopic("dyn", 1, 1), NewTopic("dyn-own", 1, 1, config={"retention.ms": "5000"})]
    )
    for future in created.values():
        future.result(TIMEOUT_S)
    resource = ConfigResource(ResourceType.BROKER, "1")

    def broker_configs():
        return admin.describe_configs([resource])[resource].result(TIMEOUT_S)

    before = broker_configs()
    assert before["log.retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert not before["log.retention.ms"].is_read_only and before["node.id"].is_read_only

    def alter(name, value):
        change = ConfigResource(
            ResourceType.BROKER, "1",
            incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)],
        )
        return admin.incremental_alter_configs([change])[change]

    alter("log.retention.ms", "3600000").result(TIMEOUT_S)
    for check in range(2):
        after = broker_configs()
        assert after["log.retention.ms"].value == "3600000"
        assert after["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        dyn = topic_configs(admin, "dyn")["retention.ms"]
        assert (dyn.value, dyn.source) == ("3600000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
        own = topic_configs(admin, "dyn-own")["retention.ms"]
        assert (own.value, own.source) == ("5000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
        if check == 0:
            broker.restart()
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as refused:
        alter("num.partitions", "3").result(TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert "dynamically" in refused.value.args[0].str()
