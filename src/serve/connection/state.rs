//! A connection's state machine: where a client is in its life, and the
//! one method that moves it, which `--trace-loop` narrates.

use super::Connection;
use crate::serve::close::CloseReason;

/// Where a connection is in its life. Every change goes through
/// [`Connection::set_state`], which `--trace-loop` narrates
/// (`client 7: reading -> held-back`).
///
/// ```text
///  awaiting-proxy-header ──header──► reading ◄──replies drained──┐
///         │                  (TLS)   ▲
///         └──header──► tls-handshake ┘ (a TLS listener's client starts here)
///         (trusted proxy)              │   └──replies over the mark──► held-back
///                                      │ stop, output full
///                                      ▼
///                                  draining ──output has room──► closing (stop)
///   EOF, disconnect, a line too long, stop, ... ──► closing (reason) ──flushed──► closed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// From a trusted proxy: its PROXY header is not complete yet, so
    /// nothing is framed and the client is not known.
    AwaitingProxyHeader,
    /// TLS: the handshake is not done, so nothing is framed and the client
    /// is not known yet (see `tls.rs`).
    Handshaking,
    /// Reading and acting on lines.
    Reading,
    /// Too many replies wait for this client: the server reads nothing
    /// more from it until they drain below the low watermark.
    HeldBack,
    /// The server is stopping but cannot read now (its output is full):
    /// what the client sent is read, to the end, once it can.
    Draining,
    /// No more reading; close with this reason once replies are flushed.
    Closing(CloseReason),
}

impl State {
    /// Whether what the client sends is read in this state.
    pub(super) fn reads(self) -> bool {
        matches!(self, State::AwaitingProxyHeader | State::Reading)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::AwaitingProxyHeader => f.write_str("awaiting-proxy-header"),
            State::Handshaking => f.write_str("tls-handshake"),
            State::Reading => f.write_str("reading"),
            State::HeldBack => f.write_str("held-back"),
            State::Draining => f.write_str("draining"),
            State::Closing(reason) => write!(f, "closing ({reason})"),
        }
    }
}

impl Connection {
    /// The one place a connection changes state; `--trace-loop` says so.
    pub(super) fn set_state(&mut self, next: State, trace: bool) {
        if next == self.state {
            return;
        }
        if trace {
            crate::serve::trace::emit(format_args!(
                "  client {}: {} -> {next}",
                self.key, self.state
            ));
        }
        self.state = next;
    }
}
