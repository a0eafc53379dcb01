//! The load generator: keep-alive HTTP/1.1 connections, each owning a slice of the machines
//! so every machine's heartbeats are sent in `seq` order, closed-loop (as fast as answers come)
//! or open-loop at a fixed rate (latency measured from the scheduled send time, so a slow
//! server cannot hide its queueing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One machine as the load generator drives it.
#[derive(Debug, Clone)]
pub struct LoadMachine {
    pub token: String,
    pub next_seq: u64,
}

/// What happened during a run.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors_by_status: std::collections::BTreeMap<String, u64>,
    /// Latencies of successful requests, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
    /// Per machine: the highest seq the server acknowledged (0 = none).
    pub acked_seq: Vec<u64>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    pub fn errors(&self) -> u64 {
        self.errors_by_status.values().sum()
    }
}

/// Builds the body of heartbeat `seq` for machine `index` (shared by the run and the expected
/// totals): `sent_at` one minute per seq after `base_ms`, idle time cycling through 0–15 min.
pub fn heartbeat_body(index: usize, seq: u64, base_ms: i64) -> String {
    let sent_ms = base_ms + i64::try_from(seq).unwrap_or(0) * 60_000;
    let sent = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(sent_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let idle = idle_seconds(index, seq);
    format!(
        r#"{{"seq":{seq},"sent_at":"{}","idle_seconds":{idle},"session":"active","cpu_usage_ratio":0.12,"memory_usage_ratio":0.43,"uptime_seconds":86400}}"#,
        sent.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    )
}

/// The idle time a benchmark heartbeat reports.
pub fn idle_seconds(index: usize, seq: u64) -> u64 {
    ((index as u64).wrapping_mul(7) + seq.wrapping_mul(131)) % 900
}

/// Sends heartbeats for `machines` over `connections` connections for `duration`.
/// `rate`: total requests per second (open loop), or `None` for closed loop.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    machines: Vec<LoadMachine>,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    base_ms: i64,
) -> anyhow::Result<LoadResult> {
    let connections = connections.clamp(1, machines.len().max(1));
    let machines = Arc::new(machines);
    // Every connection is open before the clock starts: connecting hundreds of sockets at
    // once would otherwise count as the first requests' latency.
    let ready = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let machines = machines.clone();
        let path = path.to_string();
        let ready = ready.clone();
        let mut start_rx = start_rx.clone();
        tasks.push(tokio::spawn(async move {
            let sender = connect(addr).await;
            ready.wait().await;
            let sender = sender?;
            let started = *start_rx
                .wait_for(Option::is_some)
                .await
                .context("the load never started")?;
            connection(
                sender,
                addr,
                &path,
                &machines,
                c,
                connections,
                started.unwrap_or_else(Instant::now),
                duration,
                rate,
                base_ms,
            )
            .await
        }));
    }
    ready.wait().await;
    let started = Instant::now();
    let _ = start_tx.send(Some(started));
    let mut total = LoadResult {
        acked_seq: vec![0; machines.len()],
        ..LoadResult::default()
    };
    for task in tasks {
        let part = task.await.context("load connection task")??;
        total.ok += part.ok;
        for (k, v) in part.errors_by_status {
            *total.errors_by_status.entry(k).or_default() += v;
        }
        total.latencies_us.extend(part.latencies_us);
        for (i, seq) in part.acked_seq.into_iter().enumerate() {
            total.acked_seq[i] = total.acked_seq[i].max(seq);
        }
    }
    total.elapsed = started
        .elapsed()
        .min(duration.max(Duration::from_millis(1)));
    total.latencies_us.sort_unstable();
    Ok(total)
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut sender: Sender,
    addr: SocketAddr,
    path: &str,
    machines: &[LoadMachine],
    c: usize,
    connections: usize,
    started: Instant,
    duration: Duration,
    rate: Option<f64>,
    base_ms: i64,
) -> anyhow::Result<LoadResult> {
    let mut result = LoadResult {
        acked_seq: vec![0; machines.len()],
        ..LoadResult::default()
    };
    let mine: Vec<usize> = (c..machines.len()).step_by(connections).collect();
    if mine.is_empty() {
        return Ok(result);
    }
    let mut seqs: Vec<u64> = mine.iter().map(|&i| machines[i].next_seq).collect();
    let authorizations: Vec<String> = mine
        .iter()
        .map(|&i| format!("Bearer {}", machines[i].token))
        .collect();
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
    let mut k = 0usize;
    let mut sent = 0u64;
    loop {
        let scheduled = match interval {
            Some(every) => {
                // Connections are staggered over one interval, so the requests arrive
                // evenly instead of in bursts of one per connection.
                let at = started + every.mul_f64(sent as f64 + c as f64 / connections as f64);
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                at
            }
            None => Instant::now(),
        };
        if started.elapsed() >= duration {
            break;
        }
        let slot = k % mine.len();
        let index = mine[slot];
        let seq = seqs[slot];
        let request = Request::post(path)
            .header("host", "bench")
            .header("content-type", "application/json")
            .header("authorization", &authorizations[slot])
            .body(Full::new(Bytes::from(heartbeat_body(index, seq, base_ms))))?;
        if sender.ready().await.is_err() {
            sender = connect(addr).await?;
        }
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                // Read the whole body so the connection can be reused.
                let _ = response.into_body().collect().await;
                if status.is_success() {
                    result.ok += 1;
                    let took = scheduled.elapsed().as_micros();
                    result
                        .latencies_us
                        .push(u32::try_from(took).unwrap_or(u32::MAX));
                    result.acked_seq[index] = seq;
                    seqs[slot] += 1;
                    k += 1;
                } else {
                    *result
                        .errors_by_status
                        .entry(status.as_u16().to_string())
                        .or_default() += 1;
                    // Retry the same heartbeat (as an agent would) after a short pause.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(e) => {
                *result
                    .errors_by_status
                    .entry(format!("io: {e}"))
                    .or_default() += 1;
                sender = connect(addr).await?;
            }
        }
        sent += 1;
    }
    Ok(result)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
