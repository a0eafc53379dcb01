//! What the API answers: the JSON shapes of store objects, with their OpenAPI schemas. Store
//! types stay free of HTTP concerns; each view is built from one of them here.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::store::admin::{ApiTokenInfo, EnrollmentTokenInfo, PowerProfile, Site};
use crate::store::{AuditEntry, MachineRow, Role};

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
        }
    }
}

/// A site: where machines are, what their electricity costs and how clean it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteView {
    pub id: i64,
    pub name: String,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    #[schema(value_type = String, example = "0.12")]
    pub price_per_kwh: Decimal,
    #[schema(value_type = String, example = "420")]
    pub carbon_intensity_g_per_kwh: Decimal,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Live (not retired) machines at this site.
    pub machines: i64,
}

impl From<Site> for SiteView {
    fn from(s: Site) -> Self {
        Self {
            id: s.id,
            name: s.name,
            currency: s.currency,
            price_per_kwh: s.price_per_kwh,
            carbon_intensity_g_per_kwh: s.carbon_intensity_g_per_kwh,
            timezone: s.timezone,
            machines: s.machines,
        }
    }
}

/// A power profile: the watts a kind of machine draws when idle and when in use.
#[derive(Debug, Serialize, ToSchema)]
pub struct PowerProfileView {
    pub id: i64,
    pub name: String,
    #[schema(value_type = String, example = "65")]
    pub idle_watts: Decimal,
    #[schema(value_type = String, example = "120")]
    pub active_watts: Decimal,
    /// Live machines using this profile.
    pub machines: i64,
}

impl From<PowerProfile> for PowerProfileView {
    fn from(p: PowerProfile) -> Self {
        Self {
            id: p.id,
            name: p.name,
            idle_watts: p.idle_watts,
            active_watts: p.active_watts,
            machines: p.machines,
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
