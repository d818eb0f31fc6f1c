//! What log compaction needs from a batch: each record's offset, key and whether it is a
//! tombstone, and the batch rewritten with only the records compaction keeps.
//!
//! A rewritten batch keeps its header as it was (base offset, last offset delta, timestamps,
//! producer id, epoch and base sequence, attributes and codec), as Kafka's cleaner does for v2
//! batches, so offsets and the producer's sequence bookkeeping survive; only the record count,
//! the length and the CRC change. Each kept record's bytes are copied as they were (offset and
//! timestamp deltas stay relative to the same base), then compressed again with the batch's
//! codec. A batch left with no record is a bare header without a codec, as Kafka writes one.

use crate::batch::{take_bytes, take_nullable, take_varlong, BatchView, HEADER_BYTES};
use crate::compression::{deflate, inflate};

/// Where the CRC and the bytes it covers start, the length field, and the record count.
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const LENGTH_AT: usize = 8;
const LENGTH_FROM: usize = 12;
const RECORD_COUNT_AT: usize = 57;
const ATTRIBUTES_AT: usize = 21;
const CODEC_MASK: i16 = 0x07;

/// One record as compaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    pub offset: i64,
    /// The record's timestamp (the batch's for LogAppendTime), -1 when it has none.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: the key's deletion.
    pub tombstone: bool,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    offset: i64,
    timestamp: i64,
    key: Option<(usize, usize)>,
    tombstone: bool,
}

/// A batch's records, inflated and located.
#[derive(Debug)]
pub struct Inflated {
    body: Vec<u8>,
    spans: Vec<Span>,
}

impl Inflated {
    /// Inflates and walks the records of a data batch (not a control batch). An error says what
    /// is malformed; the caller's batch passed its CRC check, so that is damage or a codec the
    /// producer got wrong.
    pub fn of(view: &BatchView<'_>) -> Result<Inflated, String> {
        let codec = view.compression().map_err(|e| e.to_string())?;
        let body = inflate(codec, &view.as_bytes()[HEADER_BYTES..])?;
        let count = view.record_count();
        let mut spans = Vec::with_capacity(count.max(0) as usize);
        let mut rest: &[u8] = &body;
        for index in 0..count.max(0) {
            let fail =
                |what: &str| format!("record {index} at offset {}: {what}", view.base_offset());
            let start = body.len() - rest.len();
            let length = take_varlong(&mut rest).ok_or_else(|| fail("length"))?;
            let length = usize::try_from(length).map_err(|_| fail("negative length"))?;
            let record_start = body.len() - rest.len();
            let mut record =
                take_bytes(&mut rest, length).ok_or_else(|| fail("length beyond the batch"))?;
            take_bytes(&mut record, 1).ok_or_else(|| fail("attributes"))?;
            let timestamp_delta =
                take_varlong(&mut record).ok_or_else(|| fail("timestamp delta"))?;
            let offset_delta = take_varlong(&mut record).ok_or_else(|| fail("offset delta"))?;
            let key = take_nullable(&mut record).ok_or_else(|| fail("key"))?;
            // Where the key lies in `body` (it is a slice of it).
            let key = key.map(|key| {
                let start = key.as_ptr() as usize - body.as_ptr() as usize;
                (start, start + key.len())
            });
            let value = take_nullable(&mut record).ok_or_else(|| fail("value"))?;
            let timestamp = if view.is_log_append_time() {
                view.max_timestamp()
            } else if view.base_timestamp() < 0 {
                -1
            } else {
                view.base_timestamp().saturating_add(timestamp_delta)
            };
            spans.push(Span {
                start,
                end: record_start + length,
                offset: view.base_offset() + offset_delta,
                timestamp,
                key,
                tombstone: value.is_none(),
            });
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes after the last of {count} records at offset {}",
                rest.len(),
                view.base_offset()
            ));
        }
        Ok(Inflated { body, spans })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The records, in offset order.
    pub fn records(&self) -> impl Iterator<Item = KeyedRecord<'_>> {
        self.spans.iter().map(|span| KeyedRecord {
            offset: span.offset,
            timestamp: span.timestamp,
            key: span.key.map(|(start, end)| &self.body[start..end]),
            tombstone: span.tombstone,
        })
    }

    /// `view` (the batch these records came from) rewritten with the records whose `keep` is
    /// true: the header as it was, but for the record count, the length and the CRC.
    pub fn rebuild(&self, view: &BatchView<'_>, keep: &[bool]) -> Result<Vec<u8>, String> {
        assert_eq!(keep.len(), self.spans.len(), "one verdict per record");
        let mut body = Vec::with_capacity(self.body.len());
        let mut count = 0i32;
        for (span, _) in self.spans.iter().zip(keep).filter(|(_, &keep)| keep) {
            body.extend_from_slice(&self.body[span.start..span.end]);
            count += 1;
        }
        let codec = view.compression().map_err(|e| e.to_string())?;
        let mut batch = Vec::with_capacity(HEADER_BYTES + body.len());
        batch.extend_from_slice(&view.as_bytes()[..HEADER_BYTES]);
        if count == 0 {
            // No record left: a bare header, uncompressed, as Kafka writes an empty batch
            // (librdkafka asserts on a compressed batch that inflates to nothing).
            let attributes = view.attributes() & !CODEC_MASK;
            batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        } else {
            batch.extend_from_slice(&deflate(codec, &body)?);
        }
        let length = i32::try_from(batch.len() - LENGTH_FROM).map_err(|_| "batch too large")?;
        batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_FROM..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, Compression, ProducerFields};

    /// `build_batch`'s uncompressed batch with its records compressed by `codec`.
    fn compressed(batch: &[u8], codec: Compression, codec_bits: i16) -> Vec<u8> {
        let mut out = batch[..HEADER_BYTES].to_vec();
        let attributes = i16::from_be_bytes([out[21], out[22]]) | codec_bits;
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&deflate(codec, &batch[HEADER_BYTES..]).unwrap());
        let length = (out.len() - LENGTH_FROM) as i32;
        out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&out[CRC_FROM..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn sample() -> Vec<u8> {
        let producer = ProducerFields {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 40,
        };
        let records: [(Option<&[u8]>, Option<&[u8]>); 4] = [
            (Some(b"k1"), Some(b"old")),
            (Some(b"k2"), None),
            (None, Some(b"keyless")),
            (Some(b"k1"), Some(b"new")),
        ];
        let mut batch = build_batch(&records, 1_000, producer, 0);
        batch[..8].copy_from_slice(&100i64.to_be_bytes());
        batch
    }

    #[test]
    fn records_are_located_and_a_rebuilt_batch_keeps_its_header() {
        for (codec, bits) in [
            (Compression::None, 0),
            (Compression::Gzip, 1),
            (Compression::Snappy, 2),
            (Compression::Lz4, 3),
            (Compression::Zstd, 4),
        ] {
            let batch = match codec {
                Compression::None => sample(),
                codec => compressed(&sample(), codec, bits),
            };
            let view = BatchView::parse(&batch).unwrap();
            view.validate().unwrap();
            let inflated = Inflated::of(&view).unwrap();
            let seen: Vec<_> = inflated
                .records()
                .map(|r| (r.offset, r.key, r.tombstone, r.timestamp))
                .collect();
            assert_eq!(
                seen,
                vec![
                    (100, Some(&b"k1"[..]), false, 1_000),
                    (101, Some(&b"k2"[..]), true, 1_000),
                    (102, None, false, 1_000),
                    (103, Some(&b"k1"[..]), false, 1_000),
                ],
                "{codec:?}"
            );
            let rebuilt = inflated
                .rebuild(&view, &[false, true, false, false])
                .unwrap();
            let after = BatchView::parse(&rebuilt).unwrap();
            after.validate().unwrap();
            assert_eq!(after.total_bytes(), rebuilt.len());
            assert_eq!(after.record_count(), 1);
            assert_eq!(after.compression().unwrap(), codec);
            // Offsets and the producer's bookkeeping are the original batch's.
            assert_eq!(after.base_offset(), 100);
            assert_eq!(after.last_offset(), 103);
            assert_eq!(after.base_sequence(), 40);
            assert_eq!(after.last_sequence(), view.last_sequence());
            assert_eq!(after.producer_id(), 7);
            assert_eq!(after.max_timestamp(), view.max_timestamp());
            let kept = Inflated::of(&after).unwrap();
            let kept: Vec<_> = kept
                .records()
                .map(|r| (r.offset, r.key, r.tombstone))
                .collect();
            assert_eq!(kept, vec![(101, Some(&b"k2"[..]), true)], "{codec:?}");
            // Nothing kept: an empty batch that still spans its offsets.
            let empty = inflated.rebuild(&view, &[false; 4]).unwrap();
            let empty = BatchView::parse(&empty).unwrap();
            empty.validate().unwrap();
            assert_eq!((empty.record_count(), empty.last_offset()), (0, 103));
            assert_eq!(empty.total_bytes(), HEADER_BYTES, "a bare header");
            assert_eq!(empty.compression().unwrap(), Compression::None);
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        let good = sample();
        let view = BatchView::parse(&good).unwrap();
        assert!(Inflated::of(&view).is_ok(), "control");
        // A record count that promises more records than the bytes hold.
        let mut more = good.clone();
        more[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&5i32.to_be_bytes());
        let view = BatchView::parse(&more).unwrap();
        let error = Inflated::of(&view).unwrap_err();
        assert!(error.contains("record 4"), "{error}");
        // One that promises fewer leaves bytes over.
        let mut fewer = good.clone();
        fewer[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
        let view = BatchView::parse(&fewer).unwrap();
        let error = Inflated::of(&view).unwrap_err();
        assert!(error.contains("after the last"), "{error}");
    }
}
