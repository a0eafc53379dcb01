//! The parts of [`IngestStore`](crate::store::IngestStore) whose SQL is the same on both
//! backends. Each backend implements the trait itself (its heartbeat commit is its own) and
//! calls these; where a backend must open the transaction its own way (SQLite takes the
//! write lock up front, PostgreSQL picks an isolation level), it passes the transaction in.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use greenops_protocol::IdleSourceKind;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Transaction, Type};

use super::increments::{IncrementRow, column_list};
use super::{Dialect, RowsAffected, hash_from_db, session_from_db};
use crate::accounting::rates::Placement;
use crate::accounting::{Cursor, Increment, LastReport};
use crate::secrets::TokenHash;
use crate::store::ingest::LockedMachine;
use crate::store::{
    CostTotal, EnrollAuth, EnrollCommand, EnrollRefusal, EnrolledMachine, FleetChanges,
    FleetCursor, IncurredTotal, MachineSnapshot, StoreError,
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
    let (site_id, department, token_id) = match &cmd.auth {
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
        EnrollAuth::Placed { site, department } => {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM sites WHERE name = $1")
                .bind(site.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(id) = id else {
                return Ok(Err(EnrollRefusal::UnknownSite));
            };
            (id, department.clone(), None)
        }
    };
    let m = &cmd.machine;
    let macs = serde_json::to_string(&m.mac_addresses).unwrap_or_else(|_| "[]".into());
    // Insert-if-absent first, then lock whichever row owns the key: race-free when two
    // enrolments of the same new key arrive at once.
    let profile_id: i64 = sqlx::query_scalar(
        "SELECT id FROM power_profiles ORDER BY (name = 'desktop') DESC, id LIMIT 1",
    )
    .fetch_one(&mut *tx)
    .await?;
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO machines (id, machine_key, hostname, os, os_version, agent_version,
             mac_addresses, site_id, department, power_profile_id, enrolled_at_ms{})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $10{})
         ON CONFLICT (machine_key) DO NOTHING",
        if DB::NUM_BY_INSERT { ", num" } else { "" },
        if DB::NUM_BY_INSERT {
            ", (SELECT COALESCE(MAX(num), 0) + 1 FROM machines)"
        } else {
            ""
        },
    )))
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
    .bind(profile_id)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        // A new machine is placed from the beginning of its history.
        sqlx::query(
            "INSERT INTO machine_placements (machine_id, effective_from_ms, site_id, department,
                 power_profile_id, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(cmd.new_machine_id.as_str())
        .bind(i64::MIN)
        .bind(site_id)
        .bind(department.as_str())
        .bind(profile_id)
        .bind(cmd.now_ms)
        .execute(&mut *tx)
        .await?;
    }
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
        // A new credential starts a new seq space (DESIGN §2): a restored agent's seq 1 counts.
        sqlx::query(
            "UPDATE machines SET hostname = $2, os = $3, os_version = $4, agent_version = $5,
                 mac_addresses = $6, last_seq = 0
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
    if matches!(cmd.auth, EnrollAuth::Placed { .. }) {
        // Shown before the first heartbeat, which says so again.
        sqlx::query("UPDATE machines SET last_idle_source = $2 WHERE id = $1")
            .bind(machine_id.as_str())
            .bind(greenops_protocol::IdleSourceKind::SeedLegacy.as_str())
            .execute(&mut *tx)
            .await?;
    }
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

/// Revokes every active credential of a machine (retiring it; an import handing it the
/// original system's tokens).
pub(crate) async fn revoke_credentials<DB>(
    conn: &mut DB::Connection,
    machine_id: &str,
    now_ms: i64,
) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    sqlx::query(
        "UPDATE agent_credentials SET revoked_at_ms = $1
         WHERE machine_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(machine_id)
    .execute(conn)
    .await?;
    Ok(())
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
    revoke_credentials::<DB>(&mut tx, id, now_ms).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// A machine row as locked for a heartbeat batch.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LockedRow {
    pub id: String,
    num: i64,
    last_seq: i64,
    last_sent_at_ms: Option<i64>,
    token_hash: Vec<u8>,
}

/// A placement row of a locked machine.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PlacementIdsRow {
    machine_id: String,
    effective_from_ms: i64,
    site_id: i64,
    department: String,
    power_profile_id: i64,
}

/// The columns of [`PlacementIdsRow`].
pub(crate) const PLACEMENT_IDS: &str =
    "machine_id, effective_from_ms, site_id, department, power_profile_id";

/// What the planner needs of the locked machines, from their rows and placements.
pub(crate) fn assemble_locked(
    rows: Vec<LockedRow>,
    found: Vec<PlacementIdsRow>,
) -> HashMap<String, LockedMachine> {
    let mut placements: HashMap<String, Vec<Placement>> = HashMap::new();
    for p in found {
        placements.entry(p.machine_id).or_default().push(Placement {
            effective_from_ms: p.effective_from_ms,
            site_id: p.site_id,
            department: p.department,
            profile_id: p.power_profile_id,
        });
    }
    let mut locked: HashMap<String, LockedMachine> = HashMap::with_capacity(rows.len());
    for row in rows {
        let Some(credential) = hash_from_db(&row.token_hash) else {
            continue;
        };
        // One row per active credential of the machine.
        if let Some(machine) = locked.get_mut(&row.id) {
            machine.credentials.push(credential);
            continue;
        }
        let mut list = placements.remove(&row.id).unwrap_or_default();
        list.sort_by_key(|p| p.effective_from_ms);
        locked.insert(
            row.id,
            LockedMachine {
                num: row.num,
                credentials: vec![credential],
                cursor: Cursor {
                    last_seq: u64::try_from(row.last_seq).unwrap_or(0),
                    hw_ms: row.last_sent_at_ms,
                },
                placements: list,
            },
        );
    }
    locked
}

/// A machine's totals in one placement and currency.
#[derive(Debug, sqlx::FromRow)]
struct TotalsRow<D> {
    machine_id: String,
    site: String,
    department: String,
    currency: String,
    #[sqlx(flatten)]
    values: IncrementRow<D>,
}

/// One machine as the fleet snapshot reads it.
#[derive(Debug, sqlx::FromRow)]
struct SnapshotRow {
    id: String,
    hostname: String,
    os: String,
    os_version: String,
    agent_version: String,
    site: String,
    department: String,
    power_profile: String,
    retired_at_ms: Option<i64>,
    last_received_at_ms: Option<i64>,
    last_idle_ms: Option<i64>,
    last_session: Option<String>,
    last_cpu_ratio: Option<f64>,
    last_memory_ratio: Option<f64>,
    last_uptime_seconds: Option<i64>,
    last_idle_source: Option<String>,
}

/// How a backend finds changed machines (see `migrations/*/…_fleet_changes.sql`).
#[derive(Debug)]
pub(crate) struct ChangeSql {
    /// `changes, catalog, oldest`: the cursor of a read in this transaction, and the oldest
    /// `changes` a read can start from (older cursors read every machine).
    pub cursor: &'static str,
    /// A condition on the machine row `m`: written since the cursor's `changes` (`$1`).
    pub changed_since: &'static str,
    /// A subquery of the machine ids in the JSON array `$1` (the changed machines, whose
    /// totals rows are then found through the primary key).
    pub ids_in_json: &'static str,
}

/// Reads the machines changed since `since` (all when `None` or the catalog changed) with
/// all their totals rows and all site names, in `tx`, which the backend opened so that it
/// sees one consistent state.
pub(crate) async fn fleet_changes<DB>(
    mut tx: Transaction<'_, DB>,
    since: Option<FleetCursor>,
    sql: &ChangeSql,
) -> Result<FleetChanges, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Decode<'q, DB> + Encode<'q, DB>,
    for<'q> f64: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB> + Encode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let (changes, catalog, oldest): (i64, i64, i64) =
        sqlx::query_as(sql.cursor).fetch_one(&mut *tx).await?;
    let cursor = FleetCursor { changes, catalog };
    let full = since.is_none_or(|s| s.catalog != catalog || s.changes < oldest);
    let (filter, from) = match since {
        Some(s) if !full => (format!("WHERE {}", sql.changed_since), s.changes),
        _ => (String::new(), 0),
    };
    // The changed machine rows first (the one pass over `machines`), then the totals rows of
    // just those machines, found by primary key.
    let mut rows = sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(format!(
        "SELECT m.id, m.hostname, m.os, m.os_version, m.agent_version, s.name AS site,
                m.department, p.name AS power_profile, m.retired_at_ms,
                m.last_received_at_ms, m.last_idle_ms, m.last_session, m.last_cpu_ratio,
                m.last_memory_ratio, m.last_uptime_seconds, m.last_idle_source
         FROM machines m
         JOIN sites s ON s.id = m.site_id
         JOIN power_profiles p ON p.id = m.power_profile_id
         {filter}"
    )))
    .bind(from)
    .fetch_all(&mut *tx)
    .await?;
    // Sorted here, not in SQL, so the planner is free to walk a change index.
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let mut totals: HashMap<String, Vec<IncurredTotal>> = HashMap::new();
    if full || !rows.is_empty() {
        let (totals_filter, ids) = if full {
            (String::new(), String::new())
        } else {
            let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            (
                format!("WHERE t.machine_id IN ({})", sql.ids_in_json),
                serde_json::to_string(&ids).unwrap_or_default(),
            )
        };
        let mut totals_rows =
            sqlx::query_as::<_, TotalsRow<DB::Decimal>>(sqlx::AssertSqlSafe(format!(
                "SELECT t.machine_id, COALESCE(s.name, '') AS site, t.department, t.currency, {}
                 FROM machine_totals t
                 LEFT JOIN sites s ON s.id = t.site_id
                 {totals_filter}
                 ORDER BY t.machine_id, t.currency, site, t.department",
                column_list("t.")
            )))
            .bind(ids)
            .fetch(&mut *tx);
        while let Some(row) = totals_rows.try_next().await? {
            totals
                .entry(row.machine_id)
                .or_default()
                .push(IncurredTotal {
                    site: row.site,
                    department: row.department,
                    currency: row.currency,
                    values: Increment::from(row.values),
                });
        }
    }
    let mut machines = Vec::with_capacity(rows.len());
    for row in rows {
        let incurred = totals.remove(&row.id).unwrap_or_default();
        let (sum, costs) = sum_incurred(&incurred);
        machines.push((
            MachineSnapshot {
                last: row.last_received_at_ms.map(|received_at_ms| LastReport {
                    received_at_ms,
                    idle_ms: row.last_idle_ms,
                    session: session_from_db(row.last_session.as_deref()),
                }),
                id: row.id,
                hostname: row.hostname,
                os: row.os,
                os_version: row.os_version,
                agent_version: row.agent_version,
                site: row.site,
                department: row.department,
                power_profile: row.power_profile,
                retired: row.retired_at_ms.is_some(),
                cpu_usage_ratio: row.last_cpu_ratio,
                memory_usage_ratio: row.last_memory_ratio,
                uptime_seconds: row.last_uptime_seconds.and_then(|u| u64::try_from(u).ok()),
                idle_source: row
                    .last_idle_source
                    .as_deref()
                    .map(IdleSourceKind::from_name),
                totals: sum,
                costs,
            },
            incurred,
        ));
    }
    let sites: Vec<String> = sqlx::query_scalar("SELECT name FROM sites ORDER BY name")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(FleetChanges {
        cursor,
        full,
        machines,
        sites,
    })
}

/// A machine's totals over all its rows: time, energy and CO₂ summed, money per currency
/// (in the rows' currency order).
fn sum_incurred(rows: &[IncurredTotal]) -> (Increment, Vec<CostTotal>) {
    let mut sum = Increment::default();
    let mut costs: Vec<CostTotal> = Vec::new();
    for row in rows {
        let values = &row.values;
        sum.add(&values.without_money());
        match costs.iter_mut().find(|c| c.currency == row.currency) {
            Some(c) => {
                c.cost += values.cost;
                c.idle_cost += values.idle_cost;
                c.avoidable_cost += values.avoidable_cost;
            }
            None => costs.push(CostTotal {
                currency: row.currency.clone(),
                cost: values.cost,
                idle_cost: values.idle_cost,
                avoidable_cost: values.avoidable_cost,
            }),
        }
    }
    (sum, costs)
}
