//! [`IngestStore`] on PostgreSQL. A heartbeat batch is written with one statement per table,
//! each taking its rows as arrays (`UNNEST`); usage rows and totals are added to in SQL
//! (`NUMERIC` is exact).

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};

use super::PostgresStore;
use crate::accounting::Increment;
use crate::secrets::TokenHash;
use crate::store::common::increments::{add_on_conflict, column_list, decimals, times};
use crate::store::common::ingest::{
    self as shared, EnrollSql, LockedRow, PLACEMENT_IDS, PlacementIdsRow, assemble_locked,
};
use crate::store::common::rates::{load_rate_book, rates_version_in};
use crate::store::ingest::{
    HeartbeatStorage, MachineUpdate, Planner, RateBookCache, RawHeartbeat, TotalsDelta, UsageDelta,
};
use crate::store::{
    EnrollCommand, EnrollRefusal, EnrolledMachine, FleetChanges, FleetCursor, HeartbeatJob,
    IngestStore, JobOutcome, StoreError,
};

/// Machine rows carry the transaction that last wrote them (a trigger sets it); a reader
/// looks again at every row written by a transaction not finished before its last read.
const FLEET_CHANGES: shared::ChangeSql = shared::ChangeSql {
    cursor: "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, catalog,
                    log_from::text::bigint
             FROM fleet_clock WHERE id = 1",
    changed_since: "m.num IN (SELECT unnest(l.machines) FROM fleet_log l
                              WHERE l.xid >= $1::bigint::text::xid8)",
    ids_in_json: "SELECT jsonb_array_elements_text($1::jsonb)",
};

/// Enrolment locks the token and the machine row, so concurrent enrolments (from several
/// collectors too) count token uses and rotate credentials one at a time.
const ENROLL: EnrollSql = EnrollSql {
    usable_token: "SELECT id, site_id, department FROM enrollment_tokens
                   WHERE token_hash = $1 AND revoked_at_ms IS NULL
                     AND (expires_at_ms IS NULL OR expires_at_ms > $2)
                     AND (max_uses IS NULL OR uses < max_uses)
                   FOR UPDATE",
    machine_by_key: "SELECT id, retired_at_ms FROM machines WHERE machine_key = $1 FOR UPDATE",
};

/// Rate changes take this advisory lock exclusively, heartbeat batches shared (see
/// `common/rates.rs`).
pub(crate) const RATES_LOCK: i64 = 7_310_453;

#[async_trait]
impl IngestStore for PostgresStore {
    #[tracing::instrument(name = "store.enroll", skip_all, fields(backend = "postgres"))]
    async fn enroll(
        &self,
        cmd: &EnrollCommand,
    ) -> Result<Result<EnrolledMachine, EnrollRefusal>, StoreError> {
        shared::enroll(self.pool.begin().await?, cmd, &ENROLL).await
    }

    #[tracing::instrument(
        name = "store.machine_for_credential",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn machine_for_credential(&self, hash: &TokenHash) -> Result<Option<String>, StoreError> {
        shared::machine_for_credential(&self.pool, hash).await
    }

    #[tracing::instrument(
        name = "store.revoked_credentials_since",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn revoked_credentials_since(&self, since_ms: i64) -> Result<Vec<TokenHash>, StoreError> {
        shared::revoked_credentials_since(&self.pool, since_ms).await
    }

    #[tracing::instrument(
        name = "store.commit_heartbeats",
        skip_all,
        fields(backend = "postgres", jobs = jobs.len())
    )]
    async fn commit_heartbeats(
        &self,
        jobs: &[HeartbeatJob],
        books: &RateBookCache,
        planner: &dyn Planner,
    ) -> Result<Vec<JobOutcome>, StoreError> {
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.machine_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(RATES_LOCK)
            .execute(&mut *tx)
            .await?;
        let version = rates_version_in(&mut tx).await?;
        let book = match books.get(version) {
            Some(book) => book,
            None => {
                let book = Arc::new(load_rate_book(&mut tx, version).await?);
                books.put(book.clone());
                book
            }
        };
        let rows: Vec<LockedRow> = sqlx::query_as(
            "SELECT m.id, m.num::int8 AS num, m.last_seq, m.last_sent_at_ms, c.token_hash
             FROM machines m
             JOIN agent_credentials c ON c.machine_id = m.id AND c.revoked_at_ms IS NULL
             WHERE m.id = ANY($1) AND m.retired_at_ms IS NULL
             ORDER BY m.id
             FOR UPDATE OF m",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let placements: Vec<PlacementIdsRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PLACEMENT_IDS} FROM machine_placements WHERE machine_id = ANY($1)"
        )))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let locked = assemble_locked(rows, placements);
        let plan = planner
            .plan(jobs, &locked, &book)
            .map_err(|e| StoreError::Internal(sqlx::Error::Decode(Box::new(e))))?;
        insert_raw(&mut tx, &plan.raw).await?;
        add_usage(&mut tx, &plan.usage).await?;
        add_totals(&mut tx, &plan.totals).await?;
        update_machines(&mut tx, &plan.machines).await?;
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    #[tracing::instrument(name = "store.fleet_changes", skip_all, fields(backend = "postgres"))]
    async fn fleet_changes(&self, since: Option<FleetCursor>) -> Result<FleetChanges, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One consistent view of machines, totals and sites; the cursor is this view's xmin.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        shared::fleet_changes(tx, since, &FLEET_CHANGES).await
    }

    #[tracing::instrument(name = "store.prune_fleet_log", skip_all, fields(backend = "postgres"))]
    async fn prune_fleet_log(&self, now_ms: i64, keep_ms: i64) -> Result<u64, StoreError> {
        // The horizon noted last time becomes where the log is complete from; the log before
        // it goes, and today's horizon is noted for next time.
        let deleted = sqlx::query(
            "WITH due AS (
                 UPDATE fleet_clock
                 SET log_from = GREATEST(log_from, prune_next),
                     prune_next = pg_snapshot_xmin(pg_current_snapshot()),
                     prune_next_at_ms = $1
                 WHERE id = 1 AND prune_next_at_ms <= $1 - $2
                 RETURNING log_from)
             DELETE FROM fleet_log WHERE xid < (SELECT log_from FROM due)",
        )
        .bind(now_ms)
        .bind(keep_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    #[tracing::instrument(
        name = "store.heartbeat_storage",
        skip_all,
        fields(backend = "postgres")
    )]
    async fn heartbeat_storage(&self) -> Result<HeartbeatStorage, StoreError> {
        let (rows, bytes): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM heartbeats), pg_total_relation_size('heartbeats')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(HeartbeatStorage {
            rows: u64::try_from(rows).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    #[tracing::instrument(name = "store.retire_machine", skip_all, fields(backend = "postgres"))]
    async fn retire_machine(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        shared::retire_machine(&self.pool, id, now_ms).await
    }
}

/// Inserts raw heartbeats given as one array per column, in this order.
const INSERT_RAW: &str = "INSERT INTO heartbeats (sent_at_ms, seq, machine, idle_ms,
         observed_ms, state)
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int4[], $4::int4[], $5::int4[],
                          $6::int4[])";

async fn insert_raw(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[RawHeartbeat],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sent: Vec<i64> = rows.iter().map(|r| r.sent_at_ms).collect();
    let seq: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let machine: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.machine).unwrap_or(i32::MAX))
        .collect();
    let idle: Vec<Option<i32>> = rows.iter().map(|r| r.idle_ms).collect();
    let observed: Vec<i32> = rows.iter().map(|r| r.observed_ms).collect();
    let state: Vec<i32> = rows.iter().map(|r| r.state).collect();
    sqlx::query(INSERT_RAW)
        .bind(&sent)
        .bind(&seq)
        .bind(&machine)
        .bind(&idle)
        .bind(&observed)
        .bind(&state)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The fifteen value columns of `rows` as arrays, in column order.
fn value_arrays<'a, T: 'a>(
    rows: &'a [T],
    increment: impl Fn(&T) -> &Increment,
) -> (Vec<Vec<i64>>, Vec<Vec<Decimal>>) {
    let mut ints: Vec<Vec<i64>> = (0..5).map(|_| Vec::with_capacity(rows.len())).collect();
    let mut decs: Vec<Vec<Decimal>> = (0..10).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        let i = increment(row);
        for (column, v) in ints.iter_mut().zip(times(i)) {
            column.push(v);
        }
        for (column, v) in decs.iter_mut().zip(decimals(i)) {
            column.push(v);
        }
    }
    (ints, decs)
}

/// `$n::int8[], …` for the value columns, starting at parameter `first`.
fn value_params(first: usize) -> String {
    (0..15)
        .map(|i| {
            let kind = if i < 5 { "int8" } else { "numeric" };
            format!("${}::{kind}[]", first + i)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn add_usage(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[UsageDelta],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let machine: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.machine).unwrap_or(i32::MAX))
        .collect();
    let hour: Vec<i64> = rows.iter().map(|r| r.hour_ms).collect();
    let site: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.attribution.site_id).unwrap_or(i32::MAX))
        .collect();
    let department: Vec<&str> = rows
        .iter()
        .map(|r| r.attribution.department.as_str())
        .collect();
    let profile: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.attribution.profile_id).unwrap_or(i32::MAX))
        .collect();
    let currency: Vec<&str> = rows
        .iter()
        .map(|r| r.attribution.currency.as_str())
        .collect();
    let (ints, decs) = value_arrays(rows, |r| &r.increment);
    let sql = format!(
        "INSERT INTO usage_hours (machine, hour_ms, site_id, department, profile_id, currency,
             {columns})
         SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::int4[], $4::text[], $5::int4[],
             $6::text[], {params})
         ON CONFLICT (machine, hour_ms, site_id, department, profile_id, currency)
         DO UPDATE SET {add}",
        columns = column_list(""),
        params = value_params(7),
        add = add_on_conflict("usage_hours"),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&machine)
        .bind(&hour)
        .bind(&site)
        .bind(&department)
        .bind(&profile)
        .bind(&currency);
    for column in &ints {
        query = query.bind(column);
    }
    for column in &decs {
        query = query.bind(column);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn add_totals(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[TotalsDelta],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let machine: Vec<&str> = rows.iter().map(|r| r.machine_id.as_str()).collect();
    let site: Vec<i64> = rows.iter().map(|r| r.site_id).collect();
    let department: Vec<&str> = rows.iter().map(|r| r.department.as_str()).collect();
    let currency: Vec<&str> = rows.iter().map(|r| r.currency.as_str()).collect();
    let (ints, decs) = value_arrays(rows, |r| &r.increment);
    let sql = format!(
        "INSERT INTO machine_totals (machine_id, site_id, department, currency, {columns})
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], {params})
         ON CONFLICT (machine_id, site_id, department, currency) DO UPDATE SET {add}",
        columns = column_list(""),
        params = value_params(5),
        add = add_on_conflict("machine_totals"),
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&machine)
        .bind(&site)
        .bind(&department)
        .bind(&currency);
    for column in &ints {
        query = query.bind(column);
    }
    for column in &decs {
        query = query.bind(column);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The new cursor and last report of every machine of a batch, in one statement.
async fn update_machines(
    tx: &mut Transaction<'_, Postgres>,
    updates: &[MachineUpdate],
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = updates.iter().map(|u| u.machine_id.as_str()).collect();
    let last_seq: Vec<i64> = updates
        .iter()
        .map(|u| i64::try_from(u.cursor.last_seq).unwrap_or(i64::MAX))
        .collect();
    let hw: Vec<Option<i64>> = updates.iter().map(|u| u.cursor.hw_ms).collect();
    let received: Vec<Option<i64>> = updates.iter().map(|u| u.last.map(|l| l.0)).collect();
    let idle: Vec<Option<i64>> = updates
        .iter()
        .map(|u| u.last.and_then(|l| l.1.idle_ms))
        .collect();
    let session: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.last.map(|l| l.1.session.as_str()))
        .collect();
    let cpu: Vec<Option<f64>> = updates
        .iter()
        .map(|u| u.last.and_then(|l| l.1.cpu_usage_ratio))
        .collect();
    let memory: Vec<Option<f64>> = updates
        .iter()
        .map(|u| u.last.and_then(|l| l.1.memory_usage_ratio))
        .collect();
    let uptime: Vec<Option<i64>> = updates
        .iter()
        .map(|u| {
            u.last
                .and_then(|l| l.1.uptime_seconds)
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX))
        })
        .collect();
    let source: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.last.and_then(|l| l.1.idle_source).map(|k| k.as_str()))
        .collect();
    sqlx::query(
        "UPDATE machines AS m SET
             last_seq = u.last_seq, last_sent_at_ms = u.hw,
             last_received_at_ms = COALESCE(u.received, m.last_received_at_ms),
             last_idle_ms = CASE WHEN u.received IS NULL THEN m.last_idle_ms ELSE u.idle END,
             last_session = COALESCE(u.session, m.last_session),
             last_cpu_ratio = CASE WHEN u.received IS NULL THEN m.last_cpu_ratio ELSE u.cpu END,
             last_memory_ratio = CASE WHEN u.received IS NULL THEN m.last_memory_ratio
                                      ELSE u.memory END,
             last_uptime_seconds = CASE WHEN u.received IS NULL THEN m.last_uptime_seconds
                                        ELSE u.uptime END,
             last_idle_source = CASE WHEN u.received IS NULL THEN m.last_idle_source
                                     ELSE u.source END
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[],
                     $7::float8[], $8::float8[], $9::int8[], $10::text[])
              AS u(id, last_seq, hw, received, idle, session, cpu, memory, uptime, source)
         WHERE m.id = u.id",
    )
    .bind(&ids)
    .bind(&last_seq)
    .bind(&hw)
    .bind(&received)
    .bind(&idle)
    .bind(&session)
    .bind(&cpu)
    .bind(&memory)
    .bind(&uptime)
    .bind(&source)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
