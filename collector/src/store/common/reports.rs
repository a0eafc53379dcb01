//! The parts of [`ReportStore`](crate::store::ReportStore) that both backends share: money
//! totals, the frame of an energy report and the summing of its rows, and the rollup move.
//! Each backend says how its report columns are summed (in SQL on PostgreSQL, in Rust on
//! SQLite) and opens the rollup's transaction.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Transaction, Type};

use super::{CostRow, Dialect, dec};
use crate::accounting::Increment;
use crate::store::admin::{Grouping, ReportQuery, ReportRow};
use crate::store::retention::{ROLLUP_REPLACE, ROLLUP_SUMS, Rollup, RollupBatch};
use crate::store::{CostTotal, StoreError};

/// The increments (time, energy, money, CO₂) of a heartbeat, a rollup row or a report row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IncrementRow<D> {
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

impl<D: Into<Decimal>> From<IncrementRow<D>> for Increment {
    fn from(row: IncrementRow<D>) -> Self {
        Increment {
            observed_ms: row.observed_ms,
            idle_ms: row.idle_ms,
            unknown_ms: row.unknown_ms,
            energy_j: row.energy_j.into(),
            idle_energy_j: row.idle_energy_j.into(),
            cost: row.cost.into(),
            idle_cost: row.idle_cost.into(),
            co2_g: row.co2_g.into(),
            idle_co2_g: row.idle_co2_g.into(),
        }
    }
}

/// Money totals of one machine per currency.
pub(crate) async fn machine_costs<DB>(
    pool: &Pool<DB>,
    id: &str,
) -> Result<Vec<CostTotal>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    let rows: Vec<CostRow<DB::Decimal>> = sqlx::query_as(
        "SELECT currency, cost, idle_cost FROM machine_cost_totals
         WHERE machine_id = $1
         ORDER BY currency",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(CostTotal::from).collect())
}

/// The SQL of an energy report: `columns` are the nine increment columns (`observed_ms` …
/// `idle_co2_g`) as the backend sums them over the `h` rows, `group_by` its `GROUP BY`
/// clause, if any. Binds `$1` from, `$2` to and, for one machine, `$3` its id.
///
/// The rows are the raw heartbeats and the hourly and daily rollups of older ones: every
/// increment is in exactly one of them (see `retention.rs`).
pub(crate) fn report_sql(query: &ReportQuery, columns: &str, group_by: &str) -> String {
    let key = match query.group {
        Grouping::Machine => "h.machine_id".to_string(),
        Grouping::Site => "s.name".to_string(),
        Grouping::Department => "m.department".to_string(),
        Grouping::Step { step_ms } => {
            format!("CAST((h.sent_at_ms - $1) / {} AS TEXT)", step_ms.max(1))
        }
        // Integers formatted here, never text from a request.
        Grouping::Periods { today_ms, week_ms } => format!(
            "CASE WHEN h.sent_at_ms >= {today_ms} THEN '0' \
             WHEN h.sent_at_ms >= {week_ms} THEN '1' ELSE '2' END"
        ),
    };
    let machine = if query.machine_id.is_some() {
        " AND h.machine_id = $3"
    } else {
        ""
    };
    let sums = format!("currency, {ROLLUP_SUMS}");
    format!(
        "SELECT {key} AS key, h.currency AS currency, {columns}
         FROM (SELECT machine_id, sent_at_ms, {sums} FROM heartbeats WHERE observed_ms > 0
               UNION ALL SELECT machine_id, hour_ms, {sums} FROM heartbeat_hours
               UNION ALL SELECT machine_id, day_ms, {sums} FROM heartbeat_days) h
         JOIN machines m ON m.id = h.machine_id
         JOIN sites s ON s.id = m.site_id
         WHERE h.sent_at_ms >= $1 AND h.sent_at_ms < $2{machine}
           AND m.retired_at_ms IS NULL{group_by}"
    )
}

/// Runs a [`report_sql`] statement and adds its rows up exactly, per key and currency.
pub(crate) async fn energy_report<DB>(
    pool: &Pool<DB>,
    sql: String,
    query: &ReportQuery,
) -> Result<Vec<ReportRow>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
{
    #[derive(sqlx::FromRow)]
    struct Sums<D> {
        key: String,
        currency: String,
        #[sqlx(flatten)]
        totals: IncrementRow<D>,
    }
    let mut q = sqlx::query_as::<_, Sums<DB::Decimal>>(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(query.from_ms)
        .bind(query.to_ms);
    if let Some(id) = &query.machine_id {
        q = q.bind(id.clone());
    }
    let mut sums: BTreeMap<(String, String), Increment> = BTreeMap::new();
    let mut rows = q.fetch(pool);
    while let Some(row) = rows.try_next().await? {
        sums.entry((row.key, row.currency))
            .or_default()
            .add(&row.totals.into());
    }
    Ok(sums
        .into_iter()
        .map(|((key, currency), totals)| ReportRow {
            key,
            currency,
            totals,
        })
        .collect())
}

/// Moves up to `limit` rows older than `before_ms` one level coarser, in `tx` (which the
/// backend opened, holding whatever lock it needs), and commits. Decimal sums are taken in
/// Rust (SQLite stores them as TEXT), then written back whole.
pub(crate) async fn roll_up<DB>(
    mut tx: Transaction<'_, DB>,
    rollup: Rollup,
    before_ms: i64,
    limit: i64,
) -> Result<RollupBatch, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    #[derive(sqlx::FromRow)]
    struct Source<D> {
        machine_id: String,
        row_seq: i64,
        at_ms: i64,
        currency: String,
        #[sqlx(flatten)]
        increment: IncrementRow<D>,
    }
    // Table names and columns below are constants, never request text.
    let (source, time, row_seq, target, bucket_col) = match rollup {
        Rollup::RawToHours => (
            "heartbeats",
            "sent_at_ms",
            "seq",
            "heartbeat_hours",
            "hour_ms",
        ),
        Rollup::HoursToDays => (
            "heartbeat_hours",
            "hour_ms",
            "CAST(0 AS BIGINT)",
            "heartbeat_days",
            "day_ms",
        ),
    };
    let bucket_ms = rollup.bucket_ms();
    let rows: Vec<Source<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT machine_id, {row_seq} AS row_seq, {time} AS at_ms, currency, {ROLLUP_SUMS}
         FROM {source}
         WHERE {time} < $1
         LIMIT $2"
    )))
    .bind(before_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut sums: BTreeMap<(String, i64, String), Increment> = BTreeMap::new();
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let bucket = row.at_ms - row.at_ms.rem_euclid(bucket_ms);
        sums.entry((row.machine_id.clone(), bucket, row.currency.clone()))
            .or_default()
            .add(&row.increment.into());
        keys.push((row.machine_id, row.row_seq, row.at_ms, row.currency));
    }
    for ((machine, bucket, currency), add) in &sums {
        let existing: Option<IncrementRow<DB::Decimal>> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ROLLUP_SUMS} FROM {target}
                 WHERE machine_id = $1 AND {bucket_col} = $2 AND currency = $3"
            )))
            .bind(machine.as_str())
            .bind(*bucket)
            .bind(currency.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let mut total = existing.map(Increment::from).unwrap_or_default();
        total.add(add);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {target} (machine_id, {bucket_col}, currency, {ROLLUP_SUMS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (machine_id, {bucket_col}, currency) DO UPDATE SET {ROLLUP_REPLACE}"
        )))
        .bind(machine.as_str())
        .bind(*bucket)
        .bind(currency.as_str())
        .bind(total.observed_ms)
        .bind(total.idle_ms)
        .bind(total.unknown_ms)
        .bind(dec::<DB>(total.energy_j))
        .bind(dec::<DB>(total.idle_energy_j))
        .bind(dec::<DB>(total.cost))
        .bind(dec::<DB>(total.idle_cost))
        .bind(dec::<DB>(total.co2_g))
        .bind(dec::<DB>(total.idle_co2_g))
        .execute(&mut *tx)
        .await?;
    }
    for (machine, seq, at, currency) in &keys {
        match rollup {
            Rollup::RawToHours => {
                sqlx::query("DELETE FROM heartbeats WHERE machine_id = $1 AND seq = $2")
                    .bind(machine.as_str())
                    .bind(*seq)
                    .execute(&mut *tx)
                    .await?;
            }
            Rollup::HoursToDays => {
                sqlx::query(
                    "DELETE FROM heartbeat_hours
                     WHERE machine_id = $1 AND hour_ms = $2 AND currency = $3",
                )
                .bind(machine.as_str())
                .bind(*at)
                .bind(currency.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(RollupBatch {
        moved: keys.len() as u64,
        buckets: sums.len() as u64,
        ran: true,
    })
}
