//! Acting on the lines of one read: print, echo, reply, obey.
//!
//! The notes' server compares each `recv` with `'disconnect\r\n'` and
//! prints the rest. Here each complete line that framing yields is one of
//! the commands (`disconnect`, `stop`, `stats`), a likely cross-protocol
//! attack (HTTP sent to a line server), or text to print and, with `--echo`,
//! send back. Echoes of consecutive lines of one read go out in one write,
//! straight from the read buffer; only what the socket refuses is queued.

use std::io;
use std::ops::{ControlFlow, Range};

use mio::Token;

use super::State;
use crate::net::stream::Stream;
use crate::proto::command::{Command, is_cross_protocol, may_matter};
use crate::proto::line::Line;
use crate::serve::close::CloseReason;
use crate::serve::context::Context;
use crate::serve::send_queue::SendQueue;
use crate::serve::trace;

/// Sent to a remote client that says `stop` without `--allow-remote-stop`.
pub const STOP_NOT_LOCAL: &[u8] = b"error: stop is only accepted from local clients\r\n";

/// Sent to a remote client that says `stats`.
pub const STATS_NOT_LOCAL: &[u8] = b"error: stats is only accepted from local clients\r\n";

/// Acting on the lines of one read: borrows what that needs, for as long as
/// the read is being framed.
pub(super) struct Act<'a, 'c> {
    pub(super) token: Token,
    pub(super) stream: &'a mut Stream,
    pub(super) out: &'a mut SendQueue,
    /// The peer is on this machine (may `stop`, may read `stats`).
    pub(super) local: bool,
    pub(super) label: &'a str,
    /// Set when this client's `stop` is obeyed.
    pub(super) sent_stop: &'a mut bool,
    pub(super) ctx: &'a mut Context,
    /// The read being framed; `echo_run` is a range of it.
    pub(super) chunk: &'c [u8],
    /// Echoed lines not yet written: consecutive lines of one read go out
    /// in one write.
    pub(super) echo_run: Range<usize>,
    pub(super) next_state: Option<State>,
    pub(super) failure: Option<io::Error>,
    /// The peer is known to be gone: print, but send nothing.
    pub(super) peer_gone: bool,
}

impl Act<'_, '_> {
    /// One complete line: a command is obeyed, anything else printed (and
    /// echoed with `--echo`).
    pub(super) fn on_line(&mut self, line: Line<'_>) -> ControlFlow<()> {
        self.ctx.counters.lines += 1;
        crate::failpoint::failpoint!("client-line", line.text == b"failpoint", |_| {
            ControlFlow::Continue(())
        });
        // The common line, plain text, is told by its first byte.
        let may_matter = may_matter(line.text);
        if may_matter && !line.continues && is_cross_protocol(line.text) {
            // Close at once: nothing this connection sent from here on,
            // nor the replies owed to it, is worth anything.
            log::warn!(
                "{}: HTTP sent to a line server: likely cross-protocol attack, closing",
                self.label
            );
            self.out.clear();
            self.echo_run = self.echo_run.start..self.echo_run.start;
            self.next_state = Some(State::Closing(CloseReason::CrossProtocol));
            return ControlFlow::Break(());
        }
        // A piece of a line longer than any limit (`--max-line off`) is
        // never a command, however it ends.
        let command = (may_matter && line.is_whole())
            .then(|| Command::parse(line.text))
            .flatten();
        match command {
            Some(Command::Disconnect) => {
                // As redis does for QUIT: flush the replies so far, then close;
                // whatever the client sent after `disconnect` is not acted on.
                self.next_state = Some(State::Closing(CloseReason::Disconnect));
                return ControlFlow::Break(());
            }
            Some(Command::Stop) if self.local || self.ctx.config.allow_remote_stop => {
                log::info!("{}: stop requested", self.label);
                if self.ctx.config.trace_loop {
                    let key = self.token.0;
                    trace::emit(format_args!("  conn {key} {}: stop requested", self.label));
                }
                self.ctx.stop_requested = true;
                *self.sent_stop = true;
            }
            Some(Command::Stop) => {
                log::warn!("{}: refused stop from a remote client", self.label);
                self.reply(STOP_NOT_LOCAL);
            }
            Some(Command::Stats) if self.local || self.ctx.config.allow_remote_stop => {
                // Every counter at its largest (20 digits each), and 20
                // digits for each of up to 128 loops, fit.
                let mut reply = [0u8; 4096];
                let len = self.ctx.stats_reply(&mut reply);
                self.reply(&reply[..len]);
            }
            Some(Command::Stats) => self.reply(STATS_NOT_LOCAL),
            None => {
                self.ctx.output.line(self.label, line.text);
                if self.ctx.config.echo {
                    self.echo(&line);
                }
            }
        }
        // A failed reply does not stop the framing: the lines the client
        // sent are still printed (see `Connection::receive`).
        ControlFlow::Continue(())
    }

    fn echo(&mut self, line: &Line<'_>) {
        match &line.span {
            Some(span) if span.start == self.echo_run.end => self.echo_run.end = span.end,
            Some(span) => {
                self.flush_echo_run();
                self.echo_run = span.clone();
            }
            None => {
                self.flush_echo_run();
                self.send(line.raw);
            }
        }
    }

    pub(super) fn flush_echo_run(&mut self) {
        if !self.echo_run.is_empty() {
            let chunk = self.chunk;
            self.send(&chunk[self.echo_run.clone()]);
        }
        self.echo_run = self.echo_run.end..self.echo_run.end;
    }

    /// A reply of our own, in order after any echo before it.
    pub(super) fn reply(&mut self, bytes: &[u8]) {
        self.flush_echo_run();
        self.send(bytes);
    }

    /// Writes now if nothing is queued; queues what the socket does not take.
    fn send(&mut self, bytes: &[u8]) {
        if self.failure.is_some() || self.peer_gone {
            return;
        }
        match self.out.send(self.stream, bytes) {
            Ok(sent) => self.ctx.counters.bytes_out += sent as u64,
            Err(err) => self.failure = Some(err),
        }
    }
}
