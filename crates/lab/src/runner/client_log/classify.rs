//! Which librdkafka messages a fault profile explains: the lab's table of message kinds and of
//! the profiles that cause them, as a pure function with its cases as data.

use crate::profile::Profile;

/// Whether a librdkafka message is the effect of the run's faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expectation {
    /// The profile explains it.
    Expected {
        kind: &'static str,
        why: &'static str,
    },
    /// Nothing in the profile explains it; `kind` if the lab knows the message at all.
    Unexpected { kind: Option<&'static str> },
}

/// The kinds of message the lab knows: any of the patterns in a message makes it that kind.
const KINDS: &[(&str, &[&str])] = &[
    (
        "FencedInstanceId",
        &["FencedInstanceId", "Static consumer fenced"],
    ),
    (
        "_FENCED",
        &["_FENCED", "fenced by a newer instance", "ProducerFenced"],
    ),
    (
        "InvalidProducerEpoch",
        &["InvalidProducerEpoch", "operation with an old epoch"],
    ),
    (
        "AllBrokersDown",
        &["AllBrokersDown", "_ALL_BROKERS_DOWN", "brokers are down"],
    ),
    (
        "BrokerTransportFailure",
        &[
            "BrokerTransportFailure",
            "_TRANSPORT",
            "Broker transport failure",
            "Connection refused",
            "Disconnected",
        ],
    ),
    (
        "ConcurrentTransactions",
        &[
            "ConcurrentTransactions",
            "another concurrent operation on the same transaction",
        ],
    ),
];

/// The proxy's profiles: each cuts, doubles or holds frames, so connections fail and time out.
const PROXY: &[Profile] = &[
    Profile::LostAcks,
    Profile::LossyNetwork,
    Profile::DuplicatingNetwork,
    Profile::SlowNetwork,
];

/// Which profiles explain which kinds, and how; the first row that fits wins.
const EXPECTED: &[(&str, &[Profile], &str)] = &[
    (
        "FencedInstanceId",
        &[Profile::ConsumerCrash],
        "a crashed consumer's successor took over",
    ),
    (
        "FencedInstanceId",
        &[
            Profile::ProducerCrash,
            Profile::DuplicatingNetwork,
            Profile::Rebalance,
        ],
        "another member took over its group.instance.id",
    ),
    (
        "_FENCED",
        &[Profile::ProducerCrash],
        "a crashed producer's successor took over",
    ),
    (
        "_FENCED",
        &[Profile::DuplicatingNetwork],
        "a duplicated request bumped the producer epoch",
    ),
    (
        "InvalidProducerEpoch",
        &[Profile::ProducerCrash],
        "a crashed producer's successor took over",
    ),
    (
        "InvalidProducerEpoch",
        &[Profile::DuplicatingNetwork],
        "a duplicated request bumped the producer epoch",
    ),
    (
        "_FENCED",
        &[Profile::ConsumerCrash, Profile::Rebalance],
        "a newer instance took over its transactional id",
    ),
    (
        "AllBrokersDown",
        &[Profile::BrokerKill],
        "the broker was killed",
    ),
    ("AllBrokersDown", PROXY, "the proxy broke connections"),
    (
        "BrokerTransportFailure",
        &[Profile::BrokerKill],
        "the broker was killed",
    ),
    (
        "BrokerTransportFailure",
        PROXY,
        "the proxy broke connections",
    ),
    (
        "ConcurrentTransactions",
        &[Profile::ProducerCrash],
        "the successor's init waited for the crashed producer's transaction to abort",
    ),
    (
        "ConcurrentTransactions",
        &[Profile::DuplicatingNetwork],
        "a duplicated transaction request met its original",
    ),
];

/// Whether `message`, from a client of a run under `profile`, is the effect of its faults.
pub(crate) fn classify(profile: Profile, message: &str) -> Expectation {
    let kind = KINDS
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| message.contains(p)))
        .map(|&(kind, _)| kind);
    let Some(kind) = kind else {
        return Expectation::Unexpected { kind: None };
    };
    EXPECTED
        .iter()
        .find(|(k, profiles, _)| *k == kind && profiles.contains(&profile))
        .map_or(
            Expectation::Unexpected { kind: Some(kind) },
            |&(_, _, why)| Expectation::Expected { kind, why },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(profile: Profile, message: &str, expect: &str) {
        let got = match classify(profile, message) {
            Expectation::Expected { kind, why } => format!("expected {kind}: {why}"),
            Expectation::Unexpected { kind: Some(kind) } => format!("unexpected {kind}"),
            Expectation::Unexpected { kind: None } => "unexpected".to_string(),
        };
        assert_eq!(got, expect, "{profile:?}: {message}");
    }

    const FENCED_INSTANCE: &str = "Global error: FencedInstanceId (Broker: Static consumer \
        fenced by other consumer with same group.instance.id): JoinGroup failed";
    const TXN_FENCED: &str = "TXNERR [thrd:main]: Fatal transaction error: Failed to add \
        partitions to transaction: Local: This instance has been fenced by a newer instance \
        (_FENCED)";
    const FATAL_FENCED: &str = "FATAL [thrd:main]: Fatal error: Local: This instance has been \
        fenced by a newer instance: Failed to add partitions to transaction";
    const ALL_DOWN: &str =
        "Global error: AllBrokersDown (Local: All broker connections are down): 1/1 brokers are down";
    const REFUSED: &str = "FAIL [thrd:127.0.0.1:9092/1]: Connect to ipv4#127.0.0.1:9092 \
        failed: Connection refused (after 0ms in state CONNECT)";
    const OLD_EPOCH: &str = "ADDPARTS [thrd:main]: TxnCoordinator/1: Failed to add partition \
        \"t\" [0] to transaction: Broker: Producer attempted an operation with an old epoch";
    const CONCURRENT: &str = "GETPID [thrd:main]: Failed to acquire transactional PID from \
        broker TxnCoordinator/1: Broker: Producer attempted to update a transaction while \
        another concurrent operation on the same transaction was ongoing: retrying";
    const GETPID_TRANSPORT: &str = "GETPID [thrd:main]: Failed to acquire transactional PID \
        from broker TxnCoordinator/1: Local: Broker transport failure: retrying";
    const OTHER: &str = "Global error: Fail (Local: Failed to decode): decode failed";

    #[test]
    fn expectations_as_data() {
        use Profile::*;
        let fenced_instance = "expected FencedInstanceId: a crashed consumer's successor took over";
        check(ConsumerCrash, FENCED_INSTANCE, fenced_instance);
        check(
            Rebalance,
            FENCED_INSTANCE,
            "expected FencedInstanceId: another member took over its group.instance.id",
        );
        check(None, FENCED_INSTANCE, "unexpected FencedInstanceId");
        check(BrokerKill, FENCED_INSTANCE, "unexpected FencedInstanceId");
        let crashed = "expected _FENCED: a crashed producer's successor took over";
        check(ProducerCrash, TXN_FENCED, crashed);
        check(ProducerCrash, FATAL_FENCED, crashed);
        check(
            DuplicatingNetwork,
            TXN_FENCED,
            "expected _FENCED: a duplicated request bumped the producer epoch",
        );
        check(LossyNetwork, TXN_FENCED, "unexpected _FENCED");
        check(None, FATAL_FENCED, "unexpected _FENCED");
        check(
            BrokerKill,
            ALL_DOWN,
            "expected AllBrokersDown: the broker was killed",
        );
        check(
            LostAcks,
            ALL_DOWN,
            "expected AllBrokersDown: the proxy broke connections",
        );
        check(
            SlowNetwork,
            ALL_DOWN,
            "expected AllBrokersDown: the proxy broke connections",
        );
        check(ConsumerCrash, ALL_DOWN, "unexpected AllBrokersDown");
        check(None, ALL_DOWN, "unexpected AllBrokersDown");
        check(
            BrokerKill,
            REFUSED,
            "expected BrokerTransportFailure: the broker was killed",
        );
        check(Rebalance, REFUSED, "unexpected BrokerTransportFailure");
        // Seen on the terminal in a thorough run: the transactional producer's init retried.
        check(
            LossyNetwork,
            GETPID_TRANSPORT,
            "expected BrokerTransportFailure: the proxy broke connections",
        );
        check(None, GETPID_TRANSPORT, "unexpected BrokerTransportFailure");
        check(
            ProducerCrash,
            CONCURRENT,
            "expected ConcurrentTransactions: the successor's init waited for the crashed \
             producer's transaction to abort",
        );
        check(None, CONCURRENT, "unexpected ConcurrentTransactions");
        check(
            DuplicatingNetwork,
            OLD_EPOCH,
            "expected InvalidProducerEpoch: a duplicated request bumped the producer epoch",
        );
        check(SlowNetwork, OLD_EPOCH, "unexpected InvalidProducerEpoch");
        check(BrokerKill, OTHER, "unexpected");
        check(None, OTHER, "unexpected");
    }
}
