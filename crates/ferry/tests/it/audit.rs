//! `ferry audit` end to end: the real binary as a child process against a real `ferry serve`,
//! through a real `ferry chaos` where a test needs faults, its `--json` summary parsed. Each
//! fault test also shows the fault acted (its control), and a real Prometheus scrapes both
//! processes.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chaos::{Action, Direction, FaultRule, Plan};
use serde_json::Value;

use crate::harness::{reserve_port, Ferry};

/// The acks=all lanes, which must lose nothing.
const ACKS_ALL_LANES: [&str; 3] = [
    "at-least-once",
    "at-least-once-idempotent",
    "exactly-once",
];
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

/// Waits for an audit child and parses its JSON summary.
fn finish(mut child: Child) -> (ExitStatus, Value) {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .expect("read the summary");
    let status = child.wait().expect("wait for ferry audit");
    let summary = serde_json::from_str(&out)
        .unwrap_or_else(|error| panic!("ferry audit ({status}) printed no JSON ({error}): {out}"));
    (status, summary)
}

/// Runs `ferry audit` to its end.
fn audit(bootstrap: &str, args: &[&str]) -> (ExitStatus, Value) {
    finish(audit_command(bootstrap, args).spawn().expect("spawn ferry audit"))
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

/// A `ferry chaos` child between clients on `listen` and the broker at `upstream`.
struct Chaos {
    child: Child,
    events: PathBuf,
}

impl Chaos {
    fn start(dir: &Path, listen: SocketAddr, upstream: SocketAddr, plan: &Plan) -> Chaos {
        let plan_path = dir.join("plan.json");
        std::fs::write(&plan_path, serde_json::to_string(plan).expect("plan as JSON"))
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
        &["--duration", "6s", "--grace", "3s", "--fail-on", "loss>0,duplicates>0,reordered>0,aborted_reads>0"],
    );
    eprintln!("{}", figures(&summary));
    assert!(status.success(), "ferry audit exited {status}");
    for name in ALL_LANES {
        assert!(count(&summary, name, "consumed") > 300, "{name} consumed little");
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
    assert!(chaos.faults("duplicate") > 0, "the proxy duplicated nothing");
    assert!(count(&summary, "at-least-once", "duplicated") > 0);
    // The idempotent consumer's topic held duplicates too (its control), and it skipped them.
    assert!(count(&summary, "at-least-once-idempotent", "dedup_skipped") > 0);
    assert_eq!(count(&summary, "at-least-once-idempotent", "duplicated"), 0);
    assert_eq!(count(&summary, "exactly-once", "duplicated"), 0);
    for name in ACKS_ALL_LANES {
        assert_eq!(count(&summary, name, "lost"), 0, "{name} lost records");
    }
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
        assert!(availability < 1.0, "{name}: the kill did not show ({availability})");
        assert_eq!(count(&summary, name, "lost"), 0, "{name} lost records");
        assert!(count(&summary, name, "consumed") > 0, "{name} consumed nothing");
    }
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
        assert_eq!(count(&summary, name, "lost"), 0, "{name} lost records");
        assert!(count(&summary, name, "consumed") > 300, "{name} consumed little");
    }
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
    // --fail-on held: exit status 2, the condition named in the summary.
    assert_eq!(status.code(), Some(2), "ferry audit exited {status}");
    let failures = summary["failures"].as_array().expect("failures");
    assert!(failures[0].as_str().is_some_and(|f| f.starts_with("at-most-once:loss>0")));
}
