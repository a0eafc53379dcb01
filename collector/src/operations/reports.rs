//! Read-only figures computed from the store: the energy report (CSV rows), a machine's
//! history and the fleet statistics of the overview. Money is always per currency.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rust_decimal::Decimal;

use super::OpError;
use crate::accounting::{Increment, Status, status};
use crate::listing::Listing;
use crate::store::admin::{Attribution, Grouping, ReportQuery, ReportRow};
use crate::store::{MachineQuery, MachineRow, MachineSort, Store};

const DAY_MS: i64 = 86_400_000;

/// Labels of a machine row in a report.
#[derive(Debug, Clone, Default)]
pub struct MachineLabels {
    pub hostname: String,
    pub site: String,
    pub department: String,
}

/// Report rows and, when grouped by machine, each machine's labels.
#[derive(Debug)]
pub struct EnergyReport {
    pub rows: Vec<ReportRow>,
    pub labels: HashMap<String, MachineLabels>,
}

/// Sums of the usage of the hours (and, for old data, days) starting in `[from, to)`,
/// grouped, every machine counted (retired ones too), by where the usage was incurred or by
/// the machines' current placement.
pub async fn energy(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
    group: Grouping,
    attribution: Attribution,
) -> Result<EnergyReport, OpError> {
    let rows = store
        .energy_report(&ReportQuery {
            from_ms,
            to_ms,
            group,
            attribution,
            machine_id: None,
        })
        .await?;
    let labels = if group == Grouping::Machine {
        store
            .fleet_snapshot()
            .await?
            .machines
            .into_iter()
            .map(|m| {
                (
                    m.id,
                    MachineLabels {
                        hostname: m.hostname,
                        site: m.site,
                        department: m.department,
                    },
                )
            })
            .collect()
    } else {
        HashMap::new()
    };
    Ok(EnergyReport { rows, labels })
}

/// One machine's totals per step of `step_ms` from `from_ms` (the last step may be shorter).
pub async fn history(
    store: &dyn Store,
    machine_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Result<Vec<Increment>, OpError> {
    let points = usize::try_from((to_ms - from_ms + step_ms - 1) / step_ms).unwrap_or(0);
    let rows = store
        .energy_report(&ReportQuery {
            from_ms,
            to_ms,
            group: Grouping::Step { step_ms },
            attribution: Attribution::Incurred,
            machine_id: machine_id.map(str::to_string),
        })
        .await?;
    let mut buckets: Vec<Increment> = vec![Increment::default(); points];
    for row in rows {
        if let Some(bucket) = row
            .key
            .parse::<usize>()
            .ok()
            .and_then(|i| buckets.get_mut(i))
        {
            bucket.add(&row.totals);
        }
    }
    Ok(buckets)
}

/// Live machines per derived status.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatusCounts {
    pub total: i64,
    pub active: i64,
    pub idle: i64,
    pub offline: i64,
    pub unknown: i64,
}

/// Totals over one period: time, energy and CO₂ summed, money per currency.
#[derive(Debug, Clone)]
pub struct PeriodTotals {
    /// `today`, `7d`, `30d` or `all`.
    pub name: &'static str,
    /// Start of the period; none for `all`.
    pub from_ms: Option<i64>,
    pub sum: Increment,
    /// Currency → (cost, waste cost, avoidable cost).
    pub costs: BTreeMap<String, (Decimal, Decimal, Decimal)>,
}

impl PeriodTotals {
    fn of(name: &'static str, from_ms: Option<i64>, parts: &[(&str, &Increment)]) -> Self {
        let mut sum = Increment::default();
        let mut costs: BTreeMap<String, (Decimal, Decimal, Decimal)> = BTreeMap::new();
        for (currency, t) in parts {
            sum.add(t);
            if !currency.is_empty() {
                let c = costs.entry((*currency).to_string()).or_default();
                c.0 += t.cost;
                c.1 += t.idle_cost;
                c.2 += t.avoidable_cost;
            }
        }
        Self {
            name,
            from_ms,
            sum,
            costs,
        }
    }
}

/// The fleet at a glance.
#[derive(Debug)]
pub struct FleetStats {
    pub now_ms: i64,
    pub machines: StatusCounts,
    pub periods: Vec<PeriodTotals>,
    /// The ten machines that wasted the most energy (all time).
    pub top_wasters: Vec<MachineRow>,
}

/// Machines by status and the stats periods (today since 00:00 UTC, 7 and 30 days, all time;
/// whole hours), every machine's usage counted — retired machines' too.
/// `base` carries the clock and the status parameters.
pub async fn fleet_stats(
    store: &Arc<dyn Store>,
    listing: &Arc<Listing>,
    base: MachineQuery,
) -> Result<FleetStats, OpError> {
    let query = MachineQuery {
        sort: MachineSort::IdleEnergy,
        descending: true,
        per_page: 10,
        ..base
    };
    let (now, offline_after, threshold) = (
        query.now_ms,
        query.offline_after_ms,
        query.idle_threshold_ms,
    );
    let fleet = listing.fleet(store).await?;
    let mut machines = StatusCounts::default();
    let mut money: Vec<(String, Increment)> = Vec::new();
    for m in fleet.all() {
        // Retired machines are no longer counted by status; their history stays in the totals.
        if !m.retired {
            machines.total += 1;
            match status(m.last, now, offline_after, threshold) {
                Status::Active => machines.active += 1,
                Status::Idle => machines.idle += 1,
                Status::Offline => machines.offline += 1,
                Status::Unknown => machines.unknown += 1,
            }
        }
        for c in &m.costs {
            money.push((
                c.currency.clone(),
                Increment {
                    cost: c.cost,
                    idle_cost: c.idle_cost,
                    avoidable_cost: c.avoidable_cost,
                    ..Increment::default()
                },
            ));
        }
    }
    // Time, energy and CO₂ once per machine; money per currency.
    let mut all_parts: Vec<(&str, &Increment)> = fleet.all().map(|m| ("", &m.totals)).collect();
    all_parts.extend(money.iter().map(|(c, t)| (c.as_str(), t)));
    let all = PeriodTotals::of("all", None, &all_parts);

    // The three windows in one scan: bands 0 (today) ⊂ 0–1 (7 days) ⊂ 0–2 (30 days).
    // Usage is stored per hour: the windows start on whole hours.
    let hour = now - now.rem_euclid(crate::accounting::rates::HOUR_MS);
    let today = now - now.rem_euclid(DAY_MS);
    let week = hour - 7 * DAY_MS;
    let month = hour - 30 * DAY_MS;
    let rows = store
        .energy_report(&ReportQuery {
            from_ms: month,
            to_ms: i64::MAX,
            group: Grouping::Periods {
                today_ms: today.max(week),
                week_ms: week,
            },
            attribution: Attribution::Incurred,
            machine_id: None,
        })
        .await?;
    let band = |max: &str| -> Vec<(&str, &Increment)> {
        rows.iter()
            .filter(|r| r.key.as_str() <= max)
            .map(|r| (r.currency.as_str(), &r.totals))
            .collect()
    };
    let periods = vec![
        PeriodTotals::of("today", Some(today), &band("0")),
        PeriodTotals::of("7d", Some(week), &band("1")),
        PeriodTotals::of("30d", Some(month), &band("2")),
        all,
    ];
    let (top_wasters, _) = listing.list(store, &query).await?;
    Ok(FleetStats {
        now_ms: now,
        machines,
        periods,
        top_wasters,
    })
}
