//! Per-partition transaction bookkeeping: which producers have a transaction open on this
//! partition (and from which offset), the last stable offset that follows from it, and the index
//! of aborted transactions that read_committed fetches must carry so clients drop aborted data.
//!
//! Everything here is derived from the log: data batches with the transactional bit open a
//! transaction for their producer, control batches (transaction markers) close it, as commit or
//! abort. Recovery replays batch headers through the same two calls, so the state after a restart
//! is the state before it.

use std::collections::BTreeMap;

use wire::batch::{build_batch, BatchView, ProducerFields};

/// Control record type of an abort marker (Kafka's `ControlRecordType.ABORT`).
const CONTROL_ABORT: i16 = 0;
/// Control record type of a commit marker.
const CONTROL_COMMIT: i16 = 1;
/// Batch attributes of a transaction marker: transactional and control.
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;

/// An aborted transaction as Fetch reports it: data from `producer_id` between `first_offset`
/// and the abort marker at `last_offset` must be skipped by read_committed consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct TxnIndex {
    /// Open transactions: producer id → offset of its first batch in this transaction.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions ordered by marker offset.
    aborted: Vec<AbortedTxn>,
}

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
}

impl TxnIndex {
    /// Accounts for a batch just appended (or read back during recovery) at `base_offset`, its
    /// final offset (an appended batch's own header may still hold the producer's).
    pub fn on_batch(&mut self, batch: &BatchView<'_>, base_offset: i64) -> Result<(), String> {
        if batch.is_control() {
            let marker = parse_marker(batch)?;
            self.on_marker(marker.producer_id, marker.commit, base_offset);
        } else if batch.is_transactional() {
            self.ongoing
                .entry(batch.producer_id())
                .or_insert(base_offset);
        }
        Ok(())
    }

    fn on_marker(&mut self, producer_id: i64, commit: bool, marker_offset: i64) {
        let Some(first_offset) = self.ongoing.remove(&producer_id) else {
            // A marker for a producer with no data here (it added the partition but never wrote,
            // or the data was deleted by retention): nothing to skip.
            return;
        };
        assert!(
            first_offset < marker_offset,
            "marker before its transaction's data"
        );
        if !commit {
            if let Some(last) = self.aborted.last() {
                assert!(
                    last.last_offset < marker_offset,
                    "aborted index out of order"
                );
            }
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: marker_offset,
            });
        }
    }

    /// The last stable offset: below the first offset of every open transaction.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Whether `producer_id` has a transaction open on this partition.
    pub fn is_ongoing(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// Aborted transactions overlapping `[from, to)`, the range a fetch returns.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // Entries are ordered by marker offset; one ending before `from` cannot overlap.
        let start = self.aborted.partition_point(|t| t.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|t| t.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below the log start offset.
    pub fn truncate_before(&mut self, log_start_offset: i64) {
        self.aborted.retain(|t| t.last_offset >= log_start_offset);
    }

    pub fn ongoing_count(&self) -> usize {
        self.ongoing.len()
    }

    /// Open transactions: producer id → offset of its first batch.
    pub fn ongoing(&self) -> &BTreeMap<i64, i64> {
        &self.ongoing
    }

    /// Aborted transactions, ordered by marker offset.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// The index as a snapshot saved it (`aborted` ordered by marker offset).
    pub fn from_parts(ongoing: BTreeMap<i64, i64>, aborted: Vec<AbortedTxn>) -> TxnIndex {
        assert!(
            aborted
                .windows(2)
                .all(|w| w[0].last_offset < w[1].last_offset),
            "aborted transactions ordered by marker offset"
        );
        TxnIndex { ongoing, aborted }
    }
}

/// Builds a transaction marker batch. Its record key is (version 0, type) and its value is
/// (version 0, coordinator epoch), as Kafka writes them.
pub fn marker_batch(marker: Marker, coordinator_epoch: i32, timestamp_ms: i64) -> Vec<u8> {
    let kind = if marker.commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let producer = ProducerFields {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        base_sequence: -1,
    };
    build_batch(
        &[(Some(&key), Some(&value))],
        timestamp_ms,
        producer,
        MARKER_ATTRIBUTES,
    )
}

/// Reads a control batch's marker.
pub fn parse_marker(batch: &BatchView<'_>) -> Result<Marker, String> {
    assert!(batch.is_control(), "parse_marker on a data batch");
    let records = batch
        .records()
        .map_err(|e| format!("control batch at {}: {e}", batch.base_offset()))?;
    let key = records
        .first()
        .and_then(|r| r.key)
        .ok_or_else(|| format!("control batch at {} has no key", batch.base_offset()))?;
    if key.len() < 4 {
        return Err(format!(
            "control batch at {} has a {}-byte key",
            batch.base_offset(),
            key.len()
        ));
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let commit = match kind {
        CONTROL_COMMIT => true,
        CONTROL_ABORT => false,
        other => {
            return Err(format!(
                "control batch at {} has unknown type {other}",
                batch.base_offset()
            ))
        }
    };
    Ok(Marker {
        producer_id: batch.producer_id(),
        producer_epoch: batch.producer_epoch(),
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::batch::assign_base_offset;

    /// A log described as steps: (producer, kind) at consecutive offsets, kind being 'd' for a
    /// transactional data batch, 'n' for non-transactional data, 'c'/'a' for commit/abort markers.
    fn replay(steps: &[(i64, char)]) -> TxnIndex {
        let mut index = TxnIndex::default();
        for (offset, (producer_id, kind)) in steps.iter().enumerate() {
            let producer = ProducerFields {
                producer_id: *producer_id,
                producer_epoch: 0,
                base_sequence: 0,
            };
            let mut bytes = match kind {
                'd' => build_batch(&[(None, Some(b"v"))], 0, producer, 0x10),
                'n' => build_batch(&[(None, Some(b"v"))], 0, ProducerFields::NONE, 0),
                'c' | 'a' => marker_batch(
                    Marker {
                        producer_id: *producer_id,
                        producer_epoch: 0,
                        commit: *kind == 'c',
                    },
                    0,
                    0,
                ),
                other => panic!("unknown step {other}"),
            };
            assign_base_offset(&mut bytes, offset as i64, 0);
            let view = BatchView::parse(&bytes).unwrap();
            index.on_batch(&view, view.base_offset()).unwrap();
        }
        index
    }

    #[test]
    fn last_stable_offset_stops_at_the_first_open_transaction() {
        let check = |steps: &[(i64, char)], high_watermark: i64, expect: i64| {
            assert_eq!(
                replay(steps).last_stable_offset(high_watermark),
                expect,
                "{steps:?}"
            );
        };
        check(&[], 0, 0);
        check(&[(-1, 'n'), (-1, 'n')], 2, 2);
        check(&[(-1, 'n'), (7, 'd'), (-1, 'n')], 3, 1);
        check(&[(7, 'd'), (8, 'd'), (7, 'c')], 3, 1);
        check(&[(7, 'd'), (8, 'd'), (7, 'c'), (8, 'a')], 4, 4);
        check(&[(7, 'd'), (7, 'd'), (7, 'a'), (7, 'd')], 4, 3);
    }

    #[test]
    fn aborted_index_lists_overlapping_aborts_only() {
        // offsets: 0 d7, 1 d8, 2 a7, 3 c8, 4 d9, 5 a9, 6 n
        let index = replay(&[
            (7, 'd'),
            (8, 'd'),
            (7, 'a'),
            (8, 'c'),
            (9, 'd'),
            (9, 'a'),
            (-1, 'n'),
        ]);
        let abort7 = AbortedTxn {
            producer_id: 7,
            first_offset: 0,
            last_offset: 2,
        };
        let abort9 = AbortedTxn {
            producer_id: 9,
            first_offset: 4,
            last_offset: 5,
        };
        let check = |from: i64, to: i64, expect: &[AbortedTxn]| {
            assert_eq!(index.aborted_in(from, to), expect, "[{from}, {to})");
        };
        check(0, 7, &[abort7, abort9]);
        check(0, 1, &[abort7]);
        check(3, 4, &[]);
        check(3, 5, &[abort9]);
        check(6, 7, &[]);
    }

    #[test]
    fn markers_round_trip_and_junk_is_refused() {
        let marker = Marker {
            producer_id: 42,
            producer_epoch: 3,
            commit: false,
        };
        let bytes = marker_batch(marker, 5, 1);
        let view = BatchView::parse(&bytes).unwrap();
        view.validate().unwrap();
        assert!(view.is_control() && view.is_transactional());
        assert_eq!(parse_marker(&view).unwrap(), marker);
        let junk = build_batch(&[(Some(b"x"), None)], 0, ProducerFields::NONE, 0x30);
        assert!(parse_marker(&BatchView::parse(&junk).unwrap()).is_err());
    }

    #[test]
    fn truncation_forgets_old_aborts() {
        let mut index = replay(&[(7, 'd'), (7, 'a'), (8, 'd'), (8, 'a')]);
        index.truncate_before(2);
        assert_eq!(
            index.aborted_in(0, 10),
            vec![AbortedTxn {
                producer_id: 8,
                first_offset: 2,
                last_offset: 3
            }]
        );
    }
}
