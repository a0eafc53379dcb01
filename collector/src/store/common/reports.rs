//! The parts of [`ReportStore`](crate::store::ReportStore) that both backends share: money
//! totals, the frame of an energy report and the summing of its rows, and retention. Each
//! backend says how its report columns are summed (in SQL on PostgreSQL, in Rust on SQLite)
//! and opens the retention transaction.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, Transaction, Type};

use super::increments::{IncrementRow, column_list, decimals, replace_on_conflict, times};
use super::{Dialect, RowsAffected, dec};
use crate::accounting::Increment;
use crate::store::admin::{Attribution, Grouping, ReportQuery, ReportRow};
use crate::store::retention::{Rollup, RollupBatch};
use crate::store::{CostTotal, StoreError};

/// Money totals of one machine per currency.
pub(crate) async fn machine_costs<DB>(
    pool: &Pool<DB>,
    id: &str,
) -> Result<Vec<CostTotal>, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    #[derive(sqlx::FromRow)]
    struct Row<D> {
        currency: String,
        #[sqlx(flatten)]
        values: IncrementRow<D>,
    }
    let rows: Vec<Row<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT currency, {} FROM machine_totals WHERE machine_id = $1",
        column_list("")
    )))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut sums: BTreeMap<String, CostTotal> = BTreeMap::new();
    for row in rows {
        let v = Increment::from(row.values);
        let c = sums
            .entry(row.currency.clone())
            .or_insert_with(|| CostTotal {
                currency: row.currency,
                ..CostTotal::default()
            });
        c.cost += v.cost;
        c.idle_cost += v.idle_cost;
        c.avoidable_cost += v.avoidable_cost;
    }
    Ok(sums.into_values().collect())
}

/// The SQL of an energy report: `columns` are the value columns as the backend sums them
/// over the `h` rows, `group_by` its `GROUP BY` clause, if any. Binds `$1` from, `$2` to and,
/// for one machine, `$3` its id.
///
/// The rows are the hourly usage rows and the daily ones of older data: every increment is in
/// exactly one of them (see `retention.rs`). A row counts when its hour (or day) starts in the
/// window.
pub(crate) fn report_sql(query: &ReportQuery, columns: &str, group_by: &str) -> String {
    let (site, department) = match query.attribution {
        Attribution::Incurred => ("h.site_id", "h.department"),
        Attribution::Current => ("m.site_id", "m.department"),
    };
    let key = match query.group {
        Grouping::Machine => "m.id".to_string(),
        Grouping::Site => "s.name".to_string(),
        Grouping::Department => department.to_string(),
        Grouping::Step { step_ms } => {
            format!("CAST((h.at_ms - $1) / {} AS TEXT)", step_ms.max(1))
        }
        // Integers formatted here, never text from a request.
        Grouping::Periods { today_ms, week_ms } => format!(
            "CASE WHEN h.at_ms >= {today_ms} THEN '0' \
             WHEN h.at_ms >= {week_ms} THEN '1' ELSE '2' END"
        ),
    };
    let machine = if query.machine_id.is_some() {
        " AND m.id = $3"
    } else {
        ""
    };
    let values = column_list("");
    format!(
        "SELECT {key} AS key, h.currency AS currency, {columns}
         FROM (SELECT machine, hour_ms AS at_ms, site_id, department, currency, {values}
               FROM usage_hours
               UNION ALL
               SELECT machine, day_ms, site_id, department, currency, {values}
               FROM usage_days) h
         JOIN machines m ON m.num = h.machine
         JOIN sites s ON s.id = {site}
         WHERE h.at_ms >= $1 AND h.at_ms < $2{machine}{group_by}"
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

/// One retention step in `tx` (which the backend opened, holding whatever lock it needs),
/// committed: raw heartbeats before `before_ms` are deleted, or hourly usage rows before it
/// are added to daily rows and deleted. Decimal sums are taken in Rust (SQLite stores them as
/// TEXT), then written back whole.
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
    if rollup == Rollup::ForgetRaw {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM heartbeats WHERE {id} IN
                 (SELECT {id} FROM heartbeats WHERE sent_at_ms < $1 LIMIT $2)",
            id = DB::ROW_ID
        )))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        // The what-if rollup of those hours goes with them.
        super::savings::forget(&mut tx, before_ms).await?;
        tx.commit().await?;
        return Ok(RollupBatch {
            moved: done.rows_affected(),
            buckets: 0,
            ran: true,
        });
    }
    #[derive(sqlx::FromRow)]
    struct Source<D> {
        machine: i64,
        at_ms: i64,
        site_id: i64,
        department: String,
        profile_id: i64,
        currency: String,
        #[sqlx(flatten)]
        increment: IncrementRow<D>,
    }
    type Key = (i64, i64, i64, String, i64, String);
    let values = column_list("");
    let rows: Vec<Source<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(machine AS BIGINT) AS machine, hour_ms AS at_ms,
                CAST(site_id AS BIGINT) AS site_id, department,
                CAST(profile_id AS BIGINT) AS profile_id, currency, {values}
         FROM usage_hours WHERE hour_ms < $1 LIMIT $2"
    )))
    .bind(before_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let day_ms = rollup.bucket_ms();
    let mut sums: BTreeMap<Key, Increment> = BTreeMap::new();
    let mut moved: Vec<Key> = Vec::with_capacity(rows.len());
    for row in rows {
        let day = row.at_ms - row.at_ms.rem_euclid(day_ms);
        let attribution = (
            row.site_id,
            row.department.clone(),
            row.profile_id,
            row.currency.clone(),
        );
        sums.entry((
            row.machine,
            day,
            attribution.0,
            attribution.1.clone(),
            attribution.2,
            attribution.3.clone(),
        ))
        .or_default()
        .add(&row.increment.into());
        moved.push((
            row.machine,
            row.at_ms,
            attribution.0,
            attribution.1,
            attribution.2,
            attribution.3,
        ));
    }
    let key_sql = "machine = $1 AND day_ms = $2 AND site_id = $3 AND department = $4
                   AND profile_id = $5 AND currency = $6";
    for ((machine, day, site, department, profile, currency), add) in &sums {
        let existing: Option<IncrementRow<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {values} FROM usage_days WHERE {key_sql}"),
        ))
        .bind(*machine)
        .bind(*day)
        .bind(*site)
        .bind(department.as_str())
        .bind(*profile)
        .bind(currency.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let mut total = existing.map(Increment::from).unwrap_or_default();
        total.add(add);
        let placeholders = (7..22)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO usage_days (machine, day_ms, site_id, department, profile_id, currency,
                 {values})
             VALUES ($1, $2, $3, $4, $5, $6, {placeholders})
             ON CONFLICT (machine, day_ms, site_id, department, profile_id, currency)
             DO UPDATE SET {}",
            replace_on_conflict()
        )))
        .bind(*machine)
        .bind(*day)
        .bind(*site)
        .bind(department.as_str())
        .bind(*profile)
        .bind(currency.as_str());
        for v in times(&total) {
            insert = insert.bind(v);
        }
        for v in decimals(&total) {
            insert = insert.bind(dec::<DB>(v));
        }
        insert.execute(&mut *tx).await?;
    }
    for (machine, hour, site, department, profile, currency) in &moved {
        sqlx::query(
            "DELETE FROM usage_hours WHERE machine = $1 AND hour_ms = $2 AND site_id = $3
                 AND department = $4 AND profile_id = $5 AND currency = $6",
        )
        .bind(*machine)
        .bind(*hour)
        .bind(*site)
        .bind(department.as_str())
        .bind(*profile)
        .bind(currency.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(RollupBatch {
        moved: moved.len() as u64,
        buckets: sums.len() as u64,
        ran: true,
    })
}
