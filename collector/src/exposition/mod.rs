//! `/metrics`: process metrics kept in a `prometheus-client` registry, plus the fleet series
//! (per machine and per group) rendered at scrape time from the in-memory fleet, which reads
//! the store's totals (so a restart never resets a counter and every replica serves the same
//! values).

#[cfg(test)]
mod fleet;
pub mod gzip;
mod process;
mod stream;

use std::time::Duration;

use axum::body::Bytes;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[cfg(test)]
pub use fleet::FleetCollector;
pub use stream::{ChunkText, Piece, Sink, write_fleet, write_groups};

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format, for scrapers that ask for it.
pub const CONTENT_TYPE_TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text 0.0.4: no `# UNIT` or `# EOF`, counter families named with `_total`.
    Text004,
}

impl Format {
    /// What an `Accept` header asks for: OpenMetrics unless the client names `text/plain`
    /// and not OpenMetrics (Prometheus asks for both and prefers OpenMetrics).
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("text/plain") && !a.contains("application/openmetrics-text") => {
                Format::Text004
            }
            _ => Format::OpenMetrics,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text004 => CONTENT_TYPE_TEXT_004,
        }
    }
}

/// Rewrites whole lines of OpenMetrics text as Prometheus text 0.0.4. Every family's `HELP`
/// and `TYPE` lines arrive in the same chunk (the encoders flush only after samples).
pub fn to_text_004(chunk: &str) -> String {
    let mut out = String::with_capacity(chunk.len() + 256);
    let mut help: Option<(&str, &str)> = None;
    for line in chunk.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {name} {text}\n"));
    }
    out
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Metrics about this collector process.
#[derive(Debug)]
pub struct ProcessMetrics {
    registry: Registry,
    heartbeats: Family<ResultLabels, Counter>,
    batch_size: Histogram,
    commit_duration: Histogram,
    http: HistogramFamily<HttpLabels>,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let heartbeats = Family::<ResultLabels, Counter>::default();
        // Pre-create every outcome so rate() works from the first scrape.
        for result in ["accepted", "duplicate", "rejected"] {
            let _ = heartbeats.get_or_create(&ResultLabels { result });
        }
        registry.register(
            "greenops_heartbeats",
            "Heartbeats received by this collector process, by outcome",
            heartbeats.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "greenops_ingest_batch_size",
            "Heartbeats committed per group-commit transaction",
            batch_size.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register_with_unit(
            "greenops_ingest_commit_duration",
            "Duration of group-commit transactions",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let http: HistogramFamily<HttpLabels> = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "greenops_http_request_duration",
            "HTTP request duration by matched route, method and status",
            Unit::Seconds,
            http.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: crate::REVISION,
            })
            .set(1);
        registry.register(
            "greenops_build_info",
            "Version and source revision of this collector (always 1)",
            build,
        );
        Self {
            registry,
            heartbeats,
            batch_size,
            commit_duration,
            http,
        }
    }

    /// Counts heartbeats by outcome: `accepted`, `duplicate` or `rejected`.
    pub fn count_heartbeats(&self, result: &'static str, n: usize) {
        self.heartbeats
            .get_or_create(&ResultLabels { result })
            .inc_by(n as u64);
    }

    pub fn observe_commit(&self, heartbeats: usize, took: Duration) {
        self.batch_size.observe(heartbeats as f64);
        self.commit_duration.observe(took.as_secs_f64());
    }

    pub fn observe_http(&self, labels: HttpLabels, took: Duration) {
        self.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Appends this process's metrics and the closing `# EOF` line.
    pub fn write_process(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = encode_registry(out, &self.registry);
        let _ = encode_eof(out);
    }
}

/// What one scrape shows of the fleet.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub fleet: std::sync::Arc<crate::fleet::Fleet>,
    /// Per-machine series (else only the group series and machine counts).
    pub per_machine: bool,
    pub now_ms: i64,
    pub offline_after_ms: i64,
    pub idle_threshold_ms: i64,
}

/// The whole exposition — fleet series, then this process's metrics — as a list of pieces,
/// assembled on a blocking thread (a chunk that changed since the last scrape is rendered
/// there), gzipped when `gzip`. Memory stays bounded for any fleet size: the per-machine
/// pieces are the fleet's cached texts (and their cached deflate blocks), shared, and only
/// the group series, the machine counts and this process's metrics are written for the
/// scrape.
pub async fn render(
    scrape: Scrape,
    process: std::sync::Arc<ProcessMetrics>,
    format: Format,
    gzip: bool,
) -> anyhow::Result<Exposition> {
    tokio::task::spawn_blocking(move || {
        let text = |text: String| match format {
            Format::Text004 => to_text_004(&text),
            Format::OpenMetrics => text,
        };
        let mut plain = std::collections::VecDeque::new();
        let mut member = gzip.then(gzip::Member::new);
        let mut failed = None;
        let mut send = |piece: Piece<'_>| {
            let deflated = match (&mut member, piece) {
                (None, Piece::Text(t)) => return plain.push_back(Bytes::from(text(t))),
                // Sample lines read the same in both formats.
                (None, Piece::Shared(s)) => return plain.push_back(s.text().clone()),
                (Some(m), Piece::Text(t)) => gzip::deflate(text(t).as_bytes()).map(|d| m.push(&d)),
                (Some(m), Piece::Shared(s)) => s.deflated().map(|d| m.push(d)),
            };
            if let Err(e) = deflated {
                failed.get_or_insert(e);
            }
        };
        let mut sink = Sink::new(&mut send);
        // Retired machines have no per-machine series (their history stays in the group
        // series, reports and stats).
        write_fleet(
            &scrape.fleet,
            scrape.per_machine,
            scrape.now_ms,
            scrape.offline_after_ms,
            scrape.idle_threshold_ms,
            &mut sink,
        );
        write_groups(&scrape.fleet.groups, &mut sink.out);
        process.write_process(&mut sink.out);
        sink.flush();
        drop(sink);
        if let Some(e) = failed {
            return Err(e.context("compressing /metrics"));
        }
        Ok(Exposition::new(member.map_or(plain, gzip::Member::finish)))
    })
    .await
    .map_err(|e| anyhow::anyhow!("rendering /metrics failed: {e}"))?
}

/// A rendered exposition as a response body: its pieces in order, with its length known up
/// front (so the response has a `Content-Length`, and a scrape needs no chunked encoding).
#[derive(Debug)]
pub struct Exposition {
    pieces: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Exposition {
    fn new(pieces: std::collections::VecDeque<Bytes>) -> Self {
        let remaining = pieces.iter().map(|p| p.len() as u64).sum();
        Self { pieces, remaining }
    }
}

impl hyper::body::Body for Exposition {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let piece = self.pieces.pop_front();
        if let Some(p) = &piece {
            self.remaining -= p.len() as u64;
        }
        std::task::Poll::Ready(piece.map(|p| Ok(hyper::body::Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// Reference rendering through `prometheus-client` (tests and the golden file).
#[cfg(test)]
pub fn render_fleet_only(fleet: FleetCollector) -> String {
    let mut out = String::new();
    let mut per_scrape = Registry::default();
    per_scrape.register_collector(Box::new(fleet));
    let _ = encode_registry(&mut out, &per_scrape);
    let _ = encode_eof(&mut out);
    out
}
