//! [`ReportStore`] on PostgreSQL: reports are summed in SQL (`NUMERIC` sums are exact), and
//! one collector at a time rolls old rows up.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::admin::{ReportQuery, ReportRow};
use crate::store::common::increments::sums;
use crate::store::common::reports as shared;
use crate::store::retention::{Rollup, RollupBatch};
use crate::store::{CostTotal, ReportStore, StoreError};

/// The transaction-scoped advisory lock that lets one collector at a time move rows.
const ROLLUP_LOCK: &str = "SELECT pg_try_advisory_xact_lock(7310452)";

#[async_trait]
impl ReportStore for PostgresStore {
    #[tracing::instrument(name = "store.energy_report", skip_all, fields(backend = "postgres"))]
    async fn energy_report(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        let sql = shared::report_sql(query, &sums("h."), " GROUP BY 1, 2");
        shared::energy_report(&self.pool, sql, query).await
    }

    #[tracing::instrument(name = "store.machine_costs", skip_all, fields(backend = "postgres"))]
    async fn machine_costs(&self, id: &str) -> Result<Vec<CostTotal>, StoreError> {
        shared::machine_costs(&self.pool, id).await
    }

    #[tracing::instrument(name = "store.roll_up_savings", skip_all, fields(backend = "postgres"))]
    async fn roll_up_savings(
        &self,
        floor_ms: i64,
        span_ms: i64,
        compute: &mut crate::store::admin::SavingsCompute<'_>,
    ) -> Result<crate::store::admin::SavingsBatch, StoreError> {
        crate::store::common::savings::roll_up(
            &self.pool,
            Some("SELECT pg_advisory_xact_lock(7310454)"),
            floor_ms,
            span_ms,
            compute,
        )
        .await
    }

    #[tracing::instrument(name = "store.savings_rows", skip_all, fields(backend = "postgres"))]
    async fn savings_rows(
        &self,
        from_hour: i64,
        to_hour: i64,
        n: i64,
    ) -> Result<crate::store::admin::SavingsRows, StoreError> {
        crate::store::common::savings::rows(&self.pool, from_hour, to_hour, n, true).await
    }

    #[tracing::instrument(name = "store.roll_up", skip_all, fields(backend = "postgres"))]
    async fn roll_up(
        &self,
        rollup: Rollup,
        before_ms: i64,
        limit: i64,
    ) -> Result<RollupBatch, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Another collector is moving rows: skip this batch.
        let got: bool = sqlx::query_scalar(ROLLUP_LOCK).fetch_one(&mut *tx).await?;
        if !got {
            return Ok(RollupBatch::default());
        }
        shared::roll_up(tx, rollup, before_ms, limit).await
    }
}
