//! What a sleep policy would have saved: the policy checked against what the store holds
//! (known sites and departments, a window inside raw retention), evaluated exactly over the
//! recorded raw heartbeats with the rates in force when each second was incurred.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{OpError, invalid};
use crate::accounting::rates::Placement;
use crate::accounting::savings::{Before, Interval, Policy, Tally, hour_of};
use crate::store::Store;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// `sent_at` covered by the first batch of a catch-up; it doubles while batches find little.
const FIRST_SPAN_MS: i64 = 15 * 60_000;
/// A batch reads about this many raw heartbeats at most (the span halves beyond it).
const BATCH_INTERVALS: u64 = 200_000;

fn ceil_hour(ms: i64) -> i64 {
    let h = hour_of(ms);
    if h == ms { h } else { h + HOUR_MS }
}

fn count(sleeps: i64) -> u64 {
    u64::try_from(sleeps).unwrap_or(0)
}

/// What bringing the what-if rollup up to date did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caught {
    pub batches: u64,
    pub intervals: u64,
}

/// Brings the what-if rollup up to date with every raw heartbeat committed so far (within
/// raw retention), batch by batch; long catch-ups (an upgrade, a fleet's first week) log
/// their progress.
pub async fn bring_up_to_date(
    store: &dyn Store,
    raw_days: u64,
    now_ms: i64,
) -> Result<Caught, OpError> {
    let floor = hour_of(
        now_ms.saturating_sub(
            i64::try_from(raw_days)
                .unwrap_or(i64::MAX)
                .saturating_mul(DAY_MS),
        ),
    );
    let book = store.rate_book().await?;
    let mut caught = Caught::default();
    let mut span = FIRST_SPAN_MS;
    let started = std::time::Instant::now();
    loop {
        let mut compute = |machine: i64,
                           placements: &[Placement],
                           before: Option<Before>,
                           iv: &Interval,
                           tally: &mut Tally| {
            tally
                .add(machine, iv, before, placements, &book)
                .map_err(|e| e.to_string())
        };
        let batch = store.roll_up_savings(floor, span, &mut compute).await?;
        caught.batches += 1;
        caught.intervals += batch.intervals;
        if !batch.more {
            break;
        }
        if batch.intervals < BATCH_INTERVALS / 4 {
            span = span.saturating_mul(2);
        } else if batch.intervals > BATCH_INTERVALS {
            span = (span / 2).max(60_000);
        }
        if caught.batches % 20 == 0 {
            tracing::info!(
                intervals = caught.intervals,
                seconds = started.elapsed().as_secs(),
                "what-if rollup: catching up with the raw heartbeats"
            );
        }
    }
    Ok(caught)
}

/// Longest "sleep after" accepted: a week.
pub const MAX_SLEEP_AFTER_MINUTES: u32 = 10_080;

/// A what-if question as a caller asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfQuery {
    pub sleep_after_minutes: u32,
    pub after_hours_only: bool,
    /// A site name; `None`: every site.
    pub site: Option<String>,
    pub department: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Savings of one group (or of all of them): energy, money per currency, CO₂.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedFigures {
    pub slept_ms: i64,
    pub energy_j: Decimal,
    /// Currency → amount.
    pub costs: BTreeMap<String, Decimal>,
    pub co2_g: Decimal,
    pub machines: u64,
    pub sleeps: u64,
}

/// One site and department's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfGroup {
    pub site: String,
    pub department: String,
    pub figures: SavedFigures,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIf {
    pub query: WhatIfQuery,
    pub total: SavedFigures,
    /// Machines with recorded heartbeats idle past the policy's limit in the window.
    pub machines_considered: u64,
    pub groups: Vec<WhatIfGroup>,
}

/// Checks the question and answers it.
pub async fn what_if(
    store: &dyn Store,
    query: WhatIfQuery,
    raw_days: u64,
    now_ms: i64,
) -> Result<WhatIf, OpError> {
    if query.sleep_after_minutes == 0 || query.sleep_after_minutes > MAX_SLEEP_AFTER_MINUTES {
        return Err(invalid(
            "sleep_after_minutes",
            format!("must be a whole number of minutes from 1 to {MAX_SLEEP_AFTER_MINUTES}"),
        ));
    }
    if query.from_ms >= query.to_ms {
        return Err(invalid("from", "must be before to"));
    }
    if query.to_ms > now_ms {
        return Err(invalid("to", "must not be in the future"));
    }
    let retained_from = now_ms.saturating_sub(
        i64::try_from(raw_days)
            .unwrap_or(i64::MAX)
            .saturating_mul(86_400_000),
    );
    if query.from_ms < retained_from {
        return Err(invalid(
            "from",
            format!(
                "is before the raw heartbeats kept (retention.raw_days = {raw_days}): use a window in the last {raw_days} days"
            ),
        ));
    }
    let sites = store.list_sites(now_ms).await?;
    let names: BTreeMap<i64, String> = sites.iter().map(|s| (s.id, s.name.clone())).collect();
    let site_id = match &query.site {
        Some(name) => Some(
            sites
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| invalid("site", format!("site '{name}' does not exist")))?
                .id,
        ),
        None => None,
    };
    bring_up_to_date(store, raw_days, now_ms).await?;
    let sleep_after_ms = i64::from(query.sleep_after_minutes) * 60_000;
    let policy = Policy {
        sleep_after_ms,
        after_hours_only: query.after_hours_only,
        from_ms: hour_of(query.from_ms),
        to_ms: ceil_hour(query.to_ms),
        site: site_id,
        department: query.department.clone(),
    };
    let rows = store
        .savings_rows(
            policy.from_ms,
            policy.to_ms,
            i64::from(query.sleep_after_minutes),
        )
        .await?;
    if let Some(d) = &query.department
        && !rows.departments.contains(d)
    {
        return Err(invalid(
            "department",
            format!("no machine is or was in department '{d}'"),
        ));
    }
    let savings = policy.evaluate(&rows.shares, &rows.reach);
    let mut total = SavedFigures {
        machines: savings.machines,
        sleeps: count(savings.sleeps),
        ..SavedFigures::default()
    };
    let mut groups: BTreeMap<(String, String), SavedFigures> = BTreeMap::new();
    for (key, group) in &savings.groups {
        let site = names
            .get(&key.site_id)
            .cloned()
            .unwrap_or_else(|| key.site_id.to_string());
        let g = groups.entry((site, key.department.clone())).or_default();
        g.machines = savings
            .machines_at
            .get(&(key.site_id, key.department.clone()))
            .copied()
            .unwrap_or(0);
        for f in [&mut total, g] {
            f.slept_ms += group.saved.slept_ms;
            f.energy_j += group.saved.energy_j;
            f.co2_g += group.saved.co2_g;
            *f.costs.entry(key.currency.clone()).or_default() += group.saved.cost;
        }
        g.sleeps += count(group.sleeps);
    }
    // The window used: whole UTC hours, intervals selected by their end.
    let query = WhatIfQuery {
        from_ms: policy.from_ms,
        to_ms: policy.to_ms,
        ..query
    };
    Ok(WhatIf {
        query,
        total,
        machines_considered: savings.considered,
        groups: groups
            .into_iter()
            .map(|((site, department), figures)| WhatIfGroup {
                site,
                department,
                figures,
            })
            .collect(),
    })
}
