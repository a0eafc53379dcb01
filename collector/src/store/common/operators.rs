//! [`OperatorStore`] for both backends: its SQL is the same on PostgreSQL and SQLite.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Type};

use super::{Dialect, RowsAffected, SqlStore, UserRow};
use crate::store::{AuditEntry, OperatorStore, Role, StoreError, User};

/// An entry of the audit log (`audit_log`).
#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    at_ms: i64,
    actor: String,
    action: String,
    target: String,
    details: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            at_ms: row.at_ms,
            actor: row.actor,
            action: row.action,
            target: row.target,
            details: row.details,
        }
    }
}

#[async_trait]
impl<S, DB> OperatorStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    #[tracing::instrument(name = "store.count_users", skip_all, fields(backend = DB::LABEL))]
    async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?)
    }

    #[tracing::instrument(name = "store.create_user", skip_all, fields(backend = DB::LABEL))]
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (username, password_hash, role, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (username) DO NOTHING
             RETURNING id, username, role, password_hash, session_version, disabled_at_ms",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("user '{username}'")))?;
        Ok(row.into())
    }

    #[tracing::instrument(name = "store.user_by_name", skip_all, fields(backend = DB::LABEL))]
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, password_hash, session_version, disabled_at_ms
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(User::from))
    }

    #[tracing::instrument(name = "store.list_users", skip_all, fields(backend = DB::LABEL))]
    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, username, role, password_hash, session_version, disabled_at_ms
             FROM users ORDER BY username",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    #[tracing::instrument(name = "store.set_password", skip_all, fields(backend = DB::LABEL))]
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, session_version = session_version + 1,
                 updated_at_ms = $2
             WHERE username = $3",
        )
        .bind(password_hash)
        .bind(now_ms)
        .bind(username)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.revoke_sessions", skip_all, fields(backend = DB::LABEL))]
    async fn revoke_sessions(&self, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET session_version = session_version + 1, updated_at_ms = $1
             WHERE username = $2",
        )
        .bind(now_ms)
        .bind(username)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.disable_user", skip_all, fields(backend = DB::LABEL))]
    async fn disable_user(&self, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET disabled_at_ms = COALESCE(disabled_at_ms, $1),
                 session_version = session_version + 1, updated_at_ms = $1
             WHERE username = $2",
        )
        .bind(now_ms)
        .bind(username)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.enable_user", skip_all, fields(backend = DB::LABEL))]
    async fn enable_user(&self, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET disabled_at_ms = NULL, updated_at_ms = $1 WHERE username = $2",
        )
        .bind(now_ms)
        .bind(username)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.set_role", skip_all, fields(backend = DB::LABEL))]
    async fn set_role(&self, username: &str, role: Role, now_ms: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE users SET role = $1, updated_at_ms = $2 WHERE username = $3")
                .bind(role.as_str())
                .bind(now_ms)
                .bind(username)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "store.setting_or_insert", skip_all, fields(backend = DB::LABEL))]
    async fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(self.pool())
                .await?,
        )
    }

    #[tracing::instrument(name = "store.setting", skip_all, fields(backend = DB::LABEL))]
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    #[tracing::instrument(name = "store.put_setting", skip_all, fields(backend = DB::LABEL))]
    async fn put_setting(&self, key: &str, value: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                 updated_at_ms = excluded.updated_at_ms",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.login_failures", skip_all, fields(backend = DB::LABEL))]
    async fn login_failures(
        &self,
        key: &str,
        since_ms: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), MIN(at_ms) FROM login_failures WHERE key = $1 AND at_ms >= $2",
        )
        .bind(key)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?)
    }

    #[tracing::instrument(
        name = "store.record_login_failure",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn record_login_failure(
        &self,
        keys: &[String],
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for key in keys {
            sqlx::query("INSERT INTO login_failures (key, at_ms) VALUES ($1, $2)")
                .bind(key.as_str())
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM login_failures WHERE at_ms < $1")
            .bind(forget_before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "store.clear_login_failures",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.audit", skip_all, fields(backend = DB::LABEL))]
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, action, target, details)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(entry.at_ms)
        .bind(entry.actor.as_str())
        .bind(entry.action.as_str())
        .bind(entry.target.as_str())
        .bind(entry.details.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.audit_log", skip_all, fields(backend = DB::LABEL))]
    async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT at_ms, actor, action, target, details FROM audit_log
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }
}
