//! Test harness: a collector on a fresh PostgreSQL database, spawned in-process on port 0
//! and driven over real HTTP.

use std::str::FromStr;
use std::time::{Duration, Instant};

use greenops_collector::App;
use greenops_collector::secrets::{ENROLLMENT_TOKEN_PREFIX, TokenHash, generate_token};
use greenops_collector::settings::Settings;
use greenops_collector::store::NewEnrollmentToken;
use greenops_protocol::EnrollResponse;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::postgres;

/// A running collector.
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    pub db_url: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings every test starts from: port 0, no credential cache (revocation is immediate).
pub fn test_settings(db_url: &str) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Settings::default()
    };
    s.database.url = db_url.to_string();
    s.database.max_connections = 8;
    s.ingest.credential_cache_seconds = 0;
    s
}

/// The storage backends every backend-neutral test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Sqlite,
}

/// A fresh PostgreSQL database on the shared test server; `None` (after reporting) when
/// unavailable.
pub async fn fresh_database() -> Option<String> {
    Some(postgres::shared()?.fresh_database().await)
}

/// A fresh, empty database of either backend.
pub async fn fresh_database_of(db: Db) -> Option<String> {
    match db {
        Db::Postgres => fresh_database().await,
        Db::Sqlite => {
            let dir = std::env::temp_dir()
                .join(format!("greenops-sqlite-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            Some(format!("sqlite://{}/greenops.db", dir.display()))
        }
    }
}

/// A collector on a fresh database of the given backend.
pub async fn spawn_app_on(db: Db) -> Option<TestApp> {
    let url = fresh_database_of(db).await?;
    Some(spawn_app_with(test_settings(&url)).await)
}

/// Runs `test` with a collector on a fresh database of `db`, or skips it (as
/// [`fresh_database_of`] reports: `SKIPPED`, or a failure under `CI=true`) when there is none.
pub async fn with_app(db: Db, test: impl AsyncFnOnce(TestApp)) {
    if let Some(app) = spawn_app_on(db).await {
        test(app).await;
    }
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let db_url = settings.database.url.clone();
    let app = App::build(settings).await.expect("building the app");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        db_url,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// A heartbeat body.
pub fn hb(seq: u64, sent_at: OffsetDateTime, idle_seconds: Option<f64>) -> Value {
    json!({
        "seq": seq,
        "sent_at": sent_at.format(&Rfc3339).unwrap(),
        "idle_seconds": idle_seconds,
        "session": "active",
        "cpu_usage_ratio": 0.07,
        "memory_usage_ratio": 0.41,
        "uptime_seconds": 86400,
    })
}

/// A time safely in the past (so that a run of minutes never crosses the skew horizon),
/// rounded to the second.
pub fn past(minutes_ago: i64) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    now - time::Duration::minutes(minutes_ago)
}

/// Exact totals of one machine, read straight from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub last_seq: i64,
    pub observed_ms: i64,
    pub idle_ms: i64,
    pub unknown_ms: i64,
    pub energy_j: Decimal,
    pub idle_energy_j: Decimal,
    pub co2_g: Decimal,
    pub idle_co2_g: Decimal,
    pub cost: Decimal,
    pub idle_cost: Decimal,
    pub heartbeat_rows: i64,
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

impl TestApp {
    /// Stops the collector gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("app task panicked").expect("app failed");
        }
    }

    /// Creates an operator (password "a long password!") and answers a session token.
    pub async fn operator(&self, name: &str, role: greenops_collector::store::Role) -> String {
        let store = greenops_collector::open_store(&test_settings(&self.db_url))
            .await
            .unwrap();
        let hash = greenops_collector::auth::hash_password("a long password!").unwrap();
        store.create_user(name, &hash, role, 0).await.unwrap();
        store.close().await;
        let res = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": name, "password": "a long password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An operator request with a bearer token and an optional JSON body.
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates an enrollment token the way `greenops enrollment-token create` does.
    pub async fn enrollment_token(&self, site: &str, department: &str) -> String {
        let settings = test_settings(&self.db_url);
        let store = greenops_collector::open_store(&settings).await.unwrap();
        let token = generate_token(ENROLLMENT_TOKEN_PREFIX);
        store
            .create_enrollment_token(&NewEnrollmentToken {
                token_hash: TokenHash::of(&token),
                site: site.into(),
                department: department.into(),
                expires_at_ms: None,
                max_uses: None,
                created_at_ms: greenops_collector::clock::now_ms(),
            })
            .await
            .unwrap();
        store.close().await;
        token
    }

    pub async fn post_enroll(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/agents/enroll"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Enrols a machine with `key` and returns its credential.
    pub async fn enroll(&self, token: &str, key: &str) -> EnrollResponse {
        let res = self.post_enroll(&enroll_body(token, key)).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    /// Enrols a new machine with a fresh token and key.
    pub async fn new_machine(&self) -> EnrollResponse {
        let token = self.enrollment_token("default", "").await;
        self.enroll(&token, &uuid::Uuid::new_v4().simple().to_string())
            .await
    }

    pub async fn post_heartbeats(&self, agent_token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/heartbeats"))
            .bearer_auth(agent_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts and expects 200, returning the answer.
    pub async fn send(&self, agent_token: &str, body: &Value) -> Value {
        let res = self.post_heartbeats(agent_token, body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    pub async fn metrics(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }

    pub async fn totals(&self, machine_id: &str) -> Totals {
        totals(&self.db_url, machine_id).await
    }
}

pub fn enroll_body(token: &str, key: &str) -> Value {
    json!({
        "enrollment_token": token,
        "machine_key": key,
        "hostname": "pc-042.example.org",
        "os": "linux",
        "os_version": "Debian 12",
        "agent_version": "0.1.0",
    })
}

/// Exact totals of a machine, straight from the database.
pub async fn totals(db_url: &str, machine_id: &str) -> Totals {
    if db_url.starts_with("sqlite:") {
        return sqlite_totals(db_url, machine_id).await;
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
    let m = sqlx::query(
        "SELECT last_seq, observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, co2_g,
                idle_co2_g,
                COALESCE((SELECT SUM(cost) FROM machine_cost_totals WHERE machine_id = $1), 0) AS cost,
                COALESCE((SELECT SUM(idle_cost) FROM machine_cost_totals WHERE machine_id = $1), 0) AS idle_cost,
                (SELECT COUNT(*) FROM heartbeats WHERE machine_id = $1) AS rows
         FROM machines WHERE id = $1",
    )
    .bind(machine_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let t = Totals {
        last_seq: m.get("last_seq"),
        observed_ms: m.get("observed_ms"),
        idle_ms: m.get("idle_ms"),
        unknown_ms: m.get("unknown_ms"),
        energy_j: m.get("energy_j"),
        idle_energy_j: m.get("idle_energy_j"),
        co2_g: m.get("co2_g"),
        idle_co2_g: m.get("idle_co2_g"),
        cost: m.get("cost"),
        idle_cost: m.get("idle_cost"),
        heartbeat_rows: m.get("rows"),
    };
    // The running totals must always equal the sum of the stored increments, exactly: raw
    // heartbeats plus the hourly and daily rollups of older ones.
    let sums = sqlx::query(
        "SELECT COALESCE(SUM(observed_ms), 0)::BIGINT AS observed_ms,
                COALESCE(SUM(energy_j), 0) AS energy_j, COALESCE(SUM(cost), 0) AS cost,
                COALESCE(SUM(idle_co2_g), 0) AS idle_co2_g
         FROM (SELECT machine_id, observed_ms, energy_j, cost, idle_co2_g FROM heartbeats
               UNION ALL SELECT machine_id, observed_ms, energy_j, cost, idle_co2_g FROM heartbeat_hours
               UNION ALL SELECT machine_id, observed_ms, energy_j, cost, idle_co2_g FROM heartbeat_days) h
         WHERE machine_id = $1",
    )
    .bind(machine_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(t.observed_ms, sums.get::<i64, _>("observed_ms"));
    assert_eq!(t.energy_j, sums.get::<Decimal, _>("energy_j"));
    assert_eq!(t.cost, sums.get::<Decimal, _>("cost"));
    assert_eq!(t.idle_co2_g, sums.get::<Decimal, _>("idle_co2_g"));
    conn.close().await.ok();
    t
}

/// The value of the series `name{…machine_id="id"…}` in an exposition.
pub fn metric(text: &str, name: &str, machine_id: &str) -> Option<f64> {
    let needle = format!("machine_id=\"{machine_id}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// An error body's `code` and the field it names.
pub async fn error_of(res: reqwest::Response) -> (u16, String, Option<String>) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("error bodies are JSON");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
    let field = body["error"]["fields"]
        .as_object()
        .and_then(|f| f.keys().next().cloned());
    (status, code, field)
}

/// The SQLite version of [`totals`]: decimals are TEXT there, so sums are taken in Rust.
async fn sqlite_totals(db_url: &str, machine_id: &str) -> Totals {
    use sqlx::Connection;
    use sqlx::types::Text;
    let path = greenops_collector::store::sqlite_path(db_url);
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let m = sqlx::query(
        "SELECT last_seq, observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, co2_g,
                idle_co2_g FROM machines WHERE id = ?1",
    )
    .bind(machine_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let d = |row: &sqlx::sqlite::SqliteRow, c: &str| row.get::<Text<Decimal>, _>(c).0;
    let costs =
        sqlx::query("SELECT cost, idle_cost FROM machine_cost_totals WHERE machine_id = ?1")
            .bind(machine_id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let raw_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM heartbeats WHERE machine_id = ?1")
        .bind(machine_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    // Raw heartbeats plus the hourly and daily rollups of older ones.
    let rows = sqlx::query(
        "SELECT observed_ms, energy_j, cost, idle_co2_g FROM heartbeats WHERE machine_id = ?1
         UNION ALL SELECT observed_ms, energy_j, cost, idle_co2_g FROM heartbeat_hours WHERE machine_id = ?1
         UNION ALL SELECT observed_ms, energy_j, cost, idle_co2_g FROM heartbeat_days WHERE machine_id = ?1",
    )
    .bind(machine_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let t = Totals {
        last_seq: m.get("last_seq"),
        observed_ms: m.get("observed_ms"),
        idle_ms: m.get("idle_ms"),
        unknown_ms: m.get("unknown_ms"),
        energy_j: d(&m, "energy_j"),
        idle_energy_j: d(&m, "idle_energy_j"),
        co2_g: d(&m, "co2_g"),
        idle_co2_g: d(&m, "idle_co2_g"),
        cost: costs.iter().map(|r| d(r, "cost")).sum(),
        idle_cost: costs.iter().map(|r| d(r, "idle_cost")).sum(),
        heartbeat_rows: raw_rows,
    };
    assert_eq!(
        t.observed_ms,
        rows.iter()
            .map(|r| r.get::<i64, _>("observed_ms"))
            .sum::<i64>()
    );
    assert_eq!(
        t.energy_j,
        rows.iter().map(|r| d(r, "energy_j")).sum::<Decimal>()
    );
    assert_eq!(t.cost, rows.iter().map(|r| d(r, "cost")).sum::<Decimal>());
    assert_eq!(
        t.idle_co2_g,
        rows.iter().map(|r| d(r, "idle_co2_g")).sum::<Decimal>()
    );
    conn.close().await.ok();
    t
}

/// How often [`wait_until`] and [`poll_until`] look again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; panics with "timed out after … waiting for `what`" when
/// it has not within `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, condition: impl AsyncFnMut() -> bool) {
    assert!(
        wait_until(timeout, condition).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `condition` until it holds: whether it did within `timeout` (for callers that say
/// more when it did not, or give up quietly).
pub async fn wait_until(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for code outside the runtime (`Drop`, child processes, files).
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// [`TestApp::call`] as a free function (the admin API tests read better with it).
pub async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    app.call(token, method, path, body).await
}

/// The JSON body of an answer that must have `status`.
pub async fn ok_json(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// How many entries the audit log has.
pub async fn audit_len(app: &TestApp) -> usize {
    let store = greenops_collector::open_store(&test_settings(&app.db_url))
        .await
        .unwrap();
    let n = store.audit_log(1000).await.unwrap().len();
    store.close().await;
    n
}

/// Enrols a machine with a token created through the API and answers (id, agent token).
pub async fn enrol(
    app: &TestApp,
    admin: &str,
    site: &str,
    department: &str,
    key: &str,
) -> (String, String) {
    let created = ok_json(
        call(
            app,
            admin,
            Method::POST,
            "/api/v1/enrollment-tokens",
            Some(json!({"site": site, "department": department})),
        )
        .await,
        201,
    )
    .await;
    let res = app
        .post_enroll(&enroll_body(
            created["token"].as_str().unwrap(),
            &format!("{key}-0123456789abcdef"),
        ))
        .await;
    let body = ok_json(res, 201).await;
    (
        body["machine_id"].as_str().unwrap().to_string(),
        body["agent_token"].as_str().unwrap().to_string(),
    )
}

/// Every state-changing route, with a body that would be valid for an admin.
pub fn writes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "zed", "password": "a long password!", "role": "viewer"})),
        ),
        (
            Method::PATCH,
            "/api/v1/users/admin",
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, "/api/v1/users/viewer", None),
        (
            Method::POST,
            "/api/v1/sites",
            Some(
                json!({"name": "x", "currency": "EUR", "price_per_kwh": "0.3", "carbon_intensity_g_per_kwh": 50}),
            ),
        ),
        (
            Method::PATCH,
            "/api/v1/sites/1",
            Some(json!({"price_per_kwh": "0.2"})),
        ),
        (Method::DELETE, "/api/v1/sites/1", None),
        (
            Method::POST,
            "/api/v1/power-profiles",
            Some(json!({"name": "laptop", "idle_watts": 10, "active_watts": 30})),
        ),
        (
            Method::PATCH,
            "/api/v1/power-profiles/1",
            Some(json!({"idle_watts": 60})),
        ),
        (Method::DELETE, "/api/v1/power-profiles/1", None),
        (
            Method::PATCH,
            "/api/v1/machines/nope",
            Some(json!({"department": "x"})),
        ),
        (Method::DELETE, "/api/v1/machines/nope", None),
        (Method::POST, "/api/v1/enrollment-tokens", Some(json!({}))),
        (Method::DELETE, "/api/v1/enrollment-tokens/1", None),
        (
            Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "ci"})),
        ),
        (Method::DELETE, "/api/v1/api-tokens/1", None),
        (
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"idle_threshold_seconds": 600})),
        ),
    ]
}
