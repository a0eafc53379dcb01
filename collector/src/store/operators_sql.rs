//! SQL for operators, settings, login limits and the audit log — identical on both backends
//! (SQLite reads `$n` as parameters numbered in order of first appearance, so every statement
//! here introduces `$1`, `$2`, … in order). Each backend instantiates it with its own pool and
//! row types: one copy of the SQL, no dialect drift.

/// Defines the free functions below for one backend.
macro_rules! operator_queries {
    ($pool:ty, $row:ty) => {
        use $crate::store::{AuditEntry, Role, StoreError, User};
        use sqlx::Row;

        type Pool = $pool;

        fn user_of(row: &$row) -> Result<User, sqlx::Error> {
            let role: String = row.try_get("role")?;
            let disabled: Option<i64> = row.try_get("disabled_at_ms")?;
            Ok(User {
                id: row.try_get("id")?,
                username: row.try_get("username")?,
                role: Role::from_stored(&role),
                password_hash: row.try_get("password_hash")?,
                session_version: row.try_get("session_version")?,
                disabled: disabled.is_some(),
            })
        }

    pub(crate) async fn count_users(pool: &Pool) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await?)
    }

    pub(crate) async fn create_user(
        pool: &Pool,
        username: &str,
        password_hash: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (username) DO NOTHING
             RETURNING id, username, role, password_hash, session_version, disabled_at_ms",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("user '{username}'")))?;
        Ok(user_of(&row)?)
    }

    pub(crate) async fn user_by_name(pool: &Pool, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, role, password_hash, session_version, disabled_at_ms
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(pool)
        .await?;
        Ok(row.as_ref().map(user_of).transpose()?)
    }

    pub(crate) async fn list_users(pool: &Pool) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, username, role, password_hash, session_version, disabled_at_ms
             FROM users ORDER BY username",
        )
        .fetch_all(pool)
        .await?;
        Ok(rows.iter().map(user_of).collect::<Result<_, _>>()?)
    }

    pub(crate) async fn set_password(
        pool: &Pool,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, session_version = session_version + 1,
                 updated_at_ms = $2 WHERE username = $3",
        )
        .bind(password_hash)
        .bind(now_ms)
        .bind(username)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn revoke_sessions(pool: &Pool, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET session_version = session_version + 1, updated_at_ms = $1
             WHERE username = $2",
        )
        .bind(now_ms)
        .bind(username)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn disable_user(pool: &Pool, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET disabled_at_ms = COALESCE(disabled_at_ms, $1),
                 session_version = session_version + 1, updated_at_ms = $1
             WHERE username = $2",
        )
        .bind(now_ms)
        .bind(username)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn setting_or_insert(
        pool: &Pool,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value, updated_at_ms) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .bind(now_ms)
            .execute(pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(pool)
                .await?,
        )
    }

    pub(crate) async fn login_failures(
        pool: &Pool,
        key: &str,
        since_ms: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(at_ms) AS oldest FROM login_failures WHERE key = $1 AND at_ms >= $2")
            .bind(key)
            .bind(since_ms)
            .fetch_one(pool)
            .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    pub(crate) async fn record_login_failure(
        pool: &Pool,
        keys: &[String],
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = pool.begin().await?;
        for key in keys {
            sqlx::query("INSERT INTO login_failures (key, at_ms) VALUES ($1, $2)")
                .bind(key)
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

    pub(crate) async fn clear_login_failures(pool: &Pool, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn audit(pool: &Pool, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)")
            .bind(entry.at_ms)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.details)
            .execute(pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn audit_log(pool: &Pool, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    details: r.try_get("details")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    };
}

pub(crate) use operator_queries;
