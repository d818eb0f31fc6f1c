//! Partition state snapshots: a partition's [`ProducerStateTable`] and [`TxnIndex`] (open and
//! aborted transactions) as they stood at a log offset, so that recovery replays only the batches
//! after it instead of the whole log. The format is drawn byte by byte in
//! `docs/producer-snapshot-format.md`. A snapshot is a cache: one that fails any check is ignored
//! and the state is rebuilt from the log.

use std::collections::BTreeMap;

use thiserror::Error;

use super::state::{BatchMetadata, ProducerEntry, ProducerStateTable, BATCHES_PER_PRODUCER};
use crate::txn_index::{AbortedTxn, TxnIndex};

/// `<offset, 20 digits>.snapshot` in the partition directory, like Kafka's.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Version 1 held the producers only; a version 1 file is ignored like a damaged one (the log is
/// replayed once).
pub const SNAPSHOT_VERSION: i16 = 2;
/// version, crc, offset, producer count.
const HEADER_BYTES: usize = 2 + 4 + 8 + 4;
/// producer id, epoch, last timestamp, batch count.
const ENTRY_HEADER_BYTES: usize = 8 + 2 + 8 + 1;
/// first sequence, last sequence, base offset, last offset delta.
const BATCH_BYTES: usize = 4 + 4 + 8 + 4;
/// producer id, first offset.
const ONGOING_BYTES: usize = 8 + 8;
/// producer id, first offset, last offset (the abort marker's).
const ABORTED_BYTES: usize = 8 + 8 + 8;
const CRC_START: usize = 6;
/// Largest snapshot file read; a bigger one is damaged (the table is bounded well below this).
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("snapshot version {0} is not {SNAPSHOT_VERSION}")]
    Version(i16),
    #[error("snapshot CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("snapshot says offset {found}, its file name {expected}")]
    Offset { found: i64, expected: i64 },
    #[error("snapshot entry {index}: {reason}")]
    Entry { index: usize, reason: &'static str },
    #[error("snapshot transaction {index}: {reason}")]
    Txn { index: usize, reason: &'static str },
    #[error("snapshot has {0} bytes after its last entry")]
    Trailing(usize),
}

pub fn file_name(offset: i64) -> String {
    format!("{offset:020}{SNAPSHOT_SUFFIX}")
}

/// The offset in a snapshot file name, if `name` is one.
pub fn parse_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A partition's state as a snapshot holds it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub producers: ProducerStateTable,
    pub txns: TxnIndex,
}

/// Encodes the state as it stands at `offset`: every batch of every entry, the first batch of
/// every open transaction and every abort marker lie below it.
pub fn encode(table: &ProducerStateTable, txns: &TxnIndex, offset: i64) -> Vec<u8> {
    let entries = table.sorted();
    let mut out = Vec::with_capacity(
        HEADER_BYTES + entries.len() * (ENTRY_HEADER_BYTES + BATCHES_PER_PRODUCER * BATCH_BYTES),
    );
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    let count = u32::try_from(entries.len()).expect("producer count fits a u32");
    out.extend_from_slice(&count.to_be_bytes());
    for (producer_id, entry) in entries {
        out.extend_from_slice(&producer_id.to_be_bytes());
        out.extend_from_slice(&entry.producer_epoch.to_be_bytes());
        out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
        out.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            assert!(
                batch.last_offset() < offset,
                "a snapshot at {offset} holds only batches below it"
            );
            out.extend_from_slice(&batch.first_sequence.to_be_bytes());
            out.extend_from_slice(&batch.last_sequence.to_be_bytes());
            out.extend_from_slice(&batch.base_offset.to_be_bytes());
            out.extend_from_slice(&batch.last_offset_delta.to_be_bytes());
        }
    }
    let ongoing = txns.ongoing();
    let count = u32::try_from(ongoing.len()).expect("open transaction count fits a u32");
    out.extend_from_slice(&count.to_be_bytes());
    for (producer_id, first_offset) in ongoing {
        assert!(
            *first_offset < offset,
            "a snapshot at {offset} holds only transactions begun below it"
        );
        out.extend_from_slice(&producer_id.to_be_bytes());
        out.extend_from_slice(&first_offset.to_be_bytes());
    }
    let aborted = txns.aborted();
    let count = u32::try_from(aborted.len()).expect("aborted transaction count fits a u32");
    out.extend_from_slice(&count.to_be_bytes());
    for txn in aborted {
        assert!(
            txn.last_offset < offset,
            "a snapshot at {offset} holds only aborts below it"
        );
        out.extend_from_slice(&txn.producer_id.to_be_bytes());
        out.extend_from_slice(&txn.first_offset.to_be_bytes());
        out.extend_from_slice(&txn.last_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[2..6].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a snapshot file that claims (by its name) to be taken at `offset`, checking
/// everything: version, CRC, offset, counts, every entry.
pub fn decode(bytes: &[u8], offset: i64) -> Result<Snapshot, SnapshotError> {
    if bytes.len() < HEADER_BYTES {
        return Err(SnapshotError::Short(bytes.len()));
    }
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.i16();
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(version));
    }
    let stored = reader.i32() as u32;
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if stored != computed {
        return Err(SnapshotError::Crc { stored, computed });
    }
    let found = reader.i64();
    if found != offset {
        return Err(SnapshotError::Offset {
            found,
            expected: offset,
        });
    }
    let count = reader.i32() as u32 as usize;
    let mut table = ProducerStateTable::new();
    let mut previous_id = -1;
    for index in 0..count {
        let fail = |reason| SnapshotError::Entry { index, reason };
        if reader.left() < ENTRY_HEADER_BYTES {
            return Err(fail("truncated"));
        }
        let producer_id = reader.i64();
        let producer_epoch = reader.i16();
        let last_timestamp_ms = reader.i64();
        let batch_count = usize::from(reader.u8());
        if producer_id <= previous_id {
            return Err(fail("producer ids do not increase"));
        }
        previous_id = producer_id;
        if producer_epoch < 0 {
            return Err(fail("negative producer epoch"));
        }
        if !(1..=BATCHES_PER_PRODUCER).contains(&batch_count) {
            return Err(fail("batch count outside 1..=5"));
        }
        if reader.left() < batch_count * BATCH_BYTES {
            return Err(fail("truncated"));
        }
        let mut batches = Vec::with_capacity(batch_count);
        for _ in 0..batch_count {
            let batch = BatchMetadata {
                first_sequence: reader.i32(),
                last_sequence: reader.i32(),
                base_offset: reader.i64(),
                last_offset_delta: reader.i32(),
            };
            if batch.first_sequence < 0 || batch.last_sequence < 0 {
                return Err(fail("negative sequence"));
            }
            if batch.base_offset < 0 || batch.last_offset_delta < 0 {
                return Err(fail("negative offset"));
            }
            if batch.last_offset() >= offset {
                return Err(fail("batch at or after the snapshot offset"));
            }
            if batches
                .last()
                .is_some_and(|b: &BatchMetadata| b.last_offset() >= batch.base_offset)
            {
                return Err(fail("batch offsets do not increase"));
            }
            batches.push(batch);
        }
        table.insert(
            producer_id,
            ProducerEntry {
                producer_epoch,
                batches,
                last_timestamp_ms,
            },
        );
    }
    let txns = decode_txns(&mut reader, offset)?;
    if reader.left() != 0 {
        return Err(SnapshotError::Trailing(reader.left()));
    }
    Ok(Snapshot {
        producers: table,
        txns,
    })
}

fn decode_txns(reader: &mut Reader, offset: i64) -> Result<TxnIndex, SnapshotError> {
    let truncated = |index| SnapshotError::Txn {
        index,
        reason: "truncated",
    };
    if reader.left() < 4 {
        return Err(truncated(0));
    }
    let count = reader.i32() as u32 as usize;
    let mut ongoing = BTreeMap::new();
    let mut previous_id = -1;
    for index in 0..count {
        let fail = |reason| SnapshotError::Txn { index, reason };
        if reader.left() < ONGOING_BYTES {
            return Err(fail("truncated"));
        }
        let producer_id = reader.i64();
        let first_offset = reader.i64();
        if producer_id <= previous_id {
            return Err(fail("producer ids do not increase"));
        }
        previous_id = producer_id;
        if !(0..offset).contains(&first_offset) {
            return Err(fail("open transaction outside the snapshot"));
        }
        ongoing.insert(producer_id, first_offset);
    }
    if reader.left() < 4 {
        return Err(truncated(count));
    }
    let aborted_count = reader.i32() as u32 as usize;
    let mut aborted: Vec<AbortedTxn> = Vec::with_capacity(aborted_count.min(reader.left()));
    for index in count..count + aborted_count {
        let fail = |reason| SnapshotError::Txn { index, reason };
        if reader.left() < ABORTED_BYTES {
            return Err(fail("truncated"));
        }
        let txn = AbortedTxn {
            producer_id: reader.i64(),
            first_offset: reader.i64(),
            last_offset: reader.i64(),
        };
        if txn.producer_id < 0 || txn.first_offset < 0 {
            return Err(fail("negative producer id or offset"));
        }
        if txn.first_offset >= txn.last_offset || txn.last_offset >= offset {
            return Err(fail("aborted transaction outside the snapshot"));
        }
        if aborted
            .last()
            .is_some_and(|a| a.last_offset >= txn.last_offset)
        {
            return Err(fail("abort markers do not increase"));
        }
        aborted.push(txn);
    }
    Ok(TxnIndex::from_parts(ongoing, aborted))
}

/// Reads big-endian integers; callers check the length first.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let taken = self.bytes[self.at..self.at + N]
            .try_into()
            .expect("length checked by the caller");
        self.at += N;
        taken
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::state::BatchHeader;
    use expect_test::{expect, Expect};

    fn sample() -> Snapshot {
        let mut table = ProducerStateTable::new();
        let header = |id, epoch, seq, count: i32| BatchHeader {
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
            last_offset_delta: count - 1,
            max_timestamp_ms: 0,
        };
        table.record(&header(9, 2, 0, 3), 0, 1_700_000_000_000);
        table.record(&header(4, 0, 10, 1), 3, 1_700_000_000_001);
        table.record(&header(9, 2, 3, 2), 4, 1_700_000_000_002);
        let ongoing = BTreeMap::from([(7, 5)]);
        let aborted = vec![AbortedTxn {
            producer_id: 8,
            first_offset: 1,
            last_offset: 2,
        }];
        Snapshot {
            producers: table,
            txns: TxnIndex::from_parts(ongoing, aborted),
        }
    }

    fn encode_sample(offset: i64) -> Vec<u8> {
        let sample = sample();
        encode(&sample.producers, &sample.txns, offset)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .chunks(20)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn encoding_is_stable() {
        expect![[r#"
            0002efdebe6e0000000000000006000000020000
            00000000000400000000018bcfe5680101000000
            0a0000000a000000000000000300000000000000
            000000000900020000018bcfe568020200000000
            0000000200000000000000000000000200000003
            0000000400000000000000040000000100000001
            0000000000000007000000000000000500000001
            0000000000000008000000000000000100000000
            00000002"#]]
        .assert_eq(&hex(&encode_sample(6)));
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode(&encode_sample(6), 6), Ok(sample()));
        let empty = Snapshot::default();
        assert_eq!(
            decode(&encode(&empty.producers, &empty.txns, 0), 0),
            Ok(empty)
        );
    }

    fn check(mutate: impl Fn(&mut Vec<u8>), offset: i64, expect: Expect) {
        let mut bytes = encode_sample(6);
        mutate(&mut bytes);
        let actual = match decode(&bytes, offset) {
            Ok(_) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        expect.assert_eq(&actual);
    }

    /// Rewrites the CRC after a mutation, so the structural checks are reached.
    fn recrc(bytes: &mut [u8]) {
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[2..6].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn damage_is_detected() {
        check(|_| {}, 6, expect!["ok"]);
        check(
            |b| b.truncate(10),
            6,
            expect!["snapshot is 10 bytes, shorter than its header"],
        );
        check(|b| b[1] = 9, 6, expect!["snapshot version 9 is not 2"]);
        check(
            |b| *b.last_mut().unwrap() ^= 1,
            6,
            expect!["snapshot CRC-32C mismatch: stored 0xefdebe6e, computed 0x1db53d6d"],
        );
        check(
            |_| {},
            7,
            expect!["snapshot says offset 6, its file name 7"],
        );
        check(
            |b| {
                b.truncate(b.len() - 1);
                recrc(b);
            },
            6,
            expect!["snapshot transaction 1: truncated"],
        );
        check(
            |b| {
                b.push(0);
                recrc(b);
            },
            6,
            expect!["snapshot has 1 bytes after its last entry"],
        );
        // The first entry's batch count (producer 4) set to 0, then to 6.
        check(
            |b| {
                b[18 + 18] = 0;
                recrc(b);
            },
            6,
            expect!["snapshot entry 0: batch count outside 1..=5"],
        );
        check(
            |b| {
                b[18 + 18] = 6;
                recrc(b);
            },
            6,
            expect!["snapshot entry 0: batch count outside 1..=5"],
        );
        // Claims a smaller offset than its batches reach.
        check(
            |b| {
                b[6..14].copy_from_slice(&4i64.to_be_bytes());
                recrc(b);
            },
            4,
            expect!["snapshot entry 1: batch at or after the snapshot offset"],
        );
        // Producer ids out of order: the second entry's id made equal to the first's.
        check(
            |b| {
                let second = 18 + 19 + 20;
                b[second..second + 8].copy_from_slice(&4i64.to_be_bytes());
                recrc(b);
            },
            6,
            expect!["snapshot entry 1: producer ids do not increase"],
        );
        // The transaction sections follow the producers: 4 + 16 bytes, then 4 + 24.
        let ongoing = encode_sample(6).len() - 4 - 24 - 16;
        let aborted = ongoing + 16 + 4;
        check(
            |b| {
                b[ongoing + 8..ongoing + 16].copy_from_slice(&6i64.to_be_bytes());
                recrc(b);
            },
            6,
            expect!["snapshot transaction 0: open transaction outside the snapshot"],
        );
        check(
            |b| {
                b[aborted + 16..aborted + 24].copy_from_slice(&1i64.to_be_bytes());
                recrc(b);
            },
            6,
            expect!["snapshot transaction 1: aborted transaction outside the snapshot"],
        );
        check(
            |b| {
                b[aborted + 16..aborted + 24].copy_from_slice(&6i64.to_be_bytes());
                recrc(b);
            },
            6,
            expect!["snapshot transaction 1: aborted transaction outside the snapshot"],
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name(1234), "00000000000000001234.snapshot");
        assert_eq!(parse_file_name("00000000000000001234.snapshot"), Some(1234));
        assert_eq!(parse_file_name("00000000000000001234.snapshot.tmp"), None);
        assert_eq!(parse_file_name("1234.snapshot"), None);
        assert_eq!(parse_file_name("00000000000000001234.log"), None);
    }
}
