//! The states of a transactional id, with Kafka's names and record ids.
//!
//! Kafka also has `Dead` (a transactional id whose tombstone is being written) and
//! `PrepareEpochFence` (an epoch bump whose PrepareAbort is being written). Both are Kafka's
//! "pending" states, held only while a log append is in flight. ferry applies a transition at once
//! and holds the responses until its records are durable, so it never holds them: an expired id is
//! removed with its tombstone, and a fence goes straight from Ongoing to PrepareAbort with the
//! bumped epoch. Their names are still known to ListTransactions' state filter.

/// Where a transactional id's transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction: after InitProducerId.
    Empty,
    /// Partitions or groups were added; the producer is writing.
    Ongoing,
    /// EndTxn(commit) is durable; commit markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a fence or a timeout is durable; abort markers are being written.
    PrepareAbort,
    /// Every commit marker is durable.
    CompleteCommit,
    /// Every abort marker is durable.
    CompleteAbort,
}

/// Kafka's state names ferry never holds (see the module comment); ListTransactions accepts them
/// as known filters that match nothing.
pub(crate) const TRANSIENT_STATE_NAMES: [&str; 2] = ["Dead", "PrepareEpochFence"];

impl TxnState {
    pub const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    /// Kafka's name, as DescribeTransactions and ListTransactions show it.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Kafka's state id, stored in the transaction record.
    pub(crate) fn id(self) -> u8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Markers are being written: the transaction has an outcome but has not finished.
    pub fn is_completing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// A transaction is open or completing: it holds partitions (and staged offsets).
    pub fn in_flight(self) -> bool {
        self == TxnState::Ongoing || self.is_completing()
    }

    /// Kafka's `isExpirationAllowed`: nothing in flight, so the id may expire when idle.
    pub(crate) fn may_expire(self) -> bool {
        !self.in_flight()
    }

    /// The outcome of a transaction in this state, if it has one.
    pub fn outcome(self) -> Option<bool> {
        match self {
            TxnState::PrepareCommit | TxnState::CompleteCommit => Some(true),
            TxnState::PrepareAbort | TxnState::CompleteAbort => Some(false),
            TxnState::Empty | TxnState::Ongoing => None,
        }
    }

    /// Kafka's `validPreviousStates`, with PrepareEpochFence folded into Ongoing → PrepareAbort.
    pub fn may_follow(self, previous: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(previous, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(previous, Empty | Ongoing | CompleteCommit | CompleteAbort),
            PrepareCommit | PrepareAbort => previous == Ongoing,
            CompleteCommit => previous == PrepareCommit,
            CompleteAbort => previous == PrepareAbort,
        }
    }
}

/// Kafka's `isEpochExhausted`: the last epochs are kept back so that the coordinator can always
/// bump once more to fence a producer.
pub(crate) fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_name(s.as_str()), Some(s));
            assert_eq!(TxnState::from_id(s.id()), Some(s));
        }
        assert_eq!(TxnState::from_id(6), None);
        assert_eq!(TxnState::from_id(7), None);
        assert_eq!(TxnState::from_name("Dead"), None);
    }
}
