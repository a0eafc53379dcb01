//! The database of the original Python GreenOps, read by `greenops import-seed`, and what the
//! import writes to this store besides the ordinary enrolment and ingest (see
//! [`SeedStore`](crate::store::SeedStore)).
//!
//! The original schema as this reader expects it (the column list of its migrations):
//! `machines(id, mac_address, hostname, os_type, os_version, first_seen, last_seen,
//! total_idle_seconds, total_active_seconds, energy_wasted_kwh, status)`,
//! `heartbeats(machine_id, timestamp, idle_seconds, cpu_usage, memory_usage)`,
//! `users(username, password_hash, role)`, `agent_tokens(token_hash, machine_id, revoked)`.
//! Other columns are ignored; a missing table or column is refused before anything is read.
//! Timestamps without a time zone are read as UTC (the original writes UTC).

use std::collections::BTreeSet;

use futures_util::TryStreamExt;
use futures_util::stream::BoxStream;
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;

/// Every table and column the import reads.
pub const SEED_SCHEMA: &[(&str, &[&str])] = &[
    (
        "machines",
        &[
            "id",
            "mac_address",
            "hostname",
            "os_type",
            "os_version",
            "first_seen",
            "last_seen",
            "total_idle_seconds",
            "total_active_seconds",
            "energy_wasted_kwh",
            "status",
        ],
    ),
    (
        "heartbeats",
        &[
            "machine_id",
            "timestamp",
            "idle_seconds",
            "cpu_usage",
            "memory_usage",
        ],
    ),
    ("users", &["username", "password_hash", "role"]),
    ("agent_tokens", &["token_hash", "machine_id", "revoked"]),
];

/// Why a source database cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum SeedSourceError {
    #[error("cannot read the original database: {0}")]
    Store(#[from] StoreError),
    /// `--from` is not a PostgreSQL URL.
    #[error("--from must be a postgres:// URL of the original GreenOps database ({0})")]
    Url(String),
    /// The original database does not answer.
    #[error(
        "cannot connect to the original database {url}: {reason}. Check that its PostgreSQL \
         is running and reachable from here, and the user, password and database name in --from"
    )]
    Unreachable { url: String, reason: String },
    /// Not the original GreenOps schema: what is missing.
    #[error(
        "the source database does not have the schema of the original GreenOps ({0}); \
         import-seed reads machines, heartbeats, users and agent_tokens as the original's \
         migrations create them"
    )]
    Schema(String),
}

impl From<sqlx::Error> for SeedSourceError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A machine of the original database.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SeedMachineRow {
    /// Its id there, as text (an integer or a UUID).
    pub id: String,
    pub mac_address: Option<String>,
    pub hostname: Option<String>,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
    pub first_seen_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    /// The original's own totals ("as reported by the original system").
    pub total_idle_seconds: Option<f64>,
    pub total_active_seconds: Option<f64>,
    /// `DECIMAL(10,3)` read exactly, as text.
    pub energy_wasted_kwh: Option<String>,
    pub status: Option<String>,
}

/// One heartbeat of the original database.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct SeedHeartbeatRow {
    pub timestamp_ms: Option<i64>,
    pub idle_seconds: Option<f64>,
    /// Percent (`DECIMAL(5,2)`).
    pub cpu_usage: Option<f64>,
    pub memory_usage: Option<f64>,
}

/// An operator of the original database.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SeedUserRow {
    pub username: Option<String>,
    /// An Argon2id PHC string.
    pub password_hash: Option<String>,
    pub role: Option<String>,
}

impl std::fmt::Debug for SeedUserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedUserRow")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An agent token of the original database (its SHA-256, hex).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SeedTokenRow {
    pub token_hash: Option<String>,
    pub machine_id: Option<String>,
    pub revoked: bool,
}

/// A read-only connection to the original database.
#[derive(Debug, Clone)]
pub struct SeedSource {
    pool: PgPool,
}

impl SeedSource {
    /// Connects and checks the schema: every table and column of [`SEED_SCHEMA`] must exist.
    pub async fn open(url: &str) -> Result<Self, SeedSourceError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SeedSourceError::Url(
                "it names another kind of database".into(),
            ));
        }
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| SeedSourceError::Url(format!("invalid: {e}")))?;
        crate::store::check_reachable(url, std::time::Duration::from_secs(5))
            .await
            .map_err(|reason| SeedSourceError::Unreachable {
                url: crate::settings::redact_url(url),
                reason,
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.application_name("greenops-import-seed"))
            .await?;
        let source = Self { pool };
        source.check_schema().await?;
        Ok(source)
    }

    async fn check_schema(&self) -> Result<(), SeedSourceError> {
        let present: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text
             FROM information_schema.columns
             WHERE table_schema = current_schema()",
        )
        .fetch_all(&self.pool)
        .await?;
        let present: BTreeSet<(String, String)> = present.into_iter().collect();
        let tables: BTreeSet<&str> = present.iter().map(|(t, _)| t.as_str()).collect();
        let mut missing = Vec::new();
        for (table, columns) in SEED_SCHEMA {
            if !tables.contains(table) {
                missing.push(format!("no table {table}"));
                continue;
            }
            let absent: Vec<&str> = columns
                .iter()
                .filter(|c| !present.contains(&((*table).to_string(), (**c).to_string())))
                .copied()
                .collect();
            if !absent.is_empty() {
                missing.push(format!("table {table} has no column {}", absent.join(", ")));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SeedSourceError::Schema(missing.join("; ")))
        }
    }

    /// Every machine, by id.
    pub async fn machines(&self) -> Result<Vec<SeedMachineRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id::text AS id, mac_address::text AS mac_address, hostname::text AS hostname,
                    os_type::text AS os_type, os_version::text AS os_version,
                    (EXTRACT(EPOCH FROM first_seen) * 1000)::bigint AS first_seen_ms,
                    (EXTRACT(EPOCH FROM last_seen) * 1000)::bigint AS last_seen_ms,
                    total_idle_seconds::float8 AS total_idle_seconds,
                    total_active_seconds::float8 AS total_active_seconds,
                    energy_wasted_kwh::text AS energy_wasted_kwh, status::text AS status
             FROM machines
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many heartbeats the original holds.
    pub async fn count_heartbeats(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM heartbeats")
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many heartbeats the original holds for one machine (by its original id).
    pub async fn count_heartbeats_of(&self, machine_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM heartbeats h
             WHERE h.machine_id = (SELECT m.id FROM machines m WHERE m.id::text = $1)",
        )
        .bind(machine_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Heartbeats the original holds for machines it does not have (never importable).
    pub async fn count_orphan_heartbeats(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM heartbeats h
             WHERE NOT EXISTS (SELECT 1 FROM machines m WHERE m.id = h.machine_id)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The heartbeats of one machine (by its original id) in timestamp order, streamed (the
    /// same order on every run: ties broken by the row's physical position).
    pub fn heartbeats<'a>(
        &'a self,
        machine_id: &'a str,
    ) -> BoxStream<'a, Result<SeedHeartbeatRow, StoreError>> {
        Box::pin(
            sqlx::query_as(
                "SELECT (EXTRACT(EPOCH FROM h.\"timestamp\") * 1000)::bigint AS timestamp_ms,
                        h.idle_seconds::float8 AS idle_seconds,
                        h.cpu_usage::float8 AS cpu_usage,
                        h.memory_usage::float8 AS memory_usage
                 FROM heartbeats h
                 WHERE h.machine_id = (SELECT m.id FROM machines m WHERE m.id::text = $1)
                 ORDER BY h.\"timestamp\", h.ctid",
            )
            .bind(machine_id)
            .fetch(&self.pool)
            .map_err(StoreError::from),
        )
    }

    /// Every operator, by name.
    pub async fn users(&self) -> Result<Vec<SeedUserRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT username::text AS username, password_hash::text AS password_hash,
                    role::text AS role
             FROM users
             ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every agent token.
    pub async fn tokens(&self) -> Result<Vec<SeedTokenRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT token_hash::text AS token_hash, machine_id::text AS machine_id,
                    COALESCE(revoked::boolean, false) AS revoked
             FROM agent_tokens
             ORDER BY token_hash",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The original's `energy_wasted_kwh`, exactly.
pub fn seed_kwh(text: Option<&str>) -> Option<Decimal> {
    text.and_then(|t| t.trim().parse().ok())
}

/// Where an import of one original machine stands in this store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedImport {
    pub machine_id: String,
    /// Its history and tokens were imported to the end.
    pub finished: bool,
}
