//! The `selectd` command: parse the arguments, run one subcommand, and turn
//! its error into one line on stderr and an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use selectd::client;

/// The select() line server from the socket notes, done right.
#[derive(Debug, Parser)]
#[command(name = "selectd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to ADDR, send standard input (or --data, or an HTTP GET), print what comes back
    Send(client::SendArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(args) => client::run(args).map_err(|err| (err.exit_code(), err.to_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
