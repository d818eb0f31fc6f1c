//! The group log's records: what the coordinator asks the broker to persist (offset commits, group
//! metadata, tombstones) and how replay reads them back. `docs/group-log-format.md` draws them byte by byte.
//!
//! Keys name what a record is about, so a compacting log keeps only the last value per key and
//! a `None` value (tombstone) deletes the key. Values start with a version byte.

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use wire::fields::{put_bytes, put_nullable_str, put_str, FieldReader};

/// Key type byte of an offset commit record: one key per (group, topic, partition).
pub(crate) const KEY_TYPE_OFFSET: u8 = 1;
/// Key type byte of a group metadata record: one key per group.
pub(crate) const KEY_TYPE_GROUP: u8 = 2;
/// The only value layout so far; a reader refuses versions it does not know.
pub(crate) const VALUE_VERSION: u8 = 0;

/// One entry of the group log. `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Why a record read back from the log could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("decode group record: truncated while reading {what}")]
    Truncated { what: &'static str },
    #[error("decode group record: unknown key type {0}")]
    UnknownKeyType(u8),
    #[error("decode group record: unknown value version {0}")]
    UnknownValueVersion(u8),
    #[error("decode group record: {what} is not UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("decode group record: invalid length {length} of {what}")]
    InvalidLength { what: &'static str, length: i64 },
    #[error("decode group record: {count} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("decode group record: inconsistent group value: {reason}")]
    InconsistentGroup { reason: &'static str },
}

/// What a record key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group_id: StrBytes,
        topic: StrBytes,
        partition: i32,
    },
    Group {
        group_id: StrBytes,
    },
}

/// A committed offset as OffsetFetch returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    /// Kafka stores a null metadata as the empty string.
    pub metadata: StrBytes,
    pub commit_timestamp_ms: i64,
}

/// The persisted part of a group: what survives a restart (Kafka's `GroupMetadataValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    /// Empty when the group never had a member.
    pub protocol_type: StrBytes,
    pub generation_id: i32,
    pub protocol_name: Option<StrBytes>,
    pub leader_id: Option<StrBytes>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One member of a persisted group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: StrBytes,
    pub group_instance_id: Option<StrBytes>,
    pub client_id: StrBytes,
    pub client_host: StrBytes,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A record decoded: a key and, unless it is a tombstone, the value of the key's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodedRecord {
    Offset {
        group_id: StrBytes,
        topic: StrBytes,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Group {
        group_id: StrBytes,
        value: Option<GroupValue>,
    },
}

impl Record {
    pub(crate) fn offset(
        group_id: &str,
        topic: &str,
        partition: i32,
        value: Option<&CommittedOffset>,
    ) -> Record {
        let mut key = BytesMut::new();
        key.put_u8(KEY_TYPE_OFFSET);
        put_str(&mut key, group_id);
        put_str(&mut key, topic);
        key.put_i32(partition);
        let value = value.map(|v| {
            let mut buf = BytesMut::new();
            buf.put_u8(VALUE_VERSION);
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

    pub(crate) fn group(group_id: &str, value: Option<&GroupValue>) -> Record {
        let mut key = BytesMut::new();
        key.put_u8(KEY_TYPE_GROUP);
        put_str(&mut key, group_id);
        Record {
            key: key.freeze(),
            value: value.map(encode_group_value),
        }
    }

    /// Decodes key and value; every length is checked against the bytes present.
    pub fn decode(&self) -> Result<DecodedRecord, RecordError> {
        let key = decode_key(&self.key)?;
        Ok(match key {
            RecordKey::Offset {
                group_id,
                topic,
                partition,
            } => DecodedRecord::Offset {
                group_id,
                topic,
                partition,
                value: self.value.as_ref().map(decode_offset_value).transpose()?,
            },
            RecordKey::Group { group_id } => DecodedRecord::Group {
                group_id,
                value: self.value.as_ref().map(decode_group_value).transpose()?,
            },
        })
    }
}

/// What a compacting log keeps of `records`: the last value of each key, tombstoned keys
/// dropped, in the order of each key's last write. Replaying the result rebuilds the same state as
/// replaying `records`.
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

fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation_id);
    put_nullable_str(&mut buf, v.protocol_name.as_deref());
    put_nullable_str(&mut buf, v.leader_id.as_deref());
    buf.put_i64(v.state_timestamp_ms);
    let count = u32::try_from(v.members.len()).expect("member count fits u32");
    buf.put_u32(count);
    for m in &v.members {
        put_str(&mut buf, &m.member_id);
        put_nullable_str(&mut buf, m.group_instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

fn decode_key(key: &Bytes) -> Result<RecordKey, RecordError> {
    let mut r = FieldReader::new(key.clone());
    let key = match r.u8("key type")? {
        KEY_TYPE_OFFSET => RecordKey::Offset {
            group_id: r.str("offset key group id")?,
            topic: r.str("offset key topic")?,
            partition: r.i32("offset key partition")?,
        },
        KEY_TYPE_GROUP => RecordKey::Group {
            group_id: r.str("group key group id")?,
        },
        other => return Err(RecordError::UnknownKeyType(other)),
    };
    r.finish("key")?;
    Ok(key)
}

fn decode_offset_value(value: &Bytes) -> Result<CommittedOffset, RecordError> {
    let mut r = FieldReader::new(value.clone());
    r.version(VALUE_VERSION)?;
    let v = CommittedOffset {
        offset: r.i64("offset")?,
        leader_epoch: r.i32("leader epoch")?,
        metadata: r.long_str("offset metadata")?,
        commit_timestamp_ms: r.i64("commit timestamp")?,
    };
    r.finish("offset value")?;
    Ok(v)
}

/// The fewest bytes one encoded member takes: four empty strings, one null, two timeouts and two
/// empty byte strings. Bounds the allocation a corrupt member count can ask for.
const MEMBER_VALUE_BYTES_MIN: usize = 2 * 3 + 2 + 2 + 4 + 4 + 4 + 4;

fn decode_group_value(value: &Bytes) -> Result<GroupValue, RecordError> {
    let mut r = FieldReader::new(value.clone());
    r.version(VALUE_VERSION)?;
    let protocol_type = r.str("protocol type")?;
    let generation_id = r.i32("generation id")?;
    let protocol_name = r.nullable_str("protocol name")?;
    let leader_id = r.nullable_str("leader id")?;
    let state_timestamp_ms = r.i64("state timestamp")?;
    let count = r.u32("member count")? as usize;
    let mut members = Vec::with_capacity(count.min(r.remaining() / MEMBER_VALUE_BYTES_MIN));
    for _ in 0..count {
        members.push(MemberValue {
            member_id: r.str("member id")?,
            group_instance_id: r.nullable_str("group instance id")?,
            client_id: r.str("client id")?,
            client_host: r.str("client host")?,
            rebalance_timeout_ms: r.i32("rebalance timeout")?,
            session_timeout_ms: r.i32("session timeout")?,
            subscription: r.bytes("subscription")?,
            assignment: r.bytes("assignment")?,
        });
    }
    r.finish("group value")?;
    let value = GroupValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        state_timestamp_ms,
        members,
    };
    check_group_value(&value)?;
    Ok(value)
}

/// What the coordinator only ever writes: a group with members has a protocol and a leader among
/// them, and member ids and instance ids are unique. Replay relies on it.
fn check_group_value(v: &GroupValue) -> Result<(), RecordError> {
    let inconsistent = |reason| Err(RecordError::InconsistentGroup { reason });
    if v.members.is_empty() {
        return Ok(());
    }
    if v.protocol_name.is_none() {
        return inconsistent("members without a protocol");
    }
    let Some(leader_id) = &v.leader_id else {
        return inconsistent("members without a leader");
    };
    if !v.members.iter().any(|m| &m.member_id == leader_id) {
        return inconsistent("leader is not a member");
    }
    let mut member_ids = HashSet::new();
    let mut instance_ids = HashSet::new();
    for m in &v.members {
        if !member_ids.insert(&m.member_id) {
            return inconsistent("duplicate member id");
        }
        if let Some(instance_id) = &m.group_instance_id {
            if !instance_ids.insert(instance_id) {
                return inconsistent("duplicate group instance id");
            }
        }
    }
    Ok(())
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

    #[test]
    fn offset_record_layout() {
        let v = CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: s("m"),
            commit_timestamp_ms: 258,
        };
        check_bytes(
            Record::offset("g", "t", 1, Some(&v)),
            expect![[r#"
                key   01 00 01 67 00 01 74 00 00 00 01
                value 00 00 00 00 00 00 00 00 05 ff ff ff ff 00 00 00 01 6d 00 00 00 00 00 00 01 02"#]],
        );
        check_bytes(
            Record::offset("g", "t", 1, None),
            expect![[r#"
                key   01 00 01 67 00 01 74 00 00 00 01
                value tombstone"#]],
        );
    }

    #[test]
    fn group_record_layout() {
        let v = GroupValue {
            protocol_type: s("c"),
            generation_id: 2,
            protocol_name: Some(s("r")),
            leader_id: None,
            state_timestamp_ms: 1,
            members: vec![MemberValue {
                member_id: s("m"),
                group_instance_id: None,
                client_id: s("c"),
                client_host: s("h"),
                rebalance_timeout_ms: 3,
                session_timeout_ms: 4,
                subscription: Bytes::from_static(b"S"),
                assignment: Bytes::from_static(b""),
            }],
        };
        check_bytes(
            Record::group("g", Some(&v)),
            expect![[r#"
                key   02 00 01 67
                value 00 00 01 63 00 00 00 02 00 01 72 ff ff 00 00 00 00 00 00 00 01 00 00 00 01 00 01 6d ff ff 00 01 63 00 01 68 00 00 00 03 00 00 00 04 00 00 00 01 53 00 00 00 00"#]],
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
            expect!["decode group record: truncated while reading key type"],
        );
        check_error(
            &[9],
            None,
            expect!["decode group record: unknown key type 9"],
        );
        check_error(
            &[2, 0, 5, b'g'],
            None,
            expect!["decode group record: truncated while reading group key group id"],
        );
        check_error(
            &[2, 0, 1, b'g', 0],
            None,
            expect!["decode group record: 1 trailing bytes after key"],
        );
        check_error(
            &[2, 0, 1, 0xff],
            None,
            expect!["decode group record: group key group id is not UTF-8"],
        );
        check_error(
            &[2, 0, 1, b'g'],
            Some(&[7]),
            expect!["decode group record: unknown value version 7"],
        );
        check_error(
            &[2, 0, 1, b'g'],
            Some(&[0, 0, 0, 0, 0, 0, 1, 0xff, 0xfe]),
            expect!["decode group record: invalid length -2 of protocol name"],
        );
        check_error(
            &[2, 0, 1, b'g'],
            Some(&[
                0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
                0xff, 0xff,
            ]),
            expect!["decode group record: truncated while reading member id"],
        );
    }

    #[test]
    fn compact_keeps_last_value_and_drops_tombstones() {
        let v = |o| CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: s(""),
            commit_timestamp_ms: 0,
        };
        let a1 = Record::offset("g", "a", 0, Some(&v(1)));
        let b1 = Record::offset("g", "b", 0, Some(&v(1)));
        let a2 = Record::offset("g", "a", 0, Some(&v(2)));
        let b_dead = Record::offset("g", "b", 0, None);
        let out = compact([a1, b1, a2.clone(), b_dead]);
        assert_eq!(out, vec![a2]);
    }

    fn arb_str() -> impl Strategy<Value = StrBytes> {
        "[a-z0-9.-]{0,12}".prop_map(StrBytes::from_string)
    }

    fn arb_member() -> impl Strategy<Value = MemberValue> {
        (
            (
                arb_str(),
                proptest::option::of(arb_str()),
                arb_str(),
                arb_str(),
            ),
            (any::<i32>(), any::<i32>()),
            (
                proptest::collection::vec(any::<u8>(), 0..20),
                proptest::collection::vec(any::<u8>(), 0..20),
            ),
        )
            .prop_map(
                |((member_id, group_instance_id, client_id, client_host), (r, s), (sub, asg))| {
                    MemberValue {
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        rebalance_timeout_ms: r,
                        session_timeout_ms: s,
                        subscription: Bytes::from(sub),
                        assignment: Bytes::from(asg),
                    }
                },
            )
    }

    /// Unique ids, and a protocol and a leader when there are members.
    fn make_consistent(v: &mut GroupValue) {
        for (i, m) in v.members.iter_mut().enumerate() {
            m.member_id = StrBytes::from_string(format!("{}-{i}", m.member_id));
            if let Some(instance_id) = &mut m.group_instance_id {
                *instance_id = StrBytes::from_string(format!("{instance_id}-{i}"));
            }
        }
        if let Some(first) = v.members.first() {
            v.leader_id = Some(first.member_id.clone());
            v.protocol_name.get_or_insert_with(|| s("range"));
        }
    }

    #[test]
    fn inconsistent_group_values_are_refused() {
        let member = MemberValue {
            member_id: s("m"),
            group_instance_id: None,
            client_id: s("c"),
            client_host: s("h"),
            rebalance_timeout_ms: 1,
            session_timeout_ms: 1,
            subscription: Bytes::new(),
            assignment: Bytes::new(),
        };
        let good = GroupValue {
            protocol_type: s("consumer"),
            generation_id: 1,
            protocol_name: Some(s("range")),
            leader_id: Some(s("m")),
            state_timestamp_ms: 0,
            members: vec![member.clone()],
        };
        let check = |v: GroupValue, expect: Expect| {
            let error = Record::group("g", Some(&v))
                .decode()
                .expect_err("inconsistent");
            expect.assert_eq(&error.to_string());
        };
        let mut v = good.clone();
        v.protocol_name = None;
        check(
            v,
            expect!["decode group record: inconsistent group value: members without a protocol"],
        );
        let mut v = good.clone();
        v.leader_id = Some(s("x"));
        check(
            v,
            expect!["decode group record: inconsistent group value: leader is not a member"],
        );
        let mut v = good.clone();
        v.members.push(member);
        check(
            v,
            expect!["decode group record: inconsistent group value: duplicate member id"],
        );
        assert!(Record::group("g", Some(&good)).decode().is_ok());
    }

    proptest! {
        #[test]
        fn group_values_round_trip(
            group in arb_str(),
            protocol_type in arb_str(),
            generation_id in any::<i32>(),
            protocol_name in proptest::option::of(arb_str()),
            leader_id in proptest::option::of(arb_str()),
            state_timestamp_ms in any::<i64>(),
            members in proptest::collection::vec(arb_member(), 0..4),
        ) {
            let mut value = GroupValue { protocol_type, generation_id, protocol_name, leader_id, state_timestamp_ms, members };
            make_consistent(&mut value);
            let record = Record::group(&group, Some(&value));
            prop_assert_eq!(record.decode(), Ok(DecodedRecord::Group { group_id: group, value: Some(value) }));
        }

        #[test]
        fn offset_values_round_trip(
            group in arb_str(), topic in arb_str(), partition in any::<i32>(),
            offset in any::<i64>(), leader_epoch in any::<i32>(), metadata in arb_str(), ts in any::<i64>(),
        ) {
            let value = CommittedOffset { offset, leader_epoch, metadata, commit_timestamp_ms: ts };
            let record = Record::offset(&group, &topic, partition, Some(&value));
            prop_assert_eq!(record.decode(), Ok(DecodedRecord::Offset { group_id: group, topic, partition, value: Some(value) }));
        }

        #[test]
        fn decode_never_panics(key in proptest::collection::vec(any::<u8>(), 0..40), value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))) {
            let record = Record { key: Bytes::from(key), value: value.map(Bytes::from) };
            let _ = record.decode();
        }
    }
}
