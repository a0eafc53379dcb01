//! The `greenops-agent` command line.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::process::Command;

/// An empty file, portable (no `/dev/null` on Windows).
fn empty_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("greenops-agent-empty-{}", std::process::id()));
    std::fs::write(&path, b"").unwrap();
    path
}

/// A path that does not exist on any platform.
fn nowhere(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("greenops-agent-no-such-dir-{}", std::process::id()))
        .join(name)
}

/// The agent with an empty configuration file, whatever the machine has in its own.
fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenops-agent"));
    c.env("GREENOPS_AGENT_CONFIG", empty_file());
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
        "--enrollment-token-file",
        "--state-dir",
        "--heartbeat-interval-seconds",
        "--sample-interval-seconds",
    ] {
        assert!(help.contains(word), "{word} missing:\n{help}");
    }
}

/// `status` only reads: a state directory that does not exist stays so, and the server shown
/// is the configured one, else the one the last `run` used.
#[test]
fn status_changes_nothing_and_shows_the_server() {
    let dir = std::env::temp_dir().join(format!("agent-status-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
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
        text.contains("not enrolled")
            && text.contains("spool:           0 heartbeats")
            && text.contains("does not exist yet")
            && text.contains("server:          (not configured"),
        "{text}"
    );
    assert!(!dir.exists(), "status created {}", dir.display());

    let out = agent()
        .args(["status", "--server", "http://collector.example:9850"])
        .args(["--state-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("server:          http://collector.example:9850\n"),
        "{text}"
    );
    // What a `run` with --server left behind is shown by a `status` without it.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("status.json"),
        r#"{"machine_id":null,"enrolled":false,"last_seq":0,"last_delivery_at":null,
            "last_delivered_seq":0,"spool_depth":0,"spool_bytes":0,"idle_source":"none",
            "last_error":null,"server_url":"http://10.0.0.5:9850"}"#,
    )
    .unwrap();
    let out = agent()
        .args(["status", "--state-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("server:          http://10.0.0.5:9850 (used by the last run"),
        "{text}"
    );
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["status.json"],
        "status wrote into the state directory"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A state directory the agent cannot create is named, with what to do.
#[test]
fn an_unusable_state_directory_is_named() {
    let file = std::env::temp_dir().join(format!("agent-file-{}", std::process::id()));
    std::fs::write(&file, b"").unwrap();
    let state = file.join("state");
    let out = agent()
        .args(["run", "--server", "http://127.0.0.1:9"])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot create the state directory {}",
            state.display()
        )) && err.contains("--state-dir"),
        "{err}"
    );
    std::fs::remove_file(&file).ok();
}

/// The token never has to be on the command line, and is given once.
#[test]
fn the_enrollment_token_file_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("agent-tokfile-{}", std::process::id()));
    let out = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9"])
        .args(["--enrollment-token", "a", "--enrollment-token-file"])
        .arg(empty_file())
        .arg("--state-dir")
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("give the enrollment token once"),
        "{err}"
    );
    let out = agent()
        .args(["enroll", "--server", "http://127.0.0.1:9"])
        .arg("--state-dir")
        .arg(&dir)
        .env("GREENOPS_ENROLLMENT_TOKEN_FILE", nowhere("token"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot read the enrollment token file {}",
            nowhere("token").display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Logs carry colour codes only for a terminal: never into a pipe, a file or journald.
#[test]
fn no_colour_codes_into_a_pipe() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("agent-colour-{}", std::process::id()));
    let mut child = agent()
        .args(["run", "--server", "http://127.0.0.1:9"])
        .arg("--state-dir")
        .arg(&dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("agent running") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.contains("INFO") && seen.contains("agent running"),
        "{seen}"
    );
    assert!(!seen.contains('\u{1b}'), "{seen:?}");
    std::fs::remove_dir_all(&dir).ok();
}
#[test]
fn bad_settings_get_a_clear_error() {
    let out = agent()
        .args(["run", "--server", "ftp://x", "--state-dir"])
        .arg(nowhere("agent-bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
    let out = agent()
        .args(["run", "--state-dir"])
        .arg(nowhere("agent-bad2"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server URL"));
}
