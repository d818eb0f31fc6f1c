//! `ferry retry-worker` (hidden): a consumer process with the client's retry policy (or, as the
//! control, at-most-once's plain consumer without one) and a
//! handler whose failures are written in the records themselves, so tests can `kill -9` a real
//! consumer in the middle of its moves and look at what it left. Not a user command.
//!
//! A payload starting `poison` fails permanently; `flaky:N…` fails transiently until attempt N;
//! anything else succeeds; with `--fixed` everything does. Each success appends
//! `KEY ATTEMPT WALL_CLOCK_MS` to `--processed`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::retry::{Failure, Mode, RetryPolicy, RetryingConsumer};
use client::{Consumer, Guarantee, NoObserver, Record, Settings};

#[derive(clap::Args)]
pub struct RetryWorkerArgs {
    #[arg(long)]
    bootstrap: String,
    #[command(flatten)]
    connect: client::connect::ConnectArgs,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// at-least-once or exactly-once.
    #[arg(long)]
    guarantee: Guarantee,
    /// Retry in place instead of through retry topics.
    #[arg(long)]
    blocking: bool,
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    #[arg(long, default_value_t = 200)]
    backoff_ms: u64,
    /// Where each success is appended as `KEY ATTEMPT WALL_CLOCK_MS`.
    #[arg(long)]
    processed: PathBuf,
    /// Exit after this long without a record (and nothing waiting in a retry topic).
    #[arg(long)]
    idle_exit_ms: Option<u64>,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// A static group member with this `group.instance.id`: a successor after a kill takes over
    /// at once instead of after the session timeout.
    #[arg(long)]
    instance_id: Option<String>,
    /// The fix is deployed: poison records succeed too.
    #[arg(long)]
    fixed: bool,
    /// How long the handler works on each record.
    #[arg(long, default_value_t = 0)]
    handler_ms: u64,
}

/// The most records a step handles.
const BATCH_RECORDS_MAX: usize = 100;

/// What the handler makes of `record` at `attempt`.
pub fn verdict(record: &Record, attempt: u32) -> Result<(), Failure> {
    let payload = record.payload.as_deref().unwrap_or_default();
    if payload.starts_with(b"poison") {
        return Err(Failure::permanent("poison record"));
    }
    if let Some(rest) = payload.strip_prefix(b"flaky:") {
        let digits: Vec<u8> = rest
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        let succeeds_at: u32 = std::str::from_utf8(&digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(u32::MAX);
        if attempt < succeeds_at {
            return Err(Failure::transient(format!(
                "flaky until attempt {succeeds_at}"
            )));
        }
    }
    Ok(())
}

pub fn run(args: RetryWorkerArgs) -> Result<()> {
    let mut settings = Settings::new(&args.bootstrap)
        .with_client(&args.connect.resolve()?)
        .group_id(&args.group);
    if args.guarantee == Guarantee::ExactlyOnce {
        settings = settings.transactional_id(format!("{}-worker", args.group));
    }
    if let Some(id) = &args.instance_id {
        settings = settings.set("group.instance.id", id);
    }
    let mut processed = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.processed)
        .with_context(|| format!("open {}", args.processed.display()))?;
    let mut handler = |record: &Record, attempt: u32| {
        std::thread::sleep(Duration::from_millis(args.handler_ms));
        if !args.fixed {
            verdict(record, attempt)?;
        }
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
        // One write per record, so a kill -9 keeps every success reported before it.
        processed
            .write_all(format!("{key} {attempt} {}\n", now_ms()).as_bytes())
            .map_err(|e| Failure::transient(format!("append to processed: {e}")))
    };
    if args.guarantee == Guarantee::AtMostOnce {
        return run_without_retries(&args, &settings, &mut handler);
    }
    let mode = if args.blocking {
        Mode::Blocking
    } else {
        Mode::NonBlocking
    };
    let backoff = Duration::from_millis(args.backoff_ms);
    let policy = RetryPolicy::new(args.attempts, backoff, backoff * 8).jitter(0.2);
    let mut consumer = RetryingConsumer::new(
        args.guarantee,
        &settings,
        &args.topic,
        mode,
        policy,
        args.seed,
    )
    .context("create the retrying consumer")?
    .batch_records_max(BATCH_RECORDS_MAX);
    consumer.subscribe()?;
    let mut idle = Idle::new(args.idle_exit_ms);
    loop {
        match consumer.step(Duration::from_millis(100), &mut handler) {
            Ok(step) => idle.polled(step.polled),
            // The records come again; say so and go on, as a service would.
            Err(error) => eprintln!("retry-worker: {error}"),
        }
        if idle.over() && consumer.paused() == 0 {
            return Ok(());
        }
    }
}

/// The control: at-most-once's plain consumer (commit, then process), no retries; a failed
/// record is skipped, so it is lost.
fn run_without_retries(
    args: &RetryWorkerArgs,
    settings: &Settings,
    handler: &mut impl FnMut(&Record, u32) -> Result<(), Failure>,
) -> Result<()> {
    let mut consumer =
        Consumer::new(Guarantee::AtMostOnce, settings)?.batch_records_max(BATCH_RECORDS_MAX);
    consumer.subscribe(&[&args.topic])?;
    let mut idle = Idle::new(args.idle_exit_ms);
    loop {
        let step = consumer.step(Duration::from_millis(100), &mut NoObserver, |record| {
            if let Err(failure) = handler(record, 1) {
                eprintln!("retry-worker: {failure}: skipped, lost");
            }
            Ok::<(), Failure>(())
        });
        match step {
            Ok(step) => idle.polled(step.polled),
            Err(error) => eprintln!("retry-worker: {error}"),
        }
        if idle.over() {
            return Ok(());
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, as the `ferry.due.ms` header counts.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long a worker with `--idle-exit-ms` waits for its first record (joining the group and
/// being assigned partitions takes a few seconds) before it counts as idle.
const FIRST_RECORD_WAIT: Duration = Duration::from_secs(15);

/// When to exit: after `--idle-exit-ms` without a record, counted from the last record (or from
/// the start, plus [`FIRST_RECORD_WAIT`], while none came).
struct Idle {
    exit_after: Option<Duration>,
    last_record: Option<Instant>,
    started: Instant,
}

impl Idle {
    fn new(exit_after_ms: Option<u64>) -> Idle {
        Idle {
            exit_after: exit_after_ms.map(Duration::from_millis),
            last_record: None,
            started: Instant::now(),
        }
    }

    fn polled(&mut self, records: usize) {
        if records > 0 {
            self.last_record = Some(Instant::now());
        }
    }

    fn over(&self) -> bool {
        let Some(after) = self.exit_after else {
            return false;
        };
        match self.last_record {
            Some(last) => last.elapsed() >= after,
            None => self.started.elapsed() >= after + FIRST_RECORD_WAIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &str, attempt: u32, expect: Result<(), Failure>) {
        let record = Record {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: Some(payload.as_bytes().to_vec()),
            timestamp_ms: None,
            headers: Vec::new(),
        };
        assert_eq!(verdict(&record, attempt), expect, "{payload} at {attempt}");
    }

    #[test]
    fn verdicts_as_data() {
        check("order", 1, Ok(()));
        check("poison", 1, Err(Failure::permanent("poison record")));
        check("poison", 9, Err(Failure::permanent("poison record")));
        check(
            "flaky:3|x",
            1,
            Err(Failure::transient("flaky until attempt 3")),
        );
        check(
            "flaky:3|x",
            2,
            Err(Failure::transient("flaky until attempt 3")),
        );
        check("flaky:3|x", 3, Ok(()));
    }
}
