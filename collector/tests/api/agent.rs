//! The real `greenops-agent` binary against the real collector on PostgreSQL: enrolment,
//! delivery, a collector outage (everything spooled arrives, totals exact), `kill -9` of the
//! agent mid-spool (nothing lost, no `seq` reused), and a clean stop on SIGTERM.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use greenops_protocol::{Session, ValidHeartbeat};
use serde_json::Value;
use sqlx::{Connection, Row};

use crate::helpers::{
    fresh_database, model_totals, poll_until, spawn_app_with, test_settings, wait_for,
};
use crate::postgres::missing;

pub(crate) fn agent_binary() -> PathBuf {
    // target/<profile>/deps/api-… → target/<profile>/greenops-agent
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("greenops-agent")
}

struct Agent(Child);

impl Agent {
    fn start(server: &str, token: &str, state: &Path, display: Option<&str>) -> Self {
        let mut cmd = Command::new(agent_binary());
        cmd.args(["run", "--server", server, "--enrollment-token", token])
            .arg("--state-dir")
            .arg(state)
            .args([
                "--heartbeat-interval-seconds",
                "1",
                "--sample-interval-seconds",
                "1",
            ])
            .env("GREENOPS_AGENT_CONFIG", "/dev/null")
            .env_remove("DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(d) = display {
            cmd.env("DISPLAY", d);
        }
        Agent(cmd.spawn().unwrap())
    }

    fn kill9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// SIGTERM; returns how long the agent took to exit, and whether it exited cleanly.
    fn terminate(mut self) -> (Duration, bool) {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        let exited = poll_until(Duration::from_secs(10), || {
            self.0.try_wait().unwrap().is_some()
        });
        let took = started.elapsed();
        assert!(exited, "agent ignored SIGTERM");
        // `try_wait` keeps the status once the child is reaped.
        let status = self.0.try_wait().unwrap().unwrap();
        (took, status.success())
    }
}

fn status(state: &Path) -> Value {
    std::fs::read(state.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The stored heartbeats of a machine: seq, sent_at, idle (ms) and the packed state.
async fn rows(db: &str, machine_id: &str) -> Vec<(i64, i64, Option<i64>, i32)> {
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let rows = sqlx::query(
        "SELECT seq, sent_at_ms, idle_ms::int8 AS idle_ms, state FROM heartbeats
         WHERE machine = (SELECT num FROM machines WHERE id = $1) ORDER BY seq",
    )
    .bind(machine_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    rows.into_iter()
        .map(|r| {
            (
                r.get("seq"),
                r.get("sent_at_ms"),
                r.get("idle_ms"),
                r.get("state"),
            )
        })
        .collect()
}

/// An X server for real idle values, when one can be started.
fn xvfb() -> Option<(Child, String)> {
    let n = (std::process::id() % 400) + 500;
    let child = Command::new("Xvfb")
        .args([
            &format!(":{n}"),
            "-screen",
            "0",
            "320x240x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let socket = format!("/tmp/.X11-unix/X{n}");
    if !poll_until(Duration::from_secs(10), || Path::new(&socket).exists()) {
        return None;
    }
    Some((child, format!(":{n}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_and_kill_9_lose_nothing_and_totals_stay_exact() {
    let Some(db) = fresh_database().await else {
        return;
    };
    if !agent_binary().exists() {
        missing(&format!(
            "the greenops-agent binary at {}",
            agent_binary().display()
        ));
        return;
    }
    let mut x = xvfb();
    if x.is_none() {
        missing("Xvfb (Debian package xvfb)");
    }
    let display = x.as_ref().map(|(_, d)| d.clone());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = test_settings(&db);
    settings.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let server = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(settings.clone()).await;
    let token = app.enrollment_token("default", "agents").await;
    let state = std::env::temp_dir().join(format!(
        "greenops-agent-e2e-{}",
        uuid::Uuid::new_v4().simple()
    ));

    // Enrol and deliver live.
    let agent = Agent::start(&server, &token, &state, display.as_deref());
    wait_for("enrolment", Duration::from_secs(20), async || {
        status(&state)["enrolled"] == true
    })
    .await;
    let machine_id = status(&state)["machine_id"].as_str().unwrap().to_string();
    wait_for("live heartbeats", Duration::from_secs(20), async || {
        rows(&db, &machine_id).await.len() >= 3
    })
    .await;
    let text = app.metrics().await;
    assert!(
        text.contains(&format!("machine_id=\"{machine_id}\"")),
        "the machine is on /metrics"
    );
    if display.is_some() {
        assert_eq!(status(&state)["idle_source"], "x11-screensaver");
        let viewer = app
            .operator("viewer", greenops_collector::store::Role::Viewer)
            .await;
        let detail: Value = app
            .call(
                &viewer,
                reqwest::Method::GET,
                &format!("/api/v1/machines/{machine_id}"),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            detail["idle_source"], "x11-screensaver",
            "the collector shows how the agent measures idle time"
        );
    }

    // The collector goes away for several intervals; the agent spools.
    app.stop().await;
    wait_for(
        "heartbeats to pile up in the spool",
        Duration::from_secs(20),
        async || status(&state)["spool_depth"].as_u64().unwrap_or(0) >= 3,
    )
    .await;
    let app = spawn_app_with(settings.clone()).await;
    wait_for("the spool to drain", Duration::from_secs(60), async || {
        let s = status(&state);
        s["spool_depth"] == 0 && s["last_delivered_seq"] == s["last_seq"]
    })
    .await;

    // Another outage, and the agent is killed -9 with heartbeats in its spool.
    app.stop().await;
    wait_for(
        "a spool to kill the agent with",
        Duration::from_secs(20),
        async || status(&state)["spool_depth"].as_u64().unwrap_or(0) >= 2,
    )
    .await;
    agent.kill9();
    let before_kill: u64 = status(&state)["last_seq"].as_u64().unwrap();
    let agent = Agent::start(&server, &token, &state, display.as_deref());
    // The restarted process takes heartbeats of its own (a fresh seq block) while the
    // collector is still down.
    wait_for(
        "a heartbeat of the restarted agent in the spool",
        Duration::from_secs(20),
        async || status(&state)["last_seq"].as_u64().unwrap_or(0) > before_kill + 1,
    )
    .await;
    let app = spawn_app_with(settings.clone()).await;
    wait_for(
        "everything delivered after the restart",
        Duration::from_secs(60),
        async || {
            let s = status(&state);
            s["spool_depth"] == 0
                && s["last_seq"].as_u64().unwrap_or(0) > before_kill + 2
                && s["last_delivered_seq"] == s["last_seq"]
        },
    )
    .await;
    let (took, clean) = agent.terminate();
    assert!(clean, "the agent exits 0 on SIGTERM");
    assert!(
        took < Duration::from_secs(5),
        "the agent took {took:?} to stop"
    );
    let last_seq = status(&state)["last_seq"].as_u64().unwrap();

    // Nothing lost, nothing reused: seq 1..=K from the first process, then one fresh block.
    let stored = rows(&db, &machine_id).await;
    let seqs: Vec<u64> = stored.iter().map(|r| r.0 as u64).collect();
    assert_eq!(
        *seqs.last().unwrap(),
        last_seq,
        "the final heartbeat (sent on SIGTERM) arrived"
    );
    // The killed process may have spooled one more heartbeat after its status was read, so
    // split where the restarted process's fresh block begins: the only jump in the sequence.
    let jumps: Vec<usize> = seqs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] != w[0] + 1)
        .map(|(i, _)| i + 1)
        .collect();
    assert!(jumps.len() <= 1, "one fresh block at most: {seqs:?}");
    let (first_run, second_run) = seqs.split_at(jumps.first().copied().unwrap_or(seqs.len()));
    assert_eq!(
        first_run,
        (1..=first_run.len() as u64).collect::<Vec<_>>(),
        "every spooled heartbeat arrived"
    );
    assert!(
        *first_run.last().unwrap() >= before_kill,
        "nothing spooled before kill -9 was lost"
    );
    if let Some(first_new) = second_run.first() {
        assert!(
            *first_new > *first_run.last().unwrap(),
            "no seq reused after kill -9"
        );
        assert_eq!(*second_run.last().unwrap(), last_seq);
    }
    assert!(
        stored.windows(2).all(|w| w[0].1 <= w[1].1),
        "seq order is time order"
    );
    assert_eq!(seqs.iter().collect::<BTreeSet<_>>().len(), seqs.len());

    // The totals are exactly what live delivery of these heartbeats gives.
    let beats: Vec<ValidHeartbeat> = stored
        .iter()
        .map(|(seq, sent_at_ms, idle_ms, state)| ValidHeartbeat {
            seq: *seq as u64,
            sent_at_ms: *sent_at_ms,
            idle_ms: *idle_ms,
            session: match state & 3 {
                1 => Session::Active,
                2 => Session::Locked,
                3 => Session::None,
                _ => Session::Unknown,
            },
            cpu_usage_ratio: None,
            memory_usage_ratio: None,
            uptime_seconds: None,
            idle_source: None,
        })
        .collect();
    let expected = model_totals(&db, &machine_id, &beats).await;
    let got = app.totals(&machine_id).await;
    assert_eq!(
        (
            got.observed_ms,
            got.idle_ms,
            got.unknown_ms,
            got.energy_j,
            got.idle_energy_j,
            got.cost,
            got.co2_g
        ),
        (
            expected.observed_ms,
            expected.idle_ms,
            expected.unknown_ms,
            expected.energy_j,
            expected.idle_energy_j,
            expected.cost,
            expected.co2_g
        )
    );
    assert!(
        got.observed_ms > 5_000,
        "the outages were short enough to be observed time"
    );

    // The operator's view.
    let out = Command::new(agent_binary())
        .arg("status")
        .arg("--state-dir")
        .arg(&state)
        .env("GREENOPS_AGENT_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("enrolled as machine {machine_id}"))
            && text.contains("spool:           0 heartbeats"),
        "{text}"
    );
    assert!(
        !text.contains("gok_agent_"),
        "status never shows the credential"
    );

    app.stop().await;
    if let Some((child, _)) = x.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    std::fs::remove_dir_all(&state).ok();
}

/// The real agent against a real collector says what is wrong in one sentence that says what
/// to do: a refused token (no JSON, and once in a running agent, not on every retry), https
/// against the plain HTTP port, nothing listening; and the token from a file or stdin works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_messages_say_what_to_do() {
    if !agent_binary().exists() {
        missing(&format!(
            "the greenops-agent binary at {}",
            agent_binary().display()
        ));
        return;
    }
    let Some(app) = crate::helpers::spawn_app_on(crate::helpers::Db::Sqlite).await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("greenops-agent-msg-{}", uuid::Uuid::new_v4()));
    let agent = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(agent_binary())
            .args(args)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("GREENOPS_AGENT_CONFIG", "/dev/null")
            .env_remove("GREENOPS_ENROLLMENT_TOKEN")
            .env_remove("GREENOPS_SERVER_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = app.base.clone();
    let one_sentence = |err: &str| {
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("{\"error\""), "raw JSON: {err}");
    };

    let (ok, _, err) = agent(
        &[
            "enroll",
            "--server",
            &base,
            "--enrollment-token",
            "gok_enroll_nonsense",
        ],
        None,
    );
    assert!(!ok);
    one_sentence(&err);
    assert!(
        err.contains(&format!(
            "the collector at {base} refused the enrollment token"
        )) && err.contains("greenops enrollment-token create"),
        "{err}"
    );

    let https = base.replacen("http://", "https://", 1);
    let (ok, _, err) = agent(
        &[
            "enroll",
            "--server",
            &https,
            "--enrollment-token",
            "gok_enroll_x",
        ],
        None,
    );
    assert!(!ok);
    one_sentence(&err);
    assert!(
        err.contains(&format!("{https} does not answer HTTPS")) && err.contains(&base),
        "{err}"
    );

    let nobody = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    let (ok, _, err) = agent(
        &[
            "enroll",
            "--server",
            &nobody,
            "--enrollment-token",
            "gok_enroll_x",
        ],
        None,
    );
    assert!(!ok);
    one_sentence(&err);
    assert!(
        err.contains(&format!("is the collector running at {nobody}?")),
        "{err}"
    );

    // The token from standard input, then from a file.
    let token = app.enrollment_token("default", "agents").await;
    let (ok, out, err) = agent(
        &["enroll", "--server", &base, "--enrollment-token-file", "-"],
        Some(&format!("{token}\n")),
    );
    assert!(ok && out.starts_with("enrolled as machine "), "{err}");
    std::fs::write(dir.join("token"), format!("{token}\n")).unwrap();
    let file = dir.join("token").display().to_string();
    let (ok, out, err) = agent(
        &[
            "enroll",
            "--server",
            &base,
            "--enrollment-token-file",
            &file,
        ],
        None,
    );
    assert!(ok && out.starts_with("enrolled as machine "), "{err}");

    // A running agent with a refused token says so once, keeps spooling, and `status` shows
    // the sentence and the server it used.
    std::fs::remove_dir_all(dir.join("state")).ok();
    let child = Command::new(agent_binary())
        .args([
            "run",
            "--server",
            &base,
            "--enrollment-token",
            "gok_enroll_nonsense",
        ])
        .args(["--heartbeat-interval-seconds", "1"])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("GREENOPS_AGENT_CONFIG", "/dev/null")
        .env_remove("DISPLAY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = dir.join("state");
    wait_for(
        "a few spooled heartbeats",
        Duration::from_secs(20),
        async || status(&state)["spool_depth"].as_u64().unwrap_or(0) >= 4,
    )
    .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("refused the enrollment token").count(),
        1,
        "said more than once:\n{log}"
    );
    assert!(!log.contains("{\"error\""), "raw JSON in the log:\n{log}");
    assert!(
        log.contains("no idle source works here") && log.contains("x11-screensaver:"),
        "{log}"
    );
    let (_, shown, _) = agent(&["status"], None);
    assert!(
        shown.contains(&format!("server:          {base} (used by the last run"))
            && shown.contains("last error:      the collector at")
            && shown.contains("credential:      not enrolled"),
        "{shown}"
    );
    app.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
