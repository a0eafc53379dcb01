//! SQL for [`Retention`](super::retention::Retention), identical on both backends (see
//! `operators_sql.rs` for the `$n` rule). Instantiated in each backend's `ops` module after
//! `operator_queries!` (whose `StoreError` and `Row` imports it uses). Decimal sums are
//! taken in Rust (SQLite stores them as TEXT), then written back whole.

macro_rules! retention_queries {
    ($store:ty, $row:ty, $dec:path, $enc:path, $begin:expr, $lock:expr) => {
        /// The increments (time, energy, money, CO₂) of a heartbeat or rollup row.
        fn increment_of(row: &$row) -> Result<$crate::accounting::Increment, sqlx::Error> {
            Ok($crate::accounting::Increment {
                observed_ms: row.try_get("observed_ms")?,
                idle_ms: row.try_get("idle_ms")?,
                unknown_ms: row.try_get("unknown_ms")?,
                energy_j: $dec(row, "energy_j")?,
                idle_energy_j: $dec(row, "idle_energy_j")?,
                cost: $dec(row, "cost")?,
                idle_cost: $dec(row, "idle_cost")?,
                co2_g: $dec(row, "co2_g")?,
                idle_co2_g: $dec(row, "idle_co2_g")?,
            })
        }

        use $crate::store::retention::{ROLLUP_REPLACE, ROLLUP_SUMS};

        #[async_trait::async_trait]
        impl $crate::store::retention::Retention for $store {
            async fn roll_up(
                &self,
                rollup: $crate::store::retention::Rollup,
                before_ms: i64,
                limit: i64,
            ) -> Result<$crate::store::retention::RollupBatch, StoreError> {
                use $crate::store::retention::{Rollup, RollupBatch};
                // Table names and columns below are constants, never request text.
                let (source, time, row_seq, target, bucket_col) = match rollup {
                    Rollup::RawToHours => (
                        "heartbeats",
                        "sent_at_ms",
                        "seq",
                        "heartbeat_hours",
                        "hour_ms",
                    ),
                    Rollup::HoursToDays => (
                        "heartbeat_hours",
                        "hour_ms",
                        "CAST(0 AS BIGINT)",
                        "heartbeat_days",
                        "day_ms",
                    ),
                };
                let bucket_ms = rollup.bucket_ms();
                let mut tx = self.pool.begin_with($begin).await?;
                let lock: Option<&'static str> = $lock;
                if let Some(lock) = lock {
                    let got: bool = sqlx::query_scalar(lock).fetch_one(&mut *tx).await?;
                    if !got {
                        return Ok(RollupBatch::default());
                    }
                }
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT machine_id, {row_seq} AS row_seq, {time} AS at_ms, currency, \
                     {ROLLUP_SUMS} FROM {source} WHERE {time} < $1 LIMIT $2"
                )))
                .bind(before_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut sums: std::collections::BTreeMap<
                    (String, i64, String),
                    $crate::accounting::Increment,
                > = Default::default();
                let mut keys = Vec::with_capacity(rows.len());
                for row in &rows {
                    let machine: String = row.try_get("machine_id")?;
                    let at: i64 = row.try_get("at_ms")?;
                    let currency: String = row.try_get("currency")?;
                    let seq: i64 = row.try_get("row_seq")?;
                    sums.entry((
                        machine.clone(),
                        at - at.rem_euclid(bucket_ms),
                        currency.clone(),
                    ))
                    .or_default()
                    .add(&increment_of(row)?);
                    keys.push((machine, seq, at, currency));
                }
                for ((machine, bucket, currency), add) in &sums {
                    let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {ROLLUP_SUMS} FROM {target}
                         WHERE machine_id = $1 AND {bucket_col} = $2 AND currency = $3"
                    )))
                    .bind(machine)
                    .bind(*bucket)
                    .bind(currency)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let mut total = match &existing {
                        Some(row) => increment_of(row)?,
                        None => Default::default(),
                    };
                    total.add(add);
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {target} (machine_id, {bucket_col}, currency, {ROLLUP_SUMS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                         ON CONFLICT (machine_id, {bucket_col}, currency)
                         DO UPDATE SET {ROLLUP_REPLACE}"
                    )))
                    .bind(machine)
                    .bind(*bucket)
                    .bind(currency)
                    .bind(total.observed_ms)
                    .bind(total.idle_ms)
                    .bind(total.unknown_ms)
                    .bind($enc(total.energy_j))
                    .bind($enc(total.idle_energy_j))
                    .bind($enc(total.cost))
                    .bind($enc(total.idle_cost))
                    .bind($enc(total.co2_g))
                    .bind($enc(total.idle_co2_g))
                    .execute(&mut *tx)
                    .await?;
                }
                for (machine, seq, at, currency) in &keys {
                    match rollup {
                        Rollup::RawToHours => {
                            sqlx::query(
                                "DELETE FROM heartbeats WHERE machine_id = $1 AND seq = $2",
                            )
                            .bind(machine)
                            .bind(*seq)
                            .execute(&mut *tx)
                            .await?;
                        }
                        Rollup::HoursToDays => {
                            sqlx::query(
                                "DELETE FROM heartbeat_hours
                                 WHERE machine_id = $1 AND hour_ms = $2 AND currency = $3",
                            )
                            .bind(machine)
                            .bind(*at)
                            .bind(currency)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(RollupBatch {
                    moved: keys.len() as u64,
                    buckets: sums.len() as u64,
                    ran: true,
                })
            }
        }
    };
}

pub(crate) use retention_queries;
