//! The `selectd` binary: parse the command line, run, map the outcome to an
//! exit code. Errors are printed once, as one line on stderr.

use std::process::ExitCode;

use clap::Parser;
use selectd::cli::{Cli, Command, ServeArgs};
use selectd::{Server, bench};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(args) => match bench::run(args) {
            Ok(_report) => ExitCode::SUCCESS,
            Err(err) => fail(&err.to_string(), if err.is_usage() { 2 } else { 1 }),
        },
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.into_config() {
        Ok(config) => config,
        Err(message) => return fail(&message, 2),
    };
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
