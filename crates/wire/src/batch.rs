//! A zero-copy view of Kafka v2 record batch headers (magic 2), the unit ferry stores and serves.
//!
//! Layout of the 61-byte header (big-endian), as documented in `docs/segment-format.md`:
//!
//! ```text
//! 0  base_offset i64          8  batch_length i32 (bytes after this field)
//! 12 partition_leader_epoch   16 magic i8 (= 2)
//! 17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16           23 last_offset_delta i32
//! 27 base_timestamp i64       35 max_timestamp i64
//! 43 producer_id i64          51 producer_epoch i16
//! 53 base_sequence i32        57 record_count i32
//! ```
//!
//! The broker rewrites only `base_offset` and `partition_leader_epoch`, both outside the CRC, so a
//! stored batch keeps the CRC the producer computed.

use thiserror::Error;

/// Size of the fixed v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Offset of the `batch_length` field; the length counts the bytes after it.
pub const LOG_OVERHEAD_BYTES: usize = 12;
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// Compression codec bits (0..=2) of the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is truncated: {available} bytes available, header needs {needed}")]
    Truncated { available: usize, needed: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    Magic(i8),
    #[error("batch length {0} is invalid")]
    Length(i32),
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("record count {count} does not fit last offset delta {last_offset_delta}")]
    Count { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {0}")]
    Codec(i16),
    #[error("record {index} is malformed: {reason}")]
    Record { index: usize, reason: &'static str },
    #[error("base offset {base_offset} plus last offset delta {last_offset_delta} leaves no next offset")]
    Offsets {
        base_offset: i64,
        last_offset_delta: i32,
    },
}

/// One record of an uncompressed batch, without its headers: the key and value for the broker's
/// internal logs, the deltas for ListOffsets by timestamp. ferry decodes client records nowhere
/// else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Where a batch lies, as its header says: enough to hop from batch to batch reading only
/// headers (`HEADER_BYTES` each) rather than whole batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    pub base_offset: i64,
    pub last_offset: i64,
    pub total_bytes: usize,
}

impl BatchSpan {
    /// Reads the header at the start of `bytes` (at least `HEADER_BYTES`; the body need not
    /// be present), checking the magic and that the length covers the header.
    pub fn parse(bytes: &[u8]) -> Result<BatchSpan, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                needed: HEADER_BYTES,
            });
        }
        let header = BatchView {
            bytes: &bytes[..HEADER_BYTES],
        };
        let magic = header.magic();
        if magic != MAGIC_V2 {
            return Err(BatchError::Magic(magic));
        }
        let length = header.batch_length();
        if length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::Length(length));
        }
        // Both fields come from the network or the disk; the log computes `last_offset + 1`, so
        // that must exist too. Every `BatchView` is parsed here first, so `last_offset` cannot
        // overflow afterwards.
        let base_offset = header.base_offset();
        let last_offset_delta = header.last_offset_delta();
        base_offset
            .checked_add(i64::from(last_offset_delta))
            .filter(|&last| last < i64::MAX)
            .ok_or(BatchError::Offsets {
                base_offset,
                last_offset_delta,
            })?;
        Ok(BatchSpan {
            base_offset,
            last_offset: header.last_offset(),
            total_bytes: header.total_bytes(),
        })
    }
}

/// A view of one v2 batch at the start of `bytes` (which may hold more batches after it).
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Views the batch at the start of `bytes`, checking that the header and the whole body are
    /// present and that the magic is 2. The CRC is checked separately by [`BatchView::verify_crc`].
    pub fn parse(bytes: &'a [u8]) -> Result<BatchView<'a>, BatchError> {
        let total = BatchSpan::parse(bytes)?.total_bytes;
        if bytes.len() < total {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                needed: total,
            });
        }
        Ok(BatchView {
            bytes: &bytes[..total],
        })
    }

    /// Checks the structure beyond the header: CRC, codec and record count.
    pub fn validate(&self) -> Result<(), BatchError> {
        self.verify_crc()?;
        self.compression()?;
        let count = self.record_count();
        let delta = self.last_offset_delta();
        // A compacted batch may hold fewer records than its offset span, never more.
        if count < 0 || delta < 0 || (count > 0 && count > delta + 1) {
            return Err(BatchError::Count {
                count,
                last_offset_delta: delta,
            });
        }
        Ok(())
    }

    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let stored = self.crc();
        let computed = crc32c::crc32c(&self.bytes[CRC_START..]);
        if stored != computed {
            return Err(BatchError::Crc { stored, computed });
        }
        Ok(())
    }

    /// The whole batch, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length() as usize
    }
    pub fn base_offset(&self) -> i64 {
        i64_at(self.bytes, 0)
    }
    pub fn batch_length(&self) -> i32 {
        i32_at(self.bytes, 8)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(self.bytes, 12)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[16] as i8
    }
    pub fn crc(&self) -> u32 {
        i32_at(self.bytes, 17) as u32
    }
    pub fn attributes(&self) -> i16 {
        i16_at(self.bytes, 21)
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(self.bytes, 23)
    }
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.bytes, 27)
    }
    pub fn max_timestamp(&self) -> i64 {
        i64_at(self.bytes, 35)
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.bytes, 43)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16_at(self.bytes, 51)
    }
    pub fn base_sequence(&self) -> i32 {
        i32_at(self.bytes, 53)
    }
    pub fn record_count(&self) -> i32 {
        i32_at(self.bytes, 57)
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + self.last_offset_delta() as i64
    }
    /// The sequence number of the last record (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base < 0 {
            return base;
        }
        ((base as i64 + self.last_offset_delta() as i64) % (i32::MAX as i64 + 1)) as i32
    }
    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes() & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::Codec(other)),
        }
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & 0x08 != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id() >= 0
    }

    /// Decodes the records of an uncompressed batch (the broker's own internal logs, and
    /// ListOffsets by timestamp for the one batch it answers with).
    pub fn records(&self) -> Result<Vec<RecordView<'a>>, BatchError> {
        if self.compression()? != Compression::None {
            return Err(BatchError::Record {
                index: 0,
                reason: "compressed batches are not decoded",
            });
        }
        let count = self.record_count().max(0) as usize;
        let mut rest = &self.bytes[HEADER_BYTES..];
        let mut records = Vec::with_capacity(count.min(rest.len()));
        for index in 0..count {
            let fail = |reason| BatchError::Record { index, reason };
            let length = take_varlong(&mut rest).ok_or(fail("length"))?;
            let length = usize::try_from(length).map_err(|_| fail("negative length"))?;
            if length > rest.len() {
                return Err(fail("length beyond the batch"));
            }
            let (mut record, after) = rest.split_at(length);
            rest = after;
            let _attributes = take_bytes(&mut record, 1).ok_or(fail("attributes"))?;
            let timestamp_delta = take_varlong(&mut record).ok_or(fail("timestamp delta"))?;
            let offset_delta = take_varlong(&mut record).ok_or(fail("offset delta"))? as i32;
            let key = take_nullable(&mut record).ok_or(fail("key"))?;
            let value = take_nullable(&mut record).ok_or(fail("value"))?;
            records.push(RecordView {
                offset_delta,
                timestamp_delta,
                key,
                value,
            });
        }
        Ok(records)
    }
}

pub(crate) fn take_bytes<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (taken, after) = rest.split_at(n);
    *rest = after;
    Some(taken)
}

pub(crate) fn take_varlong(rest: &mut &[u8]) -> Option<i64> {
    let mut zigzag = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *take_bytes(rest, 1)?.first()?;
        zigzag |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
        }
    }
    None
}

pub(crate) fn take_nullable<'a>(rest: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    match take_varlong(rest)? {
        -1 => Some(None),
        n if n >= 0 => take_bytes(rest, usize::try_from(n).ok()?).map(Some),
        _ => None,
    }
}

/// Iterates over the batches packed one after another in a buffer (a produce request's records,
/// or bytes read from a segment). Stops at the first error, which it yields.
pub struct Batches<'a> {
    rest: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8]) -> Batches<'a> {
        Batches {
            rest: bytes,
            position: 0,
            failed: false,
        }
    }
    /// Byte position in the original buffer of the next batch.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(usize, BatchView<'a>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match BatchView::parse(self.rest) {
            Ok(view) => {
                let position = self.position;
                let total = view.total_bytes();
                self.rest = &self.rest[total..];
                self.position += total;
                Some(Ok((position, view)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// Rewrites the fields the broker owns in a batch it is about to store.
pub fn assign_base_offset(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    assert!(
        batch.len() >= HEADER_BYTES,
        "assign_base_offset on a truncated batch"
    );
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Sets the max timestamp and the log-append-time flag (`message.timestamp.type=LogAppendTime`).
/// Changes CRC-covered bytes, so the CRC is recomputed.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    assert!(
        batch.len() >= HEADER_BYTES,
        "set_log_append_time on a truncated batch"
    );
    let attributes = i16_at(batch, 21) | 0x08;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Builds an uncompressed v2 batch from (key, value) pairs, for control batches written by the
/// broker itself and for tests. Timestamps are all `timestamp_ms`.
pub fn build_batch(
    records: &[(Option<&[u8]>, Option<&[u8]>)],
    timestamp_ms: i64,
    producer: ProducerFields,
    attributes: i16,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, (key, value)) in records.iter().enumerate() {
        let mut record = Vec::new();
        record.push(0u8); // record attributes
        put_varlong(&mut record, 0); // timestamp delta
        put_varlong(&mut record, index as i64); // offset delta
        put_bytes(&mut record, *key);
        put_bytes(&mut record, *value);
        put_varlong(&mut record, 0); // header count
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let mut batch = Vec::with_capacity(HEADER_BYTES + body.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    let length = (HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32;
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes());
    batch.push(MAGIC_V2 as u8);
    batch.extend_from_slice(&0u32.to_be_bytes());
    batch.extend_from_slice(&attributes.to_be_bytes());
    let last_offset_delta = records.len().saturating_sub(1) as i32;
    batch.extend_from_slice(&last_offset_delta.to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&producer.producer_id.to_be_bytes());
    batch.extend_from_slice(&producer.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&producer.base_sequence.to_be_bytes());
    batch.extend_from_slice(&(records.len() as i32).to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Producer identity fields of a batch header; `NONE` for batches without idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerFields {
    pub const NONE: ProducerFields = ProducerFields {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if zigzag < 0x80 {
            out.push(zigzag as u8);
            return;
        }
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_batch(
            &[(Some(b"k1"), Some(b"v1")), (None, Some(b"value-2"))],
            1_700_000_000_000,
            ProducerFields {
                producer_id: 7,
                producer_epoch: 1,
                base_sequence: 10,
            },
            0,
        )
    }

    #[test]
    fn built_batch_parses_and_validates() {
        let bytes = sample();
        let view = BatchView::parse(&bytes).unwrap();
        view.validate().unwrap();
        assert_eq!(view.total_bytes(), bytes.len());
        assert_eq!(view.record_count(), 2);
        assert_eq!(view.last_offset_delta(), 1);
        assert_eq!(view.producer_id(), 7);
        assert_eq!(view.last_sequence(), 11);
        assert_eq!(view.compression(), Ok(Compression::None));
    }

    #[test]
    fn records_decode_back() {
        let bytes = sample();
        let view = BatchView::parse(&bytes).unwrap();
        let records = view.records().unwrap();
        assert_eq!(
            records,
            vec![
                RecordView {
                    offset_delta: 0,
                    timestamp_delta: 0,
                    key: Some(b"k1"),
                    value: Some(b"v1")
                },
                RecordView {
                    offset_delta: 1,
                    timestamp_delta: 0,
                    key: None,
                    value: Some(b"value-2")
                },
            ]
        );
        let tombstone = build_batch(&[(Some(b"k"), None)], 0, ProducerFields::NONE, 0);
        let records = BatchView::parse(&tombstone).unwrap().records().unwrap();
        assert_eq!(records[0].value, None);
    }

    #[test]
    fn base_offset_rewrite_keeps_crc() {
        let mut bytes = sample();
        assign_base_offset(&mut bytes, 4242, 3);
        let view = BatchView::parse(&bytes).unwrap();
        view.validate().unwrap();
        assert_eq!(view.base_offset(), 4242);
        assert_eq!(view.last_offset(), 4243);
        assert_eq!(view.partition_leader_epoch(), 3);
    }

    #[test]
    fn flipped_bit_fails_crc() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let view = BatchView::parse(&bytes).unwrap();
        assert!(matches!(view.validate(), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let bytes = sample();
        let check = |bytes: &[u8], expect: BatchError| {
            assert_eq!(BatchView::parse(bytes).err(), Some(expect));
        };
        check(
            &bytes[..10],
            BatchError::Truncated {
                available: 10,
                needed: HEADER_BYTES,
            },
        );
        check(
            &bytes[..bytes.len() - 1],
            BatchError::Truncated {
                available: bytes.len() - 1,
                needed: bytes.len(),
            },
        );
        let mut magic = bytes.clone();
        magic[16] = 1;
        check(&magic, BatchError::Magic(1));
        let mut length = bytes.clone();
        length[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        check(&length, BatchError::Length(-5));
    }

    /// Issue 8: the segment_recovery fuzz target found `last_offset` overflowing (a panic with
    /// overflow checks, a wrapped negative offset without) on a base offset near `i64::MAX`.
    #[test]
    fn issue_8_offsets_past_i64_max_are_rejected() {
        let check = |base_offset: i64, last_offset_delta: i32, expect: Option<BatchError>| {
            let mut bytes = sample();
            bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
            bytes[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
            assert_eq!(BatchSpan::parse(&bytes).err(), expect);
            assert_eq!(BatchView::parse(&bytes).err(), expect);
            assert_eq!(Batches::new(&bytes).next().unwrap().err(), expect);
        };
        let offsets = |base_offset, last_offset_delta| {
            Some(BatchError::Offsets {
                base_offset,
                last_offset_delta,
            })
        };
        check(i64::MAX, 1, offsets(i64::MAX, 1));
        check(i64::MAX - 6, 6, offsets(i64::MAX - 6, 6));
        check(i64::MAX, 0, offsets(i64::MAX, 0));
        check(i64::MIN, -1, offsets(i64::MIN, -1));
        check(i64::MAX - 7, 6, None);
        check(0, i32::MAX, None);
        check(-1, 1, None);
    }

    #[test]
    fn log_append_time_rewrite_keeps_batch_valid() {
        let mut bytes = sample();
        set_log_append_time(&mut bytes, 99);
        let view = BatchView::parse(&bytes).unwrap();
        view.validate().unwrap();
        assert!(view.is_log_append_time());
        assert_eq!(view.max_timestamp(), 99);
    }

    #[test]
    fn batches_iterates_and_stops_at_garbage() {
        let mut bytes = sample();
        bytes.extend_from_slice(&sample());
        bytes.extend_from_slice(&[1, 2, 3]);
        let items: Vec<_> = Batches::new(&bytes).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok());
        assert!(items[1].is_ok());
        assert!(items[2].is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(view) = BatchView::parse(&bytes) {
                let _ = view.validate();
                let _ = view.last_sequence();
                let _ = view.last_offset();
                let _ = view.records();
            }
        }
    }
}
