//! `ferry lab --quick`, run as a person would run it, held to the seed's claims on the measured
//! histories under faults: at-most-once loses records and never duplicates them (except where
//! the network itself repeats a produce request, which the lab flags); at-least-once loses none
//! and duplicates some, and none with the idempotent consumer; every fault profile acted; and
//! the HTML report renders in headless Chromium without console errors (when it is installed).
//! The sink rows apply every ledger transfer exactly once, checked in the database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The quick lab must finish well within this.
/// The quick lab, its poison-messages table included, takes about a minute and a half in a
/// debug build.
const LAB_TIMEOUT: Duration = Duration::from_secs(170);

struct LabRun {
    results: Value,
    html: PathBuf,
    table: String,
    _dir: tempfile::TempDir,
}

/// Runs the quick lab once for every test in this module.
fn quick_lab() -> &'static LabRun {
    static RUN: OnceLock<LabRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("lab.json");
        let html = dir.path().join("lab.html");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["lab", "--quick", "--seed", "42", "--json"])
            .arg(&json)
            .arg("--html")
            .arg(&html)
            .arg("--histories")
            .arg(dir.path().join("histories"))
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FERRY_")) {
            command.env_remove(key);
        }
        let started = Instant::now();
        let child = command.spawn().expect("spawn ferry lab");
        let pid = child.id();
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(LAB_TIMEOUT);
            // SAFETY: kill(2) on a pid this test spawned; harmless if it already exited.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let output = child.wait_with_output().expect("wait for ferry lab");
        drop(watchdog);
        let table = String::from_utf8(output.stdout).expect("utf-8 table");
        println!("{table}");
        assert!(
            output.status.success(),
            "ferry lab failed ({}) after {:?}",
            output.status,
            started.elapsed()
        );
        assert!(started.elapsed() < LAB_TIMEOUT);
        let results = serde_json::from_slice(&std::fs::read(&json).expect("read lab.json"))
            .expect("parse lab.json");
        LabRun {
            results,
            html,
            table,
            _dir: dir,
        }
    })
}

/// Every measured row of `row` ("at-most-once", "at-least-once-idempotent", ...) with its
/// profile's name.
fn rows<'a>(results: &'a Value, row: &str) -> Vec<(&'a str, &'a Value)> {
    let mut out = Vec::new();
    for profile in results["profiles"].as_array().expect("profiles") {
        let name = profile["profile"].as_str().expect("profile name");
        for r in profile["rows"].as_array().expect("rows") {
            if r["row"] == row {
                out.push((name, r));
            }
        }
    }
    out
}

fn measured<'a>(results: &'a Value, row: &str) -> Vec<(&'a str, &'a Value)> {
    rows(results, row)
        .into_iter()
        .filter(|(_, r)| r["status"]["kind"] == "measured")
        .collect()
}

fn count(row: &Value, field: &str) -> u64 {
    row["counts"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{field} in {row}"))
}

#[test]
fn quick_lab_keeps_the_seeds_promises() {
    let lab = quick_lab();
    let results = &lab.results;

    // Every profile but the producer crash (transactions only) is measured for both.
    for row in ["at-most-once", "at-least-once", "at-least-once-idempotent"] {
        let profiles: Vec<&str> = measured(results, row).iter().map(|(p, _)| *p).collect();
        assert_eq!(
            profiles,
            [
                "none",
                "lost-acks",
                "lossy-network",
                "duplicating-network",
                "slow-network",
                "broker-kill",
                "consumer-crash"
            ],
            "{row} measured under"
        );
    }

    // At-most-once: loss happens, duplicates do not. The duplicating network re-sends produce
    // requests as a retry would; at-most-once never retries, but the network did, and the lab
    // reports the broken promise instead of hiding it.
    let amo = measured(results, "at-most-once");
    let lost: u64 = amo.iter().map(|(_, r)| count(r, "lost")).sum();
    assert!(lost > 0, "at-most-once lost nothing under any fault");
    for (profile, row) in &amo {
        if *profile != "duplicating-network" {
            assert_eq!(
                count(row, "duplicated"),
                0,
                "at-most-once duplicates under {profile}"
            );
        }
    }
    let crash = amo.iter().find(|(p, _)| *p == "consumer-crash").unwrap().1;
    assert!(
        count(crash, "lost") > 0,
        "a crash after commit, before processing, loses records"
    );

    // At-least-once: nothing lost anywhere, duplicates under faults.
    let alo = measured(results, "at-least-once");
    for (profile, row) in &alo {
        assert_eq!(
            count(row, "lost"),
            0,
            "at-least-once lost records under {profile}"
        );
    }
    let duplicated: u64 = alo.iter().map(|(_, r)| count(r, "duplicated")).sum();
    assert!(
        duplicated > 0,
        "at-least-once duplicated nothing under any fault"
    );
    let crash = alo.iter().find(|(p, _)| *p == "consumer-crash").unwrap().1;
    assert!(
        count(crash, "duplicated") > 0,
        "a crash before commit redelivers processed records"
    );

    // The idempotent consumer: the same histories, no loss and no duplicate effect; the
    // duplicates it caught are the ones at-least-once counted.
    for (profile, row) in measured(results, "at-least-once-idempotent") {
        assert_eq!(
            count(row, "lost"),
            0,
            "idempotent consumer lost records under {profile}"
        );
        assert_eq!(
            count(row, "duplicated"),
            0,
            "idempotent consumer duplicated under {profile}"
        );
        assert_ne!(row["verdict"]["kind"], "violated", "{profile}: {row}");
    }

    // Exactly-once: no loss, no duplicates, no aborted reads and the ledger invariant, in every
    // profile it ran; it ran at least without faults, with lost acks and with a producer crash.
    if results["target"]["transactions"] == true {
        let mut ran = Vec::new();
        for (profile, row) in rows(results, "exactly-once") {
            if row["status"]["kind"] != "measured" {
                continue;
            }
            let counts = &row["counts"];
            assert_eq!(
                counts["lost"], 0,
                "exactly-once lost under {profile}: {row}"
            );
            assert_eq!(
                counts["duplicated"], 0,
                "exactly-once duplicated under {profile}: {row}"
            );
            assert_eq!(
                counts["aborted_reads"], 0,
                "exactly-once under {profile}: {row}"
            );
            assert_eq!(
                row["ledger"]["holds"], true,
                "ledger under {profile}: {row}"
            );
            assert_ne!(row["verdict"]["kind"], "violated", "{profile}: {row}");
            ran.push(profile);
        }
        for profile in ["none", "lost-acks", "producer-crash"] {
            assert!(
                ran.contains(&profile),
                "exactly-once did not run under {profile}"
            );
        }
    }

    // Exactly-once is not faked: without the transaction APIs its rows say so.
    if results["target"]["transactions"] == false {
        for (profile, row) in rows(results, "exactly-once") {
            assert_eq!(
                row["status"]["kind"], "needs_transactions",
                "exactly-once under {profile}"
            );
        }
        assert!(lab
            .table
            .contains("needs transactions (not yet in this broker)"));
    }

    check_sink_rows(results);

    // Every fault profile demonstrably acted, and a run that injected nothing says so.
    for profile in results["profiles"].as_array().unwrap() {
        let name = profile["profile"].as_str().unwrap();
        let injected: u64 = profile["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["faults"]["injected"].as_u64())
            .sum();
        match name {
            "none" => assert_eq!(injected, 0, "the baseline injected faults"),
            "producer-crash" => {}
            _ => assert!(injected > 0, "{name} injected nothing"),
        }
        for row in profile["rows"].as_array().unwrap() {
            if row["faults"]["injected"] == 0 && name != "none" {
                assert_eq!(row["verdict"]["kind"], "no_fault_injected", "{name}: {row}");
            }
        }
    }

    // The terminal table is readable at 100 columns.
    for line in lab.table.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
    assert!(lab.table.contains("the seed's table, measured"));
}

/// The sink rows: the ledger through `crates/sink` into SQLite and PostgreSQL, judged from
/// the database: every transfer applied exactly once (SQL: as many rows in `applied` as
/// distinct transfers, as many as the producer committed), the total balance unchanged, and
/// the paused consumer of the consumer-crash profile fenced. `--quick` runs them under four
/// profiles and says so under the others. Without the PostgreSQL server binaries the
/// PostgreSQL row is skipped with the reason, naming scripts/install-deps.
/// Issue 17: the poison-messages table. Without retries the failing records are lost; with
/// them nothing is lost, the permanent failures are parked, and a replay after the fix brings
/// parked to 0.
#[test]
fn quick_lab_parks_poison_messages_and_a_replay_unparks_them() {
    let lab = quick_lab();
    let poison = &lab.results["poison"];
    let (transient, permanent) = (
        poison["transient"].as_u64().unwrap(),
        poison["permanent"].as_u64().unwrap(),
    );
    assert_eq!(
        (transient, permanent),
        (20, 2),
        "1% and 0.1% of 2,000 records"
    );
    let rows = poison["rows"].as_array().expect("poison rows");
    assert_eq!(rows.len(), 5);
    let tally = |row: &Value, field: &str, part: &str| {
        row[part][field]
            .as_u64()
            .unwrap_or_else(|| panic!("{part}.{field} in {row}"))
    };
    for row in rows {
        let name = row["row"].as_str().unwrap();
        assert!(row["error"].is_null(), "{name}: {row}");
        if name == "at-most-once" {
            // The control: no retry, every failing record lost, nothing parked.
            assert_eq!(tally(row, "lost", "tally"), transient + permanent, "{row}");
            assert_eq!(tally(row, "parked", "tally"), 0);
            assert!(row["after_replay"].is_null());
            continue;
        }
        assert_eq!(tally(row, "lost", "tally"), 0, "{name}");
        assert_eq!(tally(row, "parked", "tally"), permanent, "{name}");
        assert_eq!(tally(row, "lost", "after_replay"), 0, "{name}");
        assert_eq!(tally(row, "parked", "after_replay"), 0, "{name}");
        if name.starts_with("exactly-once") {
            assert_eq!(tally(row, "duplicated", "tally"), 0, "{name}");
        }
    }
    assert!(
        lab.table.contains("━━ poison messages ━━ 2000 records"),
        "{}",
        lab.table
    );
}

fn check_sink_rows(results: &Value) {
    let quick_profiles = ["none", "broker-kill", "consumer-crash", "rebalance"];
    for row_name in ["sink-sqlite", "sink-postgres"] {
        let all = rows(results, row_name);
        assert_eq!(all.len(), 9, "{row_name} has a row in every profile");
        let unavailable = all.iter().find(|(p, r)| {
            *p == "none" && r["status"]["kind"] == "skipped" && row_name == "sink-postgres"
        });
        if let Some((_, row)) = unavailable {
            let reason = row["status"]["reason"].as_str().unwrap();
            assert!(reason.contains("scripts/install-deps"), "{reason}");
            eprintln!("sink-postgres skipped: {reason}");
            continue;
        }
        for (profile, row) in &all {
            if quick_profiles.contains(profile) {
                continue;
            }
            let status = &row["status"];
            assert_eq!(
                status["kind"], "skipped",
                "{row_name} under {profile}: {row}"
            );
            assert!(status["reason"].as_str().unwrap().contains("--quick"));
        }
        let profiles: Vec<&str> = measured(results, row_name)
            .iter()
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(profiles, quick_profiles, "{row_name} measured under");
        for (profile, row) in measured(results, row_name) {
            let sink = &row["sink"];
            let expected = count(row, "expected");
            assert_eq!(
                count(row, "lost"),
                0,
                "{row_name} lost under {profile}: {row}"
            );
            assert_eq!(
                count(row, "duplicated"),
                0,
                "{row_name} dup under {profile}: {row}"
            );
            assert_eq!(
                sink["applied_rows"], expected,
                "{row_name} {profile}: {sink}"
            );
            assert_eq!(
                sink["distinct_transfers"], expected,
                "{row_name} {profile}: {sink}"
            );
            assert_eq!(
                sink["total_balance"], sink["total_initial"],
                "{row_name} {profile}"
            );
            assert_eq!(sink["balances_match"], true, "{row_name} {profile}: {sink}");
            assert_eq!(row["ledger"]["holds"], true, "{row_name} {profile}: {row}");
            assert_ne!(
                row["verdict"]["kind"], "violated",
                "{row_name} {profile}: {row}"
            );
            let by_kind = &row["faults"]["by_kind"];
            match profile {
                "consumer-crash" => {
                    assert_eq!(by_kind["crash consumer"], 2, "{row_name}: {row}");
                    // The second crash pauses a consumer until its successor has claimed the
                    // partitions: its commit must be rejected in the database.
                    assert_eq!(sink["paused_consumers"], 1, "{row_name}: {sink}");
                    assert_eq!(sink["fenced_commits"], 1, "{row_name}: {sink}");
                }
                "broker-kill" => assert_eq!(by_kind["kill -9 broker"], 1, "{row_name}: {row}"),
                "rebalance" => {
                    assert_eq!(by_kind["consumer joins group"], 1, "{row_name}: {row}");
                    // The joiner took partitions over and applied at least one batch.
                    let notes = row["notes"].to_string();
                    assert!(!notes.contains("applied nothing"), "{row_name}: {notes}");
                    assert_eq!(by_kind["consumer leaves group"], 1, "{row_name}: {row}");
                }
                _ => assert_eq!(row["verdict"]["kind"], "baseline"),
            }
        }
    }
}

/// Where screenshots are kept: `FERRY_TEST_ARTEFACTS` or cargo's temporary directory.
fn artefacts_dir() -> PathBuf {
    let dir = std::env::var_os("FERRY_TEST_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Renders `page` in headless Chromium to a screenshot; returns its console messages (failed
/// loads, script errors, `console.error` and the rest).
fn render(chromium: &str, page: &Path, screenshot: &Path) -> Vec<String> {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,3000",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chromium failed ({}):\n{log}",
        output.status
    );
    let size = std::fs::metadata(screenshot).map_or(0, |m| m.len());
    assert!(size > 10_000, "screenshot of {size} bytes:\n{log}");
    // The report has no script, so any console message at all is a fault of the page.
    log.lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .map(str::to_string)
        .collect()
}

#[test]
fn lab_report_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!("chromium is not installed: the HTML report was not rendered");
        return;
    };
    let lab = quick_lab();
    let artefacts = artefacts_dir();

    // The detector must see errors where there are some.
    let broken = artefacts.join("broken.html");
    std::fs::write(
        &broken,
        "<!doctype html><html><body><h1>broken</h1><img src=\"missing.png\">\
         <script>console.error('lab control error'); undefined_function();</script></body></html>",
    )
    .unwrap();
    let errors = render(chromium, &broken, &artefacts.join("broken.png"));
    assert!(
        !errors.is_empty(),
        "console errors of a broken page went unseen"
    );

    let screenshot = artefacts.join("lab-report.png");
    let errors = render(chromium, &lab.html, &screenshot);
    assert!(
        errors.is_empty(),
        "the lab report has console errors:\n{}",
        errors.join("\n")
    );
    println!("lab report screenshot: {}", screenshot.display());
}

/// Without the PostgreSQL server binaries (`FERRY_PG_BIN` pointing at an empty folder) the lab
/// still runs: the PostgreSQL sink row says it was skipped and why, naming scripts/install-deps,
/// and the SQLite sink row is measured beside it. The same run, with neither --html nor --json,
/// writes both reports into its working directory and says where, and with --require it ends
/// with the recommendation, in the terminal and in the JSON.
#[test]
fn lab_without_postgres_skips_its_rows_naming_install_deps() {
    let dir = tempfile::tempdir().unwrap();
    let no_binaries = dir.path().join("no-postgres");
    std::fs::create_dir_all(&no_binaries).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "lab",
            "--quick",
            "--seed",
            "3",
            "--profile",
            "none",
            "--require",
            "loss=0, duplicates=0",
        ])
        .arg("--dir")
        .arg(dir.path())
        .current_dir(dir.path())
        .env("FERRY_PG_BIN", &no_binaries)
        .output()
        .expect("run ferry lab");
    let table = String::from_utf8_lossy(&output.stdout);
    let traces = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ferry lab failed: {table}");
    assert!(traces.contains("report: ./ferry-lab.html\n"), "{traces}");
    assert!(traces.contains("results: ./ferry-lab.json\n"), "{traces}");
    assert!(dir.path().join("ferry-lab.html").is_file());
    let json = dir.path().join("ferry-lab.json");
    let results: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let postgres = &rows(&results, "sink-postgres")[0].1;
    assert_eq!(postgres["status"]["kind"], "skipped", "{postgres}");
    let reason = postgres["status"]["reason"].as_str().unwrap();
    assert!(reason.contains("scripts/install-deps"), "{reason}");
    assert!(table.contains("scripts/install-deps"), "{table}");
    let sqlite = &rows(&results, "sink-sqlite")[0].1;
    assert_eq!(sqlite["status"]["kind"], "measured", "{sqlite}");
    assert_eq!(count(sqlite, "lost"), 0);

    let recommendation = &results["recommendation"];
    assert_eq!(recommendation["requirement"], "loss=0,duplicates=0");
    let reasons = recommendation["reasons"].as_array().unwrap();
    // Every row but the chosen one has a reason, and the PostgreSQL row's is that it never ran.
    let chosen = usize::from(recommendation["row"].is_string());
    assert_eq!(reasons.len() + chosen, 6, "{recommendation}");
    let postgres = reasons
        .iter()
        .find(|r| r["row"] == "sink-postgres")
        .unwrap();
    assert!(postgres["detail"]
        .as_str()
        .unwrap()
        .starts_with("measured under no profile"));
    assert!(
        table.contains("━━ --require loss=0,duplicates=0 ━━"),
        "{table}"
    );
}

/// `ferry lab check` on every history the quick lab wrote reaches the verdict, loss and
/// duplicates the lab reported for that row, and exits non-zero exactly when it is violated.
#[test]
fn lab_check_judges_every_saved_history_as_the_lab_did() {
    let results = &quick_lab().results;
    let mut checked = 0;
    for profile in results["profiles"].as_array().unwrap() {
        for row in profile["rows"].as_array().unwrap() {
            let Some(history) = row["history_file"].as_str() else {
                continue;
            };
            let name = row["row"].as_str().unwrap();
            let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args(["lab", "check", history, "--row", name])
                .output()
                .expect("run ferry lab check");
            let text = String::from_utf8_lossy(&output.stdout);
            let kind = row["verdict"]["kind"].as_str().unwrap();
            let verdict = format!("verdict: {}", kind.replace('_', " "));
            assert!(
                text.contains(&verdict),
                "{history} as {name}: {verdict}?\n{text}"
            );
            let lost = format!("lost: {} (", count(row, "lost"));
            assert!(text.contains(&lost), "{history} as {name}: {lost}?\n{text}");
            let duplicated = format!("duplicated: {} ·", count(row, "duplicated"));
            assert!(
                text.contains(&duplicated),
                "{history} as {name}: {duplicated}?\n{text}"
            );
            assert_eq!(
                output.status.success(),
                kind != "violated",
                "{history}\n{text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} histories checked");
}

/// The check command's own wiring, without a lab run: a clean history passes, one with a lost
/// record fails; a --require that does not parse stops `ferry lab` before anything runs.
#[test]
fn lab_check_and_require_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let send = |kind: &str, id: u64, index: u64| {
        format!(
            r#"{{"index":{index},"time_us":{},"type":"{kind}","process":"producer","f":"send","id":{id},"partition":0,"offset":{id}}}"#,
            index * 10
        )
    };
    let process = |id: u64, index: u64| {
        format!(
            r#"{{"index":{index},"time_us":{},"type":"ok","process":{{"consumer":0}},"f":"process","id":{id},"partition":0,"offset":{id},"applied":true}}"#,
            index * 10
        )
    };
    let sent = [
        send("invoke", 0, 0),
        send("ok", 0, 1),
        send("invoke", 1, 2),
        send("ok", 1, 3),
    ];
    let clean = [&sent[..], &[process(0, 4), process(1, 5)]].concat();
    let lossy = [&sent[..], &[process(0, 4)]].concat();
    let check = |name: &str, lines: &[String], succeeds: bool, says: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["lab", "check"])
            .arg(&path)
            .output()
            .expect("run ferry lab check");
        let text = String::from_utf8_lossy(&output.stdout);
        let errors = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.success(), succeeds, "{name}: {text}{errors}");
        assert!(
            format!("{text}{errors}").contains(says),
            "{name}: {text}{errors}"
        );
    };
    check(
        "none-at-least-once.jsonl",
        &clean,
        true,
        "verdict: baseline",
    );
    check(
        "none-at-least-once.jsonl",
        &lossy,
        false,
        "verdict: violated: 1 records lost",
    );
    check(
        "none-at-least-once.jsonl",
        &lossy,
        false,
        "at-least-once broke its promises",
    );
    check("nameless.jsonl", &clean, false, "pass --row and --profile");

    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "lab",
            "--quick",
            "--no-report",
            "--require",
            "loss=0,lat<=5ms",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run ferry lab");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{errors}");
    let expect = "unknown key 'lat' in --require: expected loss, duplicates, p99, rate";
    assert!(errors.contains(expect), "{errors}");
    assert!(!errors.contains("seed"), "the lab started: {errors}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
