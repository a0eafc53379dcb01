//! What the admin API manages besides users: sites, power profiles, machine placement,
//! enrollment and API tokens, and energy reports (the traits that store them are
//! `AdminObjectStore` and `ReportStore`, in `traits.rs`).

use rust_decimal::Decimal;

use crate::accounting::Increment;

/// A site: where machines are, what their electricity costs and how clean it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    pub id: i64,
    pub name: String,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    pub price_per_kwh: Decimal,
    pub carbon_intensity_g_per_kwh: Decimal,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Live (not retired) machines at this site.
    pub machines: i64,
}

/// The editable fields of a site (validated by the HTTP layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFields {
    pub name: String,
    pub currency: String,
    pub price_per_kwh: Decimal,
    pub carbon_intensity_g_per_kwh: Decimal,
    pub timezone: String,
}

/// A power profile: the watts a kind of machine draws when idle and when in use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PowerProfile {
    pub id: i64,
    pub name: String,
    pub idle_watts: Decimal,
    pub active_watts: Decimal,
    /// Live machines using this profile.
    pub machines: i64,
}

/// The editable fields of a power profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerProfileFields {
    pub name: String,
    pub idle_watts: Decimal,
    pub active_watts: Decimal,
}

/// Where a machine is accounted: its site, department and power profile (by name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub site: String,
    pub department: String,
    pub power_profile: String,
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
    /// Three bands by `sent_at`: `"0"` from `today_ms`, `"1"` from `week_ms` to `today_ms`,
    /// `"2"` before `week_ms` (the stats periods in one scan).
    Periods {
        today_ms: i64,
        week_ms: i64,
    },
}

/// Which heartbeats an energy report sums: `from_ms ≤ sent_at < to_ms`, live machines only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub group: Grouping,
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
