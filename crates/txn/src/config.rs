//! The coordinator's limits and timers, named as Kafka names its broker settings.

/// Kafka `transaction.max.timeout.ms`: InitProducerId asking for a longer transaction timeout is
/// answered INVALID_TRANSACTION_TIMEOUT.
pub const TRANSACTION_MAX_TIMEOUT_MS_DEFAULT: i32 = 900_000;
/// Kafka `transactional.id.expiration.ms`: a transactional id with no transaction in flight and no
/// request for this long is forgotten (tombstoned).
pub const TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1_000;
/// Kafka `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often Kafka looks for
/// transactions past their timeout. ferry keeps exact deadlines but rounds them up to this grid,
/// so a timed-out transaction is aborted when Kafka's periodic scan would abort it.
pub const TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS_DEFAULT: u64 = 10_000;
/// Kafka `transaction.remove.expired.transaction.cleanup.interval.ms`: the grid expirations of
/// transactional ids are rounded up to.
pub const TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS_DEFAULT: u64 = 3_600_000;
/// Kafka `offset.metadata.max.bytes`: TxnOffsetCommit metadata longer than this is answered
/// OFFSET_METADATA_TOO_LARGE (the group coordinator applies the same limit to OffsetCommit).
pub const OFFSET_METADATA_MAX_BYTES_DEFAULT: usize = 4_096;
/// Kafka sets no limit on transactional ids; ferry puts a limit on everything that grows. A new
/// transactional id beyond it is answered POLICY_VIOLATION until old ones expire.
pub const TRANSACTIONAL_IDS_MAX_DEFAULT: usize = 100_000;
/// Partitions plus consumer groups in one transaction (Kafka sets no limit). Every
/// AddPartitionsToTxn rewrites the transaction's record with all of them, so the limit also
/// bounds a record's size. Beyond it: POLICY_VIOLATION.
pub const TRANSACTION_PARTITIONS_MAX_DEFAULT: usize = 10_000;
/// Offsets staged by TxnOffsetCommit in one transaction. Beyond it: POLICY_VIOLATION.
pub const TRANSACTION_OFFSETS_MAX_DEFAULT: usize = 10_000;

/// The settings of a [`TxnCoordinator`](crate::TxnCoordinator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnConfig {
    pub transaction_max_timeout_ms: i32,
    pub transactional_id_expiration_ms: u64,
    /// 1 (or 0) aborts a timed-out transaction at the first tick past its timeout.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// 1 (or 0) expires a transactional id at the first tick past its expiration.
    pub transaction_remove_expired_transaction_cleanup_interval_ms: u64,
    pub offset_metadata_max_bytes: usize,
    pub transactional_ids_max: usize,
    pub transaction_partitions_max: usize,
    pub transaction_offsets_max: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_max_timeout_ms: TRANSACTION_MAX_TIMEOUT_MS_DEFAULT,
            transactional_id_expiration_ms: TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT,
            transaction_abort_timed_out_transaction_cleanup_interval_ms:
                TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS_DEFAULT,
            transaction_remove_expired_transaction_cleanup_interval_ms:
                TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS_DEFAULT,
            offset_metadata_max_bytes: OFFSET_METADATA_MAX_BYTES_DEFAULT,
            transactional_ids_max: TRANSACTIONAL_IDS_MAX_DEFAULT,
            transaction_partitions_max: TRANSACTION_PARTITIONS_MAX_DEFAULT,
            transaction_offsets_max: TRANSACTION_OFFSETS_MAX_DEFAULT,
        }
    }
}

/// `t` rounded up to a multiple of `interval_ms`: the first periodic scan at or after `t`.
pub(crate) fn round_up(t: u64, interval_ms: u64) -> u64 {
    if interval_ms <= 1 {
        return t;
    }
    t.div_ceil(interval_ms).saturating_mul(interval_ms)
}

#[cfg(test)]
mod tests {
    use super::round_up;

    #[test]
    fn round_up_to_the_scan_grid() {
        assert_eq!(round_up(0, 10), 0);
        assert_eq!(round_up(1, 10), 10);
        assert_eq!(round_up(10, 10), 10);
        assert_eq!(round_up(11, 10), 20);
        assert_eq!(round_up(11, 1), 11);
        assert_eq!(round_up(11, 0), 11);
        assert_eq!(round_up(u64::MAX, 10), u64::MAX);
    }
}
