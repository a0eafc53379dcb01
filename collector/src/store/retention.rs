//! Retention (DESIGN §5): raw heartbeats older than the raw retention are deleted (their
//! increments are already in the hourly usage rows); hourly usage rows older than the hourly
//! retention are summed into daily rows, added and deleted in the same transaction, so every
//! increment is in exactly one usage table and every sum stays exact. The moves themselves are
//! `ReportStore::roll_up`; on PostgreSQL one collector at a time makes them.

/// The value columns of usage and totals rows, in the order every statement lists them.
pub(crate) const INCREMENT_COLUMNS: [&str; 15] = [
    "observed_ms",
    "idle_ms",
    "unknown_ms",
    "after_hours_idle_ms",
    "gap_ms",
    "energy_j",
    "idle_energy_j",
    "avoidable_energy_j",
    "after_hours_idle_energy_j",
    "cost",
    "idle_cost",
    "avoidable_cost",
    "co2_g",
    "idle_co2_g",
    "avoidable_co2_g",
];

/// The five integer (time) columns lead [`INCREMENT_COLUMNS`].
pub(crate) const TIME_COLUMNS: usize = 5;

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupBatch {
    /// Rows read from the finer table (and deleted from it).
    pub moved: u64,
    /// Rollup rows written (created or added to).
    pub buckets: u64,
    /// False when another collector holds the retention lock (PostgreSQL): nothing was done.
    pub ran: bool,
}

/// Which move a batch makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    /// Raw heartbeats with `sent_at` before the cutoff are deleted.
    ForgetRaw,
    /// Hourly usage rows with an hour before the cutoff → daily rows.
    HoursToDays,
}

impl Rollup {
    /// Bucket length in milliseconds of the coarser table.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Rollup::ForgetRaw => 3_600_000,
            Rollup::HoursToDays => 86_400_000,
        }
    }
}
