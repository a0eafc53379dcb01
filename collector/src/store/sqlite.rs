//! SQLite backend: the embedded default, a single file in the data directory.
//!
//! WAL mode with `synchronous = NORMAL` by default: a commit survives a crash of the collector
//! process, but the last transactions before a power loss or OS crash may be lost (they are in
//! the WAL but not yet fsynced). `database.sqlite_synchronous = "full"` fsyncs every commit.
//! Writers take the database write lock up front (`BEGIN IMMEDIATE`), so several writers —
//! even several collector processes on one file — serialise instead of failing mid-transaction.
//!
//! SQLite has no exact decimal type: decimals are stored as TEXT and every sum is computed in
//! the collector with `rust_decimal`, never in SQL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::Text;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, Transaction};

use super::batch::{self, AcceptedRow, Locked, MachineUpdate, i64_of};
use super::{
    AuditEntry, Backend, CostTotal, EnrollAuth, EnrollCommand, EnrollRefusal, EnrolledMachine,
    FleetSnapshot, HeartbeatJob, JobOutcome, MachineQuery, MachineRow, MachineSnapshot,
    NewEnrollmentToken, PoolOptions, Role, Store, StoreError, User, hash_from_db, session_from_db,
};
use crate::accounting::{Cursor, Increment, LastReport, Params, Rates};
use crate::secrets::TokenHash;

mod ops {
    super::super::operators_sql::operator_queries!(
        sqlx::SqlitePool,
        sqlx::sqlite::SqliteRow,
        sqlx::Sqlite,
        super::dec,
        "CAST(m.idle_energy_j AS REAL)"
    );
    super::super::retention_sql::retention_queries!(
        super::SqliteStore,
        sqlx::sqlite::SqliteRow,
        super::dec,
        super::text,
        "BEGIN IMMEDIATE",
        None
    );
    super::super::admin_sql::admin_queries!(
        super::SqliteStore,
        sqlx::sqlite::SqliteRow,
        super::dec,
        super::text,
        false
    );
}

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Most bound parameters used in one `IN (…)` list.
const IN_CHUNK: usize = 500;
/// Rows per multi-row statement (19 parameters each, well under SQLite's 32766).
const ROWS_PER_STATEMENT: usize = 1000;

/// Durability of each commit (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteDurability {
    /// Durable against process crashes; an OS crash or power loss may lose the last commits.
    Normal,
    /// Every commit is fsynced.
    Full,
}

/// A pool of connections to one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

/// The file named by a `sqlite://path` or `sqlite:path` URL.
pub fn path_of(url: &str) -> PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    PathBuf::from(rest)
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and its directory.
    pub async fn connect(
        url: &str,
        options: &PoolOptions,
        durability: SqliteDurability,
    ) -> anyhow::Result<Self> {
        let path = path_of(url);
        if path.as_os_str().is_empty() {
            anyhow::bail!("the SQLite URL names no file (expected sqlite://path/to/greenops.db)");
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                SqliteDurability::Normal => SqliteSynchronous::Normal,
                SqliteDurability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // The default 2 MiB page cache turns every batch into hundreds of pread calls;
            // 16 MiB per connection keeps the hot pages (machines, recent heartbeats) cached
            // while the pool's memory stays bounded.
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory")
            // Fewer, larger checkpoints: each one fsyncs the database file.
            .pragma("wal_autocheckpoint", "8000");
        // One writer at a time anyway; a few readers are plenty, and each holds a page cache.
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.clamp(2, 8))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        Ok(Self { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn dec(row: &SqliteRow, column: &str) -> Result<Decimal, sqlx::Error> {
    Ok(row.try_get::<Text<Decimal>, _>(column)?.0)
}

fn text(d: Decimal) -> String {
    d.normalize().to_string()
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A locked machine with its current totals (SQLite adds decimals in the collector).
struct Current {
    locked: Locked,
    totals: Increment,
    costs: HashMap<String, (Decimal, Decimal)>,
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
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
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO enrollment_tokens
                 (token_hash, site_id, department, expires_at_ms, max_uses, created_at_ms)
             SELECT ?1, s.id, ?3, ?4, ?5, ?6 FROM sites s WHERE s.name = ?2
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
        Ok(token.stored(id))
    }

    async fn enroll(
        &self,
        cmd: &EnrollCommand,
    ) -> Result<Result<EnrolledMachine, EnrollRefusal>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (site_id, department, token_id): (i64, String, Option<i64>) = match cmd.auth {
            EnrollAuth::Token(hash) => {
                let Some(row) = sqlx::query(
                    "SELECT id, site_id, department FROM enrollment_tokens
                     WHERE token_hash = ?1 AND revoked_at_ms IS NULL
                       AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
                       AND (max_uses IS NULL OR uses < max_uses)",
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
        sqlx::query(
            "INSERT INTO machines (id, machine_key, hostname, os, os_version, agent_version,
                 mac_addresses, site_id, department, power_profile_id, enrolled_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                 (SELECT id FROM power_profiles ORDER BY (name = 'desktop') DESC, id LIMIT 1), ?10)
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
        let row = sqlx::query("SELECT id, retired_at_ms FROM machines WHERE machine_key = ?1")
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
                "UPDATE machines SET hostname = ?2, os = ?3, os_version = ?4, agent_version = ?5,
                     mac_addresses = ?6 WHERE id = ?1",
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
                "UPDATE agent_credentials SET revoked_at_ms = ?2
                 WHERE machine_id = ?1 AND revoked_at_ms IS NULL",
            )
            .bind(&machine_id)
            .bind(cmd.now_ms)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO agent_credentials (token_hash, machine_id, created_at_ms) VALUES (?1, ?2, ?3)",
        )
        .bind(cmd.credential_hash.as_bytes())
        .bind(&machine_id)
        .bind(cmd.now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(id) = token_id {
            sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = ?1")
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
             WHERE c.token_hash = ?1 AND c.revoked_at_ms IS NULL AND m.retired_at_ms IS NULL",
        )
        .bind(hash.as_bytes())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn revoked_credentials_since(&self, since_ms: i64) -> Result<Vec<TokenHash>, StoreError> {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT token_hash FROM agent_credentials WHERE revoked_at_ms >= ?1",
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut current = load_current(&mut tx, &ids).await?;
        let locked: HashMap<String, Locked> = current
            .iter()
            .map(|(id, c)| (id.clone(), c.locked.clone()))
            .collect();
        let plan = batch::plan(jobs, &locked, params);
        for rows in plan.rows.chunks(ROWS_PER_STATEMENT) {
            insert_heartbeats(&mut tx, rows).await?;
        }
        for updates in plan.updates.chunks(ROWS_PER_STATEMENT) {
            update_machines(&mut tx, updates, &mut current).await?;
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }

    async fn fleet_snapshot(&self) -> Result<FleetSnapshot, StoreError> {
        // A read transaction sees one consistent snapshot of the WAL.
        let mut tx = self.pool.begin().await?;
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
                    cost: dec(&row, "cost")?,
                    idle_cost: dec(&row, "idle_cost")?,
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

async fn load_current(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[&str],
) -> Result<HashMap<String, Current>, sqlx::Error> {
    let mut current = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT m.id, m.last_seq, m.last_sent_at_ms, p.idle_watts, p.active_watts,
                    s.price_per_kwh, s.carbon_intensity_g_per_kwh, s.currency,
                    m.observed_ms, m.idle_ms, m.unknown_ms, m.energy_j, m.idle_energy_j,
                    m.co2_g, m.idle_co2_g
             FROM machines m
             JOIN sites s ON s.id = m.site_id
             JOIN power_profiles p ON p.id = m.power_profile_id
             WHERE m.id IN ({}) AND m.retired_at_ms IS NULL",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let last_seq: i64 = row.try_get("last_seq")?;
            current.insert(
                row.try_get("id")?,
                Current {
                    locked: Locked {
                        cursor: Cursor {
                            last_seq: u64::try_from(last_seq).unwrap_or(0),
                            last_sent_at_ms: row.try_get("last_sent_at_ms")?,
                        },
                        rates: Rates {
                            idle_watts: dec(&row, "idle_watts")?,
                            active_watts: dec(&row, "active_watts")?,
                            price_per_kwh: dec(&row, "price_per_kwh")?,
                            carbon_g_per_kwh: dec(&row, "carbon_intensity_g_per_kwh")?,
                        },
                        currency: row.try_get("currency")?,
                    },
                    totals: totals_of(&row)?,
                    costs: HashMap::new(),
                },
            );
        }
        let sql = format!(
            "SELECT machine_id, currency, cost, idle_cost FROM machine_cost_totals
             WHERE machine_id IN ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let id: String = row.try_get("machine_id")?;
            if let Some(c) = current.get_mut(&id) {
                c.costs.insert(
                    row.try_get("currency")?,
                    (dec(&row, "cost")?, dec(&row, "idle_cost")?),
                );
            }
        }
    }
    Ok(current)
}

fn totals_of(row: &SqliteRow) -> Result<Increment, sqlx::Error> {
    Ok(Increment {
        observed_ms: row.try_get("observed_ms")?,
        idle_ms: row.try_get("idle_ms")?,
        unknown_ms: row.try_get("unknown_ms")?,
        energy_j: dec(row, "energy_j")?,
        idle_energy_j: dec(row, "idle_energy_j")?,
        co2_g: dec(row, "co2_g")?,
        idle_co2_g: dec(row, "idle_co2_g")?,
        ..Increment::default()
    })
}

/// Multi-row `INSERT` of accepted heartbeats (one statement per chunk).
async fn insert_heartbeats(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[AcceptedRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT OR IGNORE INTO heartbeats (machine_id, seq, sent_at_ms, received_at_ms,
             idle_input_ms, session, cpu_ratio, memory_ratio, uptime_seconds, observed_ms,
             idle_ms, unknown_ms, energy_j, idle_energy_j, currency, cost, idle_cost, co2_g,
             idle_co2_g) ",
    );
    q.push_values(rows, |mut b, r| {
        let h = r.heartbeat;
        let i = &r.increment;
        b.push_bind(r.machine_id)
            .push_bind(i64_of(h.seq))
            .push_bind(h.sent_at_ms)
            .push_bind(r.received_at_ms)
            .push_bind(h.idle_ms)
            .push_bind(h.session.as_str())
            .push_bind(h.cpu_usage_ratio)
            .push_bind(h.memory_usage_ratio)
            .push_bind(h.uptime_seconds.map(i64_of))
            .push_bind(i.observed_ms)
            .push_bind(i.idle_ms)
            .push_bind(i.unknown_ms)
            .push_bind(text(i.energy_j))
            .push_bind(text(i.idle_energy_j))
            .push_bind(r.currency)
            .push_bind(text(i.cost))
            .push_bind(text(i.idle_cost))
            .push_bind(text(i.co2_g))
            .push_bind(text(i.idle_co2_g));
    });
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

/// New totals (old + this batch, added exactly in Rust) for a chunk of machines: one
/// `UPDATE … FROM (VALUES …)` and one multi-row upsert of the money totals.
async fn update_machines(
    tx: &mut Transaction<'_, Sqlite>,
    updates: &[MachineUpdate<'_>],
    current: &mut HashMap<String, Current>,
) -> Result<(), sqlx::Error> {
    struct Row<'a> {
        u: &'a MachineUpdate<'a>,
        totals: Increment,
        cost: Decimal,
        idle_cost: Decimal,
    }
    let mut rows = Vec::with_capacity(updates.len());
    for u in updates {
        let Some(c) = current.get_mut(u.machine_id) else {
            continue;
        };
        c.totals.add(&u.sum);
        let money = c
            .costs
            .entry(u.currency.to_string())
            .or_insert((Decimal::ZERO, Decimal::ZERO));
        money.0 += u.sum.cost;
        money.1 += u.sum.idle_cost;
        rows.push(Row {
            u,
            totals: c.totals.clone(),
            cost: money.0,
            idle_cost: money.1,
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "UPDATE machines SET last_seq = u.column2, last_sent_at_ms = u.column3,
             last_received_at_ms = u.column4, last_idle_ms = u.column5, last_session = u.column6,
             last_cpu_ratio = u.column7, last_memory_ratio = u.column8,
             last_uptime_seconds = u.column9, observed_ms = u.column10, idle_ms = u.column11,
             unknown_ms = u.column12, energy_j = u.column13, idle_energy_j = u.column14,
             co2_g = u.column15, idle_co2_g = u.column16
         FROM (",
    );
    q.push_values(&rows, |mut b, r| {
        let (received_at_ms, h) = r.u.newest;
        let t = &r.totals;
        b.push_bind(r.u.machine_id)
            .push_bind(i64_of(r.u.cursor.last_seq))
            .push_bind(r.u.cursor.last_sent_at_ms)
            .push_bind(received_at_ms)
            .push_bind(h.idle_ms)
            .push_bind(h.session.as_str())
            .push_bind(h.cpu_usage_ratio)
            .push_bind(h.memory_usage_ratio)
            .push_bind(h.uptime_seconds.map(i64_of))
            .push_bind(t.observed_ms)
            .push_bind(t.idle_ms)
            .push_bind(t.unknown_ms)
            .push_bind(text(t.energy_j))
            .push_bind(text(t.idle_energy_j))
            .push_bind(text(t.co2_g))
            .push_bind(text(t.idle_co2_g));
    });
    q.push(") AS u WHERE machines.id = u.column1");
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;

    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO machine_cost_totals (machine_id, currency, cost, idle_cost) ",
    );
    q.push_values(&rows, |mut b, r| {
        b.push_bind(r.u.machine_id)
            .push_bind(r.u.currency)
            .push_bind(text(r.cost))
            .push_bind(text(r.idle_cost));
    });
    q.push(
        " ON CONFLICT (machine_id, currency) DO UPDATE
          SET cost = excluded.cost, idle_cost = excluded.idle_cost",
    );
    // Row counts vary per batch: caching every variant would pin a large compiled statement
    // per count and connection.
    q.build().persistent(false).execute(&mut **tx).await?;
    Ok(())
}

fn machine_snapshot(
    row: &SqliteRow,
    costs: &mut HashMap<String, Vec<CostTotal>>,
) -> Result<MachineSnapshot, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let received: Option<i64> = row.try_get("last_received_at_ms")?;
    let session: Option<String> = row.try_get("last_session")?;
    let last = match received {
        Some(received_at_ms) => Some(LastReport {
            received_at_ms,
            idle_ms: row.try_get("last_idle_ms")?,
            session: session_from_db(session.as_deref()),
        }),
        None => None,
    };
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
        last,
        cpu_usage_ratio: row.try_get("last_cpu_ratio")?,
        memory_usage_ratio: row.try_get("last_memory_ratio")?,
        totals: totals_of(row)?,
    })
}
