//! `GET|PATCH /api/v1/settings`: the accounting thresholds in force. Saved settings are stored
//! in the database and adopted by every collector sharing it within one poll interval (see
//! `crate::live`); they apply to heartbeats accounted afterwards.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiJson, AppState, Result, Viewer, schema};
use crate::operations::settings as ops;

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
    #[schema(schema_with = schema::field::seconds_patch)]
    idle_threshold_seconds: Option<u64>,
    /// At least `heartbeat_interval_seconds`.
    #[schema(schema_with = schema::field::positive_seconds_patch)]
    max_gap_seconds: Option<u64>,
    #[schema(schema_with = schema::field::seconds_patch)]
    max_clock_skew_seconds: Option<u64>,
    #[schema(schema_with = schema::field::positive_seconds_patch)]
    offline_after_seconds: Option<u64>,
    /// At most `max_gap_seconds`.
    #[schema(schema_with = schema::field::positive_seconds_patch)]
    heartbeat_interval_seconds: Option<u64>,
}

async fn view(state: &AppState) -> Result<SettingsView> {
    let source = ops::source(state.ctx("")).await?;
    let a = state.accounting.get();
    Ok(SettingsView {
        idle_threshold_seconds: a.idle_threshold_seconds,
        max_gap_seconds: a.max_gap_seconds,
        max_clock_skew_seconds: a.max_clock_skew_seconds,
        offline_after_seconds: a.offline_after_seconds,
        heartbeat_interval_seconds: a.heartbeat_interval_seconds,
        source: source.to_string(),
    })
}

/// The accounting settings in force.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", operation_id = "show_settings",
    responses((status = 200, description = "the settings in force", body = SettingsView),
        (status = 401, description = "not signed in")),
    security(("session" = []), ("bearer" = [])))]
async fn show(State(state): State<AppState>, _viewer: Viewer) -> Result<Json<SettingsView>> {
    Ok(Json(view(&state).await?))
}

/// Changes the accounting settings (admins only) for every collector on this database.
#[utoipa::path(patch, path = "/api/v1/settings", tag = "settings", operation_id = "update_settings",
    request_body = SettingsPatch,
    responses((status = 200, description = "the settings after the change", body = SettingsView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 422, description = "invalid value")),
    security(("session" = []), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<SettingsView>> {
    ops::update(
        state.ctx(&admin.username),
        &state.accounting,
        ops::SettingsPatch {
            idle_threshold_seconds: patch.idle_threshold_seconds,
            max_gap_seconds: patch.max_gap_seconds,
            max_clock_skew_seconds: patch.max_clock_skew_seconds,
            offline_after_seconds: patch.offline_after_seconds,
            heartbeat_interval_seconds: patch.heartbeat_interval_seconds,
        },
    )
    .await?;
    Ok(Json(view(&state).await?))
}
