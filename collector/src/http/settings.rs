//! `GET|PATCH /api/v1/settings`: the accounting thresholds in force. Saved settings are stored
//! in the database and adopted by every collector sharing it within one poll interval (see
//! `crate::live`); they apply to heartbeats accounted afterwards.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::{ApiError, AppState, audit, body, invalid, parse_json};
use crate::live::SETTINGS_KEY;
use crate::settings::AccountingSettings;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, update))
}

/// The accounting settings (seconds).
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// Input idle time beyond which time counts as waste.
    idle_threshold_seconds: u64,
    /// Longest interval between two heartbeats that still counts as observed.
    max_gap_seconds: u64,
    /// How far ahead of the server clock a heartbeat may be.
    max_clock_skew_seconds: u64,
    /// A machine silent for longer than this is offline.
    offline_after_seconds: u64,
    /// Interval told to agents when they enrol.
    heartbeat_interval_seconds: u64,
    /// `config` (from greenops.toml / environment) or `database` (saved by an operator).
    source: String,
}

/// Changes to the settings; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    idle_threshold_seconds: Option<u64>,
    max_gap_seconds: Option<u64>,
    max_clock_skew_seconds: Option<u64>,
    offline_after_seconds: Option<u64>,
    heartbeat_interval_seconds: Option<u64>,
}

async fn view(state: &AppState) -> Result<SettingsView, ApiError> {
    let stored = state.store.setting(SETTINGS_KEY).await?.is_some();
    let a = state.accounting.get();
    Ok(SettingsView {
        idle_threshold_seconds: a.idle_threshold_seconds,
        max_gap_seconds: a.max_gap_seconds,
        max_clock_skew_seconds: a.max_clock_skew_seconds,
        offline_after_seconds: a.offline_after_seconds,
        heartbeat_interval_seconds: a.heartbeat_interval_seconds,
        source: if stored { "database" } else { "config" }.to_string(),
    })
}

/// The accounting settings in force.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = SettingsView)), security(("session" = []), ("bearer" = [])))]
async fn show(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(view(&state).await?))
}

/// Changes the accounting settings (admins only) for every collector on this database.
#[utoipa::path(patch, path = "/api/v1/settings", tag = "settings", request_body = SettingsPatch,
    responses((status = 200, body = SettingsView), (status = 403, description = "viewers cannot change anything"),
        (status = 422, description = "invalid value")),
    security(("session" = []), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<SettingsView>, ApiError> {
    operator.require_admin()?;
    let patch: SettingsPatch = parse_json(&body(raw)?)?;
    // Start from what is stored, so a replica that has not polled yet cannot undo a change.
    state.accounting.refresh(state.store.as_ref()).await?;
    let before = state.accounting.get();
    let after = AccountingSettings {
        idle_threshold_seconds: patch
            .idle_threshold_seconds
            .unwrap_or(before.idle_threshold_seconds),
        max_gap_seconds: patch.max_gap_seconds.unwrap_or(before.max_gap_seconds),
        max_clock_skew_seconds: patch
            .max_clock_skew_seconds
            .unwrap_or(before.max_clock_skew_seconds),
        offline_after_seconds: patch
            .offline_after_seconds
            .unwrap_or(before.offline_after_seconds),
        heartbeat_interval_seconds: patch
            .heartbeat_interval_seconds
            .unwrap_or(before.heartbeat_interval_seconds),
    };
    after.check().map_err(|(field, why)| invalid(field, why))?;
    let json = serde_json::to_string(&after).map_err(|e| ApiError::Internal(e.into()))?;
    state
        .store
        .put_setting(SETTINGS_KEY, &json, crate::clock::now_ms())
        .await?;
    state.accounting.set(after);
    audit(
        &state,
        &operator.username,
        "settings_updated",
        SETTINGS_KEY,
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    tracing::info!(by = %operator.username, settings = ?after, "accounting settings changed");
    Ok(Json(view(&state).await?))
}
