//! Retention and rollups (DESIGN §5): raw heartbeats older than the raw retention are moved
//! into hourly rollups, hourly rollups older than the hourly retention into daily ones. Each
//! batch adds the rows to the coarser table and deletes them from the finer one in the same
//! transaction, so every increment is in exactly one table and sums over all three stay exact.
//! Implemented once for both backends by `retention_queries!` (`retention_sql.rs`).

use async_trait::async_trait;

use super::StoreError;

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

#[async_trait]
pub trait Retention: Send + Sync {
    /// Moves up to `limit` rows older than `before_ms` one level coarser.
    async fn roll_up(
        &self,
        rollup: Rollup,
        before_ms: i64,
        limit: i64,
    ) -> Result<RollupBatch, StoreError>;
}
