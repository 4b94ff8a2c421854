//! Errors that stop the server.
//!
//! The notes' server wraps everything in `except: pass`, so a port in use and a
//! crash look the same: silence. selectd keeps two kinds of failure apart:
//!
//! - A client's error (reset, broken pipe, a line too long) closes that
//!   client only; it is a [`CloseReason`](crate::serve::close::CloseReason),
//!   printed and logged, never an `Err` here.
//! - Only what stops the whole server is an [`Error`]: an address that cannot
//!   be resolved or bound (before anything runs), or the event loop itself
//!   failing. Each message names the culprit and the operating system's
//!   reason, in one line: `cannot listen on 127.0.0.1:10001: Address already
//!   in use`.

use std::fmt;
use std::io;

use crate::net::os_reason;

/// Why the server could not start, or had to stop.
#[derive(Debug)]
pub enum Error {
    /// A listening socket could not be created, bound or put to listen.
    Listen {
        /// The address as written, or as resolved.
        address: String,
        /// Why not.
        reason: ListenError,
    },
    /// A host name in an address could not be resolved.
    Resolve {
        /// The address as written.
        address: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The configuration is inconsistent (e.g. no listener at all).
    Config(ConfigError),
    /// Setting up the loop failed before it ran: what was being done, and
    /// the operating system's reason.
    Setup(&'static str, io::Error),
    /// Waiting on the `Poll` itself failed.
    Reactor(io::Error),
    /// The output file could not be opened.
    Output {
        /// The path, as given.
        path: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// One event loop failed (its `poll` failed, or it panicked), so the
    /// whole server stopped.
    LoopFailed {
        /// Which loop, counting from 1.
        reactor: usize,
        /// What went wrong.
        reason: String,
    },
    /// The output's reader went away (`EPIPE`): the server stopped.
    OutputClosed,
    /// The server stopped with printed output that could not be written
    /// within the grace period (a stalled reader, a full disk).
    OutputUnwritten {
        /// How many bytes were left.
        bytes: usize,
    },
    /// A TLS certificate, key or CA file cannot be used.
    #[cfg(feature = "tls")]
    Tls(crate::net::tls::TlsError),
}

/// Why a listening socket could not be made.
#[derive(Debug)]
pub enum ListenError {
    /// The operating system refused a step (`socket`, `bind`, `listen`, ...).
    Os(io::Error),
    /// A Unix socket path names something that is not a socket; it is never
    /// removed.
    NotASocket,
    /// A Unix socket path is a live socket: another server listens on it.
    InUse,
    /// A Unix socket path is a socket that neither accepts nor refuses in
    /// time (its owner is alive but not accepting).
    Unresponsive,
    /// A socket handed over by the service manager is not one that can be
    /// served; the text says what it is instead.
    Unservable(&'static str),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::Os(err) => f.write_str(&os_reason(err)),
            ListenError::NotASocket => {
                f.write_str("path exists and is not a socket (refusing to remove it)")
            }
            ListenError::InUse => f.write_str("another server is listening on this socket"),
            ListenError::Unresponsive => f.write_str(
                "a socket is there and its owner does not answer (in use; refusing to remove it)",
            ),
            ListenError::Unservable(what) => f.write_str(what),
        }
    }
}

impl From<io::Error> for ListenError {
    fn from(err: io::Error) -> Self {
        ListenError::Os(err)
    }
}

/// Settings that do not make sense together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Nothing to listen on.
    NoListener,
    /// A duration beyond what the clock can add (100 years).
    TooLong(&'static str),
    /// `--max-conns 0`.
    NoConnections,
    /// `--max-line 0`.
    EmptyLines,
    /// `--output-buffer 0`.
    NoOutputBuffer,
    /// `--reactors` out of range.
    Reactors {
        /// What was asked for.
        got: usize,
        /// The most there may be.
        max: usize,
    },
    /// `--metrics` names a Unix or UDP address: HTTP is served over TCP.
    MetricsNotTcp(String),
    /// A `tls://` listener without `--tls-cert` and `--tls-key`.
    TlsWithoutCertificate,
    /// A `tls://` listener in a library built without the `tls` feature.
    TlsNotBuilt,
    /// TLS files given (`--tls-cert`, ...) but no listener speaks TLS:
    /// they would be ignored, and clients served in the clear.
    TlsWithoutListener,
    /// The low watermark above the high one.
    Watermarks {
        /// `--low-watermark`.
        low: usize,
        /// `--high-watermark`.
        high: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoListener => f.write_str("no address to listen on"),
            ConfigError::TooLong(what) => write!(f, "{what} is longer than 100 years"),
            ConfigError::NoConnections => f.write_str("--max-conns must be at least 1"),
            ConfigError::EmptyLines => f.write_str("--max-line must be at least 1 byte"),
            ConfigError::NoOutputBuffer => f.write_str("--output-buffer must be at least 1 byte"),
            ConfigError::Reactors { got, max } => {
                write!(f, "--reactors must be from 1 to {max} (got {got})")
            }
            ConfigError::MetricsNotTcp(address) => write!(
                f,
                "--metrics takes a TCP address, HOST:PORT (got '{address}')"
            ),
            ConfigError::TlsWithoutCertificate => {
                f.write_str("a tls:// listener needs --tls-cert FILE and --tls-key FILE")
            }
            ConfigError::TlsNotBuilt => {
                f.write_str("tls:// listeners need selectd built with the `tls` feature")
            }
            ConfigError::TlsWithoutListener => f.write_str(
                "--tls-cert, --tls-key and --tls-client-ca need a tls:// listener (--listen tls://HOST:PORT)",
            ),
            ConfigError::Watermarks { low, high } => write!(
                f,
                "--low-watermark ({low}) is above --high-watermark ({high})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen { address, reason } => write!(f, "cannot listen on {address}: {reason}"),
            Error::Resolve { address, source } => {
                write!(f, "cannot resolve {address}: {}", os_reason(source))
            }
            Error::Config(err) => err.fmt(f),
            Error::Setup(what, source) => write!(f, "cannot {what}: {}", os_reason(source)),
            Error::Reactor(source) => write!(f, "event loop failed: {}", os_reason(source)),
            Error::Output { path, source } => {
                write!(f, "cannot open output {path}: {}", os_reason(source))
            }
            Error::LoopFailed { reactor, reason } => {
                write!(f, "event loop {reactor} failed: {reason}")
            }
            Error::OutputClosed => f.write_str("stopped because the output was closed"),
            Error::OutputUnwritten { bytes } => {
                write!(f, "stopped with {bytes} bytes of output unwritten")
            }
            #[cfg(feature = "tls")]
            Error::Tls(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Resolve { source, .. }
            | Error::Reactor(source)
            | Error::Setup(_, source)
            | Error::Output { source, .. } => Some(source),
            Error::OutputClosed | Error::OutputUnwritten { .. } | Error::LoopFailed { .. } => None,
            Error::Listen {
                reason: ListenError::Os(source),
                ..
            } => Some(source),
            Error::Config(source) => Some(source),
            Error::Listen { .. } => None,
            #[cfg(feature = "tls")]
            Error::Tls(source) => Some(source),
        }
    }
}
