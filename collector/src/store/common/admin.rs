//! [`AdminObjectStore`] for both backends: its SQL is the same on PostgreSQL and SQLite (only
//! the decimal columns differ in type, see [`Dialect::Decimal`]).

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Type};

use super::{Dialect, RowsAffected, SqlStore, UserRow, conflict_or, dec};
use crate::secrets::TokenHash;
use crate::store::admin::{
    ApiTokenInfo, EnrollmentTokenInfo, Placement, PlacementPatch, PowerProfile, PowerProfileFields,
    Site, SiteFields,
};
use crate::store::{AdminObjectStore, NewEnrollmentToken, StoreError, User};

/// A site with the number of live machines at it.
#[derive(Debug, sqlx::FromRow)]
struct SiteRow<D> {
    id: i64,
    name: String,
    currency: String,
    price_per_kwh: D,
    carbon_intensity_g_per_kwh: D,
    timezone: String,
    machines: i64,
}

impl<D: Into<Decimal>> From<SiteRow<D>> for Site {
    fn from(row: SiteRow<D>) -> Self {
        Site {
            id: row.id,
            name: row.name,
            currency: row.currency,
            price_per_kwh: row.price_per_kwh.into(),
            carbon_intensity_g_per_kwh: row.carbon_intensity_g_per_kwh.into(),
            timezone: row.timezone,
            machines: row.machines,
        }
    }
}

/// A power profile with the number of live machines using it.
#[derive(Debug, sqlx::FromRow)]
struct ProfileRow<D> {
    id: i64,
    name: String,
    idle_watts: D,
    active_watts: D,
    machines: i64,
}

impl<D: Into<Decimal>> From<ProfileRow<D>> for PowerProfile {
    fn from(row: ProfileRow<D>) -> Self {
        PowerProfile {
            id: row.id,
            name: row.name,
            idle_watts: row.idle_watts.into(),
            active_watts: row.active_watts.into(),
            machines: row.machines,
        }
    }
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

/// A live machine's placement, by names.
#[derive(Debug, sqlx::FromRow)]
struct PlacementRow {
    site: String,
    department: String,
    power_profile: String,
}

impl From<PlacementRow> for Placement {
    fn from(row: PlacementRow) -> Self {
        Placement {
            site: row.site,
            department: row.department,
            power_profile: row.power_profile,
        }
    }
}

const SITES: &str = "SELECT s.id, s.name, s.currency, s.price_per_kwh,
        s.carbon_intensity_g_per_kwh, s.timezone,
        (SELECT COUNT(*) FROM machines m WHERE m.site_id = s.id AND m.retired_at_ms IS NULL)
            AS machines
    FROM sites s";

const PROFILES: &str = "SELECT p.id, p.name, p.idle_watts, p.active_watts,
        (SELECT COUNT(*) FROM machines m
         WHERE m.power_profile_id = p.id AND m.retired_at_ms IS NULL) AS machines
    FROM power_profiles p";

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
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        let rows: Vec<SiteRow<DB::Decimal>> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SITES} ORDER BY s.name")))
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(Site::from).collect())
    }

    #[tracing::instrument(name = "store.create_site", skip_all, fields(backend = DB::LABEL))]
    async fn create_site(&self, site: &SiteFields, now_ms: i64) -> Result<Site, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sites (name, currency, price_per_kwh, carbon_intensity_g_per_kwh,
                 timezone, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id",
        )
        .bind(site.name.as_str())
        .bind(site.currency.as_str())
        .bind(dec::<DB>(site.price_per_kwh))
        .bind(dec::<DB>(site.carbon_intensity_g_per_kwh))
        .bind(site.timezone.as_str())
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(|e| conflict_or(e, || format!("site '{}'", site.name)))?;
        site_by_id(self.pool(), id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {id}")))
    }

    #[tracing::instrument(name = "store.update_site", skip_all, fields(backend = DB::LABEL))]
    async fn update_site(
        &self,
        id: i64,
        site: &SiteFields,
    ) -> Result<Option<(Site, Site)>, StoreError> {
        let Some(before) = site_by_id(self.pool(), id).await? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE sites SET name = $1, currency = $2, price_per_kwh = $3,
                 carbon_intensity_g_per_kwh = $4, timezone = $5
             WHERE id = $6",
        )
        .bind(site.name.as_str())
        .bind(site.currency.as_str())
        .bind(dec::<DB>(site.price_per_kwh))
        .bind(dec::<DB>(site.carbon_intensity_g_per_kwh))
        .bind(site.timezone.as_str())
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_or(e, || format!("site '{}'", site.name)))?;
        let after = site_by_id(self.pool(), id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {id}")))?;
        Ok(Some((before, after)))
    }

    #[tracing::instrument(name = "store.delete_site", skip_all, fields(backend = DB::LABEL))]
    async fn delete_site(&self, id: i64) -> Result<Option<Site>, StoreError> {
        let (sites, machines, tokens): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM sites),
                    (SELECT COUNT(*) FROM machines WHERE site_id = $1),
                    (SELECT COUNT(*) FROM enrollment_tokens WHERE site_id = $1)",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        let Some(site) = site_by_id(self.pool(), id).await? else {
            return Ok(None);
        };
        if machines > 0 || tokens > 0 {
            return Err(StoreError::Conflict(format!(
                "site '{}' is used by {machines} machine(s) (retired ones included) and \
                 {tokens} enrollment token(s); move them first",
                site.name
            )));
        }
        if sites <= 1 {
            return Err(StoreError::Conflict(format!(
                "site '{}' is the last site; create another one first",
                site.name
            )));
        }
        sqlx::query("DELETE FROM sites WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(Some(site))
    }

    #[tracing::instrument(
        name = "store.list_power_profiles",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn list_power_profiles(&self) -> Result<Vec<PowerProfile>, StoreError> {
        let rows: Vec<ProfileRow<DB::Decimal>> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{PROFILES} ORDER BY p.name")))
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(PowerProfile::from).collect())
    }

    #[tracing::instrument(
        name = "store.create_power_profile",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn create_power_profile(
        &self,
        profile: &PowerProfileFields,
        now_ms: i64,
    ) -> Result<PowerProfile, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO power_profiles (name, idle_watts, active_watts, created_at_ms)
             VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(profile.name.as_str())
        .bind(dec::<DB>(profile.idle_watts))
        .bind(dec::<DB>(profile.active_watts))
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(|e| conflict_or(e, || format!("power profile '{}'", profile.name)))?;
        profile_by_id(self.pool(), id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("power profile {id}")))
    }

    #[tracing::instrument(
        name = "store.update_power_profile",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn update_power_profile(
        &self,
        id: i64,
        profile: &PowerProfileFields,
    ) -> Result<Option<(PowerProfile, PowerProfile)>, StoreError> {
        let Some(before) = profile_by_id(self.pool(), id).await? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE power_profiles SET name = $1, idle_watts = $2, active_watts = $3
             WHERE id = $4",
        )
        .bind(profile.name.as_str())
        .bind(dec::<DB>(profile.idle_watts))
        .bind(dec::<DB>(profile.active_watts))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_or(e, || format!("power profile '{}'", profile.name)))?;
        let after = profile_by_id(self.pool(), id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("power profile {id}")))?;
        Ok(Some((before, after)))
    }

    #[tracing::instrument(
        name = "store.delete_power_profile",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn delete_power_profile(&self, id: i64) -> Result<Option<PowerProfile>, StoreError> {
        let (profiles, machines): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM power_profiles),
                    (SELECT COUNT(*) FROM machines WHERE power_profile_id = $1)",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        let Some(profile) = profile_by_id(self.pool(), id).await? else {
            return Ok(None);
        };
        if machines > 0 {
            return Err(StoreError::Conflict(format!(
                "power profile '{}' is used by {machines} machine(s) (retired ones included); \
                 move them first",
                profile.name
            )));
        }
        if profiles <= 1 {
            return Err(StoreError::Conflict(format!(
                "power profile '{}' is the last one; create another one first",
                profile.name
            )));
        }
        sqlx::query("DELETE FROM power_profiles WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(Some(profile))
    }

    #[tracing::instrument(name = "store.place_machine", skip_all, fields(backend = DB::LABEL))]
    async fn place_machine(
        &self,
        id: &str,
        patch: &PlacementPatch,
    ) -> Result<Option<(Placement, Placement)>, StoreError> {
        let Some(before) = placement_of(self.pool(), id).await? else {
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
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site '{site}'")))?;
        let profile_id: i64 = sqlx::query_scalar("SELECT id FROM power_profiles WHERE name = $1")
            .bind(profile)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("power profile '{profile}'")))?;
        let done = sqlx::query(
            "UPDATE machines SET site_id = $1, department = $2, power_profile_id = $3
             WHERE id = $4 AND retired_at_ms IS NULL",
        )
        .bind(site_id)
        .bind(department)
        .bind(profile_id)
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let after = placement_of(self.pool(), id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("machine {id}")))?;
        Ok(Some((before, after)))
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

async fn site_by_id<DB>(pool: &Pool<DB>, id: i64) -> Result<Option<Site>, sqlx::Error>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let row: Option<SiteRow<DB::Decimal>> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SITES} WHERE s.id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(Site::from))
}

async fn profile_by_id<DB>(pool: &Pool<DB>, id: i64) -> Result<Option<PowerProfile>, sqlx::Error>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let row: Option<ProfileRow<DB::Decimal>> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{PROFILES} WHERE p.id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(PowerProfile::from))
}

async fn placement_of<DB>(pool: &Pool<DB>, id: &str) -> Result<Option<Placement>, sqlx::Error>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let row: Option<PlacementRow> = sqlx::query_as(
        "SELECT s.name AS site, m.department, p.name AS power_profile
         FROM machines m
         JOIN sites s ON s.id = m.site_id
         JOIN power_profiles p ON p.id = m.power_profile_id
         WHERE m.id = $1 AND m.retired_at_ms IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Placement::from))
}
