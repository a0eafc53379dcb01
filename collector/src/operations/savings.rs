//! What a sleep policy would have saved: the policy checked against what the store holds
//! (known sites and departments, a window inside raw retention), evaluated exactly over the
//! recorded raw heartbeats with the rates in force when each second was incurred.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{OpError, invalid};
use crate::accounting::savings::{Policy, Savings};
use crate::store::Store;

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
    let mut site_ids = Vec::new();
    if let Some(name) = &query.site {
        let site = sites
            .iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| invalid("site", format!("site '{name}' does not exist")))?;
        site_ids.push(site.id);
    }
    let sleep_after_ms = i64::from(query.sleep_after_minutes) * 60_000;
    let book = store.rate_book().await?;
    let policy = Policy {
        sleep_after_ms,
        after_hours_only: query.after_hours_only,
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        sites: site_ids,
        departments: query.department.iter().cloned().collect(),
    };
    let mut savings = Savings::default();
    let mut considered = 0u64;
    let mut failed: Option<String> = None;
    let departments = store
        .savings_inputs(query.from_ms, query.to_ms, sleep_after_ms, &mut |m| {
            considered += 1;
            if failed.is_none()
                && let Err(e) = policy.machine(&m.intervals, &m.placements, &book, &mut savings)
            {
                failed = Some(format!("machine {}: {e}", m.id));
            }
        })
        .await?;
    if let Some(e) = failed {
        return Err(OpError::Internal(anyhow::anyhow!(e)));
    }
    if let Some(d) = &query.department
        && !departments.contains(d)
    {
        return Err(invalid(
            "department",
            format!("no machine is or was in department '{d}'"),
        ));
    }
    let mut total = SavedFigures {
        machines: savings.machines,
        sleeps: savings.sleeps,
        ..SavedFigures::default()
    };
    let mut groups: BTreeMap<(String, String), SavedFigures> = BTreeMap::new();
    for (key, group) in &savings.groups {
        let site = names
            .get(&key.site_id)
            .cloned()
            .unwrap_or_else(|| key.site_id.to_string());
        let g = groups.entry((site, key.department.clone())).or_default();
        for f in [&mut total, g] {
            f.slept_ms += group.saved.slept_ms;
            f.energy_j += group.saved.energy_j;
            f.co2_g += group.saved.co2_g;
            *f.costs.entry(key.currency.clone()).or_default() += group.saved.cost;
        }
        // A machine is counted once per site and department even with two currencies.
        g.machines = g.machines.max(group.machines);
        g.sleeps += group.sleeps;
    }
    Ok(WhatIf {
        query,
        total,
        machines_considered: considered,
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
