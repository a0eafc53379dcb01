//! [`IngestStore`] on SQLite. A heartbeat batch is written with multi-row statements in
//! chunks (SQLite has no array parameters); usage rows and totals are added up in Rust: the
//! stored rows the batch touches are read under the write lock, summed exactly and written
//! back whole.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, Transaction};

use super::{DecimalText, SqliteStore};
use crate::accounting::{Attribution, Increment};
use crate::secrets::TokenHash;
use crate::store::common::increments::{
    IncrementRow, column_list, decimals, replace_on_conflict, times,
};
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

/// Every write of a machine row takes the next change number (a trigger gives it; SQLite
/// serialises writers, so numbers are in commit order).
const FLEET_CHANGES: shared::ChangeSql = shared::ChangeSql {
    cursor: "SELECT seq, catalog, 0 FROM fleet_clock WHERE id = 1",
    changed_since: "m.change_seq > $1",
    ids_in_json: "SELECT value FROM json_each($1)",
};

/// Most bound parameters used in one `IN (…)` list.
const IN_CHUNK: usize = 500;
/// Rows per multi-row statement (21 parameters each at most, well under SQLite's 32766).
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
        books: &RateBookCache,
        planner: &dyn Planner,
    ) -> Result<Vec<JobOutcome>, StoreError> {
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.machine_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let version = rates_version_in(&mut tx).await?;
        let book = match books.get(version) {
            Some(book) => book,
            None => {
                let book = Arc::new(load_rate_book(&mut tx, version).await?);
                books.put(book.clone());
                book
            }
        };
        let mut rows: Vec<LockedRow> = Vec::with_capacity(ids.len());
        let mut placements: Vec<PlacementIdsRow> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT m.id, m.num, m.last_seq, m.last_sent_at_ms, c.token_hash
                 FROM machines m
                 JOIN agent_credentials c ON c.machine_id = m.id AND c.revoked_at_ms IS NULL
                 WHERE m.id IN ({}) AND m.retired_at_ms IS NULL",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_as::<_, LockedRow>(AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&mut *tx).await?);
            let sql = format!(
                "SELECT {PLACEMENT_IDS} FROM machine_placements WHERE machine_id IN ({})",
                placeholders(chunk.len())
            );
            let mut query =
                sqlx::query_as::<_, PlacementIdsRow>(AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            placements.extend(query.fetch_all(&mut *tx).await?);
        }
        let locked = assemble_locked(rows, placements);
        let plan = planner
            .plan(jobs, &locked, &book)
            .map_err(|e| StoreError::Internal(sqlx::Error::Decode(Box::new(e))))?;
        for rows in plan.raw.chunks(ROWS_PER_STATEMENT) {
            insert_raw(&mut tx, rows).await?;
        }
        add_usage(&mut tx, &plan.usage).await?;
        add_totals(&mut tx, &plan.totals).await?;
        let updates: Vec<Updated<'_>> = plan
            .machines
            .iter()
            .filter_map(|u| u.last.as_ref().map(|(received, hb)| (u, *received, hb)))
            .collect();
        for chunk in updates.chunks(ROWS_PER_STATEMENT) {
            update_machines(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    #[tracing::instrument(name = "store.fleet_changes", skip_all, fields(backend = "sqlite"))]
    async fn fleet_changes(&self, since: Option<FleetCursor>) -> Result<FleetChanges, StoreError> {
        // A read transaction sees one consistent snapshot of the WAL.
        shared::fleet_changes(self.pool.begin().await?, since, &FLEET_CHANGES).await
    }

    #[tracing::instrument(name = "store.retire_machine", skip_all, fields(backend = "sqlite"))]
    async fn retire_machine(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        shared::retire_machine(&self.pool, id, now_ms).await
    }

    #[tracing::instrument(name = "store.heartbeat_storage", skip_all, fields(backend = "sqlite"))]
    async fn heartbeat_storage(&self) -> Result<HeartbeatStorage, StoreError> {
        // `dbstat` counts the pages of the table and of its index as stored in the file.
        let (rows, bytes): (i64, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM heartbeats),
                    (SELECT SUM(pgsize) FROM dbstat
                     WHERE name IN ('heartbeats', 'heartbeats_sent_at'))",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(HeartbeatStorage {
            rows: u64::try_from(rows).unwrap_or(0),
            bytes: bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0),
        })
    }
}

/// `?, ?, …` for an `IN` list of `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Multi-row `INSERT` of raw heartbeats (one statement per chunk). Also used by `migrate-data`.
pub(crate) async fn insert_raw(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[RawHeartbeat],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO heartbeats (sent_at_ms, seq, machine, idle_ms, observed_ms, state) ",
    );
    q.push_values(rows, |mut b, r| {
        b.push_bind(r.sent_at_ms)
            .push_bind(r.seq)
            .push_bind(r.machine)
            .push_bind(r.idle_ms)
            .push_bind(r.observed_ms)
            .push_bind(r.state);
    });
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

fn push_values(b: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, i: &Increment) {
    for v in times(i) {
        b.push_bind(v);
    }
    for v in decimals(i) {
        b.push_bind(DecimalText(v));
    }
}

/// Adds the batch's usage deltas to the stored rows, exactly.
async fn add_usage(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: &[UsageDelta],
) -> Result<(), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Stored {
        machine: i64,
        hour_ms: i64,
        site_id: i64,
        department: String,
        profile_id: i64,
        currency: String,
        #[sqlx(flatten)]
        values: IncrementRow<DecimalText>,
    }
    if deltas.is_empty() {
        return Ok(());
    }
    let mut machines: Vec<i64> = deltas.iter().map(|d| d.machine).collect();
    machines.sort_unstable();
    machines.dedup();
    let (first_hour, last_hour) = deltas.iter().fold((i64::MAX, i64::MIN), |(lo, hi), d| {
        (lo.min(d.hour_ms), hi.max(d.hour_ms))
    });
    let mut stored: HashMap<(i64, i64, Attribution), Increment> = HashMap::new();
    for chunk in machines.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT machine, hour_ms, site_id, department, profile_id, currency, {}
             FROM usage_hours WHERE hour_ms >= ? AND hour_ms <= ? AND machine IN ({})",
            column_list(""),
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, Stored>(AssertSqlSafe(sql))
            .persistent(false)
            .bind(first_hour)
            .bind(last_hour);
        for m in chunk {
            query = query.bind(*m);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let key = (
                row.machine,
                row.hour_ms,
                Attribution {
                    site_id: row.site_id,
                    department: row.department,
                    profile_id: row.profile_id,
                    currency: row.currency,
                },
            );
            stored.insert(key, row.values.into());
        }
    }
    let rows: Vec<(&UsageDelta, Increment)> = deltas
        .iter()
        .map(|d| {
            let mut sum = stored
                .remove(&(d.machine, d.hour_ms, d.attribution.clone()))
                .unwrap_or_default();
            sum.add(&d.increment);
            (d, sum)
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO usage_hours (machine, hour_ms, site_id, department, profile_id, currency,
                 {}) ",
            column_list("")
        ));
        q.push_values(chunk, |mut b, (d, sum)| {
            b.push_bind(d.machine)
                .push_bind(d.hour_ms)
                .push_bind(d.attribution.site_id)
                .push_bind(d.attribution.department.as_str())
                .push_bind(d.attribution.profile_id)
                .push_bind(d.attribution.currency.as_str());
            push_values(&mut b, sum);
        });
        q.push(format!(
            " ON CONFLICT (machine, hour_ms, site_id, department, profile_id, currency)
              DO UPDATE SET {}",
            replace_on_conflict()
        ));
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Adds the batch's totals deltas to the stored totals, exactly.
async fn add_totals(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: &[TotalsDelta],
) -> Result<(), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Stored {
        machine_id: String,
        site_id: i64,
        department: String,
        currency: String,
        #[sqlx(flatten)]
        values: IncrementRow<DecimalText>,
    }
    if deltas.is_empty() {
        return Ok(());
    }
    let mut machines: Vec<&str> = deltas.iter().map(|d| d.machine_id.as_str()).collect();
    machines.sort_unstable();
    machines.dedup();
    let mut stored: HashMap<(String, i64, String, String), Increment> = HashMap::new();
    for chunk in machines.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT machine_id, site_id, department, currency, {}
             FROM machine_totals WHERE machine_id IN ({})",
            column_list(""),
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, Stored>(AssertSqlSafe(sql)).persistent(false);
        for m in chunk {
            query = query.bind(*m);
        }
        for row in query.fetch_all(&mut **tx).await? {
            stored.insert(
                (row.machine_id, row.site_id, row.department, row.currency),
                row.values.into(),
            );
        }
    }
    let rows: Vec<(&TotalsDelta, Increment)> = deltas
        .iter()
        .map(|d| {
            let key = (
                d.machine_id.clone(),
                d.site_id,
                d.department.clone(),
                d.currency.clone(),
            );
            let mut sum = stored.remove(&key).unwrap_or_default();
            sum.add(&d.increment);
            (d, sum)
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO machine_totals (machine_id, site_id, department, currency, {}) ",
            column_list("")
        ));
        q.push_values(chunk, |mut b, (d, sum)| {
            b.push_bind(d.machine_id.as_str())
                .push_bind(d.site_id)
                .push_bind(d.department.as_str())
                .push_bind(d.currency.as_str());
            push_values(&mut b, sum);
        });
        q.push(format!(
            " ON CONFLICT (machine_id, site_id, department, currency) DO UPDATE SET {}",
            replace_on_conflict()
        ));
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The new cursor and last report of the batch's machines, in one statement per chunk
/// (SQLite's `UPDATE … FROM (VALUES …)`): one round trip to the database thread, not one
/// per machine.
type Updated<'a> = (
    &'a MachineUpdate,
    i64,
    &'a greenops_protocol::ValidHeartbeat,
);

async fn update_machines(
    tx: &mut Transaction<'_, Sqlite>,
    updates: &[Updated<'_>],
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "UPDATE machines SET last_seq = v.column2, last_sent_at_ms = v.column3,
             last_received_at_ms = v.column4, last_idle_ms = v.column5, last_session = v.column6,
             last_cpu_ratio = v.column7, last_memory_ratio = v.column8,
             last_uptime_seconds = v.column9,
             last_idle_source = v.column10
         FROM (",
    );
    q.push_values(updates, |mut b, &(u, received, hb)| {
        b.push_bind(u.machine_id.as_str())
            .push_bind(i64::try_from(u.cursor.last_seq).unwrap_or(i64::MAX))
            .push_bind(u.cursor.hw_ms)
            .push_bind(received)
            .push_bind(hb.idle_ms)
            .push_bind(hb.session.as_str())
            .push_bind(hb.cpu_usage_ratio)
            .push_bind(hb.memory_usage_ratio)
            .push_bind(
                hb.uptime_seconds
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            )
            .push_bind(hb.idle_source.map(|k| k.as_str()));
    });
    q.push(") AS v WHERE machines.id = v.column1");
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}
