//! Logs through `tracing` (human or JSON) and, when `telemetry.otlp_endpoint` is set, trace
//! export over OTLP/HTTP. Export runs on the batch processor's own thread with a bounded
//! queue: a dead endpoint costs dropped spans, never a blocked request.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, TelemetrySettings};

/// Keeps the trace pipeline alive; call [`Telemetry::shutdown`] to flush on exit.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes buffered spans (bounded by the exporter timeout).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = result {
                tracing::warn!(error = %e, "trace export did not shut down cleanly");
            }
        }
    }
}

/// Installs the global subscriber. The OTLP exporter uses a blocking HTTP client on the batch
/// processor's own thread, so call this outside async code (e.g. in `spawn_blocking`).
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .map_err(|e| anyhow::anyhow!("invalid telemetry.log_level: {e}"))?;
    let fmt = match settings.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_target(false)
            // Colours only for a person at a terminal, never into files, pipes or journald
            // (and never with NO_COLOR set).
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };
    let (otel, provider) = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let provider = tracer_provider(endpoint, &settings.service_name)?;
            let tracer = provider.tracer("greenops");
            let layer = tracing_opentelemetry::layer().with_tracer(tracer);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    // One global filter: per-layer filters that disagree about a callsite have been seen to
    // drop whole request spans here, so both layers see the same spans.
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))?;
    Ok(Telemetry { provider })
}

fn tracer_provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let base = endpoint.trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(5))
        .build()?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(1))
                .with_max_queue_size(8192)
                .build(),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build())
}

/// Longest user-supplied text written into one log field.
pub const MAX_LOGGED_CHARS: usize = 128;

/// A user- or agent-supplied string as it may be logged: control characters (line breaks,
/// escape sequences) written as `\n`, `\u{1b}`…, so no input can forge a log line or colour a
/// terminal, and cut after [`MAX_LOGGED_CHARS`] characters.
pub fn untrusted(text: &str) -> Untrusted<'_> {
    Untrusted(text)
}

/// See [`untrusted`].
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(&'a str);

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_LOGGED_CHARS) {
            if c.is_control() || c == '\\' {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        let rest = chars.as_str().len();
        if rest > 0 {
            write!(f, "…(+{rest} bytes)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_forge_lines_or_flood_the_log() {
        let forged = "bob\n2026-12-01T00:00:00Z  INFO login username=admin\u{1b}[31m";
        let shown = untrusted(forged).to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(
            shown.contains("\\n") && shown.contains("\\u{1b}"),
            "{shown}"
        );
        let huge = "x".repeat(1_000_000);
        let shown = untrusted(&huge).to_string();
        assert!(shown.len() < 200, "{}", shown.len());
        assert!(shown.ends_with("…(+999872 bytes)"), "{shown}");
        assert_eq!(untrusted("pc-042").to_string(), "pc-042");
    }
}
