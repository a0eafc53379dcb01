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
use crate::exposition::{self, CONTENT_TYPE};
use crate::secrets::TokenHash;
use crate::settings::secs_to_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "{\"status\": \"ok\"}")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "{\"status\": \"ready\"}"), (status = 503, description = "database unreachable or not migrated")))]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.readiness().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::Unavailable("the database is unreachable or not migrated")
    })?;
    Ok(Json(json!({"status": "ready"})))
}

/// Per-machine idle time, energy, cost and CO₂ and collector health, in OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "metrics.bearer_token is set and the request lacks it")),
    security((), ("bearer" = [])))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(expected) = &state.settings.metrics.bearer_token {
        // Compare hashes so the comparison time does not depend on the secret's content.
        let given = bearer(&headers).map(TokenHash::of);
        if given != Some(TokenHash::of(expected)) {
            return Err(ApiError::Unauthorized("/metrics requires a bearer token"));
        }
    }
    let started = std::time::Instant::now();
    let snapshot = state.store.fleet_snapshot().await?;
    tracing::debug!(
        machines = snapshot.machines.len(),
        snapshot_ms = started.elapsed().as_millis() as u64,
        "fleet snapshot read for /metrics"
    );
    let accounting = state.accounting.get();
    let body = exposition::stream(
        snapshot,
        clock::now_ms(),
        secs_to_ms(accounting.offline_after_seconds),
        secs_to_ms(accounting.idle_threshold_seconds),
        state.metrics.clone(),
    );
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
