//! Hostile input on one connection: each gets its Kafka error or a closed connection, and a
//! normal librdkafka client on another connection keeps producing throughout.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, ProduceRequest, ProduceResponse, RequestHeader, RequestKind,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::producer::FutureRecord;
use wire::batch::{build_batch, ProducerFields};

use crate::harness::{producer, Ferry};

fn connect(ferry: &Ferry) -> TcpStream {
    let stream = TcpStream::connect(ferry.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// True when the broker closed the connection (EOF or reset) instead of answering.
fn closed_by_broker(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("expected a closed connection, got {n} bytes"),
        Err(error) => matches!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

pub(crate) fn request_frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("hostile-test")));
    wire::frame::encode_request(&header, body)
        .expect("encode")
        .to_vec()
}

/// Reads one response frame and returns its body after the correlation id (header v0).
pub(crate) fn read_response(stream: &mut TcpStream, header_bytes: usize) -> Bytes {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("response length");
    let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).expect("response body");
    assert_eq!(
        i32::from_be_bytes(body[0..4].try_into().unwrap()),
        42,
        "correlation id"
    );
    Bytes::from(body).slice(header_bytes..)
}

async fn healthy(bootstrap: &str, round: usize) {
    let producer = producer(bootstrap, &[("acks", "all")]);
    let key = format!("healthy-{round}");
    producer
        .send(
            FutureRecord::to("hostile-healthy").key(&key).payload("ok"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| {
            panic!("healthy client failed after hostile case {round}: {error}")
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &[]);
    let bootstrap = ferry.bootstrap();
    healthy(&bootstrap, 0).await;

    // Garbage: an HTTP request reads as a 1.1 GB frame length.
    let mut stream = connect(&ferry);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(closed_by_broker(stream), "garbage");
    healthy(&bootstrap, 1).await;

    // A frame length of 2 GiB.
    let mut stream = connect(&ferry);
    stream.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(closed_by_broker(stream), "2 GiB length");
    healthy(&bootstrap, 2).await;

    // A negative frame length.
    let mut stream = connect(&ferry);
    stream.write_all(&(-1i32).to_be_bytes()).unwrap();
    assert!(closed_by_broker(stream), "negative length");

    // A truncated frame: the length promises more than ever arrives.
    let mut stream = connect(&ferry);
    stream.write_all(&100i32.to_be_bytes()).unwrap();
    stream.write_all(&[0, 18, 0, 3, 0, 0]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(closed_by_broker(stream), "truncated frame");
    healthy(&bootstrap, 3).await;

    // An unknown API key.
    let mut stream = connect(&ferry);
    let mut frame = request_frame(
        ApiKey::Metadata,
        9,
        &RequestKind::Metadata(Default::default()),
    );
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    stream.write_all(&frame).unwrap();
    assert!(closed_by_broker(stream), "unknown API key");

    // A known API on an unadvertised version (Produce v12: ferry answers up to v9).
    let mut stream = connect(&ferry);
    let mut frame = request_frame(
        ApiKey::Produce,
        3,
        &RequestKind::Produce(Default::default()),
    );
    frame[6..8].copy_from_slice(&12i16.to_be_bytes());
    stream.write_all(&frame).unwrap();
    assert!(closed_by_broker(stream), "Produce v12");

    // A body that does not decode: Metadata v1 with one topic whose name claims 100 bytes.
    let mut stream = connect(&ferry);
    let mut frame = request_frame(
        ApiKey::Metadata,
        1,
        &RequestKind::Metadata(Default::default()),
    );
    let count_at = frame.len() - 4;
    frame[count_at..].copy_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&[0, 100, b'x', b'y']);
    let length = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&length.to_be_bytes());
    stream.write_all(&frame).unwrap();
    assert!(closed_by_broker(stream), "undecodable body");
    healthy(&bootstrap, 4).await;

    // A lying array count (CVE-2022-34917's class): Metadata v1 claiming 2^31-1 topics in a
    // 16-byte body. The codec sizes its Vec from the claim; the broker must close the
    // connection, not abort.
    let mut stream = connect(&ferry);
    let mut frame = request_frame(
        ApiKey::Metadata,
        1,
        &RequestKind::Metadata(Default::default()),
    );
    let count_at = frame.len() - 4;
    frame[count_at..].copy_from_slice(&i32::MAX.to_be_bytes());
    stream.write_all(&frame).unwrap();
    assert!(closed_by_broker(stream), "lying array count");
    healthy(&bootstrap, 6).await;

    // ApiVersions on a version from the future: UNSUPPORTED_VERSION with our ranges, as v0.
    let mut stream = connect(&ferry);
    let mut frame = request_frame(
        ApiKey::ApiVersions,
        3,
        &RequestKind::ApiVersions(Default::default()),
    );
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    stream.write_all(&frame).unwrap();
    let mut body = read_response(&mut stream, 4);
    let response = ApiVersionsResponse::decode(&mut body, 0).expect("ApiVersions v0 response");
    assert_eq!(response.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16 && k.min_version == 0 && k.max_version == 9));

    // A batch whose CRC does not match: CORRUPT_MESSAGE, connection stays usable.
    let mut batch = build_batch(
        &[(Some(b"k"), Some(b"v"))],
        1_700_000_000_000,
        ProducerFields::NONE,
        0,
    );
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    assert_eq!(produce_error(&ferry, 9, batch), 2, "CORRUPT_MESSAGE");
    healthy(&bootstrap, 5).await;

    // The same for an old message set (Produce v2, magic 1) with a wrong CRC: it is not
    // converted, and the partition answers CORRUPT_MESSAGE.
    let mut message = Vec::new();
    message.extend_from_slice(&0i64.to_be_bytes()); // offset
    message.extend_from_slice(&(4 + 1 + 1 + 8 + 4 + 4 + 1i32).to_be_bytes()); // size
    message.extend_from_slice(&0u32.to_be_bytes()); // crc: wrong
    message.extend_from_slice(&[1, 0]); // magic 1, no codec
    message.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    message.extend_from_slice(&(-1i32).to_be_bytes()); // null key
    message.extend_from_slice(&1i32.to_be_bytes());
    message.push(b'v');
    let mut body = Vec::new();
    body.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    body.extend_from_slice(&2i16.to_be_bytes());
    body.extend_from_slice(&42i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks
    body.extend_from_slice(&5000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(b"hostile-healthy".len() as i16).to_be_bytes());
    body.extend_from_slice(b"hostile-healthy");
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes()); // partition
    body.extend_from_slice(&(message.len() as i32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut stream = connect(&ferry);
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut response = read_response(&mut stream, 4);
    // Produce v2's response is v3's, which the codec reads.
    let response = ProduceResponse::decode(&mut response, 3).expect("Produce v2 response");
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        partition.error_code, 2,
        "CORRUPT_MESSAGE for an old message set"
    );
    healthy(&bootstrap, 6).await;

    // A zstd batch on Produce v6 (zstd needs v7, KIP-110): UNSUPPORTED_COMPRESSION_TYPE, as
    // Kafka answers; the same batch on v7 is taken (control).
    let mut zstd = build_batch(
        &[(Some(b"k"), Some(b"v"))],
        1_700_000_000_000,
        ProducerFields::NONE,
        0,
    );
    zstd[22] |= 4; // the codec bits: zstd (the structure check does not inflate)
    let crc = crc32c::crc32c(&zstd[21..]);
    zstd[17..21].copy_from_slice(&crc.to_be_bytes());
    for (version, expected) in [(6, 76), (7, 0)] {
        let error = produce_error(&ferry, version, zstd.clone());
        assert_eq!(error, expected, "zstd on Produce v{version}");
    }

    assert!(ferry.is_running(), "ferry survived every hostile case");
}

/// The error code of partition 0 of `hostile-healthy` for one acks=all Produce `version` of
/// `records`, on a connection of its own.
fn produce_error(ferry: &Ferry, version: i16, records: Vec<u8>) -> i16 {
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("hostile-healthy")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.into()))])]);
    let mut stream = connect(ferry);
    let frame = request_frame(ApiKey::Produce, version, &RequestKind::Produce(produce));
    stream.write_all(&frame).unwrap();
    // Produce v9 answers with the flexible header (a tagged-field byte after the id).
    let header_bytes = if version >= 9 { 5 } else { 4 };
    let mut body = read_response(&mut stream, header_bytes);
    let response = ProduceResponse::decode(&mut body, version).expect("Produce response");
    response.responses[0].partition_responses[0].error_code
}

/// Produces one `acks=all` record every 20 ms until `stop`, on its own connections, and
/// returns how many were acknowledged; any failure fails the test.
fn steady_producer(
    bootstrap: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let producer = producer(&bootstrap, &[("acks", "all")]);
        let mut acked = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let key = format!("steady-{acked}");
            producer
                .send(
                    FutureRecord::to("hostile-steady").key(&key).payload("ok"),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(error, _)| {
                    panic!("the steady producer failed after {acked} records: {error}")
                });
            acked += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    })
}

/// What a read on a connection the test left silent found: closed by the broker, or still open
/// when the read timeout passed.
fn closed_within(mut stream: TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("expected nothing or a close, got {n} bytes"),
        Err(error) => match error.kind() {
            std::io::ErrorKind::ConnectionReset => true,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => false,
            other => panic!("unexpected read error {other:?}"),
        },
    }
}

/// Half-open, silent and slow (one byte at a time) connections, and a flood beyond
/// `max.connections`: the idle ones are closed after `connections.max.idle.ms`, the excess ones
/// at once, the slow ones hold no memory beyond what they sent, and a librdkafka producer on its
/// own connections is acknowledged throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_flooding_clients_do_not_starve_a_producer() {
    const CONNECTIONS_MAX: usize = 40;
    const FLOOD: usize = 100;
    const SLOW: usize = 8;
    const SLOW_FRAME_BYTES: i32 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &["connections.max.idle.ms=1000", "max.connections=40"],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let steady = steady_producer(ferry.bootstrap(), stop.clone());
    healthy(&ferry.bootstrap(), 0).await;
    let rss_before = ferry.rss_bytes();

    // Slow loris: each announces a 64 MiB frame and sends it a byte every 50 ms.
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| connect(&ferry)).collect();
    for stream in &mut slow {
        stream.write_all(&SLOW_FRAME_BYTES.to_be_bytes()).unwrap();
    }
    for _ in 0..40 {
        for stream in &mut slow {
            stream.write_all(&[0]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_slow = ferry.rss_bytes();
    // 8 announced frames of 64 MiB are 512 MiB; what the broker holds is ~40 bytes each.
    assert!(
        rss_slow < rss_before + (32 << 20),
        "slow clients grew the broker from {rss_before} to {rss_slow} bytes"
    );

    // Half-open: a connection that sends nothing, and one that stops in the middle of a frame.
    let silent = connect(&ferry);
    let mut stalled = connect(&ferry);
    stalled.write_all(&100i32.to_be_bytes()).unwrap();
    stalled.write_all(&[0, 18, 0]).unwrap();
    assert!(
        closed_within(silent, Duration::from_secs(20)),
        "silent connection closed when idle"
    );
    assert!(
        closed_within(stalled, Duration::from_secs(20)),
        "stalled frame closed when idle"
    );
    // The slow clients stopped sending, so they are idle now too.
    for stream in slow {
        assert!(
            closed_within(stream, Duration::from_secs(20)),
            "slow client closed once idle"
        );
    }

    // Flood: beyond max.connections the broker closes new connections at once.
    let flood: Vec<TcpStream> = (0..FLOOD).map(|_| connect(&ferry)).collect();
    let refused = flood
        .into_iter()
        .map(|stream| closed_within(stream, Duration::from_millis(200)))
        .filter(|&closed| closed)
        .count();
    assert!(
        refused >= FLOOD - CONNECTIONS_MAX,
        "only {refused} of {FLOOD} connections beyond the limit of {CONNECTIONS_MAX} were closed"
    );
    healthy(&ferry.bootstrap(), 1).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = steady.await.expect("steady producer");
    assert!(acked > 0, "the steady producer was acknowledged");
    eprintln!("hostile connections: steady producer acknowledged {acked} records; {refused} of {FLOOD} flood connections closed at once; broker RSS {rss_before} -> {rss_slow} bytes under {SLOW} slow clients");
}

/// The control for the idle timeout: with Kafka's default `connections.max.idle.ms` (10
/// minutes) a silent connection is still open after the time the test above allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_stays_open_under_the_default_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &[]);
    let silent = connect(&ferry);
    assert!(
        !closed_within(silent, Duration::from_secs(3)),
        "open after 3 s"
    );
}

/// A decompression bomb: 64 MiB of zeros that zstd packs into a few kilobytes. The broker stores
/// and serves client batches as received and never inflates them (only its own uncompressed
/// internal logs are decoded), so its memory does not grow by the inflated size; the consumer,
/// which does inflate, gets the 64 MiB back, which shows that the batch was a bomb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bomb_is_stored_compressed_and_never_inflated() {
    use rdkafka::Message;
    const INFLATED_BYTES: usize = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &[]);
    let bootstrap = ferry.bootstrap();
    healthy(&bootstrap, 0).await;
    let rss_before = ferry.rss_bytes();
    let bomb = vec![0u8; INFLATED_BYTES];
    let producer = producer(
        &bootstrap,
        &[
            ("acks", "all"),
            ("compression.type", "zstd"),
            ("message.max.bytes", "100000000"),
        ],
    );
    producer
        .send(
            FutureRecord::to("hostile-bomb").key("bomb").payload(&bomb),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("produce the bomb: {error}"));
    drop(producer);
    drop(bomb);
    let stored: u64 = walk_bytes(&dir.path().join("hostile-bomb-0"));
    let consumer = crate::harness::consumer_from_start(&bootstrap, "hostile-bomb", 1);
    let message = loop {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => break message.detach(),
            Some(Err(error)) => panic!("consume the bomb: {error}"),
            None => panic!("no message within 10 s"),
        }
    };
    let payload = message.payload().expect("payload");
    assert_eq!(payload.len(), INFLATED_BYTES, "the consumer inflates it");
    assert!(payload.iter().all(|&b| b == 0));
    let rss_after = ferry.rss_bytes();
    assert!(stored > 0, "the bomb is stored in hostile-bomb-0");
    assert!(
        stored < (1 << 20),
        "stored {stored} bytes: the batch is kept compressed"
    );
    assert!(
        rss_after < rss_before + (INFLATED_BYTES as u64) / 2,
        "broker grew from {rss_before} to {rss_after} bytes: it inflated the bomb"
    );
    healthy(&bootstrap, 1).await;
    eprintln!("decompression bomb: {INFLATED_BYTES} bytes inflated, {stored} bytes stored, broker RSS {rss_before} -> {rss_after}");
}

/// The bytes of the `.log` files under `dir`.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// At debug level every request and its answer are traced with the API, version, correlation id
/// and error codes by name, so a client's problem can be diagnosed from the broker's side: here a
/// librdkafka consumer asking for an offset beyond the log end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_traces_name_each_request_and_its_errors() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces.log");
    let data = dir.path().join("data");
    let ferry = Ferry::start_traced_at(&data, &[], &traces, "info,server=debug");
    healthy(&ferry.bootstrap(), 0).await;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", ferry.bootstrap())
        .set("group.id", "traced")
        .set("client.id", "traced-consumer")
        .set("auto.offset.reset", "error")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("hostile-healthy", 0, Offset::Offset(1_000))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut refused = false;
    while !refused && std::time::Instant::now() < deadline {
        refused = matches!(consumer.poll(Duration::from_millis(100)), Some(Err(_)));
    }
    assert!(refused, "the consumer was told its offset is out of range");
    let traces = std::fs::read_to_string(&traces).unwrap();
    let line = |needle: &[&str]| {
        traces
            .lines()
            .find(|line| needle.iter().all(|n| line.contains(n)))
            .map(str::to_string)
    };
    assert!(
        line(&[
            "request",
            "api=Fetch",
            "client_id=\"traced-consumer\"",
            "correlation_id="
        ])
        .is_some(),
        "no Fetch request traced"
    );
    assert!(
        line(&["response", "api=Fetch", "errors=OffsetOutOfRange(1)"]).is_some(),
        "no Fetch answer traced with its error"
    );
    // The control: answers without an error say so.
    assert!(line(&["response", "api=Produce", "errors=none"]).is_some());
}
