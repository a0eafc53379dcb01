//! The parts of [`IngestStore`](crate::store::IngestStore) whose SQL is the same on both
//! backends. Each backend implements the trait itself (its heartbeat commit is its own) and
//! calls these; where a backend must open the transaction its own way (SQLite takes the
//! write lock up front, PostgreSQL picks an isolation level), it passes the transaction in.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, QueryBuilder, Transaction, Type};

use super::batch::Locked;
use super::{CostRow, Dialect, RowsAffected, hash_from_db, session_from_db};
use crate::accounting::{Cursor, Increment, LastReport, Rates};
use crate::secrets::TokenHash;
use crate::store::{
    CostTotal, EnrollAuth, EnrollCommand, EnrollRefusal, EnrolledMachine, FleetSnapshot,
    MachineQuery, MachineRow, MachineSnapshot, STATUS_SQL, StoreError,
};

/// The two statements of an enrolment that differ between the backends: PostgreSQL locks the
/// rows it reads (`FOR UPDATE`); SQLite already holds the database's write lock.
#[derive(Debug)]
pub(crate) struct EnrollSql {
    /// `id, site_id, department` of the usable enrollment token with hash `$1` at `$2`.
    pub usable_token: &'static str,
    /// `id, retired_at_ms` of the machine with key `$1`.
    pub machine_by_key: &'static str,
}

/// What an enrollment token grants.
#[derive(Debug, sqlx::FromRow)]
struct Grant {
    id: i64,
    site_id: i64,
    department: String,
}

#[derive(Debug, sqlx::FromRow)]
struct MachineKey {
    id: String,
    retired_at_ms: Option<i64>,
}

/// Enrols or re-enrols in `tx` (committed on success, rolled back on a refusal).
pub(crate) async fn enroll<DB>(
    mut tx: Transaction<'_, DB>,
    cmd: &EnrollCommand,
    sql: &EnrollSql,
) -> Result<Result<EnrolledMachine, EnrollRefusal>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Type<DB> + Encode<'q, DB>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let (site_id, department, token_id) = match cmd.auth {
        EnrollAuth::Token(hash) => {
            let grant: Option<Grant> = sqlx::query_as(sql.usable_token)
                .bind(hash.as_bytes())
                .bind(cmd.now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(grant) = grant else {
                return Ok(Err(EnrollRefusal::InvalidToken));
            };
            (grant.site_id, grant.department, Some(grant.id))
        }
        EnrollAuth::Open => {
            let id: i64 = sqlx::query_scalar(
                "SELECT id FROM sites ORDER BY (name = 'default') DESC, id LIMIT 1",
            )
            .fetch_one(&mut *tx)
            .await?;
            (id, String::new(), None)
        }
    };
    let m = &cmd.machine;
    let macs = serde_json::to_string(&m.mac_addresses).unwrap_or_else(|_| "[]".into());
    // Insert-if-absent first, then lock whichever row owns the key: race-free when two
    // enrolments of the same new key arrive at once.
    sqlx::query(
        "INSERT INTO machines (id, machine_key, hostname, os, os_version, agent_version,
             mac_addresses, site_id, department, power_profile_id, enrolled_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
             (SELECT id FROM power_profiles ORDER BY (name = 'desktop') DESC, id LIMIT 1), $10)
         ON CONFLICT (machine_key) DO NOTHING",
    )
    .bind(cmd.new_machine_id.as_str())
    .bind(m.machine_key.as_str())
    .bind(m.hostname.as_str())
    .bind(m.os.as_str())
    .bind(m.os_version.as_str())
    .bind(m.agent_version.as_str())
    .bind(macs.as_str())
    .bind(site_id)
    .bind(department.as_str())
    .bind(cmd.now_ms)
    .execute(&mut *tx)
    .await?;
    let machine: MachineKey = sqlx::query_as(sql.machine_by_key)
        .bind(m.machine_key.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if machine.retired_at_ms.is_some() {
        return Ok(Err(EnrollRefusal::MachineRetired));
    }
    let machine_id = machine.id;
    let re_enrolled = machine_id != cmd.new_machine_id;
    if re_enrolled {
        sqlx::query(
            "UPDATE machines SET hostname = $2, os = $3, os_version = $4, agent_version = $5,
                 mac_addresses = $6
             WHERE id = $1",
        )
        .bind(machine_id.as_str())
        .bind(m.hostname.as_str())
        .bind(m.os.as_str())
        .bind(m.os_version.as_str())
        .bind(m.agent_version.as_str())
        .bind(macs.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE agent_credentials SET revoked_at_ms = $2
             WHERE machine_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(machine_id.as_str())
        .bind(cmd.now_ms)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms)
         VALUES ($1, $2, $3)",
    )
    .bind(cmd.credential_hash.as_bytes())
    .bind(machine_id.as_str())
    .bind(cmd.now_ms)
    .execute(&mut *tx)
    .await?;
    if let Some(id) = token_id {
        sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Ok(EnrolledMachine {
        machine_id,
        re_enrolled,
    }))
}

/// The machine an active agent credential belongs to.
pub(crate) async fn machine_for_credential<DB>(
    pool: &Pool<DB>,
    hash: &TokenHash,
) -> Result<Option<String>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q [u8]: Type<DB> + Encode<'q, DB>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    Ok(sqlx::query_scalar(
        "SELECT c.machine_id FROM agent_credentials c JOIN machines m ON m.id = c.machine_id
         WHERE c.token_hash = $1 AND c.revoked_at_ms IS NULL AND m.retired_at_ms IS NULL",
    )
    .bind(hash.as_bytes())
    .fetch_optional(pool)
    .await?)
}

/// Credentials revoked at or after `since_ms`.
pub(crate) async fn revoked_credentials_since<DB>(
    pool: &Pool<DB>,
    since_ms: i64,
) -> Result<Vec<TokenHash>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
    for<'q> Vec<u8>: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let hashes: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM agent_credentials WHERE revoked_at_ms >= $1")
            .bind(since_ms)
            .fetch_all(pool)
            .await?;
    Ok(hashes.iter().filter_map(|h| hash_from_db(h)).collect())
}

/// Retires a machine: revokes its credentials and hides it.
pub(crate) async fn retire_machine<DB>(
    pool: &Pool<DB>,
    id: &str,
    now_ms: i64,
) -> Result<bool, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE machines SET retired_at_ms = $1 WHERE id = $2 AND retired_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE agent_credentials SET revoked_at_ms = $1
         WHERE machine_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// A machine row as locked for a heartbeat batch: its cursor and the rates it is accounted at.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LockedRow<D> {
    pub id: String,
    last_seq: i64,
    last_sent_at_ms: Option<i64>,
    idle_watts: D,
    active_watts: D,
    price_per_kwh: D,
    carbon_intensity_g_per_kwh: D,
    currency: String,
}

impl<D: Into<Decimal>> From<LockedRow<D>> for Locked {
    fn from(row: LockedRow<D>) -> Self {
        Locked {
            cursor: Cursor {
                last_seq: u64::try_from(row.last_seq).unwrap_or(0),
                last_sent_at_ms: row.last_sent_at_ms,
            },
            rates: Rates {
                idle_watts: row.idle_watts.into(),
                active_watts: row.active_watts.into(),
                price_per_kwh: row.price_per_kwh.into(),
                carbon_g_per_kwh: row.carbon_intensity_g_per_kwh.into(),
            },
            currency: row.currency,
        }
    }
}

/// A machine's time, energy and CO₂ totals (its money totals are per currency, apart).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TotalsRow<D> {
    observed_ms: i64,
    idle_ms: i64,
    unknown_ms: i64,
    energy_j: D,
    idle_energy_j: D,
    co2_g: D,
    idle_co2_g: D,
}

impl<D: Into<Decimal>> From<TotalsRow<D>> for Increment {
    fn from(row: TotalsRow<D>) -> Self {
        Increment {
            observed_ms: row.observed_ms,
            idle_ms: row.idle_ms,
            unknown_ms: row.unknown_ms,
            energy_j: row.energy_j.into(),
            idle_energy_j: row.idle_energy_j.into(),
            co2_g: row.co2_g.into(),
            idle_co2_g: row.idle_co2_g.into(),
            ..Increment::default()
        }
    }
}

/// One live machine as the fleet snapshot reads it.
#[derive(Debug, sqlx::FromRow)]
struct SnapshotRow<D> {
    id: String,
    hostname: String,
    os: String,
    os_version: String,
    agent_version: String,
    site: String,
    department: String,
    power_profile: String,
    last_received_at_ms: Option<i64>,
    last_idle_ms: Option<i64>,
    last_session: Option<String>,
    last_cpu_ratio: Option<f64>,
    last_memory_ratio: Option<f64>,
    #[sqlx(flatten)]
    totals: TotalsRow<D>,
}

impl<D: Into<Decimal>> SnapshotRow<D> {
    fn into_snapshot(self, costs: Vec<CostTotal>) -> MachineSnapshot {
        MachineSnapshot {
            id: self.id,
            hostname: self.hostname,
            os: self.os,
            os_version: self.os_version,
            agent_version: self.agent_version,
            site: self.site,
            department: self.department,
            power_profile: self.power_profile,
            last: self.last_received_at_ms.map(|received_at_ms| LastReport {
                received_at_ms,
                idle_ms: self.last_idle_ms,
                session: session_from_db(self.last_session.as_deref()),
            }),
            cpu_usage_ratio: self.last_cpu_ratio,
            memory_usage_ratio: self.last_memory_ratio,
            totals: self.totals.into(),
            costs,
        }
    }
}

/// Reads every live machine, its money totals and all site names in `tx`, which the backend
/// opened so that it sees one consistent state.
pub(crate) async fn fleet_snapshot<DB>(
    mut tx: Transaction<'_, DB>,
) -> Result<FleetSnapshot, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Decode<'q, DB>,
    for<'q> f64: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    #[derive(sqlx::FromRow)]
    struct MachineCost<D> {
        machine_id: String,
        #[sqlx(flatten)]
        cost: CostRow<D>,
    }
    // Money totals first (one small row per machine and currency), then the machines
    // streamed row by row: no buffer of 100k raw rows next to the snapshot.
    let cost_rows: Vec<MachineCost<DB::Decimal>> = sqlx::query_as(
        "SELECT c.machine_id, c.currency, c.cost, c.idle_cost
         FROM machine_cost_totals c JOIN machines m ON m.id = c.machine_id
         WHERE m.retired_at_ms IS NULL
         ORDER BY c.machine_id, c.currency",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut costs: HashMap<String, Vec<CostTotal>> = HashMap::new();
    for row in cost_rows {
        costs
            .entry(row.machine_id)
            .or_default()
            .push(row.cost.into());
    }
    let mut machines = Vec::new();
    {
        let mut rows = sqlx::query_as::<_, SnapshotRow<DB::Decimal>>(
            "SELECT m.id, m.hostname, m.os, m.os_version, m.agent_version, s.name AS site,
                    m.department, p.name AS power_profile, m.last_received_at_ms, m.last_idle_ms,
                    m.last_session, m.last_cpu_ratio, m.last_memory_ratio, m.observed_ms,
                    m.idle_ms, m.unknown_ms, m.energy_j, m.idle_energy_j, m.co2_g, m.idle_co2_g
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id
             WHERE m.retired_at_ms IS NULL
             ORDER BY m.id",
        )
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let machine_costs = costs.remove(&row.id).unwrap_or_default();
            machines.push(row.into_snapshot(machine_costs));
        }
    }
    let sites: Vec<String> = sqlx::query_scalar("SELECT name FROM sites ORDER BY name")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(FleetSnapshot { machines, sites })
}

/// One row of the machines list as read.
#[derive(Debug, sqlx::FromRow)]
struct ListRow<D> {
    id: String,
    hostname: String,
    os: String,
    os_version: String,
    agent_version: String,
    site: String,
    department: String,
    power_profile: String,
    status: String,
    last_received_at_ms: Option<i64>,
    last_idle_ms: Option<i64>,
    observed_ms: i64,
    idle_ms: i64,
    energy_j: D,
    idle_energy_j: D,
}

impl<D: Into<Decimal>> From<ListRow<D>> for MachineRow {
    fn from(row: ListRow<D>) -> Self {
        MachineRow {
            id: row.id,
            hostname: row.hostname,
            os: row.os,
            os_version: row.os_version,
            agent_version: row.agent_version,
            site: row.site,
            department: row.department,
            power_profile: row.power_profile,
            status: row.status,
            last_seen_ms: row.last_received_at_ms,
            input_idle_seconds: row.last_idle_ms.map(|ms| ms as f64 / 1000.0),
            observed_seconds: row.observed_ms as f64 / 1000.0,
            idle_seconds: row.idle_ms as f64 / 1000.0,
            energy_j: row.energy_j.into(),
            idle_energy_j: row.idle_energy_j.into(),
        }
    }
}

/// A page of live machines and the total matching the filters.
pub(crate) async fn list_machines<DB>(
    pool: &Pool<DB>,
    query: &MachineQuery,
) -> Result<(Vec<MachineRow>, i64), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let status = STATUS_SQL
        .replace(
            "{cutoff}",
            &(query.now_ms - query.offline_after_ms).to_string(),
        )
        .replace("{threshold}", &query.idle_threshold_ms.to_string());
    let mut count =
        QueryBuilder::<DB>::new("SELECT COUNT(*) FROM machines m JOIN sites s ON s.id = m.site_id");
    push_filters(&mut count, query, &status);
    let total: i64 = count
        .build_query_scalar()
        .persistent(false)
        .fetch_one(pool)
        .await?;
    let mut list = QueryBuilder::<DB>::new(format!(
        "SELECT m.id, m.hostname, m.os, m.os_version, m.agent_version, s.name AS site,
                m.department, p.name AS power_profile, ({status}) AS status,
                m.last_received_at_ms, m.last_idle_ms, m.observed_ms, m.idle_ms,
                m.energy_j, m.idle_energy_j
         FROM machines m
         JOIN sites s ON s.id = m.site_id
         JOIN power_profiles p ON p.id = m.power_profile_id"
    ));
    push_filters(&mut list, query, &status);
    let column = query
        .sort
        .column()
        .replace("m.idle_energy_sort", DB::IDLE_ENERGY_ORDER);
    let order = if query.descending { "DESC" } else { "ASC" };
    list.push(format!(
        " ORDER BY {column} {order} NULLS LAST, m.id LIMIT "
    ))
    .push_bind(query.per_page)
    .push(" OFFSET ")
    .push_bind((query.page - 1).max(0) * query.per_page);
    let rows: Vec<ListRow<DB::Decimal>> = list
        .build_query_as()
        .persistent(false)
        .fetch_all(pool)
        .await?;
    Ok((rows.into_iter().map(MachineRow::from).collect(), total))
}

/// The `WHERE` clause of the machines list (values bound, never spliced in).
fn push_filters<DB>(q: &mut QueryBuilder<DB>, query: &MachineQuery, status: &str)
where
    DB: Dialect,
    for<'q> String: Type<DB> + Encode<'q, DB>,
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
