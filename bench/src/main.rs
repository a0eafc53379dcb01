//! `greenops-bench`: durable ingest of a `greenops serve` child process measured against a
//! ceiling endpoint, then every acknowledged heartbeat verified in the store (BENCHMARKS.md).

mod ceiling;
mod load;
mod phases;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// Measure durable ingest against a ceiling endpoint, then verify every heartbeat.
#[derive(Debug, Parser)]
#[command(name = "greenops-bench", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The benchmark's ceiling: an endpoint that only parses heartbeat JSON (started by the
    /// benchmark itself as a child process).
    #[command(hide = true)]
    Ceiling {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Time the what-if savings over days of synthetic raw heartbeats (PostgreSQL).
    WhatIf {
        /// The `greenops` binary (default: the one beside this binary).
        #[arg(long, value_name = "FILE")]
        collector: Option<PathBuf>,
        /// The PostgreSQL database to fill (use an empty one).
        #[arg(long, value_name = "URL")]
        database_url: String,
        #[arg(long, default_value_t = 10_000)]
        machines: usize,
        /// Days of raw heartbeats per machine.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Seconds between heartbeats.
        #[arg(long, default_value_t = 60)]
        interval: i64,
        /// Timed rounds per policy (the median is printed).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Keep the machines and raw heartbeats an earlier run with the same --machines,
        /// --days and --interval wrote to this database (the rollup is brought up to date
        /// and the questions timed again).
        #[arg(long)]
        reuse: bool,
    },
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The `greenops` binary to benchmark (default: the one beside this binary).
    #[arg(long, value_name = "FILE")]
    collector: Option<PathBuf>,
    /// Simulated agents, each with its own credential.
    #[arg(long, default_value_t = 100_000)]
    machines: usize,
    /// Seconds of each fixed-rate phase (a sweep step lasts half as long), per side:
    /// greenops, then the ceiling.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Heartbeats per second (open loop); default: as fast as answers come (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Database to benchmark (default: SQLite in a temporary directory).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Concurrent keep-alive connections (default: try 32, 128 and 512 and keep the fastest).
    #[arg(long)]
    connections: Option<usize>,
    /// Fixed-rate (open-loop) phases after the closed-loop maximum, as percentages of it,
    /// for latency where a deployment runs; `--levels 0` for none.
    #[arg(long, value_delimiter = ',', default_value = "25,50,90",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    levels: Vec<u32>,
    /// Skip the ceiling run.
    #[arg(long)]
    no_ceiling: bool,
    /// Rounds of admin machine-list queries (6 kinds, 50 rows each) timed after the run;
    /// 0 skips them.
    #[arg(long, default_value_t = 30)]
    list_rounds: usize,
    /// Also time the machine list while the load runs (lowers the ingest figures).
    #[arg(long)]
    list_under_load: bool,
    /// Also scrape `/metrics` every second while the load runs (from a quarter to three
    /// quarters of it), as Prometheus would while machines change.
    #[arg(long)]
    metrics_under_load: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Ceiling { listen }) => ceiling::serve(listen).await,
        Some(Command::WhatIf {
            collector,
            database_url,
            machines,
            days,
            interval,
            rounds,
            reuse,
        }) => match collector.map_or_else(collector_beside_me, Ok) {
            Ok(exe) => {
                run::what_if(
                    &exe,
                    &database_url,
                    machines,
                    days,
                    interval,
                    rounds,
                    reuse,
                    &|line| eprintln!("{line}"),
                )
                .await
            }
            Err(e) => Err(e),
        },
        None => bench(cli.bench).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `greenops` beside this binary (`target/release/greenops` for `target/release/greenops-bench`).
fn collector_beside_me() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating the greenops-bench binary")?;
    let dir = me
        .parent()
        .context("the greenops-bench binary has no directory")?;
    Ok(dir.join(format!("greenops{}", std::env::consts::EXE_SUFFIX)))
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let collector = match args.collector {
        Some(path) => path,
        None => collector_beside_me()?,
    };
    let options = run::BenchOptions {
        collector,
        machines: args.machines,
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
        database_url: args.database_url,
        connections: args.connections,
        levels: args.levels.into_iter().filter(|l| *l > 0).collect(),
        skip_ceiling: args.no_ceiling,
        scrapes: 5,
        list_rounds: args.list_rounds,
        list_under_load: args.list_under_load,
        metrics_under_load: args.metrics_under_load,
    };
    let report = run::run(options.clone(), &|line| eprintln!("{line}")).await?;
    print!("{}", report.summary(&options));
    if let Err(e) = report.verified {
        anyhow::bail!("verification failed: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["greenops-bench", "--machines", "10", "--no-ceiling"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!((cli.bench.machines, cli.bench.no_ceiling), (10, true));
        let cli =
            Cli::try_parse_from(["greenops-bench", "ceiling", "--listen", "127.0.0.1:1"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Ceiling { .. })));
    }
}
