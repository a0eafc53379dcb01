//! What both backends share: the queries whose SQL text is the same on PostgreSQL and SQLite
//! (written once, generic over the backend's [`sqlx::Database`]), the row types they read, and
//! the backend-neutral logic around them (batch planning, summing, row mapping).
//!
//! Placeholders: `$n` is the n-th bound value on both backends (sqlx binds SQLite's `$NNN`
//! parameters by their number, see the test below), so the shared SQL numbers them freely.
//!
//! A generic query needs the driver to encode and decode the Rust types it uses; those bounds
//! are spelt out on each generic `impl` or function (a trait's `where` clauses are not implied
//! for its users, so no trait can carry them). The rest of what a query needs to know about a
//! backend is its [`Dialect`].

pub(crate) mod admin;
pub(crate) mod increments;
pub(crate) mod ingest;
pub(crate) mod operators;
pub(crate) mod rates;
pub(crate) mod reports;
pub(crate) mod savings;
pub(crate) mod seed;
pub(crate) mod upgrade;

use greenops_protocol::Session;
use rust_decimal::Decimal;
use sqlx::database::HasStatementCache;
use sqlx::migrate::Migrator;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};

use super::{Role, StoreError, User};
use crate::secrets::TokenHash;

/// What the shared queries need to know about a backend, implemented by [`sqlx::Postgres`]
/// and [`sqlx::Sqlite`] in their modules.
pub(crate) trait Dialect:
    Database<QueryResult: RowsAffected, Arguments: IntoArguments<Self>> + HasStatementCache
{
    /// The `backend` field of the store's trace spans.
    const LABEL: &'static str;

    /// How a transaction that writes starts (SQLite takes the write lock up front).
    const BEGIN_WRITE: &'static str;

    /// Taken by a rates change (PostgreSQL: an exclusive advisory lock; batches share it).
    const RATES_LOCK_EXCLUSIVE: Option<&'static str>;

    /// Appended to a `SELECT` that must lock its rows (PostgreSQL) — SQLite already holds
    /// the write lock.
    const FOR_UPDATE: &'static str;

    /// Whether `machines.num` is given at insert (SQLite) or by the database (PostgreSQL's
    /// identity column).
    const NUM_BY_INSERT: bool;

    /// The physical row id column (`ctid`, `rowid`), for bounded deletes.
    const ROW_ID: &'static str;

    /// An exact decimal as a column stores it and a query binds it: `NUMERIC` on PostgreSQL,
    /// `TEXT` on SQLite (which has no exact type, so its sums are taken in Rust).
    type Decimal: From<Decimal>
        + Into<Decimal>
        + Clone
        + Type<Self>
        + for<'r> Decode<'r, Self>
        + for<'q> Encode<'q, Self>
        + Send
        + Unpin;
}

/// The number of rows a statement changed (`QueryResult` has no common trait for it).
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

/// A store backed by one connection pool: what the shared trait implementations use.
pub(crate) trait SqlStore: Send + Sync {
    type Db: Dialect;

    fn pool(&self) -> &Pool<Self::Db>;
}

/// A decimal as bound to a query of `DB`.
pub(crate) fn dec<DB: Dialect>(d: Decimal) -> DB::Decimal {
    d.into()
}

/// Ok when every migration of this binary (`expected`) is applied.
pub(crate) async fn readiness<DB>(pool: &Pool<DB>, expected: &Migrator) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> i64: Type<DB> + Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    let expected: Vec<i64> = expected.iter().map(|m| m.version).collect();
    if applied != expected {
        return Err(StoreError::NotFound(format!(
            "migrations {expected:?} (applied: {applied:?})"
        )));
    }
    Ok(())
}

/// A unique-constraint failure as `Conflict(what)`, anything else as usual.
pub(crate) fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => e.into(),
    }
}

/// Stored form of a session.
pub(crate) fn session_from_db(s: Option<&str>) -> Session {
    s.map(Session::from_stored).unwrap_or_default()
}

/// A stored SHA-256 token hash (32 bytes), if it has the right length.
pub(crate) fn hash_from_db(bytes: &[u8]) -> Option<TokenHash> {
    <[u8; 32]>::try_from(bytes).ok().map(TokenHash)
}

/// An operator account as stored (`users`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    role: String,
    password_hash: String,
    session_version: i64,
    disabled_at_ms: Option<i64>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            username: row.username,
            role: Role::from_stored(&row.role),
            password_hash: row.password_hash,
            session_version: row.session_version,
            disabled: row.disabled_at_ms.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    /// `$n` names the n-th bound value on SQLite too, whatever order the text uses.
    #[tokio::test]
    async fn sqlite_binds_dollar_parameters_by_number() {
        let pool = SqlitePoolOptions::new()
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        let got: String = sqlx::query_scalar("SELECT $2 || $1 || $2")
            .bind("a")
            .bind("b")
            .fetch_one(&pool)
            .await
            .expect("query");
        assert_eq!(got, "bab");
    }
}
