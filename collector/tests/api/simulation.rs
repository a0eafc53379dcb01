//! The fleet simulator over real HTTP, `serve --demo`, and `migrate-data` from SQLite to
//! PostgreSQL with identical metrics afterwards.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use greenops_collector::simulate::{self, Stats};

use crate::helpers::{
    Db, TestApp, fresh_database, fresh_database_of, spawn_app_with, test_settings, wait_until,
};

async fn simulated_fleet_reaches_the_collector(app: TestApp) {
    let token = app.enrollment_token("default", "sim").await;
    let stats = Arc::new(Stats::default());
    let options = simulate::Options {
        url: app.base.clone(),
        enrollment_token: token,
        machines: 12,
        // Two seconds at 3600x replay the two hours before now.
        speed: 3600.0,
        duration: Some(Duration::from_secs(2)),
        ..simulate::Options::default()
    };
    simulate::run(options, stats.clone(), std::future::pending())
        .await
        .unwrap();
    let sent = stats.sent.load(Ordering::Relaxed);
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    assert_eq!(
        stats.accepted.load(Ordering::Relaxed),
        sent,
        "every heartbeat accepted"
    );
    assert!(sent > 12, "sent {sent}");
    let text = app.metrics().await;
    assert_eq!(text.matches("greenops_machine_info{").count(), 12);
    assert!(text.contains("department=\"sim\""));
    let accepted_metric = text
        .lines()
        .find(|l| l.starts_with("greenops_heartbeats_total{result=\"accepted\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert_eq!(accepted_metric as u64, sent);
    app.stop().await;
}

on_both_backends!(app: simulated_fleet_reaches_the_collector);

/// `greenops serve --demo` in an empty directory: SQLite, simulated machines, idle energy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_idle_energy_within_a_minute() {
    let dir = std::env::temp_dir().join(format!("greenops-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenops"))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .env_remove("GREENOPS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut idle_joules = 0.0;
    let mut machines = 0;
    wait_until(Duration::from_secs(60), async || {
        let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        else {
            return false;
        };
        let text = res.text().await.unwrap();
        machines = text.matches("greenops_machine_info{").count();
        idle_joules = text
            .lines()
            .filter(|l| l.starts_with("greenops_machine_idle_energy_joules_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        machines == 25 && idle_joules > 0.0
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(machines, 25);
    assert!(
        idle_joules > 0.0,
        "no idle energy after {:?}",
        started.elapsed()
    );
    assert!(
        dir.join("data/demo.db").exists(),
        "the demo uses its own SQLite file"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_data_moves_an_installation_with_identical_metrics() {
    let Some(target) = fresh_database().await else {
        return;
    };
    let source = fresh_database_of(Db::Sqlite).await.unwrap();
    let app = spawn_app_with(test_settings(&source)).await;
    let token = app.enrollment_token("default", "sim").await;
    let options = simulate::Options {
        url: app.base.clone(),
        enrollment_token: token,
        machines: 8,
        speed: 3600.0,
        duration: Some(Duration::from_secs(2)),
        ..simulate::Options::default()
    };
    simulate::run(options, Arc::new(Stats::default()), std::future::pending())
        .await
        .unwrap();
    let counters = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| {
                l.starts_with("greenops_machine_") && !l.starts_with("greenops_machine_status")
            })
            .map(String::from)
            .collect()
    };
    // A machine with history old enough to be rolled up: the rollups move too.
    let old = app.new_machine().await;
    let long_ago = time::OffsetDateTime::now_utc() - Duration::from_secs(45 * 86_400);
    for i in 0..4u64 {
        app.send(
            &old.agent_token,
            &crate::helpers::hb(
                i + 1,
                long_ago + Duration::from_secs(60 * i),
                Some(400.0 + 60.0 * i as f64),
            ),
        )
        .await;
    }
    let rolled = Command::new(env!("CARGO_BIN_EXE_greenops"))
        .args(["retention", "--database-url", &source])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&rolled.stdout).starts_with("deleted 4 raw heartbeats"),
        "{}",
        String::from_utf8_lossy(&rolled.stdout)
    );
    let before = counters(app.metrics().await);
    assert!(before.len() > 9 * 9, "{} series", before.len());
    // Operators, their sessions and API tokens move too.
    let session = app
        .operator("alice", greenops_collector::store::Role::Admin)
        .await;
    let api_token: serde_json::Value = app
        .call(
            &session,
            reqwest::Method::POST,
            "/api/v1/api-tokens",
            Some(serde_json::json!({"name": "sync"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let api_token = api_token["token"].as_str().unwrap().to_string();
    app.stop().await;

    for run in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_greenops"))
            .args(["migrate-data", "--from", &source, "--to", &target])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {run}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("verified: 9 machines"), "{stdout}");
    }
    let moved = spawn_app_with(test_settings(&target)).await;
    assert_eq!(counters(moved.metrics().await), before);
    for token in [&session, &api_token] {
        let me = moved
            .call(token, reqwest::Method::GET, "/api/v1/auth/me", None)
            .await;
        assert_eq!(me.status(), 200);
    }
    let audit = moved
        .call(&session, reqwest::Method::GET, "/api/v1/audit", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("api_token_created"), "{audit}");
    moved.stop().await;

    // Another installation's database is refused, not merged.
    let other = fresh_database_of(Db::Sqlite).await.unwrap();
    let app = spawn_app_with(test_settings(&other)).await;
    app.new_machine().await;
    app.stop().await;
    let out = Command::new(env!("CARGO_BIN_EXE_greenops"))
        .args(["migrate-data", "--from", &other, "--to", &target])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the source"));
}
