//! The `greenops-agent` command line.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenops-agent"));
    c.env("GREENOPS_AGENT_CONFIG", "/dev/null");
    c
}

#[test]
fn help_lists_the_commands_and_settings() {
    let out = agent().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "run",
        "enroll",
        "status",
        "idle",
        "--server",
        "--enrollment-token",
        "--state-dir",
        "--heartbeat-interval-seconds",
        "--sample-interval-seconds",
    ] {
        assert!(help.contains(word), "{word} missing:\n{help}");
    }
}

#[test]
fn status_of_a_fresh_state_directory() {
    let dir = std::env::temp_dir().join(format!("agent-status-{}", std::process::id()));
    let out = agent()
        .args(["status", "--state-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("not enrolled") && text.contains("spool:           0 heartbeats"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_settings_get_a_clear_error() {
    let out = agent()
        .args([
            "run",
            "--server",
            "ftp://x",
            "--state-dir",
            "/tmp/agent-bad",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
    let out = agent()
        .args(["run", "--state-dir", "/tmp/agent-bad2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server URL"));
}
