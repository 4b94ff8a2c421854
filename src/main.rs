//! The `selectd` binary: parse the command line, run, map the outcome to an
//! exit code. Errors are printed once, as one line on stderr.

use std::process::ExitCode;

use clap::Parser;
use selectd::cli::{Cli, Command, ServeArgs};
use selectd::{Config, Server, bench, send as client};

fn main() -> ExitCode {
    // Warnings by default, and the counters that `--stats` asks for.
    // Log records go to stderr through a bounded queue and a thread of
    // their own, so a stalled stderr never stalls the server.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,selectd::stats=info"),
    )
    .target(env_logger::Target::Pipe(Box::new(selectd::serve::Stderr)))
    .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_error(&err),
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Send(args) => send(args),
        Command::Bench(args) => match bench::run(args) {
            Ok(_report) => ExitCode::SUCCESS,
            Err(err) => fail(&err.to_string(), if err.is_usage() { 2 } else { 1 }),
        },
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // SAFETY: nothing has started a thread yet (parsing flags and setting up
    // the logger start none), as unsetting the variables requires.
    let activated = match unsafe { selectd::take_activated_sockets() } {
        Ok(activated) => activated,
        Err(err) => return fail(&err.to_string(), 1),
    };
    let mut config = match args.into_config() {
        Ok(config) => config,
        Err(message) => return fail(&message, 2),
    };
    if config.listen.is_empty() && activated.is_empty() {
        config.listen = Config::default().listen;
    }
    match selectd::net::limits::raise_fd_limit() {
        Ok(limit) => log::debug!("file descriptor limit: {limit}"),
        Err(err) => log::warn!("cannot raise the file descriptor limit: {err}"),
    }
    let server = match Server::bind_with(config, activated) {
        Ok(server) => server,
        Err(err) => return fail(&err.to_string(), 1),
    };
    for addr in server.listening() {
        selectd::serve::stderr_line(format_args!("listening on {addr}"));
    }
    match server.run() {
        Ok(()) => {
            selectd::serve::flush_stderr(STDERR_GRACE);
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err.to_string(), 1),
    }
}

fn send(args: client::SendArgs) -> ExitCode {
    match client::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // Codes are 1..=6 (see `SendError::exit_code`), so they fit a u8.
        Err(err) => fail(&err.to_string(), u8::try_from(err.exit_code()).unwrap_or(1)),
    }
}

/// How long the last words on stderr may hold up the exit (a stalled
/// stderr must not keep the process alive).
const STDERR_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn fail(message: &str, code: u8) -> ExitCode {
    selectd::serve::stderr_line(format_args!("error: {message}"));
    selectd::serve::flush_stderr(STDERR_GRACE);
    ExitCode::from(code)
}

/// clap's own error, as one line naming the flag (its usage footer
/// dropped); `--help` and `--version` print as clap prints them.
fn clap_error(err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return ExitCode::from(2);
    }
    let text = err.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .filter(|l| !l.starts_with("Usage:"))
        .collect();
    let line = line.join(" ");
    fail(line.strip_prefix("error: ").unwrap_or(&line), 2)
}
