//! Issue 4, the idempotent producer: retries never write a record twice.
//!
//! A chaos proxy sits between librdkafka and ferry and drops a share of Produce *responses*
//! after the broker wrote the batch (the lost acknowledgement). librdkafka times the request
//! out, reconnects and retries it. With `enable.idempotence=true` the broker recognises the
//! retry and answers with the original offsets: the log holds every record exactly once, in
//! order, and every delivery report names the offset the record really has. The control run,
//! idempotence off, stores duplicates. A third run kills the broker with `kill -9` in the middle
//! and restarts it: the producer state is rebuilt from snapshots and the log, and there are
//! still no duplicates.
//!
//! `FERRY_BENCH=1` also runs a small throughput comparison of plain and idempotent `acks=all`
//! produce of 1 KiB records (meaningful on a release build).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::{Fault, Plan, Proxy, ProxyHandle};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::harness::{consume, consumer_from_start, producer, record, reserve_port, Ferry};

const RECORDS: u64 = 100_000;
const PARTITIONS: i32 = 4;
/// The share of Produce responses the proxy drops.
const LOST_ACK_PROBABILITY: f64 = 0.1;
const PRODUCE_API_KEY: i16 = 0;

/// A broker behind a lost-ack proxy that it advertises, so clients stay behind the proxy.
/// How many reserved ports a lost-ack run tries before it gives up.
const PORT_ATTEMPTS: usize = 5;

struct LostAcks {
    _dir: tempfile::TempDir,
    ferry: Ferry,
    proxy: ProxyHandle,
    traces: PathBuf,
}

impl LostAcks {
    async fn start(seed: u64) -> LostAcks {
        // The proxy's port is advertised before the proxy binds it, so another test may take it
        // meanwhile (seen once in CI): then both start again on a new port.
        for _attempt in 0..PORT_ATTEMPTS {
            let dir = tempfile::tempdir().unwrap();
            let traces = dir.path().join("ferry-traces.log");
            let port = reserve_port();
            let advertised = format!("advertised.listeners=127.0.0.1:{port}");
            let ferry = Ferry::start_traced(
                &dir.path().join("data"),
                &[
                    &format!("num.partitions={PARTITIONS}"),
                    &advertised,
                    // Small segments: rolls write producer snapshots during the run.
                    "log.segment.bytes=1048576",
                ],
                &traces,
            );
            let listen = SocketAddr::from(([127, 0, 0, 1], port));
            let plan = Plan::lost_acks(seed, LOST_ACK_PROBABILITY);
            let proxy = match Proxy::start(listen, ferry.addr, plan).await {
                Ok(proxy) => proxy,
                Err(chaos::ChaosError::Bind { .. }) => continue,
                Err(error) => panic!("start the chaos proxy: {error}"),
            };
            eprintln!(
                "lost-ack proxy {listen} -> ferry {}: seed {seed}, p={LOST_ACK_PROBABILITY}",
                ferry.addr
            );
            return LostAcks {
                _dir: dir,
                ferry,
                proxy,
                traces,
            };
        }
        panic!("no free port for the chaos proxy in {PORT_ATTEMPTS} attempts");
    }

    fn bootstrap(&self) -> String {
        self.proxy.local_addr().to_string()
    }

    fn produce_responses_dropped(&self) -> usize {
        self.proxy
            .events()
            .iter()
            .filter(|e| e.action == Fault::DropFrame && e.api_key == Some(PRODUCE_API_KEY))
            .count()
    }

    /// Stops the broker (SIGTERM, clean exit) and returns the duplicates it detected, from its
    /// shutdown trace line.
    fn stop_and_count_duplicates(&mut self) -> u64 {
        self.ferry.stop();
        let traces = std::fs::read_to_string(&self.traces).expect("read ferry's traces");
        let line = traces
            .lines()
            .rev()
            .find(|l| l.contains("idempotent producers at shutdown"))
            .unwrap_or_else(|| panic!("no shutdown counters in the traces:\n{traces}"));
        trace_field(line, "duplicates_detected")
    }
}

fn trace_field(line: &str, name: &str) -> u64 {
    let at = line
        .find(&format!("{name}="))
        .expect("field in the trace line")
        + name.len()
        + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

fn lost_ack_producer(bootstrap: &str, idempotence: bool) -> FutureProducer {
    producer(
        bootstrap,
        &[
            ("acks", "all"),
            (
                "enable.idempotence",
                if idempotence { "true" } else { "false" },
            ),
            ("max.in.flight.requests.per.connection", "5"),
            // A dropped response is noticed when its request times out: keep that short.
            ("socket.timeout.ms", "500"),
            ("message.timeout.ms", "180000"),
            // Each lost ack costs a reconnect; the default backoff grows to 10 s.
            ("reconnect.backoff.max.ms", "200"),
            // Many requests, so that many responses can be lost.
            ("batch.num.messages", "1000"),
        ],
    )
}

/// What the producer was told: per record (by global sequence), the acknowledged offset or -1.
struct Deliveries {
    offsets: Arc<Vec<AtomicI64>>,
    failed: Arc<AtomicU64>,
}

/// Sends `RECORDS` records round-robin over the partitions; record `seq` goes to partition
/// `seq % PARTITIONS` as the `seq / PARTITIONS`-th of that partition. `midway` runs once
/// `midway_after` records are acknowledged.
async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    midway_after: u64,
    mut midway: impl FnMut(),
) -> Deliveries {
    let offsets: Arc<Vec<AtomicI64>> = Arc::new((0..RECORDS).map(|_| AtomicI64::new(-1)).collect());
    let failed = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(RECORDS as usize);
    for seq in 0..RECORDS {
        let partition = (seq % PARTITIONS as u64) as i32;
        let (key, value) = record(partition, seq / PARTITIONS as u64);
        let delivery = loop {
            let sent = producer.send_result(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&value),
            );
            match sent {
                Ok(delivery) => break delivery,
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        let (offsets, failed, acked) = (offsets.clone(), failed.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            match delivery.await {
                Ok(Ok(delivery)) => {
                    offsets[seq as usize].store(delivery.offset, Ordering::Relaxed);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err((error, _))) => {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first failed delivery: {error}");
                    }
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < midway_after {
        assert!(Instant::now() < deadline, "stuck before midway");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    midway();
    for task in tasks {
        task.await.unwrap();
    }
    Deliveries { offsets, failed }
}

/// The log's content, audited against the records sent.
#[derive(Debug)]
struct Audit {
    stored: usize,
    /// Records stored more than once (each extra copy counts).
    duplicates: usize,
    /// Records sent and never stored.
    missing: usize,
    /// Records stored after a record sent later to the same partition.
    reordered: usize,
    /// Acknowledged records whose delivery report names another offset than the one they have.
    wrong_offsets: usize,
}

/// Reads every partition to its high watermark and checks it against what was sent.
fn audit(bootstrap: &str, topic: &str, deliveries: &Deliveries) -> Audit {
    let consumer = consumer_from_start(bootstrap, topic, PARTITIONS);
    let mut stored = 0usize;
    for partition in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        stored += high as usize;
    }
    let received = consume(&consumer, PARTITIONS, stored, Duration::from_secs(120));
    let per_partition = RECORDS / PARTITIONS as u64;
    let (mut duplicates, mut missing, mut reordered, mut wrong_offsets) = (0, 0, 0, 0);
    for (partition, records) in received.iter().enumerate() {
        // The offsets at which each record of this partition is stored.
        let mut at: Vec<Vec<i64>> = vec![Vec::new(); per_partition as usize];
        let mut highest = None;
        for (offset, key, value) in records {
            let n: u64 = key
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("key carries its sequence");
            let (want_key, want_value) = record(partition as i32, n);
            assert_eq!(
                (key, value),
                (&want_key, &want_value),
                "garbled at {offset}"
            );
            if highest.is_some_and(|h| n < h) {
                reordered += 1;
            }
            highest = highest.max(Some(n));
            at[n as usize].push(*offset);
        }
        for (n, offsets) in at.iter().enumerate() {
            duplicates += offsets.len().saturating_sub(1);
            if offsets.is_empty() {
                missing += 1;
                continue;
            }
            let seq = n as u64 * PARTITIONS as u64 + partition as u64;
            let acked = deliveries.offsets[seq as usize].load(Ordering::Relaxed);
            if acked >= 0 && !offsets.contains(&acked) {
                wrong_offsets += 1;
            }
        }
    }
    Audit {
        stored,
        duplicates,
        missing,
        reordered,
        wrong_offsets,
    }
}

fn snapshot_files(data_dir: &Path) -> usize {
    let mut count = 0;
    for partition in std::fs::read_dir(data_dir).unwrap().flatten() {
        if let Ok(files) = std::fs::read_dir(partition.path()) {
            count += files
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".snapshot"))
                .count();
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_with_idempotence_store_every_record_once() {
    let mut run = LostAcks::start(41).await;
    let topic = "idempotent-lost-acks";
    let producer = lost_ack_producer(&run.bootstrap(), true);
    let started = Instant::now();
    let deliveries = produce_all(&producer, topic, 0, || {}).await;
    drop(producer);
    let audit = audit(&run.bootstrap(), topic, &deliveries);
    let dropped = run.produce_responses_dropped();
    let detected = run.stop_and_count_duplicates();
    eprintln!(
        "idempotence on: {RECORDS} records in {:?}, {dropped} produce responses dropped, \
         broker detected {detected} duplicate batches; log: {audit:?}",
        started.elapsed()
    );
    assert_eq!(
        deliveries.failed.load(Ordering::Relaxed),
        0,
        "failed deliveries"
    );
    assert!(dropped > 0, "the proxy dropped no produce response");
    assert!(detected > 0, "no retry reached the broker as a duplicate");
    assert_eq!(audit.duplicates, 0, "duplicates in the log");
    assert_eq!(audit.missing, 0, "gaps in the log");
    assert_eq!(audit.reordered, 0, "records out of order");
    assert_eq!(
        audit.wrong_offsets, 0,
        "delivery reports with other offsets"
    );
    assert_eq!(audit.stored, RECORDS as usize);
}

/// The control: the same faults without idempotence store duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_without_idempotence_store_duplicates() {
    let mut run = LostAcks::start(42).await;
    let topic = "plain-lost-acks";
    let producer = lost_ack_producer(&run.bootstrap(), false);
    let deliveries = produce_all(&producer, topic, 0, || {}).await;
    drop(producer);
    let audit = audit(&run.bootstrap(), topic, &deliveries);
    let dropped = run.produce_responses_dropped();
    let detected = run.stop_and_count_duplicates();
    eprintln!(
        "idempotence off (control): {RECORDS} records, {dropped} produce responses dropped; \
         log: {audit:?}"
    );
    assert!(dropped > 0, "the proxy dropped no produce response");
    assert_eq!(detected, 0, "no producer ids, so no duplicate detection");
    assert!(
        audit.duplicates > 0,
        "lost acks without idempotence must duplicate"
    );
    assert_eq!(audit.missing, 0, "acks=all with retries loses nothing");
}

/// `kill -9` in the middle of a lost-ack run; after the restart the producer state comes back
/// from snapshots and the log, and retries of batches written before the kill are recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_run_with_idempotence_still_stores_every_record_once() {
    let mut run = LostAcks::start(43).await;
    let topic = "idempotent-kill9";
    let producer = lost_ack_producer(&run.bootstrap(), true);
    let ferry = &mut run.ferry;
    let deliveries = produce_all(&producer, topic, RECORDS * 2 / 5, || {
        ferry.kill9();
        std::thread::sleep(Duration::from_millis(200));
        ferry.restart();
    })
    .await;
    drop(producer);
    let audit = audit(&run.bootstrap(), topic, &deliveries);
    let dropped = run.produce_responses_dropped();
    let snapshots = snapshot_files(&run.ferry.data_dir);
    run.ferry.stop();
    eprintln!(
        "kill -9 mid-run, idempotence on: {dropped} produce responses dropped, \
         {snapshots} producer snapshots on disk; log: {audit:?}"
    );
    assert_eq!(
        deliveries.failed.load(Ordering::Relaxed),
        0,
        "failed deliveries"
    );
    assert_eq!(audit.duplicates, 0, "duplicates in the log");
    assert_eq!(audit.missing, 0, "gaps in the log");
    assert_eq!(audit.reordered, 0, "records out of order");
    assert_eq!(
        audit.wrong_offsets, 0,
        "delivery reports with other offsets"
    );
    assert!(snapshots > 0, "no producer snapshot was written");
}

/// Throughput of plain against idempotent `acks=all` produce of 1 KiB records, in one run on one
/// broker. Runs only with `FERRY_BENCH=1`; use a release build:
/// `FERRY_BENCH=1 cargo test --release -p ferry --test it bench_idempotent -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_idempotent_against_plain_acks_all() {
    if std::env::var("FERRY_BENCH").as_deref() != Ok("1") {
        eprintln!("skipped: set FERRY_BENCH=1 to run the idempotence benchmark");
        return;
    }
    let records: u64 = std::env::var("FERRY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &[&format!("num.partitions={PARTITIONS}")]);
    let value = vec![b'x'; 1024];
    let mut results = Vec::new();
    // Alternate, twice each, so neither mode gets the warm (or the cold) broker.
    for (round, idempotence) in [false, true, false, true].into_iter().enumerate() {
        let producer = producer(
            &ferry.bootstrap(),
            &[
                ("acks", "all"),
                (
                    "enable.idempotence",
                    if idempotence { "true" } else { "false" },
                ),
                ("max.in.flight.requests.per.connection", "5"),
                ("linger.ms", "5"),
            ],
        );
        let topic = format!("bench-{round}");
        // Create the topic and connect before the clock starts.
        producer
            .send(
                FutureRecord::to(&topic).key("warm-up").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("warm-up record");
        let started = Instant::now();
        for seq in 0..records {
            let key = seq.to_string();
            loop {
                let sent = producer.send_result(
                    FutureRecord::to(&topic)
                        .partition((seq % PARTITIONS as u64) as i32)
                        .key(&key)
                        .payload(&value),
                );
                match sent {
                    Ok(_) => break,
                    Err(_) => producer.poll(Duration::from_millis(1)),
                }
            }
        }
        producer.flush(Duration::from_secs(300)).expect("flush");
        let seconds = started.elapsed().as_secs_f64();
        let rate = records as f64 / seconds;
        let mb = rate * (value.len() + key_len(records)) as f64 / 1e6;
        let mode = if idempotence { "idempotent" } else { "plain" };
        eprintln!("bench round {round}: {mode:>10} acks=all: {rate:>9.0} records/s, {mb:>7.1} MB/s ({records} x 1 KiB in {seconds:.2} s)");
        results.push((idempotence, rate));
    }
    ferry.stop();
    let mean = |idempotence: bool| {
        let rates: Vec<f64> = results
            .iter()
            .filter(|r| r.0 == idempotence)
            .map(|r| r.1)
            .collect();
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    let (plain, idempotent) = (mean(false), mean(true));
    eprintln!(
        "bench: plain {plain:.0} records/s ({:.1} MB/s), idempotent {idempotent:.0} records/s ({:.1} MB/s): {:+.1}%",
        plain * 1024.0 / 1e6,
        idempotent * 1024.0 / 1e6,
        (idempotent / plain - 1.0) * 100.0
    );
}

/// Average key length of the benchmark's records, for the MB/s figure.
fn key_len(records: u64) -> usize {
    records.to_string().len()
}

/// Issue 19: a new block of producer ids is written by the group commit, outside the broker
/// lock. Through the server, 2,500 InitProducerId requests (pipelined, 100 at a time on one
/// raw connection) cross two block boundaries: every answer is a new id, in order. After
/// `kill -9`, a real librdkafka idempotent producer still writes, and ids continue past every
/// block an answered id came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_cross_blocks_and_never_repeat_across_kill9() {
    use std::io::Write;

    use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
    use kafka_protocol::messages::{ProducerId, RequestKind};
    use kafka_protocol::protocol::Decodable;

    use crate::hostile::{read_response, request_frame};

    const IDS: usize = 2_500;
    const PIPELINED: usize = 100;
    const BLOCK: i64 = 1_000;
    let ask = |ferry: &Ferry, n: usize| -> Vec<i64> {
        let mut stream = std::net::TcpStream::connect(ferry.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // v1: the last version without flexible headers, so the response header is 4 bytes.
        let frame = request_frame(
            ApiKey::InitProducerId,
            1,
            &RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        );
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            let batch = PIPELINED.min(n - ids.len());
            stream.write_all(&frame.repeat(batch)).unwrap();
            for _ in 0..batch {
                let mut body = read_response(&mut stream, 4);
                let response = InitProducerIdResponse::decode(&mut body, 1).expect("decode");
                assert_eq!(response.error_code, 0, "{response:?}");
                assert_eq!(response.producer_epoch, 0);
                ids.push(response.producer_id.0);
            }
        }
        ids
    };

    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &[]);
    let ids = ask(&ferry, IDS);
    let expected: Vec<i64> = (0..IDS as i64).collect();
    assert_eq!(ids, expected, "every answer a new id, in order");

    ferry.kill9();
    ferry.restart();
    let bootstrap = ferry.bootstrap();
    let idempotent = producer(&bootstrap, &[("enable.idempotence", "true")]);
    for (key, payload) in (0..10).map(|seq| record(0, seq)) {
        idempotent
            .send(
                FutureRecord::to("producer-ids").key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("idempotent produce after the restart: {error}"));
    }
    let after = ask(&ferry, 3);
    // The last answered id came from the block [2000, 3000): the restart resumes past it, and
    // the librdkafka producer took the first id.
    let resumed = (IDS as i64 - 1) / BLOCK * BLOCK + BLOCK;
    assert!(
        after.iter().all(|&id| id > resumed),
        "ids {after:?} after the restart, expected past {resumed} (the producer's own)"
    );
    assert_eq!(after.windows(2).filter(|w| w[1] != w[0] + 1).count(), 0);
}
