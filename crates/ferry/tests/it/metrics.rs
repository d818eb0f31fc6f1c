//! `/metrics` scraped around a produce, consume and transaction run with real clients: every
//! counter moves by what the run did (a duplicated produce request moves the duplicate counter by
//! exactly one), the broker's gauges agree with what the clients saw, and the exposition passes
//! `promtool check metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use wire::batch::{build_batch, ProducerFields};

use crate::harness::{producer, Ferry};
use crate::hostile::{read_response, request_frame};

const TIMEOUT: Duration = Duration::from_secs(20);

/// One scrape: every sample by its name and labels as written (`name{a="b"}`).
#[derive(Debug)]
pub(crate) struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub(crate) fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.text))
    }

    pub(crate) fn or_zero(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every sample of `name` whose labels contain `labels`.
    fn sum(&self, name: &str, labels: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(labels))
            .map(|(_, value)| value)
            .sum()
    }
}

/// `GET path` over a fresh HTTP/1.1 connection: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

pub(crate) fn scrape(ferry: &Ferry) -> Scrape {
    let (status, text) = http_get(ferry.metrics.expect("metrics.listen set"), "/metrics");
    assert_eq!(status, 200, "{text}");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.parse().expect("sample value"))
        })
        .collect();
    Scrape { text, samples }
}

/// `promtool check metrics` (Debian's `prometheus` package; `scripts/install-deps` installs it)
/// on the exposition.
fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (install Debian's prometheus package: scripts/install-deps)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Sends one idempotent batch of producer `id` with `sequence` on a raw connection; returns the
/// partition's error code.
fn produce_raw(ferry: &Ferry, topic: &str, id: (i64, i16), sequence: i32) -> i16 {
    let batch = build_batch(
        &[(Some(b"k"), Some(b"raw"))],
        chrono_now_ms(),
        ProducerFields {
            producer_id: id.0,
            producer_epoch: id.1,
            base_sequence: sequence,
        },
        0,
    );
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.into()))])]);
    let mut stream = TcpStream::connect(ferry.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let frame = request_frame(ApiKey::Produce, 9, &RequestKind::Produce(produce));
    stream.write_all(&frame).unwrap();
    let mut body = read_response(&mut stream, 5);
    let response = ProduceResponse::decode(&mut body, 9).expect("Produce v9 response");
    response.responses[0].partition_responses[0].error_code
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn init_producer_id(ferry: &Ferry) -> (i64, i16) {
    let mut stream = TcpStream::connect(ferry.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // kafka-protocol's default transactional id is the empty string, not null.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let frame = request_frame(
        ApiKey::InitProducerId,
        1,
        &RequestKind::InitProducerId(request),
    );
    stream.write_all(&frame).unwrap();
    let mut body = read_response(&mut stream, 4);
    let response = InitProducerIdResponse::decode(&mut body, 1).expect("InitProducerId v1");
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_as_the_run_says() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["metrics.listen=127.0.0.1:0"]);
    let metrics = ferry.metrics.expect("metrics address");
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    assert_eq!(http_get(metrics, "/readyz").0, 200);
    assert_eq!(http_get(metrics, "/nothing").0, 404);
    let before = scrape(&ferry);
    promtool_check(&before.text);
    let bootstrap = ferry.bootstrap();

    // 100 records from an idempotent librdkafka producer.
    let topic = "metered";
    let records = 100;
    let p = producer(&bootstrap, &[("enable.idempotence", "true")]);
    for i in 0..records {
        let value = format!("value-{i}");
        p.send(
            rdkafka::producer::FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&value),
            TIMEOUT,
        )
        .await
        .expect("delivered");
    }
    let produced = scrape(&ferry);
    let partition = format!("{{topic=\"{topic}\",partition=\"0\"}}");
    assert_eq!(
        produced.get(&format!("ferry_partition_high_watermark{partition}")),
        records as f64
    );
    assert_eq!(
        produced.get(&format!("ferry_partition_log_end_offset{partition}")),
        records as f64
    );
    // Nothing was deleted, so what producers appended is the log's size.
    let size = produced.get(&format!("ferry_partition_size_bytes{partition}"));
    assert!(size > 0.0);
    assert_eq!(
        produced.get(&format!("ferry_topic_bytes_in_total{{topic=\"{topic}\"}}")),
        size
    );
    assert!(
        produced.sum("ferry_requests_total", "api=\"Produce\"")
            >= before.sum("ferry_requests_total", "api=\"Produce\"") + 1.0
    );
    assert!(produced.get("ferry_producer_ids_allocated_total") >= 1.0);
    assert!(produced.sum("ferry_fsync_duration_seconds_count", "") >= 1.0);
    assert!(
        produced.get("ferry_request_stage_seconds_count{api=\"Produce\",stage=\"group_commit\"}")
            >= 1.0
    );

    // A retried batch: the same producer id, epoch and sequence twice. The second is answered
    // from the log and counted once as a duplicate; a sequence gap is refused and counted.
    let id = init_producer_id(&ferry);
    let duplicates = produced.get("ferry_idempotent_duplicate_batches_total");
    assert_eq!(produce_raw(&ferry, topic, id, 0), 0);
    assert_eq!(
        produce_raw(&ferry, topic, id, 0),
        0,
        "a duplicate is acknowledged"
    );
    assert_eq!(
        produce_raw(&ferry, topic, id, 5),
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    let raw = scrape(&ferry);
    assert_eq!(
        raw.get("ferry_idempotent_duplicate_batches_total"),
        duplicates + 1.0
    );
    assert_eq!(
        raw.get("ferry_idempotent_out_of_order_batches_total"),
        produced.get("ferry_idempotent_out_of_order_batches_total") + 1.0
    );
    let out_of_order =
        "ferry_request_errors_total{api=\"Produce\",error=\"OUT_OF_ORDER_SEQUENCE_NUMBER\"}";
    assert_eq!(raw.get(out_of_order), produced.or_zero(out_of_order) + 1.0);
    assert_eq!(
        raw.get(&format!("ferry_partition_high_watermark{partition}")),
        records as f64 + 1.0,
        "the duplicate was not written again"
    );

    // A consumer group reads everything and commits: its lag is 0, and the broker sent at
    // least the log's bytes.
    let group = "metered-readers";
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seen = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while seen < records + 1 && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            message.expect("consume");
            seen += 1;
        }
    }
    assert_eq!(seen, records + 1);
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let consumed = scrape(&ferry);
    let committed = format!("{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}}");
    assert_eq!(
        consumed.get(&format!("ferry_group_committed_offset{committed}")),
        records as f64 + 1.0
    );
    assert_eq!(consumed.get(&format!("ferry_group_lag{committed}")), 0.0);
    assert_eq!(
        consumed.get(&format!("ferry_group_members{{group=\"{group}\"}}")),
        1.0
    );
    assert!(
        consumed.get(&format!(
            "ferry_group_rebalances_total{{group=\"{group}\"}}"
        )) >= 1.0
    );
    let size = consumed.get(&format!("ferry_partition_size_bytes{partition}"));
    assert!(consumed.get(&format!("ferry_topic_bytes_out_total{{topic=\"{topic}\"}}")) >= size);
    drop(consumer);

    // One committed and one aborted transaction.
    let txn: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "metered-txn")
        .create()
        .unwrap();
    txn.init_transactions(TIMEOUT).unwrap();
    for commit in [true, false] {
        txn.begin_transaction().unwrap();
        txn.send(
            BaseRecord::<(), _>::to(topic)
                .partition(0)
                .payload("in a transaction"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        txn.flush(TIMEOUT).unwrap();
        if commit {
            txn.commit_transaction(TIMEOUT).unwrap();
        } else {
            txn.abort_transaction(TIMEOUT).unwrap();
        }
    }
    let after = scrape(&ferry);
    for (event, moved) in [
        ("begun", 2.0),
        ("committed", 1.0),
        ("aborted", 1.0),
        ("timed_out", 0.0),
    ] {
        let series = format!("ferry_transactions_total{{event=\"{event}\"}}");
        assert_eq!(after.get(&series), consumed.get(&series) + moved, "{event}");
    }
    assert_eq!(after.get("ferry_transactions_open"), 0.0);
    assert!(after.get("ferry_connections_open") >= 1.0);
    assert!(after.sum("ferry_connections_closed_total", "") >= 1.0);
    promtool_check(&after.text);
    let unlisted: Vec<_> = names_in(&after.text)
        .difference(&exported_names())
        .cloned()
        .collect();
    assert!(unlisted.is_empty(), "scraped but not listed: {unlisted:?}");
}

/// `FERRY_LOG_FORMAT=json`: every trace line is one JSON object with the time, level, target
/// and the message among its fields. Control: without it the lines are not JSON.
#[test]
fn json_traces_are_one_object_per_line() {
    for json in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("FERRY_LOG", "info")
            .env_remove("FERRY_LOG_FORMAT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if json {
            command.env("FERRY_LOG_FORMAT", "json");
        }
        let mut child = command.spawn().expect("spawn ferry");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("ferry: listening on"), "{line}");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let traces = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<&str> = traces.lines().collect();
        assert!(lines.len() >= 3, "{traces}");
        for line in lines {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            if !json {
                assert!(parsed.is_err(), "a text trace parsed as JSON: {line}");
                continue;
            }
            let object = parsed.unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            for key in ["timestamp", "level", "target"] {
                assert!(object[key].is_string(), "no {key}: {line}");
            }
            assert!(
                object["fields"]["message"].is_string(),
                "no message: {line}"
            );
        }
        if json {
            assert!(traces.contains(r#""message":"serving""#), "{traces}");
        }
    }
}

/// Every family ferry can export: the server's (with samples or not) and the broker
/// snapshot's, from a snapshot with one of everything.
fn exported_names() -> std::collections::BTreeSet<String> {
    use broker::stats::{GroupOffsetStats, GroupStats, PartitionStats, TransactionStats};
    let stats = broker::Stats {
        partitions: vec![PartitionStats {
            topic: "t".into(),
            partition: 0,
            log_start_offset: 0,
            log_end_offset: 1,
            high_watermark: 1,
            last_stable_offset: 1,
            size_bytes: 1,
            segments: 1,
            appended_bytes: 1,
            producers: 1,
        }],
        producers: Default::default(),
        transactions: TransactionStats::default(),
        groups: vec![GroupStats {
            group_id: "g".into(),
            state: "Stable",
            members: 1,
            generation: 1,
            rebalances: 1,
            offsets: vec![GroupOffsetStats {
                topic: "t".into(),
                partition: 0,
                committed: 1,
                lag: Some(0),
            }],
        }],
        compaction: Default::default(),
    };
    let mut names: std::collections::BTreeSet<String> = observe::broker_families(&stats)
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    names.extend(observe::ServerMetrics::new().names().iter().cloned());
    // `ferry audit`'s own endpoint.
    names.extend(audit::metrics::NAMES.iter().map(|n| n.to_string()));
    names
}

/// The metric names in `text`: `ferry_` words, a histogram's series named by their family.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ferry_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        if word.ends_with('_') {
            // A prefix in prose (`ferry_requests_*`), not a name.
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| word.strip_suffix(suffix))
            .unwrap_or(&word);
        names.insert(family.to_string());
    }
    names
}

/// docs/metrics.md lists every metric ferry exports, and the Grafana dashboard's expressions
/// name only metrics ferry exports (and use some of each kind).
#[test]
fn docs_and_dashboard_name_exported_metrics() {
    let exported = exported_names();
    assert!(exported.len() >= 30, "{exported:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let documented = names_in(&docs);
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md names what ferry does not export: {stale:?}"
    );

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/grafana/ferry.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            expressions.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(expressions.len() >= 20);
    for expression in &expressions {
        let named = names_in(expression);
        assert!(!named.is_empty(), "names no metric: {expression}");
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{expression}: not exported: {unknown:?}"
        );
    }
    // Control: the check finds a name ferry does not export.
    assert!(!names_in("rate(ferry_no_such_thing_total[1m])").is_subset(&exported));
}

/// Connections: open ones are counted, one over `max.connections` is refused and counted, and
/// each that ends is counted by its reason.
#[test]
fn connections_are_counted_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &["metrics.listen=127.0.0.1:0", "max.connections=2"],
    );
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(ferry.addr).unwrap())
        .collect();
    let wait_for = |series: &str, value: f64| {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let scraped = scrape(&ferry);
            if scraped.or_zero(series) == value {
                return scraped;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{series} never reached {value}:\n{}",
                scraped.text
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("ferry_connections_open", 2.0);
    let mut refused = TcpStream::connect(ferry.addr).unwrap();
    refused.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(refused.read(&mut byte).unwrap_or(0), 0, "closed at once");
    let scraped = wait_for("ferry_connections_refused_total{reason=\"limit\"}", 1.0);
    assert_eq!(scraped.get("ferry_connections_accepted_total"), 2.0);
    drop(held);
    let scraped = wait_for("ferry_connections_closed_total{reason=\"client\"}", 2.0);
    assert_eq!(scraped.get("ferry_connections_open"), 0.0);
}
