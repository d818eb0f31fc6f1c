//! A response frame as pieces, for Fetch: the encoded fields in the heap, and the record data
//! left as the `Bytes` the broker read (the file's own pages, mapped), so that the largest part
//! of a Fetch response is never copied into the heap. The pieces are written back to back.
//!
//! The codec (`kafka-protocol`) writes a record set with one `put_slice` of its bytes; the buffer
//! here recognises those bytes by address and length and keeps them as a piece of their own.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::frame::{FrameError, LENGTH_BYTES};

/// Record data at least this long is sent as its own piece; shorter data is cheaper to copy than
/// to hand to the socket as one more slice.
pub const SHARED_RECORDS_MIN_BYTES: usize = 16 << 10;

/// Encodes a Fetch response frame, length prefix included, as pieces to be written in order: its
/// record sets of at least [`SHARED_RECORDS_MIN_BYTES`] are pieces of their own, not copied. Byte
/// for byte the frame `frame::encode_response` makes.
pub fn encode_fetch_pieces(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
) -> Result<Vec<Bytes>, FrameError> {
    let encode_error = |reason: String| FrameError::Decode {
        api: ApiKey::Fetch,
        version,
        reason,
    };
    if crate::legacy::stand_in(ApiKey::Fetch, version).is_some() {
        // Old consumers get message sets, converted in the heap: one piece.
        let response = kafka_protocol::messages::ResponseKind::Fetch(response.clone());
        return crate::frame::encode_response(ApiKey::Fetch, version, correlation_id, &response)
            .map(|frame| vec![frame]);
    }
    let mut pieces = Pieces {
        shared: shared_records(response),
        ..Pieces::default()
    };
    let header_version = ApiKey::Fetch.response_header_version(version);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut pieces, header_version)
        .map_err(|e| encode_error(e.to_string()))?;
    response
        .encode(&mut pieces, version)
        .map_err(|e| encode_error(e.to_string()))?;
    let length = i32::try_from(pieces.offset())
        .map_err(|_| encode_error(format!("response of {} bytes", pieces.offset())))?;
    let mut out = Vec::with_capacity(pieces.done.len() + 2);
    out.push(Bytes::copy_from_slice(&length.to_be_bytes()));
    out.extend(pieces.done);
    if !pieces.current.is_empty() {
        out.push(pieces.current.freeze());
    }
    debug_assert_eq!(
        out.iter().map(Bytes::len).sum::<usize>(),
        length as usize + LENGTH_BYTES
    );
    Ok(out)
}

/// The record sets of a Fetch response long enough to be pieces of their own.
fn shared_records(response: &FetchResponse) -> Vec<Bytes> {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.clone())
        .filter(|records| records.len() >= SHARED_RECORDS_MIN_BYTES)
        .collect()
}

/// The buffer the codec writes into: finished pieces, and the heap piece being written.
#[derive(Default)]
struct Pieces {
    done: Vec<Bytes>,
    done_len: usize,
    current: BytesMut,
    /// Byte strings to keep as pieces when the codec puts them, recognised by address and length.
    shared: Vec<Bytes>,
}

impl Pieces {
    fn shared_piece(&self, src: &[u8]) -> Option<Bytes> {
        self.shared
            .iter()
            .find(|bytes| bytes.as_ptr() == src.as_ptr() && bytes.len() == src.len())
            .cloned()
    }

    /// Where `range` (frame offsets) lies in the heap piece being written.
    fn in_current(&self, range: Range<usize>) -> Range<usize> {
        assert!(
            range.start >= self.done_len,
            "the codec went back past a shared piece"
        );
        range.start - self.done_len..range.end - self.done_len
    }
}

// SAFETY: every method hands over to the heap piece being written (`BytesMut`, itself a sound
// `BufMut`); `put_slice` only adds whole pieces besides.
unsafe impl BufMut for Pieces {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is the current piece's.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared_piece(src) {
            Some(piece) => {
                let written = std::mem::take(&mut self.current).freeze();
                self.done_len += written.len() + piece.len();
                if !written.is_empty() {
                    self.done.push(written);
                }
                self.done.push(piece);
            }
            None => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for Pieces {
    fn offset(&self) -> usize {
        self.done_len + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        let at = self.in_current(offset..offset).start;
        self.current.resize(at, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let r = self.in_current(r);
        &mut self.current[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_response;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn fetch_response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(7)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    #[test]
    fn large_record_sets_are_pieces_of_their_own_and_the_frame_is_unchanged() {
        let big = Bytes::from(vec![7u8; SHARED_RECORDS_MIN_BYTES]);
        let small = Bytes::from(vec![9u8; SHARED_RECORDS_MIN_BYTES - 1]);
        let other = Bytes::from(vec![5u8; 3 * SHARED_RECORDS_MIN_BYTES]);
        let response = fetch_response(&[big.clone(), small, Bytes::new(), other.clone()]);
        // v11 (bytes with an i32 length) and v12+ (compact, flexible, tagged fields after).
        for version in [11, 12, 16] {
            let pieces = encode_fetch_pieces(version, 3, &response).unwrap();
            let whole = encode_response(
                ApiKey::Fetch,
                version,
                3,
                &ResponseKind::Fetch(response.clone()),
            )
            .unwrap();
            assert_eq!(pieces.concat(), whole.to_vec(), "v{version}");
            let shared: Vec<_> = pieces
                .iter()
                .filter(|p| p.as_ptr() == big.as_ptr() || p.as_ptr() == other.as_ptr())
                .collect();
            assert_eq!(
                shared.len(),
                2,
                "v{version}: both large sets kept, not copied"
            );
        }
    }

    #[test]
    fn a_response_without_shared_bytes_is_the_length_and_one_piece() {
        let response = fetch_response(&[Bytes::from_static(b"tiny")]);
        let pieces = encode_fetch_pieces(12, 1, &response).unwrap();
        assert_eq!(pieces.len(), 2);
        let whole = encode_response(ApiKey::Fetch, 12, 1, &ResponseKind::Fetch(response)).unwrap();
        assert_eq!(pieces.concat(), whole.to_vec());
    }
}
