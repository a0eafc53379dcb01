//! `GET /api/v1/savings/what-if`: what "sleep after N minutes without input" would have saved
//! over a window of recorded raw heartbeats, exactly, per site and department.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    ApiError, ApiQuery, AppState, Result, Viewer, invalid, number, rfc3339, schema, timestamp_param,
};
use crate::operations::savings::{self, MAX_SLEEP_AFTER_MINUTES, SavedFigures, WhatIfQuery};

const DAY_MS: i64 = 86_400_000;

/// One what-if at a time per collector (each reads every raw interval of its window). A few
/// more wait their turn for a while — two people clicking a preset at once both get an answer —
/// and beyond that queue, or after waiting too long, the answer is 503 `busy` with `Retry-After`.
#[derive(Debug)]
pub struct WhatIfGate {
    running: tokio::sync::Semaphore,
    admitted: tokio::sync::Semaphore,
    wait: std::time::Duration,
}

impl WhatIfGate {
    /// How many requests may wait behind the running one.
    const WAITING: usize = 4;

    pub fn new(wait: std::time::Duration) -> Self {
        Self {
            running: tokio::sync::Semaphore::new(1),
            admitted: tokio::sync::Semaphore::new(1 + Self::WAITING),
            wait,
        }
    }

    async fn enter(
        &self,
    ) -> Result<(
        tokio::sync::SemaphorePermit<'_>,
        tokio::sync::SemaphorePermit<'_>,
    )> {
        const BUSY: ApiError =
            ApiError::Busy("other what-if computations are running; retry shortly");
        let admitted = self.admitted.try_acquire().map_err(|_| BUSY)?;
        let running = tokio::time::timeout(self.wait, self.running.acquire())
            .await
            .map_err(|_| BUSY)?
            .map_err(|_| BUSY)?;
        Ok((admitted, running))
    }
}

impl Default for WhatIfGate {
    fn default() -> Self {
        Self::new(std::time::Duration::from_secs(20))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(what_if))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WhatIfParams {
    /// Sleep after this many minutes without input (1 to 10080).
    #[param(schema_with = schema::param::sleep_after)]
    sleep_after_minutes: Option<String>,
    /// `always` (default) or `after_hours`: only outside each site's business hours.
    #[param(schema_with = schema::param::when)]
    when: Option<String>,
    /// Only time incurred at this site (a name).
    #[param(schema_with = schema::param::text)]
    site: Option<String>,
    /// Only time incurred in this department.
    #[param(schema_with = schema::param::text)]
    department: Option<String>,
    /// RFC 3339; default `to` minus 7 days; not before the raw retention.
    #[param(schema_with = schema::param::timestamp)]
    from: Option<String>,
    /// RFC 3339; default now; not in the future.
    #[param(schema_with = schema::param::timestamp)]
    to: Option<String>,
}

/// Savings of the whole scope or of one site and department.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedView {
    /// Time the machines would have slept (exact decimal seconds).
    #[schema(value_type = String)]
    slept_seconds: Decimal,
    #[schema(value_type = String)]
    energy_joules: Decimal,
    #[schema(value_type = String)]
    energy_kwh: Decimal,
    /// Currency (ISO 4217) → amount saved.
    #[schema(value_type = BTreeMap<String, String>)]
    costs: BTreeMap<String, Decimal>,
    #[schema(value_type = String)]
    co2_grams: Decimal,
    /// Machines that would have slept at least once.
    machines_affected: u64,
    /// How many times they would have gone to sleep (one per idle stretch past the limit).
    sleeps: u64,
}

impl From<&SavedFigures> for SavedView {
    fn from(f: &SavedFigures) -> Self {
        Self {
            slept_seconds: Decimal::new(f.slept_ms, 3).normalize(),
            energy_joules: f.energy_j.normalize(),
            energy_kwh: (f.energy_j / Decimal::from(3_600_000))
                .round_dp(9)
                .normalize(),
            costs: f
                .costs
                .iter()
                .map(|(c, v)| (c.clone(), v.normalize()))
                .collect(),
            co2_grams: f.co2_g.normalize(),
            machines_affected: f.machines,
            sleeps: f.sleeps,
        }
    }
}

/// One site and department's part (as incurred).
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatIfGroupView {
    site: String,
    department: String,
    #[serde(flatten)]
    saved: SavedView,
}

/// What the policy would have saved.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatIfView {
    sleep_after_minutes: u32,
    /// `always` or `after_hours`.
    when: String,
    site: Option<String>,
    department: Option<String>,
    from: String,
    to: String,
    /// Machines with heartbeats idle past the limit in the window (before the scope).
    machines_considered: u64,
    #[serde(flatten)]
    total: SavedView,
    /// By site and department where the time was incurred, sorted by site then department.
    groups: Vec<WhatIfGroupView>,
}

/// What "sleep after N minutes without input" would have saved (DESIGN: energy ×
/// (idle − sleep) watts for every second past N, priced as incurred).
#[utoipa::path(get, path = "/api/v1/savings/what-if", tag = "reports", operation_id = "what_if_savings",
    params(WhatIfParams),
    responses((status = 200, description = "the savings", body = WhatIfView),
        (status = 401, description = "not signed in"),
        (status = 503, description = "another what-if is running (busy, with Retry-After)"),
        (status = 422, description = "invalid parameter: N outside 1..10080, a window outside raw retention or in the future, an unknown site or department")),
    security(("session" = []), ("bearer" = [])))]
async fn what_if(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiQuery(params): ApiQuery<WhatIfParams>,
) -> Result<Json<WhatIfView>> {
    let now = crate::clock::now_ms();
    let minutes = number(
        "sleep_after_minutes",
        params.sleep_after_minutes.as_deref(),
        30,
        i64::from(MAX_SLEEP_AFTER_MINUTES),
    )?;
    let after_hours_only = match params.when.as_deref() {
        None | Some("always") => false,
        Some("after_hours") => true,
        Some(_) => return Err(invalid("when", "must be always or after_hours")),
    };
    let to = timestamp_param("to", params.to.as_deref())?.unwrap_or(now);
    let from = timestamp_param("from", params.from.as_deref())?.unwrap_or(to - 7 * DAY_MS);
    let query = WhatIfQuery {
        sleep_after_minutes: u32::try_from(minutes).unwrap_or(MAX_SLEEP_AFTER_MINUTES),
        after_hours_only,
        site: params.site,
        department: params.department,
        from_ms: from,
        to_ms: to,
    };
    let _running = state.what_if.enter().await?;
    let result = savings::what_if(
        state.store.as_ref(),
        query,
        state.settings.retention.raw_days,
        now,
    )
    .await?;
    Ok(Json(view(&result)))
}

/// The answer as the API shows it (also printed by `greenops what-if --json`).
pub fn view(r: &savings::WhatIf) -> WhatIfView {
    WhatIfView {
        sleep_after_minutes: r.query.sleep_after_minutes,
        when: if r.query.after_hours_only {
            "after_hours"
        } else {
            "always"
        }
        .to_string(),
        site: r.query.site.clone(),
        department: r.query.department.clone(),
        from: rfc3339(r.query.from_ms).unwrap_or_default(),
        to: rfc3339(r.query.to_ms).unwrap_or_default(),
        machines_considered: r.machines_considered,
        total: SavedView::from(&r.total),
        groups: r
            .groups
            .iter()
            .map(|g| WhatIfGroupView {
                site: g.site.clone(),
                department: g.department.clone(),
                saved: SavedView::from(&g.figures),
            })
            .collect(),
    }
}
