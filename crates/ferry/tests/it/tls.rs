//! Listeners by Kafka's names and TLS: librdkafka (OpenSSL) against ferry's rustls listeners.
//! An SSL listener beside a PLAINTEXT one serves idempotent produce, a consumer group with
//! commits and a transaction; Metadata on each listener advertises that listener's port; a
//! client certificate becomes the principal; `ssl.client.auth=required` refuses a client without
//! one; a silent peer and a peer sending garbage on the SSL port lose only their own connections.
//! Every certificate is made here (`bench::tls::Pki`, with rcgen).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use bench::tls::Pki;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::{ClientConfig, Message};

use crate::harness::Ferry;

const TIMEOUT: Duration = Duration::from_secs(20);

/// The broker settings of a TLS listener with this keystore, checking client certificates
/// against this CA as `client_auth` says.
pub(crate) fn broker_settings(pki: &Pki, client_auth: &str) -> Vec<String> {
    vec![
        "ssl.keystore.type=PEM".into(),
        format!("ssl.keystore.location={}", pki.keystore.display()),
        format!("ssl.truststore.location={}", pki.ca.display()),
        format!("ssl.client.auth={client_auth}"),
    ]
}

/// librdkafka's settings for SSL to `address`, with the client certificate or without.
fn client(pki: &Pki, address: SocketAddr, with_certificate: bool) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", address.to_string())
        .set("message.timeout.ms", "30000");
    for (name, value) in pki.client_settings(with_certificate) {
        config.set(name, value);
    }
    config
}

fn start(dir: &Path, pki: &Pki, client_auth: &str, extra: &[&str], traces: &Path) -> Ferry {
    let mut settings = vec!["listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0".to_string()];
    settings.extend(broker_settings(pki, client_auth));
    settings.extend(extra.iter().map(|s| s.to_string()));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    Ferry::start_traced_at(&dir.join("data"), &settings, traces, "info,server=debug")
}

/// The port of the one broker a client learns from Metadata.
fn advertised_port(config: &ClientConfig) -> Result<u16, String> {
    let consumer: BaseConsumer = config.create().expect("create client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let brokers = metadata.brokers();
    assert_eq!(brokers.len(), 1, "one broker");
    Ok(brokers[0].port() as u16)
}

#[test]
fn ssl_listener_serves_produce_groups_and_transactions_beside_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let traces = dir.path().join("traces");
    let ferry = start(
        dir.path(),
        &pki,
        "requested",
        &[
            "ssl.handshake.timeout.ms=2000",
            "metrics.listen=127.0.0.1:0",
        ],
        &traces,
    );
    let (plain, ssl) = (ferry.listener("PLAINTEXT"), ferry.listener("SSL"));
    assert_eq!(ferry.addr, plain, "the first line names the first listener");

    // Each listener advertises itself: a client never learns the other listener's port.
    let mut plaintext = ClientConfig::new();
    plaintext.set("bootstrap.servers", plain.to_string());
    assert_eq!(advertised_port(&plaintext), Ok(plain.port()));
    assert_eq!(
        advertised_port(&client(&pki, ssl, true)),
        Ok(ssl.port()),
        "SSL with a certificate"
    );
    // ssl.client.auth=requested: a client without a certificate is served too.
    assert_eq!(advertised_port(&client(&pki, ssl, false)), Ok(ssl.port()));

    // Hostile peers on the SSL port, left open while the run goes on: one silent, one that
    // sends bytes that are no ClientHello.
    let mut silent = TcpStream::connect(ssl).unwrap();
    let mut garbage = TcpStream::connect(ssl).unwrap();
    garbage
        .write_all(b"\x00\x00\x00\x10this is no TLS record")
        .unwrap();

    // Idempotent produce with acks=all over SSL: every record acknowledged.
    let topic = "tls-records";
    let records = 200;
    let producer: FutureProducer = client(&pki, ssl, true)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let sends: Vec<_> = (0..records)
        .map(|i| {
            let key = format!("k{i}");
            let value = format!("v{i}");
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                .map_err(|(error, _)| error)
        })
        .collect();
    for send in sends {
        futures::executor::block_on(send.expect("queue record"))
            .expect("not cancelled")
            .expect("acknowledged");
    }

    // Both hostile peers were closed by the handshake timeout; the producer was unaffected.
    for peer in [&mut silent, &mut garbage] {
        peer.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match peer.read(&mut buf) {
                Ok(0) | Err(_) => break,
                // rustls may answer garbage with an alert before it closes.
                Ok(_) => continue,
            }
        }
    }

    // A consumer group over SSL reads every record and commits its position.
    let mut group = client(&pki, ssl, true);
    group
        .set("group.id", "tls-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = group.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let read = consume(&consumer, records, "read_uncommitted");
    assert_eq!(read.len(), records, "every acknowledged record, once");
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = consumer
        .committed(TIMEOUT)
        .unwrap()
        .find_partition(topic, 0)
        .unwrap()
        .offset();
    assert_eq!(committed, rdkafka::Offset::Offset(records as i64));

    // A transaction over SSL: its records are visible to read_committed once committed.
    let txn: ThreadedProducer<DefaultProducerContext> = client(&pki, ssl, true)
        .set("transactional.id", "tls-txn")
        .create()
        .unwrap();
    txn.init_transactions(TIMEOUT).unwrap();
    txn.begin_transaction().unwrap();
    for i in 0..10 {
        let key = format!("t{i}");
        txn.send(BaseRecord::to("tls-txn").key(&key).payload("x"))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    txn.commit_transaction(TIMEOUT).unwrap();
    let mut committed_reader = client(&pki, ssl, false);
    committed_reader
        .set("group.id", "tls-txn-reader")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    let reader: BaseConsumer = committed_reader.create().unwrap();
    reader.subscribe(&["tls-txn"]).unwrap();
    assert_eq!(consume(&reader, 10, "read_committed").len(), 10);

    // The certificate's subject is the connection's principal, as Kafka prints it.
    let text = std::fs::read_to_string(&traces).unwrap();
    let authenticated: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("authenticated"))
        .collect();
    assert!(
        text.contains("principal=User:CN=client,O=ferry"),
        "no principal from the client certificate in the traces: {authenticated:#?}"
    );
    assert!(
        text.contains("principal=User:ANONYMOUS"),
        "a client without a certificate is anonymous"
    );
    assert!(
        text.contains("no TLS handshake within ssl.handshake.timeout.ms"),
        "the silent peer's WARN"
    );
    assert!(text.contains("TLS handshake failed"), "the garbage's WARN");
    let scrape = crate::metrics::scrape(&ferry);
    assert_eq!(
        scrape.get("ferry_connections_closed_total{reason=\"tls_handshake\"}"),
        2.0
    );
}

/// Polls `consumer` until it has `count` records (or the timeout); their keys.
fn consume(consumer: &BaseConsumer, count: usize, what: &str) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut keys = Vec::new();
    while keys.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap_or_else(|e| panic!("{what} consumer: {e}"));
            keys.push(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned());
        }
    }
    keys
}

#[test]
fn required_client_auth_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let traces = dir.path().join("traces");
    let ferry = start(dir.path(), &pki, "required", &[], &traces);
    let ssl = ferry.listener("SSL");
    // Control: with its certificate the client is served.
    assert_eq!(advertised_port(&client(&pki, ssl, true)), Ok(ssl.port()));
    let refused = advertised_port(&client(&pki, ssl, false));
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );
    let text = std::fs::read_to_string(&traces).unwrap();
    assert!(text.contains("TLS handshake failed"), "{text}");
}

#[test]
fn bad_tls_settings_refuse_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let missing = dir.path().join("missing.pem");
    // A keystore holding only a certificate (no key), and one whose key is not the certificate's.
    let no_key = dir.path().join("no-key.pem");
    std::fs::write(&no_key, std::fs::read(&pki.client_cert).unwrap()).unwrap();
    let mismatch = dir.path().join("mismatch.pem");
    let keystore = std::fs::read_to_string(&pki.keystore).unwrap();
    let certificates = &keystore[keystore.find("-----BEGIN CERTIFICATE").unwrap()..];
    let other_key = std::fs::read_to_string(&pki.client_key).unwrap();
    std::fs::write(&mismatch, format!("{other_key}{certificates}")).unwrap();
    let cases: [(&Path, &str); 4] = [
        (&missing, "missing.pem"),
        (&no_key, "no private key"),
        (&mismatch, "mismatch.pem"),
        // Control: the real keystore starts.
        (&pki.keystore, ""),
    ];
    for (keystore, expect) in cases {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
            command.env_remove(key);
        }
        let output = command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--set")
            .arg("listeners=SSL://127.0.0.1:0")
            .arg("--set")
            .arg(format!("ssl.keystore.location={}", keystore.display()))
            .env("FERRY_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if expect.is_empty() {
            let mut child = output;
            let mut line = String::new();
            use std::io::BufRead;
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("ferry: listening on "), "{line}");
            child.kill().unwrap();
            child.wait().unwrap();
            continue;
        }
        let output = output.wait_with_output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expect) && stderr.contains("ssl.keystore.location"),
            "{expect}: {stderr}"
        );
    }
}
