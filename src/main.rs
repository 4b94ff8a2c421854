//! The `selectd` command: parse, run, map the error to an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use selectd::bench;

/// One reactor serving every client at once, and the tools to load it.
#[derive(Parser)]
#[command(name = "selectd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a line server and measure it (echo, ingest or idle)
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Bench(args) => bench::run(args).map(drop).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
