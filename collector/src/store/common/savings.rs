//! The what-if savings rollup on both backends (see `accounting::savings`): bringing it up to
//! date from the raw heartbeats, and reading the rows a what-if needs. Decimal columns are
//! summed in SQL on PostgreSQL and in Rust on SQLite (`grouped`); the rest is the same SQL.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::TryStreamExt;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Pool, QueryBuilder, Type};

use super::{Dialect, dec};
use crate::accounting::rates::Placement;
use crate::accounting::savings::{
    Before, Interval, Reach, ReachKey, Reaches, RowKey, Saved, Share, ShareKey, Tally, add_reach,
    day_of, reach_rows, share_rows, spans,
};
use crate::store::StoreError;
use crate::store::admin::{SavingsBatch, SavingsCompute as Compute, SavingsRows};

/// Rows per multi-row `INSERT` (SQLite allows 32 766 bound values).
const INSERT_CHUNK: usize = 1_000;

#[derive(sqlx::FromRow)]
struct Dirty {
    machine: i64,
    last_sent_at_ms: i64,
    through_ms: Option<i64>,
    last_end_ms: Option<i64>,
    last_idle_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct PlacementRow {
    num: i64,
    effective_from_ms: i64,
    site_id: i64,
    department: String,
    profile_id: i64,
}

#[derive(sqlx::FromRow)]
struct RawRow {
    machine: i64,
    end_ms: i64,
    observed_ms: i64,
    idle_ms: i64,
}

#[derive(sqlx::FromRow)]
struct ShareDbRow<D> {
    hour_ms: i64,
    site_id: i64,
    department: String,
    currency: String,
    after_hours: i64,
    kind: i64,
    n: i64,
    slept_ms: i64,
    energy_j: D,
    cost: D,
    co2_g: D,
    sleeps: i64,
}

#[derive(sqlx::FromRow)]
struct ReachDbRow {
    hour_ms: i64,
    machine: i64,
    site_id: i64,
    department: String,
    reach: i64,
    after_hours: i64,
}

fn internal(message: String) -> StoreError {
    StoreError::Internal(sqlx::Error::Protocol(message))
}

/// A stored share row's values.
fn share<D: Into<rust_decimal::Decimal>>(
    slept_ms: i64,
    energy_j: D,
    cost: D,
    co2_g: D,
    sleeps: i64,
) -> Share {
    Share {
        saved: Saved {
            slept_ms,
            energy_j: energy_j.into(),
            cost: cost.into(),
            co2_g: co2_g.into(),
        },
        sleeps,
    }
}

/// A stored reach row's values.
fn reach(always: i64, after_hours: i64) -> Result<Reach, StoreError> {
    Ok(Reach {
        always: small(always)?,
        after_hours: small(after_hours)?,
    })
}

fn small(v: i64) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| internal(format!("rollup value {v} out of range")))
}

/// One batch of [`ReportStore::roll_up_savings`](crate::store::ReportStore::roll_up_savings),
/// in one write transaction (`lock` first, if the backend needs one to keep two collectors
/// apart).
pub(crate) async fn roll_up<DB>(
    pool: &Pool<DB>,
    lock: Option<&str>,
    floor_ms: i64,
    span_ms: i64,
    compute: &mut Compute<'_>,
) -> Result<SavingsBatch, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> DB::Decimal: Encode<'q, DB>,
{
    let mut tx = pool.begin_with(DB::BEGIN_WRITE).await?;
    if let Some(lock) = lock {
        sqlx::query(sqlx::AssertSqlSafe(lock))
            .execute(&mut *tx)
            .await?;
    }
    let dirty: Vec<Dirty> = sqlx::query_as(
        "SELECT CAST(m.num AS BIGINT) AS machine, m.last_sent_at_ms AS last_sent_at_ms,
                c.through_ms AS through_ms, c.last_end_ms AS last_end_ms,
                c.last_idle_ms AS last_idle_ms
         FROM machines m LEFT JOIN savings_cursors c ON c.machine = m.num
         WHERE m.last_sent_at_ms IS NOT NULL AND m.last_sent_at_ms > COALESCE(c.through_ms, $1)",
    )
    .bind(floor_ms)
    .fetch_all(&mut *tx)
    .await?;
    let Some(low) = dirty
        .iter()
        .map(|d| d.through_ms.unwrap_or(floor_ms).max(floor_ms))
        .min()
    else {
        tx.commit().await?;
        return Ok(SavingsBatch::default());
    };
    let newest = dirty.iter().map(|d| d.last_sent_at_ms).max().unwrap_or(low);
    let high = low.saturating_add(span_ms.max(1)).min(newest);
    let mut machines: HashMap<i64, (Dirty, Vec<Placement>)> = dirty
        .into_iter()
        .map(|d| (d.machine, (d, Vec::new())))
        .collect();
    let placements: Vec<PlacementRow> = sqlx::query_as(
        "SELECT CAST(m.num AS BIGINT) AS num, p.effective_from_ms AS effective_from_ms,
                p.site_id AS site_id, p.department AS department, p.power_profile_id AS profile_id
         FROM machine_placements p JOIN machines m ON m.id = p.machine_id
         ORDER BY m.num, p.effective_from_ms",
    )
    .fetch_all(&mut *tx)
    .await?;
    for p in placements {
        if let Some((_, list)) = machines.get_mut(&p.num) {
            list.push(Placement {
                effective_from_ms: p.effective_from_ms,
                site_id: p.site_id,
                department: p.department,
                profile_id: p.profile_id,
            });
        }
    }
    // Where each machine's last recorded interval is, as this batch goes.
    let mut last: HashMap<i64, Option<Before>> = machines
        .iter()
        .map(|(num, (d, _))| {
            let before = d
                .last_end_ms
                .zip(d.last_idle_ms)
                .map(|(end_ms, idle_ms)| Before { end_ms, idle_ms });
            (*num, before)
        })
        .collect();
    let mut tally = Tally::default();
    let mut intervals = 0u64;
    {
        let mut rows = sqlx::query_as::<_, RawRow>(
            "SELECT CAST(machine AS BIGINT) AS machine, sent_at_ms AS end_ms,
                    CAST(observed_ms AS BIGINT) AS observed_ms, CAST(idle_ms AS BIGINT) AS idle_ms
             FROM heartbeats
             WHERE sent_at_ms > $1 AND sent_at_ms <= $2 AND observed_ms > 0 AND idle_ms > 60000
             ORDER BY sent_at_ms",
        )
        .bind(low)
        .bind(high)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let Some((d, placements)) = machines.get(&row.machine) else {
                continue;
            };
            let through = d.through_ms.unwrap_or(floor_ms);
            if row.end_ms <= through || row.end_ms > d.last_sent_at_ms {
                continue;
            }
            let iv = Interval {
                end_ms: row.end_ms,
                observed_ms: row.observed_ms,
                idle_ms: row.idle_ms,
            };
            let before = last.get(&row.machine).copied().flatten();
            compute(row.machine, placements, before, &iv, &mut tally)
                .map_err(|e| internal(format!("savings of machine {}: {e}", row.machine)))?;
            last.insert(
                row.machine,
                Some(Before {
                    end_ms: iv.end_ms,
                    idle_ms: iv.idle_ms,
                }),
            );
            intervals += 1;
        }
    }
    // Both levels, the days from the same intervals.
    let days = tally.days();
    write_level(&mut tx, &HOURS, tally).await?;
    write_level(&mut tx, &DAYS, days).await?;
    let mut more = false;
    for (num, (d, _)) in &machines {
        let through = d.last_sent_at_ms.min(high);
        more |= through < d.last_sent_at_ms;
        let before = last.get(num).copied().flatten();
        sqlx::query(
            "INSERT INTO savings_cursors (machine, through_ms, last_end_ms, last_idle_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (machine) DO UPDATE SET through_ms = excluded.through_ms,
                 last_end_ms = excluded.last_end_ms, last_idle_ms = excluded.last_idle_ms",
        )
        .bind(*num)
        .bind(through)
        .bind(before.map(|b| b.end_ms))
        .bind(before.map(|b| b.idle_ms))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(SavingsBatch {
        machines: machines.len() as u64,
        intervals,
        more,
    })
}

/// One level of the rollup: its share table, reach table and the column their periods are
/// kept under.
struct Level {
    shares: &'static str,
    reach: &'static str,
    at: &'static str,
}

const HOURS: Level = Level {
    shares: "savings_hours",
    reach: "savings_reach",
    at: "hour_ms",
};

const DAYS: Level = Level {
    shares: "savings_days",
    reach: "savings_reach_days",
    at: "day_ms",
};

/// Adds `tally` to the stored rows of `level`: the rows of every period it touches are read,
/// added to in Rust (exact on both backends) and written back.
async fn write_level<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    level: &Level,
    mut tally: Tally,
) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> DB::Decimal: Encode<'q, DB>,
{
    let Level { shares, reach, at } = level;
    let periods: BTreeSet<i64> = tally
        .shares
        .keys()
        .map(|k| k.hour_ms)
        .chain(tally.reach.keys().map(|k| k.hour_ms))
        .collect();
    let mut stored = Tally::default();
    for period in &periods {
        let rows: Vec<ShareDbRow<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {at} AS hour_ms, site_id, department, currency, after_hours, kind, n,
                    slept_ms, energy_j, cost, co2_g, sleeps
             FROM {shares} WHERE {at} = $1"
        )))
        .bind(*period)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            stored.shares.insert(
                ShareKey {
                    hour_ms: r.hour_ms,
                    site_id: r.site_id,
                    department: r.department,
                    currency: r.currency,
                    after_hours: r.after_hours != 0,
                    kind: i16::try_from(r.kind).unwrap_or(i16::MAX),
                    n: small(r.n)?,
                },
                share(r.slept_ms, r.energy_j, r.cost, r.co2_g, r.sleeps),
            );
        }
        let rows: Vec<ReachDbRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {at} AS hour_ms, machine, site_id, department, reach, after_hours
             FROM {reach} WHERE {at} = $1"
        )))
        .bind(*period)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            stored.reach.insert(
                ReachKey {
                    hour_ms: r.hour_ms,
                    machine: r.machine,
                    site_id: r.site_id,
                    department: r.department,
                },
                self::reach(r.reach, r.after_hours)?,
            );
        }
        for table in [shares, reach] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE {at} = $1"
            )))
            .bind(*period)
            .execute(&mut **tx)
            .await?;
        }
    }
    tally.merge(stored);
    let share_list: Vec<(ShareKey, Share)> = tally.shares.into_iter().collect();
    for chunk in share_list.chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<DB>::new(format!(
            "INSERT INTO {shares} ({at}, site_id, department, currency, after_hours, kind,
                 n, slept_ms, energy_j, cost, co2_g, sleeps) "
        ));
        q.push_values(chunk, |mut b, (k, s)| {
            b.push_bind(k.hour_ms)
                .push_bind(k.site_id)
                .push_bind(k.department.clone())
                .push_bind(k.currency.clone())
                .push_bind(i64::from(k.after_hours))
                .push_bind(i64::from(k.kind))
                .push_bind(i64::from(k.n))
                .push_bind(s.saved.slept_ms)
                .push_bind(dec::<DB>(s.saved.energy_j.normalize()))
                .push_bind(dec::<DB>(s.saved.cost.normalize()))
                .push_bind(dec::<DB>(s.saved.co2_g.normalize()))
                .push_bind(s.sleeps);
        });
        q.build().execute(&mut **tx).await?;
    }
    let reach_list: Vec<(ReachKey, Reach)> = tally.reach.into_iter().collect();
    for chunk in reach_list.chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<DB>::new(format!(
            "INSERT INTO {reach} ({at}, machine, site_id, department, reach, after_hours) "
        ));
        q.push_values(chunk, |mut b, (k, r)| {
            b.push_bind(k.hour_ms)
                .push_bind(k.machine)
                .push_bind(k.site_id)
                .push_bind(k.department.clone())
                .push_bind(i64::from(r.always))
                .push_bind(i64::from(r.after_hours));
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// See [`ReportStore::savings_rows`](crate::store::ReportStore::savings_rows). `grouped`: the
/// backend sums decimals exactly in SQL (PostgreSQL); otherwise every row is read and summed
/// here.
pub(crate) async fn rows<DB>(
    pool: &Pool<DB>,
    from_hour: i64,
    to_hour: i64,
    n: i64,
    grouped: bool,
) -> Result<SavingsRows, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
{
    #[derive(sqlx::FromRow)]
    struct Summed<D> {
        site_id: i64,
        department: String,
        currency: String,
        after_hours: i64,
        kind: i64,
        slept_ms: i64,
        energy_j: D,
        cost: D,
        co2_g: D,
        sleeps: i64,
    }
    #[derive(sqlx::FromRow)]
    struct Reached {
        machine: i64,
        site_id: i64,
        department: String,
        reach: i64,
        after_hours: i64,
    }
    let (columns, group) = if grouped {
        (
            "CAST(SUM(slept_ms) AS BIGINT) AS slept_ms, SUM(energy_j) AS energy_j,
             SUM(cost) AS cost, SUM(co2_g) AS co2_g, CAST(SUM(sleeps) AS BIGINT) AS sleeps",
            " GROUP BY site_id, department, currency, after_hours, kind",
        )
    } else {
        ("slept_ms, energy_j, cost, co2_g, sleeps", "")
    };
    let spans = spans(from_hour, to_hour);
    let parts = spans
        .hours
        .iter()
        .map(|span| (&HOURS, *span))
        .chain(spans.days.map(|span| (&DAYS, span)));
    let mut conn = pool.acquire().await?;
    let mut shares: BTreeMap<RowKey, Share> = BTreeMap::new();
    let mut reaches = Reaches::new();
    for (
        Level {
            shares: table,
            reach,
            at,
        },
        (from, to),
    ) in parts
    {
        let found: Vec<Summed<DB::Decimal>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT site_id, department, currency, after_hours, kind, {columns}
             FROM {table}
             WHERE {at} >= $1 AND {at} < $2
               AND ((kind = 0 AND n >= $3) OR (kind = 1 AND n = $3) OR (kind >= 2 AND n <= $3)){group}"
        )))
        .bind(from)
        .bind(to)
        .bind(n)
        .fetch_all(&mut *conn)
        .await?;
        for r in found {
            shares
                .entry((
                    r.site_id,
                    r.department,
                    r.currency,
                    r.after_hours != 0,
                    i16::try_from(r.kind).unwrap_or(i16::MAX),
                ))
                .or_default()
                .add(&share(r.slept_ms, r.energy_j, r.cost, r.co2_g, r.sleeps));
        }
        let reached: Vec<Reached> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT machine, site_id, department, MAX(reach) AS reach,
                    MAX(after_hours) AS after_hours
             FROM {reach}
             WHERE {at} >= $1 AND {at} < $2 AND reach >= $3
             GROUP BY machine, site_id, department"
        )))
        .bind(from)
        .bind(to)
        .bind(n)
        .fetch_all(&mut *conn)
        .await?;
        for r in reached {
            let value = self::reach(r.reach, r.after_hours)?;
            add_reach(&mut reaches, r.machine, r.site_id, &r.department, value);
        }
    }
    let departments: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT department FROM machine_placements")
            .fetch_all(&mut *conn)
            .await?;
    Ok(SavingsRows {
        shares: share_rows(shares),
        reach: reach_rows(reaches),
        departments: departments.into_iter().collect(),
    })
}

/// Deletes the rollup of hours before `before_ms` and of days that ended by then (with the
/// raw heartbeats it came from).
pub(crate) async fn forget<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    before_ms: i64,
) -> Result<(), StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB>,
{
    // A day is kept until it has wholly passed: a window that holds it whole reads it from
    // its day rows, which still count the hours before `before_ms`.
    let day = day_of(before_ms);
    for (table, at, before) in [
        (HOURS.shares, HOURS.at, before_ms),
        (HOURS.reach, HOURS.at, before_ms),
        (DAYS.shares, DAYS.at, day),
        (DAYS.reach, DAYS.at, day),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE {at} < $1"
        )))
        .bind(before)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
