//! SASL on a SASL_PLAINTEXT listener with real clients: librdkafka (the `rdkafka` crate) logs in
//! with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN as users made by `ferry users add` and by
//! AlterUserScramCredentials, and produces (idempotent, acks=all), consumes in a group with
//! commits and commits a transaction. Every refusal (wrong password, unknown user, malformed
//! and replayed SCRAM messages, a huge frame and requests before authentication) closes only its
//! own connection, beside its control, while a producer on another connection keeps every
//! record acknowledged and consumable.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::ClientConfig;
use sasl::client::{plain_message, ScramClient};
use sasl::ScramMechanism;

use crate::harness::{consume, consumer_from_start_with, producer, reserve_port, Ferry};
use crate::hostile::{read_response, request_frame};

/// Starts ferry with one SASL_PLAINTEXT listener on a fixed free port (so a restart finds it
/// again) offering every mechanism.
fn start(dir: &Path) -> Ferry {
    let listeners = format!("listeners=SASL_PLAINTEXT://127.0.0.1:{}", reserve_port());
    Ferry::start(
        dir,
        &[
            &listeners,
            "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            "group.initial.rebalance.delay.ms=0",
            "metrics.listen=127.0.0.1:0",
        ],
    )
}

/// `ferry users add NAME --data-dir DIR`, the password on stdin; the command's success.
pub(crate) fn users_add(dir: &Path, name: &str, password: &str, extra: &[&str]) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["users", "add", name, "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferry users add");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait().unwrap().success()
}

fn users_list(dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["users", "list", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run ferry users list");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// librdkafka's settings for `user` with `mechanism`.
fn login<'a>(mechanism: &'a str, user: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", mechanism),
        ("sasl.username", user),
        ("sasl.password", password),
    ]
}

/// Produces `count` records to `topic` idempotently with acks=all, then consumes them in a
/// group with a synchronous commit, then commits a transaction of one more record, all as the
/// given login.
async fn produce_consume_transact(bootstrap: &str, topic: &str, who: &[(&str, &str)]) {
    let mut settings = who.to_vec();
    settings.extend([("enable.idempotence", "true"), ("acks", "all")]);
    let producer = producer(bootstrap, &settings);
    for i in 0..20 {
        let key = format!("{topic}-{i}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("v"),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("{topic}: produce {i}: {error}"));
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-group"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in who {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: consumed {seen} of 20"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.unwrap_or_else(|e| panic!("{topic}: consume: {e}"));
            seen += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    let offset = committed.elements()[0].offset();
    assert_eq!(offset, rdkafka::Offset::Offset(20), "{topic}: committed");
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("{topic}-txn"));
    for (key, value) in who {
        config.set(*key, *value);
    }
    let transactional: ThreadedProducer<DefaultProducerContext> =
        config.create().expect("transactional producer");
    let timeout = Duration::from_secs(20);
    transactional.init_transactions(timeout).unwrap();
    transactional.begin_transaction().unwrap();
    transactional
        .send(BaseRecord::to(topic).key("txn").payload("committed"))
        .map_err(|(error, _)| error)
        .unwrap();
    transactional.commit_transaction(timeout).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_logs_in_with_every_mechanism_and_users_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    assert!(users_add(dir.path(), "alice", "alice-secret", &[]));
    assert!(users_add(
        dir.path(),
        "bob",
        "bob-secret",
        &["--mechanism", "SCRAM-SHA-256"]
    ));
    // Control of the iteration bound: below Kafka's minimum is refused.
    assert!(!users_add(
        dir.path(),
        "carol",
        "x",
        &["--iterations", "100"]
    ));
    let (listed, text) = users_list(dir.path());
    assert!(listed, "{text}");
    assert!(
        text.contains("alice\tSCRAM-SHA-256 (iterations 4096), SCRAM-SHA-512 (iterations 4096)"),
        "{text}"
    );
    assert!(
        text.contains("bob\tSCRAM-SHA-256 (iterations 4096)"),
        "{text}"
    );
    assert!(
        !text.contains("carol") && !text.contains("secret"),
        "{text}"
    );
    let mut ferry = start(dir.path());
    let bootstrap = ferry.bootstrap();
    // A running broker holds the data directory: the offline tool refuses.
    let (listed, text) = users_list(dir.path());
    assert!(
        !listed && text.contains("in use by a running ferry"),
        "{text}"
    );

    produce_consume_transact(
        &bootstrap,
        "sasl-512",
        &login("SCRAM-SHA-512", "alice", "alice-secret"),
    )
    .await;
    produce_consume_transact(
        &bootstrap,
        "sasl-256",
        &login("SCRAM-SHA-256", "bob", "bob-secret"),
    )
    .await;
    produce_consume_transact(
        &bootstrap,
        "sasl-plain",
        &login("PLAIN", "alice", "alice-secret"),
    )
    .await;

    // A user created online, salted by the client (AlterUserScramCredentials), logs in.
    let mut conn = SaslConn::connect(&ferry);
    conn.login_scram(ScramMechanism::Sha512, "alice", "alice-secret")
        .expect("alice");
    assert_eq!(
        conn.alter_user(ScramMechanism::Sha512, "dave", "dave-secret"),
        0
    );
    let dave = login("SCRAM-SHA-512", "dave", "dave-secret");
    metadata_ok(&bootstrap, &dave);

    ferry.kill9();
    ferry.restart();
    let bootstrap = ferry.bootstrap();
    metadata_ok(&bootstrap, &dave);
    metadata_ok(&bootstrap, &login("PLAIN", "bob", "bob-secret"));
    // Everything produced before the kill is still there, read as alice.
    let consumer = consumer_from_start_with(
        &bootstrap,
        "sasl-512",
        1,
        &login("SCRAM-SHA-512", "alice", "alice-secret"),
    );
    assert_eq!(
        consume(&consumer, 1, 21, Duration::from_secs(20))[0].len(),
        21
    );
}

/// A metadata request as `who` succeeds (librdkafka authenticates first).
fn metadata_ok(bootstrap: &str, who: &[(&str, &str)]) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in who {
        config.set(*key, *value);
    }
    let client: BaseConsumer = config.create().expect("client");
    client
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata as {who:?}: {e}"));
}

/// A raw connection that speaks the SASL requests itself.
struct SaslConn {
    stream: TcpStream,
}

impl SaslConn {
    fn connect(ferry: &Ferry) -> SaslConn {
        let stream = TcpStream::connect(ferry.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        SaslConn { stream }
    }

    fn send(&mut self, api: ApiKey, version: i16, body: RequestKind) {
        self.stream
            .write_all(&request_frame(api, version, &body))
            .unwrap();
    }

    /// SaslHandshake v1; the error code.
    fn handshake(&mut self, mechanism: &str) -> i16 {
        self.handshake_at(1, mechanism)
    }

    /// SaslHandshake at `version` (v0: raw tokens follow); the error code.
    fn handshake_at(&mut self, version: i16, mechanism: &str) -> i16 {
        let body =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
        self.send(
            ApiKey::SaslHandshake,
            version,
            RequestKind::SaslHandshake(body),
        );
        let mut bytes = read_response(&mut self.stream, 4);
        SaslHandshakeResponse::decode(&mut bytes, version)
            .unwrap()
            .error_code
    }

    /// A raw SASL token (after SaslHandshake v0); the server's raw answer, or None when the
    /// connection closed.
    fn raw(&mut self, token: &[u8]) -> Option<Vec<u8>> {
        let mut frame = (token.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(token);
        self.stream.write_all(&frame).unwrap();
        let mut length = [0; 4];
        self.stream.read_exact(&mut length).ok()?;
        let mut answer = vec![0; u32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut answer).ok()?;
        Some(answer)
    }

    /// SaslAuthenticate v1 with `message`; the error code and the server's message, or None
    /// when the connection closed without an answer.
    fn authenticate(&mut self, message: &[u8]) -> Option<(i16, Vec<u8>)> {
        let body =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message.to_vec()));
        self.send(
            ApiKey::SaslAuthenticate,
            1,
            RequestKind::SaslAuthenticate(body),
        );
        let mut length = [0; 4];
        self.stream.read_exact(&mut length).ok()?;
        let mut body = vec![0; i32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut body).ok()?;
        let mut bytes = Bytes::from(body).slice(4..);
        let response = SaslAuthenticateResponse::decode(&mut bytes, 1).unwrap();
        Some((response.error_code, response.auth_bytes.to_vec()))
    }

    /// A whole SCRAM login; the error code of the step that failed, if any.
    fn login_scram(
        &mut self,
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<(), i16> {
        assert_eq!(self.handshake(mechanism.name()), 0);
        let mut client = ScramClient::new(mechanism, user, password, "rawclientnonce");
        let (code, first) = self
            .authenticate(client.client_first().as_bytes())
            .expect("server-first");
        if code != 0 {
            return Err(code);
        }
        let last = client
            .client_final(std::str::from_utf8(&first).unwrap())
            .unwrap();
        let (code, server_final) = self.authenticate(last.as_bytes()).expect("server-final");
        if code != 0 {
            return Err(code);
        }
        client
            .verify_server_final(std::str::from_utf8(&server_final).unwrap())
            .unwrap();
        Ok(())
    }

    /// AlterUserScramCredentials upserting `user`; the user's error code.
    fn alter_user(&mut self, mechanism: ScramMechanism, user: &str, password: &str) -> i16 {
        let salt = b"a-salt-the-client-chose-32-bytes";
        let salted = sasl::client::salted_password(mechanism, password.as_bytes(), salt, 4096);
        let upsert = ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.into()))
            .with_mechanism(mechanism.kafka_type())
            .with_iterations(4096)
            .with_salt(Bytes::from_static(salt))
            .with_salted_password(Bytes::from(salted));
        let body = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert]);
        self.send(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(body),
        );
        let mut bytes = read_response(&mut self.stream, 5);
        AlterUserScramCredentialsResponse::decode(&mut bytes, 0)
            .unwrap()
            .results[0]
            .error_code
    }

    /// Whether a Metadata request is answered (true) or the connection closed (false).
    fn metadata_answered(&mut self) -> bool {
        self.send(
            ApiKey::Metadata,
            1,
            RequestKind::Metadata(MetadataRequest::default()),
        );
        let mut length = [0; 4];
        self.stream.read_exact(&mut length).is_ok()
    }

    /// Whether the broker closed the connection (EOF or reset) without another answer.
    fn closed(mut self) -> bool {
        let mut buf = [0; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!("expected a closed connection, got {n} bytes"),
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

const SASL_AUTHENTICATION_FAILED: i16 = 58;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    assert!(users_add(dir.path(), "alice", "alice-secret", &[]));
    let ferry = start(dir.path());
    let bootstrap = ferry.bootstrap();
    // A producer on its own connection, every record acknowledged throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
        tokio::spawn(async move {
            let who = login("SCRAM-SHA-512", "alice", "alice-secret");
            let mut settings = who.clone();
            settings.extend([("enable.idempotence", "true"), ("acks", "all")]);
            let producer = producer(&bootstrap, &settings);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) || sent < 10 {
                let key = sent.to_string();
                producer
                    .send(
                        FutureRecord::to("sasl-steady").key(&key).payload("v"),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("steady record {sent}: {e}"));
                sent += 1;
            }
            sent
        })
    };

    // Control: the right password, then a request answered on the same connection.
    let mut conn = SaslConn::connect(&ferry);
    conn.login_scram(ScramMechanism::Sha256, "alice", "alice-secret")
        .unwrap();
    assert!(conn.metadata_answered());
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake("PLAIN"), 0);
    assert_eq!(
        conn.authenticate(&plain_message("alice", "alice-secret"))
            .map(|r| r.0),
        Some(0)
    );
    assert!(conn.metadata_answered());

    // SaslHandshake v0: raw tokens without Kafka headers, PLAIN and SCRAM, then requests.
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake_at(0, "PLAIN"), 0);
    assert_eq!(
        conn.raw(&plain_message("alice", "alice-secret")),
        Some(vec![])
    );
    assert!(conn.metadata_answered(), "after a v0 PLAIN login");
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake_at(0, "SCRAM-SHA-512"), 0);
    let mut client = ScramClient::new(ScramMechanism::Sha512, "alice", "alice-secret", "v0nonce");
    let first = conn.raw(client.client_first().as_bytes()).unwrap();
    let last = client
        .client_final(std::str::from_utf8(&first).unwrap())
        .unwrap();
    let server_final = conn.raw(last.as_bytes()).unwrap();
    client
        .verify_server_final(std::str::from_utf8(&server_final).unwrap())
        .unwrap();
    assert!(conn.metadata_answered(), "after a v0 SCRAM login");
    // ... and a wrong password there is a closed connection (v0 has no error answer).
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake_at(0, "PLAIN"), 0);
    assert_eq!(
        conn.raw(&plain_message("alice", "wrong")),
        None,
        "v0 wrong password"
    );

    // A wrong password, with SCRAM and with PLAIN.
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(
        conn.login_scram(ScramMechanism::Sha512, "alice", "wrong"),
        Err(SASL_AUTHENTICATION_FAILED)
    );
    assert!(conn.closed(), "wrong SCRAM password");
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake("PLAIN"), 0);
    assert_eq!(
        conn.authenticate(&plain_message("alice", "wrong"))
            .map(|r| r.0),
        Some(SASL_AUTHENTICATION_FAILED)
    );
    assert!(conn.closed(), "wrong PLAIN password");

    // An unknown user fails at the proof, as a wrong password does.
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(
        conn.login_scram(ScramMechanism::Sha512, "mallory", "x"),
        Err(SASL_AUTHENTICATION_FAILED)
    );
    assert!(conn.closed(), "unknown user");

    // A malformed client-first message.
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake("SCRAM-SHA-512"), 0);
    assert_eq!(
        conn.authenticate(b"n,,n=alice").map(|r| r.0),
        Some(SASL_AUTHENTICATION_FAILED)
    );
    assert!(conn.closed(), "malformed client-first");

    // A client-final message recorded from an exchange that succeeded, replayed in a new one.
    let mut recorder = SaslConn::connect(&ferry);
    assert_eq!(recorder.handshake("SCRAM-SHA-256"), 0);
    let mut client = ScramClient::new(
        ScramMechanism::Sha256,
        "alice",
        "alice-secret",
        "fixednonce",
    );
    let (_, first) = recorder
        .authenticate(client.client_first().as_bytes())
        .unwrap();
    let recorded = client
        .client_final(std::str::from_utf8(&first).unwrap())
        .unwrap();
    assert_eq!(
        recorder.authenticate(recorded.as_bytes()).map(|r| r.0),
        Some(0),
        "the recorded exchange"
    );
    let mut replay = SaslConn::connect(&ferry);
    assert_eq!(replay.handshake("SCRAM-SHA-256"), 0);
    let (code, _) = replay
        .authenticate(client.client_first().as_bytes())
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        replay.authenticate(recorded.as_bytes()).map(|r| r.0),
        Some(SASL_AUTHENTICATION_FAILED)
    );
    assert!(replay.closed(), "replayed client-final");

    // A mechanism that is not enabled is refused at the handshake.
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake("GSSAPI"), 33);
    assert!(conn.closed(), "GSSAPI");

    // A 100 MiB frame length before authentication closes at once, without an answer.
    let mut conn = SaslConn::connect(&ferry);
    conn.stream
        .write_all(&(100 * 1024 * 1024i32).to_be_bytes())
        .unwrap();
    assert!(conn.closed(), "100 MiB frame");

    // Metadata and Produce before authentication close the connection.
    let mut conn = SaslConn::connect(&ferry);
    assert!(!conn.metadata_answered(), "Metadata before authentication");
    let mut conn = SaslConn::connect(&ferry);
    conn.send(
        ApiKey::Produce,
        3,
        RequestKind::Produce(ProduceRequest::default()),
    );
    assert!(conn.closed(), "Produce before authentication");
    // Also after a handshake, before the exchange ends.
    let mut conn = SaslConn::connect(&ferry);
    assert_eq!(conn.handshake("SCRAM-SHA-512"), 0);
    assert!(!conn.metadata_answered(), "Metadata mid-exchange");

    // librdkafka with a wrong password cannot fetch metadata; with the right one (above) it can.
    let client: BaseConsumer = {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &bootstrap);
        for (key, value) in login("SCRAM-SHA-512", "alice", "wrong") {
            config.set(key, value);
        }
        config.create().unwrap()
    };
    assert!(client.fetch_metadata(None, Duration::from_secs(3)).is_err());

    stop.store(true, Ordering::Relaxed);
    let sent = background.await.unwrap();
    let consumer = consumer_from_start_with(
        &bootstrap,
        "sasl-steady",
        1,
        &login("SCRAM-SHA-512", "alice", "alice-secret"),
    );
    let read = consume(&consumer, 1, sent as usize, Duration::from_secs(20));
    assert_eq!(read[0].len() as u64, sent);

    // Counted: the successes and failures above, by mechanism.
    let metrics = crate::metrics::scrape(&ferry);
    for (series, at_least) in [
        (
            "ferry_sasl_authentications_total{mechanism=\"PLAIN\",outcome=\"failure\"}",
            2.0,
        ),
        (
            "ferry_sasl_authentications_total{mechanism=\"PLAIN\",outcome=\"success\"}",
            1.0,
        ),
        (
            "ferry_sasl_authentications_total{mechanism=\"SCRAM-SHA-512\",outcome=\"failure\"}",
            3.0,
        ),
        (
            "ferry_sasl_authentications_total{mechanism=\"SCRAM-SHA-256\",outcome=\"failure\"}",
            1.0,
        ),
        (
            "ferry_sasl_authentications_total{mechanism=\"SCRAM-SHA-256\",outcome=\"success\"}",
            2.0,
        ),
    ] {
        let value = metrics.get(series);
        assert!(value >= at_least, "{series} = {value}");
    }
}

#[test]
fn no_known_mechanism_or_a_damaged_store_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |mechanisms: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--set", "listeners=SASL_PLAINTEXT://127.0.0.1:0", "--set"])
            .arg(format!("sasl.enabled.mechanisms={mechanisms}"))
            .env("FERRY_LOG", "off")
            .output()
            .expect("run ferry serve");
        assert!(!output.status.success(), "{mechanisms:?} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let empty = serve("");
    assert!(empty.contains("needs sasl.enabled.mechanisms"), "{empty}");
    let unknown = serve("SCRAM-SHA-512,GSSAPI");
    assert!(unknown.contains("unknown mechanism GSSAPI"), "{unknown}");
    // A damaged credential store refuses the start, naming the file, rather than serve with no
    // users; the control, a known mechanism and an intact store, starts: every other test here.
    std::fs::write(
        dir.path().join("users.json"),
        "{\"version\": 1, \"users\": {",
    )
    .unwrap();
    let damaged = serve("PLAIN");
    assert!(damaged.contains("users.json is damaged"), "{damaged}");
}

/// SASL inside TLS: librdkafka over SASL_SSL (rustls on the broker) logs in with SCRAM-SHA-512
/// and PLAIN and produces, consumes in a group and commits a transaction; a wrong password over
/// the same TLS is refused (the control of the logins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_logs_in_over_sasl_ssl() {
    let dir = tempfile::tempdir().unwrap();
    let pki = bench::tls::Pki::generate(dir.path()).unwrap();
    let data = dir.path().join("data");
    assert!(users_add(&data, "alice", "alice-secret", &[]));
    let mut settings = vec![
        "listeners=SASL_SSL://127.0.0.1:0".to_string(),
        "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN".to_string(),
        "group.initial.rebalance.delay.ms=0".to_string(),
    ];
    settings.extend(crate::tls::broker_settings(&pki, "none"));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let ferry = Ferry::start(&data, &settings);
    let bootstrap = ferry.bootstrap();
    let ca = pki.ca.display().to_string();
    for (mechanism, topic) in [
        ("SCRAM-SHA-512", "sasl-ssl-512"),
        ("PLAIN", "sasl-ssl-plain"),
    ] {
        let who = vec![
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", ca.as_str()),
            ("sasl.mechanism", mechanism),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ];
        produce_consume_transact(&bootstrap, topic, &who).await;
        let mut wrong = who.clone();
        wrong[4] = ("sasl.password", "wrong");
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &bootstrap);
        for (key, value) in &wrong {
            config.set(*key, *value);
        }
        let client: BaseConsumer = config.create().unwrap();
        assert!(
            client.fetch_metadata(None, Duration::from_secs(3)).is_err(),
            "{mechanism}: a wrong password over TLS"
        );
    }
}
