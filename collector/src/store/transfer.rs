//! `greenops migrate-data`: copy a whole SQLite installation into PostgreSQL, for users who
//! outgrow one machine. Idempotent: rows are upserted by their keys, so a re-run (after an
//! interruption, or to pick up heartbeats that arrived since) converges on the source; the
//! result is verified by row counts and totals.

use std::collections::HashSet;

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::types::Text;
use sqlx::{PgPool, Postgres, Row, SqlitePool, Transaction};

use super::retention::{ROLLUP_REPLACE, ROLLUP_SUMS};
use super::sqlite::path_of;

/// Rows copied per statement for the heartbeat table.
const CHUNK: i64 = 5000;

/// What was copied, and the totals both sides agreed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    pub sites: u64,
    pub power_profiles: u64,
    pub enrollment_tokens: u64,
    pub machines: u64,
    pub credentials: u64,
    pub heartbeats: u64,
    pub observed_ms: i64,
    pub energy_j: Decimal,
    pub cost: Decimal,
}

fn d(row: &SqliteRow, column: &str) -> Result<Decimal, sqlx::Error> {
    Ok(row.try_get::<Text<Decimal>, _>(column)?.0)
}

/// Copies everything from the SQLite database at `from` into the PostgreSQL database at `to`
/// (migrating it first), reporting progress through `progress`.
pub async fn sqlite_to_postgres(
    from: &str,
    to: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<TransferReport> {
    if !from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL");
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let path = path_of(from);
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path).read_only(true))
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let target = PgPoolOptions::new()
        .max_connections(2)
        .connect(to)
        .await
        .context("connecting to the target PostgreSQL database")?;
    super::postgres::migrator()
        .run(&target)
        .await
        .context("migrating the target database")?;

    refuse_foreign_machines(&source, &target).await?;
    // One read transaction on the source: a consistent copy even while a collector writes.
    let mut src = source.begin().await?;
    let mut dst = target.begin().await?;
    let mut report = TransferReport::default();

    for row in sqlx::query("SELECT * FROM sites ORDER BY id")
        .fetch_all(&mut *src)
        .await?
    {
        sqlx::query(
            "INSERT INTO sites (id, name, currency, price_per_kwh, carbon_intensity_g_per_kwh,
                 timezone, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, currency = EXCLUDED.currency,
                 price_per_kwh = EXCLUDED.price_per_kwh,
                 carbon_intensity_g_per_kwh = EXCLUDED.carbon_intensity_g_per_kwh,
                 timezone = EXCLUDED.timezone",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .bind(row.try_get::<String, _>("name")?)
        .bind(row.try_get::<String, _>("currency")?)
        .bind(d(&row, "price_per_kwh")?)
        .bind(d(&row, "carbon_intensity_g_per_kwh")?)
        .bind(row.try_get::<String, _>("timezone")?)
        .bind(row.try_get::<i64, _>("created_at_ms")?)
        .execute(&mut *dst)
        .await?;
        report.sites += 1;
    }
    for row in sqlx::query("SELECT * FROM power_profiles ORDER BY id")
        .fetch_all(&mut *src)
        .await?
    {
        sqlx::query(
            "INSERT INTO power_profiles (id, name, idle_watts, active_watts, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                 idle_watts = EXCLUDED.idle_watts, active_watts = EXCLUDED.active_watts",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .bind(row.try_get::<String, _>("name")?)
        .bind(d(&row, "idle_watts")?)
        .bind(d(&row, "active_watts")?)
        .bind(row.try_get::<i64, _>("created_at_ms")?)
        .execute(&mut *dst)
        .await?;
        report.power_profiles += 1;
    }
    for row in sqlx::query("SELECT * FROM enrollment_tokens ORDER BY id")
        .fetch_all(&mut *src)
        .await?
    {
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, token_hash, site_id, department, expires_at_ms,
                 max_uses, uses, revoked_at_ms, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET uses = EXCLUDED.uses,
                 revoked_at_ms = EXCLUDED.revoked_at_ms, expires_at_ms = EXCLUDED.expires_at_ms",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .bind(row.try_get::<Vec<u8>, _>("token_hash")?)
        .bind(row.try_get::<i64, _>("site_id")?)
        .bind(row.try_get::<String, _>("department")?)
        .bind(row.try_get::<Option<i64>, _>("expires_at_ms")?)
        .bind(row.try_get::<Option<i64>, _>("max_uses")?)
        .bind(row.try_get::<i64, _>("uses")?)
        .bind(row.try_get::<Option<i64>, _>("revoked_at_ms")?)
        .bind(row.try_get::<i64, _>("created_at_ms")?)
        .execute(&mut *dst)
        .await?;
        report.enrollment_tokens += 1;
    }
    copy_operators(&mut src, &mut dst).await?;
    for table in [
        "sites",
        "power_profiles",
        "enrollment_tokens",
        "users",
        "api_tokens",
        "audit_log",
    ] {
        // Explicit ids were inserted: move the sequences past them.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                           GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )))
        .execute(&mut *dst)
        .await?;
    }
    progress(&format!(
        "copied {} sites, {} power profiles, {} enrollment tokens",
        report.sites, report.power_profiles, report.enrollment_tokens
    ));

    for row in sqlx::query("SELECT * FROM machines ORDER BY id")
        .fetch_all(&mut *src)
        .await?
    {
        copy_machine(&mut dst, &row).await?;
        report.machines += 1;
    }
    for row in sqlx::query("SELECT * FROM machine_cost_totals")
        .fetch_all(&mut *src)
        .await?
    {
        sqlx::query(
            "INSERT INTO machine_cost_totals (machine_id, currency, cost, idle_cost)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (machine_id, currency) DO UPDATE
             SET cost = EXCLUDED.cost, idle_cost = EXCLUDED.idle_cost",
        )
        .bind(row.try_get::<String, _>("machine_id")?)
        .bind(row.try_get::<String, _>("currency")?)
        .bind(d(&row, "cost")?)
        .bind(d(&row, "idle_cost")?)
        .execute(&mut *dst)
        .await?;
    }
    for row in sqlx::query("SELECT * FROM agent_credentials")
        .fetch_all(&mut *src)
        .await?
    {
        sqlx::query(
            "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (token_hash) DO UPDATE SET revoked_at_ms = EXCLUDED.revoked_at_ms",
        )
        .bind(row.try_get::<Vec<u8>, _>("token_hash")?)
        .bind(row.try_get::<String, _>("machine_id")?)
        .bind(row.try_get::<i64, _>("created_at_ms")?)
        .bind(row.try_get::<Option<i64>, _>("revoked_at_ms")?)
        .execute(&mut *dst)
        .await?;
        report.credentials += 1;
    }
    progress(&format!(
        "copied {} machines with their totals and {} credentials",
        report.machines, report.credentials
    ));

    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM heartbeats")
        .fetch_one(&mut *src)
        .await?;
    let mut offset = 0;
    while offset < total {
        let rows =
            sqlx::query("SELECT * FROM heartbeats ORDER BY machine_id, seq LIMIT ?1 OFFSET ?2")
                .bind(CHUNK)
                .bind(offset)
                .fetch_all(&mut *src)
                .await?;
        if rows.is_empty() {
            break;
        }
        copy_heartbeats(&mut dst, &rows).await?;
        offset += i64::try_from(rows.len())?;
        report.heartbeats += rows.len() as u64;
        progress(&format!("heartbeats: {offset}/{total}"));
    }
    copy_rollups(&mut src, &mut dst).await?;

    verify(&mut src, &mut dst, &mut report).await?;
    dst.commit().await?;
    src.commit().await?;
    source.close().await;
    target.close().await;
    Ok(report)
}

/// Refuses a target that holds machines the source does not know: that is another
/// installation, and merging would mix up totals.
async fn refuse_foreign_machines(source: &SqlitePool, target: &PgPool) -> anyhow::Result<()> {
    let ours: HashSet<String> = sqlx::query_scalar("SELECT id FROM machines")
        .fetch_all(source)
        .await?
        .into_iter()
        .collect();
    let theirs: Vec<String> = sqlx::query_scalar("SELECT id FROM machines")
        .fetch_all(target)
        .await?;
    let foreign = theirs.iter().filter(|id| !ours.contains(*id)).count();
    if foreign > 0 {
        bail!(
            "the target database already holds {foreign} machines that are not in the source; \
             migrate into an empty database"
        );
    }
    Ok(())
}

async fn copy_machine(dst: &mut Transaction<'_, Postgres>, row: &SqliteRow) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO machines (id, machine_key, hostname, os, os_version, agent_version,
             mac_addresses, site_id, department, power_profile_id, enrolled_at_ms, retired_at_ms,
             last_seq, last_sent_at_ms, last_received_at_ms, last_idle_ms, last_session,
             last_cpu_ratio, last_memory_ratio, last_uptime_seconds, observed_ms, idle_ms,
             unknown_ms, energy_j, idle_energy_j, co2_g, idle_co2_g)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
         ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, os = EXCLUDED.os,
             os_version = EXCLUDED.os_version, agent_version = EXCLUDED.agent_version,
             mac_addresses = EXCLUDED.mac_addresses, site_id = EXCLUDED.site_id,
             department = EXCLUDED.department, power_profile_id = EXCLUDED.power_profile_id,
             retired_at_ms = EXCLUDED.retired_at_ms, last_seq = EXCLUDED.last_seq,
             last_sent_at_ms = EXCLUDED.last_sent_at_ms,
             last_received_at_ms = EXCLUDED.last_received_at_ms,
             last_idle_ms = EXCLUDED.last_idle_ms, last_session = EXCLUDED.last_session,
             last_cpu_ratio = EXCLUDED.last_cpu_ratio,
             last_memory_ratio = EXCLUDED.last_memory_ratio,
             last_uptime_seconds = EXCLUDED.last_uptime_seconds,
             observed_ms = EXCLUDED.observed_ms, idle_ms = EXCLUDED.idle_ms,
             unknown_ms = EXCLUDED.unknown_ms, energy_j = EXCLUDED.energy_j,
             idle_energy_j = EXCLUDED.idle_energy_j, co2_g = EXCLUDED.co2_g,
             idle_co2_g = EXCLUDED.idle_co2_g",
    )
    .bind(row.try_get::<String, _>("id")?)
    .bind(row.try_get::<String, _>("machine_key")?)
    .bind(row.try_get::<String, _>("hostname")?)
    .bind(row.try_get::<String, _>("os")?)
    .bind(row.try_get::<String, _>("os_version")?)
    .bind(row.try_get::<String, _>("agent_version")?)
    .bind(row.try_get::<String, _>("mac_addresses")?)
    .bind(row.try_get::<i64, _>("site_id")?)
    .bind(row.try_get::<String, _>("department")?)
    .bind(row.try_get::<i64, _>("power_profile_id")?)
    .bind(row.try_get::<i64, _>("enrolled_at_ms")?)
    .bind(row.try_get::<Option<i64>, _>("retired_at_ms")?)
    .bind(row.try_get::<i64, _>("last_seq")?)
    .bind(row.try_get::<Option<i64>, _>("last_sent_at_ms")?)
    .bind(row.try_get::<Option<i64>, _>("last_received_at_ms")?)
    .bind(row.try_get::<Option<i64>, _>("last_idle_ms")?)
    .bind(row.try_get::<Option<String>, _>("last_session")?)
    .bind(row.try_get::<Option<f64>, _>("last_cpu_ratio")?)
    .bind(row.try_get::<Option<f64>, _>("last_memory_ratio")?)
    .bind(row.try_get::<Option<i64>, _>("last_uptime_seconds")?)
    .bind(row.try_get::<i64, _>("observed_ms")?)
    .bind(row.try_get::<i64, _>("idle_ms")?)
    .bind(row.try_get::<i64, _>("unknown_ms")?)
    .bind(d(row, "energy_j")?)
    .bind(d(row, "idle_energy_j")?)
    .bind(d(row, "co2_g")?)
    .bind(d(row, "idle_co2_g")?)
    .execute(&mut **dst)
    .await?;
    Ok(())
}

async fn copy_heartbeats(
    dst: &mut Transaction<'_, Postgres>,
    rows: &[SqliteRow],
) -> anyhow::Result<()> {
    macro_rules! col {
        ($ty:ty, $name:literal) => {
            rows.iter()
                .map(|r| r.try_get::<$ty, _>($name))
                .collect::<Result<Vec<$ty>, _>>()?
        };
    }
    let dec = |name: &str| {
        rows.iter()
            .map(|r| d(r, name))
            .collect::<Result<Vec<Decimal>, _>>()
    };
    sqlx::query(
        "INSERT INTO heartbeats (machine_id, seq, sent_at_ms, received_at_ms, idle_input_ms,
             session, cpu_ratio, memory_ratio, uptime_seconds, observed_ms, idle_ms, unknown_ms,
             energy_j, idle_energy_j, currency, cost, idle_cost, co2_g, idle_co2_g)
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
             $6::text[], $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[],
             $12::int8[], $13::numeric[], $14::numeric[], $15::text[], $16::numeric[],
             $17::numeric[], $18::numeric[], $19::numeric[])
         ON CONFLICT (machine_id, seq) DO NOTHING",
    )
    .bind(col!(String, "machine_id"))
    .bind(col!(i64, "seq"))
    .bind(col!(i64, "sent_at_ms"))
    .bind(col!(i64, "received_at_ms"))
    .bind(col!(Option<i64>, "idle_input_ms"))
    .bind(col!(String, "session"))
    .bind(col!(Option<f64>, "cpu_ratio"))
    .bind(col!(Option<f64>, "memory_ratio"))
    .bind(col!(Option<i64>, "uptime_seconds"))
    .bind(col!(i64, "observed_ms"))
    .bind(col!(i64, "idle_ms"))
    .bind(col!(i64, "unknown_ms"))
    .bind(dec("energy_j")?)
    .bind(dec("idle_energy_j")?)
    .bind(col!(String, "currency"))
    .bind(dec("cost")?)
    .bind(dec("idle_cost")?)
    .bind(dec("co2_g")?)
    .bind(dec("idle_co2_g")?)
    .execute(&mut **dst)
    .await?;
    Ok(())
}

/// The hourly and daily rollups of old heartbeats (see `retention.rs`).
async fn copy_rollups(
    src: &mut Transaction<'_, sqlx::Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
) -> anyhow::Result<()> {
    for (table, bucket) in [("heartbeat_hours", "hour_ms"), ("heartbeat_days", "day_ms")] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&mut **src)
            .await?;
        for row in rows {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (machine_id, {bucket}, currency, {ROLLUP_SUMS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (machine_id, {bucket}, currency) DO UPDATE SET {ROLLUP_REPLACE}"
            )))
            .bind(row.try_get::<String, _>("machine_id")?)
            .bind(row.try_get::<i64, _>(bucket)?)
            .bind(row.try_get::<String, _>("currency")?)
            .bind(row.try_get::<i64, _>("observed_ms")?)
            .bind(row.try_get::<i64, _>("idle_ms")?)
            .bind(row.try_get::<i64, _>("unknown_ms")?)
            .bind(d(&row, "energy_j")?)
            .bind(d(&row, "idle_energy_j")?)
            .bind(d(&row, "cost")?)
            .bind(d(&row, "idle_cost")?)
            .bind(d(&row, "co2_g")?)
            .bind(d(&row, "idle_co2_g")?)
            .execute(&mut **dst)
            .await?;
        }
    }
    Ok(())
}

/// Operators, their API tokens, the shared settings (the session signing key among them, so
/// sessions survive the move) and the audit log.
async fn copy_operators(
    src: &mut Transaction<'_, sqlx::Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
) -> anyhow::Result<()> {
    for row in sqlx::query("SELECT * FROM users ORDER BY id")
        .fetch_all(&mut **src)
        .await?
    {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, session_version,
                 disabled_at_ms, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username,
                 password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
                 session_version = EXCLUDED.session_version,
                 disabled_at_ms = EXCLUDED.disabled_at_ms, updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .bind(row.try_get::<String, _>("username")?)
        .bind(row.try_get::<String, _>("password_hash")?)
        .bind(row.try_get::<String, _>("role")?)
        .bind(row.try_get::<i64, _>("session_version")?)
        .bind(row.try_get::<Option<i64>, _>("disabled_at_ms")?)
        .bind(row.try_get::<i64, _>("created_at_ms")?)
        .bind(row.try_get::<i64, _>("updated_at_ms")?)
        .execute(&mut **dst)
        .await
        .context("copying operators (does the target already have a user of the same name?)")?;
    }
    for row in sqlx::query("SELECT * FROM api_tokens ORDER BY id")
        .fetch_all(&mut **src)
        .await?
    {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, created_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET revoked_at_ms = EXCLUDED.revoked_at_ms",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .bind(row.try_get::<Vec<u8>, _>("token_hash")?)
        .bind(row.try_get::<i64, _>("user_id")?)
        .bind(row.try_get::<String, _>("name")?)
        .bind(row.try_get::<i64, _>("created_at_ms")?)
        .bind(row.try_get::<Option<i64>, _>("revoked_at_ms")?)
        .execute(&mut **dst)
        .await?;
    }
    for row in sqlx::query("SELECT * FROM settings ORDER BY key")
        .fetch_all(&mut **src)
        .await?
    {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                 updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .bind(row.try_get::<String, _>("key")?)
        .bind(row.try_get::<String, _>("value")?)
        .bind(row.try_get::<i64, _>("updated_at_ms")?)
        .execute(&mut **dst)
        .await?;
    }
    for row in sqlx::query("SELECT * FROM audit_log ORDER BY id")
        .fetch_all(&mut **src)
        .await?
    {
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, action, target, details)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .bind(row.try_get::<i64, _>("at_ms")?)
        .bind(row.try_get::<String, _>("actor")?)
        .bind(row.try_get::<String, _>("action")?)
        .bind(row.try_get::<String, _>("target")?)
        .bind(row.try_get::<String, _>("details")?)
        .execute(&mut **dst)
        .await?;
    }
    Ok(())
}

/// Compares row counts and totals of both sides; any difference aborts the copy.
async fn verify(
    src: &mut Transaction<'_, sqlx::Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
    report: &mut TransferReport,
) -> anyhow::Result<()> {
    for table in [
        "sites",
        "power_profiles",
        "enrollment_tokens",
        "machines",
        "machine_cost_totals",
        "agent_credentials",
        "heartbeats",
        "users",
        "api_tokens",
        "heartbeat_hours",
        "heartbeat_days",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let a: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut **src)
            .await?;
        let b: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **dst)
            .await?;
        if a != b {
            bail!("verification failed: {table} has {a} rows in the source but {b} in the target");
        }
    }
    let rows = sqlx::query("SELECT observed_ms, energy_j FROM machines")
        .fetch_all(&mut **src)
        .await?;
    let observed: i64 = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("observed_ms"))
        .sum::<Result<i64, _>>()?;
    let energy: Decimal = rows
        .iter()
        .map(|r| d(r, "energy_j"))
        .sum::<Result<Decimal, _>>()?;
    let costs = sqlx::query("SELECT cost FROM machine_cost_totals")
        .fetch_all(&mut **src)
        .await?;
    let cost: Decimal = costs
        .iter()
        .map(|r| d(r, "cost"))
        .sum::<Result<Decimal, _>>()?;
    let row = sqlx::query(
        "SELECT COALESCE(SUM(observed_ms), 0)::BIGINT AS observed_ms,
                COALESCE(SUM(energy_j), 0) AS energy_j,
                (SELECT COALESCE(SUM(cost), 0) FROM machine_cost_totals) AS cost
         FROM machines",
    )
    .fetch_one(&mut **dst)
    .await?;
    let (t_observed, t_energy, t_cost): (i64, Decimal, Decimal) = (
        row.try_get("observed_ms")?,
        row.try_get("energy_j")?,
        row.try_get("cost")?,
    );
    if (observed, energy, cost) != (t_observed, t_energy, t_cost) {
        bail!(
            "verification failed: totals differ (source observed {observed} ms, {energy} J, cost {cost}; \
             target {t_observed} ms, {t_energy} J, cost {t_cost})"
        );
    }
    report.observed_ms = observed;
    report.energy_j = energy;
    report.cost = cost;
    Ok(())
}
