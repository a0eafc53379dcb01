//! One heartbeat's interval, accounted as DESIGN §2 (v2) says: from the machine's high-water
//! mark, with the threshold and maximum gap in force at the heartbeat, split exactly where any
//! rate or attribution changes inside it, each part priced with what was in force then.

use greenops_protocol::ValidHeartbeat;
use rust_decimal::Decimal;

use super::rates::{HOUR_MS, Placement, RateBook, changes, in_force};
use super::{Increment, per_kwh};

/// What the accounting remembers about a machine between heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Highest accepted `seq` of the machine's current credential (0 before the first).
    pub last_seq: u64,
    /// The latest `sent_at` accepted so far (the high-water mark).
    pub hw_ms: Option<i64>,
}

/// Where an increment was incurred.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attribution {
    pub site_id: i64,
    pub department: String,
    pub profile_id: i64,
    pub currency: String,
}

/// One stored increment: what an interval added in one UTC hour under one attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Start of the UTC hour the part ends in.
    pub hour_ms: i64,
    pub attribution: Attribution,
    pub increment: Increment,
}

/// What accepting a heartbeat did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The increments, merged by hour and attribution.
    pub parts: Vec<Part>,
    /// Length of the observed interval (0 when unobserved).
    pub observed_ms: i64,
}

/// The result of offering one heartbeat to a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `seq` not above the credential's last accepted one: acknowledged, nothing changes.
    Duplicate,
    Accepted(Accepted),
}

/// Why an interval could not be priced: the store holds no version of a site or profile a
/// placement names (a broken database, never the heartbeat's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no rates for {0}")]
pub struct MissingRates(pub String);

/// Accounts `hb` against the machine's `cursor` (advanced when accepted), its `placements`
/// (sorted by `effective_from_ms`, at least one) and the rate book. The clock-skew rule and
/// field validation are applied by the caller, after the duplicate check.
pub fn account(
    cursor: &mut Cursor,
    hb: &ValidHeartbeat,
    placements: &[Placement],
    book: &RateBook,
) -> Result<Outcome, MissingRates> {
    if hb.seq <= cursor.last_seq {
        return Ok(Outcome::Duplicate);
    }
    let end = hb.sent_at_ms;
    let settings = book.settings_at(end);
    let placement = in_force(placements, end).ok_or_else(|| MissingRates("a placement".into()))?;
    let site = book
        .site_at(placement.site_id, end)
        .ok_or_else(|| MissingRates(format!("site {}", placement.site_id)))?;
    let threshold = site.idle_threshold_ms.unwrap_or(settings.idle_threshold_ms);
    let previous = cursor.hw_ms;
    cursor.last_seq = hb.seq;
    cursor.hw_ms = Some(previous.map_or(end, |hw| hw.max(end)));
    let Some(start) = previous else {
        return Ok(Outcome::Accepted(Accepted::default()));
    };
    let delta = end - start;
    if delta <= 0 {
        return Ok(Outcome::Accepted(Accepted::default()));
    }
    if delta > settings.max_gap_ms {
        // Unobserved: the machine may have been off. The gap is reported as coverage.
        let gap = Increment {
            gap_ms: delta,
            ..Increment::default()
        };
        let attribution = Attribution {
            site_id: placement.site_id,
            department: placement.department.clone(),
            profile_id: placement.profile_id,
            currency: site.tariff.currency.clone(),
        };
        return Ok(Outcome::Accepted(Accepted {
            parts: vec![Part {
                hour_ms: bucket(end),
                attribution,
                increment: gap,
            }],
            observed_ms: 0,
        }));
    }
    let (waste, unknown) = match hb.idle_ms {
        // Unknown idle: observed, never waste; energy at idle power.
        None => (0, true),
        Some(idle) => ((idle - threshold).clamp(0, delta), false),
    };
    let parts = split(start, end, waste, unknown, placements, book)?;
    Ok(Outcome::Accepted(Accepted {
        parts,
        observed_ms: delta,
    }))
}

/// Totals of a stream delivered to a fresh machine in the given order: what the collector
/// stores for it (duplicates skipped). For reference computations in tests and benchmarks.
pub fn replay<'a>(
    heartbeats: impl IntoIterator<Item = &'a ValidHeartbeat>,
    placements: &[Placement],
    book: &RateBook,
) -> Result<Increment, MissingRates> {
    let mut cursor = Cursor::default();
    let mut total = Increment::default();
    for hb in heartbeats {
        if let Outcome::Accepted(accepted) = account(&mut cursor, hb, placements, book)? {
            for part in &accepted.parts {
                total.add(&part.increment);
            }
        }
    }
    Ok(total)
}

/// The hour a part ending at `end_ms` (exclusive) is stored under.
fn bucket(end_ms: i64) -> i64 {
    (end_ms - 1).div_euclid(HOUR_MS) * HOUR_MS
}

/// Everything that prices a stretch of time; where it changes, the interval is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct State {
    pub(super) attribution: Attribution,
    idle_watts: Decimal,
    active_watts: Decimal,
    sleep_watts: Decimal,
    pub(super) price_per_kwh: Decimal,
    pub(super) carbon_g_per_kwh: Decimal,
    pub(super) after_hours: bool,
}

impl State {
    /// What sleeping instead of idling saves per second: idle minus sleep watts, never negative.
    pub(super) fn saved_watts(&self) -> Decimal {
        (self.idle_watts - self.sleep_watts).max(Decimal::ZERO)
    }
}

pub(super) fn state_at(
    at_ms: i64,
    placements: &[Placement],
    book: &RateBook,
) -> Result<State, MissingRates> {
    let placement =
        in_force(placements, at_ms).ok_or_else(|| MissingRates("a placement".into()))?;
    let site = book
        .site_at(placement.site_id, at_ms)
        .ok_or_else(|| MissingRates(format!("site {}", placement.site_id)))?;
    let profile = book
        .profile_at(placement.profile_id, at_ms)
        .ok_or_else(|| MissingRates(format!("power profile {}", placement.profile_id)))?;
    Ok(State {
        attribution: Attribution {
            site_id: placement.site_id,
            department: placement.department.clone(),
            profile_id: placement.profile_id,
            currency: site.tariff.currency.clone(),
        },
        idle_watts: profile.idle_watts,
        active_watts: profile.active_watts,
        sleep_watts: profile.sleep_watts,
        price_per_kwh: site.price_at(at_ms),
        carbon_g_per_kwh: book.carbon_at(placement.site_id, site, at_ms),
        after_hours: site.after_hours_at(at_ms),
    })
}

/// Every instant in `(start, end)` where something that prices time may change.
fn edges(start: i64, end: i64, placements: &[Placement], book: &RateBook) -> Vec<i64> {
    let mut placement_edges = Vec::new();
    changes(placements, start, end, &mut placement_edges);
    let mut points = vec![start];
    points.extend(&placement_edges);
    points.push(end);
    points.sort_unstable();
    let mut out = placement_edges;
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let Some(placement) = in_force(placements, a) else {
            continue;
        };
        if let Some(versions) = book.profiles.get(&placement.profile_id) {
            changes(versions, a, b, &mut out);
        }
        book.intensity_edges(placement.site_id, a, b, &mut out);
        let Some(versions) = book.sites.get(&placement.site_id) else {
            continue;
        };
        let mut site_points = vec![a];
        changes(versions, a, b, &mut site_points);
        out.extend(&site_points[1..]);
        site_points.push(b);
        for span in site_points.windows(2) {
            if let Some(version) = in_force(versions, span[0]) {
                version.local_edges(span[0], span[1], &mut out);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `[start, end)` cut where anything that prices time changes, each stretch with its state.
/// Adjacent stretches with the same state are one: a cut that changes nothing must not change
/// the rounding.
pub(super) fn stretches(
    start: i64,
    end: i64,
    placements: &[Placement],
    book: &RateBook,
) -> Result<Vec<(i64, i64, State)>, MissingRates> {
    let mut cuts = vec![start];
    cuts.extend(edges(start, end, placements, book));
    cuts.push(end);
    let mut out: Vec<(i64, i64, State)> = Vec::new();
    for pair in cuts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a >= b {
            continue;
        }
        let state = state_at(a, placements, book)?;
        match out.last_mut() {
            Some(last) if last.2 == state => last.1 = b,
            _ => out.push((a, b, state)),
        }
    }
    Ok(out)
}

/// Splits the observed interval `[start, end)` (waste at its end) into parts of constant
/// state, prices each, and merges them by hour and attribution.
fn split(
    start: i64,
    end: i64,
    waste_ms: i64,
    unknown: bool,
    placements: &[Placement],
    book: &RateBook,
) -> Result<Vec<Part>, MissingRates> {
    let waste_start = end - waste_ms;
    let stretches = stretches(start, end, placements, book)?;
    let mut parts: Vec<Part> = Vec::new();
    for (a, b, state) in stretches {
        let length = b - a;
        let waste = (b.min(end) - a.max(waste_start)).max(0);
        let (waste, active, unknown_ms) = if unknown {
            (0, 0, length)
        } else {
            (waste, length - waste, 0)
        };
        let increment = price(waste, active, unknown_ms, &state);
        let hour_ms = bucket(b);
        match parts
            .iter_mut()
            .find(|p| p.hour_ms == hour_ms && p.attribution == state.attribution)
        {
            Some(part) => part.increment.add(&increment),
            None => parts.push(Part {
                hour_ms,
                attribution: state.attribution,
                increment,
            }),
        }
    }
    Ok(parts)
}

/// The increment of one part of constant state (DESIGN §2, "per interval, for each split
/// part"): cost and CO₂ rounded once here.
fn price(waste: i64, active: i64, unknown: i64, s: &State) -> Increment {
    let idle_energy_j = joules(waste, s.idle_watts);
    let energy_j = idle_energy_j + joules(active, s.active_watts) + joules(unknown, s.idle_watts);
    let avoidable_energy_j = joules(waste, s.saved_watts());
    let after = |v: Decimal| if s.after_hours { v } else { Decimal::ZERO };
    Increment {
        observed_ms: waste + active + unknown,
        idle_ms: waste,
        unknown_ms: unknown,
        after_hours_idle_ms: if s.after_hours { waste } else { 0 },
        gap_ms: 0,
        cost: per_kwh(energy_j, s.price_per_kwh),
        idle_cost: per_kwh(idle_energy_j, s.price_per_kwh),
        avoidable_cost: per_kwh(avoidable_energy_j, s.price_per_kwh),
        co2_g: per_kwh(energy_j, s.carbon_g_per_kwh),
        idle_co2_g: per_kwh(idle_energy_j, s.carbon_g_per_kwh),
        avoidable_co2_g: per_kwh(avoidable_energy_j, s.carbon_g_per_kwh),
        after_hours_idle_energy_j: after(idle_energy_j).normalize(),
        energy_j: energy_j.normalize(),
        idle_energy_j: idle_energy_j.normalize(),
        avoidable_energy_j: avoidable_energy_j.normalize(),
    }
}

/// `ms × watts / 1000`, exact.
pub(crate) fn joules(ms: i64, watts: Decimal) -> Decimal {
    Decimal::from(ms) * watts / Decimal::from(1000)
}
