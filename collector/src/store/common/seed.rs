//! [`SeedStore`] for both backends: its SQL is the same on PostgreSQL and SQLite.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, Type};

use super::{Dialect, SqlStore};
use crate::secrets::TokenHash;
use crate::store::seed::SeedImport;
use crate::store::{SeedStore, StoreError};

#[derive(Debug, sqlx::FromRow)]
struct SeedImportRow {
    machine_id: String,
    finished_at_ms: Option<i64>,
}

#[async_trait]
impl<S, DB> SeedStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Type<DB> + Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q str: Type<DB> + Encode<'q, DB> + ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Type<DB> + Encode<'q, DB>,
    for<'q> String: Type<DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Type<DB> + Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    #[tracing::instrument(name = "store.seed_import", skip_all, fields(backend = DB::LABEL))]
    async fn seed_import(&self, seed_id: &str) -> Result<Option<SeedImport>, StoreError> {
        let row: Option<SeedImportRow> = sqlx::query_as(
            "SELECT machine_id, finished_at_ms FROM seed_imports WHERE seed_id = $1",
        )
        .bind(seed_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| SeedImport {
            machine_id: r.machine_id,
            finished: r.finished_at_ms.is_some(),
        }))
    }

    #[tracing::instrument(name = "store.machine_id_by_key", skip_all, fields(backend = DB::LABEL))]
    async fn machine_id_by_key(&self, machine_key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM machines WHERE machine_key = $1")
                .bind(machine_key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    #[tracing::instrument(name = "store.start_seed_import", skip_all, fields(backend = DB::LABEL))]
    async fn start_seed_import(
        &self,
        seed_id: &str,
        machine_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO seed_imports (seed_id, machine_id, started_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (seed_id) DO NOTHING",
        )
        .bind(seed_id)
        .bind(machine_id)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.add_credential", skip_all, fields(backend = DB::LABEL))]
    async fn add_credential(
        &self,
        machine_id: &str,
        hash: &TokenHash,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms)
             VALUES ($1, $2, $3)",
        )
        .bind(hash.as_bytes())
        .bind(machine_id)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "store.finish_seed_import", skip_all, fields(backend = DB::LABEL))]
    async fn finish_seed_import(
        &self,
        seed_id: &str,
        machine_id: &str,
        tokens: &[TokenHash],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        // Until now only the import delivered for this machine: every active credential is
        // one of its own.
        super::ingest::revoke_credentials::<DB>(&mut tx, machine_id, now_ms).await?;
        for hash in tokens {
            sqlx::query(
                "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(hash.as_bytes())
            .bind(machine_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE seed_imports SET finished_at_ms = $2 WHERE seed_id = $1")
            .bind(seed_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
