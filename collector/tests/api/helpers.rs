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

/// Exact totals of a machine, straight from the database: its running totals (summed over
/// the attributions it was incurred in), checked against the sum of its stored hourly and daily
/// usage rows, which they must always equal to the last digit.
pub async fn totals(db_url: &str, machine_id: &str) -> Totals {
    // Decimals are read as text on both backends (SQLite stores them as TEXT) and summed here.
    const SUMS: &str = "observed_ms, idle_ms, unknown_ms, CAST(energy_j AS TEXT),
        CAST(idle_energy_j AS TEXT), CAST(co2_g AS TEXT), CAST(idle_co2_g AS TEXT),
        CAST(cost AS TEXT), CAST(idle_cost AS TEXT)";
    let totals_sql = format!("SELECT {SUMS} FROM machine_totals WHERE machine_id = $1");
    let usage_sql = format!(
        "SELECT {SUMS} FROM usage_hours WHERE machine = (SELECT num FROM machines WHERE id = $1)
         UNION ALL
         SELECT {SUMS} FROM usage_days WHERE machine = (SELECT num FROM machines WHERE id = $1)"
    );
    let head_sql = "SELECT last_seq, (SELECT COUNT(*) FROM heartbeats
                        WHERE machine = (SELECT num FROM machines WHERE id = $1))
                    FROM machines WHERE id = $1";
    type Row = (
        i64,
        i64,
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let (head, totals, usage): ((i64, i64), Vec<Row>, Vec<Row>) = if db_url.starts_with("sqlite:") {
        use sqlx::Connection;
        let path = greenops_collector::store::sqlite_path(db_url);
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        let out = (
            sqlx::query_as(sqlx::AssertSqlSafe(head_sql))
                .bind(machine_id)
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            sqlx::query_as(sqlx::AssertSqlSafe(totals_sql))
                .bind(machine_id)
                .fetch_all(&mut conn)
                .await
                .unwrap(),
            sqlx::query_as(sqlx::AssertSqlSafe(usage_sql))
                .bind(machine_id)
                .fetch_all(&mut conn)
                .await
                .unwrap(),
        );
        conn.close().await.ok();
        out
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
        let out = (
            sqlx::query_as(sqlx::AssertSqlSafe(head_sql))
                .bind(machine_id)
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            sqlx::query_as(sqlx::AssertSqlSafe(totals_sql))
                .bind(machine_id)
                .fetch_all(&mut conn)
                .await
                .unwrap(),
            sqlx::query_as(sqlx::AssertSqlSafe(usage_sql))
                .bind(machine_id)
                .fetch_all(&mut conn)
                .await
                .unwrap(),
        );
        conn.close().await.ok();
        out
    };
    let sum = |rows: &[Row]| {
        let mut t = Totals {
            last_seq: head.0,
            observed_ms: 0,
            idle_ms: 0,
            unknown_ms: 0,
            energy_j: Decimal::ZERO,
            idle_energy_j: Decimal::ZERO,
            co2_g: Decimal::ZERO,
            idle_co2_g: Decimal::ZERO,
            cost: Decimal::ZERO,
            idle_cost: Decimal::ZERO,
            heartbeat_rows: head.1,
        };
        for r in rows {
            t.observed_ms += r.0;
            t.idle_ms += r.1;
            t.unknown_ms += r.2;
            t.energy_j += dec(&r.3);
            t.idle_energy_j += dec(&r.4);
            t.co2_g += dec(&r.5);
            t.idle_co2_g += dec(&r.6);
            t.cost += dec(&r.7);
            t.idle_cost += dec(&r.8);
        }
        for v in [
            &mut t.energy_j,
            &mut t.idle_energy_j,
            &mut t.co2_g,
            &mut t.idle_co2_g,
            &mut t.cost,
            &mut t.idle_cost,
        ] {
            *v = v.normalize();
        }
        t
    };
    let t = sum(&totals);
    assert_eq!(
        t,
        sum(&usage),
        "running totals differ from the stored usage rows"
    );
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

/// What the accounting model gives for `beats` delivered once, in order, to the machine
/// (with the rates and placements stored in its database), without money: the reference the
/// stored totals are compared with.
pub async fn model_totals(
    db_url: &str,
    machine_id: &str,
    beats: &[greenops_protocol::ValidHeartbeat],
) -> greenops_collector::accounting::Increment {
    let store = greenops_collector::open_store(&test_settings(db_url))
        .await
        .unwrap();
    let book = store.rate_book().await.unwrap();
    let placements = greenops_collector::store::accounting_placements(store.as_ref(), machine_id)
        .await
        .unwrap();
    store.close().await;
    greenops_collector::accounting::replay(beats, &placements, &book).unwrap()
}

/// Parses heartbeat JSON bodies (one heartbeat each) as the collector does.
pub fn valid_beats(bodies: &[Value]) -> Vec<greenops_protocol::ValidHeartbeat> {
    bodies
        .iter()
        .map(|b| {
            let bytes = serde_json::to_vec(b).unwrap();
            greenops_protocol::parse_heartbeat_body(&bytes).unwrap()[0]
                .heartbeat
                .clone()
                .unwrap()
        })
        .collect()
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

/// One period (`today`, `7d`, `30d` or `all`) of `GET /api/v1/stats`.
pub async fn stats_period(app: &TestApp, who: &str, period: &str) -> Value {
    let stats = ok_json(
        call(app, who, Method::GET, "/api/v1/stats", None).await,
        200,
    )
    .await;
    stats["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == period)
        .unwrap_or_else(|| panic!("no period {period} in {stats}"))
        .clone()
}
