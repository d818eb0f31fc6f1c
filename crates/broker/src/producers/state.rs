//! The producer state of one partition, as Kafka's `ProducerStateManager` keeps it: per producer
//! id, the producer epoch and the sequence ranges of its last five batches with the offsets they
//! were written at. [`ProducerStateTable::check`] judges incoming batches before they are
//! appended; [`ProducerStateTable::record`] remembers them afterwards. Pure logic: no I/O, time
//! passed in.
//!
//! The rules (Kafka 3.x `ProducerAppendInfo`, KIP-98, KIP-360):
//! - a batch whose epoch and sequence range equal one of the producer's last five batches is a
//!   retry of a write that happened: success with the original offsets, nothing written;
//! - an epoch older than the known one: INVALID_PRODUCER_EPOCH (the producer was fenced);
//! - a newer epoch must start at sequence 0 (librdkafka bumps its own epoch after some errors);
//! - the same epoch must continue at last sequence + 1 (wrapping after `i32::MAX`), otherwise
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - an unknown producer id (never seen, or expired) may start at any sequence. Kafka stopped
//!   answering UNKNOWN_PRODUCER_ID to produce requests with KIP-360 (2.5): it keeps producer state
//!   after the producer's batches left the log and accepts whatever comes once it is gone.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use wire::batch::BatchView;

/// How many of a producer's most recent batches are kept for duplicate detection. Clients keep
/// at most this many requests in flight per partition (`max.in.flight.requests.per.connection`).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Upper bound on producer ids tracked per partition. Past it, the producer idle longest is
/// forgotten (as if it had expired) to make room, with a WARN.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 100_000;

/// What the state table needs of a v2 batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_offset_delta: i32,
    pub max_timestamp_ms: i64,
}

impl BatchHeader {
    pub fn of(view: &BatchView<'_>) -> BatchHeader {
        BatchHeader {
            producer_id: view.producer_id(),
            producer_epoch: view.producer_epoch(),
            base_sequence: view.base_sequence(),
            last_offset_delta: view.last_offset_delta(),
            max_timestamp_ms: view.max_timestamp(),
        }
    }

    /// Whether the batch comes from an idempotent (or transactional) producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the batch's last record: sequences wrap from `i32::MAX` to 0.
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + delta`, wrapping from `i32::MAX` to 0 as Kafka does.
pub fn add_sequence(sequence: i32, delta: i32) -> i32 {
    ((i64::from(sequence) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// One remembered batch: its sequence range and where it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset_delta: i32,
}

impl BatchMetadata {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
}

/// What the partition knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_epoch: i16,
    /// Oldest first; never empty, at most [`BATCHES_PER_PRODUCER`]; all of `producer_epoch`.
    pub batches: Vec<BatchMetadata>,
    /// When the producer last wrote (the broker's clock at the append; on a rebuild from the
    /// log, the batch's max timestamp). Idle producers expire from it.
    pub last_timestamp_ms: i64,
}

impl ProducerEntry {
    fn last_sequence(&self) -> i32 {
        self.batches
            .last()
            .expect("an entry holds at least one batch")
            .last_sequence
    }

    /// Kafka's `findDuplicateBatch`: the same epoch and exactly the same sequence range.
    fn find_duplicate(&self, header: &BatchHeader) -> Option<BatchMetadata> {
        if header.producer_epoch != self.producer_epoch {
            return None;
        }
        let last_sequence = header.last_sequence();
        self.batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last_sequence)
            .copied()
    }

    fn add_batch(&mut self, epoch: i16, batch: BatchMetadata, timestamp_ms: i64) {
        if epoch != self.producer_epoch {
            self.batches.clear();
            self.producer_epoch = epoch;
        }
        if self.batches.len() == BATCHES_PER_PRODUCER {
            self.batches.remove(0);
        }
        self.batches.push(batch);
        self.last_timestamp_ms = self.last_timestamp_ms.max(timestamp_ms);
    }
}

/// The judgement on a produce request's batches for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write them.
    Append,
    /// A retry of a batch already written: answer success with its original offsets.
    Duplicate(BatchMetadata),
    /// The producer's epoch is older than the partition's: INVALID_PRODUCER_EPOCH.
    Fenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// A sequence that does not continue the producer's: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        expected: i32,
    },
    /// A producer id without a sequence number: INVALID_RECORD, as Kafka's validator says.
    MissingSequence { producer_id: i64 },
}

impl Verdict {
    /// The Kafka error to answer, if the batches are refused.
    pub fn error(&self) -> Option<ResponseError> {
        match self {
            Verdict::Append | Verdict::Duplicate(_) => None,
            Verdict::Fenced { .. } => Some(ResponseError::InvalidProducerEpoch),
            Verdict::OutOfOrder { .. } => Some(ResponseError::OutOfOrderSequenceNumber),
            Verdict::MissingSequence { .. } => Some(ResponseError::InvalidRecord),
        }
    }

    /// Why the batches are refused, in words for the client (`error_message`) and the traces.
    pub fn reason(&self) -> Option<String> {
        match *self {
            Verdict::Append | Verdict::Duplicate(_) => None,
            Verdict::Fenced { producer_id, epoch, current_epoch } => Some(format!(
                "producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}"
            )),
            Verdict::OutOfOrder { producer_id, epoch, sequence, expected } => Some(format!(
                "producer {producer_id} epoch {epoch}: sequence {sequence}, expected {expected}"
            )),
            Verdict::MissingSequence { producer_id } => Some(format!(
                "producer {producer_id} sent a batch without a base sequence"
            )),
        }
    }
}

/// The epoch and last sequence a batch is checked against.
#[derive(Debug, Clone, Copy)]
struct Expect {
    epoch: i16,
    last_sequence: i32,
}

/// All producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    entries: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub fn new() -> ProducerStateTable {
        ProducerStateTable::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// Every entry, in producer id order (the snapshot order).
    pub fn sorted(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut entries: Vec<_> = self.entries.iter().map(|(id, e)| (*id, e)).collect();
        entries.sort_unstable_by_key(|(id, _)| *id);
        entries
    }

    /// Judges the batches of one produce request for this partition, in order, as if each
    /// earlier one had been appended. As in Kafka, a duplicate anywhere answers for the whole
    /// request (clients send one batch per partition per request).
    pub fn check(&self, batches: &[BatchHeader]) -> Verdict {
        // Epoch and last sequence of producers advanced by earlier batches of this request.
        let mut advanced: Vec<(i64, Expect)> = Vec::new();
        for header in batches.iter().filter(|h| h.has_producer_id()) {
            let id = header.producer_id;
            if header.base_sequence < 0 {
                return Verdict::MissingSequence { producer_id: id };
            }
            let entry = self.entries.get(&id);
            if let Some(duplicate) = entry.and_then(|e| e.find_duplicate(header)) {
                return Verdict::Duplicate(duplicate);
            }
            let expect = match advanced.iter().find(|(a, _)| *a == id) {
                Some((_, expect)) => Some(*expect),
                None => entry.map(|e| Expect {
                    epoch: e.producer_epoch,
                    last_sequence: e.last_sequence(),
                }),
            };
            let verdict = check_one(expect, header);
            if verdict != Verdict::Append {
                return verdict;
            }
            let next = Expect {
                epoch: header.producer_epoch,
                last_sequence: header.last_sequence(),
            };
            match advanced.iter_mut().find(|(a, _)| *a == id) {
                Some((_, expect)) => *expect = next,
                None => advanced.push((id, next)),
            }
        }
        Verdict::Append
    }

    /// Remembers an appended batch written at `base_offset`. Batches without a producer id are
    /// ignored. Also used to replay the log on recovery, where nothing is validated: the log
    /// holds only what was accepted.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64, timestamp_ms: i64) {
        if !header.has_producer_id() || header.base_sequence < 0 {
            return;
        }
        let batch = BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset,
            last_offset_delta: header.last_offset_delta,
        };
        if !self.entries.contains_key(&header.producer_id) {
            self.make_room();
        }
        self.entries
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: header.producer_epoch,
                batches: Vec::with_capacity(BATCHES_PER_PRODUCER),
                last_timestamp_ms: timestamp_ms,
            })
            .add_batch(header.producer_epoch, batch, timestamp_ms);
    }

    /// Forgets producers idle for `expiration_ms` or more (Kafka's `producer.id.expiration.ms`).
    /// Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms);
        before - self.entries.len()
    }

    /// Inserts an entry read from a snapshot.
    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        assert!(!entry.batches.is_empty(), "a producer entry holds a batch");
        assert!(
            entry.batches.len() <= BATCHES_PER_PRODUCER,
            "a producer entry holds at most {BATCHES_PER_PRODUCER} batches"
        );
        self.entries.insert(producer_id, entry);
    }

    /// Keeps the table within [`PRODUCERS_PER_PARTITION_MAX`] before a new producer is added.
    fn make_room(&mut self) {
        if self.entries.len() < PRODUCERS_PER_PARTITION_MAX {
            return;
        }
        let idlest = self
            .entries
            .iter()
            .min_by_key(|(id, e)| (e.last_timestamp_ms, **id))
            .map(|(id, _)| *id)
            .expect("a full table has entries");
        self.entries.remove(&idlest);
        tracing::warn!(
            producer_id = idlest,
            limit = PRODUCERS_PER_PARTITION_MAX,
            "too many producers on one partition; forgot the one idle longest"
        );
    }
}

/// Kafka's `checkProducerEpoch` and `checkSequence` for a batch of a producer expected at
/// `expect` (`None`: unknown producer).
fn check_one(expect: Option<Expect>, header: &BatchHeader) -> Verdict {
    let Some(expect) = expect else {
        return Verdict::Append;
    };
    let (producer_id, epoch, sequence) = (
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
    );
    if epoch < expect.epoch {
        return Verdict::Fenced {
            producer_id,
            epoch,
            current_epoch: expect.epoch,
        };
    }
    let expected = if epoch != expect.epoch {
        0
    } else {
        add_sequence(expect.last_sequence, 1)
    };
    if sequence != expected {
        return Verdict::OutOfOrder {
            producer_id,
            epoch,
            sequence,
            expected,
        };
    }
    Verdict::Append
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect as Snapshot};

    /// A batch of producer `id`, epoch `epoch`, sequences `seq..seq+count`.
    fn batch(id: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
            last_offset_delta: count - 1,
            max_timestamp_ms: 0,
        }
    }

    /// Appends `history` (each batch of 10 offsets apart), then judges `request`.
    fn check(history: &[BatchHeader], request: &[BatchHeader], expect: Snapshot) {
        let mut table = ProducerStateTable::new();
        for (i, header) in history.iter().enumerate() {
            assert_eq!(
                table.check(std::slice::from_ref(header)),
                Verdict::Append,
                "history batch {i} must be accepted"
            );
            table.record(header, i as i64 * 10, 0);
        }
        let verdict = table.check(request);
        let shown = match verdict {
            Verdict::Duplicate(b) => format!(
                "duplicate at offset {}..={}",
                b.base_offset,
                b.last_offset()
            ),
            Verdict::Append => "append".to_string(),
            other => format!("{:?}: {}", other.error().unwrap(), other.reason().unwrap()),
        };
        expect.assert_eq(&shown);
    }

    #[test]
    fn verdicts_as_data() {
        let p = |epoch, seq, count| batch(7, epoch, seq, count);
        // Unknown producers start anywhere (KIP-360: no UNKNOWN_PRODUCER_ID on produce).
        check(&[], &[p(0, 0, 5)], expect!["append"]);
        check(&[], &[p(0, 42, 5)], expect!["append"]);
        check(&[], &[batch(-1, -1, -1, 3)], expect!["append"]);
        // In sequence.
        check(&[p(0, 0, 5)], &[p(0, 5, 5)], expect!["append"]);
        // Exact duplicates of each of the last five batches return their original offsets.
        let five = [
            p(0, 0, 5),
            p(0, 5, 5),
            p(0, 10, 5),
            p(0, 15, 5),
            p(0, 20, 5),
        ];
        check(&five, &[p(0, 0, 5)], expect!["duplicate at offset 0..=4"]);
        check(
            &five,
            &[p(0, 10, 5)],
            expect!["duplicate at offset 20..=24"],
        );
        check(
            &five,
            &[p(0, 20, 5)],
            expect!["duplicate at offset 40..=44"],
        );
        // The sixth batch pushes the first out of the window: its retry is out of order.
        let six = [five.as_slice(), &[p(0, 25, 5)]].concat();
        check(
            &six,
            &[p(0, 0, 5)],
            expect!["OutOfOrderSequenceNumber: producer 7 epoch 0: sequence 0, expected 30"],
        );
        check(&six, &[p(0, 5, 5)], expect!["duplicate at offset 10..=14"]);
        // Same first sequence, different range: not a duplicate.
        check(
            &[p(0, 0, 5)],
            &[p(0, 0, 4)],
            expect!["OutOfOrderSequenceNumber: producer 7 epoch 0: sequence 0, expected 5"],
        );
        // A gap.
        check(
            &[p(0, 0, 5)],
            &[p(0, 6, 5)],
            expect!["OutOfOrderSequenceNumber: producer 7 epoch 0: sequence 6, expected 5"],
        );
        // An older epoch is fenced, even for what looks like a duplicate.
        check(
            &[p(0, 0, 5), p(1, 0, 5)],
            &[p(0, 0, 5)],
            expect!["InvalidProducerEpoch: producer 7 epoch 0 is older than the current epoch 1"],
        );
        check(
            &[p(3, 0, 5)],
            &[p(2, 5, 5)],
            expect!["InvalidProducerEpoch: producer 7 epoch 2 is older than the current epoch 3"],
        );
        // A newer epoch starts at 0 (librdkafka's own epoch bump) and forgets the old batches.
        check(&[p(0, 0, 5)], &[p(1, 0, 5)], expect!["append"]);
        check(&[p(0, 0, 5)], &[p(5, 0, 1)], expect!["append"]);
        check(
            &[p(0, 0, 5)],
            &[p(1, 5, 5)],
            expect!["OutOfOrderSequenceNumber: producer 7 epoch 1: sequence 5, expected 0"],
        );
        check(&[p(0, 0, 5), p(1, 0, 5)], &[p(1, 5, 5)], expect!["append"]);
        // Sequences wrap after i32::MAX.
        let max = i32::MAX;
        check(&[p(0, max - 4, 5)], &[p(0, 0, 5)], expect!["append"]);
        check(&[p(0, max - 1, 5)], &[p(0, 3, 1)], expect!["append"]);
        check(
            &[p(0, max - 1, 5)],
            &[p(0, max - 1, 5)],
            expect!["duplicate at offset 0..=4"],
        );
        check(
            &[p(0, max, 1)],
            &[p(0, 1, 1)],
            expect!["OutOfOrderSequenceNumber: producer 7 epoch 0: sequence 1, expected 0"],
        );
        // A producer id without a sequence.
        check(
            &[],
            &[p(0, -1, 1)],
            expect!["InvalidRecord: producer 7 sent a batch without a base sequence"],
        );
        // Other producers are independent.
        check(&[p(0, 0, 5)], &[batch(8, 0, 100, 1)], expect!["append"]);
        check(
            &[p(0, 0, 5), batch(8, 3, 0, 1)],
            &[p(0, 5, 1)],
            expect!["append"],
        );
    }

    #[test]
    fn multi_batch_requests_are_judged_in_order() {
        let p = |epoch, seq, count| batch(7, epoch, seq, count);
        check(&[], &[p(0, 0, 5), p(0, 5, 5)], expect!["append"]);
        check(
            &[],
            &[p(0, 0, 5), p(0, 6, 5)],
            expect!["OutOfOrderSequenceNumber: producer 7 epoch 0: sequence 6, expected 5"],
        );
        check(
            &[p(1, 0, 5)],
            &[p(1, 5, 5), p(0, 10, 5)],
            expect!["InvalidProducerEpoch: producer 7 epoch 0 is older than the current epoch 1"],
        );
        check(
            &[p(0, 0, 5)],
            &[p(0, 5, 5), p(0, 0, 5)],
            expect!["duplicate at offset 0..=4"],
        );
        check(&[p(0, 0, 5)], &[p(1, 0, 5), p(1, 5, 5)], expect!["append"]);
    }

    #[test]
    fn record_keeps_five_batches_of_the_current_epoch() {
        let mut table = ProducerStateTable::new();
        for i in 0..7 {
            table.record(&batch(1, 0, i * 2, 2), i64::from(i) * 2, 100 + i64::from(i));
        }
        let entry = table.get(1).unwrap();
        assert_eq!(entry.batches.len(), BATCHES_PER_PRODUCER);
        assert_eq!(entry.batches[0].first_sequence, 4);
        assert_eq!(entry.batches[4].last_sequence, 13);
        assert_eq!(entry.last_timestamp_ms, 106);
        table.record(&batch(1, 1, 0, 3), 14, 107);
        let entry = table.get(1).unwrap();
        assert_eq!((entry.producer_epoch, entry.batches.len()), (1, 1));
        table.record(&batch(-1, -1, -1, 3), 17, 108);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn idle_producers_expire() {
        let mut table = ProducerStateTable::new();
        table.record(&batch(1, 0, 0, 1), 0, 1_000);
        table.record(&batch(2, 0, 0, 1), 1, 5_000);
        let check = |table: &mut ProducerStateTable, now, expired, left| {
            assert_eq!(table.expire(now, 10_000), expired, "at {now}");
            assert_eq!(table.len(), left, "at {now}");
        };
        check(&mut table, 10_999, 0, 2);
        check(&mut table, 11_000, 1, 1);
        check(&mut table, 14_999, 0, 1);
        check(&mut table, 15_000, 1, 0);
        // An expired producer is unknown again: any sequence is accepted.
        assert_eq!(table.check(&[batch(1, 0, 77, 1)]), Verdict::Append);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = ProducerStateTable::new();
        for id in 0..PRODUCERS_PER_PARTITION_MAX as i64 {
            table.record(&batch(id, 0, 0, 1), id, 1_000 + id);
        }
        table.record(&batch(0, 0, 1, 1), 0, 5_000_000);
        table.record(&batch(-5, 0, 0, 1), 0, 0);
        assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
        table.record(&batch(1_000_000, 0, 0, 1), 0, 5_000_001);
        assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
        assert!(table.get(0).is_some(), "recently active");
        assert!(table.get(1).is_none(), "idle longest");
    }
}
