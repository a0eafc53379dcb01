//! The `greenops` command line (DESIGN §7).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::operations::tokens::EnrollmentTokenSpec;
use crate::operations::{Ctx, OpError};
use crate::settings::{Overrides, Settings, default_config_toml};
use crate::store::{NewEnrollmentToken, Role};
use crate::{App, clock, secrets, telemetry};

/// GreenOps collector: shows how much energy, money and CO₂ idle computers waste.
#[derive(Debug, Parser)]
#[command(name = "greenops", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./greenops.toml when it exists).
    #[arg(long, global = true, env = "GREENOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: agent API, /metrics, health endpoints.
    Serve {
        /// Address to listen on (default 0.0.0.0:9850; with --demo 127.0.0.1:9850)
        /// [env: GREENOPS_LISTEN].
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        db: DatabaseArg,
        /// Also run a simulated office of 25 machines in-process, in its own database
        /// `<data_dir>/demo.db` unless a database URL is given; prints the admin password
        /// and an enrollment token at every start.
        #[arg(long)]
        demo: bool,
    },
    /// Copy a whole SQLite installation into PostgreSQL (safe to re-run), then verify it.
    MigrateData {
        /// Source, e.g. sqlite://./data/greenops.db (default: the configured database).
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// Target, e.g. postgres://greenops@db:5432/greenops (migrated first).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Import an installation of the original Python GreenOps (machines, their heartbeat
    /// history, operators, agent tokens) from its PostgreSQL database; safe to re-run.
    ImportSeed {
        /// The original database, e.g. postgres://greenops:…@old-host:5432/greenops (only read).
        #[arg(long, value_name = "URL")]
        from: String,
        /// Site of the imported machines (default: compat.site, "default" unless configured).
        #[arg(long)]
        site: Option<String>,
        /// Department of the imported machines (default: compat.department).
        #[arg(long)]
        department: Option<String>,
        /// Read and check everything and print the report, but write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Moved to its own binary, `greenops-bench`: says so and exits 2, so old scripts fail
    /// with a clear message.
    #[command(hide = true)]
    Bench {
        /// Whatever the old command was given (shown in the message).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Simulate a fleet of agents with office habits against a running collector.
    Simulate(SimulateArgs),
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Roll raw heartbeats past `retention.raw_days` into hourly rollups, and hourly rollups
    /// past `retention.hourly_days` into daily ones, now (the server also does it hourly).
    Retention {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Manage operator accounts (admin page and API users).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage enrollment tokens (what agents need to enrol).
    #[command(subcommand)]
    EnrollmentToken(EnrollmentTokenCommand),
    /// Import hourly grid carbon intensity for a site.
    #[command(subcommand)]
    CarbonIntensity(CarbonIntensityCommand),
    /// What "sleep after N minutes without input" would have saved, from the raw heartbeats.
    WhatIf(WhatIfArgs),
    /// Check a configuration file and explain what is wrong with it.
    CheckConfig {
        /// The file to check (default: --config, or ./greenops.toml).
        file: Option<PathBuf>,
    },
    /// Print a commented example configuration with every default.
    DefaultConfig,
    /// Exit 0 when the local collector answers /readyz (for container health checks).
    Healthcheck {
        /// Readiness URL (default: http://127.0.0.1:<port of the configured listen address>/readyz).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Collector base URL.
    #[arg(long, default_value = "http://127.0.0.1:9850")]
    pub url: String,
    /// Enrollment token the simulated agents enrol with.
    #[arg(long, env = "GREENOPS_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: String,
    /// Number of simulated machines.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub machines: u64,
    /// Simulated seconds per real second: 60 replays an hour a minute. Simulated time starts
    /// in the past and never runs ahead of the real clock.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// How long to run, e.g. 10m (default: until Ctrl-C, after replaying --catch-up).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// History to replay before going real-time when no --duration is given.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    pub catch_up: Duration,
    /// Simulated seconds between two heartbeats of one machine.
    #[arg(long, default_value_t = 60)]
    pub interval_seconds: u64,
    /// Seed of the fleet's habits and schedules (same seed, same fleet).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// postgres://… or sqlite://… (default: the configured one, else the one of the collector
    /// running on the data directory, else sqlite://<data_dir>/greenops.db)
    /// [env: GREENOPS_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// An operator's role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Changes things: sites, machines, users, tokens, settings.
    Admin,
    /// Sees everything, changes nothing.
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an operator. Without --password-stdin a password is generated and printed once.
    Add {
        /// The new operator's sign-in name (letters, digits, `.`, `_`, `-`).
        username: String,
        /// What the operator may do: `admin` changes things, `viewer` only looks.
        #[arg(long, value_enum, default_value = "viewer")]
        role: RoleArg,
        /// Read the password from the first line of standard input (otherwise one is
        /// generated and printed once).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Set a new password (ends the user's existing sessions).
    Passwd {
        /// The operator whose password changes.
        username: String,
        /// Read the new password from the first line of standard input (otherwise one is
        /// generated and printed once).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List operators.
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Disable an operator (ends their sessions; history is kept).
    Disable {
        /// The operator to disable.
        username: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentTokenCommand {
    /// Create a token; the plaintext is printed once, alone on stdout (what it is for goes
    /// to stderr), so `… > token.txt` keeps just the token.
    Create {
        /// Site the enrolled machines belong to.
        #[arg(long, default_value = "default")]
        site: String,
        /// Department given to the enrolled machines.
        #[arg(long, default_value = "")]
        department: String,
        /// Lifetime, e.g. 30m, 12h, 7d (default: never expires).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        /// How many machines may enrol with it (default: unlimited).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
        max_uses: Option<i64>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List the tokens: site, department, uses, expiry and whether each still works (never
    /// the plaintext, which is not stored).
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Revoke a token by its id (from `list`): no machine can enrol with it any more;
    /// machines already enrolled with it keep working.
    Revoke {
        /// The token's id, as `list` shows it.
        id: i64,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Debug, Args)]
pub struct WhatIfArgs {
    /// Sleep after this many minutes without keyboard or mouse input (1 to 10080).
    #[arg(long, value_name = "MINUTES", default_value_t = 30)]
    pub sleep_after: u32,
    /// Only sleep outside each site's business hours.
    #[arg(long)]
    pub after_hours: bool,
    /// Only time incurred at this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Only time incurred in this department.
    #[arg(long)]
    pub department: Option<String>,
    /// Start of the window (RFC 3339; default: --days before --to).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the window (RFC 3339; default: now).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Length of the window in days when --from is not given.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Print the answer as the API's JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DatabaseArg,
}

#[derive(Debug, Subcommand)]
pub enum CarbonIntensityCommand {
    /// Import a CSV of `hour_start,g_co2e_per_kwh` rows (UTC hour starts in RFC 3339, e.g.
    /// `2026-12-01T13:00:00Z,212.5`; a header line is allowed). All rows or none; hours that
    /// have started cannot be changed. Hours without a value use the site's static intensity.
    Import {
        /// The site's name.
        #[arg(long)]
        site: String,
        /// The CSV file (`-` reads standard input).
        file: PathBuf,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

impl Cli {
    /// Runs the chosen command to completion.
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.config.as_deref();
        match self.command {
            Command::Serve { listen, db, demo } => serve_command(config, listen, db, demo).await,
            Command::Simulate(args) => {
                let telemetry = telemetry::init(&crate::settings::TelemetrySettings::default())?;
                let result = simulate(args).await;
                telemetry.shutdown().await;
                result
            }
            Command::MigrateData { from, to } => migrate_data(config, from, to).await,
            Command::ImportSeed {
                from,
                site,
                department,
                dry_run,
                db,
            } => import_seed(config, &from, site, department, dry_run, db).await,
            Command::Bench { args } => Err(anyhow::Error::new(Moved::bench(&args))),
            Command::User(command) => user(config, command).await,
            Command::Retention { db } => retention(config, db).await,
            Command::Migrate { db } => {
                let store = open_migrated(config, db).await?;
                store.close().await;
                eprintln!("migrations applied");
                Ok(())
            }
            Command::EnrollmentToken(command) => enrollment_token(config, command).await,
            Command::CarbonIntensity(command) => carbon_intensity(config, command).await,
            Command::WhatIf(args) => what_if(config, args).await,
            Command::CheckConfig { file } => check_config(config, file),
            Command::Healthcheck { url } => healthcheck(config, url).await,
            Command::DefaultConfig => {
                print!("{}", default_config_toml());
                Ok(())
            }
        }
    }
}

async fn serve_command(
    config: Option<&Path>,
    listen: Option<SocketAddr>,
    db: DatabaseArg,
    demo: bool,
) -> anyhow::Result<()> {
    let explicit_db = db.database_url.is_some();
    let mut settings = Settings::load(
        config,
        &Overrides {
            listen,
            database_url: db.database_url,
            // The demo has a sign-in page and an open /metrics: this machine only, unless
            // --listen, GREENOPS_LISTEN or the configuration say otherwise.
            default_listen: demo.then(|| SocketAddr::from(([127, 0, 0, 1], 9850))),
        },
    )?;
    if demo && !explicit_db && settings.database.url.is_empty() {
        // Keep simulated machines out of the real installation.
        settings.database.url = format!("sqlite://{}/demo.db", settings.data_dir.display());
    }
    let telemetry_settings = settings.telemetry.clone();
    let telemetry =
        tokio::task::spawn_blocking(move || telemetry::init(&telemetry_settings)).await??;
    let result = serve(settings, demo).await;
    telemetry.shutdown().await;
    result
}

async fn migrate_data(
    config: Option<&Path>,
    from: Option<String>,
    to: String,
) -> anyhow::Result<()> {
    let from = match from {
        Some(url) => url,
        None => Settings::load(config, &Overrides::default())?.database_url(),
    };
    eprintln!(
        "copying {} into {}",
        crate::settings::redact_url(&from),
        crate::settings::redact_url(&to)
    );
    let report = crate::store::transfer::sqlite_to_postgres(&from, &to, &|line| {
        eprintln!("{line}");
    })
    .await?;
    println!(
        "verified: {} machines, {} heartbeats, {} credentials; observed {} s, \
         energy {} J, cost {} — identical in both databases",
        report.machines,
        report.heartbeats,
        report.credentials,
        report.observed_ms / 1000,
        report.energy_j.normalize(),
        report.cost.normalize()
    );
    println!(
        "point the collector at the new database: GREENOPS_DATABASE_URL={}",
        crate::settings::redact_url(&to)
    );
    Ok(())
}

async fn import_seed(
    config: Option<&Path>,
    from: &str,
    site: Option<String>,
    department: Option<String>,
    dry_run: bool,
    db: DatabaseArg,
) -> anyhow::Result<()> {
    let settings = settings_for_store(config, db)?;
    eprintln!(
        "reading the original GreenOps database {}",
        crate::settings::redact_url(from)
    );
    let source = crate::store::seed::SeedSource::open(from).await?;
    let store = crate::open_migrated_store(&settings).await?;
    let passwords = crate::auth::PasswordPool::new(1, 0);
    let options = crate::operations::seed::ImportOptions {
        site: site.unwrap_or_else(|| settings.compat.site.clone()),
        department: department.unwrap_or_else(|| settings.compat.department.clone()),
        dry_run,
        max_clock_skew_ms: crate::settings::secs_to_ms(settings.accounting.max_clock_skew_seconds),
    };
    let result = crate::operations::seed::import(
        Ctx::cli(store.as_ref(), &passwords),
        &source,
        &options,
        &|line| eprintln!("{line}"),
    )
    .await;
    source.close().await;
    store.close().await;
    let report = result.map_err(cli_error)?;
    print!("{report}");
    if !dry_run {
        println!(
            "next: turn on compat.seed_agents (site {:?}) and point the original agents at this              collector; see README, \"Migrating from the original GreenOps\"",
            options.site
        );
    }
    Ok(())
}

/// A command that moved to another binary: `main` prints the message and exits 2.
#[derive(Debug, thiserror::Error)]
#[error("moved: run {0}")]
pub struct Moved(pub String);

impl Moved {
    /// `greenops bench …` is now `greenops-bench …`, with the same flags.
    fn bench(args: &[String]) -> Self {
        let mut command = String::from("greenops-bench");
        for arg in args {
            command.push(' ');
            command.push_str(arg);
        }
        Moved(format!(
            "{command} (./target/release/greenops-bench after `make release`; see BENCHMARKS.md)"
        ))
    }
}

async fn retention(config: Option<&Path>, db: DatabaseArg) -> anyhow::Result<()> {
    let settings = settings_for_store(config, db)?;
    let store = crate::open_migrated_store(&settings).await?;
    let report =
        crate::retention::run_once(store.as_ref(), &settings.retention, clock::now_ms()).await?;
    store.close().await;
    println!(
        "deleted {} raw heartbeats older than {} days (their figures stay in the hourly usage) \
         and rolled {} hourly usage rows older than {} days into days",
        report.heartbeats_rolled,
        settings.retention.raw_days,
        report.hours_rolled,
        settings.retention.hourly_days
    );
    Ok(())
}

async fn carbon_intensity(
    config: Option<&Path>,
    command: CarbonIntensityCommand,
) -> anyhow::Result<()> {
    let CarbonIntensityCommand::Import { site, file, db } = command;
    let csv = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    };
    let store = open_migrated(config, db).await?;
    let passwords = crate::auth::PasswordPool::new(1, 0);
    let ctx = Ctx::cli(store.as_ref(), &passwords);
    let result = async {
        let id = crate::operations::catalog::site_id_by_name(ctx, &site).await?;
        crate::operations::catalog::import_intensity(ctx, id, &csv).await
    }
    .await;
    store.close().await;
    let hours = result.map_err(cli_error)?;
    eprintln!("imported {hours} hours of carbon intensity for site '{site}'");
    Ok(())
}

async fn what_if(config: Option<&Path>, args: WhatIfArgs) -> anyhow::Result<()> {
    let moment = |flag: &str, value: &Option<String>| -> anyhow::Result<Option<i64>> {
        value
            .as_deref()
            .map(|v| {
                crate::http::timestamp_ms(v).with_context(|| {
                    format!("{flag} must be an RFC 3339 time, e.g. 2026-12-01T08:00:00Z")
                })
            })
            .transpose()
    };
    let now = crate::clock::now_ms();
    let to = moment("--to", &args.to)?.unwrap_or(now);
    let from =
        moment("--from", &args.from)?.unwrap_or(to - i64::from(args.days.max(1)) * 86_400_000);
    let raw_days = Settings::load(config, &Overrides::default())?
        .retention
        .raw_days;
    let store = open_migrated(config, args.db).await?;
    let query = crate::operations::savings::WhatIfQuery {
        sleep_after_minutes: args.sleep_after,
        after_hours_only: args.after_hours,
        site: args.site,
        department: args.department,
        from_ms: from,
        to_ms: to,
    };
    let started = std::time::Instant::now();
    let result = crate::operations::savings::what_if(store.as_ref(), query, raw_days, now).await;
    store.close().await;
    let result = result.map_err(|e| match e {
        OpError::Invalid(v) if v.field == "sleep_after_minutes" => {
            anyhow::anyhow!("--sleep-after {}", v.message)
        }
        OpError::Invalid(v) if v.field == "from" || v.field == "to" => {
            anyhow::anyhow!("--{} {}", v.field, v.message)
        }
        other => cli_error(other),
    })?;
    let view = crate::http::savings::view(&result);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let t = &result.total;
    let kwh = |j: rust_decimal::Decimal| (j / rust_decimal::Decimal::from(3_600_000)).round_dp(3);
    let money = |c: &std::collections::BTreeMap<String, rust_decimal::Decimal>| {
        if c.is_empty() {
            "0".to_string()
        } else {
            c.iter()
                .map(|(cur, v)| format!("{} {cur}", v.round_dp(2)))
                .collect::<Vec<_>>()
                .join(" + ")
        }
    };
    println!(
        "Sleep after {} min without input{}, {} to {}:",
        result.query.sleep_after_minutes,
        if result.query.after_hours_only {
            ", after hours only"
        } else {
            ""
        },
        view_time(from),
        view_time(to)
    );
    println!(
        "  {} kWh, {}, {} kg CO2e saved; {} of {} machines idle past the limit would have slept {} times ({} h asleep).",
        kwh(t.energy_j),
        money(&t.costs),
        (t.co2_g / rust_decimal::Decimal::from(1000)).round_dp(3),
        t.machines,
        result.machines_considered,
        t.sleeps,
        rust_decimal::Decimal::new(t.slept_ms, 3) / rust_decimal::Decimal::from(3600)
    );
    if !result.groups.is_empty() {
        println!(
            "{:<24} {:<20} {:>12} {:>20} {:>9} {:>7}",
            "site", "department", "kWh", "cost", "machines", "sleeps"
        );
        for g in &result.groups {
            let f = &g.figures;
            println!(
                "{:<24} {:<20} {:>12} {:>20} {:>9} {:>7}",
                g.site,
                if g.department.is_empty() {
                    "—"
                } else {
                    &g.department
                },
                kwh(f.energy_j),
                money(&f.costs),
                f.machines,
                f.sleeps
            );
        }
    }
    eprintln!("computed in {} ms", started.elapsed().as_millis());
    Ok(())
}

fn view_time(ms: i64) -> String {
    crate::http::rfc3339(ms).unwrap_or_else(|| ms.to_string())
}

async fn enrollment_token(
    config: Option<&Path>,
    command: EnrollmentTokenCommand,
) -> anyhow::Result<()> {
    let (site, department, expires_in, max_uses, db) = match command {
        EnrollmentTokenCommand::Create {
            site,
            department,
            expires_in,
            max_uses,
            db,
        } => (site, department, expires_in, max_uses, db),
        EnrollmentTokenCommand::List { db } => return enrollment_token_list(config, db).await,
        EnrollmentTokenCommand::Revoke { id, db } => {
            return enrollment_token_revoke(config, id, db).await;
        }
    };
    let store = open_migrated(config, db).await?;
    let expires_in_seconds = expires_in.map(|d| d.as_secs());
    let passwords = crate::auth::PasswordPool::new(1, 0);
    let result = crate::operations::tokens::create_enrollment_token(
        Ctx::cli(store.as_ref(), &passwords),
        EnrollmentTokenSpec {
            site: Some(site),
            department: Some(department),
            expires_in_seconds,
            max_uses,
        },
    )
    .await;
    store.close().await;
    let (token, record) = result.map_err(cli_error)?;
    eprintln!(
        "Enrollment token {} created for site '{}'{}{}{}.",
        record.id,
        record.site,
        if record.department.is_empty() {
            String::new()
        } else {
            format!(", department '{}'", record.department)
        },
        expires_in
            .map(|d| format!(", expires in {}", format_duration(d.as_secs())))
            .unwrap_or_default(),
        max_uses
            .map(|n| format!(", at most {n} machines"))
            .unwrap_or_default(),
    );
    eprintln!(
        "It is shown only this once (stdout); agents take it with --enrollment-token-file FILE, \
         GREENOPS_ENROLLMENT_TOKEN or --enrollment-token:"
    );
    println!("{token}");
    Ok(())
}

async fn enrollment_token_list(config: Option<&Path>, db: DatabaseArg) -> anyhow::Result<()> {
    let store = open_migrated(config, db).await?;
    let tokens = store.list_enrollment_tokens().await;
    store.close().await;
    let now = clock::now_ms();
    println!(
        "{:>5}  {:<20} {:<20} {:>9}  {:<24}  status",
        "id", "site", "department", "uses", "expires"
    );
    for t in tokens? {
        let status = if t.revoked_at_ms.is_some() {
            "revoked"
        } else if t.expires_at_ms.is_some_and(|at| at <= now) {
            "expired"
        } else if t.max_uses.is_some_and(|max| t.uses >= max) {
            "used up"
        } else {
            "usable"
        };
        println!(
            "{:>5}  {:<20} {:<20} {:>9}  {:<24}  {status}",
            t.id,
            t.site,
            if t.department.is_empty() {
                "—"
            } else {
                &t.department
            },
            match t.max_uses {
                Some(max) => format!("{}/{max}", t.uses),
                None => t.uses.to_string(),
            },
            t.expires_at_ms.map_or("never".to_string(), view_time),
        );
    }
    Ok(())
}

async fn enrollment_token_revoke(
    config: Option<&Path>,
    id: i64,
    db: DatabaseArg,
) -> anyhow::Result<()> {
    let settings = settings_for_store(config, db)?;
    let store = crate::open_migrated_store(&settings).await?;
    let passwords = crate::auth::PasswordPool::new(1, 0);
    let result = crate::operations::tokens::revoke_enrollment_token(
        Ctx::cli(store.as_ref(), &passwords),
        id,
    )
    .await;
    store.close().await;
    result.map_err(|e| match e {
        OpError::NotFound(_) => anyhow::anyhow!(
            "no enrollment token {id} in {} (`greenops enrollment-token list` shows them)",
            crate::settings::redact_url(&settings.database_url())
        ),
        other => cli_error(other),
    })?;
    println!("enrollment token {id} revoked; machines enrolled with it keep their credentials");
    Ok(())
}

/// A duration as `--expires-in` takes it: `7d`, `1d 12h`, `90s` → `1m 30s`.
pub fn format_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    let mut rest = seconds;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    parts.join(" ")
}

fn check_config(config: Option<&Path>, file: Option<PathBuf>) -> anyhow::Result<()> {
    let path = file
        .or_else(|| config.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("greenops.toml"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Settings::from_toml(&text).with_context(|| format!("{} is not valid", path.display()))?;
    println!("{} is valid", path.display());
    Ok(())
}

async fn healthcheck(config: Option<&Path>, url: Option<String>) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let settings = Settings::load(config, &Overrides::default())?;
            format!("http://127.0.0.1:{}/readyz", settings.listen.port())
        }
    };
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    println!("ready");
    Ok(())
}

/// An operation's refusal as a command-line error: a field error names the flag that sets
/// the field (`--expires-in`), or the field itself.
fn cli_error(e: OpError) -> anyhow::Error {
    match e {
        OpError::Invalid(v) => {
            let what = match v.field.as_str() {
                "expires_in_seconds" => "--expires-in".to_string(),
                "max_uses" => "--max-uses".to_string(),
                "site" => "--site".to_string(),
                "department" => "--department".to_string(),
                other => format!("the {}", other.replace('_', " ")),
            };
            anyhow::anyhow!("{what} {}", v.message)
        }
        other => anyhow::Error::new(other),
    }
}

/// The store named by the settings and `--database-url`, migrated.
async fn open_migrated(
    config: Option<&Path>,
    db: DatabaseArg,
) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
    let settings = settings_for_store(config, db)?;
    crate::open_migrated_store(&settings).await
}

/// The settings of a command that uses the store. With no database configured anywhere
/// (flag, environment, file), the database of the collector running on the data directory
/// is used — `make run`'s demo keeps its own — else the embedded default. Says on stderr which
/// one it is, so a token or password never lands in another database unnoticed.
fn settings_for_store(config: Option<&Path>, db: DatabaseArg) -> anyhow::Result<Settings> {
    let mut settings = load_for_db(config, db)?;
    let mut whose = String::new();
    if settings.database.url.is_empty()
        && let Some(running) = crate::instance::find(&settings.data_dir)
    {
        settings.database.url = running.database;
        whose = format!(
            " (the one of the {}collector running at {}, pid {})",
            if running.demo { "demo " } else { "" },
            running.url,
            running.pid
        );
    }
    eprintln!(
        "database: {}{whose}",
        crate::settings::redact_url(&settings.database_url())
    );
    Ok(settings)
}

async fn user(config: Option<&Path>, command: UserCommand) -> anyhow::Result<()> {
    let db = match &command {
        UserCommand::Add { db, .. }
        | UserCommand::Passwd { db, .. }
        | UserCommand::List { db }
        | UserCommand::Disable { db, .. } => db.database_url.clone(),
    };
    let settings = settings_for_store(config, DatabaseArg { database_url: db })?;
    let store = crate::open_migrated_store(&settings).await?;
    let shown = crate::settings::redact_url(&settings.database_url());
    let passwords = crate::auth::PasswordPool::new(1, 0);
    let ctx = Ctx::cli(store.as_ref(), &passwords);
    let result = match command {
        UserCommand::Add {
            username,
            role,
            password_stdin,
            ..
        } => user_add(ctx, &username, role.into(), password_stdin).await,
        UserCommand::Passwd {
            username,
            password_stdin,
            ..
        } => user_passwd(ctx, &username, password_stdin, &shown).await,
        UserCommand::List { .. } => user_list(ctx).await,
        UserCommand::Disable { username, .. } => {
            let result = crate::operations::users::disable(ctx, &username).await;
            result
                .map_err(|e| match e {
                    OpError::NotFound(_) => anyhow::anyhow!("no user '{username}' in {shown}"),
                    other => cli_error(other),
                })
                .map(|()| {
                    println!("'{username}' disabled; their sessions were ended");
                })
        }
    };
    store.close().await;
    result
}

async fn user_add(
    ctx: Ctx<'_>,
    username: &str,
    role: Role,
    password_stdin: bool,
) -> anyhow::Result<()> {
    crate::auth::check_username(username).map_err(|e| anyhow::anyhow!("the username {e}"))?;
    let (password, generated) = crate::operators::password_from(password_stdin)?;
    crate::operations::users::create(ctx, username, password.clone(), role)
        .await
        .map_err(cli_error)?;
    println!("created {} '{username}'", role.as_str());
    if generated {
        println!("password (shown once):");
        println!("{password}");
    }
    Ok(())
}

async fn user_passwd(
    ctx: Ctx<'_>,
    username: &str,
    password_stdin: bool,
    database: &str,
) -> anyhow::Result<()> {
    let (password, generated) = crate::operators::password_from(password_stdin)?;
    crate::operations::users::set_password(ctx, username, password.clone())
        .await
        .map_err(|e| match e {
            OpError::NotFound(_) => anyhow::anyhow!("no user '{username}' in {database}"),
            other => cli_error(other),
        })?;
    println!("password of '{username}' changed; their sessions were ended");
    if generated {
        println!("new password (shown once):");
        println!("{password}");
    }
    Ok(())
}

async fn user_list(ctx: Ctx<'_>) -> anyhow::Result<()> {
    println!("{:<32} {:<8} status", "username", "role");
    for u in ctx.store.list_users().await? {
        println!(
            "{:<32} {:<8} {}",
            u.username,
            u.role.as_str(),
            if u.disabled { "disabled" } else { "active" }
        );
    }
    Ok(())
}

fn load_for_db(config: Option<&Path>, db: DatabaseArg) -> anyhow::Result<Settings> {
    Ok(Settings::load(
        config,
        &Overrides {
            database_url: db.database_url,
            ..Overrides::default()
        },
    )?)
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let app = App::build(settings.clone()).await?;
    let admin_env = crate::settings::secret_variable("GREENOPS_ADMIN_PASSWORD")?;
    let demo_password = if demo {
        Some(crate::operators::demo_admin(app.store().as_ref(), app.passwords(), admin_env).await?)
    } else {
        crate::operators::bootstrap(app.store().as_ref(), app.passwords(), admin_env).await?;
        None
    };
    let port = app.port();
    let host = match settings.listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        ip => ip.to_string(),
    };
    let base = format!("http://{host}:{port}");
    // Commands started on the same data directory find this collector's database.
    let database = crate::instance::absolute_sqlite_url(&settings.database_url());
    let _announcement = database.as_ref().and_then(|database| {
        crate::instance::announce(
            &settings.data_dir,
            &crate::instance::Running {
                pid: std::process::id(),
                url: base.clone(),
                database: database.clone(),
                demo,
            },
        )
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        crate::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let simulator = match demo_password {
        Some(password) => {
            let (simulator, token) = start_demo(&app, &base, stop_rx).await?;
            eprint!(
                "{}",
                demo_banner(
                    &base,
                    &password,
                    &token,
                    &crate::settings::redact_url(
                        database.as_deref().unwrap_or(&settings.database_url())
                    ),
                )
            );
            Some(simulator)
        }
        None => None,
    };
    tracing::info!(
        "GreenOps collector on {base} — metrics at {base}/metrics; \
         create an enrollment token with `greenops enrollment-token create`"
    );
    let result = app.run_until_stopped(shutdown).await;
    if let Some(simulator) = simulator {
        simulator.abort();
    }
    result
}

/// What `serve --demo` prints at every start (on stderr, never into the log): where it is,
/// how to sign in, a token for agents of one's own, its database and the binaries.
fn demo_banner(base: &str, password: &str, token: &str, database: &str) -> String {
    let here = std::env::current_dir().ok();
    let shown = |path: &Path| match here.as_deref().and_then(|h| path.strip_prefix(h).ok()) {
        Some(relative) => format!("./{}", relative.display()),
        None => path.display().to_string(),
    };
    let mut binaries = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        binaries.push(shown(&exe));
        let agent = exe.with_file_name(format!("greenops-agent{}", std::env::consts::EXE_SUFFIX));
        if agent.exists() {
            binaries.push(shown(&agent));
        }
    }
    format!(
        "\n  GreenOps demo on {base}/ — 25 simulated office machines (Ctrl-C stops it)\n\n    \
         sign in as:        admin\n    \
         password:          {password}   (a new one at every start of the demo)\n    \
         enrollment token:  {token}   (for agents of your own; department demo)\n    \
         database:          {database}   (greenops commands started here use it)\n    \
         binaries:          {}\n\n",
        binaries.join(", ")
    )
}

/// Starts 25 simulated machines against this collector, replaying the last 8 hours at 60×
/// and then carrying on in real time; also answers the enrollment token they use.
async fn start_demo(
    app: &App,
    base: &str,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, String)> {
    let store = app.store();
    let token = secrets::generate_token(secrets::ENROLLMENT_TOKEN_PREFIX);
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_hash: secrets::TokenHash::of(&token),
            site: "default".into(),
            department: "demo".into(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: clock::now_ms(),
        })
        .await?;
    // A restart resumes where the last run stopped: only the time since then is replayed
    // (at most the usual 8 hours), never time the demo database has already seen.
    let defaults = crate::simulate::Options::default();
    let now = clock::now_ms();
    let last_seen = store
        .fleet_snapshot()
        .await?
        .machines
        .iter()
        .filter_map(|m| m.last.map(|l| l.received_at_ms))
        .max();
    let catch_up = match last_seen {
        None => defaults.catch_up,
        Some(at) => {
            Duration::from_millis(u64::try_from(now - at).unwrap_or(0)).min(defaults.catch_up)
        }
    };
    let options = crate::simulate::Options {
        url: base.to_string(),
        enrollment_token: token.clone(),
        machines: 25,
        speed: 60.0,
        fleet_seed: crate::simulate::DEMO_FLEET_SEED,
        catch_up,
        ..defaults
    };
    tracing::info!(
        machines = options.machines,
        "demo: simulating an office ({} replayed at 60x, then real time); watch {base}/metrics",
        if last_seen.is_some() {
            format!(
                "the {} minutes since the last run",
                catch_up.as_secs().div_ceil(60)
            )
        } else {
            "the last 8 hours".to_string()
        }
    );
    let stats = Arc::new(crate::simulate::Stats::default());
    let simulator = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::simulate::run(options, stats, stopped).await {
            tracing::error!(error = format!("{e:#}"), "demo simulator stopped");
        }
    });
    Ok((simulator, token))
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let options = crate::simulate::Options {
        url: args.url,
        enrollment_token: args.enrollment_token,
        machines: args.machines,
        speed: args.speed,
        duration: args.duration,
        catch_up: args.catch_up,
        interval_seconds: args.interval_seconds,
        fleet_seed: args.seed,
        concurrency: args.concurrency,
    };
    let machines = options.machines;
    let stats = Arc::new(crate::simulate::Stats::default());
    let started = std::time::Instant::now();
    let reporter = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            every.tick().await;
            loop {
                every.tick().await;
                eprintln!("{}", stats.line(machines, started));
            }
        })
    };
    eprintln!("enrolling {machines} simulated machines…");
    let result = crate::simulate::run(options, stats.clone(), crate::shutdown_signal()).await;
    reporter.abort();
    eprintln!("{}", stats.line(machines, started));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_option_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<Cli as clap::CommandFactory>::command(),
            "greenops",
            &mut missing,
        );
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn durations_read_as_the_flags_take_them() {
        assert_eq!(format_duration(7 * 86_400), "7d");
        assert_eq!(format_duration(36 * 3600), "1d 12h");
        assert_eq!(format_duration(90), "1m 30s");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(0), "0s");
        for text in ["7d", "1d 12h", "1m 30s"] {
            let parsed = humantime::parse_duration(text).unwrap().as_secs();
            assert_eq!(format_duration(parsed), text);
        }
    }
}
