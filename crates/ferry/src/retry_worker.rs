//! `ferry retry-worker` (hidden): a consumer process with the client's retry policy and a
//! handler whose failures are written in the records themselves, so tests can `kill -9` a real
//! consumer in the middle of its moves and look at what it left. Not a user command.
//!
//! A payload starting `poison` fails permanently; `flaky:N…` fails transiently until attempt N;
//! anything else succeeds. Each success appends `KEY ATTEMPT` to `--processed`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::retry::{Failure, Mode, RetryPolicy, RetryingConsumer};
use client::{Guarantee, Record, Settings};

#[derive(clap::Args)]
pub struct RetryWorkerArgs {
    #[arg(long)]
    bootstrap: String,
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
    /// Where each success is appended as `KEY ATTEMPT`.
    #[arg(long)]
    processed: PathBuf,
    /// Exit after this long without a record (and nothing waiting in a retry topic).
    #[arg(long)]
    idle_exit_ms: Option<u64>,
    #[arg(long, default_value_t = 17)]
    seed: u64,
}

/// What the handler makes of `record` at `attempt`.
pub fn verdict(record: &Record, attempt: u32) -> Result<(), Failure> {
    let payload = record.payload.as_deref().unwrap_or_default();
    if payload.starts_with(b"poison") {
        return Err(Failure::permanent("poison record"));
    }
    if let Some(rest) = payload.strip_prefix(b"flaky:") {
        let digits: Vec<u8> = rest.iter().copied().take_while(u8::is_ascii_digit).collect();
        let succeeds_at: u32 = std::str::from_utf8(&digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(u32::MAX);
        if attempt < succeeds_at {
            return Err(Failure::transient(format!("flaky until attempt {succeeds_at}")));
        }
    }
    Ok(())
}

pub fn run(args: RetryWorkerArgs) -> Result<()> {
    let mut settings = Settings::new(&args.bootstrap).group_id(&args.group);
    if args.guarantee == Guarantee::ExactlyOnce {
        settings = settings.transactional_id(format!("{}-worker", args.group));
    }
    let settings = settings.set("session.timeout.ms", "6000");
    let mode = if args.blocking {
        Mode::Blocking
    } else {
        Mode::NonBlocking
    };
    let backoff = Duration::from_millis(args.backoff_ms);
    let policy = RetryPolicy::new(args.attempts, backoff, backoff * 8).jitter(0.2);
    let mut consumer =
        RetryingConsumer::new(args.guarantee, &settings, &args.topic, mode, policy, args.seed)
            .context("create the retrying consumer")?;
    consumer.subscribe()?;
    let mut processed = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.processed)
        .with_context(|| format!("open {}", args.processed.display()))?;
    let mut last_record = Instant::now();
    loop {
        let step = consumer.step(Duration::from_millis(100), |record, attempt| {
            verdict(record, attempt)?;
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
            // One write per record, so a kill -9 keeps every success reported before it.
            processed
                .write_all(format!("{key} {attempt}\n").as_bytes())
                .map_err(|e| Failure::transient(format!("append to processed: {e}")))
        });
        match step {
            Ok(step) if step.polled > 0 => last_record = Instant::now(),
            Ok(_) => {}
            // The records come again; say so and go on, as a service would.
            Err(error) => eprintln!("retry-worker: {error}"),
        }
        let idle = args
            .idle_exit_ms
            .is_some_and(|ms| last_record.elapsed() >= Duration::from_millis(ms));
        if idle && consumer.paused() == 0 {
            return Ok(());
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
        check("flaky:3|x", 1, Err(Failure::transient("flaky until attempt 3")));
        check("flaky:3|x", 2, Err(Failure::transient("flaky until attempt 3")));
        check("flaky:3|x", 3, Ok(()));
    }
}
