//! What a sleep policy would have saved (DESIGN §2, "what-if savings"): for "sleep after N
//! minutes without input", every recorded interval whose idle time passed N gives
//! `clamp(idle − N, 0, Δ)` of sleep at its end, priced with the rates in force then
//! (`idle − sleep` watts, the tariff, the grid intensity), split and rounded exactly as the
//! stored increments are. With N equal to the idle threshold and no window or scope, the
//! savings are the stored avoidable figures to the last digit.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::interval::{joules, stretches};
use super::rates::{Placement, RateBook};
use super::{Attribution, MissingRates, per_kwh};

/// The policy and what it is evaluated over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Sleep after this much time without input.
    pub sleep_after_ms: i64,
    /// Only sleep outside each site's business hours.
    pub after_hours_only: bool,
    /// The window `[from, to)`: sleep outside it is not counted.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only time incurred at these sites (ids) counts; empty: every site.
    pub sites: Vec<i64>,
    /// Only time incurred in these departments counts; empty: every department.
    pub departments: Vec<String>,
}

/// One recorded observed interval of a machine, as the raw heartbeats hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub end_ms: i64,
    pub observed_ms: i64,
    pub idle_ms: i64,
}

/// Savings under one attribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    pub slept_ms: i64,
    pub energy_j: Decimal,
    pub cost: Decimal,
    pub co2_g: Decimal,
}

impl Saved {
    fn add(&mut self, other: &Saved) {
        self.slept_ms += other.slept_ms;
        self.energy_j += other.energy_j;
        self.cost += other.cost;
        self.co2_g += other.co2_g;
    }
}

/// A group of the result: savings, machines that would have slept, and how many times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub saved: Saved,
    pub machines: u64,
    pub sleeps: u64,
}

/// Where savings are reported: the site, department and currency they were incurred in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub site_id: i64,
    pub department: String,
    pub currency: String,
}

impl From<Attribution> for GroupKey {
    fn from(a: Attribution) -> Self {
        Self {
            site_id: a.site_id,
            department: a.department,
            currency: a.currency,
        }
    }
}

/// The savings of a fleet, by site, department and currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Savings {
    pub groups: BTreeMap<GroupKey, Group>,
    /// Machines with any saving, counted once however many groups they appear in.
    pub machines: u64,
    pub sleeps: u64,
}

impl Policy {
    fn counts(&self, a: &Attribution) -> bool {
        (self.sites.is_empty() || self.sites.contains(&a.site_id))
            && (self.departments.is_empty() || self.departments.contains(&a.department))
    }

    /// The sleep one interval would have given, by attribution (empty when none).
    pub fn interval(
        &self,
        iv: &Interval,
        placements: &[Placement],
        book: &RateBook,
    ) -> Result<Vec<(Attribution, Saved)>, MissingRates> {
        let slept = (iv.idle_ms - self.sleep_after_ms).clamp(0, iv.observed_ms);
        let from = (iv.end_ms - slept).max(self.from_ms);
        let to = iv.end_ms.min(self.to_ms);
        if from >= to {
            return Ok(Vec::new());
        }
        let start = iv.end_ms - iv.observed_ms;
        let mut out: Vec<(Attribution, Saved)> = Vec::new();
        for (a, b, state) in stretches(start, iv.end_ms, placements, book)? {
            let ms = b.min(to) - a.max(from);
            if ms <= 0
                || (self.after_hours_only && !state.after_hours)
                || !self.counts(&state.attribution)
            {
                continue;
            }
            let energy_j = joules(ms, state.saved_watts());
            let part = Saved {
                slept_ms: ms,
                cost: per_kwh(energy_j, state.price_per_kwh),
                co2_g: per_kwh(energy_j, state.carbon_g_per_kwh),
                energy_j: energy_j.normalize(),
            };
            match out.iter_mut().find(|(at, _)| *at == state.attribution) {
                Some((_, saved)) => saved.add(&part),
                None => out.push((state.attribution, part)),
            }
        }
        Ok(out)
    }

    /// Adds one machine's intervals (sorted by end) to `savings`. A sleep is a run of
    /// back-to-back intervals (each starting where the previous ended) that are all idle past
    /// the policy's limit, with some counted saving: one machine going to sleep once.
    pub fn machine(
        &self,
        intervals: &[Interval],
        placements: &[Placement],
        book: &RateBook,
        savings: &mut Savings,
    ) -> Result<(), MissingRates> {
        let mut affected: std::collections::BTreeSet<GroupKey> = Default::default();
        let mut run_end: Option<i64> = None;
        let mut run_counted = false;
        let mut run_attribution: Option<GroupKey> = None;
        let close = |counted: bool, at: &mut Option<GroupKey>, savings: &mut Savings| {
            if let (true, Some(a)) = (counted, at.take()) {
                savings.sleeps += 1;
                savings.groups.entry(a).or_default().sleeps += 1;
            }
        };
        for iv in intervals {
            let over = iv.idle_ms > self.sleep_after_ms;
            let continues = over && run_end == Some(iv.end_ms - iv.observed_ms);
            if !continues {
                close(run_counted, &mut run_attribution, savings);
                run_counted = false;
            }
            run_end = over.then_some(iv.end_ms);
            for (attribution, saved) in self.interval(iv, placements, book)? {
                let key = GroupKey::from(attribution);
                if !run_counted {
                    // The sleep is counted where it begins.
                    run_counted = true;
                    run_attribution = Some(key.clone());
                }
                savings
                    .groups
                    .entry(key.clone())
                    .or_default()
                    .saved
                    .add(&saved);
                affected.insert(key);
            }
        }
        close(run_counted, &mut run_attribution, savings);
        if !affected.is_empty() {
            savings.machines += 1;
        }
        for a in affected {
            savings.groups.entry(a).or_default().machines += 1;
        }
        Ok(())
    }
}
