//! The benchmark run: durable ingest measured side by side with a ceiling.
//!
//! The collector runs as a child process (`greenops serve`) so its memory and start-up can be
//! measured alone; the load generator ([`crate::load`]) runs here. Afterwards the store is read
//! back and every acknowledged heartbeat must be there with exactly the totals the pure
//! accounting model predicts (zero loss, zero double count). Then the same load runs against
//! the [`crate::ceiling`] endpoint (this binary again, as a child process), and the report ends
//! with `ratio=<greenops / ceiling>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::body::Bytes;
use rust_decimal::Decimal;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use greenops_collector::accounting::{self, Increment};
use greenops_collector::store::{NewEnrollmentToken, Store};
use greenops_collector::{clock, secrets};

use crate::load::{self, LoadMachine};
use crate::phases::{self, Phase, Plan};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `greenops` binary to benchmark.
    pub collector: PathBuf,
    pub machines: usize,
    pub duration: Duration,
    /// Requests per second (open loop); `None` = as fast as possible (closed loop).
    pub rate: Option<f64>,
    /// `None`: SQLite in a temporary directory.
    pub database_url: Option<String>,
    /// `None`: sweep [`phases::SWEEP`] and keep the fastest.
    pub connections: Option<usize>,
    /// Open-loop phases after the sweep, as shares (percent) of the maximum rate.
    pub levels: Vec<u32>,
    pub skip_ceiling: bool,
    /// `/metrics` scrapes to time after the run.
    pub scrapes: usize,
    /// Rounds of machine-list queries to time after the run (0: skip).
    pub list_rounds: usize,
    /// Also time a third of those rounds while the load runs (this slows the ingest figures).
    pub list_under_load: bool,
    /// Also scrape `/metrics` every second while the load runs.
    pub metrics_under_load: bool,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub backend: String,
    pub cold_start: Duration,
    pub enrol_rate: f64,
    /// Every load phase in order (the sweep, then the fixed rates).
    pub phases: Vec<Phase>,
    /// The ceiling endpoint's phases: its own sweep, then GreenOps' fixed rates.
    pub ceiling: Option<Vec<Phase>>,
    pub verified: Result<(), String>,
    pub metrics: MetricsTiming,
    pub rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub list: Option<ListTiming>,
    /// The same list requests while the ingest load runs.
    pub list_under_load: Option<ListTiming>,
    /// Plain `/metrics` scrapes while the ingest load runs, sorted.
    pub metrics_under_load: Vec<Duration>,
    /// Raw heartbeats stored and their bytes at rest.
    pub storage: Option<greenops_collector::store::ingest::HeartbeatStorage>,
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn wait_until_ready(
    child: &mut Child,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the collector exited before it was ready ({status})");
        }
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{url} not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rss_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Runs the benchmark, printing progress lines through `say`.
pub async fn run(
    options: BenchOptions,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.machines >= 1, "--machines must be at least 1");
    let exe = std::env::current_exe().context("locating the greenops-bench binary")?;
    anyhow::ensure!(
        options.collector.is_file(),
        "no collector binary at {} (build it with `cargo build --release -p greenops-collector`, \
         or name it with --collector)",
        options.collector.display()
    );
    let scratch =
        std::env::temp_dir().join(format!("greenops-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch)?;
    let url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/greenops.db", scratch.display()));
    let backend = if url.starts_with("sqlite:") {
        "SQLite"
    } else {
        "PostgreSQL"
    }
    .to_string();

    // The collector, as a separate process.
    let (collector, addr, cold_start) = start_collector(&options.collector, &url, &scratch).await?;
    say(&format!(
        "collector ({backend}) ready in {} ms",
        cold_start.as_millis()
    ));

    let store = greenops_collector::open_store(&{
        let mut s = greenops_collector::settings::Settings::default();
        s.database.url = url.clone();
        s.database.max_connections = 2;
        s
    })
    .await?;
    let machines = enrol(&store, addr, options.machines, say).await?;
    if let Some((Some(rss), _)) = collector.id().map(rss_kib) {
        say(&format!(
            "collector RSS after enrolment: {} MiB",
            rss / 1024
        ));
    }
    let enrol_rate = options.machines as f64 / machines.1.as_secs_f64();
    let machines = machines.0;

    let plan = Plan {
        rate: options.rate,
        connections: options.connections,
        levels: options.levels.clone(),
        duration: options.duration,
    };
    // sent_at: one simulated minute per heartbeat, ending before now (the skew rule).
    let per_machine = (plan.total_duration().as_secs_f64() * 200_000.0 / options.machines as f64)
        .ceil() as i64
        + 3;
    let base_ms = clock::now_ms() - per_machine * 60_000;
    say(&format!(
        "sending: {}",
        match (options.rate, options.connections) {
            (Some(r), c) => format!(
                "{r:.0}/s for {} s over {} connections",
                options.duration.as_secs(),
                c.unwrap_or(phases::SWEEP[1])
            ),
            (None, c) => format!(
                "closed loop over {} connections ({} s each), then {} of that maximum ({} s each)",
                c.map_or_else(|| format!("{:?}", phases::SWEEP), |c| c.to_string()),
                plan.sweep_duration().as_secs(),
                options
                    .levels
                    .iter()
                    .map(|l| format!("{l} %"))
                    .collect::<Vec<_>>()
                    .join(", "),
                options.duration.as_secs()
            ),
        }
    ));
    let initial = machines.clone();
    let mut fleet = phases::Fleet::new(machines);
    // The admin list is also timed while the load runs (after a quarter of it), as an
    // operator would use it on a busy collector.
    let under_load = async {
        if options.list_rounds == 0 || !options.list_under_load {
            return Ok(None);
        }
        tokio::time::sleep(plan.total_duration() / 4).await;
        time_machine_list(&store, addr, options.list_rounds / 3 + 1)
            .await
            .map(Some)
    };
    // And `/metrics`, once a second over the middle half of the load.
    let scrapes_under_load = async {
        if !options.metrics_under_load {
            return Ok(Vec::new());
        }
        let total = plan.total_duration();
        tokio::time::sleep(total / 4).await;
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/metrics");
        let until = Instant::now() + total / 2;
        let mut times = Vec::new();
        while Instant::now() < until {
            let started = Instant::now();
            client
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            times.push(started.elapsed());
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
        }
        times.sort();
        anyhow::Ok(times)
    };
    say("greenops:");
    let (greenops, list_under_load, metrics_under_load) = tokio::join!(
        phases::run(addr, &mut fleet, &plan, base_ms, None, say),
        under_load,
        scrapes_under_load
    );
    let metrics_under_load = metrics_under_load?;
    if !metrics_under_load.is_empty() {
        say(&format!(
            "/metrics during the load: median {:.1} ms, max {:.1} ms ({} scrapes)",
            ms(metrics_under_load[metrics_under_load.len() / 2]),
            ms(metrics_under_load[metrics_under_load.len() - 1]),
            metrics_under_load.len()
        ));
    }
    let greenops = greenops?;
    let list_under_load: Option<ListTiming> = list_under_load?;
    if let Some(t) = &list_under_load {
        say(&format!(
            "machines list during the load: p50 {:.1} ms, p95 {:.1} ms ({} requests)",
            t.p(0.5).as_secs_f64() * 1e3,
            t.p(0.95).as_secs_f64() * 1e3,
            t.list.len()
        ));
    }
    let acknowledged = phases::total_ok(&greenops);

    if let Some((Some(rss), _)) = collector.id().map(rss_kib) {
        say(&format!("collector RSS after ingest: {} MiB", rss / 1024));
    }
    let verified = verify(store.as_ref(), &initial, &fleet.acked_seq, base_ms).await;
    match &verified {
        Ok(()) => say(&format!(
            "verified: all {acknowledged} acknowledged heartbeats stored, totals exact"
        )),
        Err(e) => say(&format!("VERIFICATION FAILED: {e}")),
    }
    let storage = match store.heartbeat_storage().await {
        Ok(s) => {
            say(&format!(
                "storage: {} raw heartbeats in {} bytes ({:.1} bytes per heartbeat, table and indexes)",
                s.rows,
                s.bytes,
                s.bytes as f64 / s.rows.max(1) as f64
            ));
            Some(s)
        }
        Err(e) => {
            say(&format!("could not measure heartbeat storage: {e}"));
            None
        }
    };
    let list = if options.list_rounds > 0 {
        let t = time_machine_list(&store, addr, options.list_rounds).await?;
        say(&format!(
            "machines list ({} machines, 50 rows, filtered and sorted): p50 {:.1} ms, p95 {:.1} ms; /healthz floor p95 {:.1} ms",
            options.machines,
            t.p(0.5).as_secs_f64() * 1e3,
            t.p(0.95).as_secs_f64() * 1e3,
            t.floor_p(0.95).as_secs_f64() * 1e3,
        ));
        Some(t)
    } else {
        None
    };
    store.close().await;

    let metrics = time_metrics(addr, options.scrapes).await?;
    say(&format!(
        "/metrics with {} machines: median {:.1} ms (first byte {:.1} ms), {} bytes; \
         the same bytes from memory {:.1} ms; gzip {:.1} ms, {} bytes",
        options.machines,
        ms(metrics.median),
        ms(metrics.first_byte),
        metrics.bytes,
        ms(metrics.ceiling),
        ms(metrics.gzip_median),
        metrics.gzip_bytes
    ));
    let (rss, peak) = collector.id().map(rss_kib).unwrap_or((None, None));
    if let (Some(rss), Some(peak)) = (rss, peak) {
        say(&format!(
            "collector memory: RSS {} MiB (peak {} MiB)",
            rss / 1024,
            peak / 1024
        ));
    }
    stop(collector).await;

    let ceiling = if options.skip_ceiling {
        None
    } else {
        let addr = free_addr()?;
        let server = Command::new(&exe)
            .args(["ceiling", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the ceiling endpoint")?;
        wait_for_port(addr).await?;
        say("ceiling:");
        let mut ceiling_fleet = phases::Fleet::new(initial.clone());
        let result = phases::run(
            addr,
            &mut ceiling_fleet,
            &plan,
            base_ms,
            Some(&greenops),
            say,
        )
        .await?;
        stop(server).await;
        Some(result)
    };
    std::fs::remove_dir_all(&scratch).ok();
    Ok(BenchReport {
        backend,
        cold_start,
        enrol_rate,
        phases: greenops,
        ceiling,
        verified: verified.map_err(|e| format!("{e:#}")),
        metrics,
        rss_kib: rss,
        peak_rss_kib: peak,
        list,
        list_under_load,
        metrics_under_load,
        storage,
    })
}

async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{addr} did not open");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Starts `greenops serve` on `url` as a child process and waits until it is ready.
pub(crate) async fn start_collector(
    exe: &std::path::Path,
    url: &str,
    scratch: &std::path::Path,
) -> anyhow::Result<(Child, SocketAddr, Duration)> {
    let addr = free_addr()?;
    let started = Instant::now();
    let mut collector = Command::new(exe)
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--database-url",
            url,
        ])
        .env("GREENOPS_TELEMETRY__LOG_LEVEL", "warn")
        .env("GREENOPS_DATA_DIR", scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    wait_until_ready(
        &mut collector,
        &format!("http://{addr}/readyz"),
        Duration::from_secs(60),
    )
    .await?;
    Ok((collector, addr, started.elapsed()))
}

/// The what-if benchmark: `machines` enrolled through a collector, `days` of synthetic raw
/// heartbeats every `interval_s` (PostgreSQL), then `greenops what-if`'s computation timed
/// (median of `rounds`) for the default policy and two others. `reuse`: the machines and
/// heartbeats are already there (an earlier run's).
#[allow(clippy::too_many_arguments)]
pub async fn what_if(
    collector_exe: &std::path::Path,
    url: &str,
    machines: usize,
    days: u32,
    interval_s: i64,
    rounds: usize,
    reuse: bool,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let scratch =
        std::env::temp_dir().join(format!("greenops-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch)?;
    let (collector, addr, _) = start_collector(collector_exe, url, &scratch).await?;
    let store = greenops_collector::open_store(&{
        let mut s = greenops_collector::settings::Settings::default();
        s.database.url = url.to_string();
        s.database.max_connections = 2;
        s
    })
    .await?;
    let interval_ms = interval_s * 1000;
    let count = i64::from(days) * 86_400_000 / interval_ms;
    // The window: from the first heartbeat written (a minute before it), or the last `days`
    // days and a minute of an earlier run's.
    let (rows, from) = if reuse {
        stop(collector).await;
        say("reusing the machines and raw heartbeats already in the database");
        (
            (count * machines as i64) as u64,
            clock::now_ms() - count * interval_ms - 60_000,
        )
    } else {
        let (_, took) = enrol(&store, addr, machines, say).await?;
        say(&format!(
            "enrolled {machines} machines in {:.1} s",
            took.as_secs_f64()
        ));
        stop(collector).await;
        let from = clock::now_ms() - count * interval_ms - 60_000;
        let filled = Instant::now();
        let rows = greenops_collector::store::synthetic::fill_raw_heartbeats(
            url,
            from,
            count,
            interval_ms,
            4 * 3600 / interval_s,
            say,
        )
        .await?;
        say(&format!(
            "{rows} raw heartbeats ({machines} machines × {days} days every {interval_s} s) in {:.0} s",
            filled.elapsed().as_secs_f64()
        ));
        (rows, from)
    };
    // The rollup the collector keeps as heartbeats arrive (every five minutes and before
    // each question), built here from all of them at once.
    let built = Instant::now();
    let caught = greenops_collector::operations::savings::bring_up_to_date(
        store.as_ref(),
        u64::from(days) + 1,
        clock::now_ms(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = built.elapsed().as_secs_f64();
    println!(
        "what_if_rollup machines={machines} days={days} intervals={} batches={} seconds={took:.1} \
         intervals_per_s={:.0}",
        caught.intervals,
        caught.batches,
        caught.intervals as f64 / took.max(1e-9),
    );
    for (minutes, after_hours) in [(30u32, false), (15, false), (60, true)] {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..rounds.max(1) {
            let query = greenops_collector::operations::savings::WhatIfQuery {
                sleep_after_minutes: minutes,
                after_hours_only: after_hours,
                site: None,
                department: None,
                from_ms: from,
                to_ms: clock::now_ms(),
            };
            let started = Instant::now();
            let r = greenops_collector::operations::savings::what_if(
                store.as_ref(),
                query,
                u64::from(days) + 1,
                clock::now_ms(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            times.push(started.elapsed());
            last = Some(r);
        }
        times.sort();
        let median = times[times.len() / 2];
        let r = last.context("no round ran")?;
        println!(
            "what_if sleep_after_minutes={minutes} when={} machines={machines} days={days} rows={rows} \
             median_ms={} min_ms={} max_ms={} kwh={} machines_affected={} sleeps={}",
            if after_hours { "after_hours" } else { "always" },
            median.as_millis(),
            times[0].as_millis(),
            times[times.len() - 1].as_millis(),
            (r.total.energy_j / Decimal::from(3_600_000)).round_dp(3),
            r.total.machines,
            r.total.sleeps,
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Enrols `n` machines over HTTP (distinct keys and credentials).
async fn enrol(
    store: &Arc<dyn Store>,
    addr: SocketAddr,
    n: usize,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(Vec<LoadMachine>, Duration)> {
    // Machines spread over sites and departments, so the list benchmark filters something.
    for site in &BENCH_SITES[1..] {
        let fields = greenops_collector::store::admin::SiteFields {
            name: (*site).to_string(),
            version: greenops_collector::store::admin::SiteVersionInfo::flat(
                "UTC",
                "USD",
                Decimal::new(12, 2),
                Decimal::from(420),
            ),
        };
        match store.create_site(&fields, clock::now_ms()).await {
            Ok(_) | Err(greenops_collector::store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut tokens_by_group = Vec::new();
    for site in BENCH_SITES {
        for d in 0..BENCH_DEPARTMENTS {
            let token = secrets::generate_token(secrets::ENROLLMENT_TOKEN_PREFIX);
            store
                .create_enrollment_token(&NewEnrollmentToken {
                    token_hash: secrets::TokenHash::of(&token),
                    site: site.to_string(),
                    department: format!("dept-{d:02}"),
                    expires_at_ms: None,
                    max_uses: None,
                    created_at_ms: clock::now_ms(),
                })
                .await?;
            tokens_by_group.push(token);
        }
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let limit = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let run = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..n {
        let permit = limit.clone().acquire_owned().await?;
        let client = client.clone();
        let body = serde_json::json!({
            "enrollment_token": tokens_by_group[i % tokens_by_group.len()],
            "machine_key": format!("bench-{}-{i:08}", &run[..8]),
            "hostname": format!("bench-{i:06}.example.test"),
            "os": "linux",
            "os_version": "bench",
            "agent_version": env!("CARGO_PKG_VERSION"),
        });
        let url = format!("http://{addr}/api/v1/agents/enroll");
        tasks.spawn(async move {
            let _permit = permit;
            let res = client.post(url).json(&body).send().await?;
            anyhow::ensure!(
                res.status().as_u16() == 201,
                "enrolment failed: {}",
                res.status()
            );
            let answer: greenops_protocol::EnrollResponse = res.json().await?;
            Ok((i, answer.agent_token))
        });
        if (i + 1) % 20_000 == 0 {
            say(&format!("enrolled {}/{n}", i + 1));
        }
    }
    let mut tokens = vec![String::new(); n];
    while let Some(done) = tasks.join_next().await {
        let (i, token) = done??;
        tokens[i] = token;
    }
    let took = started.elapsed();
    say(&format!(
        "enrolled {n} machines in {:.1} s ({:.0}/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    ));
    Ok((
        tokens
            .into_iter()
            .map(|token| LoadMachine { token, next_seq: 1 })
            .collect(),
        took,
    ))
}

/// Sites the benchmark's machines are spread over (`default` exists already).
const BENCH_SITES: [&str; 4] = ["default", "site-1", "site-2", "site-3"];
/// Departments per site.
const BENCH_DEPARTMENTS: usize = 25;

/// The admin page's typical machine-list requests (50 rows, filtered and sorted).
const LIST_QUERIES: [&str; 6] = [
    "sort=hostname",
    "status=idle&sort=idle_energy&order=desc",
    "site=site-2&department=dept-07&sort=last_seen&order=desc",
    "q=00042&sort=hostname",
    "sort=idle_time&order=desc&page=200",
    "department=dept-03&sort=status",
];

/// Latencies of the machine list and, as the floor, of `/healthz`, in the same run.
#[derive(Debug, Clone, Default)]
pub struct ListTiming {
    pub list: Vec<Duration>,
    pub floor: Vec<Duration>,
    /// Slowest query kind and its p95.
    pub slowest: Option<(String, Duration)>,
    /// `GET /api/v1/stats` (fleet counts, today / 7 d / 30 d / all) answer times.
    pub stats: Vec<Duration>,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

impl ListTiming {
    pub fn p(&self, q: f64) -> Duration {
        percentile(&self.list, q)
    }
    pub fn floor_p(&self, q: f64) -> Duration {
        percentile(&self.floor, q)
    }
}

/// Signs in as a fresh admin and times `rounds` rounds of [`LIST_QUERIES`], one request at a
/// time (what one operator's browser does), then as many `/healthz` requests.
async fn time_machine_list(
    store: &Arc<dyn Store>,
    addr: SocketAddr,
    rounds: usize,
) -> anyhow::Result<ListTiming> {
    let username = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let password = uuid::Uuid::new_v4().simple().to_string();
    let hash = greenops_collector::auth::hash_password(&password)?;
    store
        .create_user(
            &username,
            &hash,
            greenops_collector::store::Role::Admin,
            clock::now_ms(),
        )
        .await?;
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"]
        .as_str()
        .context("no session token")?
        .to_string();
    let mut timing = ListTiming::default();
    let mut by_query: Vec<Vec<Duration>> = vec![Vec::new(); LIST_QUERIES.len()];
    for _ in 0..rounds {
        for (i, q) in LIST_QUERIES.iter().enumerate() {
            let started = Instant::now();
            let body: serde_json::Value = client
                .get(format!("http://{addr}/api/v1/machines?per_page=50&{q}"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let took = started.elapsed();
            anyhow::ensure!(body["items"].is_array(), "unexpected answer to {q}");
            timing.list.push(took);
            by_query[i].push(took);
        }
    }
    for _ in 0..timing.list.len() {
        let started = Instant::now();
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        timing.floor.push(started.elapsed());
    }
    for _ in 0..5 {
        let started = Instant::now();
        client
            .get(format!("http://{addr}/api/v1/stats"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        timing.stats.push(started.elapsed());
    }
    timing.list.sort();
    timing.floor.sort();
    timing.stats.sort();
    timing.slowest = by_query
        .iter_mut()
        .enumerate()
        .map(|(i, t)| {
            t.sort();
            (LIST_QUERIES[i].to_string(), percentile(t, 0.95))
        })
        .max_by_key(|(_, p)| *p);
    Ok(timing)
}

/// Every acknowledged heartbeat is stored, nothing else is, and the totals are exactly what
/// the accounting model gives for them.
async fn verify(
    store: &dyn Store,
    machines: &[LoadMachine],
    acked_seq: &[u64],
    base_ms: i64,
) -> anyhow::Result<()> {
    let snapshot = store.fleet_snapshot().await?;
    let book = store.rate_book().await?;
    let ids = greenops_collector::store::PlacementIds::load(store).await?;
    let by_hostname: std::collections::HashMap<&str, &greenops_collector::store::MachineSnapshot> =
        snapshot
            .machines
            .iter()
            .map(|m| (m.hostname.as_str(), m))
            .collect();
    let mut expected_all = Increment::default();
    let mut stored_all = Increment::default();
    for (i, m) in machines.iter().enumerate() {
        let hostname = format!("bench-{i:06}.example.test");
        let Some(stored) = by_hostname.get(hostname.as_str()) else {
            bail!("machine {hostname} missing from the store");
        };
        let placements = ids.placements(store, &stored.id).await?;
        let mut beats = Vec::new();
        for seq in m.next_seq..=acked_seq[i] {
            let body = load::heartbeat_body(i, seq, base_ms);
            let parsed = greenops_protocol::parse_heartbeat_body(body.as_bytes())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            beats.push(
                parsed[0]
                    .heartbeat
                    .clone()
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        let expected = accounting::replay(&beats, &placements, &book)?.without_money();
        let t = &stored.totals;
        if (
            t.observed_ms,
            t.idle_ms,
            t.energy_j,
            t.idle_energy_j,
            t.co2_g,
        ) != (
            expected.observed_ms,
            expected.idle_ms,
            expected.energy_j,
            expected.idle_energy_j,
            expected.co2_g,
        ) {
            bail!(
                "{hostname}: stored observed {} ms / idle {} ms / {} J, expected {} ms / {} ms / {} J",
                t.observed_ms,
                t.idle_ms,
                t.energy_j,
                expected.observed_ms,
                expected.idle_ms,
                expected.energy_j
            );
        }
        expected_all.add(&expected);
        stored_all.add(t);
    }
    anyhow::ensure!(
        expected_all.energy_j == stored_all.energy_j,
        "fleet energy differs"
    );
    Ok(())
}

/// `/metrics` as a scraper sees it: medians over the scrapes, plain and gzip.
#[derive(Debug, Clone, Default)]
pub struct MetricsTiming {
    pub median: Duration,
    /// Until the response headers arrive.
    pub first_byte: Duration,
    pub bytes: usize,
    pub gzip_median: Duration,
    pub gzip_bytes: usize,
    /// The same plain bytes served from memory by a bare endpoint in this process: what
    /// moving them through HTTP on this machine costs at all.
    pub ceiling: Duration,
}

async fn time_metrics(addr: SocketAddr, scrapes: usize) -> anyhow::Result<MetricsTiming> {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let scrape = async |url: &str, gzip: bool| -> anyhow::Result<(Duration, Duration, Bytes)> {
        let started = Instant::now();
        let mut request = client.get(url);
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        let response = request.send().await?.error_for_status()?;
        let first = started.elapsed();
        let body = response.bytes().await?;
        Ok((started.elapsed(), first, body))
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut total, mut first, mut gz) = (Vec::new(), Vec::new(), Vec::new());
    let (mut body, mut gz_bytes) = (Bytes::new(), 0);
    for _ in 0..scrapes.max(1) {
        let (t, f, b) = scrape(&url, false).await?;
        total.push(t);
        first.push(f);
        body = b;
        let (t, _, b) = scrape(&url, true).await?;
        gz.push(t);
        gz_bytes = b.len();
    }
    let bytes = body.len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let floor = listener.local_addr()?;
    let served = body.clone();
    let server = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = served.clone();
                async move { body }
            }),
        );
        axum::serve(listener, app).await
    });
    let floor_url = format!("http://{floor}/metrics");
    let mut floor_times = Vec::new();
    for _ in 0..scrapes.max(1) {
        floor_times.push(scrape(&floor_url, false).await?.0);
    }
    server.abort();
    Ok(MetricsTiming {
        median: median(total),
        first_byte: median(first),
        bytes,
        gzip_median: median(gz),
        gzip_bytes: gz_bytes,
        ceiling: median(floor_times),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl BenchReport {
    /// The figures as printed at the end of a run.
    pub fn summary(&self, options: &BenchOptions) -> String {
        let best = phases::fastest(&self.phases);
        let g = best.map(|p| p.result.clone()).unwrap_or_default();
        let mut out = format!(
            "backend={} machines={} duration_s={} mode={} connections={}\n\
             greenops_rate={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} errors={:?}\n\
             verified={}\n\
             cold_start_ms={} enrol_rate={:.0} metrics_ms={:.1} metrics_first_byte_ms={:.1} \
             metrics_bytes={} metrics_ceiling_ms={:.1} metrics_ratio={:.2} metrics_gzip_ms={:.1} \
             metrics_gzip_bytes={} rss_mib={} peak_rss_mib={}\n",
            self.backend,
            options.machines,
            options.duration.as_secs(),
            options
                .rate
                .map(|r| format!("open@{r:.0}/s"))
                .unwrap_or_else(|| "closed".into()),
            best.map_or(0, |p| p.drive.connections()),
            g.rate(),
            g.percentile_ms(0.5),
            g.percentile_ms(0.99),
            g.percentile_ms(0.999),
            g.errors_by_status,
            match &self.verified {
                Ok(()) => format!(
                    "ok ({} acknowledged = stored, totals exact)",
                    phases::total_ok(&self.phases)
                ),
                Err(e) => format!("FAILED: {e}"),
            },
            self.cold_start.as_millis(),
            self.enrol_rate,
            ms(self.metrics.median),
            ms(self.metrics.first_byte),
            self.metrics.bytes,
            ms(self.metrics.ceiling),
            self.metrics.ceiling.as_secs_f64() / self.metrics.median.as_secs_f64().max(1e-9),
            ms(self.metrics.gzip_median),
            self.metrics.gzip_bytes,
            self.rss_kib.map_or("?".into(), |k| (k / 1024).to_string()),
            self.peak_rss_kib
                .map_or("?".into(), |k| (k / 1024).to_string()),
        );
        // One line per phase; with the ceiling, the rate ratio (closed loop) or the p99
        // ratio at the same rate (open loop).
        for (i, p) in self.phases.iter().enumerate() {
            let r = &p.result;
            out.push_str(&format!(
                "phase={} connections={} rate={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} errors={}",
                p.drive.label(),
                p.drive.connections(),
                r.rate(),
                r.percentile_ms(0.5),
                r.percentile_ms(0.99),
                r.percentile_ms(0.999),
                r.errors()
            ));
            let twin = self.ceiling.as_ref().and_then(|c| c.get(i));
            if let Some(c) = twin.map(|c| &c.result) {
                match p.drive {
                    phases::Drive::Closed { .. } => out.push_str(&format!(
                        " ceiling_rate={:.0} ratio={:.2}",
                        c.rate(),
                        r.rate() / c.rate().max(1e-9)
                    )),
                    phases::Drive::Open { .. } => out.push_str(&format!(
                        " ceiling_p99_ms={:.2} p99_ratio={:.1}",
                        c.percentile_ms(0.99),
                        r.percentile_ms(0.99) / c.percentile_ms(0.99).max(1e-9)
                    )),
                }
            }
            out.push('\n');
        }
        if let Some(l) = &self.list {
            out.push_str(&format!(
                "list_p50_ms={:.1} list_p95_ms={:.1} list_requests={} list_floor_p95_ms={:.1} list_slowest={} stats_median_ms={:.0}\n",
                l.p(0.5).as_secs_f64() * 1e3,
                l.p(0.95).as_secs_f64() * 1e3,
                l.list.len(),
                l.floor_p(0.95).as_secs_f64() * 1e3,
                l.slowest
                    .as_ref()
                    .map(|(q, p)| format!("{q:?}@{:.1}ms", p.as_secs_f64() * 1e3))
                    .unwrap_or_default(),
                percentile(&l.stats, 0.5).as_secs_f64() * 1e3,
            ));
        }
        if let Some(l) = &self.list_under_load {
            out.push_str(&format!(
                "list_under_load_p50_ms={:.1} list_under_load_p95_ms={:.1} list_under_load_requests={}\n",
                l.p(0.5).as_secs_f64() * 1e3,
                l.p(0.95).as_secs_f64() * 1e3,
                l.list.len(),
            ));
        }
        if let (Some(median), Some(max)) = (
            self.metrics_under_load
                .get(self.metrics_under_load.len() / 2),
            self.metrics_under_load.last(),
        ) {
            out.push_str(&format!(
                "metrics_under_load_ms={:.1} metrics_under_load_max_ms={:.1} metrics_under_load_scrapes={}\n",
                ms(*median),
                ms(*max),
                self.metrics_under_load.len(),
            ));
        }
        if let Some(s) = &self.storage {
            out.push_str(&format!(
                "heartbeat_rows={} heartbeat_bytes={} bytes_per_heartbeat={:.1}\n",
                s.rows,
                s.bytes,
                s.bytes as f64 / s.rows.max(1) as f64
            ));
        }
        if let Some(c) = self.ceiling.as_deref().and_then(phases::fastest) {
            let c = &c.result;
            out.push_str(&format!(
                "ceiling_rate={:.0} ceiling_p50_ms={:.2} ceiling_p99_ms={:.2}\nratio={:.2}\n",
                c.rate(),
                c.percentile_ms(0.5),
                c.percentile_ms(0.99),
                g.rate() / c.rate().max(1e-9)
            ));
        }
        out
    }
}
