//! The command line: flags in, validated configs out.
//!
//! This is the only module that knows flag names. Every `*Args` type lives
//! here, one file per subcommand; each value is parsed into its type by clap
//! (see [`values`]), and [`usage`] turns any mistake into one line naming the
//! flag and the value (`error: --idle-timeout: invalid duration 'soon' ...`)
//! instead of clap's usage dump. The man page and the shell completions are
//! generated from the same definitions ([`manual`]), so they cannot drift.

use clap::{Parser, Subcommand};

#[cfg(feature = "bench")]
mod bench;
pub mod manual;
mod send;
mod serve;
pub mod usage;
pub mod values;

#[cfg(feature = "bench")]
pub use bench::BenchArgs;
pub use send::{SEND_AFTER_HELP, SendArgs};
pub use serve::{SERVE_AFTER_HELP, ServeArgs};

/// selectd: the select() line server from the socket notes, done right.
#[derive(Debug, Parser)]
#[command(name = "selectd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once, at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve line clients: print what they send (the notes' server).
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),
    /// Load a line server and measure it (echo, ingest, idle or churn).
    #[cfg(feature = "bench")]
    Bench(BenchArgs),
    /// Connect to ADDR, send standard input (or --data, or an HTTP GET), print what comes back.
    #[command(after_help = SEND_AFTER_HELP)]
    Send(SendArgs),
    /// Print a manual page (roff) on standard output (`selectd man serve | man -l -`), or write them all (--dir).
    Man(manual::ManArgs),
    /// Print a shell completion script on standard output.
    Completions(manual::CompletionsArgs),
}
