//! Message sets, the record format before v2 batches (magic 0 and 1, KIP-32): what producers on
//! Produce v0–2 send and consumers on Fetch v0–3 expect. ferry's log holds v2 batches only, as
//! Kafka 3's does: old message sets are converted up on produce and v2 batches down on fetch.
//!
//! A message is `offset i64, size i32, crc u32 (CRC-32 over the rest), magic i8, attributes i8,
//! [timestamp i64, magic 1], key bytes, value bytes`; a compressed message's value is a whole
//! inner message set, inflated here within [`INFLATED_BYTES_MAX`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, IEEE, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    NO_TIMESTAMP,
};

use crate::batch::Batches;

pub use crate::compression::INFLATED_BYTES_MAX;

/// Bytes of a message before its magic byte: offset, size, crc.
const MESSAGE_PREFIX_BYTES: usize = 8 + 4 + 4;
/// Bytes of the smallest magic 0 message after `size`: crc, magic, attributes, two null
/// lengths.
const MESSAGE_MIN_BYTES: usize = 4 + 1 + 1 + 4 + 4;
const CODEC_MASK: i8 = 0x07;
const LOG_APPEND_TIME_FLAG: i8 = 0x08;

/// One message, with compression unwrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Converts a Produce v0–2 message set into one uncompressed v2 batch (offsets from 0, no
/// producer id, magic 0 messages without a timestamp). An error says what is wrong with the
/// set (a CRC, a length, a codec).
pub fn up_convert(set: Bytes) -> Result<Bytes, String> {
    let mut messages = Vec::new();
    read_messages(set, false, &mut messages)?;
    if messages.is_empty() {
        return Err("message set holds no message".into());
    }
    let records: Vec<Record> = messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch while offset minus sequence stays the
            // same; the batch's base sequence is set back to none below.
            sequence: index as i32,
            timestamp: message.timestamp,
            key: message.key,
            value: message.value,
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, &records, &options).map_err(|e| e.to_string())?;
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&NO_SEQUENCE.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(
        crate::batch::BatchView::parse(&batch).map(|b| b.total_bytes()),
        Ok(batch.len()),
        "one batch"
    );
    Ok(batch.freeze())
}

/// Where a v2 batch's base sequence, CRC and CRC-covered bytes start.
const BASE_SEQUENCE_AT: usize = 53;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

fn read_messages(mut set: Bytes, inner: bool, out: &mut Vec<Message>) -> Result<(), String> {
    while set.has_remaining() {
        if set.remaining() < MESSAGE_PREFIX_BYTES - 4 {
            return Err(format!(
                "{} trailing bytes after the last message",
                set.remaining()
            ));
        }
        let _offset = set.get_i64();
        let size = set.get_i32();
        if size < MESSAGE_MIN_BYTES as i32 || size as usize > set.remaining() {
            return Err(format!(
                "message size {size} with {} bytes left",
                set.remaining()
            ));
        }
        let mut message = set.split_to(size as usize);
        let crc = message.get_u32();
        let computed = IEEE.checksum(&message);
        if crc != computed {
            return Err(format!(
                "message CRC mismatch: stored {crc:#010x}, computed {computed:#010x}"
            ));
        }
        let magic = message.get_i8();
        let attributes = message.get_i8();
        let timestamp = match magic {
            0 => NO_TIMESTAMP,
            1 if message.remaining() >= 8 => message.get_i64(),
            1 => return Err("magic 1 message without its timestamp".into()),
            other => return Err(format!("message magic {other} in a message set")),
        };
        let key = nullable_bytes(&mut message, "key")?;
        let value = nullable_bytes(&mut message, "value")?;
        let codec = attributes & CODEC_MASK;
        if codec == 0 {
            out.push(Message {
                timestamp,
                key,
                value,
            });
            continue;
        }
        if inner {
            return Err("a compressed message inside a compressed message".into());
        }
        let compression = match codec {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            other => return Err(format!("unknown message codec {other}")),
        };
        let mut value = value.ok_or("compressed message without a value")?;
        if magic == 0 && compression == Compression::Lz4 {
            value = repair_lz4_header_checksum(&value)?;
        }
        let first = out.len();
        read_messages(inflate(compression, &value)?, true, out)?;
        // A wrapper stamped with the log-append time stamps what it wraps.
        if magic == 1 && attributes & LOG_APPEND_TIME_FLAG != 0 {
            for message in &mut out[first..] {
                message.timestamp = timestamp;
            }
        }
    }
    Ok(())
}

fn nullable_bytes(message: &mut Bytes, field: &str) -> Result<Option<Bytes>, String> {
    if message.remaining() < 4 {
        return Err(format!("message {field} length missing"));
    }
    let length = message.get_i32();
    if length < 0 {
        return Ok(None);
    }
    if length as usize > message.remaining() {
        return Err(format!(
            "message {field} of {length} bytes overruns the message"
        ));
    }
    Ok(Some(message.split_to(length as usize)))
}

/// Converts the v2 batches of a fetched record set into a message set of `magic` (0 for Fetch
/// v0–1, 1 for v2–3), uncompressed, offsets absolute; control batches are left out and a
/// partial batch at the end (the fetch's size limit) is dropped, as old consumers expect.
pub fn down_convert(records: &[u8], magic: i8) -> Result<Bytes, String> {
    debug_assert!(magic == 0 || magic == 1);
    let mut out = BytesMut::new();
    for batch in Batches::new(records) {
        let Ok((_, batch)) = batch else {
            // A partial batch can only be the last: the fetch's size limit cut it.
            break;
        };
        if batch.is_control() {
            continue;
        }
        let mut bytes = Bytes::copy_from_slice(batch.as_bytes());
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut bytes,
            Some(|compressed: &mut Bytes, compression| {
                inflate(compression, compressed).map_err(anyhow::Error::msg)
            }),
        )
        .map_err(|e| format!("batch at offset {}: {e}", batch.base_offset()))?;
        for record in &set.records {
            let log_append = record.timestamp_type == TimestampType::LogAppend;
            put_message(&mut out, magic, record, log_append);
        }
    }
    Ok(out.freeze())
}

fn put_message(out: &mut BytesMut, magic: i8, record: &Record, log_append: bool) {
    let start = out.len();
    out.put_i64(record.offset);
    out.put_i32(0); // size, written below
    out.put_u32(0); // crc, written below
    let checked = out.len();
    out.put_i8(magic);
    let attributes = if magic == 1 && log_append {
        LOG_APPEND_TIME_FLAG
    } else {
        0
    };
    out.put_i8(attributes);
    if magic == 1 {
        out.put_i64(record.timestamp);
    }
    for field in [&record.key, &record.value] {
        match field {
            None => out.put_i32(-1),
            Some(bytes) => {
                out.put_i32(bytes.len() as i32);
                out.put_slice(bytes);
            }
        }
    }
    let size = (out.len() - start - 12) as i32;
    out[start + 8..start + 12].copy_from_slice(&size.to_be_bytes());
    let crc = IEEE.checksum(&out[checked..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_be_bytes());
}

/// The LZ4 frame magic number, as it lies in the frame (little-endian).
const LZ4_FRAME_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// The frame descriptor's flag for an 8-byte content size after the BD byte.
const LZ4_CONTENT_SIZE_FLAG: u8 = 0x08;

/// A magic 0 LZ4 frame as Kafka 0.8–0.9 clients wrote it, before KIP-57: their frame header
/// checksum covered the wrong bytes (the magic number too). Kafka reads magic 0 LZ4 ignoring
/// that checksum; ferry puts the right one in (the second byte of the xxh32 of the descriptor)
/// so the standard decoder takes the frame. Every block is still checked as usual.
fn repair_lz4_header_checksum(frame: &[u8]) -> Result<Bytes, String> {
    if frame.len() < 7 || frame[..4] != LZ4_FRAME_MAGIC {
        return Err("LZ4 message without an LZ4 frame".into());
    }
    let content_size = if frame[4] & LZ4_CONTENT_SIZE_FLAG != 0 {
        8
    } else {
        0
    };
    let checksum_at = 6 + content_size;
    if frame.len() <= checksum_at {
        return Err("LZ4 frame descriptor cut short".into());
    }
    let mut repaired = frame.to_vec();
    repaired[checksum_at] = (xxhash_rust::xxh32::xxh32(&frame[4..checksum_at], 0) >> 8) as u8;
    Ok(Bytes::from(repaired))
}

/// Inflates a message's or batch's records (see [`crate::compression::inflate`]).
fn inflate(compression: Compression, compressed: &[u8]) -> Result<Bytes, String> {
    let codec = match compression {
        Compression::None => crate::batch::Compression::None,
        Compression::Gzip => crate::batch::Compression::Gzip,
        Compression::Snappy => crate::batch::Compression::Snappy,
        Compression::Lz4 => crate::batch::Compression::Lz4,
        Compression::Zstd => crate::batch::Compression::Zstd,
    };
    crate::compression::inflate(codec, compressed).map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_template() -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: -1,
            key: None,
            value: None,
            headers: Default::default(),
        }
    }

    fn message(magic: i8, offset: i64, key: &[u8], value: &[u8], timestamp: i64) -> BytesMut {
        let record = Record {
            offset,
            timestamp,
            key: Some(Bytes::copy_from_slice(key)),
            value: Some(Bytes::copy_from_slice(value)),
            ..record_template()
        };
        let mut out = BytesMut::new();
        put_message(&mut out, magic, &record, false);
        out
    }

    /// A gzip wrapper message around `inner`, as an old producer writes it.
    fn gzip_wrapper(magic: i8, inner: &[u8]) -> BytesMut {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(inner).unwrap();
        let compressed = encoder.finish().unwrap();
        let mut wrapper = message(magic, 0, b"", &compressed, 1_700_000_000_000);
        // Set the codec bits and recompute the CRC.
        let attributes = MESSAGE_PREFIX_BYTES + 1;
        wrapper[attributes] = 1;
        let crc = IEEE.checksum(&wrapper[MESSAGE_PREFIX_BYTES..]);
        wrapper[12..16].copy_from_slice(&crc.to_be_bytes());
        wrapper
    }

    fn batch_records(batch: &Bytes) -> Vec<Record> {
        let mut bytes = batch.clone();
        RecordBatchDecoder::decode(&mut bytes).unwrap().records
    }

    #[test]
    fn old_message_sets_convert_up_to_one_v2_batch() {
        let mut set = message(0, 0, b"k0", b"v0", 0);
        set.extend_from_slice(&message(1, 1, b"k1", b"v1", 1_700_000_000_123));
        let mut inner = message(1, 0, b"k2", b"v2", 1_700_000_000_200);
        inner.extend_from_slice(&message(1, 1, b"k3", b"v3", 1_700_000_000_300));
        set.extend_from_slice(&gzip_wrapper(1, &inner));
        let batch = up_convert(set.freeze()).unwrap();
        let view = crate::batch::BatchView::parse(&batch).unwrap();
        view.validate().unwrap();
        view.verify_crc().unwrap();
        assert_eq!(view.record_count(), 4);
        assert!(!view.has_producer_id());
        let records = batch_records(&batch);
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.offset, r.timestamp, r.key.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, NO_TIMESTAMP, Bytes::from_static(b"k0")),
                (1, 1_700_000_000_123, Bytes::from_static(b"k1")),
                (2, 1_700_000_000_200, Bytes::from_static(b"k2")),
                (3, 1_700_000_000_300, Bytes::from_static(b"k3")),
            ]
        );
    }

    #[test]
    fn damaged_message_sets_are_refused_with_a_reason() {
        let good = message(1, 0, b"k", b"v", 5);
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut bad_magic = message(1, 0, b"k", b"v", 5);
        bad_magic[MESSAGE_PREFIX_BYTES] = 2;
        let crc = IEEE.checksum(&bad_magic[MESSAGE_PREFIX_BYTES..]);
        bad_magic[12..16].copy_from_slice(&crc.to_be_bytes());
        let cases: [(&str, Bytes, &str); 5] = [
            ("flipped bit", flipped.freeze(), "CRC mismatch"),
            ("magic 2", bad_magic.freeze(), "magic 2"),
            (
                "cut short",
                good.clone().freeze().slice(..good.len() - 3),
                "size",
            ),
            ("empty", Bytes::new(), "no message"),
            (
                "trailing",
                {
                    let mut t = good.clone();
                    t.extend_from_slice(&[0, 0, 0]);
                    t.freeze()
                },
                "trailing",
            ),
        ];
        for (name, set, expected) in cases {
            let error = up_convert(set).unwrap_err();
            assert!(error.contains(expected), "{name}: {error}");
        }
        // Control: the undamaged message converts.
        assert!(up_convert(good.freeze()).is_ok());
    }

    /// An LZ4 frame with its header checksum computed as Kafka 0.8–0.9 clients did it.
    fn old_kafka_lz4(payload: &[u8]) -> Vec<u8> {
        let mut frame =
            crate::compression::deflate(crate::batch::Compression::Lz4, payload).unwrap();
        assert_eq!(frame[4] & LZ4_CONTENT_SIZE_FLAG, 0, "no content size here");
        frame[6] = (xxhash_rust::xxh32::xxh32(&frame[0..6], 0) >> 8) as u8;
        frame
    }

    #[test]
    fn magic_0_lz4_with_the_old_header_checksum_converts() {
        let inner = message(0, 0, b"k", b"lz4 by a 0.9 client", -1);
        let broken = old_kafka_lz4(&inner);
        assert!(
            inflate(Compression::Lz4, &broken).is_err(),
            "control: the standard decoder refuses the old checksum"
        );
        for (magic, expect_ok) in [(0, true), (1, false)] {
            let wrapper = Record {
                value: Some(Bytes::from(broken.clone())),
                key: None,
                ..record_template()
            };
            let mut set = BytesMut::new();
            put_message(&mut set, magic, &wrapper, false);
            // put_message wrote codec 0: mark the wrapper LZ4 and fix its CRC.
            set[MESSAGE_PREFIX_BYTES + 1] = 3;
            let crc = IEEE.checksum(&set[MESSAGE_PREFIX_BYTES..]);
            set[12..16].copy_from_slice(&crc.to_be_bytes());
            let converted = up_convert(set.freeze());
            assert_eq!(converted.is_ok(), expect_ok, "magic {magic}: {converted:?}");
            if let Ok(batch) = converted {
                let records = RecordBatchDecoder::decode(&mut batch.clone())
                    .unwrap()
                    .records;
                assert_eq!(
                    records[0].value.as_deref(),
                    Some(&b"lz4 by a 0.9 client"[..])
                );
            }
        }
    }

    #[test]
    fn v2_batches_convert_down_to_both_magics_and_back() {
        let mut set = message(1, 0, b"a", b"1", 1_700_000_000_001);
        set.extend_from_slice(&message(1, 1, b"b", b"2", 1_700_000_000_002));
        let mut batch = BytesMut::from(&up_convert(set.freeze()).unwrap()[..]);
        crate::batch::assign_base_offset(&mut batch, 40, 0);
        // A partial batch after it (the fetch's size limit) is dropped.
        let mut fetched = batch.clone();
        fetched.extend_from_slice(&batch[..20]);
        for magic in [0, 1] {
            let old = down_convert(&fetched, magic).unwrap();
            let mut messages = Vec::new();
            read_messages(old.clone(), false, &mut messages).unwrap();
            let keys: Vec<_> = messages.iter().map(|m| m.key.clone().unwrap()).collect();
            assert_eq!(keys, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
            let offsets: Vec<i64> = (0..2)
                .scan(old.clone(), |rest, _| {
                    let offset = rest.get_i64();
                    let size = rest.get_i32() as usize;
                    rest.advance(size);
                    Some(offset)
                })
                .collect();
            assert_eq!(offsets, [40, 41], "absolute offsets, magic {magic}");
            let timestamp = messages[0].timestamp;
            let expected = if magic == 1 {
                1_700_000_000_001
            } else {
                NO_TIMESTAMP
            };
            assert_eq!(timestamp, expected, "magic {magic}");
        }
    }
}
