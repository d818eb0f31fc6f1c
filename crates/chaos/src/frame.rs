//! The little of the Kafka frame format the proxy needs: the length prefix and the first header
//! fields, read without decoding any message body (and without the `kafka-protocol` crate).
//!
//! ```text
//! frame    = length: i32 BE (bytes that follow) | body
//! request  = api_key: i16 BE | api_version: i16 BE | correlation_id: i32 BE | ...
//! response = correlation_id: i32 BE | ...
//! ```

/// Bytes in the length prefix of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// The default limit on a whole frame, length prefix included: the broker's request limit
/// (100 MiB) plus the prefix.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024 + LENGTH_PREFIX_BYTES;

/// Why a length prefix cannot start a frame the proxy will forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} is negative")]
    NegativeLength { length: i32 },
    #[error("frame of {frame_bytes} bytes is above the limit of {frame_bytes_max} bytes")]
    TooLarge {
        frame_bytes: usize,
        frame_bytes_max: usize,
    },
}

/// Returns the body length announced by a length prefix, checked against `frame_bytes_max`
/// (which counts the prefix too).
pub fn body_len(
    prefix: [u8; LENGTH_PREFIX_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    let Ok(body_bytes) = usize::try_from(length) else {
        return Err(FrameError::NegativeLength { length });
    };
    let frame_bytes = body_bytes + LENGTH_PREFIX_BYTES;
    if frame_bytes > frame_bytes_max {
        return Err(FrameError::TooLarge {
            frame_bytes,
            frame_bytes_max,
        });
    }
    Ok(body_bytes)
}

/// The fixed first fields of every request header (all versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestHeader {
    /// Reads the header from a request body; `None` if the body is too short to hold it.
    pub fn parse(body: &[u8]) -> Option<RequestHeader> {
        let api_key = i16::from_be_bytes(body.get(0..2)?.try_into().ok()?);
        let api_version = i16::from_be_bytes(body.get(2..4)?.try_into().ok()?);
        let correlation_id = i32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
        Some(RequestHeader {
            api_key,
            api_version,
            correlation_id,
        })
    }
}

/// Reads the correlation id from a response body; `None` if the body is too short.
pub fn response_correlation_id(body: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(body.get(0..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check_body_len(prefix: [u8; 4], frame_bytes_max: usize, expect: Expect) {
        let actual = match body_len(prefix, frame_bytes_max) {
            Ok(n) => format!("ok {n}"),
            Err(e) => e.to_string(),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn body_len_as_data() {
        check_body_len([0, 0, 0, 0], 4, expect!["ok 0"]);
        check_body_len([0, 0, 0, 8], 12, expect!["ok 8"]);
        check_body_len(
            [0, 0, 0, 9],
            12,
            expect!["frame of 13 bytes is above the limit of 12 bytes"],
        );
        check_body_len(
            [0xff, 0xff, 0xff, 0xff],
            12,
            expect!["frame length -1 is negative"],
        );
        check_body_len(
            (100 * 1024 * 1024i32).to_be_bytes(),
            FRAME_BYTES_MAX_DEFAULT,
            expect!["ok 104857600"],
        );
        check_body_len(
            (100 * 1024 * 1024 + 1i32).to_be_bytes(),
            FRAME_BYTES_MAX_DEFAULT,
            expect!["frame of 104857605 bytes is above the limit of 104857604 bytes"],
        );
    }

    fn check_header(body: &[u8], expect: Expect) {
        let actual = format!(
            "{:?} {:?}",
            RequestHeader::parse(body),
            response_correlation_id(body)
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn headers_as_data() {
        check_header(&[], expect!["None None"]);
        check_header(&[0, 1, 0, 2], expect!["None Some(65538)"]);
        check_header(
            &[0, 0, 0, 9, 0, 0, 1, 0],
            expect![
                "Some(RequestHeader { api_key: 0, api_version: 9, correlation_id: 256 }) Some(9)"
            ],
        );
        check_header(&[0xff, 0xff, 0, 3, 0x7f, 0xff, 0xff, 0xff, 42], expect!["Some(RequestHeader { api_key: -1, api_version: 3, correlation_id: 2147483647 }) Some(-65533)"]);
    }
}
