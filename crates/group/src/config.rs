//! The coordinator's limits and delays, named as Kafka names its broker settings.

/// Kafka `group.min.session.timeout.ms`.
pub const GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT: i32 = 6_000;
/// Kafka `group.max.session.timeout.ms`.
pub const GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT: i32 = 1_800_000;
/// Kafka `group.initial.rebalance.delay.ms`.
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: i32 = 3_000;
/// Kafka `group.max.size` is unlimited by default; ferry puts a limit on everything that grows, and
/// ten thousand members in one classic group is far past any real deployment.
pub const GROUP_MAX_SIZE_DEFAULT: usize = 10_000;
/// Kafka `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_MAX_BYTES_DEFAULT: usize = 4_096;
/// Kafka `offsets.retention.minutes` (7 days), in milliseconds: how long committed offsets outlive
/// their group's last member, or their last commit for a group without members.
pub const OFFSETS_RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1_000;
/// Kafka `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 600_000;
/// Kafka's `NewMemberJoinTimeoutMs`: a member whose first JoinGroup is parked cannot heartbeat,
/// so it is dropped if the rebalance it waits for takes longer than this; it will retry if alive.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 5 * 60 * 1_000;

/// The settings of a [`GroupCoordinator`](crate::GroupCoordinator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// A JoinGroup with a shorter session timeout is answered INVALID_SESSION_TIMEOUT.
    pub group_min_session_timeout_ms: i32,
    /// A JoinGroup with a longer session timeout is answered INVALID_SESSION_TIMEOUT.
    pub group_max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members, extended by the same
    /// delay (up to the rebalance timeout) while new members keep arriving.
    pub group_initial_rebalance_delay_ms: i32,
    /// Members beyond this are answered GROUP_MAX_SIZE_REACHED.
    pub group_max_size: usize,
    /// Commits with longer metadata are answered OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// Offsets expire this long after their group became Empty (or, without group membership,
    /// after their commit); an Empty group left without offsets is deleted.
    pub offsets_retention_ms: u64,
    /// How often the coordinator sweeps for expired offsets.
    pub offsets_retention_check_interval_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            group_min_session_timeout_ms: GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT,
            group_max_session_timeout_ms: GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
            group_initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            group_max_size: GROUP_MAX_SIZE_DEFAULT,
            offset_metadata_max_bytes: OFFSET_METADATA_MAX_BYTES_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MS_DEFAULT,
            offsets_retention_check_interval_ms: OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}
