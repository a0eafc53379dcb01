//! SQL for operators, settings, login limits, the audit log and the machines list — identical
//! on both backends
//! (SQLite reads `$n` as parameters numbered in order of first appearance, so every statement
//! here introduces `$1`, `$2`, … in order). Each backend instantiates it with its own pool and
//! row types: one copy of the SQL, no dialect drift.

/// Defines the free functions below for one backend.
macro_rules! operator_queries {
    ($pool:ty, $row:ty, $db:ty, $dec:path, $energy_sort:expr) => {
        use $crate::store::{AuditEntry, MachineQuery, MachineRow, Role, STATUS_SQL, StoreError, User};
        use sqlx::QueryBuilder;
        use sqlx::Row;

        type Pool = $pool;

        /// Ok when every migration of this binary (`expected`) is applied.
        pub(crate) async fn readiness(
            pool: &Pool,
            expected: &sqlx::migrate::Migrator,
        ) -> Result<(), StoreError> {
            let applied: Vec<i64> = sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
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

    pub(crate) async fn list_machines(
        pool: &Pool,
        query: &MachineQuery,
    ) -> Result<(Vec<MachineRow>, i64), StoreError> {
        fn filters<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, query: &MachineQuery, status: &str)
        where
            for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        {
            q.push(" WHERE m.retired_at_ms IS NULL");
            if let Some(id) = &query.id {
                q.push(" AND m.id = ").push_bind(id.clone());
            }
            if let Some(s) = query.status {
                q.push(format!(" AND ({status}) = "))
                    .push_bind(s.as_str().to_string());
            }
            if let Some(site) = &query.site {
                q.push(" AND s.name = ").push_bind(site.clone());
            }
            if let Some(d) = &query.department {
                q.push(" AND m.department = ").push_bind(d.clone());
            }
            if let Some(text) = &query.q {
                let escaped = text
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                q.push(" AND LOWER(m.hostname) LIKE ")
                    .push_bind(format!("%{escaped}%"))
                    .push(" ESCAPE '\\'");
            }
        }

        let status = STATUS_SQL
            .replace(
                "{cutoff}",
                &(query.now_ms - query.offline_after_ms).to_string(),
            )
            .replace("{threshold}", &query.idle_threshold_ms.to_string());
        let mut count = QueryBuilder::<$db>::new(
            "SELECT COUNT(*) FROM machines m JOIN sites s ON s.id = m.site_id",
        );
        filters(&mut count, query, &status);
        let total: i64 = count
            .build_query_scalar()
            .persistent(false)
            .fetch_one(pool)
            .await?;
        let mut list = QueryBuilder::<$db>::new(format!(
            "SELECT m.id, m.hostname, m.os, m.os_version, m.agent_version, s.name AS site,
                    m.department, p.name AS power_profile, ({status}) AS status,
                    m.last_received_at_ms, m.last_idle_ms, m.observed_ms, m.idle_ms,
                    m.energy_j, m.idle_energy_j
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id"
        ));
        filters(&mut list, query, &status);
        let column = query
            .sort
            .column()
            .replace("m.idle_energy_sort", $energy_sort);
        let order = if query.descending { "DESC" } else { "ASC" };
        list.push(format!(
            " ORDER BY {column} {order} NULLS LAST, m.id LIMIT "
        ))
        .push_bind(query.per_page)
        .push(" OFFSET ")
        .push_bind((query.page - 1).max(0) * query.per_page);
        let rows = list.build().persistent(false).fetch_all(pool).await?;
        let machines = rows
            .iter()
            .map(|row| -> Result<MachineRow, sqlx::Error> {
                let idle: Option<i64> = row.try_get("last_idle_ms")?;
                let observed: i64 = row.try_get("observed_ms")?;
                let idle_ms: i64 = row.try_get("idle_ms")?;
                Ok(MachineRow {
                    id: row.try_get("id")?,
                    hostname: row.try_get("hostname")?,
                    os: row.try_get("os")?,
                    os_version: row.try_get("os_version")?,
                    agent_version: row.try_get("agent_version")?,
                    site: row.try_get("site")?,
                    department: row.try_get("department")?,
                    power_profile: row.try_get("power_profile")?,
                    status: row.try_get("status")?,
                    last_seen_ms: row.try_get("last_received_at_ms")?,
                    input_idle_seconds: idle.map(|ms| ms as f64 / 1000.0),
                    observed_seconds: observed as f64 / 1000.0,
                    idle_seconds: idle_ms as f64 / 1000.0,
                    energy_j: $dec(row, "energy_j")?,
                    idle_energy_j: $dec(row, "idle_energy_j")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((machines, total))
    }

    pub(crate) async fn retire_machine(pool: &Pool, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = pool.begin().await?;
        let done = sqlx::query(
            "UPDATE machines SET retired_at_ms = $1 WHERE id = $2 AND retired_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE agent_credentials SET revoked_at_ms = $1 WHERE machine_id = $2 AND revoked_at_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    };
}

pub(crate) use operator_queries;
