//! The `selectd` binary: parse the command line, run, map the outcome to an
//! exit code. Errors are printed once, as one line on stderr.

use std::process::ExitCode;

use clap::Parser;
use selectd::Server;
use selectd::cli::{Cli, Command, ServeArgs};

fn main() -> ExitCode {
    // Warnings by default, and the counters that `--stats` asks for.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,selectd::stats=info"),
    )
    .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.into_config() {
        Ok(config) => config,
        Err(message) => return fail(&message, 2),
    };
    match selectd::limits::raise_fd_limit() {
        Ok(limit) => log::debug!("file descriptor limit: {limit}"),
        Err(err) => log::warn!("cannot raise the file descriptor limit: {err}"),
    }
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(err) => return fail(&err.to_string(), 1),
    };
    for addr in server.local_addrs() {
        eprintln!("listening on {addr}");
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err.to_string(), 1),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}
