//! The HTTP surface: one module per feature, each contributing a `router()`.

mod agents;
pub mod auth;
mod error;
mod machines;
mod openapi;
mod ops;
mod page;
mod reports;
mod settings;
mod sites;
mod stats;
mod tokens;
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
use utoipa_axum::router::OpenApiRouter;

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
    /// Accounting thresholds in force (operators may change them at runtime).
    pub accounting: Arc<crate::live::LiveAccounting>,
    /// The machines list for large fleets (in memory).
    pub listing: Arc<crate::listing::Listing>,
    pub sessions: crate::auth::SessionKeys,
}

/// Longest time any request may take before the server gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    routes
        .fallback(not_found)
        .layer(middleware::from_fn(page::security_headers))
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

/// Every documented route, with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(agents::router())
        .merge(auth::router())
        .merge(machines::router())
        .merge(stats::router())
        .merge(sites::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(settings::router())
        .merge(reports::router())
        .merge(ops::router())
        .merge(openapi::router())
        .merge(page::router())
}

/// The OpenAPI document of this build (what `GET /api/v1/openapi.json` serves).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
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

/// A list answer (DESIGN §3): `{"items": [...], "total": n, "page": p, "per_page": k}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

impl<T> Page<T> {
    /// Every item on one page.
    pub fn all(items: Vec<T>) -> Self {
        let total = items.len() as i64;
        Self {
            items,
            total,
            page: 1,
            per_page: total.max(1),
        }
    }
}

/// An optional whole-number query parameter from 1 to `max`.
pub(crate) fn number(
    field: &str,
    value: Option<&str>,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| invalid(field, &format!("must be a whole number from 1 to {max}"))),
    }
}

/// A store's "no such site / user / …" for a name the request gave, as a 422 naming `field`.
pub(crate) fn unknown(field: &'static str) -> impl FnOnce(crate::store::StoreError) -> ApiError {
    move |e| match e {
        crate::store::StoreError::NotFound(what) => {
            invalid(field, &format!("{what} does not exist"))
        }
        other => other.into(),
    }
}

/// A 422 naming `field`.
pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(ValidationError::new(field, message))
}

/// Appends an operator action to the audit log (before/after in `details`).
pub(crate) async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    state
        .store
        .audit(&crate::store::AuditEntry {
            at_ms: crate::clock::now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            details: details.to_string(),
        })
        .await?;
    Ok(())
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// An optional RFC 3339 query parameter as milliseconds since the epoch.
pub(crate) fn timestamp_param(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    field,
                    "must be an RFC 3339 timestamp, e.g. 2026-11-27T00:00:00Z",
                )
            }),
    }
}

/// A decimal given as a JSON string (`"0.12"`, exact) or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecimalInput(pub rust_decimal::Decimal);

impl<'de> serde::Deserialize<'de> for DecimalInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(D::Error::custom("must be a decimal number, e.g. \"0.12\"")),
        };
        text.trim()
            .parse::<rust_decimal::Decimal>()
            .or_else(|_| rust_decimal::Decimal::from_scientific(text.trim()))
            .map(DecimalInput)
            .map_err(|_| D::Error::custom("must be a decimal number, e.g. \"0.12\""))
    }
}
