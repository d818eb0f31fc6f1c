//! Issue 14 through the real binary: `ferry serve` refuses a data directory whose `meta.json`
//! was lost (exit 1, every difference named on stderr) where it used to start empty, and a
//! topic's `message.timestamp.after.max.ms` refuses a record from the far future with
//! INVALID_TIMESTAMP through librdkafka.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::harness::{producer, Ferry};

/// How long a refused start may take to exit.
const REFUSAL_WAIT: Duration = Duration::from_secs(30);

/// Runs `ferry serve` on `data_dir` expecting it to exit by itself; returns its exit code and
/// stderr.
fn serve_expecting_exit(data_dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll ferry") {
            break status;
        }
        if started.elapsed() > REFUSAL_WAIT {
            let _ = child.kill();
            panic!("ferry started on a data directory that does not match its meta.json");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

fn watermarks(bootstrap: &str, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_serve_refuses_a_data_dir_whose_meta_json_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &[]);
    let producer = producer(&ferry.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    for i in 0..20 {
        producer
            .send(
                FutureRecord::to("kept").key("k").payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    drop(producer);
    ferry.stop();
    let meta = std::fs::read(dir.path().join("meta.json")).unwrap();
    std::fs::remove_file(dir.path().join("meta.json")).unwrap();

    let (code, stderr) = serve_expecting_exit(dir.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("does not match its meta.json")
            && stderr
                .contains("directory kept-0 holds records of a topic meta.json does not record"),
        "{stderr}"
    );

    // Control: with meta.json restored the same directory starts and serves all 20 records.
    std::fs::write(dir.path().join("meta.json"), meta).unwrap();
    ferry.restart();
    assert_eq!(watermarks(&ferry.bootstrap(), "kept"), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_a_record_from_the_far_future_is_refused_with_invalid_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["auto.create.topics.enable=false"]);
    let bootstrap = ferry.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = admin
        .create_topics(
            &[
                NewTopic::new("bounded", 1, TopicReplication::Fixed(1))
                    .set("message.timestamp.after.max.ms", "60000"),
                NewTopic::new("lenient", 1, TopicReplication::Fixed(1))
                    .set("message.timestamp.after.max.ms", "86400000"),
            ],
            &options,
        )
        .await
        .unwrap();
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let future_ms = now_ms + 10 * 60_000;
    let producer = producer(
        &bootstrap,
        &[("acks", "all"), ("linger.ms", "0"), ("retries", "0")],
    );
    let send = |topic: &'static str| {
        producer.send(
            FutureRecord::to(topic)
                .partition(0)
                .key("k")
                .payload("from the future")
                .timestamp(future_ms),
            Duration::from_secs(10),
        )
    };
    let refused = send("bounded").await.map_err(|(e, _)| e);
    assert!(
        matches!(
            refused,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidTimestamp
            ))
        ),
        "{refused:?}"
    );
    assert_eq!(
        watermarks(&bootstrap, "bounded"),
        (0, 0),
        "nothing appended"
    );
    // Control: the same record to a topic that allows a day ahead is appended.
    send("lenient").await.map_err(|(e, _)| e).expect("produce");
    assert_eq!(watermarks(&bootstrap, "lenient"), (0, 1));
}
