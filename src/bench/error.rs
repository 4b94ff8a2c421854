//! Why a run failed, with its culprit named.
//!
//! One enum for the whole load generator, because every failure ends up as
//! the same thing: one `error: ...` line on stderr and an exit code (2 for
//! what the flags asked, 1 for what the run met). Each variant carries what
//! the line needs to name the culprit: the flag, the address, the
//! connection number, the byte offset.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::plan::CONNECT_TIMEOUT;
use crate::net::os_reason;
use crate::net::units::format_duration;

/// Why a benchmark run failed.
#[derive(Debug)]
pub enum BenchError {
    /// ADDR's host name did not resolve.
    Resolve {
        /// ADDR as typed.
        addr: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// A flag (or a product of flags) asks for more than bench can do here.
    Flag {
        /// The flag, e.g. `--conns`.
        flag: &'static str,
        /// Its value as typed.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A connection could not be made (refused, unreachable, out of ports...).
    Connect {
        /// The server, as written.
        target: String,
        /// The source address bound, if one was.
        source_ip: Option<IpAddr>,
        /// What connect said.
        source: io::Error,
    },
    /// Some connects had not finished when the connect deadline passed.
    ConnectTimeout {
        /// The server, as written.
        target: String,
        /// Connects still pending.
        pending: usize,
    },
    /// The server closed a connection that was still expected to work.
    Closed {
        /// Connection number, from 0.
        conn: usize,
        /// Bytes that had come back on it before the close.
        received: u64,
    },
    /// An echoed byte differs from the byte sent at the same offset.
    Mismatch {
        /// Connection number, from 0.
        conn: usize,
        /// Offset in the connection's byte stream, from 0.
        offset: u64,
        /// The byte that was sent.
        expected: u8,
        /// The byte that came back.
        got: u8,
    },
    /// The server sent back more bytes than were sent to it.
    Unexpected {
        /// Connection number, from 0.
        conn: usize,
        /// Offset in the connection's byte stream of the first extra byte.
        offset: u64,
    },
    /// A read or write on an established connection failed.
    Io {
        /// Connection number, from 0.
        conn: usize,
        /// The operation, `read` or `write`.
        op: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// Lines went out but not one byte came back: most likely a server that
    /// does not echo.
    NoReply {
        /// How long bench waited (the warm-up and the window).
        waited: Duration,
    },
    /// Ingest: the server took no byte for this long (its socket buffers
    /// stayed full): most likely a server that does not read.
    Stalled {
        /// How long no byte went out.
        waited: Duration,
    },
    /// The window ended with nothing completed in it (the report is not
    /// printed: it would hold no sample).
    NothingCompleted {
        /// The mode, for the message.
        mode: &'static str,
        /// Failures by kind, as text (`refused 1200, reset 3`), if any.
        errors: Option<String>,
    },
    /// The reactor itself failed (creating or waiting on the `Poll`).
    Reactor(io::Error),
    /// A latency histogram could not be created.
    Histogram(hdrhistogram::CreationError),
    /// Writing the `.hgrm` or `.svg` file failed.
    Output {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Idle mode: fewer connections held than asked for (the report was printed).
    Idle {
        /// Connections asked for.
        wanted: usize,
        /// Connections established at some point.
        established: usize,
        /// Connections still open at the end.
        held: usize,
        /// The first failure seen, as text.
        first_failure: Option<String>,
    },
    /// A load thread died; a bug, reported instead of a panic.
    Thread,
}

impl BenchError {
    /// True for errors in the flags themselves (exit code 2, like `serve`),
    /// false for failures of the run (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, BenchError::Flag { .. })
    }

    pub(crate) fn flag(flag: &'static str, value: impl fmt::Display, reason: String) -> BenchError {
        BenchError::Flag {
            flag,
            value: value.to_string(),
            reason,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Resolve { addr, source } => {
                write!(f, "cannot resolve {addr}: {}", os_reason(source))
            }
            BenchError::Flag {
                flag,
                value,
                reason,
            } => write!(f, "{flag} {value}: {reason}"),
            BenchError::Connect {
                target,
                source_ip: Some(ip),
                source,
            } => write!(
                f,
                "cannot connect to {target} from {ip}: {}",
                os_reason(source)
            ),
            BenchError::Connect { target, source, .. } => {
                write!(f, "cannot connect to {target}: {}", os_reason(source))
            }
            BenchError::ConnectTimeout { target, pending } => write!(
                f,
                "cannot connect to {target}: {pending} connects still pending after {}s",
                CONNECT_TIMEOUT.as_secs()
            ),
            BenchError::Closed { conn, received } => write!(
                f,
                "connection {conn} closed by the server after {received} bytes came back"
            ),
            BenchError::Mismatch {
                conn,
                offset,
                expected,
                got,
            } => write!(
                f,
                "connection {conn}: echoed byte {offset} is {got:#04x}, sent {expected:#04x}"
            ),
            BenchError::Unexpected { conn, offset } => write!(
                f,
                "connection {conn}: server sent more than it was sent (byte {offset} was never sent)"
            ),
            BenchError::Io { conn, op, source } => {
                write!(f, "connection {conn}: {op}: {}", os_reason(source))
            }
            BenchError::NoReply { waited } => write!(
                f,
                "no reply within {}: is the server running with --echo?",
                format_duration(*waited)
            ),
            BenchError::Stalled { waited } => write!(
                f,
                "no progress within {}: is the server reading?",
                format_duration(*waited)
            ),
            BenchError::NothingCompleted { mode, errors } => {
                write!(f, "{mode}: nothing completed in the window")?;
                match errors {
                    Some(errors) => write!(f, "; errors: {errors}"),
                    None => Ok(()),
                }
            }
            BenchError::Reactor(e) => write!(f, "load generator reactor: {}", os_reason(e)),
            BenchError::Histogram(e) => write!(f, "latency histogram: {e}"),
            BenchError::Output { path, reason } => {
                write!(f, "cannot write {}: {reason}", path.display())
            }
            BenchError::Idle {
                wanted,
                established,
                held,
                first_failure,
            } => {
                write!(
                    f,
                    "idle: {held} of {wanted} connections held ({established} established)"
                )?;
                if let Some(why) = first_failure {
                    write!(f, "; first failure: {why}")?;
                }
                Ok(())
            }
            BenchError::Thread => write!(f, "a load generator thread panicked"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Resolve { source, .. }
            | BenchError::Connect { source, .. }
            | BenchError::Io { source, .. }
            | BenchError::Reactor(source) => Some(source),
            BenchError::Histogram(source) => Some(source),
            _ => None,
        }
    }
}
