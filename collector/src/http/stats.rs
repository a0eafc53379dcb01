//! `GET /api/v1/stats`: the fleet at a glance — machines by status, and idle time, waste
//! energy, cost and CO₂ for today (since 00:00 UTC), the last 7 and 30 days, and all time.
//! Money is reported per currency, never summed across currencies. The figures are computed
//! by `operations::reports::fleet_stats`.

use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::MachineView;
use super::{ApiQuery, AppState, Result, Viewer, number, rfc3339, schema};
use crate::operations::reports::{self, PeriodTotals};

const JOULES_PER_KWH: i64 = 3_600_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(daily))
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
    /// What sleeping during the waste would have saved.
    #[schema(value_type = String)]
    avoidable_cost: Decimal,
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
    /// The part of the idle time outside the sites' business hours.
    after_hours_idle_seconds: f64,
    /// Observed time without idle data (coverage).
    unknown_seconds: f64,
    /// Unobserved time between heartbeats too far apart (coverage).
    gap_seconds: f64,
    idle_ratio: f64,
    /// Share of observed time with idle data (1 when nothing was observed).
    idle_data_ratio: f64,
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
    /// What sleeping during the waste would have saved (idle minus sleep watts).
    #[schema(value_type = String)]
    avoidable_energy_joules: Decimal,
    #[schema(value_type = String)]
    avoidable_kwh: Decimal,
    #[schema(value_type = String)]
    avoidable_co2_grams: Decimal,
    /// The part of the waste energy outside business hours.
    #[schema(value_type = String)]
    after_hours_waste_energy_joules: Decimal,
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
            after_hours_idle_seconds: sum.after_hours_idle_ms as f64 / 1000.0,
            unknown_seconds: sum.unknown_ms as f64 / 1000.0,
            gap_seconds: sum.gap_ms as f64 / 1000.0,
            idle_ratio: if sum.observed_ms > 0 {
                sum.idle_ms as f64 / sum.observed_ms as f64
            } else {
                0.0
            },
            idle_data_ratio: if sum.observed_ms > 0 {
                1.0 - sum.unknown_ms as f64 / sum.observed_ms as f64
            } else {
                1.0
            },
            avoidable_kwh: kwh(sum.avoidable_energy_j),
            avoidable_energy_joules: sum.avoidable_energy_j,
            avoidable_co2_grams: sum.avoidable_co2_g,
            after_hours_waste_energy_joules: sum.after_hours_idle_energy_j,
            energy_kwh: kwh(sum.energy_j),
            waste_kwh: kwh(sum.idle_energy_j),
            energy_joules: sum.energy_j,
            waste_energy_joules: sum.idle_energy_j,
            co2_grams: sum.co2_g,
            waste_co2_grams: sum.idle_co2_g,
            costs: p
                .costs
                .into_iter()
                .map(
                    |(currency, (cost, waste_cost, avoidable_cost))| CurrencyTotals {
                        currency,
                        cost,
                        waste_cost,
                        avoidable_cost,
                    },
                )
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

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DailyParams {
    /// Whole UTC days up to and including today (1 to 366, default 30).
    #[param(schema_with = schema::param::days)]
    days: Option<String>,
}

/// The fleet's figures of one UTC day (every machine, retired ones too). Energy only: money
/// is per currency, in the report and the stats.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayView {
    /// `YYYY-MM-DD` (UTC).
    day: String,
    #[schema(value_type = String)]
    observed_seconds: Decimal,
    #[schema(value_type = String)]
    idle_seconds: Decimal,
    #[schema(value_type = String)]
    after_hours_idle_seconds: Decimal,
    #[schema(value_type = String)]
    unknown_seconds: Decimal,
    #[schema(value_type = String)]
    gap_seconds: Decimal,
    #[schema(value_type = String)]
    energy_kwh: Decimal,
    /// Waste: idle beyond the threshold.
    #[schema(value_type = String)]
    idle_energy_kwh: Decimal,
    /// What sleeping during the waste would have saved.
    #[schema(value_type = String)]
    avoidable_energy_kwh: Decimal,
    #[schema(value_type = String)]
    after_hours_idle_energy_kwh: Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Daily {
    days: Vec<DayView>,
}

/// Fleet figures per UTC day, oldest first (the overview's trend charts).
#[utoipa::path(get, path = "/api/v1/stats/daily", tag = "stats", operation_id = "fleet_daily",
    params(DailyParams),
    responses((status = 200, description = "one entry per day", body = Daily),
        (status = 401, description = "not signed in"),
        (status = 422, description = "invalid parameter")),
    security(("session" = []), ("bearer" = [])))]
async fn daily(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiQuery(params): ApiQuery<DailyParams>,
) -> Result<Json<Daily>> {
    let days = number("days", params.days.as_deref(), 30, 366)?;
    let today = crate::clock::now_ms().div_euclid(DAY_MS) * DAY_MS;
    let from = today - (days - 1) * DAY_MS;
    let buckets =
        reports::history(state.store.as_ref(), None, from, today + DAY_MS, DAY_MS).await?;
    let kwh = |j: Decimal| (j / Decimal::from(JOULES_PER_KWH)).round_dp(9).normalize();
    let secs = |ms: i64| Decimal::new(ms, 3).normalize();
    Ok(Json(Daily {
        days: buckets
            .iter()
            .enumerate()
            .map(|(i, t)| DayView {
                day: rfc3339(from + i as i64 * DAY_MS)
                    .map(|d| d[..10].to_string())
                    .unwrap_or_default(),
                observed_seconds: secs(t.observed_ms),
                idle_seconds: secs(t.idle_ms),
                after_hours_idle_seconds: secs(t.after_hours_idle_ms),
                unknown_seconds: secs(t.unknown_ms),
                gap_seconds: secs(t.gap_ms),
                energy_kwh: kwh(t.energy_j),
                idle_energy_kwh: kwh(t.idle_energy_j),
                avoidable_energy_kwh: kwh(t.avoidable_energy_j),
                after_hours_idle_energy_kwh: kwh(t.after_hours_idle_energy_j),
            })
            .collect(),
    }))
}
