//! `greenops-agent`: reports this machine's user idle time, CPU and memory to a GreenOps
//! collector, spooling on disk while it is unreachable.

mod backoff;
mod idle;
mod run;
mod service;
mod settings;
mod spool;
mod state;
mod system;
mod transport;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::settings::{AgentSettings, Flags};

/// GreenOps agent: measures user idle time and reports it to the collector.
#[derive(Debug, Parser)]
#[command(name = "greenops-agent", version, about)]
struct Cli {
    /// Configuration file (default: /etc/greenops/agent.toml, or the platform's equivalent).
    #[arg(
        long,
        global = true,
        env = "GREENOPS_AGENT_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Collector base URL [env: GREENOPS_SERVER_URL].
    #[arg(long = "server", global = true, value_name = "URL")]
    server: Option<String>,
    /// Enrollment token [env: GREENOPS_ENROLLMENT_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    enrollment_token: Option<String>,
    /// State directory: identity, credential, seq, spool [env: GREENOPS_STATE_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds between heartbeats, default 60 [env: GREENOPS_HEARTBEAT_INTERVAL_SECONDS].
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_interval_seconds: Option<u64>,
    /// Seconds between CPU samples, default 5 [env: GREENOPS_SAMPLE_INTERVAL_SECONDS].
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    sample_interval_seconds: Option<u64>,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL.
    #[arg(long, global = true, value_name = "URL")]
    proxy: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run: send a heartbeat every interval (enrolling first if needed).
    Run,
    /// Enrol (or re-enrol, rotating the credential) and exit.
    Enroll,
    /// Show the credential state, last delivery and spool depth.
    Status,
    /// Show what each idle source reports right now.
    Idle,
    /// Windows only: the entry point the Windows service is registered with.
    #[command(hide = true)]
    Service,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let flags = Flags {
        server_url: cli.server,
        enrollment_token: cli.enrollment_token.map(Into::into),
        state_dir: cli.state_dir,
        heartbeat_interval_seconds: cli.heartbeat_interval_seconds,
        sample_interval_seconds: cli.sample_interval_seconds,
        ca_file: cli.ca_file,
        proxy: cli.proxy,
    };
    let settings = AgentSettings::load(cli.config.as_deref(), &flags)?;
    match cli.command {
        Command::Run => {
            run::Agent::new(settings)?
                .run(greenops_runtime::shutdown_signal())
                .await
        }
        Command::Service => service::run(settings).await,
        Command::Enroll => {
            let machine_id = run::Agent::new(settings)?.enroll().await?;
            println!("enrolled as machine {machine_id}");
            Ok(())
        }
        Command::Status => {
            let state = state::State::open(&settings.state_dir)?;
            let status = run::Status::load(&settings.state_dir).unwrap_or_default();
            let spool = spool::Spool::open(&settings.state_dir, spool::Bounds::default())?;
            println!(
                "server:          {}",
                if settings.server_url.is_empty() {
                    "(not configured)"
                } else {
                    &settings.server_url
                }
            );
            println!("state directory: {}", settings.state_dir.display());
            println!("machine key:     {}", state.identity.machine_key);
            println!(
                "credential:      {}",
                match (&state.identity.machine_id, &state.identity.agent_token) {
                    (Some(id), Some(_)) => format!("enrolled as machine {id}"),
                    _ => "not enrolled".into(),
                }
            );
            println!("last seq:        {}", status.last_seq);
            println!(
                "last delivery:   {}",
                status
                    .last_delivery_at
                    .as_deref()
                    .map_or("never".to_string(), |at| format!(
                        "{at} (seq {})",
                        status.last_delivered_seq
                    ))
            );
            println!(
                "spool:           {} heartbeats, {} bytes",
                spool.depth(),
                spool.pending_bytes()
            );
            println!(
                "idle source:     {}",
                if status.idle_source.is_empty() {
                    "-"
                } else {
                    &status.idle_source
                }
            );
            if let Some(e) = status.last_error {
                println!("last error:      {e}");
            }
            Ok(())
        }
        // The sources block on their sockets: off the async workers.
        Command::Idle => tokio::task::spawn_blocking(print_idle_sources).await?,
    }
}

/// `greenops-agent idle`: what each source sees now, and what would be reported (blocking).
fn print_idle_sources() -> anyhow::Result<()> {
    let mut sources = idle::sources();
    if sources.is_empty() {
        println!("no idle source is available on this platform: idle time is reported as unknown");
    }
    for source in &mut sources {
        match source.read() {
            Ok(r) => println!(
                "{:<18} idle {} s, session {}",
                source.name(),
                r.idle_seconds
                    .map_or("unknown".into(), |s| format!("{s:.1}")),
                r.session.as_str()
            ),
            Err(e) => println!("{:<18} unavailable: {e}", source.name()),
        }
    }
    let chosen = idle::read_first(&mut sources);
    println!(
        "reported           idle {} s, session {} (source: {})",
        chosen
            .idle_seconds
            .map_or("null".into(), |s| format!("{s:.1}")),
        chosen.session.as_str(),
        chosen.source
    );
    Ok(())
}
