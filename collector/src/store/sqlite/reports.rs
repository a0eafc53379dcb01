//! [`ReportStore`] on SQLite: SQLite has no exact decimal type, so a report reads one row per
//! increment and the sums are taken in Rust; rollups run under the write lock.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::admin::{ReportQuery, ReportRow};
use crate::store::common::increments::column_list;
use crate::store::common::reports as shared;
use crate::store::retention::{Rollup, RollupBatch};
use crate::store::{CostTotal, ReportStore, StoreError};

#[async_trait]
impl ReportStore for SqliteStore {
    #[tracing::instrument(name = "store.energy_report", skip_all, fields(backend = "sqlite"))]
    async fn energy_report(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let sql = shared::report_sql(query, &column_list("h."), "");
        shared::energy_report(&self.pool, sql, query).await
    }

    #[tracing::instrument(name = "store.machine_costs", skip_all, fields(backend = "sqlite"))]
    async fn machine_costs(&self, id: &str) -> Result<Vec<CostTotal>, StoreError> {
        shared::machine_costs(&self.pool, id).await
    }

    #[tracing::instrument(name = "store.roll_up_savings", skip_all, fields(backend = "sqlite"))]
    async fn roll_up_savings(
        &self,
        floor_ms: i64,
        span_ms: i64,
        compute: &mut crate::store::admin::SavingsCompute<'_>,
    ) -> Result<crate::store::admin::SavingsBatch, StoreError> {
        crate::store::common::savings::roll_up(&self.pool, None, floor_ms, span_ms, compute).await
    }

    #[tracing::instrument(name = "store.savings_rows", skip_all, fields(backend = "sqlite"))]
    async fn savings_rows(
        &self,
        from_hour: i64,
        to_hour: i64,
        n: i64,
    ) -> Result<crate::store::admin::SavingsRows, StoreError> {
        crate::store::common::savings::rows(&self.pool, from_hour, to_hour, n, false).await
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
