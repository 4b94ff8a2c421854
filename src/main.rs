//! The `selectd` binary: parse the command line, run, map the outcome to an
//! exit code. Errors are printed once, as one line on stderr.
//!
//! stderr may be a closed pipe (`selectd serve 2>&- ...`, or a log reader
//! that died) or stalled: a diagnostic must neither turn a clean exit into a
//! panic (as `eprintln!` does when the write fails) nor hold up the server.
//! So every line goes through the server's bounded stderr queue, which drops
//! what it cannot write.

use std::ffi::OsString;
use std::io;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use selectd::cli::{Cli, Command, SendArgs, ServeArgs, manual, usage};
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
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err, &args),
    };
    let code = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Send(args) => send(args),
        Command::Bench(args) => match args.into_config().and_then(bench::run) {
            Ok(_report) => ExitCode::SUCCESS,
            Err(err) => fail(&err.to_string(), if err.is_usage() { 2 } else { 1 }),
        },
        Command::Man(args) if args.dir.is_some() => {
            let dir = args.dir.unwrap_or_default();
            match manual::write_man_pages(&dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(err) => fail(&err.to_string(), 1),
            }
        }
        Command::Man(args) => {
            let mut stdout = io::stdout().lock();
            match manual::write_man_page(args.subcommand.as_deref(), &mut stdout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) if err.kind() == io::ErrorKind::InvalidInput => fail(&err.to_string(), 2),
                Err(err) => stdout_failed(&err),
            }
        }
        Command::Completions(args) => {
            match manual::write_completions(args.shell, &mut io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => stdout_failed(&err),
            }
        }
    };
    // Warnings queued for stderr (`send --tls-insecure`'s, say) reach it
    // before the exit, success or not: its writer thread may not have run
    // yet on a busy machine.
    selectd::serve::flush_stderr(STDERR_GRACE);
    code
}

/// `--help` and `--version` print as clap prints them (exit 0); a bare
/// `selectd` prints the help on stderr (exit 2); anything else is one line.
fn usage_error(err: &clap::Error, args: &[OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout (`selectd --help | head -1`) is not a failure.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(2)
        }
        _ => fail(&usage::one_line(err, args), 2),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // Fault injection for the tests (`FAILPOINTS=name=action`), in builds
    // with the `failpoints` feature only.
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    // SAFETY: nothing has started a thread yet (parsing flags and setting up
    // the logger start none; the stderr queue starts on its first line), as
    // unsetting the variables requires.
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
        // Before any loop runs, a plain write: no stderr thread is started
        // for it (a server that logs nothing then runs none). One `write`
        // for the whole line, so that a log record written meanwhile by the
        // stderr thread cannot land inside it.
        let line = format!("listening on {addr}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    for addr in server.metrics_addrs() {
        let _ = writeln!(std::io::stderr().lock(), "metrics on http://{addr}/metrics");
    }
    match server.run() {
        Ok(()) => {
            selectd::serve::flush_stderr(STDERR_GRACE);
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err.to_string(), 1),
    }
}

fn send(args: SendArgs) -> ExitCode {
    match args.into_config().and_then(|config| client::run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        // Codes are 1..=6 (see `SendError::exit_code`), so they fit a u8.
        Err(err) => fail(&err.to_string(), u8::try_from(err.exit_code()).unwrap_or(1)),
    }
}

/// How long the last words on stderr may hold up the exit (a stalled
/// stderr must not keep the process alive).
const STDERR_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Writing stdout failed: a closed pipe (`| head`) is the reader's choice;
/// anything else (a full disk) lost what was asked for.
fn stdout_failed(err: &io::Error) -> ExitCode {
    if err.kind() == io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    fail(&format!("cannot write standard output: {err}"), 1)
}

fn fail(message: &str, code: u8) -> ExitCode {
    say(&format!("error: {message}"));
    selectd::serve::flush_stderr(STDERR_GRACE);
    ExitCode::from(code)
}

/// One line on stderr; if stderr is gone, nobody is listening, and the
/// exit code still tells the outcome.
fn say(line: &str) {
    selectd::serve::stderr_line(format_args!("{line}"));
}
