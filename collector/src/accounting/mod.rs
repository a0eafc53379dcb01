//! The accounting model of DESIGN §2 (v2): pure functions, no I/O.
//!
//! Time is integer milliseconds; energy, money and CO₂ are `Decimal`. Energy in joules is exact
//! (milliseconds × watts / 1000 always terminates). Cost and CO₂ divide by 3.6 MJ per kWh, which
//! may not terminate, so each increment is rounded once to [`MONEY_SCALE`] decimal places; totals
//! are sums of the stored increments and therefore equal them to the last digit.
//!
//! [`rates`] holds everything effective-dated an interval is priced with; [`interval`] accounts
//! one heartbeat's interval from the machine's high-water mark, split where rates change.

use greenops_protocol::Session;
use rust_decimal::{Decimal, RoundingStrategy};

pub mod interval;
pub mod rates;
pub mod savings;

pub use interval::{Accepted, Attribution, Cursor, MissingRates, Outcome, Part, account, replay};
pub use rates::RateBook;

/// Decimal places kept for cost and CO₂ increments.
pub const MONEY_SCALE: u32 = 12;
const JOULES_PER_KWH: i64 = 3_600_000;

/// What accepted heartbeats add to totals: time (integer ms) and exact energy, cost and CO₂
/// — in total, of which wasted while idle (`idle_*`), of which avoidable by sleeping
/// (`avoidable_*`), and the after-hours part of the waste. `gap_ms` is coverage: unobserved
/// time between consecutive heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Increment {
    pub observed_ms: i64,
    pub idle_ms: i64,
    pub unknown_ms: i64,
    pub after_hours_idle_ms: i64,
    pub gap_ms: i64,
    pub energy_j: Decimal,
    pub idle_energy_j: Decimal,
    pub avoidable_energy_j: Decimal,
    pub after_hours_idle_energy_j: Decimal,
    pub cost: Decimal,
    pub idle_cost: Decimal,
    pub avoidable_cost: Decimal,
    pub co2_g: Decimal,
    pub idle_co2_g: Decimal,
    pub avoidable_co2_g: Decimal,
}

impl Increment {
    /// Adds another increment to this one (used for totals and per-batch sums).
    pub fn add(&mut self, other: &Increment) {
        self.observed_ms += other.observed_ms;
        self.idle_ms += other.idle_ms;
        self.unknown_ms += other.unknown_ms;
        self.after_hours_idle_ms += other.after_hours_idle_ms;
        self.gap_ms += other.gap_ms;
        self.energy_j += other.energy_j;
        self.idle_energy_j += other.idle_energy_j;
        self.avoidable_energy_j += other.avoidable_energy_j;
        self.after_hours_idle_energy_j += other.after_hours_idle_energy_j;
        self.cost += other.cost;
        self.idle_cost += other.idle_cost;
        self.avoidable_cost += other.avoidable_cost;
        self.co2_g += other.co2_g;
        self.idle_co2_g += other.idle_co2_g;
        self.avoidable_co2_g += other.avoidable_co2_g;
    }

    /// Takes back an increment added before (the in-memory fleet replaces a machine's rows).
    pub fn sub(&mut self, other: &Increment) {
        self.observed_ms -= other.observed_ms;
        self.idle_ms -= other.idle_ms;
        self.unknown_ms -= other.unknown_ms;
        self.after_hours_idle_ms -= other.after_hours_idle_ms;
        self.gap_ms -= other.gap_ms;
        self.energy_j -= other.energy_j;
        self.idle_energy_j -= other.idle_energy_j;
        self.avoidable_energy_j -= other.avoidable_energy_j;
        self.after_hours_idle_energy_j -= other.after_hours_idle_energy_j;
        self.cost -= other.cost;
        self.idle_cost -= other.idle_cost;
        self.avoidable_cost -= other.avoidable_cost;
        self.co2_g -= other.co2_g;
        self.idle_co2_g -= other.idle_co2_g;
        self.avoidable_co2_g -= other.avoidable_co2_g;
    }

    /// The same figures without money (time, energy and CO₂ add across currencies).
    pub fn without_money(&self) -> Increment {
        Increment {
            cost: Decimal::ZERO,
            idle_cost: Decimal::ZERO,
            avoidable_cost: Decimal::ZERO,
            ..self.clone()
        }
    }
}

/// `joules × per_kwh / 3.6 MJ`, multiplied before dividing so that terminating results stay
/// exact, then rounded once to [`MONEY_SCALE`] (half to even).
pub(crate) fn per_kwh(joules: Decimal, per_kwh: Decimal) -> Decimal {
    (joules * per_kwh / Decimal::from(JOULES_PER_KWH))
        .round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

/// The clock-skew rule (DESIGN §2, acceptance step 2): a heartbeat dated more than
/// `max_skew_ms` after it was received is refused (`clock_ahead`).
pub fn clock_ahead(sent_at_ms: i64, received_at_ms: i64, max_skew_ms: i64) -> bool {
    sent_at_ms > received_at_ms.saturating_add(max_skew_ms)
}

/// A machine's status, derived at read time from its last heartbeat (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Active,
    Idle,
    Offline,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Active,
        Status::Idle,
        Status::Offline,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Idle => "idle",
            Status::Offline => "offline",
            Status::Unknown => "unknown",
        }
    }
}

/// The last reported state of a machine, as needed to derive its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastReport {
    pub received_at_ms: i64,
    pub idle_ms: Option<i64>,
    pub session: Session,
}

/// Derives a machine's status at `now_ms`; `None` for a machine that never sent a heartbeat
/// (offline).
pub fn status(
    last: Option<LastReport>,
    now_ms: i64,
    offline_after_ms: i64,
    idle_threshold_ms: i64,
) -> Status {
    let Some(last) = last else {
        return Status::Offline;
    };
    if now_ms - last.received_at_ms > offline_after_ms {
        return Status::Offline;
    }
    match last.idle_ms {
        None => Status::Unknown,
        Some(_) if last.session.is_away() => Status::Idle,
        Some(idle) if idle >= idle_threshold_ms => Status::Idle,
        Some(_) => Status::Active,
    }
}

#[cfg(test)]
mod tests;
