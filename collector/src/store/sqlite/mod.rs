//! SQLite backend: the embedded default, a single file in the data directory.
//!
//! WAL mode with `synchronous = NORMAL` by default: a commit survives a crash of the collector
//! process, but the last transactions before a power loss or OS crash may be lost (they are in
//! the WAL but not yet fsynced). `database.sqlite_synchronous = "full"` fsyncs every commit.
//! Writers take the database write lock up front (`BEGIN IMMEDIATE`), so several writers —
//! even several collector processes on one file — serialise instead of failing mid-transaction.
//!
//! SQLite has no exact decimal type: decimals are stored as TEXT ([`DecimalText`]) and every
//! sum is computed in the collector with `rust_decimal`, never in SQL.
//!
//! The operator and admin-object queries are shared with PostgreSQL (`common/`); this module
//! holds what SQLite does its own way: heartbeat ingest with multi-row statements and totals
//! added in Rust (`ingest.rs`), reports summed in Rust (`reports.rs`).

mod ingest;
mod reports;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::types::Text;
use sqlx::{Decode, Encode, Sqlite, Type};

use super::common::{self, Dialect, RowsAffected, SqlStore};
use super::{Backend, PoolOptions, Store, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

impl Dialect for Sqlite {
    const LABEL: &'static str = "sqlite";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const RATES_LOCK_EXCLUSIVE: Option<&'static str> = None;
    const FOR_UPDATE: &'static str = "";
    const NUM_BY_INSERT: bool = true;
    const ROW_ID: &'static str = "rowid";
    type Decimal = DecimalText;
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// An exact decimal in a TEXT column: read as [`Text<Decimal>`], written normalised (`0.12`,
/// never `0.1200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecimalText(pub Decimal);

impl From<Decimal> for DecimalText {
    fn from(d: Decimal) -> Self {
        Self(d)
    }
}

impl From<DecimalText> for Decimal {
    fn from(d: DecimalText) -> Self {
        d.0
    }
}

impl Type<Sqlite> for DecimalText {
    fn type_info() -> SqliteTypeInfo {
        <Text<Decimal> as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <Text<Decimal> as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for DecimalText {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.0.normalize().to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DecimalText {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(
            <Text<Decimal> as Decode<'r, Sqlite>>::decode(value)?.0,
        ))
    }
}

/// Durability of each commit (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteDurability {
    /// Durable against process crashes; an OS crash or power loss may lose the last commits.
    Normal,
    /// Every commit is fsynced.
    Full,
}

/// A pool of connections to one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

/// The file named by a `sqlite://path` or `sqlite:path` URL.
pub fn path_of(url: &str) -> PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    PathBuf::from(rest)
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and its directory.
    pub async fn connect(
        url: &str,
        options: &PoolOptions,
        durability: SqliteDurability,
    ) -> anyhow::Result<Self> {
        let path = path_of(url);
        if path.as_os_str().is_empty() {
            anyhow::bail!("the SQLite URL names no file (expected sqlite://path/to/greenops.db)");
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                SqliteDurability::Normal => SqliteSynchronous::Normal,
                SqliteDurability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // The default 2 MiB page cache turns every batch into hundreds of pread calls;
            // 16 MiB per connection keeps the hot pages (machines, recent heartbeats) cached
            // while the pool's memory stays bounded.
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory")
            // Fewer, larger checkpoints: each one fsyncs the database file.
            .pragma("wal_autocheckpoint", "8000");
        // One writer at a time anyway; a few readers are plenty, and each holds a page cache.
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.clamp(2, 8))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        Ok(Self { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    #[tracing::instrument(name = "store.migrate", skip_all, fields(backend = "sqlite"))]
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        common::upgrade::carry_forward_v1(self).await
    }

    #[tracing::instrument(name = "store.readiness", skip_all, fields(backend = "sqlite"))]
    async fn readiness(&self) -> Result<(), StoreError> {
        common::readiness(&self.pool, &MIGRATOR).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
