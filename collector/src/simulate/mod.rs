//! Fleet simulator: N simulated agents with office habits (see [`model`]), each with its own
//! credential, sending heartbeats over HTTP exactly as the agent protocol says.
//!
//! Simulated time may run faster than real time (`speed`), but never ahead of it: the
//! simulation starts in the past and replays it, so `sent_at` always respects the server's
//! clock-skew rule. With a duration, `duration × speed` of history ending now is replayed;
//! without one, `catch_up` of history is replayed and the fleet then carries on in real time.

pub mod model;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use greenops_protocol::{
    EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse, IdleSourceKind,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use model::{Habit, Sample, SimMachine};

use crate::clock;

/// The fleet seed of `serve --demo`: its 25 machines include every habit, among them a
/// machine that is always on and unused, so waste shows at any hour (tested).
pub const DEMO_FLEET_SEED: u64 = 2;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Collector base URL, e.g. `http://127.0.0.1:9850`.
    pub url: String,
    pub enrollment_token: String,
    pub machines: u64,
    /// Simulated seconds per real second (1 = real time).
    pub speed: f64,
    /// Real run time; `None` runs until stopped.
    pub duration: Option<Duration>,
    /// History replayed before carrying on in real time when `duration` is `None`.
    pub catch_up: Duration,
    /// Simulated seconds between two heartbeats of a machine.
    pub interval_seconds: u64,
    /// Seeds habits and schedules; the same seed gives the same fleet.
    pub fleet_seed: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9850".into(),
            enrollment_token: String::new(),
            machines: 25,
            speed: 60.0,
            duration: None,
            catch_up: Duration::from_secs(8 * 3600),
            interval_seconds: 60,
            fleet_seed: 1,
            concurrency: 64,
        }
    }
}

/// Running totals, readable while the simulation runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub errors: AtomicU64,
    pub powered_on: AtomicU64,
    pub simulated_ms: AtomicU64,
}

impl Stats {
    /// A one-line summary for progress output.
    pub fn line(&self, machines: u64, started: Instant) -> String {
        let sim = i64::try_from(self.simulated_ms.load(Ordering::Relaxed)).unwrap_or(0);
        let when = OffsetDateTime::from_unix_timestamp(sim / 1000)
            .map(|t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute()
                )
            })
            .unwrap_or_default();
        let sent = self.sent.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        format!(
            "simulated {when} UTC | on {}/{machines} | sent {sent} ({:.0}/s) | accepted {} | duplicates {} | errors {}",
            self.powered_on.load(Ordering::Relaxed),
            sent as f64 / secs,
            self.accepted.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

struct Agent {
    machine: SimMachine,
    token: String,
    seq: u64,
}

/// Enrols the fleet, then sends heartbeats until the duration is over or `stop` completes.
pub async fn run(
    options: Options,
    stats: Arc<Stats>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(options.speed >= 1.0, "--speed must be at least 1");
    anyhow::ensure!(
        options.interval_seconds >= 1,
        "the heartbeat interval must be at least 1 s"
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let base = options.url.trim_end_matches('/').to_string();
    let agents = enrol(&client, &base, &options).await?;
    tracing::info!(machines = agents.len(), "simulated fleet enrolled");

    let interval_ms = i64::try_from(options.interval_seconds * 1000)?;
    let real_start_ms = clock::now_ms();
    let span_ms = match options.duration {
        Some(d) => (d.as_secs_f64() * options.speed * 1000.0) as i64,
        None => i64::try_from(options.catch_up.as_millis())?,
    };
    // Align ticks to the interval so every machine's samples fall on whole minutes.
    let sim_start = (real_start_ms - span_ms).div_euclid(interval_ms) * interval_ms;
    let end = options.duration.map(|_| real_start_ms);
    let started = Instant::now();
    let sim_now = || {
        let elapsed = started.elapsed().as_secs_f64() * 1000.0 * options.speed;
        (sim_start + elapsed as i64).min(clock::now_ms())
    };

    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut agents: Vec<Agent> = agents;
    tokio::pin!(stop);
    let mut tick = sim_start;
    loop {
        if end.is_some_and(|e| tick > e) {
            break;
        }
        // Wait until simulated time (bounded by real time) reaches this tick.
        loop {
            let now = sim_now();
            if now >= tick {
                break;
            }
            let real_wait_ms = ((tick - now) as f64 / options.speed).max(1.0);
            let wait = Duration::from_millis(real_wait_ms.min(1000.0) as u64);
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
        stats
            .simulated_ms
            .store(u64::try_from(tick).unwrap_or(0), Ordering::Relaxed);
        let mut sends = JoinSet::new();
        let mut on = 0;
        for (i, agent) in agents.iter_mut().enumerate() {
            let Some(sample) = agent.machine.sample(tick) else {
                continue;
            };
            on += 1;
            agent.seq += 1;
            let heartbeat = heartbeat(agent.seq, tick, &sample)?;
            let request = client
                .post(format!("{base}/api/v1/heartbeats"))
                .bearer_auth(&agent.token)
                .json(&heartbeat);
            let permit = limit.clone().acquire_owned().await?;
            let stats = stats.clone();
            sends.spawn(async move {
                let _permit = permit;
                stats.sent.fetch_add(1, Ordering::Relaxed);
                match send(request).await {
                    Ok(answer) => {
                        stats
                            .accepted
                            .fetch_add(answer.accepted as u64, Ordering::Relaxed);
                        stats
                            .duplicates
                            .fetch_add(answer.duplicates as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if stats.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            tracing::warn!(machine = i, error = %e, "simulated heartbeat failed");
                        }
                    }
                }
            });
        }
        stats.powered_on.store(on, Ordering::Relaxed);
        tokio::select! {
            () = &mut stop => { sends.shutdown().await; return Ok(()); }
            () = async { while sends.join_next().await.is_some() {} } => {}
        }
        tick += interval_ms;
    }
    Ok(())
}

fn heartbeat(seq: u64, at_ms: i64, sample: &Sample) -> anyhow::Result<Heartbeat> {
    Ok(Heartbeat {
        seq,
        sent_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)?,
        idle_seconds: sample.idle_seconds,
        session: sample.session,
        cpu_usage_ratio: Some(sample.cpu_usage_ratio),
        memory_usage_ratio: Some(sample.memory_usage_ratio),
        uptime_seconds: None,
        // Simulated desktops measure idle time as an X11 session would; the machines whose
        // idle detection "does not work" say so, as a real agent does.
        idle_source: Some(if sample.idle_seconds.is_some() {
            IdleSourceKind::X11Screensaver
        } else {
            IdleSourceKind::None
        }),
    })
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<HeartbeatResponse> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{status}: {body}");
    }
    Ok(response.json().await?)
}

async fn enrol(
    client: &reqwest::Client,
    base: &str,
    options: &Options,
) -> anyhow::Result<Vec<Agent>> {
    let limit = Arc::new(Semaphore::new(options.concurrency.clamp(1, 32)));
    let mut tasks = JoinSet::new();
    for index in 0..options.machines {
        let machine = SimMachine::new(options.fleet_seed, index);
        let request = EnrollRequest {
            enrollment_token: Some(options.enrollment_token.clone()),
            machine_key: format!("sim-{:08x}-{index:08}", options.fleet_seed),
            hostname: format!("sim-pc-{index:05}.example.test"),
            os: "simulated".into(),
            os_version: format!("{:?}", machine.habit).to_lowercase(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            mac_addresses: None,
        };
        let client = client.clone();
        let url = format!("{base}/api/v1/agents/enroll");
        let permit = limit.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _permit = permit;
            let response = client.post(&url).json(&request).send().await?;
            let status = response.status();
            if status.as_u16() != 201 {
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!("enrolment refused ({status}): {body}");
            }
            let enrolled: EnrollResponse = response.json().await?;
            Ok((index, enrolled.agent_token))
        });
    }
    let mut agents = Vec::with_capacity(usize::try_from(options.machines).unwrap_or(0));
    while let Some(joined) = tasks.join_next().await {
        let (index, token) = joined.context("enrolment task")??;
        agents.push(Agent {
            machine: SimMachine::new(options.fleet_seed, index),
            token,
            // Re-running with the same seed re-enrols the same keys: the collector treats
            // seq as per machine, so continue above anything sent before.
            seq: u64::try_from(clock::now_ms()).unwrap_or(0),
        });
    }
    agents.sort_by_key(|a| a.machine.index);
    Ok(agents)
}
