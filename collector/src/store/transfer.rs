//! `greenops migrate-data`: copy a whole SQLite installation into PostgreSQL, for users who
//! outgrow one machine. The target becomes an exact copy of the source, in one transaction on
//! each side: its tables are emptied and every table is copied with the same ids (re-running
//! converges on the source; a target holding another installation's machines is refused). The
//! copy is verified by row counts and by the totals of every value column.
//!
//! Each table is described once ([`TABLES`]: its columns and their kinds); rows are read from
//! SQLite by kind (decimals as their exact TEXT) and written to PostgreSQL with the matching
//! types (decimals as `NUMERIC`).

use std::collections::HashSet;

use anyhow::{Context, bail};
use rust_decimal::Decimal;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::retention::INCREMENT_COLUMNS;
use super::sqlite::path_of;

/// Rows copied per statement.
const CHUNK: i64 = 2000;

/// What a column holds, and how each side stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `BIGINT` / `INTEGER`.
    Int,
    OptInt,
    /// `INTEGER` (int4) on PostgreSQL.
    Int32,
    OptInt32,
    Text,
    OptText,
    Bytes,
    OptReal,
    /// `NUMERIC` / exact TEXT.
    Dec,
}

use Kind::{Bytes, Dec, Int, Int32, OptInt, OptInt32, OptReal, OptText};

/// A table: its name, columns (in order) and the order rows are read in.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    order: &'static str,
}

const VALUES: [(&str, Kind); 15] = [
    (INCREMENT_COLUMNS[0], Int),
    (INCREMENT_COLUMNS[1], Int),
    (INCREMENT_COLUMNS[2], Int),
    (INCREMENT_COLUMNS[3], Int),
    (INCREMENT_COLUMNS[4], Int),
    (INCREMENT_COLUMNS[5], Dec),
    (INCREMENT_COLUMNS[6], Dec),
    (INCREMENT_COLUMNS[7], Dec),
    (INCREMENT_COLUMNS[8], Dec),
    (INCREMENT_COLUMNS[9], Dec),
    (INCREMENT_COLUMNS[10], Dec),
    (INCREMENT_COLUMNS[11], Dec),
    (INCREMENT_COLUMNS[12], Dec),
    (INCREMENT_COLUMNS[13], Dec),
    (INCREMENT_COLUMNS[14], Dec),
];

macro_rules! with_values {
    ($($c:expr),* $(,)?) => {
        &[$($c,)* VALUES[0], VALUES[1], VALUES[2], VALUES[3], VALUES[4], VALUES[5], VALUES[6],
          VALUES[7], VALUES[8], VALUES[9], VALUES[10], VALUES[11], VALUES[12], VALUES[13],
          VALUES[14]]
    };
}

/// Every table of an installation, parents before children (emptied in reverse).
const TABLES: &[Table] = &[
    Table {
        name: "sites",
        columns: &[("id", Int), ("name", Kind::Text), ("created_at_ms", Int)],
        order: "id",
    },
    Table {
        name: "site_versions",
        columns: &[
            ("site_id", Int),
            ("effective_from_ms", Int),
            ("timezone", Kind::Text),
            ("currency", Kind::Text),
            ("price_per_kwh", Dec),
            ("bands", Kind::Text),
            ("carbon_g_per_kwh", Dec),
            ("business_hours", Kind::Text),
            ("holidays", Kind::Text),
            ("idle_threshold_seconds", OptInt),
            ("created_at_ms", Int),
        ],
        order: "site_id, effective_from_ms",
    },
    Table {
        name: "carbon_intensity_hours",
        columns: &[
            ("site_id", Int),
            ("hour_ms", Int),
            ("g_per_kwh", Dec),
            ("imported_at_ms", Int),
        ],
        order: "site_id, hour_ms",
    },
    Table {
        name: "power_profiles",
        columns: &[("id", Int), ("name", Kind::Text), ("created_at_ms", Int)],
        order: "id",
    },
    Table {
        name: "profile_versions",
        columns: &[
            ("profile_id", Int),
            ("effective_from_ms", Int),
            ("idle_watts", Dec),
            ("active_watts", Dec),
            ("sleep_watts", Dec),
            ("created_at_ms", Int),
        ],
        order: "profile_id, effective_from_ms",
    },
    Table {
        name: "accounting_versions",
        columns: &[
            ("effective_from_ms", Int),
            ("idle_threshold_seconds", Int),
            ("max_gap_seconds", Int),
            ("created_at_ms", Int),
        ],
        order: "effective_from_ms",
    },
    Table {
        name: "enrollment_tokens",
        columns: &[
            ("id", Int),
            ("token_hash", Bytes),
            ("site_id", Int),
            ("department", Kind::Text),
            ("expires_at_ms", OptInt),
            ("max_uses", OptInt),
            ("uses", Int),
            ("revoked_at_ms", OptInt),
            ("created_at_ms", Int),
        ],
        order: "id",
    },
    Table {
        name: "machines",
        columns: &[
            ("id", Kind::Text),
            ("machine_key", Kind::Text),
            ("hostname", Kind::Text),
            ("os", Kind::Text),
            ("os_version", Kind::Text),
            ("agent_version", Kind::Text),
            ("mac_addresses", Kind::Text),
            ("site_id", Int),
            ("department", Kind::Text),
            ("power_profile_id", Int),
            ("enrolled_at_ms", Int),
            ("retired_at_ms", OptInt),
            ("last_seq", Int),
            ("last_sent_at_ms", OptInt),
            ("last_received_at_ms", OptInt),
            ("last_idle_ms", OptInt),
            ("last_session", OptText),
            ("last_cpu_ratio", OptReal),
            ("last_memory_ratio", OptReal),
            ("last_uptime_seconds", OptInt),
            ("last_idle_source", OptText),
            ("placed_from_ms", Int),
            ("num", Int32),
        ],
        order: "id",
    },
    Table {
        name: "seed_imports",
        columns: &[
            ("seed_id", Kind::Text),
            ("machine_id", Kind::Text),
            ("started_at_ms", Int),
            ("finished_at_ms", OptInt),
        ],
        order: "seed_id",
    },
    Table {
        name: "machine_placements",
        columns: &[
            ("machine_id", Kind::Text),
            ("effective_from_ms", Int),
            ("site_id", Int),
            ("department", Kind::Text),
            ("power_profile_id", Int),
            ("created_at_ms", Int),
        ],
        order: "machine_id, effective_from_ms",
    },
    Table {
        name: "agent_credentials",
        columns: &[
            ("token_hash", Bytes),
            ("machine_id", Kind::Text),
            ("created_at_ms", Int),
            ("revoked_at_ms", OptInt),
        ],
        order: "token_hash",
    },
    Table {
        name: "heartbeats",
        columns: &[
            ("sent_at_ms", Int),
            ("seq", Int),
            ("machine", Int32),
            ("idle_ms", OptInt32),
            ("observed_ms", Int32),
            ("state", Int32),
        ],
        order: "rowid",
    },
    Table {
        name: "usage_hours",
        columns: with_values!(
            ("machine", Int32),
            ("hour_ms", Int),
            ("site_id", Int32),
            ("department", Kind::Text),
            ("profile_id", Int32),
            ("currency", Kind::Text),
        ),
        order: "machine, hour_ms, site_id, department, profile_id, currency",
    },
    Table {
        name: "usage_days",
        columns: with_values!(
            ("machine", Int32),
            ("day_ms", Int),
            ("site_id", Int32),
            ("department", Kind::Text),
            ("profile_id", Int32),
            ("currency", Kind::Text),
        ),
        order: "machine, day_ms, site_id, department, profile_id, currency",
    },
    Table {
        name: "machine_totals",
        columns: with_values!(
            ("machine_id", Kind::Text),
            ("site_id", Int),
            ("department", Kind::Text),
            ("currency", Kind::Text),
        ),
        order: "machine_id, site_id, department, currency",
    },
    Table {
        name: "users",
        columns: &[
            ("id", Int),
            ("username", Kind::Text),
            ("password_hash", Kind::Text),
            ("role", Kind::Text),
            ("session_version", Int),
            ("disabled_at_ms", OptInt),
            ("created_at_ms", Int),
            ("updated_at_ms", Int),
        ],
        order: "id",
    },
    Table {
        name: "api_tokens",
        columns: &[
            ("id", Int),
            ("token_hash", Bytes),
            ("user_id", Int),
            ("name", Kind::Text),
            ("created_at_ms", Int),
            ("revoked_at_ms", OptInt),
        ],
        order: "id",
    },
    Table {
        name: "settings",
        columns: &[
            ("key", Kind::Text),
            ("value", Kind::Text),
            ("updated_at_ms", Int),
        ],
        order: "key",
    },
    Table {
        name: "audit_log",
        columns: &[
            ("id", Int),
            ("at_ms", Int),
            ("actor", Kind::Text),
            ("action", Kind::Text),
            ("target", Kind::Text),
            ("details", Kind::Text),
        ],
        order: "id",
    },
];

/// Tables whose ids come from a sequence on PostgreSQL.
const SERIAL: [&str; 6] = [
    "sites",
    "power_profiles",
    "enrollment_tokens",
    "users",
    "api_tokens",
    "audit_log",
];

/// What was copied, and the totals both sides agreed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferReport {
    pub sites: u64,
    pub power_profiles: u64,
    pub enrollment_tokens: u64,
    pub machines: u64,
    pub credentials: u64,
    pub heartbeats: u64,
    pub usage_rows: u64,
    pub observed_ms: i64,
    pub energy_j: Decimal,
    pub cost: Decimal,
}

/// Copies everything from the SQLite database at `from` into the PostgreSQL database at `to`
/// (migrating both first), reporting progress through `progress`.
pub async fn sqlite_to_postgres(
    from: &str,
    to: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<TransferReport> {
    if !from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL");
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let path = path_of(from);
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    // The source is brought to this version's schema first (v1 data carried forward).
    let store = super::SqliteStore::connect(
        from,
        &super::PoolOptions {
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(5),
            sqlite_durability: super::SqliteDurability::Normal,
        },
        super::SqliteDurability::Normal,
    )
    .await?;
    super::Store::migrate(&store)
        .await
        .context("migrating the source database")?;
    super::Store::close(&store).await;
    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path).read_only(true))
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let migrated = super::PostgresStore::connect(
        to,
        &super::PoolOptions {
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(10),
            sqlite_durability: super::SqliteDurability::Normal,
        },
    )
    .await?;
    super::Store::migrate(&migrated)
        .await
        .context("migrating the target database")?;
    super::Store::close(&migrated).await;
    let target = PgPoolOptions::new()
        .max_connections(2)
        .connect(to)
        .await
        .context("connecting to the target PostgreSQL database")?;

    refuse_foreign_machines(&source, &target).await?;
    // One read transaction on the source: a consistent copy even while a collector writes.
    let mut src = source.begin().await?;
    let mut dst = target.begin().await?;
    for table in TABLES.iter().rev() {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", table.name)))
            .execute(&mut *dst)
            .await?;
    }
    let mut report = TransferReport::default();
    for table in TABLES {
        let copied = copy_table(&mut src, &mut dst, table, progress).await?;
        match table.name {
            "sites" => report.sites = copied,
            "power_profiles" => report.power_profiles = copied,
            "enrollment_tokens" => report.enrollment_tokens = copied,
            "machines" => report.machines = copied,
            "agent_credentials" => report.credentials = copied,
            "heartbeats" => report.heartbeats = copied,
            "usage_hours" | "usage_days" => report.usage_rows += copied,
            _ => {}
        }
    }
    for table in SERIAL {
        // Explicit ids were inserted: move the sequences past them.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                           GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )))
        .execute(&mut *dst)
        .await?;
    }
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('machines', 'num'),
                       GREATEST((SELECT MAX(num) FROM machines), 1))",
    )
    .execute(&mut *dst)
    .await?;
    verify(&mut src, &mut dst, &mut report).await?;
    dst.commit().await?;
    src.commit().await?;
    source.close().await;
    target.close().await;
    Ok(report)
}

/// Refuses a target that holds machines the source does not know: that is another
/// installation, and merging would mix up totals.
async fn refuse_foreign_machines(source: &SqlitePool, target: &PgPool) -> anyhow::Result<()> {
    let ours: HashSet<String> = sqlx::query_scalar("SELECT id FROM machines")
        .fetch_all(source)
        .await?
        .into_iter()
        .collect();
    let theirs: Vec<String> = sqlx::query_scalar("SELECT id FROM machines")
        .fetch_all(target)
        .await?;
    let foreign = theirs.iter().filter(|id| !ours.contains(*id)).count();
    if foreign > 0 {
        bail!(
            "the target database already holds {foreign} machines that are not in the source; \
             migrate into an empty database"
        );
    }
    Ok(())
}

/// One value read from SQLite, as it is written to PostgreSQL.
enum Value {
    Int(Option<i64>),
    Int32(Option<i32>),
    Text(Option<String>),
    Bytes(Vec<u8>),
    Real(Option<f64>),
    Dec(Decimal),
}

fn read(row: &SqliteRow, column: &str, kind: Kind) -> Result<Value, sqlx::Error> {
    Ok(match kind {
        Int | OptInt => Value::Int(row.try_get(column)?),
        Int32 | OptInt32 => Value::Int32(
            row.try_get::<Option<i64>, _>(column)?
                .map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
        ),
        Kind::Text | OptText => Value::Text(row.try_get(column)?),
        Bytes => Value::Bytes(row.try_get(column)?),
        OptReal => Value::Real(row.try_get(column)?),
        Dec => Value::Dec(row.try_get::<sqlx::types::Text<Decimal>, _>(column)?.0),
    })
}

async fn copy_table(
    src: &mut Transaction<'_, Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
    table: &Table,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<u64> {
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let list = names.join(", ");
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        table.name
    )))
    .fetch_one(&mut **src)
    .await?;
    let mut offset = 0i64;
    while offset < total {
        let rows: Vec<SqliteRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {list} FROM {} ORDER BY {} LIMIT ?1 OFFSET ?2",
            table.name, table.order
        )))
        .bind(CHUNK)
        .bind(offset)
        .fetch_all(&mut **src)
        .await?;
        if rows.is_empty() {
            break;
        }
        let values: Vec<Vec<Value>> = rows
            .iter()
            .map(|row| {
                table
                    .columns
                    .iter()
                    .map(|(name, kind)| read(row, name, *kind))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {}", table.name))?;
        let mut q = QueryBuilder::<Postgres>::new(format!("INSERT INTO {} ({list}) ", table.name));
        q.push_values(values, |mut b, row| {
            for value in row {
                match value {
                    Value::Int(v) => b.push_bind(v),
                    Value::Int32(v) => b.push_bind(v),
                    Value::Text(v) => b.push_bind(v),
                    Value::Bytes(v) => b.push_bind(v),
                    Value::Real(v) => b.push_bind(v),
                    Value::Dec(v) => b.push_bind(v),
                };
            }
        });
        q.build()
            .persistent(false)
            .execute(&mut **dst)
            .await
            .with_context(|| format!("writing {}", table.name))?;
        offset += i64::try_from(rows.len())?;
        if total > CHUNK {
            progress(&format!("{}: {offset}/{total}", table.name));
        }
    }
    progress(&format!("copied {} ({total} rows)", table.name));
    Ok(u64::try_from(total).unwrap_or(0))
}

/// Compares row counts and the totals of every value column; any difference aborts the copy.
async fn verify(
    src: &mut Transaction<'_, Sqlite>,
    dst: &mut Transaction<'_, Postgres>,
    report: &mut TransferReport,
) -> anyhow::Result<()> {
    for table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        let a: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut **src)
            .await?;
        let b: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut **dst)
            .await?;
        if a != b {
            bail!(
                "verification failed: {} has {a} rows in the source but {b} in the target",
                table.name
            );
        }
    }
    // Every value column of the totals, summed on both sides (SQLite's TEXT exactly, in Rust).
    for (column, kind) in VALUES {
        let source: Decimal = match kind {
            Int => {
                let v: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT {column} FROM machine_totals"
                )))
                .fetch_all(&mut **src)
                .await?;
                v.into_iter().map(Decimal::from).sum()
            }
            _ => {
                let v: Vec<sqlx::types::Text<Decimal>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
                    format!("SELECT {column} FROM machine_totals"),
                ))
                .fetch_all(&mut **src)
                .await?;
                v.into_iter().map(|d| d.0).sum()
            }
        };
        let target: Decimal = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(SUM({column}), 0)::NUMERIC FROM machine_totals"
        )))
        .fetch_one(&mut **dst)
        .await?;
        if source.normalize() != target.normalize() {
            bail!(
                "verification failed: machine_totals.{column} sums to {source} in the source but \
                 {target} in the target"
            );
        }
        match column {
            "observed_ms" => report.observed_ms = i64::try_from(source).unwrap_or(i64::MAX),
            "energy_j" => report.energy_j = source,
            "cost" => report.cost = source,
            _ => {}
        }
    }
    Ok(())
}
