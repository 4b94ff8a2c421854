//! The output as a user chooses it: where it goes (`--output`), in which
//! format (`--format`), and what happens when it is full (`--output-full`).

use std::fmt;
use std::path::PathBuf;

/// Where printed output goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputTarget {
    /// Standard output (`--output -`).
    #[default]
    Stdout,
    /// Appended to this file, created with mode 0640 if missing, and reopened
    /// on `SIGHUP` (`--output FILE`).
    File(PathBuf),
}

/// What to do when the output queue is full (`--output-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFull {
    /// Stop reading from clients until the queue is down to half: nothing is
    /// lost, and TCP flow control slows the senders.
    #[default]
    Block,
    /// Keep reading and echoing; drop whole lines that do not fit, and count
    /// them (`lines_dropped`).
    Drop,
}

impl std::str::FromStr for OutputFull {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "block" => Ok(OutputFull::Block),
            "drop" => Ok(OutputFull::Drop),
            other => Err(format!("invalid policy '{other}' (expected block or drop)")),
        }
    }
}

/// How lines and connection events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `[127.0.0.1:50312] hello`, plus `* [peer] open` and `* [peer] close: eof`.
    #[default]
    Tagged,
    /// What the notes' server prints: each line with surrounding whitespace stripped,
    /// and `----------------` after each client.
    Plain,
    /// One JSON object per line: `{"event":"line","peer":"...","line":"..."}`;
    /// events `open`, `line` and `close` (with a `reason`).
    Json,
    /// Nothing at all (for benchmarks).
    None,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "tagged" => Ok(Format::Tagged),
            "plain" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            "none" => Ok(Format::None),
            other => Err(format!(
                "invalid format '{other}' (expected tagged, plain, json or none)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tagged => "tagged",
            Format::Plain => "plain",
            Format::Json => "json",
            Format::None => "none",
        })
    }
}

/// The notes' separator, printed after each client in `plain` format.
pub const SEPARATOR: &str = "----------------";
