//! PostgreSQL backend: the production store, safe for several collectors on one database.
//!
//! Concurrency: the ingest transaction locks the machine rows it touches with
//! `SELECT … ORDER BY id FOR UPDATE`, so two collectors delivering the same heartbeat serialise
//! on the row and the second one sees it as a duplicate; locks are always taken in id order,
//! so batches never deadlock.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Row};

use super::{
    AuditEntry, Backend, CostTotal, EnrollAuth, EnrollCommand, EnrollRefusal, EnrolledMachine,
    FleetSnapshot, HeartbeatJob, JobOutcome, MachineQuery, MachineRow, MachineSnapshot,
    NewEnrollmentToken, PoolOptions, Role, Store, StoreError, User, hash_from_db, session_from_db,
};
use greenops_protocol::ValidHeartbeat;

use super::batch::{self, AcceptedRow, Locked, MachineUpdate, i64_of};
use crate::accounting::{Cursor, Increment, LastReport, Params, Rates};
use crate::secrets::TokenHash;

mod ops {
    super::super::operators_sql::operator_queries!(
        sqlx::PgPool,
        sqlx::postgres::PgRow,
        sqlx::Postgres,
        super::pg_dec,
        "m.idle_energy_j"
    );
    // One collector at a time moves rows (the others skip the batch).
    super::super::retention_sql::retention_queries!(
        super::PostgresStore,
        sqlx::postgres::PgRow,
        super::pg_dec,
        super::pg_enc,
        "BEGIN",
        Some("SELECT pg_try_advisory_xact_lock(7310452)")
    );
    super::super::admin_sql::admin_queries!(
        super::PostgresStore,
        sqlx::postgres::PgRow,
        super::pg_dec,
        super::pg_enc,
        true
    );
}

/// A NUMERIC column as an exact decimal.
fn pg_dec(row: &PgRow, column: &str) -> Result<Decimal, sqlx::Error> {
    row.try_get(column)
}

/// A decimal as bound to a NUMERIC column.
fn pg_enc(d: Decimal) -> Decimal {
    d
}

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The embedded PostgreSQL migrations.
pub(crate) fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// A pool of connections to one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Creates the pool lazily: the collector starts (and answers 503) even while the
    /// database is down, and recovers by itself when it returns.
    pub async fn connect(url: &str, options: &PoolOptions) -> anyhow::Result<Self> {
        let connect: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL: {e}"))?
            .application_name("greenops")
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn readiness(&self) -> Result<(), StoreError> {
        ops::readiness(&self.pool, &MIGRATOR).await
    }

    async fn create_enrollment_token(
        &self,
        token: &NewEnrollmentToken,
    ) -> Result<super::admin::EnrollmentTokenInfo, StoreError> {
        let row = sqlx::query(
            "INSERT INTO enrollment_tokens
                 (token_hash, site_id, department, expires_at_ms, max_uses, created_at_ms)
             SELECT $1, s.id, $3, $4, $5, $6 FROM sites s WHERE s.name = $2
             RETURNING id",
        )
        .bind(token.token_hash.as_bytes())
        .bind(&token.site)
        .bind(&token.department)
        .bind(token.expires_at_ms)
        .bind(token.max_uses)
        .bind(token.created_at_ms)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site '{}'", token.site)))?;
        Ok(token.stored(row.try_get("id")?))
    }

    async fn enroll(
        &self,
        cmd: &EnrollCommand,
    ) -> Result<Result<EnrolledMachine, EnrollRefusal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (site_id, department, token_id): (i64, String, Option<i64>) = match cmd.auth {
            EnrollAuth::Token(hash) => {
                let Some(row) = sqlx::query(
                    "SELECT id, site_id, department FROM enrollment_tokens
                     WHERE token_hash = $1 AND revoked_at_ms IS NULL
                       AND (expires_at_ms IS NULL OR expires_at_ms > $2)
                       AND (max_uses IS NULL OR uses < max_uses)
                     FOR UPDATE",
                )
                .bind(hash.as_bytes())
                .bind(cmd.now_ms)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(Err(EnrollRefusal::InvalidToken));
                };
                (
                    row.try_get("site_id")?,
                    row.try_get("department")?,
                    Some(row.try_get("id")?),
                )
            }
            EnrollAuth::Open => {
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM sites ORDER BY (name = 'default') DESC, id LIMIT 1",
                )
                .fetch_one(&mut *tx)
                .await?;
                (id, String::new(), None)
            }
        };
        let m = &cmd.machine;
        let macs = serde_json::to_string(&m.mac_addresses).unwrap_or_else(|_| "[]".into());
        // Insert-if-absent first, then lock whichever row owns the key: race-free when two
        // enrolments of the same new key arrive at once.
        sqlx::query(
            "INSERT INTO machines (id, machine_key, hostname, os, os_version, agent_version,
                 mac_addresses, site_id, department, power_profile_id, enrolled_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                 (SELECT id FROM power_profiles ORDER BY (name = 'desktop') DESC, id LIMIT 1), $10)
             ON CONFLICT (machine_key) DO NOTHING",
        )
        .bind(&cmd.new_machine_id)
        .bind(&m.machine_key)
        .bind(&m.hostname)
        .bind(&m.os)
        .bind(&m.os_version)
        .bind(&m.agent_version)
        .bind(&macs)
        .bind(site_id)
        .bind(&department)
        .bind(cmd.now_ms)
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("SELECT id, retired_at_ms FROM machines WHERE machine_key = $1 FOR UPDATE")
                .bind(&m.machine_key)
                .fetch_one(&mut *tx)
                .await?;
        let machine_id: String = row.try_get("id")?;
        let retired: Option<i64> = row.try_get("retired_at_ms")?;
        if retired.is_some() {
            return Ok(Err(EnrollRefusal::MachineRetired));
        }
        let re_enrolled = machine_id != cmd.new_machine_id;
        if re_enrolled {
            sqlx::query(
                "UPDATE machines SET hostname = $2, os = $3, os_version = $4, agent_version = $5,
                     mac_addresses = $6 WHERE id = $1",
            )
            .bind(&machine_id)
            .bind(&m.hostname)
            .bind(&m.os)
            .bind(&m.os_version)
            .bind(&m.agent_version)
            .bind(&macs)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE agent_credentials SET revoked_at_ms = $2
                 WHERE machine_id = $1 AND revoked_at_ms IS NULL",
            )
            .bind(&machine_id)
            .bind(cmd.now_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(cmd.credential_hash.as_bytes())
        .bind(&machine_id)
        .bind(cmd.now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(id) = token_id {
            sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Ok(EnrolledMachine {
            machine_id,
            re_enrolled,
        }))
    }

    async fn machine_for_credential(&self, hash: &TokenHash) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT c.machine_id FROM agent_credentials c JOIN machines m ON m.id = c.machine_id
             WHERE c.token_hash = $1 AND c.revoked_at_ms IS NULL AND m.retired_at_ms IS NULL",
        )
        .bind(hash.as_bytes())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn revoked_credentials_since(&self, since_ms: i64) -> Result<Vec<TokenHash>, StoreError> {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT token_hash FROM agent_credentials WHERE revoked_at_ms >= $1",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(hashes.iter().filter_map(|h| hash_from_db(h)).collect())
    }

    async fn commit_heartbeats(
        &self,
        jobs: &[HeartbeatJob],
        params: Params,
    ) -> Result<Vec<JobOutcome>, StoreError> {
        let mut ids: Vec<&str> = jobs.iter().map(|j| j.machine_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT m.id, m.last_seq, m.last_sent_at_ms, p.idle_watts, p.active_watts,
                    s.price_per_kwh, s.carbon_intensity_g_per_kwh, s.currency
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id
             WHERE m.id = ANY($1) AND m.retired_at_ms IS NULL
             ORDER BY m.id
             FOR UPDATE OF m",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut locked: HashMap<String, Locked> = HashMap::with_capacity(rows.len());
        for row in rows {
            let last_seq: i64 = row.try_get("last_seq")?;
            locked.insert(
                row.try_get("id")?,
                Locked {
                    cursor: Cursor {
                        last_seq: u64::try_from(last_seq).unwrap_or(0),
                        last_sent_at_ms: row.try_get("last_sent_at_ms")?,
                    },
                    rates: Rates {
                        idle_watts: row.try_get("idle_watts")?,
                        active_watts: row.try_get("active_watts")?,
                        price_per_kwh: row.try_get("price_per_kwh")?,
                        carbon_g_per_kwh: row.try_get("carbon_intensity_g_per_kwh")?,
                    },
                    currency: row.try_get("currency")?,
                },
            );
        }
        let plan = batch::plan(jobs, &locked, params);
        if !plan.rows.is_empty() {
            insert_heartbeats(&mut tx, &plan.rows).await?;
            update_machines(&mut tx, &plan.updates).await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    async fn fleet_snapshot(&self) -> Result<FleetSnapshot, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One consistent view of machines, costs and sites.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // Money totals first (one small row per machine and currency), then the machines
        // streamed row by row: no buffer of 100k raw rows next to the snapshot.
        let cost_rows = sqlx::query(
            "SELECT c.machine_id, c.currency, c.cost, c.idle_cost
             FROM machine_cost_totals c JOIN machines m ON m.id = c.machine_id
             WHERE m.retired_at_ms IS NULL
             ORDER BY c.machine_id, c.currency",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut costs: HashMap<String, Vec<CostTotal>> = HashMap::new();
        for row in cost_rows {
            costs
                .entry(row.try_get("machine_id")?)
                .or_default()
                .push(CostTotal {
                    currency: row.try_get("currency")?,
                    cost: row.try_get("cost")?,
                    idle_cost: row.try_get("idle_cost")?,
                });
        }
        let mut machines = Vec::new();
        {
            let mut rows = sqlx::query(
                "SELECT m.id, m.hostname, m.os, m.os_version, m.agent_version, s.name AS site,
                    m.department, p.name AS power_profile, m.last_received_at_ms, m.last_idle_ms,
                    m.last_session, m.last_cpu_ratio, m.last_memory_ratio, m.observed_ms,
                    m.idle_ms, m.unknown_ms, m.energy_j, m.idle_energy_j, m.co2_g, m.idle_co2_g
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id
             WHERE m.retired_at_ms IS NULL
             ORDER BY m.id",
            )
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                machines.push(machine_snapshot(&row, &mut costs)?);
            }
        }
        let sites: Vec<String> = sqlx::query_scalar("SELECT name FROM sites ORDER BY name")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(FleetSnapshot { machines, sites })
    }

    async fn count_users(&self) -> Result<i64, StoreError> {
        ops::count_users(&self.pool).await
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        ops::create_user(&self.pool, username, password_hash, role, now_ms).await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        ops::user_by_name(&self.pool, username).await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        ops::list_users(&self.pool).await
    }

    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        ops::set_password(&self.pool, username, password_hash, now_ms).await
    }

    async fn revoke_sessions(&self, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        ops::revoke_sessions(&self.pool, username, now_ms).await
    }

    async fn disable_user(&self, username: &str, now_ms: i64) -> Result<bool, StoreError> {
        ops::disable_user(&self.pool, username, now_ms).await
    }

    async fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        ops::setting_or_insert(&self.pool, key, value, now_ms).await
    }

    async fn login_failures(
        &self,
        key: &str,
        since_ms: i64,
    ) -> Result<(i64, Option<i64>), StoreError> {
        ops::login_failures(&self.pool, key, since_ms).await
    }

    async fn record_login_failure(
        &self,
        keys: &[String],
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        ops::record_login_failure(&self.pool, keys, at_ms, forget_before_ms).await
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        ops::clear_login_failures(&self.pool, key).await
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        ops::audit(&self.pool, entry).await
    }

    async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        ops::audit_log(&self.pool, limit).await
    }

    async fn list_machines(
        &self,
        query: &MachineQuery,
    ) -> Result<(Vec<MachineRow>, i64), StoreError> {
        ops::list_machines(&self.pool, query).await
    }

    async fn retire_machine(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        ops::retire_machine(&self.pool, id, now_ms).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

fn machine_snapshot(
    row: &PgRow,
    costs: &mut HashMap<String, Vec<CostTotal>>,
) -> Result<MachineSnapshot, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let received: Option<i64> = row.try_get("last_received_at_ms")?;
    let session: Option<String> = row.try_get("last_session")?;
    Ok(MachineSnapshot {
        costs: costs.remove(&id).unwrap_or_default(),
        id,
        hostname: row.try_get("hostname")?,
        os: row.try_get("os")?,
        os_version: row.try_get("os_version")?,
        agent_version: row.try_get("agent_version")?,
        site: row.try_get("site")?,
        department: row.try_get("department")?,
        power_profile: row.try_get("power_profile")?,
        last: received
            .map(|received_at_ms| -> Result<LastReport, sqlx::Error> {
                Ok(LastReport {
                    received_at_ms,
                    idle_ms: row.try_get("last_idle_ms")?,
                    session: session_from_db(session.as_deref()),
                })
            })
            .transpose()?,
        cpu_usage_ratio: row.try_get("last_cpu_ratio")?,
        memory_usage_ratio: row.try_get("last_memory_ratio")?,
        totals: Increment {
            observed_ms: row.try_get("observed_ms")?,
            idle_ms: row.try_get("idle_ms")?,
            unknown_ms: row.try_get("unknown_ms")?,
            energy_j: row.try_get("energy_j")?,
            idle_energy_j: row.try_get("idle_energy_j")?,
            co2_g: row.try_get("co2_g")?,
            idle_co2_g: row.try_get("idle_co2_g")?,
            ..Increment::default()
        },
    })
}

async fn insert_heartbeats(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[AcceptedRow<'_>],
) -> Result<(), sqlx::Error> {
    let col_i64 = |f: fn(&AcceptedRow<'_>) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let col_opt = |f: fn(&AcceptedRow<'_>) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
    let col_f64 = |f: fn(&AcceptedRow<'_>) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    let col_dec = |f: fn(&AcceptedRow<'_>) -> Decimal| rows.iter().map(f).collect::<Vec<_>>();
    let machine_ids: Vec<&str> = rows.iter().map(|r| r.machine_id).collect();
    let sessions: Vec<&str> = rows.iter().map(|r| r.heartbeat.session.as_str()).collect();
    let currencies: Vec<&str> = rows.iter().map(|r| r.currency).collect();
    sqlx::query(
        "INSERT INTO heartbeats (machine_id, seq, sent_at_ms, received_at_ms, idle_input_ms,
             session, cpu_ratio, memory_ratio, uptime_seconds, observed_ms, idle_ms, unknown_ms,
             energy_j, idle_energy_j, currency, cost, idle_cost, co2_g, idle_co2_g)
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[],
             $6::text[], $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[],
             $12::int8[], $13::numeric[], $14::numeric[], $15::text[], $16::numeric[],
             $17::numeric[], $18::numeric[], $19::numeric[])
         ON CONFLICT (machine_id, seq) DO NOTHING",
    )
    .bind(&machine_ids)
    .bind(col_i64(|r| i64_of(r.heartbeat.seq)))
    .bind(col_i64(|r| r.heartbeat.sent_at_ms))
    .bind(col_i64(|r| r.received_at_ms))
    .bind(col_opt(|r| r.heartbeat.idle_ms))
    .bind(&sessions)
    .bind(col_f64(|r| r.heartbeat.cpu_usage_ratio))
    .bind(col_f64(|r| r.heartbeat.memory_usage_ratio))
    .bind(col_opt(|r| r.heartbeat.uptime_seconds.map(i64_of)))
    .bind(col_i64(|r| r.increment.observed_ms))
    .bind(col_i64(|r| r.increment.idle_ms))
    .bind(col_i64(|r| r.increment.unknown_ms))
    .bind(col_dec(|r| r.increment.energy_j))
    .bind(col_dec(|r| r.increment.idle_energy_j))
    .bind(&currencies)
    .bind(col_dec(|r| r.increment.cost))
    .bind(col_dec(|r| r.increment.idle_cost))
    .bind(col_dec(|r| r.increment.co2_g))
    .bind(col_dec(|r| r.increment.idle_co2_g))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn update_machines(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    updates: &[MachineUpdate<'_>],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = updates.iter().map(|u| u.machine_id).collect();
    let newest = |f: fn(i64, &ValidHeartbeat) -> Option<i64>| {
        updates
            .iter()
            .map(|u| f(u.newest.0, u.newest.1))
            .collect::<Vec<Option<i64>>>()
    };
    let ratio = |f: fn(&ValidHeartbeat) -> Option<f64>| {
        updates
            .iter()
            .map(|u| f(u.newest.1))
            .collect::<Vec<Option<f64>>>()
    };
    let sum_i64 = |f: fn(&Increment) -> i64| updates.iter().map(|u| f(&u.sum)).collect::<Vec<_>>();
    let sum_dec =
        |f: fn(&Increment) -> Decimal| updates.iter().map(|u| f(&u.sum)).collect::<Vec<_>>();
    let sessions: Vec<&str> = updates
        .iter()
        .map(|u| u.newest.1.session.as_str())
        .collect();
    let last_seq: Vec<i64> = updates.iter().map(|u| i64_of(u.cursor.last_seq)).collect();
    let last_sent: Vec<Option<i64>> = updates.iter().map(|u| u.cursor.last_sent_at_ms).collect();
    sqlx::query(
        "UPDATE machines AS m SET
             last_seq = u.last_seq, last_sent_at_ms = u.last_sent, last_received_at_ms = u.received,
             last_idle_ms = u.idle_input, last_session = u.session, last_cpu_ratio = u.cpu,
             last_memory_ratio = u.memory, last_uptime_seconds = u.uptime,
             observed_ms = m.observed_ms + u.observed_ms, idle_ms = m.idle_ms + u.idle_ms,
             unknown_ms = m.unknown_ms + u.unknown_ms, energy_j = m.energy_j + u.energy_j,
             idle_energy_j = m.idle_energy_j + u.idle_energy_j, co2_g = m.co2_g + u.co2_g,
             idle_co2_g = m.idle_co2_g + u.idle_co2_g
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[],
                     $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[],
                     $12::int8[], $13::numeric[], $14::numeric[], $15::numeric[], $16::numeric[])
              AS u(id, last_seq, last_sent, received, idle_input, session, cpu, memory, uptime,
                   observed_ms, idle_ms, unknown_ms, energy_j, idle_energy_j, co2_g, idle_co2_g)
         WHERE m.id = u.id",
    )
    .bind(&ids)
    .bind(&last_seq)
    .bind(&last_sent)
    .bind(newest(|received, _| Some(received)))
    .bind(newest(|_, h| h.idle_ms))
    .bind(&sessions)
    .bind(ratio(|h| h.cpu_usage_ratio))
    .bind(ratio(|h| h.memory_usage_ratio))
    .bind(newest(|_, h| h.uptime_seconds.map(i64_of)))
    .bind(sum_i64(|s| s.observed_ms))
    .bind(sum_i64(|s| s.idle_ms))
    .bind(sum_i64(|s| s.unknown_ms))
    .bind(sum_dec(|s| s.energy_j))
    .bind(sum_dec(|s| s.idle_energy_j))
    .bind(sum_dec(|s| s.co2_g))
    .bind(sum_dec(|s| s.idle_co2_g))
    .execute(&mut **tx)
    .await?;
    let currencies: Vec<&str> = updates.iter().map(|u| u.currency).collect();
    sqlx::query(
        "INSERT INTO machine_cost_totals (machine_id, currency, cost, idle_cost)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::numeric[], $4::numeric[])
         ON CONFLICT (machine_id, currency) DO UPDATE
         SET cost = machine_cost_totals.cost + EXCLUDED.cost,
             idle_cost = machine_cost_totals.idle_cost + EXCLUDED.idle_cost",
    )
    .bind(&ids)
    .bind(&currencies)
    .bind(sum_dec(|s| s.cost))
    .bind(sum_dec(|s| s.idle_cost))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
