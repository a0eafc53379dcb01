//! What the API answers: the JSON shapes of store objects, with their OpenAPI schemas. Store
//! types stay free of HTTP concerns; each view is built from one of them here.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{rfc3339, schema};
use crate::accounting::rates::{BandSpec, SpanSpec};
use crate::store::admin::{
    ApiTokenInfo, EnrollmentTokenInfo, PowerProfile, ProfileVersionInfo, Site, SiteVersionInfo,
};
use crate::store::{AuditEntry, CostTotal, MachineRow, Role};

/// An operator's role: admins change things, viewers only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleView {
    Admin,
    Viewer,
}

impl From<Role> for RoleView {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => RoleView::Admin,
            Role::Viewer => RoleView::Viewer,
        }
    }
}

impl From<RoleView> for Role {
    fn from(role: RoleView) -> Self {
        match role {
            RoleView::Admin => Role::Admin,
            RoleView::Viewer => Role::Viewer,
        }
    }
}

/// A machine as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct MachineView {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub agent_version: String,
    pub site: String,
    pub department: String,
    pub power_profile: String,
    /// `active`, `idle`, `offline` or `unknown`, derived now.
    pub status: String,
    /// When the collector last received a heartbeat (ms since the epoch).
    pub last_seen_ms: Option<i64>,
    /// The same instant as RFC 3339.
    pub last_seen: Option<String>,
    /// Seconds since the last keyboard/mouse input, as last reported.
    pub input_idle_seconds: Option<f64>,
    pub observed_seconds: f64,
    pub idle_seconds: f64,
    #[schema(value_type = String)]
    pub energy_j: Decimal,
    #[schema(value_type = String)]
    pub idle_energy_j: Decimal,
    /// Money totals per currency (a machine moved between sites may have several).
    pub costs: Vec<CostView>,
}

/// Money totals of a machine in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct CostView {
    pub currency: String,
    #[schema(value_type = String)]
    pub cost: Decimal,
    /// What the machine cost while idle (the waste).
    #[schema(value_type = String)]
    pub idle_cost: Decimal,
    /// What sleeping during the waste would have saved.
    #[schema(value_type = String)]
    pub avoidable_cost: Decimal,
}

impl From<CostTotal> for CostView {
    fn from(c: CostTotal) -> Self {
        Self {
            currency: c.currency,
            cost: c.cost,
            idle_cost: c.idle_cost,
            avoidable_cost: c.avoidable_cost,
        }
    }
}

impl From<MachineRow> for MachineView {
    fn from(row: MachineRow) -> Self {
        Self {
            last_seen: row.last_seen_ms.and_then(rfc3339),
            id: row.id,
            hostname: row.hostname,
            os: row.os,
            os_version: row.os_version,
            agent_version: row.agent_version,
            site: row.site,
            department: row.department,
            power_profile: row.power_profile,
            status: row.status,
            last_seen_ms: row.last_seen_ms,
            input_idle_seconds: row.input_idle_seconds,
            observed_seconds: row.observed_seconds,
            idle_seconds: row.idle_seconds,
            energy_j: row.energy_j,
            idle_energy_j: row.idle_energy_j,
            costs: row.costs.into_iter().map(CostView::from).collect(),
        }
    }
}

/// A span of local time: `days` (mon … sun), `start` and `end` (`HH:MM`, end up to `24:00`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpanView {
    #[schema(schema_with = schema::field::weekdays)]
    pub days: Vec<String>,
    #[schema(schema_with = schema::field::clock)]
    pub start: String,
    #[schema(schema_with = schema::field::clock)]
    pub end: String,
}

impl From<&SpanSpec> for SpanView {
    fn from(s: &SpanSpec) -> Self {
        Self {
            days: s.days.clone(),
            start: s.start.clone(),
            end: s.end.clone(),
        }
    }
}

impl From<SpanView> for SpanSpec {
    fn from(s: SpanView) -> Self {
        Self {
            days: s.days,
            start: s.start,
            end: s.end,
        }
    }
}

/// A time-of-use band: in `days` from `start` to `end` (local time) the price is
/// `price_per_kwh`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BandView {
    #[schema(schema_with = schema::field::weekdays)]
    pub days: Vec<String>,
    #[schema(schema_with = schema::field::clock)]
    pub start: String,
    #[schema(schema_with = schema::field::clock)]
    pub end: String,
    /// A decimal string, e.g. `"0.31"`.
    #[schema(schema_with = schema::price)]
    pub price_per_kwh: super::DecimalOutput,
}

impl From<&BandSpec> for BandView {
    fn from(b: &BandSpec) -> Self {
        Self {
            days: b.days.clone(),
            start: b.start.clone(),
            end: b.end.clone(),
            price_per_kwh: super::DecimalOutput(b.price_per_kwh.parse().unwrap_or_default()),
        }
    }
}

impl From<BandView> for BandSpec {
    fn from(b: BandView) -> Self {
        Self {
            days: b.days,
            start: b.start,
            end: b.end,
            price_per_kwh: b.price_per_kwh.0.normalize().to_string(),
        }
    }
}

/// One version of a site's accounting figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteVersionView {
    /// When the version applies from (RFC 3339); `null`: from the beginning.
    pub effective_from: Option<String>,
    pub timezone: String,
    pub currency: String,
    #[schema(value_type = String, example = "0.12")]
    pub price_per_kwh: Decimal,
    pub bands: Vec<BandView>,
    #[schema(value_type = String, example = "420")]
    pub carbon_intensity_g_per_kwh: Decimal,
    pub business_hours: Vec<SpanView>,
    pub holidays: Vec<String>,
    pub idle_threshold_seconds: Option<u64>,
}

impl From<&SiteVersionInfo> for SiteVersionView {
    fn from(v: &SiteVersionInfo) -> Self {
        Self {
            effective_from: since(v.effective_from_ms),
            timezone: v.timezone.clone(),
            currency: v.currency.clone(),
            price_per_kwh: v.price_per_kwh,
            bands: v.bands.iter().map(BandView::from).collect(),
            carbon_intensity_g_per_kwh: v.carbon_intensity_g_per_kwh,
            business_hours: v.business_hours.iter().map(SpanView::from).collect(),
            holidays: v.holidays.clone(),
            idle_threshold_seconds: v.idle_threshold_seconds,
        }
    }
}

/// `None` for "from the beginning".
fn since(ms: i64) -> Option<String> {
    (ms != i64::MIN).then(|| rfc3339(ms)).flatten()
}

/// A site: where machines are, what their electricity costs and how clean it is. The figures
/// at the top level are the version in force now; `scheduled` lists later ones.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    pub id: i64,
    pub name: String,
    /// Live (not retired) machines placed here now.
    pub machines: i64,
    #[serde(flatten)]
    pub current: SiteVersionView,
    pub scheduled: Vec<SiteVersionView>,
}

impl From<Site> for SiteView {
    fn from(s: Site) -> Self {
        Self {
            id: s.id,
            name: s.name,
            machines: s.machines,
            current: SiteVersionView::from(&s.current),
            scheduled: s.scheduled.iter().map(SiteVersionView::from).collect(),
        }
    }
}

/// One version of a power profile's watts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileVersionView {
    /// When the version applies from (RFC 3339); `null`: from the beginning.
    pub effective_from: Option<String>,
    #[schema(value_type = String, example = "65")]
    pub idle_watts: Decimal,
    #[schema(value_type = String, example = "120")]
    pub active_watts: Decimal,
    #[schema(value_type = String, example = "2")]
    pub sleep_watts: Decimal,
}

impl From<&ProfileVersionInfo> for ProfileVersionView {
    fn from(v: &ProfileVersionInfo) -> Self {
        Self {
            effective_from: since(v.effective_from_ms),
            idle_watts: v.idle_watts,
            active_watts: v.active_watts,
            sleep_watts: v.sleep_watts,
        }
    }
}

/// A power profile: the watts a kind of machine draws when idle, in use and asleep (the
/// version in force now; `scheduled` lists later ones).
#[derive(Debug, Serialize, ToSchema)]
pub struct PowerProfileView {
    pub id: i64,
    pub name: String,
    /// Live machines using this profile now.
    pub machines: i64,
    #[serde(flatten)]
    pub current: ProfileVersionView,
    pub scheduled: Vec<ProfileVersionView>,
}

impl From<PowerProfile> for PowerProfileView {
    fn from(p: PowerProfile) -> Self {
        Self {
            id: p.id,
            name: p.name,
            machines: p.machines,
            current: ProfileVersionView::from(&p.current),
            scheduled: p.scheduled.iter().map(ProfileVersionView::from).collect(),
        }
    }
}

/// An enrollment token as listed (never its hash or plaintext).
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentTokenView {
    pub id: i64,
    pub site: String,
    pub department: String,
    pub expires_at_ms: Option<i64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

impl From<EnrollmentTokenInfo> for EnrollmentTokenView {
    fn from(t: EnrollmentTokenInfo) -> Self {
        Self {
            id: t.id,
            site: t.site,
            department: t.department,
            expires_at_ms: t.expires_at_ms,
            max_uses: t.max_uses,
            uses: t.uses,
            revoked_at_ms: t.revoked_at_ms,
            created_at_ms: t.created_at_ms,
        }
    }
}

/// A personal API token as listed (never its hash or plaintext).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiTokenView {
    pub id: i64,
    pub name: String,
    /// The operator whose role the token carries.
    pub username: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl From<ApiTokenInfo> for ApiTokenView {
    fn from(t: ApiTokenInfo) -> Self {
        Self {
            id: t.id,
            name: t.name,
            username: t.username,
            created_at_ms: t.created_at_ms,
            revoked_at_ms: t.revoked_at_ms,
        }
    }
}

/// One operator action: who, what, to what, when, with before/after details (JSON text).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            details: e.details,
        }
    }
}
