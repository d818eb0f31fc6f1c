//! The server crate's one integration-test binary: the logic of the `request_decode` fuzz target
//! (fuzz/fuzz_targets/request_decode.rs) as a property test in the default run. Arbitrary frame
//! bodies for every advertised API and version decode or fail, never panic or abort, under the
//! broker's own allocator (a lying array count asks for a huge `Vec`).

use proptest::prelude::*;

#[global_allocator]
static ALLOC: server::alloc::LazyHugeAlloc = server::alloc::LazyHugeAlloc;

/// Decodes `rest` as the body of the `pick`-th advertised API at its `version_pick`-th version.
fn decode(pick: usize, version_pick: usize, rest: &[u8]) {
    let apis = wire::versions::SUPPORTED;
    let api = apis[pick % apis.len()];
    let span = (api.max - api.min + 1) as usize;
    let version = api.min + (version_pick % span) as i16;
    let mut body = Vec::with_capacity(rest.len() + 8);
    body.extend_from_slice(&(api.api_key as i16).to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&42i32.to_be_bytes());
    body.extend_from_slice(rest);
    let _ = wire::frame::decode_request(bytes::Bytes::from(body));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    #[test]
    fn any_body_of_any_advertised_request_decodes_or_fails(
        pick in 0usize..64,
        version_pick in 0usize..64,
        rest in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        decode(pick, version_pick, &rest);
    }
}

#[test]
fn lying_array_counts_fail_without_aborting() {
    // Every API and version, with a body of one 2^31-1 count (array or compact) and nothing more.
    let apis = wire::versions::SUPPORTED;
    for (pick, api) in apis.iter().enumerate() {
        for version_pick in 0..(api.max - api.min + 1) as usize {
            for rest in [
                &[0x7f, 0xff, 0xff, 0xff][..],
                &[0xff, 0xff, 0xff, 0xff, 0x07][..],
            ] {
                let mut padded = vec![0u8; 2];
                padded.extend_from_slice(rest);
                decode(pick, version_pick, rest);
                decode(pick, version_pick, &padded);
            }
        }
    }
}
