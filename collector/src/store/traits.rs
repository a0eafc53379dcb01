//! The persistence contract, split by domain. [`Store`] is all of them plus the lifecycle of
//! the connection pool; handlers hold an `Arc<dyn Store>` and call any method on it.

use std::fmt;

use async_trait::async_trait;

use rust_decimal::Decimal;

use super::admin::{
    ApiTokenInfo, EnrollmentTokenInfo, Placement, PlacementPatch, PowerProfile, PowerProfileFields,
    ProfileVersionInfo, ReportQuery, ReportRow, Site, SiteFields, SiteVersionInfo,
};
use super::ingest::{HeartbeatStorage, Planner, RateBookCache};
use super::retention::{Rollup, RollupBatch};
use super::seed::SeedImport;
use super::{
    AuditEntry, Backend, CostTotal, EnrollCommand, EnrollRefusal, EnrolledMachine, FleetChanges,
    FleetCursor, FleetSnapshot, HeartbeatJob, JobOutcome, NewEnrollmentToken, Role, StoreError,
    User,
};
use crate::accounting::RateBook;
use crate::accounting::rates::SettingsVersion;
use crate::secrets::TokenHash;

/// The persistence contract shared by every backend.
#[async_trait]
pub trait Store:
    IngestStore
    + OperatorStore
    + AdminObjectStore
    + RatesStore
    + ReportStore
    + SeedStore
    + Send
    + Sync
    + fmt::Debug
{
    fn backend(&self) -> Backend;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Ok when the database answers and every migration of this binary is applied.
    async fn readiness(&self) -> Result<(), StoreError>;

    /// Closes connections (used on shutdown).
    async fn close(&self);
}

/// What the agents drive: enrolment, credentials, heartbeat ingest, and the machines list
/// and fleet snapshot those feed.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Enrols a new machine or rotates the credential of a known `machine_key`.
    async fn enroll(
        &self,
        cmd: &EnrollCommand,
    ) -> Result<Result<EnrolledMachine, EnrollRefusal>, StoreError>;

    /// The machine an active agent credential belongs to.
    async fn machine_for_credential(&self, hash: &TokenHash) -> Result<Option<String>, StoreError>;

    /// Credentials revoked at or after `since_ms` (for evicting cached credentials).
    async fn revoked_credentials_since(&self, since_ms: i64) -> Result<Vec<TokenHash>, StoreError>;

    /// Commits a batch of jobs in one transaction, one outcome per job: locks the machines,
    /// brings `books` up to date, and writes what `planner` decides (see `store::ingest`).
    async fn commit_heartbeats(
        &self,
        jobs: &[HeartbeatJob],
        books: &RateBookCache,
        planner: &dyn Planner,
    ) -> Result<Vec<JobOutcome>, StoreError>;

    /// Current totals and last reports of every machine (retired ones flagged).
    async fn fleet_snapshot(&self) -> Result<FleetSnapshot, StoreError> {
        Ok(self.fleet_changes(None).await?.into_snapshot())
    }

    /// The machines written since `since` (every machine when `None`, or when sites or power
    /// profiles changed since), each with all its totals, read in one consistent view, and
    /// the cursor to pass next time. Reading every change this way, a reader's copy equals
    /// the database as of its last read, whichever collector wrote what.
    async fn fleet_changes(&self, since: Option<FleetCursor>) -> Result<FleetChanges, StoreError>;

    /// Forgets what [`Self::fleet_changes`] no longer needs: on PostgreSQL, the change log
    /// older than the horizon noted at the previous call, once that call is at least
    /// `keep_ms` old (a reader whose cursor is older then reads every machine). Returns the
    /// log rows deleted. SQLite keeps no log.
    async fn prune_fleet_log(&self, _now_ms: i64, _keep_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Retires a machine: revokes its credentials and hides it, keeping history and totals.
    async fn retire_machine(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Raw heartbeats stored and the bytes they take at rest (table and indexes, as the
    /// database itself counts them), for the benchmark's `bytes_per_heartbeat`.
    async fn heartbeat_storage(&self) -> Result<HeartbeatStorage, StoreError>;
}

/// Operators and what they share: accounts, sessions, login limits, settings, the audit log.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    async fn count_users(&self) -> Result<i64, StoreError>;

    /// Creates an operator; `Conflict` when the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<User, StoreError>;

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;

    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// Sets a new password hash and revokes every existing session of the user.
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Revokes every existing session of the user (logout).
    async fn revoke_sessions(&self, username: &str, now_ms: i64) -> Result<bool, StoreError>;

    /// Disables the account and revokes its sessions.
    async fn disable_user(&self, username: &str, now_ms: i64) -> Result<bool, StoreError>;

    async fn enable_user(&self, username: &str, now_ms: i64) -> Result<bool, StoreError>;

    async fn set_role(&self, username: &str, role: Role, now_ms: i64) -> Result<bool, StoreError>;

    /// The stored value of `key`, storing `value` first if there is none (so every replica
    /// ends up with the first value written).
    async fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<String, StoreError>;

    /// A stored setting.
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Stores a setting, replacing any previous value.
    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Reserves one sign-in attempt under every key at once (usernames and client IPs), in a
    /// fixed window of `window_ms` per key: when a key already holds `max` attempts in its
    /// window nothing is reserved and the answer is `Err(ms until that window ends)`. Atomic
    /// across replicas, so concurrent attempts never exceed the limit.
    async fn reserve_login_attempt(
        &self,
        keys: &[String],
        now_ms: i64,
        window_ms: i64,
        max: i64,
    ) -> Result<Result<(), i64>, StoreError>;

    /// Settles reserved attempts that were not failures: forgets `clear` keys (the user who
    /// signed in) and gives one attempt back to each `give_back` key.
    async fn release_login_attempt(
        &self,
        clear: &[String],
        give_back: &[String],
    ) -> Result<(), StoreError>;

    /// Forgets login counters whose window started before `before_ms`.
    async fn forget_login_attempts(&self, before_ms: i64) -> Result<(), StoreError>;

    /// Appends to the audit log.
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The newest audit entries first.
    async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
}

/// The effective-dated rate data and the global accounting settings (DESIGN §2).
#[async_trait]
pub trait RatesStore: Send + Sync {
    /// The current rate data version (bumped by every change of it).
    async fn rates_version(&self) -> Result<i64, StoreError>;

    /// Everything an interval is priced with, as of now.
    async fn rate_book(&self) -> Result<RateBook, StoreError>;

    /// Adds a version of the global accounting settings.
    async fn add_accounting_version(
        &self,
        version: SettingsVersion,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Upserts imported hourly grid intensity of a site (UTC hour starts), all or nothing;
    /// `false` when there is no such site.
    async fn import_intensity(
        &self,
        site_id: i64,
        hours: &[(i64, Decimal)],
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// A site's imported hours in `[from_ms, to_ms)`.
    async fn intensity_hours(
        &self,
        site_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Decimal)>, StoreError>;

    /// Brings machines' current placement up to date with placements that took effect in
    /// `(since_ms, now_ms]`; the number of machines changed.
    async fn activate_placements(&self, since_ms: i64, now_ms: i64) -> Result<u64, StoreError>;
}

/// The objects the admin API manages besides operators: sites, power profiles, machine
/// placement, enrollment and API tokens. Rate figures are versions: a change adds one.
#[async_trait]
pub trait AdminObjectStore: Send + Sync {
    async fn list_sites(&self, now_ms: i64) -> Result<Vec<Site>, StoreError>;
    /// `Conflict` when the name is taken. The first version applies from the beginning.
    async fn create_site(&self, site: &SiteFields, now_ms: i64) -> Result<Site, StoreError>;
    /// Renames a site: the site before and after, or `None` when there is no such site.
    async fn rename_site(
        &self,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<(Site, Site)>, StoreError>;
    /// Adds a version (its `effective_from_ms` must not be in the past: checked by the
    /// caller); `Conflict` when one starts at the same moment.
    async fn add_site_version(
        &self,
        id: i64,
        version: &SiteVersionInfo,
        now_ms: i64,
    ) -> Result<Option<(Site, Site)>, StoreError>;
    /// Every version of a site, oldest first.
    async fn site_versions(&self, id: i64) -> Result<Vec<SiteVersionInfo>, StoreError>;
    /// `Conflict` when machines (now or in their history) or tokens use it; `None` when there
    /// is no such site.
    async fn delete_site(&self, id: i64, now_ms: i64) -> Result<Option<Site>, StoreError>;

    async fn list_power_profiles(&self, now_ms: i64) -> Result<Vec<PowerProfile>, StoreError>;
    async fn create_power_profile(
        &self,
        profile: &PowerProfileFields,
        now_ms: i64,
    ) -> Result<PowerProfile, StoreError>;
    async fn rename_power_profile(
        &self,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError>;
    async fn add_profile_version(
        &self,
        id: i64,
        version: &ProfileVersionInfo,
        now_ms: i64,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError>;
    async fn delete_power_profile(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<PowerProfile>, StoreError>;

    /// Moves a live machine from `effective_from_ms` on (not in the past: checked by the
    /// caller); `NotFound` names an unknown site or profile. `None` when there is no such live
    /// machine. Returns the placement in force before and the new one.
    async fn place_machine(
        &self,
        id: &str,
        patch: &PlacementPatch,
        effective_from_ms: i64,
        now_ms: i64,
    ) -> Result<Option<(Placement, Placement)>, StoreError>;

    /// Every placement of a machine, oldest first.
    async fn machine_placements(&self, id: &str) -> Result<Vec<Placement>, StoreError>;

    async fn create_enrollment_token(
        &self,
        token: &NewEnrollmentToken,
    ) -> Result<EnrollmentTokenInfo, StoreError>;
    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenInfo>, StoreError>;
    /// False when there is no such unrevoked token.
    async fn revoke_enrollment_token(&self, id: i64, now_ms: i64) -> Result<bool, StoreError>;

    /// `NotFound` when the user does not exist.
    async fn create_api_token(
        &self,
        username: &str,
        name: &str,
        hash: &TokenHash,
        now_ms: i64,
    ) -> Result<ApiTokenInfo, StoreError>;
    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError>;
    async fn revoke_api_token(&self, id: i64, now_ms: i64) -> Result<bool, StoreError>;
    /// The enabled user an unrevoked API token belongs to.
    async fn user_for_api_token(&self, hash: &TokenHash) -> Result<Option<User>, StoreError>;
}

/// What the heartbeats add up to: energy reports, money totals, and the rollups that keep
/// the sums exact while old rows are compacted (see `retention.rs`).
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Sums of heartbeat increments (exact), grouped.
    async fn energy_report(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StoreError>;

    /// Money totals of one machine per currency.
    async fn machine_costs(&self, id: &str) -> Result<Vec<CostTotal>, StoreError>;

    /// One batch of the what-if rollup: raw heartbeats of machines not yet rolled up (none
    /// before `floor_ms`, at most `span_ms` of `sent_at` past the oldest cursor) handed to
    /// `compute` in order, its tally added to the stored hours and the cursors moved — all in
    /// one transaction, one collector at a time.
    async fn roll_up_savings(
        &self,
        floor_ms: i64,
        span_ms: i64,
        compute: &mut crate::store::admin::SavingsCompute<'_>,
    ) -> Result<crate::store::admin::SavingsBatch, StoreError>;

    /// The rollup rows of the hours `[from_hour, to_hour)` for "sleep after `n` minutes".
    async fn savings_rows(
        &self,
        from_hour: i64,
        to_hour: i64,
        n: i64,
    ) -> Result<crate::store::admin::SavingsRows, StoreError>;

    /// Moves up to `limit` rows older than `before_ms` one level coarser.
    async fn roll_up(
        &self,
        rollup: Rollup,
        before_ms: i64,
        limit: i64,
    ) -> Result<RollupBatch, StoreError>;
}

/// What `greenops import-seed` needs besides enrolment and ingest: which original machines it
/// brought over, and the credentials of those machines (see `store::seed`).
#[async_trait]
pub trait SeedStore: Send + Sync {
    /// The import of the original machine `seed_id`, if one was started.
    async fn seed_import(&self, seed_id: &str) -> Result<Option<SeedImport>, StoreError>;

    /// The id of the machine with `machine_key`, if there is one (retired ones included).
    async fn machine_id_by_key(&self, machine_key: &str) -> Result<Option<String>, StoreError>;

    /// Records that the original machine `seed_id` is being imported as `machine_id` (before
    /// the machine is written, so an import stopped in between resumes it).
    async fn start_seed_import(
        &self,
        seed_id: &str,
        machine_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Adds an active credential to a machine (the import's own, to deliver its history).
    async fn add_credential(
        &self,
        machine_id: &str,
        hash: &TokenHash,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Ends the import of `seed_id`, in one transaction: revokes every credential the import
    /// used for `machine_id`, gives it the original's active `tokens` (so its agents keep
    /// theirs; hashes already stored are left alone) and marks the import finished.
    async fn finish_seed_import(
        &self,
        seed_id: &str,
        machine_id: &str,
        tokens: &[TokenHash],
        now_ms: i64,
    ) -> Result<(), StoreError>;
}
