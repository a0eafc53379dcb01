//! [`AdminObjectStore`] for both backends: its SQL is the same on PostgreSQL and SQLite (only
//! the decimal columns differ in type, see [`Dialect::Decimal`]).
//!
//! Sites and power profiles are a name plus versions (`site_versions`, `profile_versions`):
//! a change of rates adds a version in a rates-change transaction (`rates.rs`), never edits
//! one. A machine's moves are versions too (`machine_placements`).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Transaction, Type};

use super::rates::{
    PROFILE_VERSION_COLUMNS, ProfileVersionRow, SITE_VERSION_COLUMNS, SiteVersionRow,
    begin_rates_change, bump_rates_version,
};
use super::{Dialect, RowsAffected, SqlStore, UserRow, conflict_or, dec};
use crate::secrets::TokenHash;
use crate::store::admin::{
    ApiTokenInfo, EnrollmentTokenInfo, Placement, PlacementPatch, PowerProfile, PowerProfileFields,
    ProfileVersionInfo, Site, SiteFields, SiteVersionInfo,
};
use crate::store::{AdminObjectStore, NewEnrollmentToken, StoreError, User};

/// A site or profile name with its id and the live machines placed on it now.
#[derive(Debug, sqlx::FromRow)]
struct NamedRow {
    id: i64,
    name: String,
    machines: i64,
}

/// An enrollment token as listed, with its site's name.
#[derive(Debug, sqlx::FromRow)]
struct EnrollmentTokenRow {
    id: i64,
    site: String,
    department: String,
    expires_at_ms: Option<i64>,
    max_uses: Option<i64>,
    uses: i64,
    revoked_at_ms: Option<i64>,
    created_at_ms: i64,
}

impl From<EnrollmentTokenRow> for EnrollmentTokenInfo {
    fn from(row: EnrollmentTokenRow) -> Self {
        EnrollmentTokenInfo {
            id: row.id,
            site: row.site,
            department: row.department,
            expires_at_ms: row.expires_at_ms,
            max_uses: row.max_uses,
            uses: row.uses,
            revoked_at_ms: row.revoked_at_ms,
            created_at_ms: row.created_at_ms,
        }
    }
}

/// An API token as listed, with its owner's name.
#[derive(Debug, sqlx::FromRow)]
struct ApiTokenRow {
    id: i64,
    name: String,
    username: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

impl From<ApiTokenRow> for ApiTokenInfo {
    fn from(row: ApiTokenRow) -> Self {
        ApiTokenInfo {
            id: row.id,
            name: row.name,
            username: row.username,
            created_at_ms: row.created_at_ms,
            revoked_at_ms: row.revoked_at_ms,
        }
    }
}

/// A placement, by names.
#[derive(Debug, sqlx::FromRow)]
struct PlacementRow {
    site: String,
    department: String,
    power_profile: String,
    effective_from_ms: i64,
}

impl From<PlacementRow> for Placement {
    fn from(row: PlacementRow) -> Self {
        Placement {
            site: row.site,
            department: row.department,
            power_profile: row.power_profile,
            effective_from_ms: row.effective_from_ms,
        }
    }
}

/// The version in force at `now_ms` (the first before the first change) and the later ones.
fn current_and_scheduled<T: Clone>(
    versions: &[T],
    from: impl Fn(&T) -> i64,
    now_ms: i64,
) -> Option<(T, Vec<T>)> {
    let started = versions.partition_point(|v| from(v) <= now_ms).max(1);
    let current = versions.get(started - 1)?.clone();
    Some((
        current,
        versions.get(started..).unwrap_or_default().to_vec(),
    ))
}

/// Named objects (sites, power profiles), each with the version in force at `now_ms` and the
/// later ones; versions arrive as `(object id, version)` in `effective_from` order. An object
/// without any version is left out.
fn with_versions<V: Clone, O>(
    named: Vec<NamedRow>,
    versions: impl IntoIterator<Item = (i64, V)>,
    from: impl Fn(&V) -> i64 + Copy,
    now_ms: i64,
    build: impl Fn(NamedRow, V, Vec<V>) -> O,
) -> Vec<O> {
    let mut by_id: HashMap<i64, Vec<V>> = HashMap::new();
    for (id, v) in versions {
        by_id.entry(id).or_default().push(v);
    }
    named
        .into_iter()
        .filter_map(|n| {
            let list = by_id.remove(&n.id).unwrap_or_default();
            let (current, scheduled) = current_and_scheduled(&list, from, now_ms)?;
            Some(build(n, current, scheduled))
        })
        .collect()
}

/// JSON text of a list-valued version field.
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl<S, DB> AdminObjectStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Type<DB> + Encode<'q, DB>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    #[tracing::instrument(name = "store.list_sites", skip_all, fields(backend = DB::LABEL))]
    async fn list_sites(&self, now_ms: i64) -> Result<Vec<Site>, StoreError> {
        sites(self.pool(), None, now_ms).await
    }

    #[tracing::instrument(name = "store.create_site", skip_all, fields(backend = DB::LABEL))]
    async fn create_site(&self, site: &SiteFields, now_ms: i64) -> Result<Site, StoreError> {
        let mut tx = begin_rates_change(self.pool()).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sites (name, created_at_ms) VALUES ($1, $2) RETURNING id",
        )
        .bind(site.name.as_str())
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("site '{}'", site.name)))?;
        let first = SiteVersionInfo {
            effective_from_ms: i64::MIN,
            ..site.version.clone()
        };
        insert_site_version::<DB>(&mut tx, id, &first, now_ms).await?;
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        one_site(self.pool(), id, now_ms).await
    }

    #[tracing::instrument(name = "store.rename_site", skip_all, fields(backend = DB::LABEL))]
    async fn rename_site(
        &self,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<(Site, Site)>, StoreError> {
        let Some(before) = sites(self.pool(), Some(id), now_ms).await?.pop() else {
            return Ok(None);
        };
        sqlx::query("UPDATE sites SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| conflict_or(e, || format!("site '{name}'")))?;
        Ok(Some((before, one_site(self.pool(), id, now_ms).await?)))
    }

    #[tracing::instrument(name = "store.add_site_version", skip_all, fields(backend = DB::LABEL))]
    async fn add_site_version(
        &self,
        id: i64,
        version: &SiteVersionInfo,
        now_ms: i64,
    ) -> Result<Option<(Site, Site)>, StoreError> {
        let Some(before) = sites(self.pool(), Some(id), now_ms).await?.pop() else {
            return Ok(None);
        };
        let mut tx = begin_rates_change(self.pool()).await?;
        insert_site_version::<DB>(&mut tx, id, version, now_ms).await?;
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        Ok(Some((before, one_site(self.pool(), id, now_ms).await?)))
    }

    #[tracing::instrument(name = "store.site_versions", skip_all, fields(backend = DB::LABEL))]
    async fn site_versions(&self, id: i64) -> Result<Vec<SiteVersionInfo>, StoreError> {
        let rows: Vec<SiteVersionRow<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SITE_VERSION_COLUMNS} FROM site_versions WHERE site_id = $1
             ORDER BY effective_from_ms"
        )))
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(SiteVersionRow::info).collect())
    }

    #[tracing::instrument(name = "store.delete_site", skip_all, fields(backend = DB::LABEL))]
    async fn delete_site(&self, id: i64, now_ms: i64) -> Result<Option<Site>, StoreError> {
        let (sites_n, machines, tokens): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM sites),
                    (SELECT COUNT(DISTINCT machine_id) FROM machine_placements WHERE site_id = $1),
                    (SELECT COUNT(*) FROM enrollment_tokens WHERE site_id = $1)",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        let Some(site) = sites(self.pool(), Some(id), now_ms).await?.pop() else {
            return Ok(None);
        };
        if machines > 0 || tokens > 0 {
            return Err(StoreError::Conflict(format!(
                "site '{}' is used by {machines} machine(s) (now or in their history, retired \
                 ones included) and {tokens} enrollment token(s); its history must stay",
                site.name
            )));
        }
        if sites_n <= 1 {
            return Err(StoreError::Conflict(format!(
                "site '{}' is the last site; create another one first",
                site.name
            )));
        }
        let mut tx = begin_rates_change(self.pool()).await?;
        for statement in [
            "DELETE FROM site_versions WHERE site_id = $1",
            "DELETE FROM carbon_intensity_hours WHERE site_id = $1",
            "DELETE FROM sites WHERE id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(site))
    }

    #[tracing::instrument(name = "store.list_power_profiles", skip_all, fields(backend = DB::LABEL))]
    async fn list_power_profiles(&self, now_ms: i64) -> Result<Vec<PowerProfile>, StoreError> {
        profiles(self.pool(), None, now_ms).await
    }

    #[tracing::instrument(name = "store.create_power_profile", skip_all, fields(backend = DB::LABEL))]
    async fn create_power_profile(
        &self,
        profile: &PowerProfileFields,
        now_ms: i64,
    ) -> Result<PowerProfile, StoreError> {
        let mut tx = begin_rates_change(self.pool()).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO power_profiles (name, created_at_ms) VALUES ($1, $2) RETURNING id",
        )
        .bind(profile.name.as_str())
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("power profile '{}'", profile.name)))?;
        let first = ProfileVersionInfo {
            effective_from_ms: i64::MIN,
            ..profile.version.clone()
        };
        insert_profile_version::<DB>(&mut tx, id, &first, now_ms).await?;
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        one_profile(self.pool(), id, now_ms).await
    }

    #[tracing::instrument(name = "store.rename_power_profile", skip_all, fields(backend = DB::LABEL))]
    async fn rename_power_profile(
        &self,
        id: i64,
        name: &str,
        now_ms: i64,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError> {
        let Some(before) = profiles(self.pool(), Some(id), now_ms).await?.pop() else {
            return Ok(None);
        };
        sqlx::query("UPDATE power_profiles SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| conflict_or(e, || format!("power profile '{name}'")))?;
        Ok(Some((before, one_profile(self.pool(), id, now_ms).await?)))
    }

    #[tracing::instrument(name = "store.add_profile_version", skip_all, fields(backend = DB::LABEL))]
    async fn add_profile_version(
        &self,
        id: i64,
        version: &ProfileVersionInfo,
        now_ms: i64,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError> {
        let Some(before) = profiles(self.pool(), Some(id), now_ms).await?.pop() else {
            return Ok(None);
        };
        let mut tx = begin_rates_change(self.pool()).await?;
        insert_profile_version::<DB>(&mut tx, id, version, now_ms).await?;
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        Ok(Some((before, one_profile(self.pool(), id, now_ms).await?)))
    }

    #[tracing::instrument(name = "store.delete_power_profile", skip_all, fields(backend = DB::LABEL))]
    async fn delete_power_profile(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<Option<PowerProfile>, StoreError> {
        let (profiles_n, machines): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM power_profiles),
                    (SELECT COUNT(DISTINCT machine_id) FROM machine_placements
                     WHERE power_profile_id = $1)",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        let Some(profile) = profiles(self.pool(), Some(id), now_ms).await?.pop() else {
            return Ok(None);
        };
        if machines > 0 {
            return Err(StoreError::Conflict(format!(
                "power profile '{}' is used by {machines} machine(s) (now or in their \
                 history, retired ones included); its history must stay",
                profile.name
            )));
        }
        if profiles_n <= 1 {
            return Err(StoreError::Conflict(format!(
                "power profile '{}' is the last one; create another one first",
                profile.name
            )));
        }
        let mut tx = begin_rates_change(self.pool()).await?;
        for statement in [
            "DELETE FROM profile_versions WHERE profile_id = $1",
            "DELETE FROM power_profiles WHERE id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(profile))
    }

    #[tracing::instrument(name = "store.place_machine", skip_all, fields(backend = DB::LABEL))]
    async fn place_machine(
        &self,
        id: &str,
        patch: &PlacementPatch,
        effective_from_ms: i64,
        now_ms: i64,
    ) -> Result<Option<(Placement, Placement)>, StoreError> {
        let mut tx = self.pool().begin_with(DB::BEGIN_WRITE).await?;
        // The machine's row lock orders this move against heartbeat batches (PostgreSQL).
        let live: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM machines WHERE id = $1 AND retired_at_ms IS NULL{}",
            DB::FOR_UPDATE
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if live.is_none() {
            return Ok(None);
        }
        let history = placements_in(&mut tx, id).await?;
        let started = history.partition_point(|p| p.effective_from_ms <= effective_from_ms);
        let Some(before) = history.get(started.saturating_sub(1)).cloned() else {
            return Ok(None);
        };
        let site = patch.site.as_deref().unwrap_or(&before.site);
        let profile = patch
            .power_profile
            .as_deref()
            .unwrap_or(&before.power_profile);
        let department = patch.department.as_deref().unwrap_or(&before.department);
        let site_id: i64 = sqlx::query_scalar("SELECT id FROM sites WHERE name = $1")
            .bind(site)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site '{site}'")))?;
        let profile_id: i64 = sqlx::query_scalar("SELECT id FROM power_profiles WHERE name = $1")
            .bind(profile)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("power profile '{profile}'")))?;
        sqlx::query(
            "INSERT INTO machine_placements
                 (machine_id, effective_from_ms, site_id, department, power_profile_id, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(effective_from_ms)
        .bind(site_id)
        .bind(department)
        .bind(profile_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!("a placement of machine {id} from that moment")
            })
        })?;
        if effective_from_ms <= now_ms {
            sqlx::query(
                "UPDATE machines SET site_id = $1, department = $2, power_profile_id = $3,
                     placed_from_ms = $4
                 WHERE id = $5",
            )
            .bind(site_id)
            .bind(department)
            .bind(profile_id)
            .bind(effective_from_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let after = Placement {
            site: site.to_string(),
            department: department.to_string(),
            power_profile: profile.to_string(),
            effective_from_ms,
        };
        Ok(Some((before, after)))
    }

    #[tracing::instrument(name = "store.machine_placements", skip_all, fields(backend = DB::LABEL))]
    async fn machine_placements(&self, id: &str) -> Result<Vec<Placement>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        let rows: Vec<PlacementRow> = sqlx::query_as(PLACEMENTS)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows.into_iter().map(Placement::from).collect())
    }

    #[tracing::instrument(
        name = "store.create_enrollment_token",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn create_enrollment_token(
        &self,
        token: &NewEnrollmentToken,
    ) -> Result<EnrollmentTokenInfo, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO enrollment_tokens
                 (token_hash, site_id, department, expires_at_ms, max_uses, created_at_ms)
             SELECT $1, s.id, $3, $4, $5, $6 FROM sites s WHERE s.name = $2
             RETURNING id",
        )
        .bind(token.token_hash.as_bytes())
        .bind(token.site.as_str())
        .bind(token.department.as_str())
        .bind(token.expires_at_ms)
        .bind(token.max_uses)
        .bind(token.created_at_ms)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site '{}'", token.site)))?;
        Ok(token.stored(id))
    }

    #[tracing::instrument(
        name = "store.list_enrollment_tokens",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenInfo>, StoreError> {
        let rows: Vec<EnrollmentTokenRow> = sqlx::query_as(
            "SELECT t.id, s.name AS site, t.department, t.expires_at_ms, t.max_uses, t.uses,
                    t.revoked_at_ms, t.created_at_ms
             FROM enrollment_tokens t JOIN sites s ON s.id = t.site_id
             ORDER BY t.id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(EnrollmentTokenInfo::from).collect())
    }

    #[tracing::instrument(
        name = "store.revoke_enrollment_token",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn revoke_enrollment_token(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at_ms = $1
             WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.create_api_token", skip_all, fields(backend = DB::LABEL))]
    async fn create_api_token(
        &self,
        username: &str,
        name: &str,
        hash: &TokenHash,
        now_ms: i64,
    ) -> Result<ApiTokenInfo, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (token_hash, user_id, name, created_at_ms)
             SELECT $1, u.id, $2, $3 FROM users u WHERE u.username = $4
             RETURNING id",
        )
        .bind(hash.as_bytes())
        .bind(name)
        .bind(now_ms)
        .bind(username)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
        Ok(ApiTokenInfo {
            id,
            name: name.to_string(),
            username: username.to_string(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        })
    }

    #[tracing::instrument(name = "store.list_api_tokens", skip_all, fields(backend = DB::LABEL))]
    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
        let rows: Vec<ApiTokenRow> = sqlx::query_as(
            "SELECT t.id, t.name, u.username, t.created_at_ms, t.revoked_at_ms
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             ORDER BY t.id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(ApiTokenInfo::from).collect())
    }

    #[tracing::instrument(name = "store.revoke_api_token", skip_all, fields(backend = DB::LABEL))]
    async fn revoke_api_token(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(
        name = "store.user_for_api_token",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn user_for_api_token(&self, hash: &TokenHash) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.role, u.password_hash, u.session_version,
                    u.disabled_at_ms
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND t.revoked_at_ms IS NULL AND u.disabled_at_ms IS NULL",
        )
        .bind(hash.as_bytes())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(User::from))
    }
}

const PLACEMENTS: &str = "SELECT s.name AS site, p.department, f.name AS power_profile,
        p.effective_from_ms
    FROM machine_placements p
    JOIN sites s ON s.id = p.site_id
    JOIN power_profiles f ON f.id = p.power_profile_id
    WHERE p.machine_id = $1
    ORDER BY p.effective_from_ms";

async fn placements_in<DB>(
    tx: &mut Transaction<'_, DB>,
    id: &str,
) -> Result<Vec<Placement>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let rows: Vec<PlacementRow> = sqlx::query_as(PLACEMENTS)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().map(Placement::from).collect())
}

async fn insert_site_version<DB>(
    tx: &mut Transaction<'_, DB>,
    site_id: i64,
    v: &SiteVersionInfo,
    now_ms: i64,
) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    let (bands, hours, holidays) = (
        json_text(&v.bands),
        json_text(&v.business_hours),
        json_text(&v.holidays),
    );
    sqlx::query(
        "INSERT INTO site_versions (site_id, effective_from_ms, timezone, currency,
             price_per_kwh, bands, carbon_g_per_kwh, business_hours, holidays,
             idle_threshold_seconds, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(site_id)
    .bind(v.effective_from_ms)
    .bind(v.timezone.as_str())
    .bind(v.currency.as_str())
    .bind(dec::<DB>(v.price_per_kwh))
    .bind(bands.as_str())
    .bind(dec::<DB>(v.carbon_intensity_g_per_kwh))
    .bind(hours.as_str())
    .bind(holidays.as_str())
    .bind(v.idle_threshold_seconds.and_then(|s| i64::try_from(s).ok()))
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_or(e, || "a version of this site from that moment".to_string()))?;
    Ok(())
}

async fn insert_profile_version<DB>(
    tx: &mut Transaction<'_, DB>,
    profile_id: i64,
    v: &ProfileVersionInfo,
    now_ms: i64,
) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
{
    sqlx::query(
        "INSERT INTO profile_versions (profile_id, effective_from_ms, idle_watts, active_watts,
             sleep_watts, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(profile_id)
    .bind(v.effective_from_ms)
    .bind(dec::<DB>(v.idle_watts))
    .bind(dec::<DB>(v.active_watts))
    .bind(dec::<DB>(v.sleep_watts))
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        conflict_or(e, || {
            "a version of this profile from that moment".to_string()
        })
    })?;
    Ok(())
}

/// Sites (one, or all by name) with their current and scheduled versions.
async fn sites<DB>(pool: &Pool<DB>, only: Option<i64>, now_ms: i64) -> Result<Vec<Site>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let filter = if only.is_some() {
        "WHERE s.id = $1"
    } else {
        "WHERE $1 = $1"
    };
    let named: Vec<NamedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.id, s.name,
                (SELECT COUNT(*) FROM machines m WHERE m.site_id = s.id AND m.retired_at_ms IS NULL)
                    AS machines
         FROM sites s {filter} ORDER BY s.name"
    )))
    .bind(only.unwrap_or(0))
    .fetch_all(pool)
    .await?;
    let vfilter = if only.is_some() {
        "WHERE site_id = $1"
    } else {
        "WHERE $1 = $1"
    };
    let rows: Vec<SiteVersionRow<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SITE_VERSION_COLUMNS} FROM site_versions {vfilter}
         ORDER BY site_id, effective_from_ms"
    )))
    .bind(only.unwrap_or(0))
    .fetch_all(pool)
    .await?;
    let versions = rows.iter().map(|r| (r.site_id, r.info()));
    Ok(with_versions(
        named,
        versions,
        |v| v.effective_from_ms,
        now_ms,
        |n, current, scheduled| Site {
            id: n.id,
            name: n.name,
            machines: n.machines,
            current,
            scheduled,
        },
    ))
}

async fn one_site<DB>(pool: &Pool<DB>, id: i64, now_ms: i64) -> Result<Site, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    sites(pool, Some(id), now_ms)
        .await?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("site {id}")))
}

/// Power profiles (one, or all by name) with their current and scheduled versions.
async fn profiles<DB>(
    pool: &Pool<DB>,
    only: Option<i64>,
    now_ms: i64,
) -> Result<Vec<PowerProfile>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let filter = if only.is_some() {
        "WHERE p.id = $1"
    } else {
        "WHERE $1 = $1"
    };
    let named: Vec<NamedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.id, p.name,
                (SELECT COUNT(*) FROM machines m
                 WHERE m.power_profile_id = p.id AND m.retired_at_ms IS NULL) AS machines
         FROM power_profiles p {filter} ORDER BY p.name"
    )))
    .bind(only.unwrap_or(0))
    .fetch_all(pool)
    .await?;
    let vfilter = if only.is_some() {
        "WHERE profile_id = $1"
    } else {
        "WHERE $1 = $1"
    };
    let rows: Vec<ProfileVersionRow<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROFILE_VERSION_COLUMNS} FROM profile_versions {vfilter}
         ORDER BY profile_id, effective_from_ms"
    )))
    .bind(only.unwrap_or(0))
    .fetch_all(pool)
    .await?;
    let versions = rows.iter().map(|r| (r.profile_id, r.info()));
    Ok(with_versions(
        named,
        versions,
        |v| v.effective_from_ms,
        now_ms,
        |n, current, scheduled| PowerProfile {
            id: n.id,
            name: n.name,
            machines: n.machines,
            current,
            scheduled,
        },
    ))
}

async fn one_profile<DB>(pool: &Pool<DB>, id: i64, now_ms: i64) -> Result<PowerProfile, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    profiles(pool, Some(id), now_ms)
        .await?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("power profile {id}")))
}
