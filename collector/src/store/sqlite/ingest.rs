//! [`IngestStore`] on SQLite. A heartbeat batch is written with multi-row statements in
//! chunks (SQLite has no array parameters), and the new totals are added up in Rust: the
//! machines' current totals are read with the lock, summed exactly, and written back whole.

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, Transaction};

use super::{DecimalText, SqliteStore};
use crate::accounting::{Increment, Params};
use crate::secrets::TokenHash;
use crate::store::common::CostRow;
use crate::store::common::batch::{self, AcceptedRow, Locked, MachineUpdate, i64_of};
use crate::store::common::ingest::{self as shared, EnrollSql, LockedRow, TotalsRow};
use crate::store::{
    EnrollCommand, EnrollRefusal, EnrolledMachine, FleetSnapshot, HeartbeatJob, IngestStore,
    JobOutcome, MachineQuery, MachineRow, StoreError,
};

/// Most bound parameters used in one `IN (…)` list.
const IN_CHUNK: usize = 500;
/// Rows per multi-row statement (19 parameters each, well under SQLite's 32766).
const ROWS_PER_STATEMENT: usize = 1000;

/// The enrolment runs under the write lock (`BEGIN IMMEDIATE`): nothing to lock row by row.
const ENROLL: EnrollSql = EnrollSql {
    usable_token: "SELECT id, site_id, department FROM enrollment_tokens
                   WHERE token_hash = $1 AND revoked_at_ms IS NULL
                     AND (expires_at_ms IS NULL OR expires_at_ms > $2)
                     AND (max_uses IS NULL OR uses < max_uses)",
    machine_by_key: "SELECT id, retired_at_ms FROM machines WHERE machine_key = $1",
};

#[async_trait]
impl IngestStore for SqliteStore {
    #[tracing::instrument(name = "store.enroll", skip_all, fields(backend = "sqlite"))]
    async fn enroll(
        &self,
        cmd: &EnrollCommand,
    ) -> Result<Result<EnrolledMachine, EnrollRefusal>, StoreError> {
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        shared::enroll(tx, cmd, &ENROLL).await
    }

    #[tracing::instrument(
        name = "store.machine_for_credential",
        skip_all,
        fields(backend = "sqlite")
    )]
    async fn machine_for_credential(&self, hash: &TokenHash) -> Result<Option<String>, StoreError> {
        shared::machine_for_credential(&self.pool, hash).await
    }

    #[tracing::instrument(
        name = "store.revoked_credentials_since",
        skip_all,
        fields(backend = "sqlite")
    )]
    async fn revoked_credentials_since(&self, since_ms: i64) -> Result<Vec<TokenHash>, StoreError> {
        shared::revoked_credentials_since(&self.pool, since_ms).await
    }

    #[tracing::instrument(
        name = "store.commit_heartbeats",
        skip_all,
        fields(backend = "sqlite", jobs = jobs.len())
    )]
    async fn commit_heartbeats(
        &self,
        jobs: &[HeartbeatJob],
        params: Params,
    ) -> Result<Vec<JobOutcome>, StoreError> {
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.machine_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut current = load_current(&mut tx, &ids).await?;
        let locked: HashMap<String, Locked> = current
            .iter()
            .map(|(id, c)| (id.clone(), c.locked.clone()))
            .collect();
        let plan = batch::plan(jobs, &locked, params);
        for rows in plan.rows.chunks(ROWS_PER_STATEMENT) {
            insert_heartbeats(&mut tx, rows).await?;
        }
        for updates in plan.updates.chunks(ROWS_PER_STATEMENT) {
            update_machines(&mut tx, updates, &mut current).await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    #[tracing::instrument(name = "store.fleet_snapshot", skip_all, fields(backend = "sqlite"))]
    async fn fleet_snapshot(&self) -> Result<FleetSnapshot, StoreError> {
        // A read transaction sees one consistent snapshot of the WAL.
        shared::fleet_snapshot(self.pool.begin().await?).await
    }

    #[tracing::instrument(name = "store.list_machines", skip_all, fields(backend = "sqlite"))]
    async fn list_machines(
        &self,
        query: &MachineQuery,
    ) -> Result<(Vec<MachineRow>, i64), StoreError> {
        shared::list_machines(&self.pool, query).await
    }

    #[tracing::instrument(name = "store.retire_machine", skip_all, fields(backend = "sqlite"))]
    async fn retire_machine(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        shared::retire_machine(&self.pool, id, now_ms).await
    }
}

/// A locked machine with its current totals (SQLite adds decimals in the collector).
struct Current {
    locked: Locked,
    totals: Increment,
    costs: HashMap<String, (Decimal, Decimal)>,
}

/// `?, ?, …` for an `IN` list of `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The machines of a batch with their totals, read under the write lock.
async fn load_current(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[&str],
) -> Result<HashMap<String, Current>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct LockedMachine {
        #[sqlx(flatten)]
        locked: LockedRow<DecimalText>,
        #[sqlx(flatten)]
        totals: TotalsRow<DecimalText>,
    }
    #[derive(sqlx::FromRow)]
    struct MachineCost {
        machine_id: String,
        #[sqlx(flatten)]
        cost: CostRow<DecimalText>,
    }
    let mut current = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT m.id, m.last_seq, m.last_sent_at_ms, p.idle_watts, p.active_watts,
                    s.price_per_kwh, s.carbon_intensity_g_per_kwh, s.currency,
                    m.observed_ms, m.idle_ms, m.unknown_ms, m.energy_j, m.idle_energy_j,
                    m.co2_g, m.idle_co2_g
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id
             WHERE m.id IN ({}) AND m.retired_at_ms IS NULL",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, LockedMachine>(AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            current.insert(
                row.locked.id.clone(),
                Current {
                    locked: row.locked.into(),
                    totals: row.totals.into(),
                    costs: HashMap::new(),
                },
            );
        }
        let sql = format!(
            "SELECT machine_id, currency, cost, idle_cost FROM machine_cost_totals
             WHERE machine_id IN ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, MachineCost>(AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            if let Some(c) = current.get_mut(&row.machine_id) {
                c.costs
                    .insert(row.cost.currency, (row.cost.cost.0, row.cost.idle_cost.0));
            }
        }
    }
    Ok(current)
}

/// Multi-row `INSERT` of accepted heartbeats (one statement per chunk).
async fn insert_heartbeats(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[AcceptedRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT OR IGNORE INTO heartbeats (machine_id, seq, sent_at_ms, received_at_ms,
             idle_input_ms, session, cpu_ratio, memory_ratio, uptime_seconds, observed_ms,
             idle_ms, unknown_ms, energy_j, idle_energy_j, currency, cost, idle_cost, co2_g,
             idle_co2_g) ",
    );
    q.push_values(rows, |mut b, r| {
        let h = r.heartbeat;
        let i = &r.increment;
        b.push_bind(r.machine_id)
            .push_bind(i64_of(h.seq))
            .push_bind(h.sent_at_ms)
            .push_bind(r.received_at_ms)
            .push_bind(h.idle_ms)
            .push_bind(h.session.as_str())
            .push_bind(h.cpu_usage_ratio)
            .push_bind(h.memory_usage_ratio)
            .push_bind(h.uptime_seconds.map(i64_of))
            .push_bind(i.observed_ms)
            .push_bind(i.idle_ms)
            .push_bind(i.unknown_ms)
            .push_bind(DecimalText(i.energy_j))
            .push_bind(DecimalText(i.idle_energy_j))
            .push_bind(r.currency)
            .push_bind(DecimalText(i.cost))
            .push_bind(DecimalText(i.idle_cost))
            .push_bind(DecimalText(i.co2_g))
            .push_bind(DecimalText(i.idle_co2_g));
    });
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// New totals (old + this batch, added exactly in Rust) for a chunk of machines: one
/// `UPDATE … FROM (VALUES …)` and one multi-row upsert of the money totals.
async fn update_machines(
    tx: &mut Transaction<'_, Sqlite>,
    updates: &[MachineUpdate<'_>],
    current: &mut HashMap<String, Current>,
) -> Result<(), sqlx::Error> {
    struct Row<'a> {
        u: &'a MachineUpdate<'a>,
        totals: Increment,
        cost: Decimal,
        idle_cost: Decimal,
    }
    let mut rows = Vec::with_capacity(updates.len());
    for u in updates {
        let Some(c) = current.get_mut(u.machine_id) else {
            continue;
        };
        c.totals.add(&u.sum);
        let money = c
            .costs
            .entry(u.currency.to_string())
            .or_insert((Decimal::ZERO, Decimal::ZERO));
        money.0 += u.sum.cost;
        money.1 += u.sum.idle_cost;
        rows.push(Row {
            u,
            totals: c.totals.clone(),
            cost: money.0,
            idle_cost: money.1,
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "UPDATE machines SET last_seq = u.column2, last_sent_at_ms = u.column3,
             last_received_at_ms = u.column4, last_idle_ms = u.column5, last_session = u.column6,
             last_cpu_ratio = u.column7, last_memory_ratio = u.column8,
             last_uptime_seconds = u.column9, observed_ms = u.column10, idle_ms = u.column11,
             unknown_ms = u.column12, energy_j = u.column13, idle_energy_j = u.column14,
             co2_g = u.column15, idle_co2_g = u.column16
         FROM (",
    );
    q.push_values(&rows, |mut b, r| {
        let (received_at_ms, h) = r.u.newest;
        let t = &r.totals;
        b.push_bind(r.u.machine_id)
            .push_bind(i64_of(r.u.cursor.last_seq))
            .push_bind(r.u.cursor.last_sent_at_ms)
            .push_bind(received_at_ms)
            .push_bind(h.idle_ms)
            .push_bind(h.session.as_str())
            .push_bind(h.cpu_usage_ratio)
            .push_bind(h.memory_usage_ratio)
            .push_bind(h.uptime_seconds.map(i64_of))
            .push_bind(t.observed_ms)
            .push_bind(t.idle_ms)
            .push_bind(t.unknown_ms)
            .push_bind(DecimalText(t.energy_j))
            .push_bind(DecimalText(t.idle_energy_j))
            .push_bind(DecimalText(t.co2_g))
            .push_bind(DecimalText(t.idle_co2_g));
    });
    q.push(") AS u WHERE machines.id = u.column1");
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;

    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO machine_cost_totals (machine_id, currency, cost, idle_cost) ",
    );
    q.push_values(&rows, |mut b, r| {
        b.push_bind(r.u.machine_id)
            .push_bind(r.u.currency)
            .push_bind(DecimalText(r.cost))
            .push_bind(DecimalText(r.idle_cost));
    });
    q.push(
        " ON CONFLICT (machine_id, currency) DO UPDATE
          SET cost = excluded.cost, idle_cost = excluded.idle_cost",
    );
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}
