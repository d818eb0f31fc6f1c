//! `ferry bench --quick` completes and writes sane JSON (schema in docs/bench.md). No timing is
//! asserted: figures from a debug build on a shared machine mean nothing; the full bench is run
//! on demand.

use std::process::Command;

use serde_json::Value;

/// The workloads every run measures on ferry, with a metric each that must be positive.
const FERRY_WORKLOADS: &[(&str, &str)] = &[
    ("startup", "ready_ms"),
    ("produce_1kib", "bytes_per_s"),
    ("produce_100b", "records_per_s"),
    ("consume_1kib", "bytes_per_s"),
    ("produce_1kib_tls", "bytes_per_s"),
    ("consume_1kib_tls", "bytes_per_s"),
    ("e2e_latency", "p99_us"),
    // ferry's own stage timings, scraped from its /metrics around the workload.
    ("e2e_latency", "produce_requests"),
    ("e2e_latency_churn", "p99_us"),
    ("e2e_latency_churn", "topic_changes"),
    ("metrics_cost", "records_per_s_metrics_on"),
    ("metrics_cost", "scrapes"),
    ("memory", "idle_rss_bytes"),
    ("recovery", "ready_ms"),
];

#[test]
fn quick_bench_writes_sane_json() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["bench", "--quick", "--json"])
        .arg(&json_path)
        .arg("--dir")
        .arg(dir.path())
        .env("FERRY_LOG", "warn")
        .output()
        .expect("run ferry bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ferry bench failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("design targets"), "no table: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap())
        .expect("bench JSON parses");
    check_report(&report);
}

/// `--broker-cpus` runs the brokers on those CPUs and the clients on the rest, and says so in
/// the JSON; a split that leaves the clients no CPU is refused with a reason.
#[test]
fn broker_cpus_split_brokers_from_clients() {
    let dir = tempfile::tempdir().unwrap();
    let bench = |broker_cpus: &str, json: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["bench", "--quick", "--no-peers", "--only", "e2e_latency"])
            .args(["--broker-cpus", broker_cpus, "--json"])
            .arg(json)
            .arg("--dir")
            .arg(dir.path())
            .env("FERRY_LOG", "warn")
            .output()
            .expect("run ferry bench")
    };
    let json_path = dir.path().join("split.json");
    let output = bench("0", &json_path);
    assert!(
        output.status.success(),
        "ferry bench --broker-cpus 0 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap())
        .expect("bench JSON parses");
    let settings = &report["settings"];
    assert_eq!(settings["broker_cpus"], serde_json::json!([0]));
    let clients: Vec<u64> = settings["client_cpus"]
        .as_array()
        .expect("client CPUs listed")
        .iter()
        .map(|cpu| cpu.as_u64().expect("a CPU number"))
        .collect();
    assert!(!clients.is_empty() && !clients.contains(&0), "{clients:?}");
    let row = row(&report, "ferry", "e2e_latency");
    assert_eq!(row["status"], "ok", "{row}");
    positive(&row["metrics"]["ack_p99_us"], "ack p99 with the CPUs split");
    // Every CPU for the brokers leaves none for the clients.
    let all: Vec<String> = std::iter::once(0)
        .chain(clients)
        .map(|cpu| cpu.to_string())
        .collect();
    let output = bench(&all.join(","), &dir.path().join("none.json"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a split with no client CPU ran");
    assert!(stderr.contains("leaves no CPU for the clients"), "{stderr}");
}

fn check_report(report: &Value) {
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["mode"], "quick");
    assert_eq!(report["build"], "debug");
    let machine = &report["machine"];
    positive(&machine["disk_fdatasync_bytes_per_s"], "disk bandwidth");
    positive(&machine["loopback_tcp_bytes_per_s"], "loopback bandwidth");
    positive(&machine["fsync_latency"]["p50_us"], "fsync p50");
    positive(&report["host"]["cores"], "cores");
    let targets = report["targets"].as_array().expect("targets array");
    let ferry = targets
        .iter()
        .find(|t| t["name"] == "ferry")
        .expect("ferry target");
    assert_eq!(ferry["status"], "ok", "{ferry}");
    let results = report["results"].as_array().expect("results array");
    for row in results {
        for (name, value) in row["metrics"].as_object().expect("metrics object") {
            let value = value.as_f64().unwrap_or(f64::NAN);
            assert!(
                value.is_finite() && value >= 0.0,
                "{name} = {value} in {row}"
            );
        }
    }
    for (workload, metric) in FERRY_WORKLOADS {
        let row = row(report, "ferry", workload);
        assert_eq!(row["status"], "ok", "{row}");
        positive(&row["metrics"][*metric], &format!("{workload}.{metric}"));
    }
    let txn = results
        .iter()
        .find(|r| r["target"] == "ferry" && r["workload"] == "produce_1kib_txn")
        .expect("a transactions row, measured or not available");
    assert!(
        txn["status"] == "ok" || txn["status"] == "not_available",
        "{txn}"
    );
    let checks = report["design_targets"].as_array().expect("design targets");
    assert_eq!(checks.len(), 7);
    positive(
        &report["machine"]["fsync_round_latency"]["p99_us"],
        "machine.fsync_round_latency.p99_us",
    );
    assert_eq!(
        report["machine"]["round_files"], 4,
        "one file per partition"
    );
    for check in checks {
        let verdict = check["verdict"].as_str().unwrap_or("");
        assert!(
            ["met", "missed", "not_measured"].contains(&verdict),
            "{check}"
        );
    }
}

/// A target's row for a workload.
fn row<'a>(report: &'a Value, target: &str, workload: &str) -> &'a Value {
    report["results"]
        .as_array()
        .expect("results array")
        .iter()
        .find(|r| r["target"] == target && r["workload"] == workload)
        .unwrap_or_else(|| panic!("no {target} row for {workload}"))
}

fn positive(value: &Value, what: &str) {
    let number = value.as_f64().unwrap_or(f64::NAN);
    assert!(number.is_finite() && number > 0.0, "{what} = {value}");
}
