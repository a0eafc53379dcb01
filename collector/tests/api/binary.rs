//! The `greenops` binary itself: configuration commands, token creation, `serve` with
//! graceful SIGTERM shutdown and OTLP trace export to a small receiver.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

use crate::helpers::{enroll_body, free_port, fresh_database, hb, past, wait_until};

// `greenops` as a new user meets it: the tour of the README is in tour.rs.

fn greenops() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenops"));
    // Keep the developer's environment out of the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("GREENOPS_") || k == "DATABASE_URL" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn default_config_passes_check_config() {
    let out = greenops().arg("default-config").output().unwrap();
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("greenops-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("greenops.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = greenops().arg("check-config").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    std::fs::write(&file, "[accounting]\nidle_treshold_seconds = 10\n").unwrap();
    let check = greenops().arg("check-config").arg(&file).output().unwrap();
    assert!(!check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("unknown setting `accounting.idle_treshold_seconds`")
            && err.contains("did you mean `idle_threshold_seconds`?"),
        "{err}"
    );
    // The same for a misspelled key in the environment, before anything starts.
    let out = greenops()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GREENOPS_ACCOUNTING__MAX_GAP_SECOND", "120")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("GREENOPS_ACCOUNTING__MAX_GAP_SECOND")
            && err.contains("did you mean `max_gap_seconds`?"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A port that is taken is said with what to do, before any database is touched: the
/// database given here does not exist, and is never asked.
#[test]
fn a_port_in_use_suggests_listen_and_fails_before_the_database() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let started = Instant::now();
    let out = greenops()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--database-url",
            "postgres://greenops:hunter2@192.0.2.1:5432/none",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port}: the address is already in use"
        )) && err.contains("--listen"),
        "{err}"
    );
    assert!(!err.contains("database"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A database nobody answers is said once: its URL without the password, the driver's reason,
/// and what to check — for `serve` and for the commands.
#[test]
fn an_unreachable_database_is_said_once_with_its_url() {
    let closed = free_port();
    let url = format!("postgres://greenops:hunter2@127.0.0.1:{closed}/greenops");
    for args in [
        vec!["user", "list"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let out = greenops()
            .args(&args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(&format!(
                "cannot connect to the database postgres://greenops:***@127.0.0.1:{closed}/greenops"
            )) && err.contains("Check that PostgreSQL is running"),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.matches("onnection refused").count(),
            1,
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("hunter2") && !err.contains("pool timed out"),
            "{err}"
        );
    }
}

/// `enrollment-token list` and `revoke`, and errors that name the database they looked in.
#[test]
fn enrollment_tokens_are_listed_and_revoked() {
    let dir = std::env::temp_dir().join(format!("greenops-tokens-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/greenops.db", dir.display());
    let run = |args: &[&str]| {
        let out = greenops()
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&[
        "enrollment-token",
        "create",
        "--department",
        "lab",
        "--max-uses",
        "3",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the token on stdout: {stdout}"
    );
    assert!(stdout.starts_with("gok_enroll_"), "{stdout}");
    assert!(stderr.contains(&format!("database: {url}")), "{stderr}");
    let (ok, _, stderr) = run(&["enrollment-token", "create", "--expires-in", "36h"]);
    assert!(ok && stderr.contains("expires in 1d 12h"), "{stderr}");
    let (ok, list, _) = run(&["enrollment-token", "list"]);
    assert!(ok);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    let lab = *rows.iter().find(|r| r.contains(" lab ")).unwrap();
    let other = *rows.iter().find(|r| !r.contains(" lab ")).unwrap();
    assert!(
        lab.contains("0/3") && lab.contains("never") && lab.ends_with("usable"),
        "{list}"
    );
    assert!(other.contains('Z') && other.ends_with("usable"), "{list}");
    let id = lab.split_whitespace().next().unwrap();
    let (ok, stdout, _) = run(&["enrollment-token", "revoke", id]);
    assert!(
        ok && stdout.contains(&format!("enrollment token {id} revoked")),
        "{stdout}"
    );
    let (_, list, _) = run(&["enrollment-token", "list"]);
    let lab = list.lines().find(|r| r.contains(" lab ")).unwrap();
    assert!(lab.ends_with("revoked"), "{list}");
    let (ok, _, stderr) = run(&["enrollment-token", "revoke", "999"]);
    assert!(
        !ok && stderr.contains(&format!("no enrollment token 999 in {url}")),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["user", "passwd", "nobody"]);
    assert!(
        !ok && stderr.contains(&format!("no user 'nobody' in {url}")),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_every_command() {
    let out = greenops().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "serve",
        "migrate",
        "enrollment-token",
        "check-config",
        "default-config",
    ] {
        assert!(help.contains(cmd), "{help}");
    }
}

/// `greenops what-if` answers on an embedded database, as text and as the API's JSON, and
/// names the flag of every bad value (exit 1, nothing printed on stdout).
#[test]
fn what_if_answers_and_names_bad_flags() {
    let dir = std::env::temp_dir().join(format!("greenops-whatif-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/greenops.db", dir.display());
    let run = |args: &[&str]| {
        greenops()
            .arg("what-if")
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap()
    };
    let out = run(&["--sleep-after", "15", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sleep_after_minutes"], 15);
    assert_eq!(json["energy_joules"], "0");
    assert_eq!(json["machines_considered"], 0);
    let out = run(&["--after-hours", "--days", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("after hours only"));
    for (args, says) in [
        (
            &["--sleep-after", "0"][..],
            "--sleep-after must be a whole number",
        ),
        (
            &["--sleep-after", "10081"][..],
            "--sleep-after must be a whole number",
        ),
        (
            &["--sleep-after=-3"][..],
            "invalid value '-3' for '--sleep-after <MINUTES>'",
        ),
        (
            &["--from", "yesterday"][..],
            "--from must be an RFC 3339 time",
        ),
        (
            &["--to", "2999-01-01T00:00:00Z"][..],
            "--to must not be in the future",
        ),
        (
            &["--from", "2001-01-01T00:00:00Z"][..],
            "--from is before the raw heartbeats kept",
        ),
        (
            &["--site", "atlantis"][..],
            "--site site 'atlantis' does not exist",
        ),
        (
            &["--department", "nobody"][..],
            "--department no machine is or was in department",
        ),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{args:?}: {err}"
        );
        assert!(err.contains(says), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_says_where_it_moved_and_fails() {
    let out = greenops()
        .args(["bench", "--machines", "10", "--no-ceiling"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("moved: run greenops-bench --machines 10 --no-ceiling"),
        "{err}"
    );
    let help = greenops().arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("bench"));
}

/// Polls `/readyz` of a collector started as a process until it answers 200.
async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    let ready = wait_until(Duration::from_secs(20), async || {
        let status = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status());
        status.is_ok_and(|s| s == reqwest::StatusCode::OK)
    })
    .await;
    assert!(ready, "the collector did not become ready");
}

/// A minimal OTLP/HTTP receiver: remembers every JSON trace export it gets.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let store = store.clone();
            async move {
                store
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    "{}",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_traces_and_stops_gracefully_on_sigterm() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let (otlp, seen) = otlp_receiver().await;

    // Migrate and create a token with the CLI, exactly as an operator would.
    let out = greenops()
        .args([
            "enrollment-token",
            "create",
            "--department",
            "ops",
            "--max-uses",
            "5",
        ])
        .args(["--expires-in", "1h", "--database-url", &db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("gok_enroll_"), "{stdout}");
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(told.contains("expires in 1h, at most 5 machines"), "{told}");
    // The CLI obeys the API's bounds: no token that expires within a minute.
    let short = greenops()
        .args(["enrollment-token", "create", "--expires-in", "30s"])
        .args(["--database-url", &db])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(
        !short.status.success() && err.contains("--expires-in must be from 60 seconds"),
        "{err}"
    );

    let port = free_port();
    let mut child = greenops()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &db,
        ])
        .env("GREENOPS_TELEMETRY__OTLP_ENDPOINT", &otlp)
        .env("GREENOPS_TELEMETRY__LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until_ready(&client, &base).await;

    let res = client
        .post(format!("{base}/api/v1/agents/enroll"))
        .json(&enroll_body(&token, "machine-key-binary-0001"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let enrolled: greenops_protocol::EnrollResponse = res.json().await.unwrap();
    let res = client
        .post(format!("{base}/api/v1/heartbeats"))
        .bearer_auth(&enrolled.agent_token)
        .json(&hb(1, past(1), Some(12.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let exited = wait_until(Duration::from_secs(15), async || {
        child.try_wait().unwrap().is_some()
    })
    .await;
    assert!(exited, "no exit after SIGTERM");
    // `try_wait` keeps the status once the child is reaped.
    let status = child.try_wait().unwrap().unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "exit status {status:?}\n{logs}");
    assert!(
        logs.contains("\"message\":\"agent enrolled\""),
        "JSON logs expected:\n{logs}"
    );
    assert!(!logs.contains(&enrolled.agent_token), "a secret was logged");
    assert!(!logs.contains(&token), "a secret was logged");

    let exports = seen.lock().unwrap().join("\n");
    assert!(
        exports.contains("POST /api/v1/agents/enroll"),
        "spans: {exports}"
    );
    assert!(
        exports.contains("POST /api/v1/heartbeats"),
        "spans: {exports}"
    );
    assert!(exports.contains("greenops"), "service name: {exports}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_otlp_endpoint_never_blocks_requests() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let port = free_port();
    let mut child = greenops()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &db,
        ])
        .env(
            "GREENOPS_TELEMETRY__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{dead_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_until_ready(&client, &base).await;
    let started = Instant::now();
    for _ in 0..50 {
        let res = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exited = wait_until(Duration::from_secs(20), async || {
        child.try_wait().unwrap().is_some()
    })
    .await;
    assert!(exited, "no exit after SIGTERM with a dead OTLP endpoint");
}
