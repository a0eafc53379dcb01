//! `greenops-bench` end to end on a tiny fleet: the collector beside it (`greenops`, built by
//! `cargo test --workspace`) as one child process, the ceiling (this binary again) as another,
//! and the verification of every acknowledged heartbeat.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_small_run_verifies_and_reaches_the_ceiling() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_greenops-bench"));
    let collector = bench.with_file_name(format!("greenops{}", std::env::consts::EXE_SUFFIX));
    if !collector.is_file() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "{} not built, and CI=true forbids skipping",
                collector.display()
            );
        }
        eprintln!(
            "SKIPPED: {} not built (run cargo test --workspace)",
            collector.display()
        );
        return;
    }
    let mut command = Command::new(&bench);
    for (k, _) in std::env::vars() {
        if k.starts_with("GREENOPS_") || k == "DATABASE_URL" {
            command.env_remove(k);
        }
    }
    let out = command
        .args([
            "--machines",
            "20",
            "--duration",
            "1",
            "--connections",
            "2",
            "--levels",
            "50",
            "--list-rounds",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("backend=SQLite machines=20"), "{stdout}");
    assert!(stdout.contains("verified=ok"), "{stdout}");
    assert!(stdout.contains("ceiling_rate="), "{stdout}");
    assert!(stdout.contains("\nratio="), "{stdout}");
    // The closed-loop maximum, then half of it, each with its ceiling twin.
    assert!(stdout.contains("phase=closed@2 connections=2"), "{stdout}");
    assert!(stdout.contains("phase=open@50%"), "{stdout}");
    assert!(stdout.contains("p99_ratio="), "{stdout}");
    assert!(stdout.contains("metrics_ceiling_ms="), "{stdout}");
    assert!(stdout.contains("metrics_gzip_bytes="), "{stdout}");
}
