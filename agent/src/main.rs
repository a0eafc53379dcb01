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
    /// Enrollment token; visible to every user in `ps` — prefer --enrollment-token-file or
    /// the environment [env: GREENOPS_ENROLLMENT_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    enrollment_token: Option<String>,
    /// File holding the enrollment token (first non-empty line; `-` reads standard input)
    /// [env: GREENOPS_ENROLLMENT_TOKEN_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    enrollment_token_file: Option<PathBuf>,
    /// State directory: identity, credential, seq, spool [env: GREENOPS_STATE_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds between heartbeats, default 60 [env: GREENOPS_HEARTBEAT_INTERVAL_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_interval_seconds: Option<u64>,
    /// Seconds between CPU samples, default 5 [env: GREENOPS_SAMPLE_INTERVAL_SECONDS].
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    sample_interval_seconds: Option<u64>,
    /// Extra CA certificate (PEM) to trust [env: GREENOPS_CA_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL [env: GREENOPS_PROXY].
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
    /// Show the credential state, last delivery and spool depth (changes nothing).
    Status,
    /// Show what each idle source reports right now.
    Idle,
    /// Windows only: the entry point the Windows service is registered with.
    #[command(hide = true)]
    Service,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Colours only for a person at a terminal, never into journald or a log file.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(colours)
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
        enrollment_token_file: cli.enrollment_token_file,
        state_dir: cli.state_dir,
        heartbeat_interval_seconds: cli.heartbeat_interval_seconds,
        sample_interval_seconds: cli.sample_interval_seconds,
        ca_file: cli.ca_file,
        proxy: cli.proxy,
    };
    let mut settings = AgentSettings::load(cli.config.as_deref(), &flags)?;
    match cli.command {
        Command::Run => {
            settings.read_token_file()?;
            run::Agent::new(settings)?
                .run(greenops_runtime::shutdown_signal())
                .await
        }
        Command::Service => {
            settings.read_token_file()?;
            service::run(settings).await
        }
        Command::Enroll => {
            settings.read_token_file()?;
            let machine_id = run::Agent::new(settings)?.enroll().await?;
            println!("enrolled as machine {machine_id}");
            Ok(())
        }
        Command::Status => print_status(&settings),
        // The sources block on their sockets: off the async workers.
        Command::Idle => tokio::task::spawn_blocking(print_idle_sources).await?,
    }
}

/// `greenops-agent status`: reads the state directory and changes nothing in it (it may not
/// even exist yet).
fn print_status(settings: &AgentSettings) -> anyhow::Result<()> {
    let dir = &settings.state_dir;
    let identity = state::State::read_identity(dir)?;
    let status = run::Status::load(dir).unwrap_or_default();
    let (depth, bytes) = spool::Spool::peek(dir)
        .map_err(|e| state::state_error("read the spool in", &dir.join("spool.bin"), &e))?;
    let server = match (settings.server_url.as_str(), status.server_url.as_deref()) {
        ("", Some(used)) => format!("{used} (used by the last run; none configured here)"),
        ("", None) => "(not configured: --server or GREENOPS_SERVER_URL)".to_string(),
        (configured, Some(used)) if configured.trim_end_matches('/') != used => {
            format!("{configured} (the last run used {used})")
        }
        (configured, _) => configured.to_string(),
    };
    println!("server:          {server}");
    if dir.exists() {
        println!("state directory: {}", dir.display());
    } else {
        println!(
            "state directory: {} (does not exist yet; `run` or `enroll` creates it)",
            dir.display()
        );
    }
    println!(
        "machine key:     {}",
        identity
            .as_ref()
            .map_or("(none yet)", |i| i.machine_key.as_str())
    );
    println!(
        "credential:      {}",
        match identity.as_ref().map(|i| (&i.machine_id, &i.agent_token)) {
            Some((Some(id), Some(_))) => format!("enrolled as machine {id}"),
            _ => "not enrolled".into(),
        }
    );
    {
        {
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
            println!("spool:           {depth} heartbeats, {bytes} bytes");
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
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and subcommand says what it is for in `--help`.
    #[test]
    fn every_option_has_help() {
        let command = <Cli as clap::CommandFactory>::command();
        let mut missing = Vec::new();
        for arg in command.get_arguments() {
            if !matches!(arg.get_id().as_str(), "help" | "version") && arg.get_help().is_none() {
                missing.push(arg.get_id().to_string());
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none() && !sub.is_hide_set() {
                missing.push(sub.get_name().to_string());
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
