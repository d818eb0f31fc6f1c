//! The storage-neutral half of the sink: which partitions this consumer owns and under which
//! epoch, which records of a polled batch it may apply, and the positions a commit writes.
//! No I/O here, so every decision is a case in the tests below.

use std::collections::BTreeMap;

use client::consumer::next_offsets;
use client::Record;

use crate::backend::{Claim, Fence};

/// A partition this consumer claimed: its epoch, and the next offset not yet applied (`None`:
/// nothing applied yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owned {
    epoch: i64,
    next_offset: Option<i64>,
    /// A transaction on this partition failed and the consumer has not yet been seeked back
    /// to `next_offset`: until it is, later records would pass over the rolled-back ones, so
    /// none are applied.
    rewinding: bool,
}

/// The partitions this consumer owns, as the database last told it.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    owned: BTreeMap<(String, i32), Owned>,
}

/// What a batch becomes: the records to apply and the positions to write with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub apply: Vec<Record>,
    /// Sorted by (topic, partition): the order rows are locked in.
    pub fences: Vec<Fence>,
    /// Records of partitions this consumer does not own or is rewinding, or below the
    /// position already applied (left in librdkafka's queue from before a seek).
    pub dropped: usize,
}

impl Claims {
    /// Takes the partitions of an assignment, as claimed in the database.
    pub fn assign(&mut self, claims: &[Claim]) {
        for claim in claims {
            self.owned.insert(
                (claim.topic.clone(), claim.partition),
                Owned {
                    epoch: claim.epoch,
                    next_offset: claim.next_offset,
                    rewinding: false,
                },
            );
        }
    }

    /// Forgets every partition (an eager revocation takes them all).
    pub fn revoke_all(&mut self) {
        self.owned.clear();
    }

    /// Forgets one partition: the database says another consumer owns it now.
    pub fn lose(&mut self, topic: &str, partition: i32) {
        self.owned.remove(&(topic.to_string(), partition));
    }

    /// Marks the partitions of `fences` this consumer still owns as needing a seek back to
    /// their applied position (a transaction over them was rolled back).
    pub fn rewind(&mut self, fences: &[Fence]) {
        for fence in fences {
            if let Some(owned) = self.owned.get_mut(&(fence.topic.clone(), fence.partition)) {
                owned.rewinding = true;
            }
        }
    }

    /// Marks every owned partition as needing a seek back (claimed outside the rebalance
    /// callback, so librdkafka's fetch position is not the database's).
    pub fn rewind_all(&mut self) {
        for owned in self.owned.values_mut() {
            owned.rewinding = true;
        }
    }

    /// The partitions to seek back and where to: the next offset not applied (`None`: the
    /// beginning of the partition).
    pub fn rewinds(&self) -> Vec<(String, i32, Option<i64>)> {
        self.owned
            .iter()
            .filter(|(_, o)| o.rewinding)
            .map(|((t, p), o)| (t.clone(), *p, o.next_offset))
            .collect()
    }

    /// Notes that the consumer was seeked back to the applied position of `topic`/`partition`.
    pub fn rewound(&mut self, topic: &str, partition: i32) {
        if let Some(owned) = self.owned.get_mut(&(topic.to_string(), partition)) {
            owned.rewinding = false;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.owned.is_empty()
    }

    /// The owned partitions with their epochs, in order.
    pub fn epochs(&self) -> Vec<(String, i32, i64)> {
        self.owned
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, o.epoch))
            .collect()
    }

    /// Splits `batch` into the records to apply and those to drop, and the positions to write.
    ///
    /// A record at or below one already taken from the batch for its partition is dropped: a
    /// batch gathered over several polls (a commit window) can hold a partition's records
    /// twice when a rebalance inside the window gave the partition back with the database's
    /// position, from which librdkafka fetched them again.
    pub fn plan(&self, batch: Vec<Record>) -> Plan {
        let total = batch.len();
        let mut next: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
        let apply: Vec<Record> = batch
            .into_iter()
            .filter(|r| {
                let key = (r.topic.clone(), r.partition);
                let Some(owned) = self.owned.get(&key).filter(|o| !o.rewinding) else {
                    return false;
                };
                let next = next.entry(key).or_insert(owned.next_offset);
                if next.is_some_and(|next| r.offset < next) {
                    return false;
                }
                *next = Some(r.offset + 1);
                true
            })
            .collect();
        let fences = next_offsets(&apply)
            .into_iter()
            .map(|((topic, partition), next_offset)| {
                let epoch = self.owned[&(topic.clone(), partition)].epoch;
                Fence {
                    topic,
                    partition,
                    epoch,
                    next_offset,
                }
            })
            .collect();
        Plan {
            dropped: total - apply.len(),
            apply,
            fences,
        }
    }

    /// Notes that `fences` were committed.
    pub fn committed(&mut self, fences: &[Fence]) {
        for fence in fences {
            if let Some(owned) = self.owned.get_mut(&(fence.topic.clone(), fence.partition)) {
                if owned.epoch == fence.epoch {
                    owned.next_offset = Some(fence.next_offset);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    /// `claims`: (partition, epoch, next offset); `batch`: (partition, offset).
    fn check(claims: &[(i32, i64, Option<i64>)], batch: &[(i32, i64)], expect: Expect) {
        let mut state = Claims::default();
        let claims: Vec<Claim> = claims
            .iter()
            .map(|&(partition, epoch, next_offset)| Claim {
                topic: "t".into(),
                partition,
                epoch,
                next_offset,
            })
            .collect();
        state.assign(&claims);
        let plan = state.plan(batch.iter().map(|&(p, o)| record(p, o)).collect());
        let apply: Vec<String> = plan
            .apply
            .iter()
            .map(|r| format!("{}@{}", r.partition, r.offset))
            .collect();
        let fences: Vec<String> = plan
            .fences
            .iter()
            .map(|f| format!("{}:e{}->{}", f.partition, f.epoch, f.next_offset))
            .collect();
        expect.assert_eq(&format!(
            "apply [{}] fences [{}] dropped {}",
            apply.join(" "),
            fences.join(" "),
            plan.dropped
        ));
    }

    #[test]
    fn plans() {
        check(&[], &[(0, 0)], expect!["apply [] fences [] dropped 1"]);
        check(
            &[(0, 3, None)],
            &[(0, 0), (0, 1)],
            expect!["apply [0@0 0@1] fences [0:e3->2] dropped 0"],
        );
        // A partition not owned is dropped; the owned one is applied.
        check(
            &[(1, 2, Some(10))],
            &[(0, 5), (1, 10), (1, 12)],
            expect!["apply [1@10 1@12] fences [1:e2->13] dropped 1"],
        );
        // Records below the applied position (queued before a seek) are dropped.
        check(
            &[(0, 1, Some(5))],
            &[(0, 3), (0, 4), (0, 5)],
            expect!["apply [0@5] fences [0:e1->6] dropped 2"],
        );
        check(
            &[(0, 1, Some(5))],
            &[(0, 3)],
            expect!["apply [] fences [] dropped 1"],
        );
        // Records fetched again inside one window (a rebalance gave the partition back with
        // the database's position) are applied once.
        check(
            &[(0, 1, Some(5))],
            &[(0, 5), (0, 6), (0, 5), (0, 6), (0, 7)],
            expect!["apply [0@5 0@6 0@7] fences [0:e1->8] dropped 2"],
        );
        check(
            &[(0, 1, None)],
            &[(0, 0), (0, 2), (0, 0), (0, 2), (0, 3)],
            expect!["apply [0@0 0@2 0@3] fences [0:e1->4] dropped 2"],
        );
        // Fences come sorted by partition whatever the batch order.
        check(
            &[(0, 1, None), (2, 4, None)],
            &[(2, 0), (0, 7)],
            expect!["apply [2@0 0@7] fences [0:e1->8 2:e4->1] dropped 0"],
        );
    }

    #[test]
    fn commits_move_positions_and_lost_partitions_drop() {
        let mut claims = Claims::default();
        claims.assign(&[Claim {
            topic: "t".into(),
            partition: 0,
            epoch: 1,
            next_offset: None,
        }]);
        let plan = claims.plan(vec![record(0, 0), record(0, 1)]);
        claims.committed(&plan.fences);
        assert_eq!(claims.plan(vec![record(0, 1)]).apply.len(), 0);
        assert_eq!(claims.plan(vec![record(0, 2)]).apply.len(), 1);
        // A rolled-back transaction: nothing of the partition applies until the seek back to
        // the committed position.
        claims.rewind(&claims.plan(vec![record(0, 2)]).fences);
        assert_eq!(claims.rewinds(), vec![("t".to_string(), 0, Some(2))]);
        assert_eq!(claims.plan(vec![record(0, 2), record(0, 3)]).dropped, 2);
        claims.rewound("t", 0);
        assert!(claims.rewinds().is_empty());
        assert_eq!(claims.plan(vec![record(0, 2)]).apply.len(), 1);
        claims.lose("t", 0);
        assert!(claims.is_empty());
        assert_eq!(claims.plan(vec![record(0, 2)]).dropped, 1);
    }
}
