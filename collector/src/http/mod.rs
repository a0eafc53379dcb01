//! The HTTP surface: one module per feature, each contributing a `router()`.

mod agents;
pub mod auth;
mod error;
mod machines;
mod ops;
mod users;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use greenops_protocol::{MAX_BODY_BYTES, ValidationError};
use serde::de::DeserializeOwned;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use error::ApiError;

use crate::exposition::{HttpLabels, ProcessMetrics};
use crate::ingest::{CredentialCache, Ingest};
use crate::settings::Settings;
use crate::store::Store;

/// Everything a handler may use; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub credentials: Arc<CredentialCache>,
    pub metrics: Arc<ProcessMetrics>,
    pub settings: Arc<Settings>,
    pub sessions: crate::auth::SessionKeys,
}

/// Longest time any request may take before the server gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole application router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(agents::router())
        .merge(auth::router())
        .merge(machines::router())
        .merge(users::router())
        .merge(ops::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Observer {
                metrics: state.metrics.clone(),
                trace: state.settings.telemetry.otlp_endpoint.is_some(),
            },
            observe,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Methods named as themselves in metrics; anything else is `other` (bounded cardinality).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// What the request middleware needs.
#[derive(Debug, Clone)]
struct Observer {
    metrics: Arc<ProcessMetrics>,
    /// Traces are exported: every request gets an INFO span. Otherwise request spans are at
    /// DEBUG, so the hot path pays nothing for them at the default log level.
    trace: bool,
}

/// Request span and duration histogram, keyed by the matched route (never the raw URL).
async fn observe(State(observer): State<Observer>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    macro_rules! request_span {
        ($level:ident) => {
            tracing::$level!(
                "request",
                otel.name = format!("{method} {route}"),
                otel.kind = "server",
                http.request.method = method,
                http.route = %route,
                http.response.status_code = tracing::field::Empty,
            )
        };
    }
    let span = if observer.trace {
        request_span!(info_span)
    } else {
        request_span!(debug_span)
    };
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let took = started.elapsed();
    observer.metrics.observe_http(
        HttpLabels {
            route,
            method,
            status,
        },
        took,
    );
    tracing::debug!(parent: &span, status, took_ms = took.as_millis() as u64, "request done");
    response
}

/// The body of a request, with the size limit mapped to our 413.
pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request bodies are limited to {MAX_BODY_BYTES} bytes"
            ))
        } else {
            ApiError::Malformed("the request body could not be read".into())
        }
    })
}

/// Parses a JSON body: syntax errors are 400, type errors are 422 naming the field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "$".to_string() } else { path };
                ApiError::Invalid(ValidationError::new(field, inner.to_string()))
            }
            _ => ApiError::Malformed(format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::Malformed(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// The bearer token of a request, if it sent one.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
