//! The HTTP surface: one module per feature, each contributing a `router()`.

mod agents;
pub mod auth;
pub mod compat;
mod error;
pub mod extract;
pub(crate) mod machines;
mod openapi;
mod ops;
mod page;
mod reports;
pub mod savings;
pub mod schema;
pub mod server;
mod settings;
mod sites;
mod stats;
mod tokens;
mod users;
mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use greenops_protocol::{MAX_BODY_BYTES, ValidationError};
use tracing::Instrument;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub use extract::{Admin, ApiJson, ApiPath, ApiQuery, Result, Viewer};

use crate::exposition::{HttpLabels, ProcessMetrics};
use crate::ingest::{CredentialCache, Ingest};
use crate::operations::{Ctx, OpError};
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
    /// The fleet in memory: `/metrics`, the machines list and the stats read it.
    pub fleet: Arc<crate::fleet::FleetView>,
    /// The machines list for large fleets (in memory).
    pub listing: Arc<crate::listing::Listing>,
    pub sessions: crate::auth::SessionKeys,
    /// The bounded pool every password hash and check of this collector runs on.
    pub passwords: Arc<crate::auth::PasswordPool>,
    /// One what-if computation at a time on this collector (each reads a window of raw rows).
    pub what_if: Arc<savings::WhatIfGate>,
}

impl AppState {
    /// The context of an operator action taken by `actor` through this collector.
    pub fn ctx<'a>(&'a self, actor: &'a str) -> Ctx<'a> {
        Ctx {
            store: self.store.as_ref(),
            listing: Some(&self.listing),
            passwords: &self.passwords,
            actor,
        }
    }
}

/// Most request headers answered; more get 431.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Most bytes of request headers (names and values) answered; more get 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (mut routes, _) = api_routes().split_for_parts();
    if state.settings.compat.seed_agents {
        routes = routes.merge(compat::router());
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Duration::from_secs(state.settings.http.request_timeout_seconds),
            limits,
        ))
        .layer(middleware::from_fn(page::security_headers))
        .layer(middleware::from_fn_with_state(
            Observer {
                metrics: state.metrics.clone(),
                trace: state.settings.telemetry.otlp_endpoint.is_some(),
            },
            observe,
        ))
        .with_state(state)
}

/// Refuses what no handler should see, each with the JSON error envelope: a `Content-Length`
/// over the body limit (413 at once, before any byte of the body is read), too many or too
/// large headers (431), and requests that take longer than `http.request_timeout_seconds` — a
/// slow body included (503 with `Retry-After`).
async fn limits(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return extract::too_large().into_response();
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_REQUEST_HEADERS || header_bytes > MAX_REQUEST_HEADER_BYTES {
        return ApiError::HeadersTooLarge(format!(
            "requests may carry at most {MAX_REQUEST_HEADERS} headers and \
             {MAX_REQUEST_HEADER_BYTES} bytes of them"
        ))
        .into_response();
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response =
                ApiError::Unavailable("the request took too long and was abandoned; retry")
                    .into_response();
            // Part of the body may still be on its way: this connection is done.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
    }
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
        .merge(savings::router())
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

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on this route"))
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

/// The bearer token of a request, if it sent one.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    credentials(headers, "Bearer")
}

/// The credentials of an `Authorization` header of `scheme` (case-insensitive, RFC 7235).
pub(crate) fn credentials<'h>(headers: &'h axum::http::HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (given, rest) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
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
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| invalid(field, &format!("must be a whole number from 1 to {max}"))),
    }
}

/// A 422 naming `field`.
pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(ValidationError::new(field, message))
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(v) => ApiError::Invalid(v),
            OpError::NotFound(m) => ApiError::NotFound(m),
            OpError::Conflict(m) => ApiError::Conflict(m),
            OpError::Store(s) => s.into(),
            OpError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// An RFC 3339 time as milliseconds since the epoch.
pub(crate) fn timestamp_ms(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
}

/// An optional RFC 3339 query parameter as milliseconds since the epoch.
pub(crate) fn timestamp_param(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) => timestamp_ms(v).map(Some).ok_or_else(|| {
            invalid(
                field,
                "must be an RFC 3339 timestamp, e.g. 2026-11-27T00:00:00Z",
            )
        }),
    }
}

/// A decimal given as a JSON string written plainly (`"0.12"`, exact; no exponent, sign,
/// `_` separators or surrounding spaces) or as a whole JSON number (`65`). Fractions must be
/// strings: a JSON number with a fraction is a binary floating-point value, not the decimal
/// the client wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecimalInput(pub rust_decimal::Decimal);

impl<'de> serde::Deserialize<'de> for DecimalInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        const WHAT: &str = "must be a decimal string such as \"0.12\" or a whole number";
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => crate::operations::catalog::plain_decimal(&s)
                .map(DecimalInput)
                .ok_or_else(|| D::Error::custom(WHAT)),
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(|w| DecimalInput(rust_decimal::Decimal::from(w)))
                .ok_or_else(|| D::Error::custom(WHAT)),
            _ => Err(D::Error::custom(WHAT)),
        }
    }
}

/// A decimal read as [`DecimalInput`] and written back as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalOutput(pub rust_decimal::Decimal);

impl<'de> serde::Deserialize<'de> for DecimalOutput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DecimalInput::deserialize(d).map(|v| DecimalOutput(v.0))
    }
}

impl serde::Serialize for DecimalOutput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.normalize().to_string())
    }
}
