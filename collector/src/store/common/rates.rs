//! [`RatesStore`] for both backends, and the rate rows the admin queries share.
//!
//! Every change of rate data runs in a "rates change" transaction: on PostgreSQL it takes an
//! exclusive advisory lock that heartbeat batches take shared, then bumps `rates_version`; a
//! batch reads the version under the shared lock, so it always prices with rate data at least
//! as new as its own transaction (on SQLite the database write lock does the same).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Transaction, Type};

use super::{Dialect, RowsAffected, SqlStore, dec};
use crate::accounting::RateBook;
use crate::accounting::rates::{
    BandSpec, ProfileVersion, SettingsVersion, SiteVersion, SpanSpec, Tariff,
    default_business_hours, parse_bands, parse_holidays, parse_spans,
};
use crate::store::admin::{ProfileVersionInfo, SiteVersionInfo};
use crate::store::{RatesStore, StoreError};

/// A stored site version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SiteVersionRow<D> {
    pub site_id: i64,
    pub effective_from_ms: i64,
    pub timezone: String,
    pub currency: String,
    pub price_per_kwh: D,
    pub bands: String,
    pub carbon_g_per_kwh: D,
    pub business_hours: String,
    pub holidays: String,
    pub idle_threshold_seconds: Option<i64>,
}

pub(crate) const SITE_VERSION_COLUMNS: &str = "site_id, effective_from_ms, timezone, currency, \
    price_per_kwh, bands, carbon_g_per_kwh, business_hours, holidays, idle_threshold_seconds";

impl<D: Into<Decimal> + Clone> SiteVersionRow<D> {
    /// As the API shows it.
    pub fn info(&self) -> SiteVersionInfo {
        SiteVersionInfo {
            effective_from_ms: self.effective_from_ms,
            timezone: self.timezone.clone(),
            currency: self.currency.clone(),
            price_per_kwh: self.price_per_kwh.clone().into(),
            bands: serde_json::from_str::<Vec<BandSpec>>(&self.bands).unwrap_or_default(),
            carbon_intensity_g_per_kwh: self.carbon_g_per_kwh.clone().into(),
            business_hours: serde_json::from_str::<Vec<SpanSpec>>(&self.business_hours)
                .unwrap_or_default(),
            holidays: serde_json::from_str::<Vec<String>>(&self.holidays).unwrap_or_default(),
            idle_threshold_seconds: self
                .idle_threshold_seconds
                .and_then(|s| u64::try_from(s).ok()),
        }
    }

    /// As the accounting uses it. Stored values were validated on the way in; one that no
    /// longer parses is logged and read as its default.
    fn version(&self) -> SiteVersion {
        let warn = |what: &str, e: &str| {
            tracing::error!(
                site_id = self.site_id,
                what,
                error = e,
                "unreadable stored rate"
            );
        };
        let timezone = jiff::tz::TimeZone::get(&self.timezone).unwrap_or_else(|e| {
            warn("timezone", &e.to_string());
            jiff::tz::TimeZone::UTC
        });
        SiteVersion {
            effective_from_ms: self.effective_from_ms,
            timezone,
            tariff: Tariff {
                currency: self.currency.clone(),
                price_per_kwh: self.price_per_kwh.clone().into(),
                bands: parse_bands(&self.bands).unwrap_or_else(|e| {
                    warn("bands", &e);
                    Vec::new()
                }),
            },
            carbon_g_per_kwh: self.carbon_g_per_kwh.clone().into(),
            business_hours: parse_spans(&self.business_hours).unwrap_or_else(|e| {
                warn("business_hours", &e);
                default_business_hours()
            }),
            holidays: parse_holidays(&self.holidays).unwrap_or_else(|e| {
                warn("holidays", &e);
                Default::default()
            }),
            idle_threshold_ms: self.idle_threshold_seconds.map(|s| s.saturating_mul(1000)),
        }
    }
}

/// A stored power-profile version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ProfileVersionRow<D> {
    pub profile_id: i64,
    pub effective_from_ms: i64,
    pub idle_watts: D,
    pub active_watts: D,
    pub sleep_watts: D,
}

pub(crate) const PROFILE_VERSION_COLUMNS: &str =
    "profile_id, effective_from_ms, idle_watts, active_watts, sleep_watts";

impl<D: Into<Decimal> + Clone> ProfileVersionRow<D> {
    pub fn info(&self) -> ProfileVersionInfo {
        ProfileVersionInfo {
            effective_from_ms: self.effective_from_ms,
            idle_watts: self.idle_watts.clone().into(),
            active_watts: self.active_watts.clone().into(),
            sleep_watts: self.sleep_watts.clone().into(),
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct IntensityRow<D> {
    site_id: i64,
    hour_ms: i64,
    g_per_kwh: D,
}

#[derive(Debug, sqlx::FromRow)]
struct SettingsRow {
    effective_from_ms: i64,
    idle_threshold_seconds: i64,
    max_gap_seconds: i64,
}

/// Opens a transaction that changes rate data (see the module docs).
pub(crate) async fn begin_rates_change<DB>(
    pool: &Pool<DB>,
) -> Result<Transaction<'static, DB>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut tx = pool.begin_with(DB::BEGIN_WRITE).await?;
    if let Some(lock) = DB::RATES_LOCK_EXCLUSIVE {
        sqlx::query(lock).execute(&mut *tx).await?;
    }
    Ok(tx)
}

/// Marks the rate data changed (in the changing transaction).
pub(crate) async fn bump_rates_version<DB>(tx: &mut Transaction<'_, DB>) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    sqlx::query("UPDATE rates_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The rate data version, read in `tx`.
pub(crate) async fn rates_version_in<DB>(tx: &mut Transaction<'_, DB>) -> Result<i64, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    Ok(
        sqlx::query_scalar("SELECT version FROM rates_version WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// Reads the whole rate book in `tx`.
pub(crate) async fn load_rate_book<DB>(
    tx: &mut Transaction<'_, DB>,
    version: i64,
) -> Result<RateBook, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let sites: Vec<SiteVersionRow<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SITE_VERSION_COLUMNS} FROM site_versions ORDER BY site_id, effective_from_ms"
    )))
    .fetch_all(&mut **tx)
    .await?;
    let profiles: Vec<ProfileVersionRow<DB::Decimal>> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROFILE_VERSION_COLUMNS} FROM profile_versions
             ORDER BY profile_id, effective_from_ms"
        )))
        .fetch_all(&mut **tx)
        .await?;
    let intensity: Vec<IntensityRow<DB::Decimal>> =
        sqlx::query_as("SELECT site_id, hour_ms, g_per_kwh FROM carbon_intensity_hours")
            .fetch_all(&mut **tx)
            .await?;
    let settings: Vec<SettingsRow> = sqlx::query_as(
        "SELECT effective_from_ms, idle_threshold_seconds, max_gap_seconds
         FROM accounting_versions ORDER BY effective_from_ms",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut book = RateBook {
        version,
        ..RateBook::default()
    };
    for row in &sites {
        book.sites
            .entry(row.site_id)
            .or_default()
            .push(row.version());
    }
    for row in &profiles {
        book.profiles
            .entry(row.profile_id)
            .or_default()
            .push(ProfileVersion {
                effective_from_ms: row.effective_from_ms,
                idle_watts: row.idle_watts.clone().into(),
                active_watts: row.active_watts.clone().into(),
                sleep_watts: row.sleep_watts.clone().into(),
            });
    }
    let mut hours: HashMap<i64, BTreeMap<i64, Decimal>> = HashMap::new();
    for row in intensity {
        hours
            .entry(row.site_id)
            .or_default()
            .insert(row.hour_ms, row.g_per_kwh.into());
    }
    book.intensity = hours;
    book.settings = settings
        .into_iter()
        .map(|s| SettingsVersion {
            effective_from_ms: s.effective_from_ms,
            idle_threshold_ms: s.idle_threshold_seconds.saturating_mul(1000),
            max_gap_ms: s.max_gap_seconds.saturating_mul(1000),
        })
        .collect();
    Ok(book)
}

#[async_trait]
impl<S, DB> RatesStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    #[tracing::instrument(name = "store.rates_version", skip_all, fields(backend = DB::LABEL))]
    async fn rates_version(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM rates_version WHERE id = 1")
                .fetch_one(self.pool())
                .await?,
        )
    }

    #[tracing::instrument(name = "store.rate_book", skip_all, fields(backend = DB::LABEL))]
    async fn rate_book(&self) -> Result<RateBook, StoreError> {
        let mut tx = self.pool().begin().await?;
        let version = rates_version_in(&mut tx).await?;
        let book = load_rate_book(&mut tx, version).await?;
        tx.commit().await?;
        Ok(book)
    }

    #[tracing::instrument(
        name = "store.add_accounting_version",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn add_accounting_version(
        &self,
        version: SettingsVersion,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = begin_rates_change(self.pool()).await?;
        sqlx::query(
            "INSERT INTO accounting_versions
                 (effective_from_ms, idle_threshold_seconds, max_gap_seconds, created_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (effective_from_ms) DO UPDATE SET
                 idle_threshold_seconds = excluded.idle_threshold_seconds,
                 max_gap_seconds = excluded.max_gap_seconds",
        )
        .bind(version.effective_from_ms)
        .bind(version.idle_threshold_ms / 1000)
        .bind(version.max_gap_ms / 1000)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.import_intensity", skip_all, fields(backend = DB::LABEL))]
    async fn import_intensity(
        &self,
        site_id: i64,
        hours: &[(i64, Decimal)],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = begin_rates_change(self.pool()).await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM sites WHERE id = $1")
            .bind(site_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        for (hour_ms, g) in hours {
            sqlx::query(
                "INSERT INTO carbon_intensity_hours (site_id, hour_ms, g_per_kwh, imported_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (site_id, hour_ms) DO UPDATE SET
                     g_per_kwh = excluded.g_per_kwh, imported_at_ms = excluded.imported_at_ms",
            )
            .bind(site_id)
            .bind(*hour_ms)
            .bind(dec::<DB>(*g))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        bump_rates_version(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(name = "store.intensity_hours", skip_all, fields(backend = DB::LABEL))]
    async fn intensity_hours(
        &self,
        site_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Decimal)>, StoreError> {
        let rows: Vec<IntensityRow<DB::Decimal>> = sqlx::query_as(
            "SELECT site_id, hour_ms, g_per_kwh FROM carbon_intensity_hours
             WHERE site_id = $1 AND hour_ms >= $2 AND hour_ms < $3 ORDER BY hour_ms",
        )
        .bind(site_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.hour_ms, r.g_per_kwh.into()))
            .collect())
    }

    #[tracing::instrument(
        name = "store.activate_placements",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn activate_placements(&self, since_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE machines SET site_id = p.site_id, department = p.department,
                 power_profile_id = p.power_profile_id, placed_from_ms = p.effective_from_ms
             FROM machine_placements p
             WHERE p.machine_id = machines.id
               AND p.effective_from_ms > $1 AND p.effective_from_ms <= $2
               AND p.effective_from_ms > machines.placed_from_ms
               AND p.effective_from_ms = (SELECT MAX(q.effective_from_ms)
                                          FROM machine_placements q
                                          WHERE q.machine_id = p.machine_id
                                            AND q.effective_from_ms <= $2)",
        )
        .bind(since_ms)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
