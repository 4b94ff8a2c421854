//! Errors that stop the server.
//!
//! The seed wraps everything in `except: pass`, so a port in use and a
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
        /// The operating system's reason, or ours.
        reason: String,
    },
    /// A host name in an address could not be resolved.
    Resolve {
        /// The address as written.
        address: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The configuration is inconsistent (e.g. no listener at all).
    Config(String),
    /// Creating or waiting on the `Poll` itself failed.
    Reactor(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen { address, reason } => write!(f, "cannot listen on {address}: {reason}"),
            Error::Resolve { address, source } => {
                write!(f, "cannot resolve {address}: {}", os_reason(source))
            }
            Error::Config(message) => f.write_str(message),
            Error::Reactor(source) => write!(f, "event loop failed: {}", os_reason(source)),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Resolve { source, .. } | Error::Reactor(source) => Some(source),
            Error::Listen { .. } | Error::Config(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Reactor(err)
    }
}
