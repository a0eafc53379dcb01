//! Migration from the original Python GreenOps: its agents through `/api/agents/*` (a small
//! client following their wire format), and `import-seed` from a real PostgreSQL database
//! holding the original schema (written here from its column list) with generated rows.

use greenops_collector::operations::Ctx;
use greenops_collector::operations::seed::{ImportOptions, ImportReport, import};
use greenops_collector::store::seed::SeedSource;
use greenops_protocol::{IdleSourceKind, Session, ValidHeartbeat};
use serde_json::{Value, json};
use sha2::Digest;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{
    Db, TestApp, fresh_database, fresh_database_of, model_totals, past, spawn_app_with,
    test_settings,
};

/// A client of the original agents' wire format.
struct SeedAgent<'a> {
    app: &'a TestApp,
}

impl SeedAgent<'_> {
    async fn register(&self, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/api/agents/register"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn heartbeat(&self, token: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/api/agents/heartbeat"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

fn registration(mac: &str) -> Value {
    json!({"mac_address": mac, "hostname": "pc-legacy-1", "os_type": "Linux", "os_version": "5.15"})
}

/// The older agents' body: percentages as constant 0.0 placeholders and a timestamp.
fn older(idle_seconds: f64, at: time::OffsetDateTime) -> Value {
    json!({"idle_seconds": idle_seconds, "cpu_usage": 0.0, "memory_usage": 0.0,
           "uptime_seconds": 3600, "timestamp": at.format(&Rfc3339).unwrap()})
}

/// The newer agents' body: no timestamp.
fn newer(idle_seconds: f64) -> Value {
    json!({"machine_id": 1, "hostname": "pc-legacy-1", "os_type": "Linux",
           "idle_seconds": idle_seconds, "cpu_usage": 12.5, "memory_usage": 40.0,
           "uptime_seconds": 3660})
}

async fn seed_app(
    db: Db,
    tune: impl FnOnce(&mut greenops_collector::settings::Settings),
) -> Option<TestApp> {
    let url = fresh_database_of(db).await?;
    let mut settings = test_settings(&url);
    settings.compat.seed_agents = true;
    tune(&mut settings);
    Some(spawn_app_with(settings).await)
}

/// `{"error": "<sentence>"}` with this status.
async fn seed_error(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    body["error"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| panic!("not the original error shape: {body}"))
        .to_string()
}

async fn off_by_default(app: TestApp) {
    for path in ["/api/agents/register", "/api/agents/heartbeat"] {
        let res = app
            .client
            .post(app.url(path))
            .json(&registration("aa:bb:cc:dd:ee:01"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let res = app
        .client
        .get(app.url("/api/agents/commands"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}

async fn original_agents_report_in(db: Db) {
    let Some(app) = seed_app(db, |_| {}).await else {
        return;
    };
    let agent = SeedAgent { app: &app };
    let res = agent.register(&registration("AA:BB:CC:DD:EE:01")).await;
    assert_eq!(res.status(), 200, "older agents check == 200");
    let first: Value = res.json().await.unwrap();
    let machine_id = first["machine_id"].as_str().unwrap().to_string();
    let token = first["token"].as_str().unwrap().to_string();
    assert!(first["message"].as_str().is_some_and(|m| !m.is_empty()));

    // Both body generations; the answer's command is null, always.
    // Three minutes apart from the newer agent's heartbeat (received now): an unobserved gap.
    let start = past(8);
    let mut beats = Vec::new();
    for (i, idle) in [10.0, 400.0].into_iter().enumerate() {
        let at = start + time::Duration::seconds(60 * i as i64);
        let res = agent.heartbeat(&token, &older(idle, at)).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let status = if idle >= 300.0 { "idle" } else { "online" };
        assert_eq!(
            body,
            json!({"status": "ok", "machine_status": status, "command": null})
        );
        beats.push(ValidHeartbeat {
            seq: i as u64 + 1,
            sent_at_ms: (at.unix_timestamp_nanos() / 1_000_000) as i64,
            idle_ms: Some((idle * 1000.0) as i64),
            session: Session::Unknown,
            cpu_usage_ratio: None,
            memory_usage_ratio: None,
            uptime_seconds: Some(3600),
            idle_source: Some(IdleSourceKind::SeedLegacy),
        });
    }
    let res = agent.heartbeat(&token, &newer(5.0)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["command"], Value::Null);
    let totals = app.totals(&machine_id).await;
    assert_eq!(totals.last_seq, 3, "the server numbers these heartbeats");
    assert_eq!(totals.heartbeat_rows, 3);
    // Accounted as native heartbeats are (the third is received now: a gap, unobserved).
    let expected = model_totals(&app.db_url, &machine_id, &beats).await;
    assert_eq!(totals.observed_ms, expected.observed_ms);
    assert_eq!(totals.idle_ms, expected.idle_ms);
    assert_eq!(totals.energy_j, expected.energy_j);
    assert_eq!(totals.idle_energy_j, expected.idle_energy_j);

    let metrics = app.metrics().await;
    let info = metrics
        .lines()
        .find(|l| l.starts_with("greenops_machine_info{") && l.contains(&machine_id))
        .unwrap();
    assert!(info.contains("agent_version=\"seed-legacy\""), "{info}");
    assert!(info.contains("idle_source=\"seed-legacy\""), "{info}");
    assert!(info.contains("os=\"linux\""), "{info}");
    // 0.0 from the older agent is no CPU reading; the newer agent's 12.5 % is.
    assert!(
        crate::helpers::metric(&metrics, "greenops_machine_cpu_usage_ratio", &machine_id)
            == Some(0.125)
    );

    // Bad requests, in the original error shape.
    let e = seed_error(
        agent
            .register(&json!({"hostname": "x", "os_type": "Linux"}))
            .await,
        400,
    )
    .await;
    assert!(e.contains("mac_address"), "{e}");
    let res = app
        .client
        .post(app.url("/api/agents/register"))
        .body("not json")
        .send()
        .await
        .unwrap();
    seed_error(res, 400).await;
    seed_error(agent.heartbeat("nope", &newer(1.0)).await, 401).await;
    let res = app
        .client
        .post(app.url("/api/agents/heartbeat"))
        .json(&newer(1.0))
        .send()
        .await
        .unwrap();
    seed_error(res, 401).await;
    let e = seed_error(agent.heartbeat(&token, &json!({"cpu_usage": 3})).await, 400).await;
    assert!(e.contains("idle_seconds"), "{e}");
    let e = seed_error(
        agent
            .heartbeat(&token, &json!({"idle_seconds": 1, "cpu_usage": 180}))
            .await,
        422,
    )
    .await;
    assert!(e.contains("cpu_usage"), "{e}");
    seed_error(
        agent
            .heartbeat(&token, &json!({"idle_seconds": "soon"}))
            .await,
        422,
    )
    .await;
    let ahead = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    seed_error(agent.heartbeat(&token, &older(1.0, ahead)).await, 422).await;

    let res = app
        .client
        .get(app.url("/api/agents/commands"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"commands": []}));

    // Re-registering the same MAC (any spelling) rotates the credential on the same machine.
    let res = agent.register(&registration("aa-bb-cc-dd-ee-01")).await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["machine_id"], first["machine_id"]);
    let rotated = second["token"].as_str().unwrap();
    assert_ne!(rotated, token);
    seed_error(agent.heartbeat(&token, &newer(1.0)).await, 401).await;
    assert_eq!(agent.heartbeat(rotated, &newer(1.0)).await.status(), 200);

    // A retired machine cannot come back by registering.
    let store = greenops_collector::open_store(&test_settings(&app.db_url))
        .await
        .unwrap();
    assert!(store.retire_machine(&machine_id, 1).await.unwrap());
    store.close().await;
    seed_error(
        agent.register(&registration("aa:bb:cc:dd:ee:01")).await,
        403,
    )
    .await;
    app.stop().await;
}

async fn registrations_are_rate_limited(db: Db) {
    let Some(app) = seed_app(db, |s| s.compat.register_max_per_ip = 2).await else {
        return;
    };
    let agent = SeedAgent { app: &app };
    for i in 0..2 {
        let res = agent
            .register(&registration(&format!("aa:bb:cc:dd:ee:1{i}")))
            .await;
        assert_eq!(res.status(), 200);
    }
    let res = agent.register(&registration("aa:bb:cc:dd:ee:19")).await;
    assert!(res.headers().contains_key("retry-after"));
    seed_error(res, 429).await;
    app.stop().await;
}

on_both_backends!(app: off_by_default);
on_both_backends!(original_agents_report_in, registrations_are_rate_limited);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_compat_site_stops_the_start_with_its_name() {
    let Some(url) = fresh_database_of(Db::Sqlite).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.compat.seed_agents = true;
    settings.compat.site = "head-office".into();
    let e = greenops_collector::App::build(settings).await.unwrap_err();
    let message = format!("{e:#}");
    assert!(
        message.contains("compat.site") && message.contains("head-office"),
        "{message}"
    );
}

// ---- import-seed -----------------------------------------------------------------------

/// The original schema, from the column list of its migrations.
const SEED_SCHEMA: &str = "
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(255) UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    role VARCHAR(50) NOT NULL DEFAULT 'admin',
    created_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE TABLE machines (
    id SERIAL PRIMARY KEY,
    mac_address VARCHAR(17) UNIQUE NOT NULL,
    hostname VARCHAR(255) NOT NULL,
    os_type VARCHAR(50),
    os_version VARCHAR(100),
    first_seen TIMESTAMP NOT NULL DEFAULT NOW(),
    last_seen TIMESTAMP NOT NULL DEFAULT NOW(),
    total_idle_seconds BIGINT NOT NULL DEFAULT 0,
    total_active_seconds BIGINT NOT NULL DEFAULT 0,
    energy_wasted_kwh DECIMAL(10,3) NOT NULL DEFAULT 0,
    status VARCHAR(20) NOT NULL DEFAULT 'offline'
);
CREATE TABLE heartbeats (
    id BIGSERIAL PRIMARY KEY,
    machine_id INTEGER NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    timestamp TIMESTAMP NOT NULL DEFAULT NOW(),
    idle_seconds INTEGER NOT NULL,
    cpu_usage DECIMAL(5,2),
    memory_usage DECIMAL(5,2)
);
CREATE TABLE agent_tokens (
    id SERIAL PRIMARY KEY,
    machine_id INTEGER NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    token_hash VARCHAR(64) UNIQUE NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);";

/// An Argon2id hash with the original's parameters (m=65536, t=2, p=4).
fn original_hash(password: &str) -> String {
    use argon2::PasswordHasher;
    let params = argon2::Params::new(65536, 2, 4, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes())
        .unwrap()
        .to_string()
}

fn sha256_hex(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// What was generated into the original database.
struct Generated {
    /// Per original machine id: its MAC and its valid heartbeats as GreenOps reads them
    /// (`seq` = position in the machine's history, invalid rows included).
    machines: Vec<(i32, String, Vec<ValidHeartbeat>)>,
    token: String,
}

/// A PostgreSQL database holding the original schema and generated rows.
async fn original_database() -> Option<(String, Generated)> {
    let url = fresh_database().await?;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(SEED_SCHEMA))
        .execute(&pool)
        .await
        .unwrap();
    for (name, password, role) in [
        ("admin", "admin123", "admin"),
        ("alice", "alice's original password", "viewer"),
        ("mallory", "whatever", "superuser"),
    ] {
        sqlx::query("INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(original_hash(password))
            .bind(role)
            .execute(&pool)
            .await
            .unwrap();
    }
    let start_ms = (past(240).unix_timestamp()) * 1000;
    let mut machines = Vec::new();
    for (n, mac, count) in [
        (1, "aa:bb:cc:00:00:01", 150),
        (2, "AA:BB:CC:00:00:02", 40),
        (3, "bad\tid", 5),
    ] {
        let id: i32 = sqlx::query_scalar(
            "INSERT INTO machines (mac_address, hostname, os_type, os_version,
                 total_idle_seconds, total_active_seconds, energy_wasted_kwh)
             VALUES ($1, $2, 'Windows', '10', 99999, 5, 1.234) RETURNING id",
        )
        .bind(mac)
        .bind(format!("legacy-{n}"))
        .fetch_one(&pool)
        .await
        .unwrap();
        let mut beats = Vec::new();
        for i in 0..count {
            // A minute apart, with a 20-minute outage (an unobserved gap) in the middle.
            let at_ms = start_ms + i * 60_000 + if i > count / 2 { 1_200_000 } else { 0 };
            let idle = (i * 97 % 900) as i32;
            // The older agents' constant 0.0, some real readings, and one impossible value.
            let cpu: f64 = match i % 10 {
                0 => 0.0,
                7 if n == 1 && i == 17 => 150.0,
                _ => 12.5,
            };
            sqlx::query(
                "INSERT INTO heartbeats (machine_id, timestamp, idle_seconds, cpu_usage, memory_usage)
                 VALUES ($1, to_timestamp($2::float8 / 1000) AT TIME ZONE 'UTC', $3, $4::numeric, 0)",
            )
            .bind(id)
            .bind(at_ms as f64)
            .bind(idle)
            .bind(cpu)
            .execute(&pool)
            .await
            .unwrap();
            if cpu <= 100.0 {
                beats.push(ValidHeartbeat {
                    seq: i as u64 + 1,
                    sent_at_ms: at_ms,
                    idle_ms: Some(i64::from(idle) * 1000),
                    session: Session::Unknown,
                    cpu_usage_ratio: None,
                    memory_usage_ratio: None,
                    uptime_seconds: None,
                    idle_source: Some(IdleSourceKind::SeedLegacy),
                });
            }
        }
        machines.push((id, mac.to_string(), beats));
    }
    let token = "3f9c2b1e-5d4a-4c8b-9e7f-0a1b2c3d4e5f".to_string();
    for (machine, hash, revoked) in [
        (machines[0].0, sha256_hex(&token), false),
        (machines[0].0, sha256_hex("an old one"), true),
        (machines[1].0, "not hex".to_string(), false),
    ] {
        sqlx::query(
            "INSERT INTO agent_tokens (machine_id, token_hash, revoked) VALUES ($1, $2, $3)",
        )
        .bind(machine)
        .bind(hash)
        .bind(revoked)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    Some((url, Generated { machines, token }))
}

async fn run_import(target: &str, source: &str, dry_run: bool) -> ImportReport {
    let store = greenops_collector::open_migrated_store(&test_settings(target))
        .await
        .unwrap();
    let source = SeedSource::open(source).await.unwrap();
    let passwords = greenops_collector::auth::PasswordPool::new(1, 0);
    let options = ImportOptions {
        site: "default".into(),
        department: "legacy".into(),
        dry_run,
        max_clock_skew_ms: 300_000,
    };
    let report = import(
        Ctx::cli(store.as_ref(), &passwords),
        &source,
        &options,
        &|_| {},
    )
    .await
    .unwrap();
    source.close().await;
    store.close().await;
    report
}

async fn machine_of(target: &str, mac: &str) -> String {
    let key = greenops_protocol::seed_machine_key(mac).unwrap().0;
    let store = greenops_collector::open_store(&test_settings(target))
        .await
        .unwrap();
    let id = store.machine_id_by_key(&key).await.unwrap().unwrap();
    store.close().await;
    id
}

async fn the_original_database_is_imported(db: Db) {
    let Some((source, generated)) = original_database().await else {
        return;
    };
    let Some(target) = fresh_database_of(db).await else {
        return;
    };
    let valid: u64 = generated
        .machines
        .iter()
        .take(2)
        .map(|m| m.2.len() as u64)
        .sum();

    let dry = run_import(&target, &source, true).await;
    assert!(dry.dry_run);
    assert_eq!((dry.machines_imported, dry.heartbeats_imported), (2, valid));
    assert_eq!(dry.users_disabled, vec!["admin".to_string()]);

    let report = run_import(&target, &source, false).await;
    let text = report.to_string();
    assert_eq!(report.machines_imported, 2, "{text}");
    assert_eq!(report.heartbeats_in_source, 150 + 40 + 5);
    assert_eq!(report.heartbeats_imported, valid, "{text}");
    assert_eq!(report.heartbeats_skipped(), 1 + 5, "{text}");
    assert_eq!(report.tokens_imported, 1, "{text}");
    assert_eq!(
        (report.users_imported, report.users_disabled.len()),
        (2, 1),
        "{text}"
    );
    for reason in [
        "mac_address",
        "revoked in the original system",
        "not a SHA-256",
        "superuser",
        "cpu_usage",
        "as reported by the original system",
        "admin123",
    ] {
        assert!(
            text.contains(reason),
            "the report does not say {reason:?}:\n{text}"
        );
    }
    assert_eq!(report.comparisons.len(), 2);
    assert!(
        report
            .comparisons
            .iter()
            .all(|c| c.original_idle_seconds == Some(99999.0))
    );

    // History accounted with GreenOps' own rules, exactly as the model accounts those rows.
    let mut ids = Vec::new();
    for (_, mac, beats) in generated.machines.iter().take(2) {
        let id = machine_of(&target, mac).await;
        let expected = model_totals(&target, &id, beats).await;
        let got = crate::helpers::totals(&target, &id).await;
        assert!(expected.idle_ms > 0 && expected.gap_ms > 0);
        assert_eq!(got.observed_ms, expected.observed_ms);
        assert_eq!(got.idle_ms, expected.idle_ms);
        assert_eq!(got.energy_j, expected.energy_j);
        assert_eq!(got.idle_energy_j, expected.idle_energy_j);
        assert_eq!(got.co2_g, expected.co2_g);
        assert_eq!(got.heartbeat_rows, beats.len() as i64);
        let comparison = report
            .comparisons
            .iter()
            .find(|c| c.machine_id == id)
            .unwrap();
        assert_eq!(comparison.idle_seconds, expected.idle_ms as f64 / 1000.0);
        ids.push((id, got));
    }

    // A re-run adds nothing.
    let again = run_import(&target, &source, false).await;
    assert_eq!((again.machines_imported, again.machines_already), (0, 2));
    assert_eq!(
        (
            again.heartbeats_imported,
            again.users_imported,
            again.users_already
        ),
        (0, 0, 2)
    );
    for (id, before) in &ids {
        assert_eq!(&crate::helpers::totals(&target, id).await, before);
    }

    // The admin123 account is disabled; others sign in with their original password.
    let mut settings = test_settings(&target);
    settings.compat.seed_agents = true;
    let app = spawn_app_with(settings).await;
    let store = greenops_collector::open_store(&test_settings(&target))
        .await
        .unwrap();
    assert!(store.user_by_name("admin").await.unwrap().unwrap().disabled);
    assert!(!store.user_by_name("alice").await.unwrap().unwrap().disabled);
    store.close().await;
    for (name, password, status) in [
        ("alice", "alice's original password", 200),
        ("admin", "admin123", 401),
    ] {
        let res = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{name}");
    }

    // A running agent keeps its token: its next heartbeat follows the imported history.
    let agent = SeedAgent { app: &app };
    let (first_id, first) = &ids[0];
    let res = agent.heartbeat(&generated.token, &newer(3.0)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        crate::helpers::totals(&target, first_id).await.last_seq,
        first.last_seq + 1
    );
    // An agent that registers again lands on its imported machine.
    let res = agent
        .register(&registration(&generated.machines[1].1))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["machine_id"].as_str(), Some(ids[1].0.as_str()));
    app.stop().await;
}

on_both_backends!(the_original_database_is_imported);

/// A database that is not the original's: a clear message and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecognised_schema_fails_with_a_message() {
    let Some(source) = fresh_database().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&source).await.unwrap();
    sqlx::raw_sql("CREATE TABLE machines (id SERIAL PRIMARY KEY, hostname TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let Some(target) = fresh_database_of(Db::Sqlite).await else {
        return;
    };
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_greenops"))
            .args(["import-seed", "--from", &source, "--database-url", &target])
            .env_remove("GREENOPS_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not have the schema of the original GreenOps")
            && stderr.contains("table machines has no column mac_address")
            && stderr.contains("no table heartbeats"),
        "{stderr}"
    );
}

/// `--from` that is no PostgreSQL URL, or a database that does not answer: said plainly, with
/// the URL's password redacted and what to check, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_unreachable_source_is_said_plainly() {
    let Some(target) = fresh_database_of(Db::Sqlite).await else {
        return;
    };
    for (from, expected) in [
        ("sqlite://./original.db", "--from must be a postgres:// URL"),
        (
            "postgres://seed:s3cret@127.0.0.1:1/greenops",
            "cannot connect to the original database postgres://seed:***@127.0.0.1:1/greenops",
        ),
    ] {
        let target = target.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_greenops"))
                .args(["import-seed", "--from", from, "--database-url", &target])
                .env_remove("GREENOPS_CONFIG")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}
