//! ferry's tools against a secured cluster: `ferry lab --quick --bootstrap` on a SASL_SSL
//! listener (SCRAM-SHA-512, the authorizer on) with `-X` settings, its proxy faults through a
//! SASL_PLAINTEXT listener (`--proxy-upstream`), and `ferry groups` with the same settings.

use std::process::Command;

use serde_json::Value;

use crate::harness::{reserve_port, Ferry};
use crate::sasl::users_add;

/// The measured rows of `results` as (profile, row).
fn measured(results: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for profile in results["profiles"].as_array().expect("profiles") {
        for row in profile["rows"].as_array().expect("rows") {
            if row["status"]["kind"] == "measured" {
                out.push((
                    profile["profile"].as_str().unwrap().to_string(),
                    row["row"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn lab_and_groups_run_against_a_sasl_ssl_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let pki = bench::tls::Pki::generate(dir.path()).unwrap();
    let data = dir.path().join("data");
    assert!(users_add(&data, "lab", "lab-secret", &[]));
    let proxy_port = reserve_port();
    let mut settings = vec![
        "listeners=SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0".to_string(),
        // The listener without TLS advertises the lab's proxy, so proxied clients stay in it.
        format!("advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{proxy_port}"),
        "sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
        "authorizer.enabled=true".to_string(),
        "super.users=User:lab".to_string(),
        "group.initial.rebalance.delay.ms=0".to_string(),
    ];
    settings.extend(crate::tls::broker_settings(&pki, "none"));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let ferry = Ferry::start(&data, &settings);
    let secured = ferry.listener("SASL_SSL").to_string();
    let plain = ferry.listener("SASL_PLAINTEXT").to_string();
    let ca = pki.ca.display().to_string();
    let client = [
        "security.protocol=SASL_SSL".to_string(),
        "sasl.mechanism=SCRAM-SHA-512".to_string(),
        "sasl.username=lab".to_string(),
        "sasl.password=lab-secret".to_string(),
        format!("ssl.ca.location={ca}"),
    ];
    let x: Vec<String> = client
        .iter()
        .flat_map(|s| ["-X".to_string(), s.clone()])
        .collect();

    let json = dir.path().join("lab.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["lab", "--quick", "--seed", "5", "--no-curve", "--no-report"])
        .args(["--profile", "none", "--profile", "lossy-network"])
        .args(["--bootstrap", &secured, "--proxy-upstream", &plain])
        .args(["--proxy-listen", &format!("127.0.0.1:{proxy_port}")])
        .args(&x)
        .arg("--json")
        .arg(&json)
        .arg("--dir")
        .arg(dir.path())
        // No PostgreSQL: its rows are skipped, the rest is what this test is about.
        .env("FERRY_PG_BIN", dir.path().join("no-postgres"))
        .env_remove("FERRY_LOG")
        .output()
        .expect("run ferry lab");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ferry lab failed: {table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        results["target"]["proxy_in_path"], true,
        "{}",
        results["target"]
    );
    let measured = measured(&results);
    for profile in ["none", "lossy-network"] {
        for row in [
            "at-most-once",
            "at-least-once",
            "at-least-once-idempotent",
            "exactly-once",
        ] {
            assert!(
                measured.contains(&(profile.to_string(), row.to_string())),
                "{row} under {profile} not measured: {measured:?}\n{table}"
            );
        }
    }

    // ferry groups with the same settings lists the lab's groups over SASL_SSL.
    let groups = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["groups", "list", "--bootstrap", &secured])
        .args(&x)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&groups.stdout);
    assert!(
        groups.status.success(),
        "{}",
        String::from_utf8_lossy(&groups.stderr)
    );
    assert!(
        listed.lines().count() > 1,
        "the lab's groups are listed: {listed}"
    );
    // Control: without the settings the same listener cannot be spoken to.
    let plain_attempt = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["groups", "list", "--bootstrap", &secured])
        .args(["-X", "socket.timeout.ms=3000"])
        .output()
        .unwrap();
    assert!(
        !plain_attempt.status.success(),
        "groups without -X succeeded"
    );
}
