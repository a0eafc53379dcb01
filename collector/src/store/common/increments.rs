//! The fifteen value columns every usage and totals row carries, read and written the same way
//! everywhere (see `retention::INCREMENT_COLUMNS` for their order).

use rust_decimal::Decimal;

use crate::accounting::Increment;
use crate::store::retention::INCREMENT_COLUMNS;

/// The value columns of a usage, totals or report row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct IncrementRow<D> {
    pub observed_ms: i64,
    pub idle_ms: i64,
    pub unknown_ms: i64,
    pub after_hours_idle_ms: i64,
    pub gap_ms: i64,
    pub energy_j: D,
    pub idle_energy_j: D,
    pub avoidable_energy_j: D,
    pub after_hours_idle_energy_j: D,
    pub cost: D,
    pub idle_cost: D,
    pub avoidable_cost: D,
    pub co2_g: D,
    pub idle_co2_g: D,
    pub avoidable_co2_g: D,
}

impl<D: Into<Decimal>> From<IncrementRow<D>> for Increment {
    fn from(row: IncrementRow<D>) -> Self {
        Increment {
            observed_ms: row.observed_ms,
            idle_ms: row.idle_ms,
            unknown_ms: row.unknown_ms,
            after_hours_idle_ms: row.after_hours_idle_ms,
            gap_ms: row.gap_ms,
            energy_j: row.energy_j.into(),
            idle_energy_j: row.idle_energy_j.into(),
            avoidable_energy_j: row.avoidable_energy_j.into(),
            after_hours_idle_energy_j: row.after_hours_idle_energy_j.into(),
            cost: row.cost.into(),
            idle_cost: row.idle_cost.into(),
            avoidable_cost: row.avoidable_cost.into(),
            co2_g: row.co2_g.into(),
            idle_co2_g: row.idle_co2_g.into(),
            avoidable_co2_g: row.avoidable_co2_g.into(),
        }
    }
}

/// The five time columns of an increment, in column order.
pub(crate) fn times(i: &Increment) -> [i64; 5] {
    [
        i.observed_ms,
        i.idle_ms,
        i.unknown_ms,
        i.after_hours_idle_ms,
        i.gap_ms,
    ]
}

/// The ten decimal columns of an increment, in column order.
pub(crate) fn decimals(i: &Increment) -> [Decimal; 10] {
    [
        i.energy_j,
        i.idle_energy_j,
        i.avoidable_energy_j,
        i.after_hours_idle_energy_j,
        i.cost,
        i.idle_cost,
        i.avoidable_cost,
        i.co2_g,
        i.idle_co2_g,
        i.avoidable_co2_g,
    ]
}

/// `a, b, c` of the value columns, each prefixed with `prefix` (e.g. `"h."`).
pub(crate) fn column_list(prefix: &str) -> String {
    INCREMENT_COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `col = table.col + excluded.col, …`: the upsert that adds a row's values to a stored row.
pub(crate) fn add_on_conflict(table: &str) -> String {
    INCREMENT_COLUMNS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `col = excluded.col, …`: the upsert that replaces a stored row's values.
pub(crate) fn replace_on_conflict() -> String {
    INCREMENT_COLUMNS
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CAST(SUM(h.col) AS BIGINT) AS col` for times, `SUM(h.col) AS col` for decimals: exact sums
/// on PostgreSQL (NUMERIC), whose `SUM(bigint)` is NUMERIC, hence the casts back.
pub(crate) fn sums(prefix: &str) -> String {
    INCREMENT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < crate::store::retention::TIME_COLUMNS {
                format!("CAST(SUM({prefix}{c}) AS BIGINT) AS {c}")
            } else {
                format!("SUM({prefix}{c}) AS {c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
