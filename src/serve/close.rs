//! Why a connection ended.
//!
//! The notes' server has one way out of a client's loop (`break`) and prints
//! nothing about why. Here every exit names its reason, and the reason is
//! used in three places: the printed close event, the log line, and the
//! per-reason counters. It lives apart from the connection because output
//! and counters use it as much as the connection does.

use std::fmt;
use std::io;

/// Why a connection closed: printed in close events and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side (`recv` returned no bytes).
    Eof,
    /// The client sent `disconnect`.
    Disconnect,
    /// The client was silent for the idle time-out.
    Idle,
    /// The connection was reset by the peer.
    Reset,
    /// A write found the peer gone (`EPIPE`).
    BrokenPipe,
    /// The server stopped.
    Stop,
    /// A line was longer than `--max-line`.
    LineTooLong,
    /// A line took longer than `--line-timeout` from its first byte (slowloris).
    LineTimeout,
    /// The client sent HTTP (`POST `, `Host:`): a likely cross-protocol attack.
    CrossProtocol,
    /// A trusted proxy's connection did not open with a valid PROXY header
    /// in time (`--proxy-protocol`): missing, malformed, too long or late.
    ProxyHeader,
    /// Another socket error; the error itself is logged.
    Error,
    /// The server held the client back (it did not read its replies, so
    /// the server stopped reading from it) and its pending output made no
    /// progress for the idle time-out.
    WriteTimeout,
    /// TLS failed: a handshake that failed or did not finish in time, an
    /// alert, a corrupt record, or a stream cut without `close_notify`.
    Tls,
}

impl CloseReason {
    /// Every reason, in a fixed order (see [`index`](Self::index)).
    pub const ALL: [CloseReason; 13] = [
        CloseReason::Eof,
        CloseReason::Disconnect,
        CloseReason::Idle,
        CloseReason::Reset,
        CloseReason::BrokenPipe,
        CloseReason::Stop,
        CloseReason::LineTooLong,
        CloseReason::LineTimeout,
        CloseReason::CrossProtocol,
        CloseReason::ProxyHeader,
        CloseReason::Error,
        CloseReason::WriteTimeout,
        CloseReason::Tls,
    ];

    /// This reason's position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The word used in output: `eof`, `disconnect`, `idle`, `reset`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Disconnect => "disconnect",
            CloseReason::Idle => "idle",
            CloseReason::Reset => "reset",
            CloseReason::BrokenPipe => "broken-pipe",
            CloseReason::Stop => "stop",
            CloseReason::LineTooLong => "line-too-long",
            CloseReason::LineTimeout => "line-timeout",
            CloseReason::CrossProtocol => "cross-protocol",
            CloseReason::ProxyHeader => "proxy-header",
            CloseReason::Error => "error",
            CloseReason::WriteTimeout => "write-timeout",
            CloseReason::Tls => "tls",
        }
    }

    pub(crate) fn from_io(err: &io::Error) -> Self {
        #[cfg(feature = "tls")]
        if crate::net::tls::is_tls_failure(err) {
            return CloseReason::Tls;
        }
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => CloseReason::Reset,
            io::ErrorKind::BrokenPipe => CloseReason::BrokenPipe,
            _ => CloseReason::Error,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
