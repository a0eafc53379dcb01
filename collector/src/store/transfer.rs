//! `greenops migrate-data`: copy a whole SQLite installation into PostgreSQL, for users who
//! outgrow one machine. Idempotent: rows are upserted by their keys, so a re-run (after an
//! interruption, or to pick up heartbeats that arrived since) converges on the source; the
//! result is verified by row counts and totals.
//!
//! Each table is read from SQLite into a row type (decimals as their TEXT, [`Text<Decimal>`])
//! and written to PostgreSQL (decimals as `NUMERIC`) in the same transaction on each side.

use std::collections::HashSet;

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::types::Text;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use super::postgres::INSERT_HEARTBEATS;
use super::retention::{ROLLUP_REPLACE, ROLLUP_SUMS};
use super::sqlite::path_of;

/// Rows copied per statement for the heartbeat table.
const CHUNK: i64 = 5000;

/// A decimal as SQLite stores it.
type Dec = Text<Decimal>;

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

#[derive(Debug, sqlx::FromRow)]
struct SiteRow {
    id: i64,
    name: String,
    currency: String,
    price_per_kwh: Dec,
    carbon_intensity_g_per_kwh: Dec,
    timezone: String,
    created_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct PowerProfileRow {
    id: i64,
    name: String,
    idle_watts: Dec,
    active_watts: Dec,
    created_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct EnrollmentTokenRow {
    id: i64,
    token_hash: Vec<u8>,
    site_id: i64,
    department: String,
    expires_at_ms: Option<i64>,
    max_uses: Option<i64>,
    uses: i64,
    revoked_at_ms: Option<i64>,
    created_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct MachineRow {
    id: String,
    machine_key: String,
    hostname: String,
    os: String,
    os_version: String,
    agent_version: String,
    mac_addresses: String,
    site_id: i64,
    department: String,
    power_profile_id: i64,
    enrolled_at_ms: i64,
    retired_at_ms: Option<i64>,
    last_seq: i64,
    last_sent_at_ms: Option<i64>,
    last_received_at_ms: Option<i64>,
    last_idle_ms: Option<i64>,
    last_session: Option<String>,
    last_cpu_ratio: Option<f64>,
    last_memory_ratio: Option<f64>,
    last_uptime_seconds: Option<i64>,
    observed_ms: i64,
    idle_ms: i64,
    unknown_ms: i64,
    energy_j: Dec,
    idle_energy_j: Dec,
    co2_g: Dec,
    idle_co2_g: Dec,
}

#[derive(Debug, sqlx::FromRow)]
struct CostTotalRow {
    machine_id: String,
    currency: String,
    cost: Dec,
    idle_cost: Dec,
}

#[derive(Debug, sqlx::FromRow)]
struct CredentialRow {
    token_hash: Vec<u8>,
    machine_id: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct HeartbeatRow {
    machine_id: String,
    seq: i64,
    sent_at_ms: i64,
    received_at_ms: i64,
    idle_input_ms: Option<i64>,
    session: String,
    cpu_ratio: Option<f64>,
    memory_ratio: Option<f64>,
    uptime_seconds: Option<i64>,
    observed_ms: i64,
    idle_ms: i64,
    unknown_ms: i64,
    energy_j: Dec,
    idle_energy_j: Dec,
    currency: String,
    cost: Dec,
    idle_cost: Dec,
    co2_g: Dec,
    idle_co2_g: Dec,
}

/// An hourly or daily rollup row; `bucket_ms` is its `hour_ms` or `day_ms`.
#[derive(Debug, sqlx::FromRow)]
struct RollupRow {
    machine_id: String,
    bucket_ms: i64,
    currency: String,
    observed_ms: i64,
    idle_ms: i64,
    unknown_ms: i64,
    energy_j: Dec,
    idle_energy_j: Dec,
    cost: Dec,
    idle_cost: Dec,
    co2_g: Dec,
    idle_co2_g: Dec,
}

#[derive(Debug, sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    password_hash: String,
    role: String,
    session_version: i64,
    disabled_at_ms: Option<i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct ApiTokenRow {
    id: i64,
    token_hash: Vec<u8>,
    user_id: i64,
    name: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct SettingRow {
    key: String,
    value: String,
    updated_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at_ms: i64,
    actor: String,
    action: String,
    target: String,
    details: String,
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

    copy_sites_and_profiles(&mut src, &mut dst, &mut report).await?;
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

    copy_machines(&mut src, &mut dst, &mut report).await?;
    progress(&format!(
        "copied {} machines with their totals and {} credentials",
        report.machines, report.credentials
    ));

    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM heartbeats")
        .fetch_one(&mut *src)
        .await?;
    let mut offset = 0;
    while offset < total {
        let rows: Vec<HeartbeatRow> =
            sqlx::query_as("SELECT * FROM heartbeats ORDER BY machine_id, seq LIMIT ?1 OFFSET ?2")
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

/// Sites, power profiles and enrollment tokens, with their ids.
async fn copy_sites_and_profiles(
    src: &mut Transaction<'_, Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
    report: &mut TransferReport,
) -> anyhow::Result<()> {
    let sites: Vec<SiteRow> = sqlx::query_as("SELECT * FROM sites ORDER BY id")
        .fetch_all(&mut **src)
        .await?;
    for site in sites {
        sqlx::query(
            "INSERT INTO sites (id, name, currency, price_per_kwh, carbon_intensity_g_per_kwh,
                 timezone, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, currency = EXCLUDED.currency,
                 price_per_kwh = EXCLUDED.price_per_kwh,
                 carbon_intensity_g_per_kwh = EXCLUDED.carbon_intensity_g_per_kwh,
                 timezone = EXCLUDED.timezone",
        )
        .bind(site.id)
        .bind(site.name)
        .bind(site.currency)
        .bind(site.price_per_kwh.0)
        .bind(site.carbon_intensity_g_per_kwh.0)
        .bind(site.timezone)
        .bind(site.created_at_ms)
        .execute(&mut **dst)
        .await?;
        report.sites += 1;
    }
    let profiles: Vec<PowerProfileRow> = sqlx::query_as("SELECT * FROM power_profiles ORDER BY id")
        .fetch_all(&mut **src)
        .await?;
    for profile in profiles {
        sqlx::query(
            "INSERT INTO power_profiles (id, name, idle_watts, active_watts, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                 idle_watts = EXCLUDED.idle_watts, active_watts = EXCLUDED.active_watts",
        )
        .bind(profile.id)
        .bind(profile.name)
        .bind(profile.idle_watts.0)
        .bind(profile.active_watts.0)
        .bind(profile.created_at_ms)
        .execute(&mut **dst)
        .await?;
        report.power_profiles += 1;
    }
    let tokens: Vec<EnrollmentTokenRow> =
        sqlx::query_as("SELECT * FROM enrollment_tokens ORDER BY id")
            .fetch_all(&mut **src)
            .await?;
    for token in tokens {
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, token_hash, site_id, department, expires_at_ms,
                 max_uses, uses, revoked_at_ms, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET uses = EXCLUDED.uses,
                 revoked_at_ms = EXCLUDED.revoked_at_ms, expires_at_ms = EXCLUDED.expires_at_ms",
        )
        .bind(token.id)
        .bind(token.token_hash)
        .bind(token.site_id)
        .bind(token.department)
        .bind(token.expires_at_ms)
        .bind(token.max_uses)
        .bind(token.uses)
        .bind(token.revoked_at_ms)
        .bind(token.created_at_ms)
        .execute(&mut **dst)
        .await?;
        report.enrollment_tokens += 1;
    }
    Ok(())
}

/// Machines with their totals, their money totals and their agent credentials.
async fn copy_machines(
    src: &mut Transaction<'_, Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
    report: &mut TransferReport,
) -> anyhow::Result<()> {
    let machines: Vec<MachineRow> = sqlx::query_as("SELECT * FROM machines ORDER BY id")
        .fetch_all(&mut **src)
        .await?;
    for machine in machines {
        copy_machine(dst, machine).await?;
        report.machines += 1;
    }
    let costs: Vec<CostTotalRow> = sqlx::query_as("SELECT * FROM machine_cost_totals")
        .fetch_all(&mut **src)
        .await?;
    for cost in costs {
        sqlx::query(
            "INSERT INTO machine_cost_totals (machine_id, currency, cost, idle_cost)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (machine_id, currency) DO UPDATE
             SET cost = EXCLUDED.cost, idle_cost = EXCLUDED.idle_cost",
        )
        .bind(cost.machine_id)
        .bind(cost.currency)
        .bind(cost.cost.0)
        .bind(cost.idle_cost.0)
        .execute(&mut **dst)
        .await?;
    }
    let credentials: Vec<CredentialRow> = sqlx::query_as("SELECT * FROM agent_credentials")
        .fetch_all(&mut **src)
        .await?;
    for credential in credentials {
        sqlx::query(
            "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (token_hash) DO UPDATE SET revoked_at_ms = EXCLUDED.revoked_at_ms",
        )
        .bind(credential.token_hash)
        .bind(credential.machine_id)
        .bind(credential.created_at_ms)
        .bind(credential.revoked_at_ms)
        .execute(&mut **dst)
        .await?;
        report.credentials += 1;
    }
    Ok(())
}

async fn copy_machine(dst: &mut Transaction<'_, Postgres>, m: MachineRow) -> anyhow::Result<()> {
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
    .bind(m.id)
    .bind(m.machine_key)
    .bind(m.hostname)
    .bind(m.os)
    .bind(m.os_version)
    .bind(m.agent_version)
    .bind(m.mac_addresses)
    .bind(m.site_id)
    .bind(m.department)
    .bind(m.power_profile_id)
    .bind(m.enrolled_at_ms)
    .bind(m.retired_at_ms)
    .bind(m.last_seq)
    .bind(m.last_sent_at_ms)
    .bind(m.last_received_at_ms)
    .bind(m.last_idle_ms)
    .bind(m.last_session)
    .bind(m.last_cpu_ratio)
    .bind(m.last_memory_ratio)
    .bind(m.last_uptime_seconds)
    .bind(m.observed_ms)
    .bind(m.idle_ms)
    .bind(m.unknown_ms)
    .bind(m.energy_j.0)
    .bind(m.idle_energy_j.0)
    .bind(m.co2_g.0)
    .bind(m.idle_co2_g.0)
    .execute(&mut **dst)
    .await?;
    Ok(())
}

/// One column of a chunk of rows, as an array parameter.
fn column<R, T>(rows: &[R], f: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

async fn copy_heartbeats(
    dst: &mut Transaction<'_, Postgres>,
    rows: &[HeartbeatRow],
) -> anyhow::Result<()> {
    sqlx::query(INSERT_HEARTBEATS)
        .bind(column(rows, |r| r.machine_id.clone()))
        .bind(column(rows, |r| r.seq))
        .bind(column(rows, |r| r.sent_at_ms))
        .bind(column(rows, |r| r.received_at_ms))
        .bind(column(rows, |r| r.idle_input_ms))
        .bind(column(rows, |r| r.session.clone()))
        .bind(column(rows, |r| r.cpu_ratio))
        .bind(column(rows, |r| r.memory_ratio))
        .bind(column(rows, |r| r.uptime_seconds))
        .bind(column(rows, |r| r.observed_ms))
        .bind(column(rows, |r| r.idle_ms))
        .bind(column(rows, |r| r.unknown_ms))
        .bind(column(rows, |r| r.energy_j.0))
        .bind(column(rows, |r| r.idle_energy_j.0))
        .bind(column(rows, |r| r.currency.clone()))
        .bind(column(rows, |r| r.cost.0))
        .bind(column(rows, |r| r.idle_cost.0))
        .bind(column(rows, |r| r.co2_g.0))
        .bind(column(rows, |r| r.idle_co2_g.0))
        .execute(&mut **dst)
        .await?;
    Ok(())
}

/// The hourly and daily rollups of old heartbeats (see `retention.rs`).
async fn copy_rollups(
    src: &mut Transaction<'_, Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
) -> anyhow::Result<()> {
    // Table and column names are constants.
    for (table, bucket) in [("heartbeat_hours", "hour_ms"), ("heartbeat_days", "day_ms")] {
        let rows: Vec<RollupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT machine_id, {bucket} AS bucket_ms, currency, {ROLLUP_SUMS} FROM {table}"
        )))
        .fetch_all(&mut **src)
        .await?;
        for row in rows {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (machine_id, {bucket}, currency, {ROLLUP_SUMS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (machine_id, {bucket}, currency) DO UPDATE SET {ROLLUP_REPLACE}"
            )))
            .bind(row.machine_id)
            .bind(row.bucket_ms)
            .bind(row.currency)
            .bind(row.observed_ms)
            .bind(row.idle_ms)
            .bind(row.unknown_ms)
            .bind(row.energy_j.0)
            .bind(row.idle_energy_j.0)
            .bind(row.cost.0)
            .bind(row.idle_cost.0)
            .bind(row.co2_g.0)
            .bind(row.idle_co2_g.0)
            .execute(&mut **dst)
            .await?;
        }
    }
    Ok(())
}

/// Operators, their API tokens, the shared settings (the session signing key among them, so
/// sessions survive the move) and the audit log.
async fn copy_operators(
    src: &mut Transaction<'_, Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
) -> anyhow::Result<()> {
    let users: Vec<UserRow> = sqlx::query_as("SELECT * FROM users ORDER BY id")
        .fetch_all(&mut **src)
        .await?;
    for user in users {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, session_version,
                 disabled_at_ms, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username,
                 password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
                 session_version = EXCLUDED.session_version,
                 disabled_at_ms = EXCLUDED.disabled_at_ms, updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .bind(user.id)
        .bind(user.username)
        .bind(user.password_hash)
        .bind(user.role)
        .bind(user.session_version)
        .bind(user.disabled_at_ms)
        .bind(user.created_at_ms)
        .bind(user.updated_at_ms)
        .execute(&mut **dst)
        .await
        .context("copying operators (does the target already have a user of the same name?)")?;
    }
    let tokens: Vec<ApiTokenRow> = sqlx::query_as("SELECT * FROM api_tokens ORDER BY id")
        .fetch_all(&mut **src)
        .await?;
    for token in tokens {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, created_at_ms, revoked_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET revoked_at_ms = EXCLUDED.revoked_at_ms",
        )
        .bind(token.id)
        .bind(token.token_hash)
        .bind(token.user_id)
        .bind(token.name)
        .bind(token.created_at_ms)
        .bind(token.revoked_at_ms)
        .execute(&mut **dst)
        .await?;
    }
    let settings: Vec<SettingRow> = sqlx::query_as("SELECT * FROM settings ORDER BY key")
        .fetch_all(&mut **src)
        .await?;
    for setting in settings {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                 updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .bind(setting.key)
        .bind(setting.value)
        .bind(setting.updated_at_ms)
        .execute(&mut **dst)
        .await?;
    }
    let entries: Vec<AuditRow> = sqlx::query_as("SELECT * FROM audit_log ORDER BY id")
        .fetch_all(&mut **src)
        .await?;
    for entry in entries {
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, action, target, details)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(entry.id)
        .bind(entry.at_ms)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.details)
        .execute(&mut **dst)
        .await?;
    }
    Ok(())
}

/// Compares row counts and totals of both sides; any difference aborts the copy.
async fn verify(
    src: &mut Transaction<'_, Sqlite>,
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
    // SQLite's decimals are TEXT: summed here, exactly.
    let machines: Vec<(i64, Dec)> = sqlx::query_as("SELECT observed_ms, energy_j FROM machines")
        .fetch_all(&mut **src)
        .await?;
    let observed: i64 = machines.iter().map(|(ms, _)| ms).sum();
    let energy: Decimal = machines.iter().map(|(_, j)| j.0).sum();
    let costs: Vec<Dec> = sqlx::query_scalar("SELECT cost FROM machine_cost_totals")
        .fetch_all(&mut **src)
        .await?;
    let cost: Decimal = costs.iter().map(|c| c.0).sum();
    let (t_observed, t_energy, t_cost): (i64, Decimal, Decimal) = sqlx::query_as(
        "SELECT COALESCE(SUM(observed_ms), 0)::BIGINT,
                COALESCE(SUM(energy_j), 0),
                (SELECT COALESCE(SUM(cost), 0) FROM machine_cost_totals)
         FROM machines",
    )
    .fetch_one(&mut **dst)
    .await?;
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
