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
        // Names are unique regardless of case (a unique index on LOWER(username)).
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (username, password_hash, role, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $4)
             RETURNING id, username, role, password_hash, session_version, disabled_at_ms",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("user '{username}'"))
            }
            _ => StoreError::from(e),
        })?;
        Ok(row.into())
    }

    #[tracing::instrument(name = "store.user_by_name", skip_all, fields(backend = DB::LABEL))]
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, password_hash, session_version, disabled_at_ms
             FROM users WHERE LOWER(username) = LOWER($1)",
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

    #[tracing::instrument(
        name = "store.reserve_login_attempt",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn reserve_login_attempt(
        &self,
        keys: &[String],
        now_ms: i64,
        window_ms: i64,
        max: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        // One lock order for every transaction: no deadlock between two sign-ins.
        keys.sort_unstable();
        keys.dedup();
        let mut tx = self.pool().begin().await?;
        for key in keys {
            // A window that has ended starts again with this attempt.
            let (attempts, started): (i64, i64) = sqlx::query_as(
                "INSERT INTO login_attempts (key, window_start_ms, attempts) VALUES ($1, $2, 1)
                 ON CONFLICT (key) DO UPDATE SET
                     attempts = CASE WHEN login_attempts.window_start_ms <= $3 THEN 1
                                     ELSE login_attempts.attempts + 1 END,
                     window_start_ms = CASE WHEN login_attempts.window_start_ms <= $3 THEN $2
                                            ELSE login_attempts.window_start_ms END
                 RETURNING attempts, window_start_ms",
            )
            .bind(key)
            .bind(now_ms)
            .bind(now_ms - window_ms)
            .fetch_one(&mut *tx)
            .await?;
            if attempts > max {
                tx.rollback().await?;
                return Ok(Err((started + window_ms - now_ms).max(1)));
            }
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    #[tracing::instrument(
        name = "store.release_login_attempt",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn release_login_attempt(
        &self,
        clear: &[String],
        give_back: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for key in clear {
            sqlx::query("DELETE FROM login_attempts WHERE key = $1")
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for key in give_back {
            sqlx::query(
                "UPDATE login_attempts SET attempts = attempts - 1
                 WHERE key = $1 AND attempts > 0",
            )
            .bind(key.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(
        name = "store.forget_login_attempts",
        skip_all,
        fields(backend = DB::LABEL)
    )]
    async fn forget_login_attempts(&self, before_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_attempts WHERE window_start_ms < $1")
            .bind(before_ms)
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
