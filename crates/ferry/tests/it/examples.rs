//! The examples of `crates/ferry/examples/` (the client crate's documentation starts from
//! them) run against a real `ferry serve`, each to its exit code: 0 means its guarantee's
//! promise held. They are built here with cargo, in this test binary's profile, since
//! `cargo test --test it` builds no examples of its own.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::Ferry;

/// The three examples, built once per test run.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-j1", "-p", "ferry", "--examples"]);
        // What cargo set for this test process (CARGO_PKG_*, CARGO_MANIFEST_DIR, …) would reach
        // the build scripts and make the outer cargo rebuild their crates next time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let keep = ["CARGO_HOME", "CARGO_TARGET_DIR"].contains(&name.as_str());
            if (name.starts_with("CARGO") && !keep) || name.starts_with("RUSTC") {
                cargo.env_remove(&name);
            }
        }
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let status = cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples: {status}");
    });
    // This binary is <target>/<profile>/deps/it-…; examples are <target>/<profile>/examples/.
    let exe = std::env::current_exe().expect("this test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("profile directory");
    profile_dir.join("examples").join(name)
}

/// Runs example `name` against `ferry` and returns its standard output; it must exit 0.
fn run(ferry: &Ferry, name: &str) -> String {
    let output = Command::new(example(name))
        .env("FERRY_BOOTSTRAP", ferry.bootstrap())
        .env_remove("FERRY_EXAMPLE_POSTGRES")
        .output()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example {name} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_examples_keep_their_promises() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    let telemetry = run(&ferry, "telemetry_at_most_once");
    assert!(telemetry.contains("at-most-once held"), "{telemetry}");
    let orders = run(&ferry, "orders_at_least_once");
    // The dead letters were real: some orders were parked, then replayed and mailed.
    assert!(orders.contains(" 3 parked in "), "{orders}");
    assert!(orders.contains("after the fix: 3 replayed, 1000 of 1000 mailed, 0 mailed twice"));
    let ledger = run(&ferry, "ledger_exactly_once");
    assert!(
        ledger.contains("2000 transfers applied (2000 distinct) of 2000"),
        "{ledger}"
    );
}
