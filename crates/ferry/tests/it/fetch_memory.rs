//! Fetch memory is bounded: a Fetch response's record data are the segment file's mapped pages,
//! not a copy in the broker's heap, and no response carries more than `fetch.max.bytes`. Two
//! hundred connections each asking for 64 MiB and not reading the answer used to cost about
//! 130 MiB of heap each (the broker was OOM-killed under a 3 GiB cap); here the broker's
//! anonymous memory stays flat, while one of those connections, read to the end, shows that the
//! answers are real and full.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::FutureRecord;

use crate::harness::{producer, Ferry};
use crate::hostile::{read_response, request_frame};

/// Connections that each ask for `ASKED_BYTES` at once.
const FETCHERS: usize = 200;
const ASKED_BYTES: i32 = 64 << 20;
/// The topic holds more than any one response may carry.
const VALUE_BYTES: usize = 900_000;
const RECORDS: usize = 72;
/// Kafka's default `fetch.max.bytes`, ferry's too.
const FETCH_MAX_BYTES: usize = 57_671_680;
/// The broker's anonymous memory may grow by at most this much under all the fetchers: their
/// connections' buffers and the responses' headers, not their record data (200 x 55 MiB).
const GROWTH_MAX_BYTES: u64 = 200 << 20;

fn fetch_frame() -> Vec<u8> {
    let body = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(ASKED_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("big")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(ASKED_BYTES)])]);
    request_frame(ApiKey::Fetch, 11, &RequestKind::Fetch(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_large_fetches_do_not_grow_the_heap() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let producer = producer(&ferry.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    let value = vec![b'x'; VALUE_BYTES];
    for i in 0..RECORDS {
        let key = i.to_string();
        producer
            .send(
                FutureRecord::to("big")
                    .partition(0)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    drop(producer);
    let before = ferry.rss_anon_bytes();

    let frame = fetch_frame();
    let mut fetchers: Vec<TcpStream> = (0..FETCHERS)
        .map(|_| {
            let mut stream = TcpStream::connect(ferry.addr).expect("connect");
            stream.write_all(&frame).expect("send fetch");
            stream
        })
        .collect();
    // Every fetch is answered (and stuck in the socket, as nobody reads) well within this.
    std::thread::sleep(Duration::from_secs(3));
    let during = ferry.rss_anon_bytes();

    // One answer read to the end: full, capped by fetch.max.bytes (the batches are whole).
    let stream = &mut fetchers[0];
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let response = read_response(stream, 4);
    let len = response.len();
    assert!(
        len > FETCH_MAX_BYTES - 2 * VALUE_BYTES && len <= FETCH_MAX_BYTES + 4096,
        "a response of {len} bytes"
    );
    eprintln!(
        "{FETCHERS} fetches of {ASKED_BYTES} bytes: broker heap {} MiB before, {} MiB during; one response {len} bytes",
        before >> 20,
        during >> 20
    );
    assert!(
        during < before + GROWTH_MAX_BYTES,
        "heap grew from {} MiB to {} MiB under {FETCHERS} fetches",
        before >> 20,
        during >> 20
    );
}
