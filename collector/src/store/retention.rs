//! Retention and rollups (DESIGN §5): raw heartbeats older than the raw retention are moved
//! into hourly rollups, hourly rollups older than the hourly retention into daily ones. Each
//! batch adds the rows to the coarser table and deletes them from the finer one in the same
//! transaction, so every increment is in exactly one table and sums over all three stay exact.
//! The move itself is `ReportStore::roll_up`: the bucketing and summing are shared
//! (`common/reports.rs`), each backend opens the transaction (and, on PostgreSQL, takes the
//! lock that lets one collector at a time do it).

/// The summed columns of a rollup row, in the order they are inserted.
pub(crate) const ROLLUP_SUMS: &str = "observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, \
                                      cost, idle_cost, co2_g, idle_co2_g";

/// The `ON CONFLICT … DO UPDATE SET` assignments that replace every sum of a rollup row.
pub(crate) const ROLLUP_REPLACE: &str = "observed_ms = excluded.observed_ms, \
    idle_ms = excluded.idle_ms, unknown_ms = excluded.unknown_ms, \
    energy_j = excluded.energy_j, idle_energy_j = excluded.idle_energy_j, \
    cost = excluded.cost, idle_cost = excluded.idle_cost, \
    co2_g = excluded.co2_g, idle_co2_g = excluded.idle_co2_g";

/// What one batch moved.
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
    /// Raw heartbeats with `sent_at` before the cutoff → hourly rows.
    RawToHours,
    /// Hourly rows with an hour before the cutoff → daily rows.
    HoursToDays,
}

impl Rollup {
    /// Bucket length in milliseconds.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Rollup::RawToHours => 3_600_000,
            Rollup::HoursToDays => 86_400_000,
        }
    }
}
