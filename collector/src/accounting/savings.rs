//! What a sleep policy would have saved (DESIGN §2, "what-if savings"): for "sleep after N
//! minutes without input", every recorded interval whose idle time passed N gives
//! `clamp(idle − N, 0, Δ)` of sleep at its end, priced with the rates in force then
//! (`idle − sleep` watts, the tariff, the grid intensity), split and rounded exactly as the
//! stored increments are. With N equal to the idle threshold and no window or scope, the
//! savings are the stored avoidable figures to the last digit.
//!
//! The window selects intervals by the moment they end. A *sleep* begins wherever counted
//! sleep begins: where an interval's sleep starts, or where counted sleep follows time that was
//! not (awake, outside the scope, or business hours for an after-hours-only policy) — the
//! machine that was already asleep at the end of the previous back-to-back interval does not
//! fall asleep again.
//!
//! Two ways to the same figures: [`Policy::machine`] walks one machine's intervals (the
//! reference), and a [`Tally`] keeps, per UTC hour, what every interval gives for *every* N
//! at once (the rollup the collector maintains as heartbeats arrive), from which
//! [`Policy::evaluate`] answers any policy by summing a few rows. The same rollup is also kept
//! per UTC day ([`Tally::days`]): a window reads the days wholly inside it from the daily rows
//! and only its edges from the hourly ones ([`spans`]), so a week costs about what two days
//! do. Property tests hold the two ways equal to the last digit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;

use super::interval::{State, joules, state_at, stretches};
use super::rates::{Placement, RateBook};
use super::{MissingRates, per_kwh};

/// Longest "sleep after" a policy may have: a week, in minutes.
pub const MAX_MINUTES: i64 = 10_080;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The UTC hour an interval ending at `end_ms` is kept under (the window selects by end).
pub fn hour_of(end_ms: i64) -> i64 {
    end_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The UTC day an hour belongs to.
pub fn day_of(hour_ms: i64) -> i64 {
    hour_ms.div_euclid(DAY_MS).saturating_mul(DAY_MS)
}

/// Where the rows of the whole hours `[from_hour, to_hour)` are read: the UTC days wholly
/// inside it from the daily rows, the hours before the first and after the last of them from
/// the hourly rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spans {
    pub hours: Vec<(i64, i64)>,
    pub days: Option<(i64, i64)>,
}

pub fn spans(from_hour: i64, to_hour: i64) -> Spans {
    let first_day = from_hour
        .div_euclid(DAY_MS)
        .saturating_add(i64::from(from_hour.rem_euclid(DAY_MS) != 0))
        .saturating_mul(DAY_MS);
    let last_day = day_of(to_hour);
    if first_day >= last_day {
        return Spans {
            hours: vec![(from_hour, to_hour)],
            days: None,
        };
    }
    Spans {
        hours: [(from_hour, first_day), (last_day, to_hour)]
            .into_iter()
            .filter(|(a, b)| a < b)
            .collect(),
        days: Some((first_day, last_day)),
    }
}

/// The policy and what it is evaluated over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Sleep after this much time without input.
    pub sleep_after_ms: i64,
    /// Only sleep outside each site's business hours.
    pub after_hours_only: bool,
    /// The window `[from, to)`: only intervals ending in it count.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only time incurred at this site (id) counts; `None`: every site.
    pub site: Option<i64>,
    /// Only time incurred in this department counts; `None`: every department.
    pub department: Option<String>,
}

/// One recorded observed interval of a machine, as the raw heartbeats hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub end_ms: i64,
    pub observed_ms: i64,
    pub idle_ms: i64,
}

impl Interval {
    fn start_ms(&self) -> i64 {
        self.end_ms - self.observed_ms
    }
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
    pub fn add(&mut self, other: &Saved) {
        self.slept_ms += other.slept_ms;
        self.energy_j += other.energy_j;
        self.cost += other.cost;
        self.co2_g += other.co2_g;
    }

    /// `ms` of sleep in a stretch of `state`, priced and rounded as a stored increment is.
    fn priced(ms: i64, state: &State) -> Self {
        let energy_j = joules(ms, state.saved_watts());
        Self {
            slept_ms: ms,
            cost: per_kwh(energy_j, state.price_per_kwh),
            co2_g: per_kwh(energy_j, state.carbon_g_per_kwh),
            energy_j: energy_j.normalize(),
        }
    }
}

/// A group of the result: savings and how many sleeps began in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub saved: Saved,
    pub sleeps: i64,
}

/// Where savings are reported: the site, department and currency they were incurred in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub site_id: i64,
    pub department: String,
    pub currency: String,
}

impl GroupKey {
    fn of(state: &State) -> Self {
        let a = &state.attribution;
        Self {
            site_id: a.site_id,
            department: a.department.clone(),
            currency: a.currency.clone(),
        }
    }
}

/// The savings of a fleet, by site, department and currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Savings {
    pub groups: BTreeMap<GroupKey, Group>,
    /// Machines with any saving per (site id, department), each counted once there.
    pub machines_at: BTreeMap<(i64, String), u64>,
    /// Machines with any saving, counted once however many groups they appear in.
    pub machines: u64,
    /// Machines idle past the limit in the window at all (before the scope and the hours).
    pub considered: u64,
    pub sleeps: i64,
}

impl Policy {
    fn in_scope(&self, site_id: i64, department: &str) -> bool {
        self.site.is_none_or(|s| s == site_id)
            && self.department.as_deref().is_none_or(|d| d == department)
    }

    /// Whether sleep in a stretch of `state` counts.
    fn counts(&self, state: &State) -> bool {
        let a = &state.attribution;
        self.in_scope(a.site_id, &a.department) && (!self.after_hours_only || state.after_hours)
    }

    /// Adds one machine's recorded intervals (sorted by end; those before the window are
    /// context: they decide whether the machine was already asleep) to `savings`.
    pub fn machine(
        &self,
        intervals: &[Interval],
        placements: &[Placement],
        book: &RateBook,
        savings: &mut Savings,
    ) -> Result<(), MissingRates> {
        let mut places: BTreeSet<(i64, String)> = BTreeSet::new();
        let mut considered = false;
        let mut previous: Option<&Interval> = None;
        for iv in intervals {
            let before =
                previous.filter(|p| p.end_ms == iv.start_ms() && p.idle_ms > self.sleep_after_ms);
            previous = Some(iv);
            if iv.end_ms < self.from_ms || iv.end_ms >= self.to_ms {
                continue;
            }
            let slept = (iv.idle_ms - self.sleep_after_ms).clamp(0, iv.observed_ms);
            if slept == 0 {
                continue;
            }
            considered = true;
            let sleep_from = iv.end_ms - slept;
            // Was the moment before this interval's sleep counted sleep?
            let mut asleep = match before {
                Some(p) if sleep_from == iv.start_ms() => {
                    self.counts(&state_at(p.end_ms - 1, placements, book)?)
                }
                _ => false,
            };
            for (a, b, state) in stretches(iv.start_ms(), iv.end_ms, placements, book)? {
                let ms = b - a.max(sleep_from);
                if ms <= 0 {
                    continue;
                }
                let counted = self.counts(&state);
                if counted {
                    let key = GroupKey::of(&state);
                    let group = savings.groups.entry(key.clone()).or_default();
                    group.saved.add(&Saved::priced(ms, &state));
                    if !asleep {
                        group.sleeps += 1;
                        savings.sleeps += 1;
                    }
                    places.insert((key.site_id, key.department));
                }
                asleep = counted;
            }
        }
        if considered {
            savings.considered += 1;
        }
        if !places.is_empty() {
            savings.machines += 1;
        }
        for place in places {
            *savings.machines_at.entry(place).or_default() += 1;
        }
        Ok(())
    }
}

/// What a machine's previous recorded interval tells the next one: it ended at `end_ms`,
/// idle `idle_ms` (the machine was asleep at its end under every limit below that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    pub end_ms: i64,
    pub idle_ms: i64,
}

/// How a rollup row counts (`ShareKey::kind`): the savings of intervals asleep all through
/// for every N up to `n`, the savings of intervals whose sleep starts inside them for N = `n`
/// exactly, or the change at `n` of the number of sleeps beginning (`SLEEPS` + what came
/// before: awake, or asleep with these flags relative to the stretch that begins).
pub mod kind {
    pub const WHOLE: i16 = 0;
    pub const PARTIAL: i16 = 1;
    pub const SLEEPS: i16 = 2;
    /// Before the stretch the machine was awake (no other flag is set).
    pub const AWAKE: i16 = 8;
    pub const SAME_SITE: i16 = 1;
    pub const SAME_DEPARTMENT: i16 = 2;
    pub const AFTER_HOURS: i16 = 4;
}

/// A rollup row's key: one UTC hour, one attribution and business/after-hours part, one kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareKey {
    pub hour_ms: i64,
    pub site_id: i64,
    pub department: String,
    pub currency: String,
    pub after_hours: bool,
    pub kind: i16,
    pub n: i32,
}

/// A rollup row's values: savings (for `WHOLE` and `PARTIAL`) or a change in sleeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Share {
    pub saved: Saved,
    pub sleeps: i64,
}

impl Share {
    pub fn add(&mut self, other: &Share) {
        self.saved.add(&other.saved);
        self.sleeps += other.sleeps;
    }

    fn is_zero(&self) -> bool {
        *self == Share::default()
    }
}

/// A machine's reach in one hour and place: the largest N (minutes) under which it would have
/// slept there at all, and after hours (0: never).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReachKey {
    pub hour_ms: i64,
    pub machine: i64,
    pub site_id: i64,
    pub department: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    pub always: i32,
    pub after_hours: i32,
}

impl Reach {
    pub fn merge(&mut self, other: Reach) {
        self.always = self.always.max(other.always);
        self.after_hours = self.after_hours.max(other.after_hours);
    }
}

/// The rollup of any number of intervals: what each hour gives for every N at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub shares: HashMap<ShareKey, Share>,
    pub reach: HashMap<ReachKey, Reach>,
}

/// `N·60 000 < x` exactly when `N ≤ below(x)`.
fn below(x: i64) -> i64 {
    (x - 1).div_euclid(MINUTE_MS)
}

/// `N·60 000 ≤ x` exactly when `N ≤ up_to(x)`.
fn up_to(x: i64) -> i64 {
    x.div_euclid(MINUTE_MS)
}

fn minutes(n: i64) -> i32 {
    // Callers clamp to 1..=MAX_MINUTES + 1 first.
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Tally {
    /// Adds one recorded interval of `machine`. `before` is the machine's previous recorded
    /// interval idle over a minute, if this one starts where it ended. Intervals idle a minute
    /// or less give nothing (no policy sleeps sooner) and need not be added.
    pub fn add(
        &mut self,
        machine: i64,
        iv: &Interval,
        before: Option<Before>,
        placements: &[Placement],
        book: &RateBook,
    ) -> Result<(), MissingRates> {
        let (end, delta, idle) = (iv.end_ms, iv.observed_ms, iv.idle_ms);
        if idle <= MINUTE_MS || delta <= 0 {
            return Ok(());
        }
        let start = end - delta;
        let hour_ms = hour_of(end);
        let pieces = stretches(start, end, placements, book)?;
        let key = |state: &State, kind: i16, n: i64| ShareKey {
            hour_ms,
            site_id: state.attribution.site_id,
            department: state.attribution.department.clone(),
            currency: state.attribution.currency.clone(),
            after_hours: state.after_hours,
            kind,
            n: minutes(n),
        };
        // Asleep all through for N ≤ whole (N·60 000 ≤ idle − Δ).
        let whole = up_to(idle - delta).min(MAX_MINUTES);
        if whole >= 1 {
            for (a, b, state) in &pieces {
                let share = Share {
                    saved: Saved::priced(b - a, state),
                    sleeps: 0,
                };
                self.put(key(state, kind::WHOLE, whole), &share);
            }
        }
        // The sleep starts inside for idle − Δ < N·60 000 < idle.
        for n in (whole.max(0) + 1)..=below(idle).min(MAX_MINUTES) {
            let sleep_from = end - (idle - n * MINUTE_MS);
            for (a, b, state) in &pieces {
                let ms = b - a.max(&sleep_from);
                if ms > 0 {
                    let share = Share {
                        saved: Saved::priced(ms, state),
                        sleeps: 0,
                    };
                    self.put(key(state, kind::PARTIAL, n), &share);
                }
            }
        }
        // Reach: a stretch ending at b is slept in for N·60 000 < idle − (end − b).
        for (_, b, state) in &pieces {
            let reach = below(idle - (end - b)).min(MAX_MINUTES);
            if reach < 1 {
                continue;
            }
            let entry = self
                .reach
                .entry(ReachKey {
                    hour_ms,
                    machine,
                    site_id: state.attribution.site_id,
                    department: state.attribution.department.clone(),
                })
                .or_default();
            entry.merge(Reach {
                always: minutes(reach),
                after_hours: if state.after_hours { minutes(reach) } else { 0 },
            });
        }
        // Sleeps: where each stretch could begin counted sleep, and what came before it.
        let prior = match before {
            Some(p) if p.end_ms == start => {
                Some((p.idle_ms, state_at(p.end_ms - 1, placements, book)?))
            }
            _ => None,
        };
        for (k, (a, b, state)) in pieces.iter().enumerate() {
            // In this stretch at all: N·60 000 < idle − (end − b).
            let last = below(idle - (end - b));
            if k == 0 {
                // The sleep starts inside it: idle − Δ < N·60 000.
                self.sleeps(key(state, kind::SLEEPS + kind::AWAKE, 0), whole + 1, last);
                // Asleep all through: the previous interval decides.
                match &prior {
                    Some((prior_idle, prior_state)) => {
                        let asleep = below(*prior_idle).min(whole);
                        let class = relative(prior_state, state);
                        if let Some(class) = class {
                            self.sleeps(key(state, kind::SLEEPS + class, 0), 1, asleep);
                        }
                        self.sleeps(
                            key(state, kind::SLEEPS + kind::AWAKE, 0),
                            asleep.max(0) + 1,
                            whole,
                        );
                    }
                    None => self.sleeps(key(state, kind::SLEEPS + kind::AWAKE, 0), 1, whole),
                }
            } else {
                // The sleep starts exactly at a or inside: idle − (end − a) ≤ N·60 000.
                let through = below(idle - (end - a));
                self.sleeps(key(state, kind::SLEEPS + kind::AWAKE, 0), through + 1, last);
                // Asleep in the stretch before.
                if let Some(class) = relative(&pieces[k - 1].2, state) {
                    self.sleeps(key(state, kind::SLEEPS + class, 0), 1, through);
                }
            }
        }
        Ok(())
    }

    fn put(&mut self, key: ShareKey, share: &Share) {
        self.shares.entry(key).or_default().add(share);
    }

    /// One more sleep beginning for every N in `first..=last` (clamped to 1..=MAX_MINUTES):
    /// +1 at `first`, −1 after `last`.
    fn sleeps(&mut self, key: ShareKey, first: i64, last: i64) {
        let (first, last) = (first.max(1), last.min(MAX_MINUTES));
        if first > last {
            return;
        }
        for (n, change) in [(first, 1), (last + 1, -1)] {
            if n > MAX_MINUTES {
                continue;
            }
            let key = ShareKey {
                n: minutes(n),
                ..key.clone()
            };
            let entry = self.shares.entry(key.clone()).or_default();
            entry.sleeps += change;
            if entry.is_zero() {
                self.shares.remove(&key);
            }
        }
    }

    /// Adds another tally (exact).
    pub fn merge(&mut self, other: Tally) {
        for (key, share) in other.shares {
            self.put(key, &share);
        }
        for (key, reach) in other.reach {
            self.reach.entry(key).or_default().merge(reach);
        }
        self.shares.retain(|_, s| !s.is_zero());
    }

    /// The same rollup per UTC day: each key's hour replaced by its day (shares summed,
    /// reach the largest), what the daily rows of a store hold.
    pub fn days(&self) -> Tally {
        let mut days = Tally::default();
        for (key, share) in &self.shares {
            let key = ShareKey {
                hour_ms: day_of(key.hour_ms),
                ..key.clone()
            };
            days.put(key, share);
        }
        for (key, reach) in &self.reach {
            let key = ReachKey {
                hour_ms: day_of(key.hour_ms),
                ..key.clone()
            };
            days.reach.entry(key).or_default().merge(*reach);
        }
        days.shares.retain(|_, s| !s.is_zero());
        days
    }

    /// The rows a store answers for the hours `[from_hour, to_hour)` and N = `n` minutes (see
    /// [`ShareRow`]), read as a store reads them ([`spans`]: this tally for the edge hours, its
    /// [`Tally::days`] for the days between); what the SQL of the stores computes, for tests.
    pub fn rows(&self, from_hour: i64, to_hour: i64, n: i64) -> (Vec<ShareRow>, Vec<ReachRow>) {
        let spans = spans(from_hour, to_hour);
        let days = self.days();
        let mut shares: BTreeMap<RowKey, Share> = BTreeMap::new();
        let mut reach = BTreeMap::new();
        let parts = spans
            .hours
            .iter()
            .map(|span| (self, *span))
            .chain(spans.days.map(|span| (&days, span)));
        for (tally, (from, to)) in parts {
            for (k, s) in &tally.shares {
                if k.hour_ms >= from && k.hour_ms < to && selects(k.kind, i64::from(k.n), n) {
                    shares
                        .entry((
                            k.site_id,
                            k.department.clone(),
                            k.currency.clone(),
                            k.after_hours,
                            k.kind,
                        ))
                        .or_default()
                        .add(s);
                }
            }
            for (k, r) in &tally.reach {
                if k.hour_ms >= from && k.hour_ms < to && i64::from(r.always) >= n {
                    add_reach(&mut reach, k.machine, k.site_id, &k.department, *r);
                }
            }
        }
        (share_rows(shares), reach_rows(reach))
    }
}

/// A machine's reach in one place, by (machine, site id, department).
pub type Reaches = BTreeMap<(i64, i64, String), Reach>;

/// Takes one more reach of a machine in a place (the largest counts).
pub fn add_reach(reaches: &mut Reaches, machine: i64, site_id: i64, department: &str, r: Reach) {
    reaches
        .entry((machine, site_id, department.to_string()))
        .or_default()
        .merge(r);
}

/// Reaches as rows.
pub fn reach_rows(reaches: Reaches) -> Vec<ReachRow> {
    reaches
        .into_iter()
        .map(|((machine, site_id, department), reach)| ReachRow {
            machine,
            site_id,
            department,
            reach,
        })
        .collect()
}

/// Whether a row of `kind` kept under `row_n` counts for N = `n`: whole-interval savings for
/// every N up to theirs, partial ones for their N only, sleep changes from their N on.
pub fn selects(kind: i16, row_n: i64, n: i64) -> bool {
    match kind {
        kind::WHOLE => row_n >= n,
        kind::PARTIAL => row_n == n,
        _ => row_n <= n,
    }
}

/// How the state before a stretch relates to the stretch (the `SLEEPS` class), or `None` when
/// no policy could see sleep begin there (same site, department, and after hours if it is).
fn relative(before: &State, now: &State) -> Option<i16> {
    let same_site = before.attribution.site_id == now.attribution.site_id;
    let same_department = before.attribution.department == now.attribution.department;
    if same_site && same_department && (before.after_hours || !now.after_hours) {
        return None;
    }
    let mut class = 0;
    if same_site {
        class |= kind::SAME_SITE;
    }
    if same_department {
        class |= kind::SAME_DEPARTMENT;
    }
    if before.after_hours {
        class |= kind::AFTER_HOURS;
    }
    Some(class)
}

/// The rollup rows of a window and N, summed over hours (and N as [`selects`] says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    pub site_id: i64,
    pub department: String,
    pub currency: String,
    pub after_hours: bool,
    pub kind: i16,
    pub share: Share,
}

/// A share row's key: site id, department, currency, after hours, kind.
pub type RowKey = (i64, String, String, bool, i16);

/// Summed shares as rows.
pub fn share_rows(sums: BTreeMap<RowKey, Share>) -> Vec<ShareRow> {
    sums.into_iter()
        .map(
            |((site_id, department, currency, after_hours, kind), share)| ShareRow {
                site_id,
                department,
                currency,
                after_hours,
                kind,
                share,
            },
        )
        .collect()
}

/// A machine's reach in one place over a window (largest over its hours); only machines that
/// reach N at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachRow {
    pub machine: i64,
    pub site_id: i64,
    pub department: String,
    pub reach: Reach,
}

impl Policy {
    /// The savings from the rollup rows of the policy's window and N (see [`Tally::rows`]).
    pub fn evaluate(&self, shares: &[ShareRow], reach: &[ReachRow]) -> Savings {
        let mut savings = Savings::default();
        let n = self.sleep_after_ms / MINUTE_MS;
        for row in shares {
            if !self.in_scope(row.site_id, &row.department)
                || (self.after_hours_only && !row.after_hours)
            {
                continue;
            }
            let key = GroupKey {
                site_id: row.site_id,
                department: row.department.clone(),
                currency: row.currency.clone(),
            };
            if row.kind < kind::SLEEPS {
                savings
                    .groups
                    .entry(key)
                    .or_default()
                    .saved
                    .add(&row.share.saved);
                continue;
            }
            let class = row.kind - kind::SLEEPS;
            let begins = class == kind::AWAKE
                || (self.site.is_some() && class & kind::SAME_SITE == 0)
                || (self.department.is_some() && class & kind::SAME_DEPARTMENT == 0)
                || (self.after_hours_only && class & kind::AFTER_HOURS == 0);
            if begins && row.share.sleeps != 0 {
                savings.groups.entry(key).or_default().sleeps += row.share.sleeps;
                savings.sleeps += row.share.sleeps;
            }
        }
        let mut considered = BTreeSet::new();
        let mut affected = BTreeSet::new();
        for row in reach {
            if i64::from(row.reach.always) < n {
                continue;
            }
            considered.insert(row.machine);
            let reach = if self.after_hours_only {
                row.reach.after_hours
            } else {
                row.reach.always
            };
            if i64::from(reach) >= n && self.in_scope(row.site_id, &row.department) {
                affected.insert(row.machine);
                *savings
                    .machines_at
                    .entry((row.site_id, row.department.clone()))
                    .or_default() += 1;
            }
        }
        savings.considered = considered.len() as u64;
        savings.machines = affected.len() as u64;
        savings.groups.retain(|_, g| *g != Group::default());
        savings
    }
}
