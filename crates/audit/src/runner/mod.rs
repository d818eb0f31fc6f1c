//! The shell of `ferry audit`: parses the command line, starts each lane's topic, producer and
//! consumer, ticks the lanes' checkers, serves `/metrics`, draws the terminal view, and at the
//! end (`--duration` or Ctrl-C) waits for the records still within their grace, prints the
//! summary and judges `--fail-on`.

mod clock;
mod lanes;
mod topic;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::Settings;
use serde::Serialize;

use self::clock::Clock;
use self::lanes::LaneShared;
use crate::condition;
use crate::lane::{LaneState, LaneSummary, Limits};
use crate::stamp::Lane;
use crate::view;

/// How often the lanes are judged (loss past the grace, availability past the timeout).
const TICK: Duration = Duration::from_millis(100);
/// How often the figures are summarised for the view and `/metrics`.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);
/// How often the view is drawn: in place on a terminal, as lines in a log.
const REDRAW_TERMINAL: Duration = Duration::from_secs(1);
const REDRAW_LOG: Duration = Duration::from_secs(10);
/// How long a lane's consumer may take to get its partition before the producer starts anyway.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka settings of every client, before `-X`: short timeouts, so a broker restart costs
/// a second rather than a minute.
const CLIENT_SETTINGS: &[(&str, &str)] = &[
    ("client.id", "ferry-audit"),
    ("socket.timeout.ms", "2000"),
    ("reconnect.backoff.max.ms", "1000"),
    ("linger.ms", "5"),
    ("request.timeout.ms", "2000"),
    ("retry.backoff.ms", "50"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "50"),
    ("log_level", "3"),
];

/// How long the producers may take to stop: a flush, or a transaction's commit, each bounded
/// by 10 s in `lanes.rs`.
const PRODUCERS_STOP_TIMEOUT: Duration = Duration::from_secs(25);
/// How long the consumers may take to commit and close.
const CONSUMERS_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit code when a `--fail-on` condition holds at the end of the run.
pub const EXIT_CONDITION_HELD: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The cluster to audit (host:port, comma-separated).
    #[arg(long)]
    pub bootstrap: String,
    /// Client settings for every client (`-X`, `--client-config`); a lane's guarantee settings
    /// still win.
    #[command(flatten)]
    pub connect: client::connect::ConnectArgs,
    /// Records per second per lane.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Lanes to run, comma-separated (default all): at-most-once, at-least-once,
    /// at-least-once-idempotent, exactly-once.
    #[arg(long, value_delimiter = ',')]
    pub lanes: Vec<Lane>,
    /// How long after its send a record may arrive before it counts as lost.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// How long after its send a record must be acknowledged to count as available.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,
    /// Serve /metrics, /healthz and /readyz here (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Stop after this long (default: run until Ctrl-C or SIGTERM), then wait for records
    /// within their grace and print the summary.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Conditions on the whole run's figures, judged at the end: if any holds, exit with
    /// status 2. E.g. 'loss>0,duplicates>0' or 'at-least-once-idempotent:duplicates>0'.
    #[arg(long, default_value = "")]
    pub fail_on: String,
    /// Print the final summary as JSON on stdout (the live view goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Exactly-once lane: abort one transaction in this many on purpose (0: never).
    #[arg(long, default_value_t = 20)]
    pub abort_every: u64,
    /// Exactly-once lane: the consumer's isolation level. `read_uncommitted` is a control: the
    /// lane then reads aborted transactions, and its aborted-read check must say so.
    #[arg(long, default_value = "read_committed", value_parser = ["read_committed", "read_uncommitted"])]
    pub exactly_once_isolation: String,
}

/// Conditions of `--fail-on` held at the end of the run: the binary exits with
/// [`EXIT_CONDITION_HELD`].
#[derive(Debug, thiserror::Error)]
#[error("--fail-on: {}", .0.join("; "))]
pub struct ConditionsHeld(pub Vec<String>);

/// The final summary, as `--json` prints it.
#[derive(Serialize)]
struct Summary<'a> {
    bootstrap: &'a str,
    rate_per_second: u64,
    grace_ms: u64,
    ack_timeout_ms: u64,
    elapsed_ms: u64,
    lanes: &'a [LaneSummary],
    /// The `--fail-on` conditions that held.
    failures: &'a [String],
}

pub fn run(args: AuditArgs) -> Result<()> {
    let conditions = condition::parse_list(&args.fail_on)?;
    let settings = client_settings(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("start the runtime")?;
    let interrupted = watch_signals(&runtime);
    let snapshot: Arc<Mutex<Vec<LaneSummary>>> = Arc::default();
    let endpoint = match args.metrics_listen {
        Some(address) => Some(runtime.block_on(serve_metrics(address, snapshot.clone()))?),
        None => None,
    };
    let clock = Arc::new(Clock::default());
    let audited = prepare_lanes(&runtime, &settings, &args, &clock)?;
    let consumers = spawn_all(&audited, "consume", lanes::consume)?;
    wait_for_assignment(&audited);
    let producers = spawn_all(&audited, "produce", |shared| match shared.lane {
        Lane::ExactlyOnce => lanes::produce_transactions(shared),
        _ => lanes::produce_plain(shared),
    })?;
    if let Some(endpoint) = &endpoint {
        endpoint.set_ready(true);
    }
    let mut looper = Looper {
        lanes: &audited,
        clock: &clock,
        snapshot: &snapshot,
        args: &args,
        start: Instant::now(),
        drawn: None,
        summarised: None,
        terminal: !args.json && std::io::stdout().is_terminal(),
    };
    let end = args.duration.map(|d| Instant::now() + d);
    // A lane thread that ends early failed (its error comes out of `join_all`): stop then.
    let failed = || {
        let mut threads = producers.iter().chain(&consumers);
        threads.any(|(_, handle)| handle.is_finished())
    };
    looper.run_until(|_pending| {
        interrupted.load(Ordering::Relaxed) || end.is_some_and(|e| Instant::now() >= e) || failed()
    });
    for shared in &audited {
        shared.stop_producing.store(true, Ordering::Relaxed);
    }
    join_all(producers, PRODUCERS_STOP_TIMEOUT)?;
    // The records still within their grace: wait until each is seen or judged lost.
    let drained_by = Instant::now() + args.grace + TICK * 5;
    looper.run_until(|pending| pending == 0 || Instant::now() >= drained_by);
    for shared in &audited {
        shared.stop_consuming.store(true, Ordering::Relaxed);
    }
    join_all(consumers, CONSUMERS_STOP_TIMEOUT)?;
    looper.tick();
    let summaries = looper.summarise();
    let failures = condition::failures(&conditions, &summaries);
    looper.finish(&summaries, &failures)?;
    if !failures.is_empty() {
        return Err(ConditionsHeld(failures).into());
    }
    Ok(())
}

/// Every client's settings: the auditor's defaults, then `-X`.
fn client_settings(args: &AuditArgs) -> Result<Settings> {
    let mut settings = Settings::new(args.bootstrap.clone());
    for (name, value) in CLIENT_SETTINGS {
        settings = settings.set(*name, *value);
    }
    Ok(settings.with_client(&args.connect.resolve()?))
}

/// A flag raised by Ctrl-C or SIGTERM (a service manager's stop), which end the run as
/// `--duration` does.
fn watch_signals(runtime: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = async {
            match signal(SignalKind::terminate()) {
                Ok(mut terminate) => terminate.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        flag.store(true, Ordering::Relaxed);
    });
    interrupted
}

/// Each lane's topic (created if missing) and its state for this run, resumed from the topic.
fn prepare_lanes(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    args: &AuditArgs,
    clock: &Arc<Clock>,
) -> Result<Vec<Arc<LaneShared>>> {
    let lanes = if args.lanes.is_empty() {
        Lane::ALL.to_vec()
    } else {
        args.lanes.clone()
    };
    let limits = Limits {
        grace_ms: args.grace.as_millis() as u64,
        ack_timeout_ms: args.ack_timeout.as_millis() as u64,
    };
    let mut prepared = Vec::new();
    for lane in lanes {
        runtime.block_on(topic::create(settings, lane))?;
        let resume = topic::resume(settings, lane)?;
        tracing::info!(%lane, run = resume.run, first_seq = resume.first_seq, "lane starts");
        let state =
            LaneState::new(lane, resume.run, limits, clock.now_ms()).resuming_at(resume.first_seq);
        prepared.push(Arc::new(LaneShared {
            lane,
            state: Mutex::new(state),
            clock: clock.clone(),
            stop_producing: AtomicBool::new(false),
            stop_consuming: AtomicBool::new(false),
            assigned: AtomicBool::new(false),
            settings: settings.clone(),
            rate_per_second: args.rate,
            abort_every: args.abort_every,
            exactly_once_isolation: args.exactly_once_isolation.clone(),
            first_seq: resume.first_seq,
        }));
    }
    Ok(prepared)
}

/// Binds the metrics endpoint and serves the lanes' latest summaries.
async fn serve_metrics(
    address: SocketAddr,
    snapshot: Arc<Mutex<Vec<LaneSummary>>>,
) -> Result<Arc<observe::Endpoint>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("--metrics-listen: bind {address}"))?;
    let bound = listener.local_addr().context("read the metrics address")?;
    let endpoint = observe::Endpoint::new();
    endpoint
        .add_source(move || crate::metrics::families(&snapshot.lock().expect("no scrape panics")));
    tokio::spawn(observe::http::serve(listener, endpoint.clone()));
    eprintln!("ferry audit: metrics on {bound}");
    Ok(endpoint)
}

type LaneThread = (Lane, std::thread::JoinHandle<Result<()>>);

fn spawn_all(
    lanes: &[Arc<LaneShared>],
    what: &str,
    body: impl Fn(Arc<LaneShared>) -> Result<()> + Clone + Send + 'static,
) -> Result<Vec<LaneThread>> {
    lanes
        .iter()
        .map(|shared| {
            let (shared, body) = (shared.clone(), body.clone());
            let lane = shared.lane;
            std::thread::Builder::new()
                .name(format!("audit-{what}-{lane}"))
                .spawn(move || body(shared))
                .map(|handle| (lane, handle))
                .with_context(|| format!("spawn the {what} thread of {lane}"))
        })
        .collect()
}

/// Joins the threads that stop within `within`, reporting their errors; a thread still
/// running then (a librdkafka call stuck on a dead cluster) is left behind with a warning, so
/// the auditor still reports and exits.
fn join_all(threads: Vec<LaneThread>, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && threads.iter().any(|(_, h)| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (lane, handle) in threads {
        if !handle.is_finished() {
            let name = handle
                .thread()
                .name()
                .unwrap_or("a lane thread")
                .to_string();
            tracing::warn!(%lane, thread = name, ?within, "did not stop in time; left behind");
            continue;
        }
        match handle.join() {
            Ok(result) => result.with_context(|| format!("lane {lane}"))?,
            Err(_) => bail!("a thread of lane {lane} panicked"),
        }
    }
    Ok(())
}

fn wait_for_assignment(lanes: &[Arc<LaneShared>]) {
    let deadline = Instant::now() + ASSIGNMENT_TIMEOUT;
    while Instant::now() < deadline && !lanes.iter().all(|l| l.assigned.load(Ordering::Relaxed)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ticks the lanes, publishes their summaries and draws the view.
struct Looper<'a> {
    lanes: &'a [Arc<LaneShared>],
    clock: &'a Clock,
    snapshot: &'a Mutex<Vec<LaneSummary>>,
    args: &'a AuditArgs,
    start: Instant,
    drawn: Option<Instant>,
    summarised: Option<Instant>,
    terminal: bool,
}

impl Looper<'_> {
    /// Judges every lane as of now; returns the records still pending in all of them.
    fn tick(&self) -> usize {
        let now = self.clock.now_ms();
        self.lanes
            .iter()
            .map(|shared| {
                let mut state = shared.state.lock().expect("no lane thread panics");
                state.tick(now);
                state.pending()
            })
            .sum()
    }

    /// Every lane's figures as of now, published for `/metrics`.
    fn summarise(&self) -> Vec<LaneSummary> {
        let now = self.clock.now_ms();
        let summaries: Vec<LaneSummary> = self
            .lanes
            .iter()
            .map(|shared| {
                shared
                    .state
                    .lock()
                    .expect("no lane thread panics")
                    .summary(now)
            })
            .collect();
        *self.snapshot.lock().expect("no scrape panics") = summaries.clone();
        summaries
    }

    /// Ticks until `done(pending records)`; summarises (merging up to 15 minutes of slices per
    /// window, the costly part) and draws once per [`SUMMARY_EVERY`].
    fn run_until(&mut self, done: impl Fn(usize) -> bool) {
        loop {
            if done(self.tick()) {
                return;
            }
            if self
                .summarised
                .is_none_or(|at| at.elapsed() >= SUMMARY_EVERY)
            {
                self.summarised = Some(Instant::now());
                let summaries = self.summarise();
                self.draw(&summaries);
            }
            std::thread::sleep(TICK);
        }
    }

    fn header(&self) -> view::Header<'_> {
        view::Header {
            bootstrap: &self.args.bootstrap,
            rate_per_second: self.args.rate,
            grace_ms: self.args.grace.as_millis() as u64,
            elapsed_ms: self.start.elapsed().as_millis() as u64,
        }
    }

    fn draw(&mut self, summaries: &[LaneSummary]) {
        let every = if self.terminal {
            REDRAW_TERMINAL
        } else {
            REDRAW_LOG
        };
        if self.drawn.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.drawn = Some(Instant::now());
        let text = if self.terminal {
            format!("{}{}", view::CLEAR, view::table(&self.header(), summaries))
        } else {
            view::lines(self.start.elapsed().as_millis() as u64, summaries)
        };
        // The view is for people; with --json, stdout is the summary's.
        if self.args.json {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }

    fn finish(&self, summaries: &[LaneSummary], failures: &[String]) -> Result<()> {
        let table = view::table(&self.header(), summaries);
        if self.args.json {
            eprint!("{table}");
            let summary = Summary {
                bootstrap: &self.args.bootstrap,
                rate_per_second: self.args.rate,
                grace_ms: self.args.grace.as_millis() as u64,
                ack_timeout_ms: self.args.ack_timeout.as_millis() as u64,
                elapsed_ms: self.start.elapsed().as_millis() as u64,
                lanes: summaries,
                failures,
            };
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            let clear = if self.terminal { view::CLEAR } else { "" };
            print!("{clear}{table}");
        }
        for failure in failures {
            eprintln!("ferry audit: --fail-on holds: {failure}");
        }
        Ok(())
    }
}
