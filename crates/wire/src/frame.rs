//! Kafka frames: a big-endian i32 length, then a request header and body. This module decodes a
//! request frame into its header and typed body and encodes a response frame, and it knows the
//! one quirk of the protocol: ApiVersions responses always use header v0 so that a client on an
//! unknown version can still read the error.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::legacy;

/// Bytes of the length prefix of every frame.
pub const LENGTH_BYTES: usize = 4;

/// The first fields of every request header, readable before the API is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame is shorter than a request header ({0} bytes)")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Reads api key, version and correlation id from a frame body (without the length prefix).
pub fn header_prefix(body: &[u8]) -> Result<HeaderPrefix, FrameError> {
    if body.len() < 8 {
        return Err(FrameError::Short(body.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([body[0], body[1]]),
        api_version: i16::from_be_bytes([body[2], body[3]]),
        correlation_id: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
    })
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes a request frame body (without the length prefix). The caller has already checked that
/// the API and version are supported. A version older than the codec's (see [`legacy`]) comes
/// back as its stand-in's request, the header saying the stand-in version. Bytes after the body are ignored, as Kafka does: librdkafka
/// sends Metadata v12 with fields newer schemas dropped.
pub fn decode_request(mut body: Bytes) -> Result<Request, FrameError> {
    let prefix = header_prefix(&body)?;
    let api_key =
        ApiKey::try_from(prefix.api_key).map_err(|()| FrameError::UnknownApi(prefix.api_key))?;
    let version = prefix.api_version;
    let decode_error = |reason: String| FrameError::Decode {
        api: api_key,
        version,
        reason,
    };
    let header_version = api_key.request_header_version(version);
    let mut header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| decode_error(e.to_string()))?;
    // A version older than the codec knows is read as its stand-in, which the broker handles.
    let request = match legacy::stand_in(api_key, version) {
        Some(stand_in) => {
            let request =
                legacy::decode_request(api_key, version, &mut body).map_err(decode_error)?;
            header.request_api_version = stand_in;
            request
        }
        None => RequestKind::decode(api_key, &mut body, version)
            .map_err(|e| decode_error(e.to_string()))?,
    };
    Ok(Request {
        api_key,
        header,
        body: request,
    })
}

/// Encodes a response frame, length prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, FrameError> {
    let encode_error = |reason: String| FrameError::Decode {
        api: api_key,
        version,
        reason,
    };
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    // ApiVersions answers with header v0 whatever the request version (KIP-511).
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame, header_version)
        .map_err(|e| encode_error(e.to_string()))?;
    if legacy::stand_in(api_key, version).is_some() {
        legacy::encode_response(api_key, version, response, &mut frame).map_err(encode_error)?;
    } else {
        response
            .encode(&mut frame, version)
            .map_err(|e| encode_error(e.to_string()))?;
    }
    let length = (frame.len() - LENGTH_BYTES) as i32;
    frame[0..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame.freeze())
}

/// Encodes a request frame, length prefix included (used by tests and the chaos proxy's probes).
pub fn encode_request(header: &RequestHeader, request: &RequestKind) -> Result<Bytes, FrameError> {
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| FrameError::UnknownApi(header.request_api_key))?;
    let version = header.request_api_version;
    let encode_error = |reason: String| FrameError::Decode {
        api: api_key,
        version,
        reason,
    };
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    header
        .encode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| encode_error(e.to_string()))?;
    request
        .encode(&mut frame, version)
        .map_err(|e| encode_error(e.to_string()))?;
    let length = (frame.len() - LENGTH_BYTES) as i32;
    frame[0..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn request_round_trips_through_a_frame() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(9)
            .with_correlation_id(77);
        let frame =
            encode_request(&header, &RequestKind::Metadata(MetadataRequest::default())).unwrap();
        let body = frame.slice(LENGTH_BYTES..);
        let request = decode_request(body).unwrap();
        assert_eq!(request.api_key, ApiKey::Metadata);
        assert_eq!(request.header.correlation_id, 77);
    }

    #[test]
    fn short_and_unknown_frames_are_errors() {
        assert!(matches!(header_prefix(&[0, 1]), Err(FrameError::Short(2))));
        let unknown = Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        assert!(matches!(
            decode_request(unknown),
            Err(FrameError::UnknownApi(0x7f7f))
        ));
    }
}
