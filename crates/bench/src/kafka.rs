//! The Kafka-protocol targets (ferry, tansu) and their workloads, driven by librdkafka through
//! the `rdkafka` crate: durable produce, transactional produce, consume, end-to-end latency at a
//! fixed rate, start-up, memory and recovery after `kill -9`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::process::{self, Broker};
use crate::report::{Row, Status, Target, TargetRun};
use crate::stats::{median, Latency};
use crate::{progress, secs, Plan};

/// A Kafka-protocol broker the bench can start.
pub enum Server {
    /// ferry, with its metrics endpoint on `metrics` when given, and an SSL listener on the
    /// address given with its keystore (beside the PLAINTEXT one, which start-up and topic
    /// creation use).
    Ferry {
        exe: PathBuf,
        metrics: Option<SocketAddr>,
        tls: Option<(SocketAddr, PathBuf)>,
    },
    Tansu {
        exe: PathBuf,
    },
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Ferry { .. } => "ferry",
            Server::Tansu { .. } => "tansu",
        }
    }

    fn command(&self, data: &Path, addr: SocketAddr, partitions: i32) -> Command {
        match self {
            Server::Ferry { exe, metrics, tls } => {
                let mut command = Command::new(exe);
                command.arg("serve");
                match tls {
                    None => command.arg("--listen").arg(addr.to_string()),
                    Some((ssl, keystore)) => command
                        .arg("--set")
                        .arg(format!("listeners=PLAINTEXT://{addr},SSL://{ssl}"))
                        .arg("--set")
                        .arg(format!("ssl.keystore.location={}", keystore.display())),
                };
                command
                    .arg("--data-dir")
                    .arg(data)
                    .arg("--set")
                    .arg(format!("num.partitions={partitions}"));
                if let Some(metrics) = metrics {
                    command
                        .arg("--set")
                        .arg(format!("metrics.listen={metrics}"));
                }
                // The bench's own FERRY_* variables would read as broker settings.
                for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
                    command.env_remove(key);
                }
                command.env("FERRY_LOG", "warn");
                command
            }
            Server::Tansu { exe } => {
                let url = format!("tcp://{addr}");
                let mut command = Command::new(exe);
                command
                    .arg("broker")
                    .arg("--listener-url")
                    .arg(&url)
                    .arg("--advertised-listener-url")
                    .arg(&url)
                    .arg("--storage-engine")
                    .arg(format!("sqlite://{}", data.join("tansu.db").display()))
                    // tansu 0.6 drops the URL path's leading slash and opens the rest relative
                    // to its working directory: from "/" the absolute path comes out right.
                    .current_dir("/");
                command
            }
        }
    }

    /// Starts the broker on `data` (created if missing) and waits for its first ApiVersions
    /// answer; returns the broker, the time to that answer, and the APIs it advertises.
    fn start(
        &self,
        data: &Path,
        addr: SocketAddr,
        partitions: i32,
    ) -> Result<(Broker, Duration, Vec<i16>)> {
        std::fs::create_dir_all(data).with_context(|| format!("create {}", data.display()))?;
        let log = data.with_extension("log");
        Broker::start(
            self.command(data, addr, partitions),
            addr,
            &log,
            |addr, deadline| process::retry_until(deadline, || api_versions(addr, deadline)),
        )
    }
}

/// tansu from FERRY_BENCH_TANSU, the bench's cache (`scripts/bench-peers --tansu`) or PATH.
pub fn find_tansu() -> Option<PathBuf> {
    if std::env::var_os("FERRY_BENCH_TANSU").is_none() {
        let cached = process::cache_dir().map(|dir| dir.join("tansu/bin/tansu"));
        if let Some(cached) = cached.filter(|path| path.is_file()) {
            return Some(cached);
        }
    }
    process::find_program("FERRY_BENCH_TANSU", "tansu")
}

/// Runs every workload against `server`. A failing workload becomes a failed row; the others
/// still run.
pub fn run_target(server: &Server, plan: &Plan, work: &Path) -> TargetRun {
    let name = server.name();
    let version = match server {
        Server::Ferry { .. } => Some(format!("ferry {}", env!("CARGO_PKG_VERSION"))),
        Server::Tansu { exe } => process::version_of(exe),
    };
    let mut target = Target {
        name: name.into(),
        status: Status::Ok,
        version,
        note: None,
        features: BTreeMap::new(),
    };
    let mut rows = Vec::new();
    if plan.wants("startup") {
        progress(&format!("{name}: start-up"));
        rows.push(row_or_failed(name, "startup", startup(server, plan, work)));
    }
    match Session::start(server, plan, work) {
        Ok(mut session) => {
            target.features = session.features();
            session.run_all(&mut rows);
        }
        Err(error) => {
            target.status = Status::Failed;
            target.note = Some(format!("{error:#}"));
            progress(&format!("{name}: FAILED to start: {error:#}"));
        }
    }
    TargetRun { target, rows }
}

fn row_or_failed(target: &str, workload: &str, result: Result<Row>) -> Row {
    result.unwrap_or_else(|error| {
        progress(&format!("{target}/{workload}: FAILED: {error:#}"));
        Row::not_ok(target, workload, Status::Failed, format!("{error:#}"))
    })
}

/// Start-up on a fresh data directory, several times; the median.
fn startup(server: &Server, plan: &Plan, work: &Path) -> Result<Row> {
    let mut times = Vec::new();
    for run in 0..plan.startup_runs {
        let data = work.join(format!("{}-startup-{run}", server.name()));
        let (mut broker, ready, _) = server.start(&data, process::free_addr()?, plan.partitions)?;
        broker.stop();
        times.push(ready.as_secs_f64() * 1e3);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    let ready_ms = median(&mut times);
    Ok(Row::ok(
        server.name(),
        "startup",
        &[
            ("ready_ms", ready_ms),
            ("ready_ms_min", min),
            ("ready_ms_max", max),
        ],
    ))
}

/// One long-running broker for the throughput, latency, memory and recovery workloads.
struct Session<'a> {
    server: &'a Server,
    plan: &'a Plan,
    broker: Broker,
    data: PathBuf,
    /// Where producers and consumers connect, with `client_tls` (SSL on a TLS row).
    bootstrap: String,
    client_tls: Vec<(&'static str, String)>,
    /// Where topics are created: the PLAINTEXT listener.
    admin_bootstrap: String,
    apis: Vec<i16>,
    idle_rss_bytes: Option<u64>,
}

impl<'a> Session<'a> {
    fn start(server: &'a Server, plan: &'a Plan, work: &Path) -> Result<Session<'a>> {
        let data = work.join(format!("{}-data", server.name()));
        let addr = process::free_addr()?;
        let (broker, _, apis) = server.start(&data, addr, plan.partitions)?;
        // Idle: started, answered one request, nothing else.
        std::thread::sleep(Duration::from_millis(500));
        let idle_rss_bytes = broker.rss_bytes();
        Ok(Session {
            server,
            plan,
            broker,
            data,
            bootstrap: addr.to_string(),
            client_tls: Vec::new(),
            admin_bootstrap: addr.to_string(),
            apis,
            idle_rss_bytes,
        })
    }

    fn has(&self, api: ApiKey) -> bool {
        self.apis.contains(&(api as i16))
    }

    fn idempotence(&self) -> bool {
        self.has(ApiKey::InitProducerId)
    }

    fn transactions(&self) -> bool {
        self.idempotence()
            && self.has(ApiKey::AddPartitionsToTxn)
            && self.has(ApiKey::EndTxn)
            && self.has(ApiKey::FindCoordinator)
    }

    fn features(&self) -> BTreeMap<String, bool> {
        BTreeMap::from([
            ("idempotence".to_string(), self.idempotence()),
            ("transactions".to_string(), self.transactions()),
        ])
    }

    fn name(&self) -> &'static str {
        self.server.name()
    }

    fn run_all(&mut self, rows: &mut Vec<Row>) {
        let name = self.name();
        let plan = self.plan;
        let durable = Mode::durable(self.idempotence());
        let mut produced_1kib = 0;
        if plan.wants("produce_1kib") {
            progress(&format!("{name}: produce 1 KiB"));
            let result = self.produce("produce_1kib", "bench-1kib", 1024, durable);
            produced_1kib = result.as_ref().map(|(_, records)| *records).unwrap_or(0);
            rows.push(row_or_failed(
                name,
                "produce_1kib",
                result.map(|(row, _)| row),
            ));
        }
        if plan.wants("produce_100b") {
            progress(&format!("{name}: produce 100 B"));
            let result = self.produce("produce_100b", "bench-100b", 100, durable);
            rows.push(row_or_failed(
                name,
                "produce_100b",
                result.map(|(row, _)| row),
            ));
        }
        if plan.wants("produce_1kib_txn") {
            rows.push(self.produce_transactional());
        }
        if let (Server::Ferry { exe, .. }, true) = (self.server, plan.wants("metrics_cost")) {
            progress(&format!("{name}: produce 1 KiB with metrics off and on"));
            let work = self
                .data
                .parent()
                .expect("the data directory is in the work directory");
            rows.push(row_or_failed(
                name,
                "metrics_cost",
                metrics_cost(exe, plan, work),
            ));
        }
        if let (Server::Ferry { exe, .. }, true) = (self.server, plan.wants("produce_1kib_tls")) {
            progress(&format!("{name}: produce and consume 1 KiB over SSL"));
            let work = self
                .data
                .parent()
                .expect("the data directory is in the work directory");
            rows.extend(tls_rows(exe, plan, work));
        }
        if plan.wants("consume_1kib") && plan.wants("produce_1kib") {
            progress(&format!("{name}: consume 1 KiB"));
            let result = self.consume("consume_1kib", "bench-1kib", produced_1kib);
            rows.push(row_or_failed(name, "consume_1kib", result));
        }
        if plan.wants("e2e_latency") {
            let rate = plan.latency_rate_per_s;
            progress(&format!("{name}: end-to-end latency at {rate}/s"));
            rows.push(row_or_failed(name, "e2e_latency", self.latency(None)));
        }
        if plan.wants("e2e_latency_churn") {
            if let Server::Tansu { .. } = self.server {
                // Observed 2026-12-04 with tansu 0.6.0: 3 of 5 runs ended in a SIGSEGV of this
                // process in librdkafka's metadata cache (rd_kafka_metadata_update_op, as in
                // confluentinc/librdkafka#5280), losing every row; the other 2 failed the
                // workload (QueueFull, an unknown CreateTopics error).
                rows.push(Row::not_ok(
                    name,
                    "e2e_latency_churn",
                    Status::Failed,
                    "not run: during its topic churn librdkafka crashed this process (SIGSEGV \
                     in its metadata cache, librdkafka#5280) in 3 of 5 runs"
                        .into(),
                ));
            } else {
                progress(&format!(
                    "{name}: end-to-end latency while another client creates and deletes topics"
                ));
                let churn = Churn::new(&self.admin_bootstrap, plan.partitions);
                let row = churn.and_then(|churn| self.latency(Some(churn)));
                rows.push(row_or_failed(name, "e2e_latency_churn", row));
            }
        }
        rows.push(self.memory());
        if plan.wants("recovery") {
            progress(&format!("{name}: recovery after kill -9"));
            rows.push(row_or_failed(name, "recovery", self.recovery()));
        }
        self.broker.stop();
    }

    fn produce_transactional(&self) -> Row {
        let name = self.name();
        if !self.transactions() {
            return Row::not_ok(
                name,
                "produce_1kib_txn",
                Status::NotAvailable,
                "not available yet: the broker does not advertise transactions".into(),
            );
        }
        progress(&format!(
            "{name}: produce 1 KiB in transactions, in turns with idempotent produce"
        ));
        row_or_failed(name, "produce_1kib_txn", self.transactions_in_turns())
    }

    /// Transactions committing every 100 ms and plain idempotent produce, in turns
    /// (`TXN_COST_ROUNDS` of each, a share of the produce time each, on fresh topics of the
    /// same broker, which goes first alternating), so that both meet the same machine: the
    /// figure is the median of the rounds' ratios, each of a transactional run to the idempotent
    /// run beside it (the cost is one minus it).
    /// The row's other figures are the transactional round of the median throughput.
    fn transactions_in_turns(&self) -> Result<Row> {
        let seconds = self.plan.produce_seconds / TXN_COST_ROUNDS as f64;
        let mut rounds: Vec<(f64, Row)> = Vec::new();
        for round in 0..TXN_COST_ROUNDS {
            let run = |topic: String, mode| {
                self.produce_for("produce_1kib_txn", &topic, 1024, mode, seconds)
                    .map(|(row, _)| row)
            };
            let plain = || {
                run(
                    format!("bench-txn-plain-{round}"),
                    Mode::durable(self.idempotence()),
                )
            };
            let txn = || run(format!("bench-txn-{round}"), Mode::Transactional);
            // Which goes first alternates, so neither always meets the machine as the other
            // left it (page cache grown, disk writing back).
            let (plain, txn) = if round % 2 == 0 {
                let plain = plain()?;
                (plain, txn()?)
            } else {
                let txn = txn()?;
                (plain()?, txn)
            };
            rounds.push((plain.metrics["records_per_s"], txn));
        }
        let mut ratios: Vec<f64> = rounds
            .iter()
            .map(|(plain, txn)| txn.metrics["records_per_s"] / plain)
            .collect();
        let mut plain: Vec<f64> = rounds.iter().map(|(plain, _)| *plain).collect();
        let each: Vec<(String, f64)> = rounds
            .iter()
            .enumerate()
            .flat_map(|(round, (plain, txn))| {
                [
                    (format!("round_{round}_idempotent_records_per_s"), *plain),
                    (
                        format!("round_{round}_txn_records_per_s"),
                        txn.metrics["records_per_s"],
                    ),
                ]
            })
            .collect();
        let ratio = median(&mut ratios);
        let plain = median(&mut plain);
        rounds
            .sort_by(|a, b| a.1.metrics["records_per_s"].total_cmp(&b.1.metrics["records_per_s"]));
        let (_, mut row) = rounds.swap_remove(rounds.len() / 2);
        row.metrics
            .insert("idempotent_records_per_s_in_turns".into(), plain);
        row.metrics
            .insert("txn_vs_idempotent_in_turns".into(), ratio);
        row.metrics.insert("rounds".into(), TXN_COST_ROUNDS as f64);
        row.metrics.extend(each);
        Ok(row)
    }

    fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "ferry-bench")
            .set("message.timeout.ms", "60000")
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "16384")
            .set("linger.ms", "5");
        for (name, value) in &self.client_tls {
            config.set(*name, value);
        }
        config
    }

    fn create_topic(&self, topic: &str) -> Result<()> {
        let settings = client::Settings::new(&self.admin_bootstrap);
        let topics = [(topic, self.plan.partitions)];
        let created = client::admin::create_topics(&settings, &topics, Duration::from_secs(30));
        futures::executor::block_on(created).with_context(|| format!("create topic {topic}"))
    }

    /// Sends `record_bytes` records as fast as the client queue allows for the plan's
    /// duration, round-robin over the partitions; returns the row and the acknowledged count.
    fn produce(
        &self,
        workload: &str,
        topic: &str,
        record_bytes: usize,
        mode: Mode,
    ) -> Result<(Row, u64)> {
        let seconds = self.plan.produce_seconds;
        self.produce_for(workload, topic, record_bytes, mode, seconds)
    }

    /// [`Session::produce`] for `seconds`.
    fn produce_for(
        &self,
        workload: &str,
        topic: &str,
        record_bytes: usize,
        mode: Mode,
        seconds: f64,
    ) -> Result<(Row, u64)> {
        self.create_topic(topic)?;
        let mut config = self.producer_config();
        config.set("acks", "all");
        mode.configure(&mut config);
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .context("create producer")?;
        if mode == Mode::Transactional {
            producer
                .init_transactions(Duration::from_secs(30))
                .context("init transactions")?;
            producer.begin_transaction().context("begin transaction")?;
        }
        let payload = vec![b'f'; record_bytes];
        let partitions = self.plan.partitions;
        let limit = secs(seconds);
        let cpu = process::CpuMeter::start(&self.broker);
        let start = Instant::now();
        let mut last_commit = start;
        let mut sent = 0u64;
        let mut commit_times = CommitTimes::default();
        while sent % 64 != 0 || start.elapsed() < limit {
            let partition = (sent % partitions as u64) as i32;
            let record = record_to(topic).partition(partition).payload(&payload);
            match producer.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(anyhow!(error).context("produce")),
            }
            if sent % 1024 == 0 {
                producer.poll(Duration::ZERO);
            }
            if mode == Mode::Transactional && last_commit.elapsed() >= Duration::from_millis(100) {
                commit_times.commit(&producer)?;
                producer.begin_transaction().context("begin transaction")?;
                last_commit = Instant::now();
            }
        }
        if mode == Mode::Transactional {
            commit_times.commit(&producer)?;
        }
        producer
            .flush(Duration::from_secs(120))
            .context("flush producer")?;
        let seconds = start.elapsed().as_secs_f64();
        let deliveries = producer.context();
        deliveries.check()?;
        let acked = deliveries.acked.load(Ordering::Relaxed);
        anyhow::ensure!(acked == sent, "sent {sent} records, {acked} acknowledged");
        let mut metrics = vec![
            ("records", acked as f64),
            ("seconds", seconds),
            ("records_per_s", acked as f64 / seconds),
            (
                "bytes_per_s",
                (acked * record_bytes as u64) as f64 / seconds,
            ),
            ("record_bytes", record_bytes as f64),
            ("idempotent", mode.idempotent() as u8 as f64),
        ];
        if mode == Mode::Transactional {
            metrics.extend(commit_times.metrics());
        }
        metrics.extend(cpu.metrics(acked * record_bytes as u64));
        let note = (!mode.idempotent())
            .then(|| "NOT idempotent: the broker does not advertise InitProducerId".to_string());
        Ok((
            Row::ok(self.name(), workload, &metrics).with_note(note),
            acked,
        ))
    }

    /// Reads the first `expected` records of `topic` from the beginning, all partitions.
    fn consume(&self, workload: &str, topic: &str, expected: u64) -> Result<Row> {
        anyhow::ensure!(expected > 0, "nothing was produced to consume");
        let consumer = self.consumer(topic, Offset::Beginning)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut received = 0u64;
        let mut bytes = 0u64;
        let mut start = None;
        let cpu = process::CpuMeter::start(&self.broker);
        while received < expected {
            anyhow::ensure!(
                Instant::now() < deadline,
                "consumed {received} of {expected} records in 120 s"
            );
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.context("consume")?;
            start.get_or_insert_with(Instant::now);
            received += 1;
            bytes += message.payload_len() as u64;
        }
        // From the first record received: connection and metadata set-up are not throughput.
        let seconds = start.map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-6);
        Ok(Row::ok(
            self.name(),
            workload,
            &[
                ("records", received as f64),
                ("seconds", seconds),
                ("records_per_s", received as f64 / seconds),
                ("bytes_per_s", bytes as f64 / seconds),
            ]
            .into_iter()
            .chain(cpu.metrics(bytes))
            .collect::<Vec<_>>(),
        ))
    }

    fn consumer(&self, topic: &str, offset: Offset) -> Result<BaseConsumer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "ferry-bench")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100");
        for (name, value) in &self.client_tls {
            config.set(*name, value);
        }
        let consumer: BaseConsumer = config.create().context("create consumer")?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..self.plan.partitions {
            assignment
                .add_partition_offset(topic, partition, offset)
                .context("assign partition")?;
        }
        consumer.assign(&assignment).context("assign partitions")?;
        Ok(consumer)
    }

    /// The e2e_latency workload; with `churn`, e2e_latency_churn: the same while another
    /// client creates and deletes topics back to back.
    fn latency(&self, churn: Option<Churn>) -> Result<Row> {
        let (workload, topic) = match churn {
            None => ("e2e_latency", "bench-latency"),
            Some(_) => ("e2e_latency_churn", "bench-latency-churn"),
        };
        self.create_topic(topic)?;
        let mut config = self.producer_config();
        config.set("acks", "all").set("linger.ms", "0").set(
            "statistics.interval.ms",
            CLIENT_WINDOW.as_millis().to_string(),
        );
        Mode::durable(self.idempotence()).configure(&mut config);
        let origin = Instant::now();
        let warmup_ns = (self.plan.latency_warmup_seconds * 1e9) as u64;
        let deliveries = Deliveries {
            ack_latency: Some((origin, warmup_ns, Mutex::default())),
            ..Deliveries::default()
        };
        // Delivery reports are served as they arrive by the producer's own polling thread, so
        // the sender can sleep between ticks and the acknowledgement time is when it came.
        let producer: ThreadedProducer<Deliveries> = config
            .create_with_context(deliveries)
            .context("create producer")?;
        let consumer = self.consumer(topic, Offset::Beginning)?;
        // ferry's own stage timings of this workload's requests, when its metrics are on.
        let metrics = match self.server {
            Server::Ferry { metrics, .. } => *metrics,
            Server::Tansu { .. } => None,
        };
        let before = metrics.map(crate::stages::scrape).transpose()?;
        let sent_total = Arc::new(AtomicU64::new(u64::MAX));
        let reader = {
            let sent_total = sent_total.clone();
            std::thread::spawn(move || receive_latencies(consumer, origin, warmup_ns, &sent_total))
        };
        let churning = churn.map(Churn::start);
        let sent = paced_send(&producer, topic, self.plan, origin).and_then(|sent| {
            producer
                .flush(Duration::from_secs(60))
                .context("flush producer")?;
            Ok(sent)
        });
        // Zero releases the reader at once when sending failed.
        sent_total.store(*sent.as_ref().unwrap_or(&0), Ordering::Release);
        let received = reader
            .join()
            .map_err(|_| anyhow!("latency reader panicked"))?;
        let topic_changes = churning.map(Churning::stop).transpose()?;
        let sent = sent?;
        let (received_count, e2e) = received?;
        producer.context().check()?;
        // Every acknowledgement reached the context (a poll that drops delivery reports would
        // leave the acknowledgement latency to whichever were left).
        let acked = producer.context().acked.load(Ordering::Relaxed);
        anyhow::ensure!(acked == sent, "sent {sent}, {acked} acknowledged");
        anyhow::ensure!(
            received_count == sent,
            "sent {sent}, received {received_count}"
        );
        let stages = match (metrics, before) {
            (Some(addr), Some(before)) => {
                crate::stages::produce_breakdown(&before, &crate::stages::scrape(addr)?)
            }
            _ => Vec::new(),
        };
        let e2e = e2e.percentiles();
        let ack = producer.context().ack_percentiles();
        let seconds = self.plan.latency_seconds;
        let mut figures = crate::stats::latency_figures(sent, seconds, &e2e, &ack);
        figures.extend(producer.context().client_figures());
        if let Some(changes) = topic_changes {
            figures.push(("topic_changes", changes as f64));
        }
        Ok(Row::ok(self.name(), workload, &figures).with_metrics(stages))
    }

    fn memory(&self) -> Row {
        match (self.idle_rss_bytes, self.broker.peak_rss_bytes()) {
            (Some(idle), Some(peak)) => Row::ok(
                self.name(),
                "memory",
                &[
                    ("idle_rss_bytes", idle as f64),
                    ("loaded_rss_bytes", peak as f64),
                ],
            ),
            _ => Row::not_ok(
                self.name(),
                "memory",
                Status::Failed,
                "cannot read /proc/PID/status".into(),
            ),
        }
    }

    /// Fills the log to the plan's size (acks=1: the filling is not what is measured), kills the
    /// broker with SIGKILL, restarts it on the same data and port and times it to its first
    /// answered request and to its first acknowledged `acks=all` produce.
    fn recovery(&mut self) -> Result<Row> {
        let topic = "bench-fill";
        self.fresh_broker()?;
        self.fill(topic)?;
        let log_bytes = process::dir_bytes(&self.data);
        self.broker.kill9();
        let addr: SocketAddr = self.bootstrap.parse().context("parse bootstrap")?;
        let started = Instant::now();
        let (broker, ready, _) = self.server.start(&self.data, addr, self.plan.partitions)?;
        self.broker = broker;
        let mut config = self.producer_config();
        config.set("acks", "all").set("linger.ms", "0");
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .context("create producer")?;
        producer
            .send(
                record_to(topic)
                    .partition(0)
                    .payload(b"after recovery".as_slice()),
            )
            .map_err(|(error, _)| anyhow!(error).context("produce after recovery"))?;
        producer
            .flush(Duration::from_secs(60))
            .context("flush after recovery")?;
        let first_produce = started.elapsed();
        producer.context().check()?;
        let note = (log_bytes < self.plan.recovery_log_bytes).then(|| {
            format!(
                "log reached {} MiB of {} MiB within {} s",
                log_bytes >> 20,
                self.plan.recovery_log_bytes >> 20,
                self.plan.fill_seconds_max
            )
        });
        Ok(Row::ok(
            self.name(),
            "recovery",
            &[
                ("log_bytes", log_bytes as f64),
                ("ready_ms", ready.as_secs_f64() * 1e3),
                ("first_produce_ms", first_produce.as_secs_f64() * 1e3),
            ],
        )
        .with_note(note))
    }

    /// Replaces the session's broker with one on a new, empty data directory, so that the
    /// recovery log has the plan's size whatever the other workloads wrote.
    fn fresh_broker(&mut self) -> Result<()> {
        self.broker.stop();
        let data = self
            .data
            .with_file_name(format!("{}-recovery", self.name()));
        let addr = process::free_addr()?;
        let (broker, _, _) = self.server.start(&data, addr, self.plan.partitions)?;
        self.broker = broker;
        self.data = data;
        self.bootstrap = addr.to_string();
        self.admin_bootstrap = addr.to_string();
        Ok(())
    }

    fn fill(&self, topic: &str) -> Result<()> {
        self.create_topic(topic)?;
        let mut config = self.producer_config();
        config
            .set("acks", "1")
            .set("linger.ms", "20")
            .set("enable.idempotence", "false");
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .context("create producer")?;
        let payload = vec![b'r'; 1024];
        let deadline = Instant::now() + secs(self.plan.fill_seconds_max);
        let mut sent = 0u64;
        while Instant::now() < deadline {
            if sent % 8192 == 0 && process::dir_bytes(&self.data) >= self.plan.recovery_log_bytes {
                break;
            }
            let partition = (sent % self.plan.partitions as u64) as i32;
            match producer.send(record_to(topic).partition(partition).payload(&payload)) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(anyhow!(error).context("fill the log")),
            }
        }
        producer
            .flush(Duration::from_secs(120))
            .context("flush fill")?;
        producer.context().check()
    }
}

/// Rounds of the metrics cost: each runs durable produce on a fresh broker with the metrics
/// endpoint off, then on, so drift on a shared machine hits both alike.
const METRICS_COST_ROUNDS: usize = 3;

/// How often the metrics cost scrapes `/metrics` while the endpoint is on: more often than
/// Prometheus's default 1 minute, so the figure is an upper bound.
const METRICS_SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// Durable 1 KiB produce with the metrics endpoint off and on, in turns on fresh brokers, each
/// for a third of the produce time; the median of each and their ratio.
fn metrics_cost(exe: &Path, plan: &Plan, work: &Path) -> Result<Row> {
    let plan = Plan {
        produce_seconds: plan.produce_seconds / METRICS_COST_ROUNDS as f64,
        ..plan.clone()
    };
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // The broker's CPU per GB: on a machine where the client is the limit, the steadier sign
    // of what the metrics cost.
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut scrapes = 0;
    for round in 0..METRICS_COST_ROUNDS {
        for on in [false, true] {
            let metrics = on.then(process::free_addr).transpose()?;
            let server = Server::Ferry {
                exe: exe.to_path_buf(),
                metrics,
                tls: None,
            };
            let data = work.join(format!("metrics-cost-{round}-{on}"));
            let addr = process::free_addr()?;
            let (broker, _, apis) = server.start(&data, addr, plan.partitions)?;
            let mut session = Session {
                server: &server,
                plan: &plan,
                broker,
                data: data.clone(),
                bootstrap: addr.to_string(),
                client_tls: Vec::new(),
                admin_bootstrap: addr.to_string(),
                apis,
                idle_rss_bytes: None,
            };
            let scraper = metrics.map(Scraper::start);
            let produced =
                session.produce("metrics_cost", "bench-metrics", 1024, Mode::durable(true));
            if let Some(scraper) = scraper {
                scrapes += scraper.finish()?;
            }
            session.broker.stop();
            let _ = std::fs::remove_dir_all(&data);
            let (row, _) = produced?;
            rates[usize::from(on)].push(row.metrics["records_per_s"]);
            if let Some(seconds_per_gb) = row.metrics.get("broker_cpu_s_per_gb") {
                cpu[usize::from(on)].push(*seconds_per_gb);
            }
        }
    }
    let off = median(&mut rates[0]);
    let on = median(&mut rates[1]);
    Ok(Row::ok(
        "ferry",
        "metrics_cost",
        &[
            ("records_per_s_metrics_off", off),
            ("records_per_s_metrics_on", on),
            ("on_vs_off", on / off),
            ("broker_cpu_s_per_gb_metrics_off", median(&mut cpu[0])),
            ("broker_cpu_s_per_gb_metrics_on", median(&mut cpu[1])),
            ("rounds", METRICS_COST_ROUNDS as f64),
            ("scrapes", scrapes as f64),
        ],
    ))
}

/// Durable 1 KiB produce and then consume over an SSL listener (rustls) on a fresh broker, the
/// same sizes and time as the PLAINTEXT rows, with the broker's CPU per GB: what TLS costs.
fn tls_rows(exe: &Path, plan: &Plan, work: &Path) -> Vec<Row> {
    let fail = |workload: &str, error: anyhow::Error| {
        progress(&format!("ferry/{workload}: FAILED: {error:#}"));
        Row::not_ok("ferry", workload, Status::Failed, format!("{error:#}"))
    };
    let started = (|| -> Result<_> {
        let pki_dir = work.join("tls-pki");
        std::fs::create_dir_all(&pki_dir)?;
        let pki = crate::tls::Pki::generate(&pki_dir)?;
        let ssl = process::free_addr()?;
        let server = Server::Ferry {
            exe: exe.to_path_buf(),
            metrics: None,
            tls: Some((ssl, pki.keystore.clone())),
        };
        let data = work.join("tls-data");
        let addr = process::free_addr()?;
        let (broker, _, apis) = server.start(&data, addr, plan.partitions)?;
        Ok((server, pki, ssl, addr, data, broker, apis))
    })();
    let (server, pki, ssl, addr, data, broker, apis) = match started {
        Ok(started) => started,
        Err(error) => return vec![fail("produce_1kib_tls", error)],
    };
    let mut session = Session {
        server: &server,
        plan,
        broker,
        data,
        bootstrap: ssl.to_string(),
        client_tls: pki.client_settings(false),
        admin_bootstrap: addr.to_string(),
        apis,
        idle_rss_bytes: None,
    };
    let mut rows = Vec::new();
    let durable = Mode::durable(true);
    let produced = match session.produce("produce_1kib_tls", "bench-tls", 1024, durable) {
        Ok((row, records)) => {
            rows.push(row);
            records
        }
        Err(error) => {
            rows.push(fail("produce_1kib_tls", error));
            0
        }
    };
    if produced > 0 {
        rows.push(
            session
                .consume("consume_1kib_tls", "bench-tls", produced)
                .unwrap_or_else(|error| fail("consume_1kib_tls", error)),
        );
    }
    session.broker.stop();
    rows
}

/// Scrapes `/metrics` every `METRICS_SCRAPE_INTERVAL` on a thread of its own until finished.
struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl Scraper {
    fn start(addr: SocketAddr) -> Scraper {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            while !stopping.load(Ordering::Relaxed) {
                crate::stages::scrape(addr)?;
                scrapes += 1;
                std::thread::sleep(METRICS_SCRAPE_INTERVAL);
            }
            Ok(scrapes)
        });
        Scraper { stop, thread }
    }

    /// Stops scraping; how many scrapes succeeded, or the first failure.
    fn finish(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the scraper thread panicked"))?
    }
}

/// Rounds of the transaction row: idempotent produce, then transactions, this many times.
const TXN_COST_ROUNDS: usize = 3;

/// Where a transaction commit's time goes: waiting for the records still in flight (the
/// pipeline drains, as `commit_transaction` requires), then EndTxn (markers written and synced).
#[derive(Default)]
struct CommitTimes {
    commits: u64,
    drain: Latency,
    end: Latency,
}

impl CommitTimes {
    fn commit(&mut self, producer: &BaseProducer<Deliveries>) -> Result<()> {
        let start = Instant::now();
        // Not `flush`: the rdkafka crate's flush polls in steps of up to 100 ms and so waited a
        // whole step per commit (measured: a 100.1 ms p50 drain whatever the broker did).
        let deadline = start + Duration::from_secs(60);
        while producer.in_flight_count() > 0 {
            anyhow::ensure!(Instant::now() < deadline, "records in flight after 60 s");
            producer.poll(Duration::from_millis(1));
        }
        let drained = Instant::now();
        producer
            .commit_transaction(Duration::from_secs(60))
            .context("commit transaction")?;
        self.drain
            .record_us(drained.duration_since(start).as_micros() as u64);
        self.end.record_us(drained.elapsed().as_micros() as u64);
        self.commits += 1;
        Ok(())
    }

    fn metrics(&self) -> [(&'static str, f64); 5] {
        let drain = self.drain.percentiles();
        let end = self.end.percentiles();
        [
            ("commits", self.commits as f64),
            ("commit_drain_p50_us", drain.p50_us),
            ("commit_drain_p99_us", drain.p99_us),
            ("commit_end_txn_p50_us", end.p50_us),
            ("commit_end_txn_p99_us", end.p99_us),
        ]
    }
}

/// How a produce workload's producer is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `acks=all`, idempotent when the broker supports it.
    Durable { idempotent: bool },
    /// Idempotent and transactional, committing every 100 ms.
    Transactional,
}

impl Mode {
    fn durable(idempotent: bool) -> Mode {
        Mode::Durable { idempotent }
    }

    fn idempotent(self) -> bool {
        match self {
            Mode::Durable { idempotent } => idempotent,
            Mode::Transactional => true,
        }
    }

    fn configure(self, config: &mut ClientConfig) {
        config.set("enable.idempotence", self.idempotent().to_string());
        if self == Mode::Transactional {
            let id = format!("ferry-bench-{}-{}", std::process::id(), unique());
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000");
        }
    }
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Counts delivery reports; optionally records send-to-ack latency from the timestamp each
/// latency record carries.
#[derive(Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The run's origin, the warm-up (ns from it) whose records are not counted, and the
    /// send-to-acknowledgement latencies of the others.
    ack_latency: Option<(Instant, u64, Mutex<Latency>)>,
    /// The producer's own view of its requests, one entry per statistics window wholly after
    /// the warm-up (latency workloads only).
    client_windows: Mutex<Vec<ClientWindow>>,
}

/// One librdkafka statistics window of the producer's connection to the broker: how long records
/// waited in the client's queue before they went into a request (`int_latency`: with linger.ms=0
/// that is waiting for one of the connection's in-flight slots), and the requests' round trips
/// (`rtt`: sent to answered, which is the broker's answer time plus the network).
#[derive(Debug, Clone, Copy)]
struct ClientWindow {
    queued_p99_us: f64,
    rtt_p99_us: f64,
}

/// How often the latency workload's producer reports its statistics (`statistics.interval.ms`).
const CLIENT_WINDOW: Duration = Duration::from_secs(1);

impl Deliveries {
    fn check(&self) -> Result<()> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self.first_error.lock().map(|e| e.clone()).unwrap_or(None);
            bail!(
                "{failed} records failed; first error: {}",
                first.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The client's side of the latency workload: the median and the highest of the windows'
    /// p99s, for records queued before they were sent and for request round trips.
    fn client_figures(&self) -> Vec<(&'static str, f64)> {
        let windows = self
            .client_windows
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        if windows.is_empty() {
            return Vec::new();
        }
        let mut queued: Vec<f64> = windows.iter().map(|w| w.queued_p99_us).collect();
        let mut rtt: Vec<f64> = windows.iter().map(|w| w.rtt_p99_us).collect();
        let highest = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
        vec![
            ("client_windows", windows.len() as f64),
            ("client_queued_p99_us", median(&mut queued)),
            ("client_queued_p99_max_us", highest(&queued)),
            ("client_rtt_p99_us", median(&mut rtt)),
            ("client_rtt_p99_max_us", highest(&rtt)),
        ]
    }

    fn ack_percentiles(&self) -> crate::stats::Percentiles {
        match &self.ack_latency {
            Some((_, _, latency)) => latency.lock().map(|l| l.percentiles()).unwrap_or_default(),
            None => Default::default(),
        }
    }
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some((origin, warmup_ns, _)) = &self.ack_latency else {
            return;
        };
        // A window that began during the warm-up (connection, metadata, producer id) is skipped.
        let window_start = origin.elapsed().saturating_sub(CLIENT_WINDOW);
        if (window_start.as_nanos() as u64) < *warmup_ns {
            return;
        }
        // The one broker connection that carried produce requests (bootstrap and controller
        // connections have no round trips to report).
        let busiest = statistics
            .brokers
            .values()
            .filter_map(|broker| Some((broker.int_latency.as_ref()?, broker.rtt.as_ref()?)))
            .max_by_key(|(_, rtt)| rtt.cnt);
        if let (Some((queued, rtt)), Ok(mut windows)) = (busiest, self.client_windows.lock()) {
            if rtt.cnt > 0 {
                windows.push(ClientWindow {
                    queued_p99_us: queued.p99 as f64,
                    rtt_p99_us: rtt.p99 as f64,
                });
            }
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                if let Some((origin, warmup_ns, latency)) = &self.ack_latency {
                    // As for end-to-end latency, records sent during the warm-up (connection,
                    // metadata, producer id) are not counted.
                    if let Some(sent_ns) = message
                        .payload()
                        .and_then(timestamp)
                        .filter(|sent_ns| sent_ns >= warmup_ns)
                    {
                        let now_ns = origin.elapsed().as_nanos() as u64;
                        if let Ok(mut latency) = latency.lock() {
                            latency.record_us(now_ns.saturating_sub(sent_ns) / 1000);
                        }
                    }
                }
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

/// The send time (nanoseconds since the run's origin) at the start of a latency record.
fn timestamp(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// A client that creates a topic of `partitions` partitions and deletes it again, back to back,
/// while a latency workload runs: on a broker that writes its metadata (directories,
/// `meta.json`, their fsyncs) under the lock every request waits for, the produce tail shows it.
struct Churn {
    admin: AdminClient<DefaultClientContext>,
    partitions: i32,
}

/// A running [`Churn`]; `stop` returns how many topic changes it made.
struct Churning {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl Churn {
    fn new(bootstrap: &str, partitions: i32) -> Result<Churn> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("create the churn's admin client")?;
        Ok(Churn { admin, partitions })
    }

    fn start(self) -> Churning {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
            let mut changes = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let name = format!("bench-churn-{}", unique());
                let topic = NewTopic::new(&name, self.partitions, TopicReplication::Fixed(1));
                let created = self.admin.create_topics([&topic], &options);
                check_admin(futures::executor::block_on(created), "create")?;
                let deleted = self.admin.delete_topics(&[&name], &options);
                check_admin(futures::executor::block_on(deleted), "delete")?;
                changes += 2;
            }
            Ok(changes)
        });
        Churning { stop, thread }
    }
}

impl Churning {
    fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the churn thread panicked"))?
    }
}

fn check_admin(
    results: rdkafka::error::KafkaResult<Vec<rdkafka::admin::TopicResult>>,
    what: &str,
) -> Result<()> {
    for result in results.with_context(|| format!("churn: {what} topic"))? {
        if let Err((topic, code)) = result {
            bail!("churn: {what} topic {topic}: {code}");
        }
    }
    Ok(())
}

/// Records of 1 KiB in 1 ms ticks (10 per tick at 10k/s), each stamped with its send time.
fn paced_send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    plan: &Plan,
    origin: Instant,
) -> Result<u64> {
    let per_tick = (plan.latency_rate_per_s / 1000).max(1);
    let ticks = (plan.latency_seconds * 1000.0) as u64;
    let start = Instant::now();
    let mut payload = vec![b'l'; 1024];
    let mut sent = 0u64;
    for tick in 0..ticks {
        // Sleep, not poll: `poll` with under a millisecond left returns at once (librdkafka
        // counts whole milliseconds), and a loop of them spun a whole core, which starved broker
        // and consumer on a 2-core machine (end-to-end p99 25-29 ms instead of 8-12 ms).
        std::thread::sleep(
            (start + Duration::from_millis(tick)).saturating_duration_since(Instant::now()),
        );
        for _ in 0..per_tick {
            let now_ns = origin.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&now_ns.to_le_bytes());
            let partition = (sent % plan.partitions as u64) as i32;
            producer
                .send(record_to(topic).partition(partition).payload(&payload))
                .map_err(|(error, _)| anyhow!(error).context("produce latency record"))?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// Reads latency records until `sent_total` are in (or a deadline after the sender is done),
/// recording send-to-receive latency of those sent after the warm-up.
fn receive_latencies(
    consumer: BaseConsumer,
    origin: Instant,
    warmup_ns: u64,
    sent_total: &AtomicU64,
) -> Result<(u64, Latency)> {
    let mut latency = Latency::default();
    let mut received = 0u64;
    let mut done_at: Option<Instant> = None;
    loop {
        let total = sent_total.load(Ordering::Acquire);
        if received >= total {
            break;
        }
        // The sender is done: what has not arrived within 30 s will not.
        if total != u64::MAX
            && done_at.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(30)
        {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = message.context("consume latency record")?;
        let now_ns = origin.elapsed().as_nanos() as u64;
        let sent_ns = message
            .payload()
            .and_then(timestamp)
            .context("latency record without timestamp")?;
        received += 1;
        if sent_ns >= warmup_ns {
            latency.record_us(now_ns.saturating_sub(sent_ns) / 1000);
        }
    }
    Ok((received, latency))
}

/// One ApiVersions v0 exchange on a new connection: the broker's first answered request, and the
/// APIs it advertises.
fn api_versions(addr: SocketAddr, deadline: Instant) -> Result<Vec<i16>> {
    let mut stream = TcpStream::connect(addr).context("connect")?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(timeout))
        .context("set read timeout")?;
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(0)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("ferry-bench")))
        .encode(&mut body, 1)
        .context("encode request header")?;
    ApiVersionsRequest::default()
        .encode(&mut body, 0)
        .context("encode ApiVersions")?;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).context("send ApiVersions")?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .context("read ApiVersions size")?;
    let size = u32::from_be_bytes(size) as usize;
    anyhow::ensure!(size <= 1 << 20, "ApiVersions response of {size} bytes");
    let mut response = vec![0u8; size];
    stream
        .read_exact(&mut response)
        .context("read ApiVersions")?;
    let mut response = bytes::Bytes::from(response);
    let header = ResponseHeader::decode(&mut response, 0).context("decode response header")?;
    anyhow::ensure!(header.correlation_id == 1, "wrong correlation id");
    let versions = ApiVersionsResponse::decode(&mut response, 0).context("decode ApiVersions")?;
    anyhow::ensure!(
        versions.error_code == 0,
        "ApiVersions error {}",
        versions.error_code
    );
    let _ = response.remaining();
    Ok(versions.api_keys.iter().map(|api| api.api_key).collect())
}

/// A record without key: rdkafka needs the key type spelled out.
fn record_to<'a>(topic: &'a str) -> BaseRecord<'a, (), [u8]> {
    BaseRecord::to(topic)
}
