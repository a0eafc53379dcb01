//! What the admin API manages besides users: sites and their effective-dated versions,
//! imported grid intensity, power profiles and their versions, machine placement, enrollment
//! and API tokens, and the energy reports.

use rust_decimal::Decimal;

use crate::accounting::Increment;
use crate::accounting::rates::{BandSpec, SpanSpec};

/// The accounting figures of a site from a moment on (DESIGN §2): never edited once in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteVersionInfo {
    /// From when the version applies (`i64::MIN`: from the beginning).
    pub effective_from_ms: i64,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    pub price_per_kwh: Decimal,
    /// Time-of-use bands (local time); outside them `price_per_kwh` applies.
    pub bands: Vec<BandSpec>,
    /// Grams CO₂e per kWh where no hourly value was imported.
    pub carbon_intensity_g_per_kwh: Decimal,
    /// Business hours (local time); the rest is after hours.
    pub business_hours: Vec<SpanSpec>,
    /// Local dates that are after hours all day (`YYYY-MM-DD`).
    pub holidays: Vec<String>,
    /// Overrides the global idle threshold at this site.
    pub idle_threshold_seconds: Option<u64>,
}

impl SiteVersionInfo {
    /// A version with one flat price, one static carbon intensity, the default business hours
    /// (Monday–Friday 08:00–18:00), no holidays and the global idle threshold.
    pub fn flat(timezone: &str, currency: &str, price_per_kwh: Decimal, carbon: Decimal) -> Self {
        SiteVersionInfo {
            effective_from_ms: i64::MIN,
            timezone: timezone.to_string(),
            currency: currency.to_string(),
            price_per_kwh,
            bands: Vec::new(),
            carbon_intensity_g_per_kwh: carbon,
            business_hours: crate::accounting::rates::default_business_hours()
                .iter()
                .map(SpanSpec::of)
                .collect(),
            holidays: Vec::new(),
            idle_threshold_seconds: None,
        }
    }
}

/// A site: where machines are, what their electricity costs and how clean it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    pub id: i64,
    pub name: String,
    /// Live (not retired) machines placed here now.
    pub machines: i64,
    /// The version in force now.
    pub current: SiteVersionInfo,
    /// Versions that take effect later, soonest first.
    pub scheduled: Vec<SiteVersionInfo>,
}

/// A new site: its name and first version (which applies from the beginning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFields {
    pub name: String,
    pub version: SiteVersionInfo,
}

/// One version of a power profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProfileVersionInfo {
    pub effective_from_ms: i64,
    pub idle_watts: Decimal,
    pub active_watts: Decimal,
    /// Watts while asleep (what a sleep policy would draw instead of idle).
    pub sleep_watts: Decimal,
}

/// A power profile: the watts a kind of machine draws when idle, in use and asleep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PowerProfile {
    pub id: i64,
    pub name: String,
    /// Live machines using this profile now.
    pub machines: i64,
    pub current: ProfileVersionInfo,
    pub scheduled: Vec<ProfileVersionInfo>,
}

/// A new power profile: its name and first version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerProfileFields {
    pub name: String,
    pub version: ProfileVersionInfo,
}

/// Where a machine is accounted: its site, department and power profile (by name), and from
/// when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub site: String,
    pub department: String,
    pub power_profile: String,
    pub effective_from_ms: i64,
}

/// A change of placement; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementPatch {
    pub site: Option<String>,
    pub department: Option<String>,
    pub power_profile: Option<String>,
}

/// An enrollment token as listed (never its hash or plaintext).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnrollmentTokenInfo {
    pub id: i64,
    pub site: String,
    pub department: String,
    pub expires_at_ms: Option<i64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A personal API token as listed (never its hash or plaintext).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    /// The operator whose role the token carries.
    pub username: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// How energy report rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Machine,
    Site,
    Department,
    /// Time buckets of `step_ms` starting at `from_ms` (history of one machine).
    Step {
        step_ms: i64,
    },
    /// Three bands by hour: `"0"` from `today_ms`, `"1"` from `week_ms` to `today_ms`,
    /// `"2"` before `week_ms` (the stats periods in one scan).
    Periods {
        today_ms: i64,
        week_ms: i64,
    },
}

/// Whose site and department a report groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Attribution {
    /// Where the increments were incurred (a move later does not move them).
    #[default]
    Incurred,
    /// The machines' current placement.
    Current,
}

/// Which usage a report sums: hours (and days, for older data) starting in
/// `[from_ms, to_ms)`, every machine (retired ones included) unless one is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group: Grouping,
    pub attribution: Attribution,
    /// Only this machine (history).
    pub machine_id: Option<String>,
}

/// Sums of increments for one group key in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Machine id, site name, department, or bucket index (as text) for `Step`.
    pub key: String,
    pub currency: String,
    pub totals: Increment,
}

/// What one batch of the what-if rollup did: machines brought forward, intervals added, and
/// whether some machine still has raw heartbeats past this batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavingsBatch {
    pub machines: u64,
    pub intervals: u64,
    pub more: bool,
}

/// What one batch of the what-if rollup computes: each interval of a machine (its number,
/// placements, and the previous interval it may continue) added to the tally.
pub type SavingsCompute<'a> = dyn FnMut(
        i64,
        &[crate::accounting::rates::Placement],
        Option<crate::accounting::savings::Before>,
        &crate::accounting::savings::Interval,
        &mut crate::accounting::savings::Tally,
    ) -> Result<(), String>
    + Send
    + 'a;

/// What a what-if reads of the rollup for its window and N (see `accounting::savings`), and
/// every department any placement has named (to check a scope).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavingsRows {
    pub shares: Vec<crate::accounting::savings::ShareRow>,
    pub reach: Vec<crate::accounting::savings::ReachRow>,
    pub departments: std::collections::BTreeSet<String>,
}
