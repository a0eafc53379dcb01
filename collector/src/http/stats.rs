//! `GET /api/v1/stats`: the fleet at a glance — machines by status, and idle time, waste
//! energy, cost and CO₂ for today (since 00:00 UTC), the last 7 and 30 days, and all time.
//! Money is reported per currency, never summed across currencies.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::machines::MachineView;
use super::{ApiError, AppState, rfc3339};
use crate::accounting::{Increment, Status, status};
use crate::store::admin::{Grouping, ReportQuery};
use crate::store::{MachineQuery, MachineSort};

const DAY_MS: i64 = 86_400_000;
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
pub struct PeriodTotals {
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    generated_at: String,
    machines: MachineCounts,
    periods: Vec<PeriodTotals>,
    /// The ten machines that wasted the most energy (all time).
    top_wasters: Vec<MachineView>,
}

fn period(name: &str, from_ms: Option<i64>, totals: &[(String, Increment)]) -> PeriodTotals {
    let mut sum = Increment::default();
    let mut costs: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for (currency, t) in totals {
        sum.add(t);
        let c = costs.entry(currency).or_default();
        c.0 += t.cost;
        c.1 += t.idle_cost;
    }
    let kwh = |j: Decimal| (j / Decimal::from(JOULES_PER_KWH)).round_dp(6);
    PeriodTotals {
        period: name.to_string(),
        from: from_ms.and_then(rfc3339),
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
        costs: costs
            .into_iter()
            .map(|(currency, (cost, waste_cost))| CurrencyTotals {
                currency: currency.to_string(),
                cost,
                waste_cost,
            })
            .collect(),
    }
}

/// Fleet totals for the overview page.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats",
    responses((status = 200, body = Stats)),
    security(("session" = []), ("bearer" = [])))]
async fn stats(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<Stats>, ApiError> {
    // The ten biggest wasters; the same query's status parameters derive every status here.
    let query = MachineQuery {
        sort: MachineSort::IdleEnergy,
        descending: true,
        per_page: 10,
        ..super::machines::base_query(&state)
    };
    let (now, offline_after, threshold) = (
        query.now_ms,
        query.offline_after_ms,
        query.idle_threshold_ms,
    );
    let fleet = state.listing.fleet(&state.store, &query).await?;
    let mut machines = MachineCounts::default();
    let mut all_time: Vec<(String, Increment)> = Vec::new();
    for m in fleet.iter() {
        machines.total += 1;
        match status(m.last, now, offline_after, threshold) {
            Status::Active => machines.active += 1,
            Status::Idle => machines.idle += 1,
            Status::Offline => machines.offline += 1,
            Status::Unknown => machines.unknown += 1,
        }
        // Time, energy and CO₂ once per machine; money per currency.
        all_time.push((String::new(), m.totals.clone()));
        for c in &m.costs {
            all_time.push((
                c.currency.clone(),
                Increment {
                    cost: c.cost,
                    idle_cost: c.idle_cost,
                    ..Increment::default()
                },
            ));
        }
    }
    let mut all = period("all", None, &all_time);
    all.costs.retain(|c| !c.currency.is_empty());

    // The three windows in one scan: bands 0 (today) ⊂ 0–1 (7 days) ⊂ 0–2 (30 days).
    let today = now - now.rem_euclid(DAY_MS);
    let week = now - 7 * DAY_MS;
    let month = now - 30 * DAY_MS;
    let rows = state
        .store
        .energy_report(&ReportQuery {
            from_ms: month,
            to_ms: i64::MAX,
            group: Grouping::Periods {
                today_ms: today.max(week),
                week_ms: week,
            },
            machine_id: None,
        })
        .await?;
    let band = |max: &str| -> Vec<(String, Increment)> {
        rows.iter()
            .filter(|r| r.key.as_str() <= max)
            .map(|r| (r.currency.clone(), r.totals.clone()))
            .collect()
    };
    let periods = vec![
        period("today", Some(today), &band("0")),
        period("7d", Some(week), &band("1")),
        period("30d", Some(month), &band("2")),
        all,
    ];
    let (top, _) = state.listing.list(&state.store, &query).await?;
    Ok(Json(Stats {
        generated_at: rfc3339(now).unwrap_or_default(),
        machines,
        periods,
        top_wasters: top.into_iter().map(MachineView::from).collect(),
    }))
}
