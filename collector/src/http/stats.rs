//! `GET /api/v1/stats`: the fleet at a glance — machines by status, and idle time, waste
//! energy, cost and CO₂ for today (since 00:00 UTC), the last 7 and 30 days, and all time.
//! Money is reported per currency, never summed across currencies. The figures are computed
//! by `operations::reports::fleet_stats`.

use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::MachineView;
use super::{AppState, Result, Viewer, rfc3339};
use crate::operations::reports::{self, PeriodTotals};

const JOULES_PER_KWH: i64 = 3_600_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stats))
}

/// Live machines per derived status.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct MachineCounts {
    total: i64,
    active: i64,
    idle: i64,
    offline: i64,
    unknown: i64,
}

/// Money in one currency over one period.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotals {
    currency: String,
    #[schema(value_type = String)]
    cost: Decimal,
    #[schema(value_type = String)]
    waste_cost: Decimal,
}

/// Totals over one period. `idle_ratio` is waste time over observed time (0 when nothing was
/// observed). Energies are exact joules and kWh rounded to 6 decimals.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodView {
    /// `today`, `7d`, `30d` or `all`.
    period: String,
    /// Start of the period (RFC 3339); absent for `all`.
    from: Option<String>,
    observed_seconds: f64,
    idle_seconds: f64,
    unknown_seconds: f64,
    idle_ratio: f64,
    #[schema(value_type = String)]
    energy_joules: Decimal,
    #[schema(value_type = String)]
    waste_energy_joules: Decimal,
    #[schema(value_type = String)]
    energy_kwh: Decimal,
    #[schema(value_type = String)]
    waste_kwh: Decimal,
    #[schema(value_type = String)]
    co2_grams: Decimal,
    #[schema(value_type = String)]
    waste_co2_grams: Decimal,
    costs: Vec<CurrencyTotals>,
}

impl From<PeriodTotals> for PeriodView {
    fn from(p: PeriodTotals) -> Self {
        let sum = p.sum;
        let kwh = |j: Decimal| (j / Decimal::from(JOULES_PER_KWH)).round_dp(6);
        Self {
            period: p.name.to_string(),
            from: p.from_ms.and_then(rfc3339),
            observed_seconds: sum.observed_ms as f64 / 1000.0,
            idle_seconds: sum.idle_ms as f64 / 1000.0,
            unknown_seconds: sum.unknown_ms as f64 / 1000.0,
            idle_ratio: if sum.observed_ms > 0 {
                sum.idle_ms as f64 / sum.observed_ms as f64
            } else {
                0.0
            },
            energy_kwh: kwh(sum.energy_j),
            waste_kwh: kwh(sum.idle_energy_j),
            energy_joules: sum.energy_j,
            waste_energy_joules: sum.idle_energy_j,
            co2_grams: sum.co2_g,
            waste_co2_grams: sum.idle_co2_g,
            costs: p
                .costs
                .into_iter()
                .map(|(currency, (cost, waste_cost))| CurrencyTotals {
                    currency,
                    cost,
                    waste_cost,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    generated_at: String,
    machines: MachineCounts,
    periods: Vec<PeriodView>,
    /// The ten machines that wasted the most energy (all time).
    top_wasters: Vec<MachineView>,
}

/// Fleet totals for the overview page.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", operation_id = "fleet_stats",
    responses((status = 200, description = "the fleet's figures", body = Stats),
        (status = 401, description = "not signed in")),
    security(("session" = []), ("bearer" = [])))]
async fn stats(State(state): State<AppState>, _viewer: Viewer) -> Result<Json<Stats>> {
    let base = super::machines::base_query(&state);
    let stats = reports::fleet_stats(&state.store, &state.listing, base).await?;
    let m = stats.machines;
    Ok(Json(Stats {
        generated_at: rfc3339(stats.now_ms).unwrap_or_default(),
        machines: MachineCounts {
            total: m.total,
            active: m.active,
            idle: m.idle,
            offline: m.offline,
            unknown: m.unknown,
        },
        periods: stats.periods.into_iter().map(Into::into).collect(),
        top_wasters: stats
            .top_wasters
            .into_iter()
            .map(MachineView::from)
            .collect(),
    }))
}
