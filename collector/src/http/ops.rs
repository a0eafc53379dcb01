//! Operations endpoints: `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState, bearer};
use crate::clock;
use crate::exposition;
use crate::secrets::TokenHash;
use crate::settings::secs_to_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Whether a scrape carries one of the configured credentials (none configured: anyone).
/// Secrets are compared as SHA-256 hashes, so timing does not depend on their content.
fn scrape_allowed(settings: &crate::settings::MetricsSettings, headers: &HeaderMap) -> bool {
    use secrecy::ExposeSecret;
    let basic = settings.basic_auth_username.as_deref().zip(
        settings
            .basic_auth_password
            .as_ref()
            .map(|p| p.expose_secret()),
    );
    if settings.bearer_token.is_none() && basic.is_none() {
        return true;
    }
    let bearer_ok = settings.bearer_token.as_ref().is_some_and(|expected| {
        bearer(headers).map(TokenHash::of) == Some(TokenHash::of(expected.expose_secret()))
    });
    let basic_ok = basic.is_some_and(|(user, password)| {
        let given = super::credentials(headers, "Basic")
            .and_then(|b64| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        given.is_some_and(|g| TokenHash::of(&g) == TokenHash::of(&format!("{user}:{password}")))
    });
    bearer_ok || basic_ok
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz", responses((status = 200, description = "{\"status\": \"ok\"}")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz", responses((status = 200, description = "{\"status\": \"ready\"}"), (status = 503, description = "database unreachable or not migrated")))]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.readiness().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::Unavailable("the database is unreachable or not migrated")
    })?;
    Ok(Json(json!({"status": "ready"})))
}

/// Per-machine idle time, energy, cost and CO₂ and collector health, in OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "metrics credentials are configured and the request lacks them")),
    security((), ("bearer" = []), ("basic" = [])))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !scrape_allowed(&state.settings.metrics, &headers) {
        let mut response =
            ApiError::Unauthorized("/metrics requires the configured credentials").into_response();
        if state.settings.metrics.basic_auth_username.is_some() {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"greenops metrics\""),
            );
        }
        return Ok(response);
    }
    let fleet = state.fleet.fresh(state.store.as_ref()).await?;
    let accounting = state.accounting.get();
    let format =
        exposition::Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let per_machine = state.settings.metrics.per_machine_for(fleet.live_count());
    // A scrape of a large fleet is tens of MB of text that compresses ~6×: gzip when the
    // scraper asks for it (Prometheus does), from deflate blocks kept with the fleet's texts.
    let gzip = exposition::gzip::accepted(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let body = exposition::render(
        exposition::Scrape {
            fleet,
            per_machine,
            now_ms: clock::now_ms(),
            offline_after_ms: secs_to_ms(accounting.offline_after_seconds),
            idle_threshold_ms: secs_to_ms(accounting.idle_threshold_seconds),
        },
        state.metrics.clone(),
        format,
        gzip,
    )
    .await?;
    let mut response = axum::body::Body::new(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}
