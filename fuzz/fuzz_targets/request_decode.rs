//! Request decoding for every advertised API and version: the first two bytes pick an entry of
//! `wire::versions::SUPPORTED` and a version in its range, the rest is the frame body after the
//! header prefix. Decoding may fail; it must not panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The broker's allocator: a lying array count asks for a huge Vec, which it maps lazily.
#[global_allocator]
static ALLOC: server::alloc::LazyHugeAlloc = server::alloc::LazyHugeAlloc;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let apis = wire::versions::SUPPORTED;
    let api = apis[data[0] as usize % apis.len()];
    let span = (api.max - api.min + 1) as usize;
    let version = api.min + (data[1] as usize % span) as i16;
    let mut body = Vec::with_capacity(data.len() + 6);
    body.extend_from_slice(&(api.api_key as i16).to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&42i32.to_be_bytes());
    body.extend_from_slice(&data[2..]);
    let _ = wire::frame::decode_request(bytes::Bytes::from(body));
});
