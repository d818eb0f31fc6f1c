//! ApiVersions: the advertised APIs from `wire::versions::SUPPORTED`. A request on a version we
//! do not know is answered by the server with UNSUPPORTED_VERSION and this same list (KIP-511).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

pub fn handle(_request: &ApiVersionsRequest, _version: i16) -> ResponseKind {
    ResponseKind::ApiVersions(response(None))
}

/// The ApiVersions response, with an error code when the request version was unsupported.
pub fn response(error: Option<ResponseError>) -> ApiVersionsResponse {
    let api_keys = wire::versions::SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.api_key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_api_keys(api_keys)
}
