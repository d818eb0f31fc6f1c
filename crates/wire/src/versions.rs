//! The APIs and version ranges ferry advertises in ApiVersions. Only what is implemented is here:
//! a client picks the highest version both sides support, so advertising an unimplemented API or
//! version breaks real clients (see `../shared/design/DESIGN.md`).

use kafka_protocol::messages::ApiKey;

/// One advertised API and its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supported {
    pub api_key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(api_key: ApiKey, min: i16, max: i16) -> Supported {
    Supported { api_key, min, max }
}

/// Everything the broker answers: every version Kafka 3.9 answers of the APIs ferry implements,
/// versions older than the codec's read and written by `legacy` (Produce v0–2 and Fetch v0–3
/// with old message sets converted). Fetch stops at 12 because 13+ needs topic ids.
pub const SUPPORTED: &[Supported] = &[
    api(ApiKey::Produce, 0, 9),
    api(ApiKey::Fetch, 0, 12),
    api(ApiKey::ListOffsets, 0, 10),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 0, 7),
    api(ApiKey::DeleteTopics, 0, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeConfigs, 0, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeLogDirs, 0, 4),
    // Idempotent producers; transactional ids are refused until transactions land.
    api(ApiKey::InitProducerId, 0, 4),
    // The classic consumer group protocol.
    api(ApiKey::FindCoordinator, 0, 3),
    api(ApiKey::JoinGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 3),
    api(ApiKey::Heartbeat, 0, 3),
    api(ApiKey::LeaveGroup, 0, 3),
    api(ApiKey::OffsetCommit, 0, 8),
    api(ApiKey::OffsetFetch, 0, 7),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // Transactions (librdkafka uses v0 of the Add*ToTxn APIs; never EndTxn 5+ without KIP-890).
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 3),
    api(ApiKey::EndTxn, 0, 3),
    api(ApiKey::TxnOffsetCommit, 0, 3),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeTransactions, 0, 0),
    // SASL (KIP-43, KIP-152): answered by the server's connection during its SASL phase; the
    // broker answers ILLEGAL_SASL_STATE outside it.
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    // SCRAM credentials (KIP-554).
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    // ACLs (answered SECURITY_DISABLED unless `authorizer.enabled`); v0 through `legacy`.
    api(ApiKey::DescribeAcls, 0, 3),
    api(ApiKey::CreateAcls, 0, 3),
    api(ApiKey::DeleteAcls, 0, 3),
];

/// Whether requests of `api_key` go to the transaction coordinator (InitProducerId does only
/// when it carries a transactional id, which the caller checks).
pub fn is_txn_api(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::EndTxn
            | ApiKey::TxnOffsetCommit
            | ApiKey::ListTransactions
            | ApiKey::DescribeTransactions
    )
}

/// Whether requests of `api_key` go to the group coordinator (their responses may be delayed).
pub fn is_group_api(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::ListGroups
            | ApiKey::DescribeGroups
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete
    )
}

/// The advertised range for `api_key`, if ferry implements it.
/// The API's name as Kafka writes it (`Produce`, `OffsetCommit`), for traces and metric labels;
/// `Unknown` for an API ferry does not advertise.
pub fn name(api_key: ApiKey) -> &'static str {
    static NAMES: std::sync::OnceLock<Vec<(ApiKey, &'static str)>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        SUPPORTED
            .iter()
            .map(|s| {
                (
                    s.api_key,
                    &*Box::leak(format!("{:?}", s.api_key).into_boxed_str()),
                )
            })
            .collect()
    });
    names
        .iter()
        .find(|(key, _)| *key == api_key)
        .map_or("Unknown", |(_, name)| name)
}

pub fn supported(api_key: ApiKey) -> Option<Supported> {
    SUPPORTED.iter().copied().find(|s| s.api_key == api_key)
}

/// Whether `version` of `api_key` is one ferry answers.
pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    supported(api_key).is_some_and(|s| (s.min..=s.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_the_codec_or_its_stand_ins() {
        for s in SUPPORTED {
            let codec = s.api_key.valid_versions();
            for old in s.min..codec.min {
                assert!(
                    crate::legacy::stand_in(s.api_key, old).is_some(),
                    "{:?} v{old} is below the codec and has no stand-in",
                    s.api_key
                );
            }
            assert!(s.max <= codec.max, "{:?} max above codec", s.api_key);
            assert!(s.min <= s.max, "{:?} empty range", s.api_key);
        }
    }

    #[test]
    fn every_kafka_3_produce_version_ferry_handles_is_answered() {
        assert!(is_supported(ApiKey::Produce, 0));
        assert!(is_supported(ApiKey::OffsetCommit, 1));
        assert!(!is_supported(ApiKey::Produce, 10));
        assert_eq!(name(ApiKey::Produce), "Produce");
        assert_eq!(name(ApiKey::OffsetCommit), "OffsetCommit");
        assert_eq!(name(ApiKey::DescribeQuorum), "Unknown");
        assert!(is_supported(ApiKey::Produce, 3));
        assert!(!is_supported(ApiKey::Fetch, 13));
    }
}
