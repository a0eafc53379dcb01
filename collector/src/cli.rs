//! The `greenops` command line (DESIGN §7).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::settings::{Overrides, Settings, default_config_toml};
use crate::store::NewEnrollmentToken;
use crate::{App, clock, open_store, secrets, telemetry};

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
        /// Address to listen on (default 0.0.0.0:9850).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Manage enrollment tokens (what agents need to enrol).
    #[command(subcommand)]
    EnrollmentToken(EnrollmentTokenCommand),
    /// Check a configuration file and explain what is wrong with it.
    CheckConfig {
        /// The file to check (default: --config, or ./greenops.toml).
        file: Option<PathBuf>,
    },
    /// Print a commented example configuration with every default.
    DefaultConfig,
}

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// postgres://… or sqlite://… (default: the configured one).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentTokenCommand {
    /// Create a token; the plaintext is printed once, as the last line of stdout.
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
}

impl Cli {
    /// Runs the chosen command to completion.
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.config.as_deref();
        match self.command {
            Command::Serve { listen, db } => {
                let settings = Settings::load(
                    config,
                    &Overrides {
                        listen,
                        database_url: db.database_url,
                    },
                )?;
                let telemetry_settings = settings.telemetry.clone();
                let telemetry =
                    tokio::task::spawn_blocking(move || telemetry::init(&telemetry_settings))
                        .await??;
                let result = serve(settings).await;
                telemetry.shutdown().await;
                result
            }
            Command::Migrate { db } => {
                let settings = load_for_db(config, db)?;
                let store = open_store(&settings).await?;
                store.migrate().await.context("applying migrations")?;
                store.close().await;
                eprintln!("migrations applied");
                Ok(())
            }
            Command::EnrollmentToken(EnrollmentTokenCommand::Create {
                site,
                department,
                expires_in,
                max_uses,
                db,
            }) => {
                let settings = load_for_db(config, db)?;
                let store = open_store(&settings).await?;
                store.migrate().await.context("applying migrations")?;
                let token = secrets::generate_token(secrets::ENROLLMENT_TOKEN_PREFIX);
                let now = clock::now_ms();
                let expires_at_ms = expires_in
                    .map(|d| i64::try_from(d.as_millis()).map(|ms| now.saturating_add(ms)))
                    .transpose()
                    .context("--expires-in is too long")?;
                let record = store
                    .create_enrollment_token(&NewEnrollmentToken {
                        token_hash: secrets::TokenHash::of(&token),
                        site: site.clone(),
                        department,
                        expires_at_ms,
                        max_uses,
                        created_at_ms: now,
                    })
                    .await?;
                store.close().await;
                println!(
                    "Enrollment token {} created for site '{}'{}{}{}.",
                    record.id,
                    record.site,
                    if record.department.is_empty() {
                        String::new()
                    } else {
                        format!(", department '{}'", record.department)
                    },
                    expires_in
                        .map(|d| format!(", expires in {}", humantime::format_duration(d)))
                        .unwrap_or_default(),
                    max_uses
                        .map(|n| format!(", at most {n} machines"))
                        .unwrap_or_default(),
                );
                println!("It is shown only this once; agents use it with --enrollment-token:");
                println!("{token}");
                Ok(())
            }
            Command::CheckConfig { file } => {
                let path = file
                    .or_else(|| config.map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("greenops.toml"));
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Settings::from_toml(&text)
                    .with_context(|| format!("{} is not valid", path.display()))?;
                println!("{} is valid", path.display());
                Ok(())
            }
            Command::DefaultConfig => {
                print!("{}", default_config_toml());
                Ok(())
            }
        }
    }
}

fn load_for_db(config: Option<&std::path::Path>, db: DatabaseArg) -> anyhow::Result<Settings> {
    Ok(Settings::load(
        config,
        &Overrides {
            listen: None,
            database_url: db.database_url,
        },
    )?)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings.clone()).await?;
    let port = app.port();
    let host = match settings.listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        ip => ip.to_string(),
    };
    tracing::info!(
        "GreenOps collector on http://{host}:{port} — metrics at http://{host}:{port}/metrics; \
         create an enrollment token with `greenops enrollment-token create`"
    );
    app.run_until_stopped(crate::shutdown_signal()).await
}
