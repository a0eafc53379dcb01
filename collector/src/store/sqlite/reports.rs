//! [`ReportStore`] on SQLite: SQLite has no exact decimal type, so a report reads one row per
//! increment and the sums are taken in Rust; rollups run under the write lock.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::admin::{ReportQuery, ReportRow};
use crate::store::common::reports as shared;
use crate::store::retention::{Rollup, RollupBatch};
use crate::store::{CostTotal, ReportStore, StoreError};

/// The increment columns of an energy report, one row per heartbeat or rollup row.
const REPORT_ROWS: &str = "h.observed_ms AS observed_ms, h.idle_ms AS idle_ms,
    h.unknown_ms AS unknown_ms, h.energy_j AS energy_j, h.idle_energy_j AS idle_energy_j,
    h.cost AS cost, h.idle_cost AS idle_cost, h.co2_g AS co2_g, h.idle_co2_g AS idle_co2_g";

#[async_trait]
impl ReportStore for SqliteStore {
    #[tracing::instrument(name = "store.energy_report", skip_all, fields(backend = "sqlite"))]
    async fn energy_report(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let sql = shared::report_sql(query, REPORT_ROWS, "");
        shared::energy_report(&self.pool, sql, query).await
    }

    #[tracing::instrument(name = "store.machine_costs", skip_all, fields(backend = "sqlite"))]
    async fn machine_costs(&self, id: &str) -> Result<Vec<CostTotal>, StoreError> {
        shared::machine_costs(&self.pool, id).await
    }

    #[tracing::instrument(name = "store.roll_up", skip_all, fields(backend = "sqlite"))]
    async fn roll_up(
        &self,
        rollup: Rollup,
        before_ms: i64,
        limit: i64,
    ) -> Result<RollupBatch, StoreError> {
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        shared::roll_up(tx, rollup, before_ms, limit).await
    }
}
