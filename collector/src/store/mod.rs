//! Persistence behind one trait. Handlers and the ingest writer call [`Store`], which is the
//! union of one trait per domain (`traits.rs`); no SQL lives outside this module.
//!
//! Where the SQL is: a query whose text is the same on both backends is written once, in
//! `common/`, generic over the backend's [`sqlx::Database`]; a query whose text differs is
//! written out in full in `postgres/` or `sqlite/`. The few things the shared queries need to
//! know about a backend (how it stores an exact decimal, how it sorts one) are in its
//! `Dialect` (`common/mod.rs`). Each backend owns its migrations.

pub mod admin;
mod common;
pub mod ingest;
mod postgres;
pub mod retention;
pub mod seed;
mod sqlite;
pub mod synthetic;
mod traits;
pub mod transfer;

use std::fmt;
use std::sync::Arc;

use greenops_protocol::ValidEnrollment;
use rust_decimal::Decimal;

use crate::accounting::{Increment, LastReport};
use crate::secrets::TokenHash;

pub use ingest::{HeartbeatJob, JobOutcome};
pub use postgres::PostgresStore;
pub use sqlite::{SqliteDurability, SqliteStore, path_of as sqlite_path};
pub use traits::{
    AdminObjectStore, IngestStore, OperatorStore, RatesStore, ReportStore, SeedStore, Store,
};

/// Which backend a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Failures of the store, as the HTTP layer needs to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The sqlx errors are shown in the message and deliberately not chained as sources:
    // `{:#}` would print each of them again ("…timed out: …timed out").
    /// The database cannot be reached right now (503, retry later).
    #[error("store unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// A named object does not exist (404 or a CLI error).
    #[error("{0} not found")]
    NotFound(String),
    /// The schema is older or newer than this binary.
    #[error("migrations: {}", migrate_message(.0))]
    Migration(sqlx::migrate::MigrateError),
    /// The object already exists (409).
    #[error("{0} already exists")]
    Conflict(String),
    /// Anything else: a bug or a broken database (500).
    #[error("store error: {0}")]
    Internal(sqlx::Error),
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e)
    }
}

/// A migration error once: sqlx's own text repeats its cause ("while executing migrations:
/// X"), so a failed execution is shown as just its cause.
fn migrate_message(e: &sqlx::migrate::MigrateError) -> String {
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(e)
            }
            other => StoreError::Internal(other),
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "try again later": connection exceptions, server shutdown,
/// too many connections, serialization failures.
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08") || c.starts_with("57P") || c == "53300" || c == "40001" || c == "40P01"
    })
}

/// A new enrollment token to store (the plaintext is never stored).
#[derive(Debug, Clone)]
pub struct NewEnrollmentToken {
    pub token_hash: TokenHash,
    pub site: String,
    pub department: String,
    pub expires_at_ms: Option<i64>,
    pub max_uses: Option<i64>,
    pub created_at_ms: i64,
}

impl NewEnrollmentToken {
    /// The token as listed once stored under `id` (unused, unrevoked).
    pub(crate) fn stored(&self, id: i64) -> admin::EnrollmentTokenInfo {
        admin::EnrollmentTokenInfo {
            id,
            site: self.site.clone(),
            department: self.department.clone(),
            expires_at_ms: self.expires_at_ms,
            max_uses: self.max_uses,
            uses: 0,
            revoked_at_ms: None,
            created_at_ms: self.created_at_ms,
        }
    }
}

/// How an enrolment is authorised.
#[derive(Debug, Clone)]
pub enum EnrollAuth {
    /// With an enrollment token (its hash).
    Token(TokenHash),
    /// Open enrolment, turned on by the operator: default site, no department.
    Open,
    /// Placed by the collector's configuration, without a token: agents of the original
    /// GreenOps registering through the compatibility endpoint (`compat.site`,
    /// `compat.department`), and machines of an import. Such machines are marked
    /// `idle_source = seed-legacy` from the start.
    Placed { site: String, department: String },
}

/// Everything needed to enrol or re-enrol a machine.
#[derive(Debug, Clone)]
pub struct EnrollCommand {
    pub auth: EnrollAuth,
    pub machine: ValidEnrollment,
    /// Id for the machine if it is new.
    pub new_machine_id: String,
    pub credential_hash: TokenHash,
    pub now_ms: i64,
}

/// Why an enrolment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// Unknown, revoked, expired or used-up enrollment token.
    InvalidToken,
    /// The machine was retired by an operator; it cannot come back by itself.
    MachineRetired,
    /// The site of a [`EnrollAuth::Placed`] enrolment does not exist (any more).
    UnknownSite,
}

/// A machine that holds a fresh credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledMachine {
    pub machine_id: String,
    /// True when the machine key was already known (the old credential was revoked).
    pub re_enrolled: bool,
}

/// One machine as `/metrics`, the lists and the stats see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineSnapshot {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub agent_version: String,
    /// The placement in force now.
    pub site: String,
    pub department: String,
    pub power_profile: String,
    /// Retired machines are hidden from lists and per-machine series; their history stays in
    /// every fleet total.
    pub retired: bool,
    pub last: Option<LastReport>,
    pub cpu_usage_ratio: Option<f64>,
    pub memory_usage_ratio: Option<f64>,
    pub uptime_seconds: Option<u64>,
    /// How the agent measured idle time in its last report (`None`: never said).
    pub idle_source: Option<greenops_protocol::IdleSourceKind>,
    /// Time, energy and CO₂ totals over every attribution (money is in `costs`).
    pub totals: Increment,
    /// Money totals per currency.
    pub costs: Vec<CostTotal>,
}

/// A machine's money totals in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostTotal {
    pub currency: String,
    pub cost: Decimal,
    pub idle_cost: Decimal,
    pub avoidable_cost: Decimal,
}

/// Every machine (retired ones flagged), for one scrape or list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetSnapshot {
    pub machines: Vec<MachineSnapshot>,
    /// All site names, so machine counts can be zero-filled.
    pub sites: Vec<String>,
}

impl FleetSnapshot {
    /// The machines that are not retired.
    pub fn live(&self) -> impl Iterator<Item = &MachineSnapshot> {
        self.machines.iter().filter(|m| !m.retired)
    }
}

/// Where a reader of fleet changes stopped (see [`IngestStore::fleet_changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetCursor {
    /// PostgreSQL: the oldest transaction still running when the read was taken (later
    /// reads look again at every machine the change log `fleet_log` records for it or a
    /// later one); SQLite: the last change number seen (writers are serialised).
    pub changes: i64,
    /// Bumped by every change of sites or power profiles (their names are in every row).
    pub catalog: i64,
}

/// A machine's totals in one placement and currency, where they were incurred.
#[derive(Debug, Clone, PartialEq)]
pub struct IncurredTotal {
    pub site: String,
    pub department: String,
    pub currency: String,
    /// Time, energy, CO₂ and money (in `currency`).
    pub values: Increment,
}

/// What changed in the fleet since a [`FleetCursor`].
#[derive(Debug, Clone, PartialEq)]
pub struct FleetChanges {
    pub cursor: FleetCursor,
    /// The whole fleet (a first read, or sites or power profiles changed): replace, not merge.
    pub full: bool,
    /// Each changed machine (every machine when `full`) with all its totals rows; the
    /// machine's own `totals` and `costs` are already summed from them.
    pub machines: Vec<(MachineSnapshot, Vec<IncurredTotal>)>,
    /// All site names, so machine counts can be zero-filled.
    pub sites: Vec<String>,
}

impl FleetChanges {
    /// The whole fleet as one snapshot (for a read with no cursor).
    pub fn into_snapshot(self) -> FleetSnapshot {
        FleetSnapshot {
            machines: self.machines.into_iter().map(|(m, _)| m).collect(),
            sites: self.sites,
        }
    }
}

/// An operator's role: admins change things, viewers only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn from_stored(s: &str) -> Self {
        if s == "admin" {
            Role::Admin
        } else {
            Role::Viewer
        }
    }
}

/// A stored operator account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub password_hash: String,
    pub session_version: i64,
    pub disabled: bool,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("session_version", &self.session_version)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Server-side filtering, sorting and paging of the machines list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineQuery {
    /// Only this machine (detail view).
    pub id: Option<String>,
    pub status: Option<crate::accounting::Status>,
    pub site: Option<String>,
    pub department: Option<String>,
    /// Case-insensitive substring of the hostname.
    pub q: Option<String>,
    pub sort: MachineSort,
    pub descending: bool,
    pub page: i64,
    pub per_page: i64,
    /// For the derived status.
    pub now_ms: i64,
    pub offline_after_ms: i64,
    pub idle_threshold_ms: i64,
}

impl MachineQuery {
    /// Every live machine, by hostname, one per page; status derived with these parameters.
    pub fn all(now_ms: i64, offline_after_ms: i64, idle_threshold_ms: i64) -> Self {
        Self {
            id: None,
            status: None,
            site: None,
            department: None,
            q: None,
            sort: MachineSort::Hostname,
            descending: false,
            page: 1,
            per_page: 1,
            now_ms,
            offline_after_ms,
            idle_threshold_ms,
        }
    }
}

/// Columns the machines list can be sorted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineSort {
    Hostname,
    Site,
    Department,
    Status,
    LastSeen,
    InputIdle,
    IdleTime,
    IdleEnergy,
}

impl MachineSort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hostname" => Self::Hostname,
            "site" => Self::Site,
            "department" => Self::Department,
            "status" => Self::Status,
            "last_seen" => Self::LastSeen,
            "input_idle" => Self::InputIdle,
            "idle_time" => Self::IdleTime,
            "idle_energy" => Self::IdleEnergy,
            _ => return None,
        })
    }
}

/// One row of the machines list.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRow {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub agent_version: String,
    pub site: String,
    pub department: String,
    pub power_profile: String,
    pub status: String,
    pub last_seen_ms: Option<i64>,
    pub input_idle_seconds: Option<f64>,
    pub observed_seconds: f64,
    pub idle_seconds: f64,
    pub energy_j: Decimal,
    pub idle_energy_j: Decimal,
    /// Money totals per currency.
    pub costs: Vec<CostTotal>,
}

/// One operator action: who, what, to what, when, with before/after details (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

/// Resolves the placements a machine was given (by name) into the ids the accounting uses.
/// Load it once for many machines: it reads every site and power profile.
#[derive(Debug)]
pub struct PlacementIds {
    sites: std::collections::HashMap<String, i64>,
    profiles: std::collections::HashMap<String, i64>,
}

impl PlacementIds {
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let now = crate::clock::now_ms();
        let sites = store.list_sites(now).await?;
        let profiles = store.list_power_profiles(now).await?;
        Ok(Self {
            sites: sites.into_iter().map(|s| (s.name, s.id)).collect(),
            profiles: profiles.into_iter().map(|p| (p.name, p.id)).collect(),
        })
    }

    /// Every placement of `machine_id`, oldest first, as the accounting reads them.
    pub async fn placements(
        &self,
        store: &dyn Store,
        machine_id: &str,
    ) -> Result<Vec<crate::accounting::rates::Placement>, StoreError> {
        store
            .machine_placements(machine_id)
            .await?
            .into_iter()
            .map(|p| {
                let site_id = *self
                    .sites
                    .get(&p.site)
                    .ok_or_else(|| StoreError::NotFound(format!("site '{}'", p.site)))?;
                let profile_id = *self.profiles.get(&p.power_profile).ok_or_else(|| {
                    StoreError::NotFound(format!("power profile '{}'", p.power_profile))
                })?;
                Ok(crate::accounting::rates::Placement {
                    effective_from_ms: p.effective_from_ms,
                    site_id,
                    department: p.department,
                    profile_id,
                })
            })
            .collect()
    }
}

/// The placements of one machine as the accounting reads them (see [`PlacementIds`] for many).
pub async fn accounting_placements(
    store: &dyn Store,
    machine_id: &str,
) -> Result<Vec<crate::accounting::rates::Placement>, StoreError> {
    PlacementIds::load(store)
        .await?
        .placements(store, machine_id)
        .await
}

/// Opens the store named by `url` (does not migrate).
pub async fn open(url: &str, options: &PoolOptions) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, options).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::connect(url, options, options.sqlite_durability).await?,
        ))
    } else {
        anyhow::bail!("unsupported database URL scheme (expected postgres:// or sqlite://)")
    }
}

/// Whether the database of `url` can be reached: one PostgreSQL connection attempt within
/// `timeout`, whose failure is the reason in words. An SQLite file is checked by [`open`].
pub async fn check_reachable(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::check_reachable(url, timeout).await
    } else {
        Ok(())
    }
}

/// Connection pool settings shared by the backends.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
    /// SQLite only: how durable each commit is.
    pub sqlite_durability: SqliteDurability,
}
