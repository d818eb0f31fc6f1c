//! `ferry audit` end to end: the real binary as a child process against a real `ferry serve`,
//! through a real `ferry chaos` where a test needs faults, its `--json` summary parsed. Each
//! fault test also shows the fault acted (its control), and a real Prometheus scrapes both
//! processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chaos::{Action, Direction, FaultRule, Plan};
use serde_json::Value;

use crate::harness::{reserve_port, Ferry};

/// The acks=all lanes, which must lose nothing.
const ACKS_ALL_LANES: [&str; 3] = ["at-least-once", "at-least-once-idempotent", "exactly-once"];
const ALL_LANES: [&str; 4] = [
    "at-most-once",
    "at-least-once",
    "at-least-once-idempotent",
    "exactly-once",
];

/// A `ferry audit` child process.
fn audit_command(bootstrap: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .arg("audit")
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("--json")
        .args(args);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
        command.env_remove(key);
    }
    command.env("FERRY_LOG", "warn");
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    command
}

/// The longest an audit child of these tests may run: its --duration, the grace, and the
/// stop timeouts, with room to spare on a loaded machine.
const AUDIT_WAIT: Duration = Duration::from_secs(120);

/// Waits for an audit child (killing it after [`AUDIT_WAIT`]) and parses its JSON summary.
fn finish(mut child: Child) -> (ExitStatus, Value) {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).expect("read the summary");
        out
    });
    let deadline = Instant::now() + AUDIT_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll ferry audit") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry audit did not finish within {AUDIT_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().expect("the reader thread");
    let summary = serde_json::from_str(&out)
        .unwrap_or_else(|error| panic!("ferry audit ({status}) printed no JSON ({error}): {out}"));
    (status, summary)
}

/// Runs `ferry audit` to its end.
fn audit(bootstrap: &str, args: &[&str]) -> (ExitStatus, Value) {
    finish(
        audit_command(bootstrap, args)
            .spawn()
            .expect("spawn ferry audit"),
    )
}

/// A lane's summary.
fn lane<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .find(|l| l["lane"] == name)
        .unwrap_or_else(|| panic!("no lane {name} in {summary}"))
}

/// A lane's count of `outcome` over the whole run.
fn count(summary: &Value, name: &str, outcome: &str) -> u64 {
    whole_run(summary, name)["records"][outcome]
        .as_u64()
        .unwrap_or_else(|| panic!("no {outcome} count for {name}"))
}

fn whole_run<'a>(summary: &'a Value, name: &str) -> &'a Value {
    lane(summary, name)["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .find(|w| w["window"] == "all")
        .expect("the whole run's window")
}

/// One line per lane, for failure messages and the test's output.
fn figures(summary: &Value) -> String {
    let mut out = String::new();
    for name in ALL_LANES {
        if summary["lanes"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["lane"] == name))
        {
            let w = whole_run(summary, name);
            out.push_str(&format!(
                "{name}: {} availability {} p99 {} ms\n",
                w["records"], w["availability"], w["latency_p99_ms"]
            ));
        }
    }
    out
}

/// Each of `lanes` lost nothing and consumed most of what 100 records a second for the run
/// sent (so "no loss" is not a consumer that read nothing).
fn assert_no_loss(summary: &Value, lanes: &[&str]) {
    for name in lanes {
        assert_eq!(count(summary, name, "lost"), 0, "{name} lost records");
        let consumed = count(summary, name, "consumed");
        assert!(consumed > 300, "{name} consumed only {consumed}");
    }
}

/// A `ferry chaos` child between clients on `listen` and the broker at `upstream`.
struct Chaos {
    child: Child,
    events: PathBuf,
}

impl Chaos {
    fn start(dir: &Path, listen: SocketAddr, upstream: SocketAddr, plan: &Plan) -> Chaos {
        let plan_path = dir.join("plan.json");
        std::fs::write(
            &plan_path,
            serde_json::to_string(plan).expect("plan as JSON"),
        )
        .expect("write the plan");
        let events = dir.join("chaos-events.jsonl");
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("chaos")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--upstream")
            .arg(upstream.to_string())
            .arg("--plan")
            .arg(&plan_path)
            .arg("--events")
            .arg(&events)
            .env("FERRY_LOG", "warn")
            .spawn()
            .expect("spawn ferry chaos");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(listen).is_err() {
            assert!(Instant::now() < deadline, "ferry chaos does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Chaos { child, events }
    }

    /// The faults injected so far whose JSON line mentions `kind`.
    fn faults(&self, kind: &str) -> usize {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(kind))
            .count()
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker that advertises a proxy address, and the proxy in front of it with `plan`.
fn broker_behind_chaos(dir: &Path, plan: &Plan) -> (Ferry, Chaos, String) {
    let port = reserve_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let advertised = format!("advertised.listeners=127.0.0.1:{port}");
    let ferry = Ferry::start(&dir.join("data"), &[advertised.as_str()]);
    let chaos = Chaos::start(dir, listen, ferry.addr, plan);
    (ferry, chaos, listen.to_string())
}

#[test]
fn audit_of_a_clean_cluster_finds_nothing_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ferry = Ferry::start(&dir.path().join("data"), &[]);
    let (status, summary) = audit(
        &ferry.bootstrap(),
        &[
            "--duration",
            "6s",
            "--grace",
            "3s",
            "--fail-on",
            "loss>0,duplicates>0,reordered>0,aborted_reads>0",
        ],
    );
    eprintln!("{}", figures(&summary));
    assert!(status.success(), "ferry audit exited {status}");
    for name in ALL_LANES {
        assert!(
            count(&summary, name, "consumed") > 300,
            "{name} consumed little"
        );
        for outcome in ["lost", "duplicated", "reordered", "aborted_read", "phantom"] {
            assert_eq!(count(&summary, name, outcome), 0, "{name} {outcome}");
        }
    }
    // The exactly-once lane aborts some transactions on purpose: the aborted-read check had
    // something to find.
    assert!(count(&summary, "exactly-once", "aborted") > 0);
    assert_eq!(lane(&summary, "exactly-once")["run"], 1);
}

#[test]
fn audit_through_a_duplicating_network_sees_duplicates_only_where_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = Plan::duplicating_network(15, 0.1);
    let (_ferry, chaos, bootstrap) = broker_behind_chaos(dir.path(), &plan);
    let (status, summary) = audit(&bootstrap, &["--duration", "8s", "--grace", "5s"]);
    eprintln!("{}", figures(&summary));
    assert!(status.success(), "ferry audit exited {status}");
    assert!(
        chaos.faults("duplicate") > 0,
        "the proxy duplicated nothing"
    );
    assert!(count(&summary, "at-least-once", "duplicated") > 0);
    // The idempotent consumer's topic held duplicates too (its control), and it skipped them.
    assert!(count(&summary, "at-least-once-idempotent", "dedup_skipped") > 0);
    assert_eq!(count(&summary, "at-least-once-idempotent", "duplicated"), 0);
    assert_eq!(count(&summary, "exactly-once", "duplicated"), 0);
    assert_no_loss(&summary, &ACKS_ALL_LANES);
}

#[test]
fn audit_across_a_broker_kill_shows_unavailability_and_no_loss_on_acks_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ferry = Ferry::start(&dir.path().join("data"), &[]);
    let child = audit_command(
        &ferry.bootstrap(),
        &["--duration", "14s", "--grace", "10s", "--ack-timeout", "1s"],
    )
    .spawn()
    .expect("spawn ferry audit");
    std::thread::sleep(Duration::from_secs(5));
    ferry.kill9();
    std::thread::sleep(Duration::from_secs(3));
    ferry.restart();
    let (status, summary) = finish(child);
    eprintln!("{}", figures(&summary));
    assert!(status.success(), "ferry audit exited {status}");
    for name in ACKS_ALL_LANES {
        let availability = whole_run(&summary, name)["availability"]
            .as_f64()
            .expect("availability");
        assert!(
            availability < 1.0,
            "{name}: the kill did not show ({availability})"
        );
    }
    assert_no_loss(&summary, &ACKS_ALL_LANES);
}

#[test]
fn a_restarted_auditor_reports_no_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ferry = Ferry::start(&dir.path().join("data"), &[]);
    // The first auditor dies with kill -9 mid-run: no flush, no final commit.
    let mut first = audit_command(&ferry.bootstrap(), &["--duration", "60s"])
        .spawn()
        .expect("spawn ferry audit");
    std::thread::sleep(Duration::from_secs(6));
    first.kill().expect("kill -9 ferry audit");
    first.wait().expect("reap ferry audit");
    let (status, summary) = audit(
        &ferry.bootstrap(),
        &["--duration", "6s", "--grace", "3s", "--fail-on", "loss>0"],
    );
    eprintln!("{}", figures(&summary));
    assert!(status.success(), "ferry audit exited {status}");
    for name in ALL_LANES {
        assert_eq!(lane(&summary, name)["run"], 2, "{name} did not resume");
        // The first run sent for 6 s at 100 records a second: the second continues its
        // sequence.
        let first_seq = lane(&summary, name)["first_seq"]
            .as_u64()
            .expect("first_seq");
        assert!(first_seq > 100, "{name} resumed at {first_seq}");
    }
    assert_no_loss(&summary, &ALL_LANES);
    // The second run read records of the first (the killed consumer had not committed them)
    // and did not count them as its own.
    let earlier: u64 = ALL_LANES
        .iter()
        .map(|name| count(&summary, name, "earlier_run"))
        .sum();
    assert!(earlier > 0, "the second run read nothing of the first");
}

#[test]
fn audit_of_acks_0_through_a_lossy_network_reports_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Produce requests lost on the way: under acks=0 nobody notices but the auditor.
    let rule = FaultRule::always(Direction::Request, Action::DropFrame)
        .for_api_keys(&[chaos::plan::api_key::PRODUCE])
        .with_probability(0.05);
    let plan = Plan {
        seed: 5,
        rules: vec![rule],
    };
    let (_ferry, chaos, bootstrap) = broker_behind_chaos(dir.path(), &plan);
    let (status, summary) = audit(
        &bootstrap,
        &[
            "--lanes",
            "at-most-once",
            "--duration",
            "6s",
            "--grace",
            "3s",
            "--fail-on",
            "at-most-once:loss>0",
        ],
    );
    eprintln!("{}", figures(&summary));
    assert!(chaos.faults("drop_frame") > 0, "the proxy dropped nothing");
    assert!(count(&summary, "at-most-once", "lost") > 0);
    // Lost by the network, not by a consumer that read nothing: most records arrived.
    assert!(count(&summary, "at-most-once", "consumed") > 300);
    // --fail-on held: exit status 2, the condition named in the summary.
    assert_eq!(status.code(), Some(2), "ferry audit exited {status}");
    let failures = summary["failures"].as_array().expect("failures");
    assert!(failures[0]
        .as_str()
        .is_some_and(|f| f.starts_with("at-most-once:loss>0")));
}

#[test]
fn audit_reading_uncommitted_reports_aborted_reads() {
    // The control of the exactly-once lane's zero aborted reads: a consumer reading
    // uncommitted records sees the transactions aborted on purpose, and the lane says so.
    let dir = tempfile::tempdir().expect("temp dir");
    let ferry = Ferry::start(&dir.path().join("data"), &[]);
    let (status, summary) = audit(
        &ferry.bootstrap(),
        &[
            "--lanes",
            "exactly-once",
            "--exactly-once-isolation",
            "read_uncommitted",
            "--abort-every",
            "3",
            "--duration",
            "4s",
            "--grace",
            "3s",
            "--fail-on",
            "aborted_reads>0",
        ],
    );
    eprintln!("{}", figures(&summary));
    assert!(count(&summary, "exactly-once", "aborted") > 0);
    assert!(count(&summary, "exactly-once", "aborted_read") > 0);
    assert_eq!(status.code(), Some(2), "ferry audit exited {status}");
}

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A `ferry serve` with its metrics endpoint: the broker's address and the endpoint's, from its
/// stdout lines; stdout stays open (drained by a thread) so later lines never fail.
fn serve_with_metrics(data_dir: &Path) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--set")
        .arg("metrics.listen=127.0.0.1:0")
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ferry serve");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut next = |prefix: &str| -> SocketAddr {
        // The listener lines (one here) come between the first line and the metrics line.
        let line = lines
            .by_ref()
            .map(|line| line.expect("read a line"))
            .find(|line| !line.starts_with("ferry: listener "))
            .expect("a line");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .parse()
            .expect("an address")
    };
    let kafka = next("ferry: listening on ");
    let metrics = next("ferry: metrics on ");
    std::thread::spawn(move || lines.for_each(drop));
    (child, kafka, metrics)
}

/// GET `path` from `address` over HTTP/1.0; the body.
fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

/// A PromQL instant query's result vector, percent-encoding the query.
fn promql(prometheus: SocketAddr, query: &str) -> Vec<Value> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = http_get(prometheus, &format!("/api/v1/query?query={encoded}"));
    let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_ferry_and_the_auditor() {
    if !Path::new(PROMETHEUS).exists() {
        eprintln!("skipped: {PROMETHEUS} is missing (scripts/install-deps installs prometheus)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (serve, kafka, serve_metrics) = serve_with_metrics(&dir.path().join("data"));
    let _serve = Killed(serve);
    let audit_metrics = format!("127.0.0.1:{}", reserve_port());
    let auditor = audit_command(
        &kafka.to_string(),
        &[
            "--lanes",
            "at-least-once",
            "--rate",
            "20",
            "--duration",
            "60s",
            "--metrics-listen",
            &audit_metrics,
        ],
    )
    .spawn()
    .expect("spawn ferry audit");
    let _auditor = Killed(auditor);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ferry\n    static_configs:\n      - targets: ['{serve_metrics}']\n  - job_name: ferry-audit\n    static_configs:\n      - targets: ['{audit_metrics}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let web = SocketAddr::from(([127, 0, 0, 1], reserve_port()));
    let prometheus = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prometheus");
    let _prometheus = Killed(prometheus);
    let queries = [
        r#"ferry_audit_records_total{lane="at-least-once",outcome="consumed"} > 0"#,
        r#"ferry_requests_total{api="Produce"}"#,
        r#"up{job="ferry-audit"} == 1"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut pending: Vec<&str> = queries.to_vec();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no series from Prometheus for {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(web).is_err() {
            continue;
        }
        pending.retain(|query| promql(web, query).is_empty());
    }
    // Control: a query for a series nobody exports comes back empty, so the checks above could
    // have failed.
    assert!(promql(web, "ferry_audit_records_total{lane=\"no-such-lane\"}").is_empty());
    // The auditor's own endpoint is also ready and lints clean with promtool when present.
    let text = http_get(audit_metrics.parse().expect("address"), "/metrics");
    assert!(
        text.contains("# TYPE ferry_audit_records_total counter"),
        "{text}"
    );
    if Path::new("/usr/bin/promtool").exists() {
        let lint = Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .output_with_stdin(text.as_bytes());
        assert!(
            lint.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
}

/// Runs a command with `input` on its stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}
