//! [`IngestStore`] on PostgreSQL. A heartbeat batch is written with one statement per table,
//! each taking its rows as arrays (`UNNEST`), and the totals are added up in SQL (`NUMERIC`
//! is exact).

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;

use super::PostgresStore;
use crate::accounting::{Increment, Params};
use crate::secrets::TokenHash;
use crate::store::common::batch::{self, AcceptedRow, Locked, MachineUpdate, i64_of};
use crate::store::common::ingest::{self as shared, EnrollSql, LockedRow};
use crate::store::{
    EnrollCommand, EnrollRefusal, EnrolledMachine, FleetSnapshot, HeartbeatJob, IngestStore,
    JobOutcome, MachineQuery, MachineRow, StoreError,
};
use greenops_protocol::ValidHeartbeat;

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
        params: Params,
    ) -> Result<Vec<JobOutcome>, StoreError> {
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.machine_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await?;
        let rows: Vec<LockedRow<Decimal>> = sqlx::query_as(
            "SELECT m.id, m.last_seq, m.last_sent_at_ms, p.idle_watts, p.active_watts,
                    s.price_per_kwh, s.carbon_intensity_g_per_kwh, s.currency
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id
             WHERE m.id = ANY($1) AND m.retired_at_ms IS NULL
             ORDER BY m.id
             FOR UPDATE OF m",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let locked: HashMap<String, Locked> = rows
            .into_iter()
            .map(|row| (row.id.clone(), Locked::from(row)))
            .collect();
        let plan = batch::plan(jobs, &locked, params);
        if !plan.rows.is_empty() {
            insert_heartbeats(&mut tx, &plan.rows).await?;
            update_machines(&mut tx, &plan.updates).await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    #[tracing::instrument(name = "store.fleet_snapshot", skip_all, fields(backend = "postgres"))]
    async fn fleet_snapshot(&self) -> Result<FleetSnapshot, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One consistent view of machines, costs and sites.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        shared::fleet_snapshot(tx).await
    }

    #[tracing::instrument(name = "store.list_machines", skip_all, fields(backend = "postgres"))]
    async fn list_machines(
        &self,
        query: &MachineQuery,
    ) -> Result<(Vec<MachineRow>, i64), StoreError> {
        shared::list_machines(&self.pool, query).await
    }

    #[tracing::instrument(name = "store.retire_machine", skip_all, fields(backend = "postgres"))]
    async fn retire_machine(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        shared::retire_machine(&self.pool, id, now_ms).await
    }
}

/// Inserts heartbeats given as one array per column, in this order; a heartbeat already
/// stored (same machine and `seq`) is skipped. Also used by `migrate-data`.
pub(crate) const INSERT_HEARTBEATS: &str = "INSERT INTO heartbeats (machine_id, seq, sent_at_ms,
         received_at_ms, idle_input_ms, session, cpu_ratio, memory_ratio, uptime_seconds,
         observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, currency, cost, idle_cost,
         co2_g, idle_co2_g)
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
         $6::text[], $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[],
         $12::int8[], $13::numeric[], $14::numeric[], $15::text[], $16::numeric[],
         $17::numeric[], $18::numeric[], $19::numeric[])
     ON CONFLICT (machine_id, seq) DO NOTHING";

/// The accepted heartbeats of a batch, in one statement.
async fn insert_heartbeats(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[AcceptedRow<'_>],
) -> Result<(), sqlx::Error> {
    let col_i64 = |f: fn(&AcceptedRow<'_>) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let col_opt = |f: fn(&AcceptedRow<'_>) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
    let col_f64 = |f: fn(&AcceptedRow<'_>) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    let col_dec = |f: fn(&AcceptedRow<'_>) -> Decimal| rows.iter().map(f).collect::<Vec<_>>();
    let machine_ids: Vec<&str> = rows.iter().map(|r| r.machine_id).collect();
    let sessions: Vec<&str> = rows.iter().map(|r| r.heartbeat.session.as_str()).collect();
    let currencies: Vec<&str> = rows.iter().map(|r| r.currency).collect();
    sqlx::query(INSERT_HEARTBEATS)
        .bind(&machine_ids)
        .bind(col_i64(|r| i64_of(r.heartbeat.seq)))
        .bind(col_i64(|r| r.heartbeat.sent_at_ms))
        .bind(col_i64(|r| r.received_at_ms))
        .bind(col_opt(|r| r.heartbeat.idle_ms))
        .bind(&sessions)
        .bind(col_f64(|r| r.heartbeat.cpu_usage_ratio))
        .bind(col_f64(|r| r.heartbeat.memory_usage_ratio))
        .bind(col_opt(|r| r.heartbeat.uptime_seconds.map(i64_of)))
        .bind(col_i64(|r| r.increment.observed_ms))
        .bind(col_i64(|r| r.increment.idle_ms))
        .bind(col_i64(|r| r.increment.unknown_ms))
        .bind(col_dec(|r| r.increment.energy_j))
        .bind(col_dec(|r| r.increment.idle_energy_j))
        .bind(&currencies)
        .bind(col_dec(|r| r.increment.cost))
        .bind(col_dec(|r| r.increment.idle_cost))
        .bind(col_dec(|r| r.increment.co2_g))
        .bind(col_dec(|r| r.increment.idle_co2_g))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The new cursor, last report and totals of every machine of a batch (added in SQL), and
/// its money totals per currency, in one statement each.
async fn update_machines(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    updates: &[MachineUpdate<'_>],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = updates.iter().map(|u| u.machine_id).collect();
    let newest = |f: fn(i64, &ValidHeartbeat) -> Option<i64>| {
        updates
            .iter()
            .map(|u| f(u.newest.0, u.newest.1))
            .collect::<Vec<Option<i64>>>()
    };
    let ratio = |f: fn(&ValidHeartbeat) -> Option<f64>| {
        updates
            .iter()
            .map(|u| f(u.newest.1))
            .collect::<Vec<Option<f64>>>()
    };
    let sum_i64 = |f: fn(&Increment) -> i64| updates.iter().map(|u| f(&u.sum)).collect::<Vec<_>>();
    let sum_dec =
        |f: fn(&Increment) -> Decimal| updates.iter().map(|u| f(&u.sum)).collect::<Vec<_>>();
    let sessions: Vec<&str> = updates
        .iter()
        .map(|u| u.newest.1.session.as_str())
        .collect();
    let last_seq: Vec<i64> = updates.iter().map(|u| i64_of(u.cursor.last_seq)).collect();
    let last_sent: Vec<Option<i64>> = updates.iter().map(|u| u.cursor.last_sent_at_ms).collect();
    sqlx::query(
        "UPDATE machines AS m SET
             last_seq = u.last_seq, last_sent_at_ms = u.last_sent, last_received_at_ms = u.received,
             last_idle_ms = u.idle_input, last_session = u.session, last_cpu_ratio = u.cpu,
             last_memory_ratio = u.memory, last_uptime_seconds = u.uptime,
             observed_ms = m.observed_ms + u.observed_ms, idle_ms = m.idle_ms + u.idle_ms,
             unknown_ms = m.unknown_ms + u.unknown_ms, energy_j = m.energy_j + u.energy_j,
             idle_energy_j = m.idle_energy_j + u.idle_energy_j, co2_g = m.co2_g + u.co2_g,
             idle_co2_g = m.idle_co2_g + u.idle_co2_g
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[],
                     $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[],
                     $12::int8[], $13::numeric[], $14::numeric[], $15::numeric[], $16::numeric[])
              AS u(id, last_seq, last_sent, received, idle_input, session, cpu, memory, uptime,
                   observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, co2_g, idle_co2_g)
         WHERE m.id = u.id",
    )
    .bind(&ids)
    .bind(&last_seq)
    .bind(&last_sent)
    .bind(newest(|received, _| Some(received)))
    .bind(newest(|_, h| h.idle_ms))
    .bind(&sessions)
    .bind(ratio(|h| h.cpu_usage_ratio))
    .bind(ratio(|h| h.memory_usage_ratio))
    .bind(newest(|_, h| h.uptime_seconds.map(i64_of)))
    .bind(sum_i64(|s| s.observed_ms))
    .bind(sum_i64(|s| s.idle_ms))
    .bind(sum_i64(|s| s.unknown_ms))
    .bind(sum_dec(|s| s.energy_j))
    .bind(sum_dec(|s| s.idle_energy_j))
    .bind(sum_dec(|s| s.co2_g))
    .bind(sum_dec(|s| s.idle_co2_g))
    .execute(&mut **tx)
    .await?;
    let currencies: Vec<&str> = updates.iter().map(|u| u.currency).collect();
    sqlx::query(
        "INSERT INTO machine_cost_totals (machine_id, currency, cost, idle_cost)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::numeric[])
         ON CONFLICT (machine_id, currency) DO UPDATE
         SET cost = machine_cost_totals.cost + EXCLUDED.cost,
             idle_cost = machine_cost_totals.idle_cost + EXCLUDED.idle_cost",
    )
    .bind(&ids)
    .bind(&currencies)
    .bind(sum_dec(|s| s.cost))
    .bind(sum_dec(|s| s.idle_cost))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
