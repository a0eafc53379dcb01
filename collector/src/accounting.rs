//! The accounting model of DESIGN §2: pure functions, no I/O.
//!
//! Time is integer milliseconds; energy, money and CO₂ are `Decimal`. Energy in joules is exact
//! (milliseconds × watts / 1000 always terminates). Cost and CO₂ divide by 3.6 MJ per kWh, which
//! may not terminate, so each increment is rounded once to [`MONEY_SCALE`] decimal places; totals
//! are sums of the stored increments and therefore equal them to the last digit.

use greenops_protocol::{Session, ValidHeartbeat};
use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept for cost and CO₂ increments.
pub const MONEY_SCALE: u32 = 12;
const JOULES_PER_KWH: i64 = 3_600_000;

/// Per-machine accounting parameters (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub idle_threshold_ms: i64,
    pub max_gap_ms: i64,
}

/// Power profile and site figures in force when a heartbeat is accounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    pub idle_watts: Decimal,
    pub active_watts: Decimal,
    pub price_per_kwh: Decimal,
    pub carbon_g_per_kwh: Decimal,
}

/// What the accounting needs to remember about a machine between heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Highest accepted `seq`, 0 before the first heartbeat.
    pub last_seq: u64,
    pub last_sent_at_ms: Option<i64>,
}

/// What one accepted heartbeat adds to its machine's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Increment {
    pub observed_ms: i64,
    pub idle_ms: i64,
    pub unknown_ms: i64,
    pub energy_j: Decimal,
    pub idle_energy_j: Decimal,
    pub cost: Decimal,
    pub idle_cost: Decimal,
    pub co2_g: Decimal,
    pub idle_co2_g: Decimal,
}

impl Increment {
    /// Adds another increment to this one (used for totals and per-batch sums).
    pub fn add(&mut self, other: &Increment) {
        self.observed_ms += other.observed_ms;
        self.idle_ms += other.idle_ms;
        self.unknown_ms += other.unknown_ms;
        self.energy_j += other.energy_j;
        self.idle_energy_j += other.idle_energy_j;
        self.cost += other.cost;
        self.idle_cost += other.idle_cost;
        self.co2_g += other.co2_g;
        self.idle_co2_g += other.idle_co2_g;
    }
}

/// The result of offering one heartbeat to a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `seq` not above the last accepted one: acknowledged, nothing changes.
    Duplicate,
    /// Accepted; the increment is zero when the interval was unobserved.
    Accepted(Increment),
}

/// Accounts heartbeat `hb` against the machine's `cursor`, advancing the cursor when accepted.
/// The clock-skew rule is applied before this (it depends on the receive time, not the model).
pub fn account(cursor: &mut Cursor, hb: &ValidHeartbeat, params: Params, rates: &Rates) -> Outcome {
    if hb.seq <= cursor.last_seq {
        return Outcome::Duplicate;
    }
    let previous = cursor.last_sent_at_ms;
    cursor.last_seq = hb.seq;
    cursor.last_sent_at_ms = Some(hb.sent_at_ms);
    let Some(prev) = previous else {
        return Outcome::Accepted(Increment::default());
    };
    let delta = hb.sent_at_ms - prev;
    if delta <= 0 || delta > params.max_gap_ms {
        return Outcome::Accepted(Increment::default());
    }
    Outcome::Accepted(observed(delta, hb, params, rates))
}

fn observed(delta_ms: i64, hb: &ValidHeartbeat, params: Params, rates: &Rates) -> Increment {
    let Some(idle_ms) = hb.idle_ms else {
        // Unknown idle: observed, never waste; energy estimated at idle power.
        let energy_j = joules(delta_ms, rates.idle_watts);
        return priced(
            Increment {
                observed_ms: delta_ms,
                unknown_ms: delta_ms,
                energy_j,
                ..Increment::default()
            },
            rates,
        );
    };
    // A locked or logged-off session is idle since the lock/logoff: no grace threshold.
    let threshold = if hb.session.is_away() {
        0
    } else {
        params.idle_threshold_ms
    };
    let waste = (idle_ms - threshold).clamp(0, delta_ms);
    let idle_energy_j = joules(waste, rates.idle_watts);
    let energy_j = idle_energy_j + joules(delta_ms - waste, rates.active_watts);
    priced(
        Increment {
            observed_ms: delta_ms,
            idle_ms: waste,
            unknown_ms: 0,
            energy_j,
            idle_energy_j,
            ..Increment::default()
        },
        rates,
    )
}

fn joules(ms: i64, watts: Decimal) -> Decimal {
    Decimal::from(ms) * watts / Decimal::from(1000)
}

/// `joules × per_kwh / 3.6 MJ`, multiplied before dividing so that terminating results stay
/// exact, then rounded once to [`MONEY_SCALE`].
fn per_kwh(joules: Decimal, per_kwh: Decimal) -> Decimal {
    (joules * per_kwh / Decimal::from(JOULES_PER_KWH))
        .round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

fn priced(mut inc: Increment, rates: &Rates) -> Increment {
    inc.cost = per_kwh(inc.energy_j, rates.price_per_kwh);
    inc.idle_cost = per_kwh(inc.idle_energy_j, rates.price_per_kwh);
    inc.co2_g = per_kwh(inc.energy_j, rates.carbon_g_per_kwh);
    inc.idle_co2_g = per_kwh(inc.idle_energy_j, rates.carbon_g_per_kwh);
    inc.energy_j = inc.energy_j.normalize();
    inc.idle_energy_j = inc.idle_energy_j.normalize();
    inc
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
