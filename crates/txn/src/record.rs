//! The transaction log's records: what the coordinator asks the broker to persist (transaction
//! metadata per transactional id, offsets staged by TxnOffsetCommit, tombstones) and how replay
//! reads them back. `docs/transaction-log-format.md` draws them byte by byte.
//!
//! Keys name what a record is about, so a compacting log keeps only the last value per key and
//! a `None` value (tombstone) deletes the key. Values start with a version byte.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use wire::fields::{put_bytes, put_str, FieldReader};

use crate::state::TxnState;

/// Key type byte of a transaction record: one key per transactional id. The key types of the
/// group log (1, 2) are not reused, so a record of the wrong log is refused.
pub(crate) const KEY_TYPE_TXN: u8 = 3;
/// Key type byte of a staged offset record: one key per (transactional id, group, partition).
pub(crate) const KEY_TYPE_OFFSET: u8 = 4;
/// The only value layout so far; a reader refuses versions it does not know.
pub(crate) const VALUE_VERSION: u8 = 0;

/// A topic name and a partition index.
pub type TopicPartition = (StrBytes, i32);

/// One entry of the transaction log. `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Why a record read back from the log could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("decode transaction record: truncated while reading {what}")]
    Truncated { what: &'static str },
    #[error("decode transaction record: unknown key type {0}")]
    UnknownKeyType(u8),
    #[error("decode transaction record: unknown value version {0}")]
    UnknownValueVersion(u8),
    #[error("decode transaction record: unknown transaction state {0}")]
    UnknownState(u8),
    #[error("decode transaction record: {what} is not UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("decode transaction record: invalid length {length} of {what}")]
    InvalidLength { what: &'static str, length: i64 },
    #[error("decode transaction record: {count} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("decode transaction record: inconsistent transaction value: {reason}")]
    InconsistentTxn { reason: &'static str },
}

/// The persisted state of one transactional id (Kafka's `TransactionLogValue`, plus the consumer
/// groups whose offsets the transaction carries, which Kafka records as `__consumer_offsets`
/// partitions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    /// The producer id before the last rotation (or the current one), for KIP-360 retries.
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last KIP-360 bump, -1 after a fencing one.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// When the first partition or group was added (ms), -1 when no transaction was started since
    /// the last InitProducerId.
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub partitions: BTreeSet<TopicPartition>,
    pub groups: BTreeSet<StrBytes>,
}

/// An offset staged by TxnOffsetCommit, committed to its group if the transaction commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedOffset {
    /// The producer id of the transaction that staged it.
    pub producer_id: i64,
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    /// Kafka stores a null metadata as the empty string.
    pub metadata: StrBytes,
    pub commit_timestamp_ms: i64,
}

/// A record decoded: a key and, unless it is a tombstone, the value of the key's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodedRecord {
    Txn {
        transactional_id: StrBytes,
        value: Option<TxnValue>,
    },
    Offset {
        transactional_id: StrBytes,
        group_id: StrBytes,
        topic: StrBytes,
        partition: i32,
        value: Option<StagedOffset>,
    },
}

impl Record {
    pub(crate) fn txn(transactional_id: &str, value: Option<&TxnValue>) -> Record {
        let mut key = BytesMut::new();
        key.put_u8(KEY_TYPE_TXN);
        put_str(&mut key, transactional_id);
        Record {
            key: key.freeze(),
            value: value.map(encode_txn_value),
        }
    }

    pub(crate) fn offset(
        transactional_id: &str,
        group_id: &str,
        topic: &str,
        partition: i32,
        value: Option<&StagedOffset>,
    ) -> Record {
        let mut key = BytesMut::new();
        key.put_u8(KEY_TYPE_OFFSET);
        put_str(&mut key, transactional_id);
        put_str(&mut key, group_id);
        put_str(&mut key, topic);
        key.put_i32(partition);
        let value = value.map(|v| {
            let mut buf = BytesMut::new();
            buf.put_u8(VALUE_VERSION);
            buf.put_i64(v.producer_id);
            buf.put_i64(v.offset);
            buf.put_i32(v.leader_epoch);
            put_bytes(&mut buf, v.metadata.as_bytes());
            buf.put_i64(v.commit_timestamp_ms);
            buf.freeze()
        });
        Record {
            key: key.freeze(),
            value,
        }
    }

    /// Decodes key and value; every length is checked against the bytes present.
    pub fn decode(&self) -> Result<DecodedRecord, RecordError> {
        let mut r = FieldReader::new(self.key.clone());
        let decoded = match r.u8("key type")? {
            KEY_TYPE_TXN => {
                let transactional_id = r.str("transactional id")?;
                r.finish("key")?;
                let value = self.value.as_ref().map(decode_txn_value).transpose()?;
                DecodedRecord::Txn {
                    transactional_id,
                    value,
                }
            }
            KEY_TYPE_OFFSET => {
                let transactional_id = r.str("transactional id")?;
                let group_id = r.str("group id")?;
                let topic = r.str("topic")?;
                let partition = r.i32("partition")?;
                r.finish("key")?;
                let value = self.value.as_ref().map(decode_offset_value).transpose()?;
                DecodedRecord::Offset {
                    transactional_id,
                    group_id,
                    topic,
                    partition,
                    value,
                }
            }
            other => return Err(RecordError::UnknownKeyType(other)),
        };
        Ok(decoded)
    }
}

/// What a compacting log keeps of `records`: the last value of each key, tombstoned keys
/// dropped, in the order of each key's last write. Replaying the result (then
/// [`recover`](crate::TxnCoordinator::recover)) rebuilds the same state as replaying `records`.
pub fn compact(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut last: IndexMap<Bytes, Option<Bytes>> = IndexMap::new();
    for record in records {
        last.shift_remove(&record.key);
        last.insert(record.key, record.value);
    }
    last.into_iter()
        .filter_map(|(key, value)| {
            value.map(|v| Record {
                key,
                value: Some(v),
            })
        })
        .collect()
}

fn encode_txn_value(v: &TxnValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(VALUE_VERSION);
    buf.put_i64(v.producer_id);
    buf.put_i64(v.last_producer_id);
    buf.put_i16(v.producer_epoch);
    buf.put_i16(v.last_producer_epoch);
    buf.put_i32(v.timeout_ms);
    buf.put_u8(v.state.id());
    buf.put_i64(v.start_ms);
    buf.put_i64(v.last_update_ms);
    let count = u32::try_from(v.partitions.len()).expect("partition count fits u32");
    buf.put_u32(count);
    for (topic, partition) in &v.partitions {
        put_str(&mut buf, topic);
        buf.put_i32(*partition);
    }
    let count = u32::try_from(v.groups.len()).expect("group count fits u32");
    buf.put_u32(count);
    for group_id in &v.groups {
        put_str(&mut buf, group_id);
    }
    buf.freeze()
}

fn decode_txn_value(value: &Bytes) -> Result<TxnValue, RecordError> {
    let inconsistent = |reason| RecordError::InconsistentTxn { reason };
    let mut r = FieldReader::new(value.clone());
    r.version(VALUE_VERSION)?;
    let producer_id = r.i64("producer id")?;
    let last_producer_id = r.i64("last producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let last_producer_epoch = r.i16("last producer epoch")?;
    let timeout_ms = r.i32("transaction timeout")?;
    let state_id = r.u8("transaction state")?;
    let state = TxnState::from_id(state_id).ok_or(RecordError::UnknownState(state_id))?;
    let start_ms = r.i64("transaction start")?;
    let last_update_ms = r.i64("last update")?;
    let mut partitions = BTreeSet::new();
    for _ in 0..r.u32("partition count")? {
        let topic = r.str("partition topic")?;
        let partition = r.i32("partition index")?;
        if !partitions.insert((topic, partition)) {
            return Err(inconsistent("duplicate partition"));
        }
    }
    let mut groups = BTreeSet::new();
    for _ in 0..r.u32("group count")? {
        if !groups.insert(r.str("group id")?) {
            return Err(inconsistent("duplicate group"));
        }
    }
    r.finish("transaction value")?;
    let value = TxnValue {
        producer_id,
        last_producer_id,
        producer_epoch,
        last_producer_epoch,
        timeout_ms,
        state,
        start_ms,
        last_update_ms,
        partitions,
        groups,
    };
    check_txn_value(&value).map_err(inconsistent)?;
    Ok(value)
}

/// What the coordinator only ever writes; replay relies on it.
pub(crate) fn check_txn_value(v: &TxnValue) -> Result<(), &'static str> {
    if v.producer_id < 0 {
        return Err("negative producer id");
    }
    if v.producer_epoch < 0 {
        return Err("negative producer epoch");
    }
    if v.timeout_ms <= 0 {
        return Err("transaction timeout not positive");
    }
    if v.partitions.iter().any(|(_, p)| *p < 0) {
        return Err("negative partition index");
    }
    let holds_nothing = v.partitions.is_empty() && v.groups.is_empty();
    match v.state {
        TxnState::Empty if v.start_ms != -1 => Err("Empty with a transaction start"),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort if !holds_nothing => {
            Err("partitions outside a transaction")
        }
        TxnState::Ongoing
        | TxnState::PrepareCommit
        | TxnState::PrepareAbort
        | TxnState::CompleteCommit
        | TxnState::CompleteAbort
            if v.start_ms < 0 =>
        {
            Err("transaction without a start")
        }
        // Only a fence reaches i16::MAX, and a fence only ever aborts.
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::CompleteCommit
            if v.producer_epoch == i16::MAX =>
        {
            Err("fencing epoch on a transaction that can commit")
        }
        _ => Ok(()),
    }
}

fn decode_offset_value(value: &Bytes) -> Result<StagedOffset, RecordError> {
    let mut r = FieldReader::new(value.clone());
    r.version(VALUE_VERSION)?;
    let v = StagedOffset {
        producer_id: r.i64("staged offset producer id")?,
        offset: r.i64("staged offset")?,
        leader_epoch: r.i32("staged offset leader epoch")?,
        metadata: r.long_str("staged offset metadata")?,
        commit_timestamp_ms: r.i64("staged offset timestamp")?,
    };
    r.finish("staged offset value")?;
    Ok(v)
}

wire::impl_from_field_error!(RecordError);

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use proptest::prelude::*;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    fn hex(b: &[u8]) -> String {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn check_bytes(record: Record, expect: Expect) {
        let value = record.value.as_deref().map_or("tombstone".to_owned(), hex);
        expect.assert_eq(&format!("key   {}\nvalue {}", hex(&record.key), value));
    }

    fn ongoing() -> TxnValue {
        TxnValue {
            producer_id: 7,
            last_producer_id: 7,
            producer_epoch: 2,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            start_ms: 256,
            last_update_ms: 257,
            partitions: [(s("t"), 1)].into_iter().collect(),
            groups: [s("g")].into_iter().collect(),
        }
    }

    #[test]
    fn txn_record_layout() {
        check_bytes(
            Record::txn("x", Some(&ongoing())),
            expect![[r#"
                key   03 00 01 78
                value 00 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00 07 00 02 ff ff 00 00 ea 60 01 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 01 00 00 00 01 00 01 74 00 00 00 01 00 00 00 01 00 01 67"#]],
        );
        check_bytes(
            Record::txn("x", None),
            expect![[r#"
                key   03 00 01 78
                value tombstone"#]],
        );
    }

    #[test]
    fn offset_record_layout() {
        let v = StagedOffset {
            producer_id: 7,
            offset: 5,
            leader_epoch: -1,
            metadata: s("m"),
            commit_timestamp_ms: 258,
        };
        check_bytes(
            Record::offset("x", "g", "t", 1, Some(&v)),
            expect![[r#"
                key   04 00 01 78 00 01 67 00 01 74 00 00 00 01
                value 00 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00 05 ff ff ff ff 00 00 00 01 6d 00 00 00 00 00 00 01 02"#]],
        );
    }

    fn check_error(key: &[u8], value: Option<&[u8]>, expect: Expect) {
        let record = Record {
            key: Bytes::copy_from_slice(key),
            value: value.map(Bytes::copy_from_slice),
        };
        let error = record.decode().expect_err("must not decode");
        expect.assert_eq(&error.to_string());
    }

    #[test]
    fn corrupt_records_are_typed_errors() {
        check_error(
            &[],
            None,
            expect!["decode transaction record: truncated while reading key type"],
        );
        check_error(
            &[1, 0, 1, b'g'],
            None,
            expect!["decode transaction record: unknown key type 1"],
        );
        check_error(
            &[3, 0, 5, b'x'],
            None,
            expect!["decode transaction record: truncated while reading transactional id"],
        );
        check_error(
            &[3, 0, 1, b'x', 0],
            None,
            expect!["decode transaction record: 1 trailing bytes after key"],
        );
        check_error(
            &[3, 0, 1, 0xff],
            None,
            expect!["decode transaction record: transactional id is not UTF-8"],
        );
        check_error(
            &[3, 0, 1, b'x'],
            Some(&[9]),
            expect!["decode transaction record: unknown value version 9"],
        );
        let mut dead = Record::txn("x", Some(&ongoing())).value.unwrap().to_vec();
        dead[25] = 6;
        check_error(
            &[3, 0, 1, b'x'],
            Some(&dead),
            expect!["decode transaction record: unknown transaction state 6"],
        );
        let value = Record::txn("x", Some(&ongoing())).value.unwrap();
        check_error(
            &[3, 0, 1, b'x'],
            Some(&value[..value.len() - 1]),
            expect!["decode transaction record: truncated while reading group id"],
        );
    }

    #[test]
    fn inconsistent_txn_values_are_refused() {
        let check = |v: TxnValue, expect: Expect| {
            let error = Record::txn("x", Some(&v))
                .decode()
                .expect_err("inconsistent");
            expect.assert_eq(&error.to_string());
        };
        let mut v = ongoing();
        v.state = TxnState::Empty;
        check(
            v,
            expect!["decode transaction record: inconsistent transaction value: Empty with a transaction start"],
        );
        let mut v = ongoing();
        v.state = TxnState::CompleteCommit;
        check(
            v,
            expect!["decode transaction record: inconsistent transaction value: partitions outside a transaction"],
        );
        let mut v = ongoing();
        v.start_ms = -1;
        check(
            v,
            expect!["decode transaction record: inconsistent transaction value: transaction without a start"],
        );
        let mut v = ongoing();
        v.producer_epoch = i16::MAX;
        check(
            v,
            expect!["decode transaction record: inconsistent transaction value: fencing epoch on a transaction that can commit"],
        );
        let mut v = ongoing();
        v.timeout_ms = 0;
        check(
            v,
            expect!["decode transaction record: inconsistent transaction value: transaction timeout not positive"],
        );
        assert!(Record::txn("x", Some(&ongoing())).decode().is_ok());
    }

    #[test]
    fn compact_keeps_last_value_and_drops_tombstones() {
        let v = ongoing();
        let a1 = Record::txn("a", Some(&v));
        let b1 = Record::txn("b", Some(&v));
        let a2 = Record::txn("a", Some(&TxnValue { timeout_ms: 5, ..v }));
        let b_dead = Record::txn("b", None);
        assert_eq!(compact([a1, b1, a2.clone(), b_dead]), vec![a2]);
    }

    fn arb_str() -> impl Strategy<Value = StrBytes> {
        "[a-z0-9.-]{0,12}".prop_map(StrBytes::from_string)
    }

    proptest! {
        #[test]
        fn txn_values_round_trip(
            id in arb_str(),
            (producer_id, last_producer_id) in (0i64..i64::MAX, any::<i64>()),
            (producer_epoch, last_producer_epoch) in (0i16..i16::MAX, any::<i16>()),
            timeout_ms in 1i32..i32::MAX,
            state in prop::sample::select(TxnState::ALL.to_vec()),
            (start_ms, last_update_ms) in (0i64..i64::MAX, any::<i64>()),
            partitions in prop::collection::btree_set((arb_str(), 0i32..i32::MAX), 0..4),
            groups in prop::collection::btree_set(arb_str(), 0..3),
        ) {
            let holds = state.in_flight();
            let value = TxnValue {
                producer_id, last_producer_id, producer_epoch, last_producer_epoch, timeout_ms, state,
                start_ms: if state == TxnState::Empty { -1 } else { start_ms },
                last_update_ms,
                partitions: if holds { partitions } else { BTreeSet::new() },
                groups: if holds { groups } else { BTreeSet::new() },
            };
            let record = Record::txn(&id, Some(&value));
            prop_assert_eq!(record.decode(), Ok(DecodedRecord::Txn { transactional_id: id, value: Some(value) }));
        }

        #[test]
        fn offset_values_round_trip(
            id in arb_str(), group in arb_str(), topic in arb_str(), partition in any::<i32>(),
            producer_id in any::<i64>(), offset in any::<i64>(), leader_epoch in any::<i32>(),
            metadata in arb_str(), ts in any::<i64>(),
        ) {
            let value = StagedOffset { producer_id, offset, leader_epoch, metadata, commit_timestamp_ms: ts };
            let record = Record::offset(&id, &group, &topic, partition, Some(&value));
            prop_assert_eq!(record.decode(), Ok(DecodedRecord::Offset {
                transactional_id: id, group_id: group, topic, partition, value: Some(value),
            }));
        }

        #[test]
        fn decode_never_panics(key in prop::collection::vec(any::<u8>(), 0..40), value in prop::option::of(prop::collection::vec(any::<u8>(), 0..80))) {
            let record = Record { key: Bytes::from(key), value: value.map(Bytes::from) };
            let _ = record.decode();
        }
    }
}
