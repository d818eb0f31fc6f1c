//! NATS JetStream as a peer: `nats-server` with file storage and `sync_interval: always` (an fsync
//! per write, the durability of ferry's `acks=all`), driven by the `async-nats` client with the
//! same record sizes, durations and rates as the Kafka targets. A partition is a stream here:
//! the produce workloads publish round-robin to one stream per partition, with a `Nats-Msg-Id`
//! on every message (JetStream's de-duplication, its counterpart of the idempotent producer).

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::process::{self, Broker};
use crate::report::{Row, Status, Target, TargetRun};
use crate::stats::{median, Latency};
use crate::{progress, secs, Plan};

const NAME: &str = "nats-jetstream";
/// Publishes awaiting their acknowledgement, per producer.
const PUBLISH_WINDOW: usize = 1024;
/// Fill messages for the recovery log: with an fsync per message, 1 KiB messages would take far
/// too long to reach 1 GiB.
const FILL_MESSAGE_BYTES: usize = 64 << 10;

/// nats-server from FERRY_BENCH_NATS, the bench's cache (scripts/bench-peers) or PATH.
pub fn find_server() -> Option<PathBuf> {
    if std::env::var_os("FERRY_BENCH_NATS").is_some() {
        return process::find_program("FERRY_BENCH_NATS", "nats-server");
    }
    let cached = process::cache_dir().map(|dir| dir.join("venv/bin/nats-server"));
    if let Some(cached) = cached.filter(|path| path.is_file()) {
        return Some(cached);
    }
    process::find_program("FERRY_BENCH_NATS", "nats-server")
}

pub fn run_target(exe: &Path, plan: &Plan, work: &Path) -> TargetRun {
    let mut target = Target {
        name: NAME.into(),
        status: Status::Ok,
        version: process::version_of(exe),
        note: Some(format!(
            "{}; file storage, sync_interval: always",
            exe.display()
        )),
        features: BTreeMap::new(),
    };
    let mut rows = Vec::new();
    progress(&format!("{NAME}: start-up"));
    match startup(exe, plan, work) {
        Ok(row) if plan.wants("startup") => rows.push(row),
        Ok(_) => {}
        Err(error) => {
            // Most often: a nats-server older than 2.10, without `sync_interval: always`.
            target.status = Status::Failed;
            target.note = Some(format!("{error:#}"));
            progress(&format!("{NAME}: FAILED to start: {error:#}"));
            return TargetRun { target, rows };
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            target.status = Status::Failed;
            target.note = Some(format!("start tokio runtime: {error}"));
            return TargetRun { target, rows };
        }
    };
    match Session::start(exe, plan, work).and_then(|mut session| {
        runtime.block_on(session.connect())?;
        Ok(session)
    }) {
        Ok(mut session) => runtime.block_on(session.run_all(&mut rows)),
        Err(error) => {
            target.status = Status::Failed;
            target.note = Some(format!("{error:#}"));
        }
    }
    TargetRun { target, rows }
}

fn row_or_failed(workload: &str, result: Result<Row>) -> Row {
    result.unwrap_or_else(|error| {
        progress(&format!("{NAME}/{workload}: FAILED: {error:#}"));
        Row::not_ok(NAME, workload, Status::Failed, format!("{error:#}"))
    })
}

fn start_server(exe: &Path, data: &Path, addr: SocketAddr) -> Result<(Broker, Duration)> {
    std::fs::create_dir_all(data).with_context(|| format!("create {}", data.display()))?;
    let config = data.with_extension("conf");
    std::fs::write(
        &config,
        format!(
            "listen: {addr}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            data.display()
        ),
    )
    .with_context(|| format!("write {}", config.display()))?;
    let mut command = Command::new(exe);
    command.arg("-c").arg(&config);
    let log = data.with_extension("log");
    let (broker, ready, ()) = Broker::start(command, addr, &log, |addr, deadline| {
        process::retry_until(deadline, || ping(addr, deadline))
    })?;
    Ok((broker, ready))
}

/// The first answered request: INFO on connect, then PING answered by PONG.
fn ping(addr: SocketAddr, deadline: Instant) -> Result<()> {
    let stream = TcpStream::connect(addr).context("connect")?;
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(timeout))
        .context("set read timeout")?;
    let mut reader = BufReader::new(stream.try_clone().context("clone stream")?);
    let mut line = String::new();
    reader.read_line(&mut line).context("read INFO")?;
    anyhow::ensure!(line.starts_with("INFO"), "expected INFO, got {line:?}");
    (&stream)
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .context("send PING")?;
    loop {
        line.clear();
        anyhow::ensure!(
            reader.read_line(&mut line).context("read PONG")? > 0,
            "closed"
        );
        if line.starts_with("PONG") {
            return Ok(());
        }
        anyhow::ensure!(!line.starts_with("-ERR"), "server said {line:?}");
    }
}

fn startup(exe: &Path, plan: &Plan, work: &Path) -> Result<Row> {
    let mut times = Vec::new();
    for run in 0..plan.startup_runs {
        let data = work.join(format!("nats-startup-{run}"));
        let (mut broker, ready) = start_server(exe, &data, process::free_addr()?)?;
        broker.stop();
        times.push(ready.as_secs_f64() * 1e3);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    let ready_ms = median(&mut times);
    Ok(Row::ok(
        NAME,
        "startup",
        &[
            ("ready_ms", ready_ms),
            ("ready_ms_min", min),
            ("ready_ms_max", max),
        ],
    ))
}

struct Session<'a> {
    exe: &'a Path,
    plan: &'a Plan,
    broker: Broker,
    data: PathBuf,
    addr: SocketAddr,
    js: Option<jetstream::Context>,
    idle_rss_bytes: Option<u64>,
}

impl<'a> Session<'a> {
    fn start(exe: &'a Path, plan: &'a Plan, work: &Path) -> Result<Session<'a>> {
        let data = work.join("nats-data");
        let addr = process::free_addr()?;
        let (broker, _) = start_server(exe, &data, addr)?;
        std::thread::sleep(Duration::from_millis(500));
        let idle_rss_bytes = broker.rss_bytes();
        Ok(Session {
            exe,
            plan,
            broker,
            data,
            addr,
            js: None,
            idle_rss_bytes,
        })
    }

    async fn connect(&mut self) -> Result<()> {
        self.js = Some(context(self.addr).await?);
        Ok(())
    }

    fn js(&self) -> Result<&jetstream::Context> {
        self.js.as_ref().context("not connected")
    }

    async fn run_all(&mut self, rows: &mut Vec<Row>) {
        let plan = self.plan;
        let mut produced = 0;
        if plan.wants("produce_1kib") {
            progress(&format!("{NAME}: produce 1 KiB"));
            let result = self.produce("produce_1kib", "p1k", 1024).await;
            produced = result.as_ref().map(|(_, n)| *n).unwrap_or(0);
            rows.push(row_or_failed("produce_1kib", result.map(|(row, _)| row)));
        }
        if plan.wants("produce_100b") {
            progress(&format!("{NAME}: produce 100 B"));
            let result = self.produce("produce_100b", "p100", 100).await;
            rows.push(row_or_failed("produce_100b", result.map(|(row, _)| row)));
        }
        if plan.wants("produce_1kib_txn") {
            rows.push(Row::not_ok(
                NAME,
                "produce_1kib_txn",
                Status::NotAvailable,
                "JetStream has no Kafka-style transactions".into(),
            ));
        }
        if plan.wants("consume_1kib") && plan.wants("produce_1kib") {
            progress(&format!("{NAME}: consume 1 KiB"));
            let result = self.consume("p1k", produced).await;
            rows.push(row_or_failed("consume_1kib", result));
        }
        if plan.wants("e2e_latency") {
            progress(&format!("{NAME}: end-to-end latency"));
            rows.push(row_or_failed("e2e_latency", self.latency().await));
        }
        rows.push(self.memory());
        if plan.wants("recovery") {
            progress(&format!("{NAME}: recovery after kill -9"));
            rows.push(row_or_failed("recovery", self.recovery().await));
        }
        self.broker.stop();
    }

    async fn create_streams(&self, prefix: &str, count: i32) -> Result<Vec<String>> {
        let js = self.js()?;
        let mut subjects = Vec::new();
        for p in 0..count {
            let subject = format!("{prefix}.{p}");
            js.create_stream(stream::Config {
                name: format!("{}_{p}", prefix.to_uppercase()),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .with_context(|| format!("create stream for {subject}"))?;
            subjects.push(subject);
        }
        Ok(subjects)
    }

    async fn produce(
        &self,
        workload: &str,
        prefix: &str,
        record_bytes: usize,
    ) -> Result<(Row, u64)> {
        let subjects = self.create_streams(prefix, self.plan.partitions).await?;
        let js = self.js()?;
        let payload = Bytes::from(vec![b'f'; record_bytes]);
        let limit = secs(self.plan.produce_seconds);
        let mut in_flight = FuturesUnordered::new();
        let cpu = process::CpuMeter::start(&self.broker);
        let start = Instant::now();
        let mut sent = 0u64;
        let mut acked = 0u64;
        while sent % 64 != 0 || start.elapsed() < limit {
            let subject = subjects[sent as usize % subjects.len()].clone();
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(format!("{prefix}-{sent}"));
            let ack = js.send_publish(subject, publish).await.context("publish")?;
            in_flight.push(ack.into_future());
            sent += 1;
            while in_flight.len() >= PUBLISH_WINDOW {
                next_ack(&mut in_flight).await?;
                acked += 1;
            }
        }
        while !in_flight.is_empty() {
            next_ack(&mut in_flight).await?;
            acked += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        let row = Row::ok(
            NAME,
            workload,
            &[
                ("records", acked as f64),
                ("seconds", seconds),
                ("records_per_s", acked as f64 / seconds),
                (
                    "bytes_per_s",
                    (acked * record_bytes as u64) as f64 / seconds,
                ),
                ("record_bytes", record_bytes as f64),
                ("idempotent", 1.0),
            ]
            .into_iter()
            .chain(cpu.metrics(acked * record_bytes as u64))
            .collect::<Vec<_>>(),
        );
        Ok((row, acked))
    }

    /// Reads every stream of `prefix` from the start, concurrently; `expected` in all.
    async fn consume(&self, prefix: &str, expected: u64) -> Result<Row> {
        anyhow::ensure!(expected > 0, "nothing was produced to consume");
        let js = self.js()?;
        let mut readers = Vec::new();
        let cpu = process::CpuMeter::start(&self.broker);
        let start = Instant::now();
        for p in 0..self.plan.partitions {
            let stream = js
                .get_stream(format!("{}_{p}", prefix.to_uppercase()))
                .await
                .context("get stream")?;
            let count = stream
                .get_info()
                .await
                .context("stream info")?
                .state
                .messages;
            let consumer = stream
                .create_consumer(consumer::pull::Config {
                    ack_policy: consumer::AckPolicy::None,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .context("create consumer")?;
            readers.push(tokio::spawn(async move {
                let mut messages = consumer
                    .stream()
                    .max_messages_per_batch(1000)
                    .messages()
                    .await?;
                let mut bytes = 0u64;
                for _ in 0..count {
                    let message = messages
                        .next()
                        .await
                        .ok_or_else(|| anyhow!("stream ended"))??;
                    bytes += message.payload.len() as u64;
                }
                anyhow::Ok((count, bytes))
            }));
        }
        let (mut received, mut bytes) = (0u64, 0u64);
        for reader in readers {
            let (count, size) = reader.await.context("consumer task")??;
            received += count;
            bytes += size;
        }
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(received >= expected, "read {received} of {expected}");
        Ok(Row::ok(
            NAME,
            "consume_1kib",
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

    /// 1 KiB records at the plan's rate, in 1 ms ticks, through one stream, read by a pull
    /// consumer; each record carries its send time.
    async fn latency(&self) -> Result<Row> {
        let subjects = self.create_streams("lat", 1).await?;
        let js = self.js()?.clone();
        let stream = js.get_stream("LAT_0").await.context("get stream")?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("create consumer")?;
        let origin = Instant::now();
        let warmup_ns = (self.plan.latency_warmup_seconds * 1e9) as u64;
        let per_tick = (self.plan.latency_rate_per_s / 1000).max(1);
        let ticks = (self.plan.latency_seconds * 1000.0) as u64;
        let total = per_tick * ticks;
        // What the reader waits for: unknown (MAX) until every acknowledgement is in; a publish
        // the server refused never arrives.
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        let reader = {
            let expected = expected.clone();
            tokio::spawn(async move {
                let mut messages = consumer
                    .stream()
                    .max_messages_per_batch(1000)
                    .messages()
                    .await?;
                let mut latency = Latency::default();
                let mut received = 0u64;
                while received < expected.load(Ordering::Acquire) {
                    let next = tokio::time::timeout(Duration::from_millis(200), messages.next());
                    let Ok(message) = next.await else {
                        continue;
                    };
                    let message = message.ok_or_else(|| anyhow!("stream ended"))??;
                    let now_ns = origin.elapsed().as_nanos() as u64;
                    let sent_ns = timestamp(&message.payload).context("no timestamp")?;
                    received += 1;
                    if sent_ns >= warmup_ns {
                        latency.record_us(now_ns.saturating_sub(sent_ns) / 1000);
                    }
                }
                anyhow::Ok(latency)
            })
        };
        let acks = Arc::new(Mutex::new(Latency::default()));
        let mut ack_tasks = Vec::with_capacity(total as usize);
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..ticks {
            interval.tick().await;
            for _ in 0..per_tick {
                let sent_ns = origin.elapsed().as_nanos() as u64;
                let mut payload = vec![b'l'; 1024];
                payload[..8].copy_from_slice(&sent_ns.to_le_bytes());
                let ack = js
                    .publish(subjects[0].clone(), payload.into())
                    .await
                    .context("publish")?;
                let acks = acks.clone();
                ack_tasks.push(tokio::spawn(async move {
                    // A refusal (e.g. "no responders" when the stream cannot keep up) is
                    // counted, not fatal: the row says how many.
                    if ack.await.is_err() {
                        return false;
                    }
                    let now_ns = origin.elapsed().as_nanos() as u64;
                    if let Ok(mut acks) = acks.lock() {
                        acks.record_us(now_ns.saturating_sub(sent_ns) / 1000);
                    }
                    true
                }));
            }
        }
        let mut refused = 0u64;
        for task in ack_tasks {
            refused += u64::from(!task.await.context("ack task")?);
        }
        expected.store(total - refused, Ordering::Release);
        let e2e = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .context("latency reader timed out")?
            .context("latency reader")??
            .percentiles();
        let ack = acks.lock().map(|l| l.percentiles()).unwrap_or_default();
        let mut figures =
            crate::stats::latency_figures(total, self.plan.latency_seconds, &e2e, &ack);
        figures.push(("refused_publishes", refused as f64));
        Ok(
            Row::ok(NAME, "e2e_latency", &figures).with_note((refused > 0).then(|| {
                format!("{refused} of {total} publishes refused: the stream did not keep up")
            })),
        )
    }

    fn memory(&self) -> Row {
        match (self.idle_rss_bytes, self.broker.peak_rss_bytes()) {
            (Some(idle), Some(peak)) => Row::ok(
                NAME,
                "memory",
                &[
                    ("idle_rss_bytes", idle as f64),
                    ("loaded_rss_bytes", peak as f64),
                ],
            ),
            _ => Row::not_ok(NAME, "memory", Status::Failed, "cannot read /proc".into()),
        }
    }

    async fn recovery(&mut self) -> Result<Row> {
        self.fresh_server().await?;
        self.fill().await?;
        let log_bytes = process::dir_bytes(&self.data);
        self.broker.kill9();
        self.js = None;
        let started = Instant::now();
        let (broker, ready) = start_server(self.exe, &self.data, self.addr)?;
        self.broker = broker;
        let js = context(self.addr).await?;
        js.publish("fill.0", Bytes::from_static(b"after recovery"))
            .await
            .context("publish after recovery")?
            .await
            .context("ack after recovery")?;
        let first_produce = started.elapsed();
        let note = (log_bytes < self.plan.recovery_log_bytes).then(|| {
            format!(
                "log reached {} MiB of {} MiB within {} s",
                log_bytes >> 20,
                self.plan.recovery_log_bytes >> 20,
                self.plan.fill_seconds_max
            )
        });
        Ok(Row::ok(
            NAME,
            "recovery",
            &[
                ("log_bytes", log_bytes as f64),
                ("ready_ms", ready.as_secs_f64() * 1e3),
                ("first_produce_ms", first_produce.as_secs_f64() * 1e3),
            ],
        )
        .with_note(note))
    }

    /// A new server on an empty store, so the recovery log has the plan's size.
    async fn fresh_server(&mut self) -> Result<()> {
        self.js = None;
        self.broker.stop();
        let data = self.data.with_file_name("nats-recovery");
        let addr = process::free_addr()?;
        let (broker, _) = start_server(self.exe, &data, addr)?;
        self.broker = broker;
        self.data = data;
        self.addr = addr;
        self.connect().await
    }

    async fn fill(&self) -> Result<()> {
        let subjects = self.create_streams("fill", 1).await?;
        let js = self.js()?;
        let payload = Bytes::from(vec![b'r'; FILL_MESSAGE_BYTES]);
        let deadline = Instant::now() + secs(self.plan.fill_seconds_max);
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0u64;
        while Instant::now() < deadline {
            if sent % 256 == 0 && process::dir_bytes(&self.data) >= self.plan.recovery_log_bytes {
                break;
            }
            let ack = js
                .publish(subjects[0].clone(), payload.clone())
                .await
                .context("publish fill")?;
            in_flight.push(ack.into_future());
            sent += 1;
            while in_flight.len() >= 64 {
                next_ack(&mut in_flight).await?;
            }
        }
        while !in_flight.is_empty() {
            next_ack(&mut in_flight).await?;
        }
        Ok(())
    }
}

async fn context(addr: SocketAddr) -> Result<jetstream::Context> {
    let client = async_nats::connect(addr.to_string())
        .await
        .with_context(|| format!("connect to nats-server at {addr}"))?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .build(client))
}

type AckFuture = <jetstream::context::PublishAckFuture as std::future::IntoFuture>::IntoFuture;

async fn next_ack(in_flight: &mut FuturesUnordered<AckFuture>) -> Result<()> {
    match in_flight.next().await {
        Some(ack) => ack.map(|_| ()).context("publish acknowledgement"),
        None => Ok(()),
    }
}

fn timestamp(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}
