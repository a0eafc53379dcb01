//! PostgreSQL backend: the production store, safe for several collectors on one database.
//!
//! Concurrency: the ingest transaction locks the machine rows it touches with
//! `SELECT … ORDER BY id FOR UPDATE`, so two collectors delivering the same heartbeat serialise
//! on the row and the second one sees it as a duplicate; locks are always taken in id order,
//! so batches never deadlock.
//!
//! The operator and admin-object queries are shared with SQLite (`common/`); this module holds
//! what PostgreSQL does its own way: heartbeat ingest with array parameters (`ingest.rs`),
//! reports summed in SQL and the rollup lock (`reports.rs`).

mod ingest;
mod reports;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{ConnectOptions, Postgres};

use super::common::{self, Dialect, RowsAffected, SqlStore};
use super::{Backend, PoolOptions, Store, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

impl Dialect for Postgres {
    const LABEL: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const RATES_LOCK_EXCLUSIVE: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(7310453)");
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const NUM_BY_INSERT: bool = false;
    const ROW_ID: &'static str = "ctid";
    /// `NUMERIC` columns, bound and read as exact decimals.
    type Decimal = Decimal;
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A pool of connections to one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Creates the pool lazily: the collector starts (and answers 503) even while the
    /// database is down, and recovers by itself when it returns.
    pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<Self> {
        let connect: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL: {e}"))?
            .application_name("greenops")
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(Self { pool })
    }
}

/// Whether a PostgreSQL server accepts one connection for `url` within `timeout`; `Err` says
/// why not, in the driver's words (refused, unknown host, authentication failed…).
pub async fn check_reachable(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    use sqlx::Connection;
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    match tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&options)).await {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
    }
}

impl SqlStore for PostgresStore {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(name = "store.migrate", skip_all, fields(backend = "postgres"))]
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        common::upgrade::carry_forward_v1(self).await
    }

    #[tracing::instrument(name = "store.readiness", skip_all, fields(backend = "postgres"))]
    async fn readiness(&self) -> Result<(), StoreError> {
        common::readiness(&self.pool, &MIGRATOR).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
