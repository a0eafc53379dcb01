//! Carries an installation's v1 data into the accounting-v2 tables, once, right after the
//! migration that renamed the v1 tables (`*_v1`): every raw heartbeat keeps what was observed,
//! every increment keeps its values and gets the machine's current placement as the one it was
//! incurred in (v1 recorded no other), and the machines' totals are the sums of those rows —
//! exactly the v1 totals, since v1 kept totals equal to the sum of its increments. One
//! transaction: an interrupted upgrade leaves the v1 tables as they were and runs again.

use std::collections::{BTreeMap, HashMap};

use sqlx::{ColumnIndex, Decode, Encode, Executor, QueryBuilder, Transaction, Type};

use super::increments::{column_list, decimals, times};
use super::{Dialect, SqlStore, dec, session_from_db};
use crate::accounting::Increment;
use crate::accounting::rates::HOUR_MS;
use crate::store::StoreError;
use crate::store::ingest::pack_state;

/// The settings key the migration sets while v1 data waits to be carried forward.
const PENDING: &str = "v1_data_pending";
/// v1 heartbeats read per page.
const PAGE: i64 = 10_000;
/// Rows per multi-row insert.
const CHUNK: usize = 500;

type UsageKey = (i64, i64, i64, String, i64, String);
type TotalsKey = (String, i64, String, String);

/// Runs the carry-forward when the migration left v1 data (see the module docs).
pub(crate) async fn carry_forward_v1<S, DB>(store: &S) -> Result<(), StoreError>
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i32>: Type<DB> + Encode<'q, DB>,
    for<'q> i32: Type<DB> + Encode<'q, DB>,
    for<'q> Option<f64>: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<String>: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let pending: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(PENDING)
        .fetch_optional(store.pool())
        .await?;
    if pending.is_none() {
        return Ok(());
    }
    tracing::info!("carrying v1 accounting data forward (once)");
    let mut tx = store.pool().begin_with(DB::BEGIN_WRITE).await?;
    let report = convert(&mut tx).await?;
    for table in [
        "heartbeats_v1",
        "heartbeat_hours_v1",
        "heartbeat_days_v1",
        "machine_cost_totals_v1",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(PENDING)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        heartbeats = report.0,
        usage_rows = report.1,
        "v1 accounting data carried forward"
    );
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct Machine {
    id: String,
    num: i64,
    site_id: i64,
    department: String,
    power_profile_id: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct V1Heartbeat<D> {
    machine_id: String,
    seq: i64,
    sent_at_ms: i64,
    idle_input_ms: Option<i64>,
    session: Option<String>,
    cpu_ratio: Option<f64>,
    memory_ratio: Option<f64>,
    currency: String,
    #[sqlx(flatten)]
    values: V1Values<D>,
}

/// The nine value columns v1 had (the rest of v2's are zero for v1 data).
#[derive(Debug, sqlx::FromRow)]
struct V1Values<D> {
    observed_ms: i64,
    idle_ms: i64,
    unknown_ms: i64,
    energy_j: D,
    idle_energy_j: D,
    cost: D,
    idle_cost: D,
    co2_g: D,
    idle_co2_g: D,
}

const V1_VALUES: &str =
    "observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, cost, idle_cost, co2_g, idle_co2_g";

impl<D: Into<rust_decimal::Decimal>> From<V1Values<D>> for Increment {
    fn from(v: V1Values<D>) -> Self {
        Increment {
            observed_ms: v.observed_ms,
            idle_ms: v.idle_ms,
            unknown_ms: v.unknown_ms,
            energy_j: v.energy_j.into(),
            idle_energy_j: v.idle_energy_j.into(),
            cost: v.cost.into(),
            idle_cost: v.idle_cost.into(),
            co2_g: v.co2_g.into(),
            idle_co2_g: v.idle_co2_g.into(),
            ..Increment::default()
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct V1Rollup<D> {
    machine_id: String,
    at_ms: i64,
    currency: String,
    #[sqlx(flatten)]
    values: V1Values<D>,
}

/// Converts everything in `tx`; the numbers of heartbeats and usage rows written.
async fn convert<DB>(tx: &mut Transaction<'_, DB>) -> Result<(u64, u64), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i32>: Type<DB> + Encode<'q, DB>,
    for<'q> i32: Type<DB> + Encode<'q, DB>,
    for<'q> Option<f64>: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<String>: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    let machines: HashMap<String, Machine> = sqlx::query_as::<_, Machine>(
        "SELECT id, CAST(num AS BIGINT) AS num, site_id, department, power_profile_id
         FROM machines",
    )
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|m| (m.id.clone(), m))
    .collect();
    let mut hours: BTreeMap<UsageKey, Increment> = BTreeMap::new();
    let mut heartbeats = 0u64;
    let mut after: (String, i64) = (String::new(), i64::MIN);
    loop {
        let page: Vec<V1Heartbeat<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT machine_id, seq, sent_at_ms, idle_input_ms, session, cpu_ratio, memory_ratio,
                    currency, {V1_VALUES}
             FROM heartbeats_v1
             WHERE machine_id > $1 OR (machine_id = $1 AND seq > $2)
             ORDER BY machine_id, seq LIMIT $3"
        )))
        .bind(after.0.as_str())
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&mut **tx)
        .await?;
        let Some(last) = page.last() else { break };
        after = (last.machine_id.clone(), last.seq);
        let mut raw = Vec::with_capacity(page.len());
        for row in page {
            let Some(m) = machines.get(&row.machine_id) else {
                continue;
            };
            let hb = greenops_protocol::ValidHeartbeat {
                seq: 1,
                sent_at_ms: row.sent_at_ms,
                idle_ms: row.idle_input_ms,
                session: session_from_db(row.session.as_deref()),
                cpu_usage_ratio: row.cpu_ratio,
                memory_usage_ratio: row.memory_ratio,
                uptime_seconds: None,
                idle_source: None,
            };
            let values = Increment::from(row.values);
            raw.push((
                row.sent_at_ms,
                row.seq,
                m.num,
                row.idle_input_ms
                    .map(|ms| i32::try_from(ms).unwrap_or(i32::MAX)),
                i32::try_from(values.observed_ms).unwrap_or(i32::MAX),
                pack_state(&hb),
            ));
            if values.observed_ms > 0 {
                // v1 counted an interval at its end: the hour holding its last millisecond.
                let hour = (row.sent_at_ms - 1).div_euclid(HOUR_MS) * HOUR_MS;
                hours
                    .entry(key(m, hour, &row.currency))
                    .or_default()
                    .add(&values);
            }
        }
        heartbeats += raw.len() as u64;
        for chunk in raw.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO heartbeats (sent_at_ms, seq, machine, idle_ms, observed_ms, state) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.0)
                    .push_bind(r.1)
                    .push_bind(i32::try_from(r.2).unwrap_or(i32::MAX))
                    .push_bind(r.3)
                    .push_bind(r.4)
                    .push_bind(r.5);
            });
            q.build().persistent(false).execute(&mut **tx).await?;
        }
    }
    let mut days: BTreeMap<UsageKey, Increment> = BTreeMap::new();
    for (table, column, target) in [
        ("heartbeat_hours_v1", "hour_ms", &mut hours),
        ("heartbeat_days_v1", "day_ms", &mut days),
    ] {
        let rows: Vec<V1Rollup<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT machine_id, {column} AS at_ms, currency, {V1_VALUES} FROM {table}"
        )))
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            if let Some(m) = machines.get(&row.machine_id) {
                target
                    .entry(key(m, row.at_ms, &row.currency))
                    .or_default()
                    .add(&row.values.into());
            }
        }
    }
    let by_num: HashMap<i64, &Machine> = machines.values().map(|m| (m.num, m)).collect();
    let mut totals: BTreeMap<TotalsKey, Increment> = BTreeMap::new();
    for ((num, _, site, department, _, currency), values) in hours.iter().chain(days.iter()) {
        if let Some(m) = by_num.get(num) {
            totals
                .entry((m.id.clone(), *site, department.clone(), currency.clone()))
                .or_default()
                .add(values);
        }
    }
    let written = (hours.len() + days.len()) as u64;
    write_usage(tx, "usage_hours", "hour_ms", &hours).await?;
    write_usage(tx, "usage_days", "day_ms", &days).await?;
    let rows: Vec<(&TotalsKey, &Increment)> = totals.iter().collect();
    for chunk in rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<DB>::new(format!(
            "INSERT INTO machine_totals (machine_id, site_id, department, currency, {}) ",
            column_list("")
        ));
        q.push_values(
            chunk,
            |mut b, ((machine, site, department, currency), v)| {
                b.push_bind(machine.as_str())
                    .push_bind(*site)
                    .push_bind(department.as_str())
                    .push_bind(currency.as_str());
                for t in times(v) {
                    b.push_bind(t);
                }
                for d in decimals(v) {
                    b.push_bind(dec::<DB>(d));
                }
            },
        );
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok((heartbeats, written))
}

fn key(m: &Machine, at_ms: i64, currency: &str) -> UsageKey {
    (
        m.num,
        at_ms,
        m.site_id,
        m.department.clone(),
        m.power_profile_id,
        currency.to_string(),
    )
}

async fn write_usage<DB>(
    tx: &mut Transaction<'_, DB>,
    table: &str,
    column: &str,
    rows: &BTreeMap<UsageKey, Increment>,
) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB>,
{
    let rows: Vec<(&UsageKey, &Increment)> = rows.iter().collect();
    for chunk in rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<DB>::new(format!(
            "INSERT INTO {table} (machine, {column}, site_id, department, profile_id, currency,
                 {}) ",
            column_list("")
        ));
        q.push_values(
            chunk,
            |mut b, ((machine, at, site, department, profile, currency), v)| {
                b.push_bind(*machine)
                    .push_bind(*at)
                    .push_bind(*site)
                    .push_bind(department.as_str())
                    .push_bind(*profile)
                    .push_bind(currency.as_str());
                for t in times(v) {
                    b.push_bind(t);
                }
                for d in decimals(v) {
                    b.push_bind(dec::<DB>(d));
                }
            },
        );
        q.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}
