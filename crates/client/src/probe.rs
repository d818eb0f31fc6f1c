//! Asks a broker which APIs it speaks (ApiVersions v0), so a caller can tell "this guarantee
//! needs transactions and this broker has none" before trying and failing in librdkafka.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::ClientError;
use crate::guarantee::Guarantee;

/// The largest ApiVersions response read (a real one is a few hundred bytes).
const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// One advertised API: its key and inclusive version range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: i16,
    pub min: i16,
    pub max: i16,
}

/// What a broker advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerApis {
    pub apis: Vec<ApiRange>,
}

impl BrokerApis {
    pub fn supports(&self, api_key: i16) -> bool {
        self.apis.iter().any(|a| a.api_key == api_key)
    }

    /// The API keys `guarantee` needs that the broker does not advertise.
    pub fn missing_for(&self, guarantee: Guarantee) -> Vec<i16> {
        guarantee
            .required_api_keys()
            .iter()
            .copied()
            .filter(|key| !self.supports(*key))
            .collect()
    }
}

/// Sends ApiVersions v0 to `addr` and reads the answer.
pub fn api_versions(addr: &str, timeout: Duration) -> Result<BrokerApis, ClientError> {
    let io = |source| ClientError::ProbeIo {
        addr: addr.to_string(),
        source,
    };
    let decode = |reason: String| ClientError::ProbeDecode {
        addr: addr.to_string(),
        reason,
    };
    let socket_addr = addr
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| decode("no address".into()))?;
    let mut stream = TcpStream::connect_timeout(&socket_addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(&request_frame()).map_err(io)?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(io)?;
    let length = usize::try_from(i32::from_be_bytes(prefix))
        .map_err(|_| decode("negative response length".into()))?;
    if length > RESPONSE_BYTES_MAX {
        return Err(decode(format!("response of {length} bytes is too large")));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).map_err(io)?;
    parse_response(Bytes::from(body)).map_err(decode)
}

fn request_frame() -> Vec<u8> {
    let version = 0;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("ferry-probe")));
    let mut body = BytesMut::new();
    header
        .encode(
            &mut body,
            ApiKey::ApiVersions.request_header_version(version),
        )
        .expect("a request header always encodes");
    ApiVersionsRequest::default()
        .encode(&mut body, version)
        .expect("an empty ApiVersions request always encodes");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn parse_response(mut body: Bytes) -> Result<BrokerApis, String> {
    ResponseHeader::decode(&mut body, 0).map_err(|e| format!("response header: {e}"))?;
    let response =
        ApiVersionsResponse::decode(&mut body, 0).map_err(|e| format!("response body: {e}"))?;
    if response.error_code != 0 {
        return Err(format!("error code {}", response.error_code));
    }
    if body.has_remaining() {
        tracing::debug!(
            bytes = body.remaining(),
            "ApiVersions response has trailing bytes"
        );
    }
    let apis = response
        .api_keys
        .iter()
        .map(|a| ApiRange {
            api_key: a.api_key,
            min: a.min_version,
            max: a.max_version,
        })
        .collect();
    Ok(BrokerApis { apis })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    #[test]
    fn response_round_trip() {
        let response = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(0)
                .with_min_version(3)
                .with_max_version(9),
            ApiVersion::default()
                .with_api_key(22)
                .with_min_version(0)
                .with_max_version(4),
        ]);
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(1)
            .encode(&mut body, 0)
            .unwrap();
        response.encode(&mut body, 0).unwrap();
        let apis = parse_response(body.freeze()).unwrap();
        assert!(apis.supports(0));
        assert!(apis.missing_for(Guarantee::AtLeastOnce).is_empty());
        assert_eq!(
            apis.missing_for(Guarantee::ExactlyOnce),
            vec![24, 25, 26, 28]
        );
    }

    #[test]
    fn request_frame_starts_with_its_length_and_api_key() {
        let frame = request_frame();
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(i16::from_be_bytes(frame[4..6].try_into().unwrap()), 18);
    }
}
