//! How a connection stops reading: the end of the stream, a reset, a peer
//! found gone by a write, or the server stopping.
//!
//! Each keeps the rule that nothing already received is lost: what the
//! client finished is acted on, and an unfinished last line is printed. Only
//! a clean end of stream makes that last line a line to obey (the notes'
//! client ends its request with `shutdown(1)`); at a reset, a failed write or
//! a time-out the client never finished it, so it is printed, not obeyed.

use std::io::{self, Read};

use super::{Connection, STOP_DRAIN_LIMIT, State, Status};
use crate::proto::command::{Ahead, look_for_stop};
use crate::serve::close::CloseReason;
use crate::serve::context::Context;

/// `Connection::looked_ahead` counts in steps of this many bytes (one byte
/// of the struct covers a 64 KiB window).
const LOOK_STEP: usize = 256;

/// `Connection::looked_ahead` once looking again at the unread bytes can
/// tell nothing new.
const LOOKED_THROUGH: u8 = u8::MAX;

impl Connection {
    /// The server is stopping: read what this client has already sent (what
    /// the kernel holds for us, up to `STOP_DRAIN_LIMIT` so a client that
    /// keeps streaming cannot hold the stop), act on every line, print an
    /// unfinished last line (obeyed only if the client's EOF came too), and
    /// close once the replies are flushed.
    ///
    /// With `may_read` false (the server's output is full), nothing is read
    /// or closed yet: the loop calls again once the output has room, or
    /// closes every client when the grace period ends, whichever is first.
    /// So the lines a client sent before the stop are printed, in order,
    /// if the output drains in time, and memory stays bounded meanwhile.
    pub(crate) fn on_stop(
        &mut self,
        ctx: &mut Context,
        scratch: &mut [u8],
        may_read: bool,
    ) -> Status {
        if let State::Closing(_) = self.state {
            return self.settle(ctx, false, false);
        }
        if self.awaits_handshake() {
            // TLS: it has not said anything yet.
            return Status::Closed(CloseReason::Stop);
        }
        if !may_read && (self.state.reads() || self.state == State::Draining) {
            self.set_state(State::Draining, ctx.config.trace_loop);
            return self.settle(ctx, false, false);
        }
        // The watermarks still hold: a client held back for not reading its
        // replies keeps its unread bytes in the kernel (never received),
        // and reading stops as soon as a client's replies pass the mark.
        let mut remaining = if self.state.reads() || self.state == State::Draining {
            STOP_DRAIN_LIMIT
        } else {
            0
        };
        let mut eof = false;
        while remaining > 0 {
            let want = scratch.len().min(remaining);
            let n = match self.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return self.on_read_error(&err, ctx),
            };
            remaining = remaining.saturating_sub(n);
            ctx.counters.bytes_in += n as u64;
            if let Err(reason) = self.receive(Some(&scratch[..n]), ctx) {
                return Status::Closed(reason);
            }
            match self.state {
                State::Closing(_) => return self.settle(ctx, true, false),
                State::HeldBack => break,
                State::AwaitingProxyHeader
                | State::Handshaking
                | State::Reading
                | State::Draining => {}
            }
        }
        if !eof {
            // The client may still be writing this line: print what came.
            self.print_unfinished_line(ctx);
        } else if let Err(reason) = self.receive(None, ctx) {
            return Status::Closed(reason);
        }
        if !matches!(self.state, State::Closing(_)) {
            self.set_state(State::Closing(CloseReason::Stop), ctx.config.trace_loop);
        }
        self.settle(ctx, true, false)
    }

    /// Whether this client has sent a `stop` that the server has not read
    /// yet, because its output is full and it reads no client: looked for
    /// in what the kernel holds (at most `scratch.len()` bytes, peeked, not
    /// taken), behind the line already begun. Only a client that may stop
    /// the server is asked. Nothing is consumed: once the output has room,
    /// every line before the `stop` is read and printed in order.
    ///
    /// Every arrival while reading waits raises an event and a look, so a
    /// look judges only the lines after those the last one judged (it
    /// still copies the window from its start: a peek cannot begin further
    /// on), and none is taken once the answer cannot change before a read:
    /// what the client sent ends the connection before any `stop`, or the
    /// whole window was looked through.
    pub(crate) fn stop_waiting_unread(&mut self, ctx: &Context, scratch: &mut [u8]) -> bool {
        let may_stop = self.local || ctx.config.allow_remote_stop;
        if !may_stop || self.state != State::Reading || self.looked_ahead == LOOKED_THROUGH {
            return false;
        }
        let Ok(n) = self.stream.peek(scratch) else {
            return false;
        };
        let held = match &self.lines {
            Some(lines) => lines.held_line(),
            None => Some(&b""[..]),
        };
        let from = usize::from(self.looked_ahead) * LOOK_STEP;
        match look_for_stop(held, &scratch[..n], from, ctx.config.max_line) {
            Ahead::Stop => true,
            Ahead::Never => {
                self.looked_ahead = LOOKED_THROUGH;
                false
            }
            Ahead::Clear { clear } if n < scratch.len() => {
                let steps = (clear / LOOK_STEP).min(usize::from(LOOKED_THROUGH - 1));
                self.looked_ahead = u8::try_from(steps).unwrap_or(0);
                false
            }
            Ahead::Clear { .. } => {
                self.looked_ahead = LOOKED_THROUGH;
                false
            }
        }
    }

    /// End of stream: the client shut down its sending side. An unfinished
    /// last line is still a line; pending replies are flushed before closing
    /// (so a client that half-closes gets every byte back, then EOF).
    pub(super) fn on_eof(&mut self, ctx: &mut Context) -> Status {
        if let Err(reason) = self.receive(None, ctx) {
            return Status::Closed(reason);
        }
        if !matches!(self.state, State::Closing(_)) {
            let reason = if self.sent_stop {
                CloseReason::Stop
            } else {
                CloseReason::Eof
            };
            self.set_state(State::Closing(reason), ctx.config.trace_loop);
        }
        self.settle(ctx, true, false)
    }

    /// A read failed. A reset loses nothing we hold: the unfinished last
    /// line is printed (not obeyed: only a clean EOF finishes a line)
    /// before the connection closes.
    pub(super) fn on_read_error(&mut self, err: &io::Error, ctx: &mut Context) -> Status {
        ctx.counters.errors += 1;
        let reason = CloseReason::from_io(err);
        if reason == CloseReason::Error {
            log::warn!("{}: read failed: {err}", self.label);
        } else if reason == CloseReason::Tls {
            log::debug!("{}: TLS: {err}", self.label);
        }
        // The peer is gone: there is nobody to send to. Its unfinished line
        // is printed, not obeyed: it never finished it.
        self.peer_gone = true;
        self.out.clear();
        self.print_unfinished_line(ctx);
        Status::Closed(reason)
    }

    /// A write found the peer gone, but what it sent before going may still
    /// wait in the kernel (on Linux, reads after a reset return the queued
    /// bytes first, then the error). Read it, bounded, and print every line
    /// (nothing is sent any more); then the unfinished one, printed but not
    /// obeyed. Without this, the lines behind the failed reply were lost and
    /// a piece of one was printed as if it were a line.
    pub(super) fn drain_gone_peer(&mut self, ctx: &mut Context) {
        // A rare path: a buffer of its own, not the loop's scratch.
        let mut buffer = vec![0u8; 16 * 1024];
        let mut remaining = STOP_DRAIN_LIMIT;
        while remaining > 0 && !matches!(self.state, State::Closing(_)) {
            let n = match self.stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock, or the reset itself: all read.
            };
            remaining = remaining.saturating_sub(n);
            ctx.counters.bytes_in += n as u64;
            if self.receive(Some(&buffer[..n]), ctx).is_err() {
                break;
            }
        }
        self.print_unfinished_line(ctx);
    }

    pub(super) fn write_failed(&mut self, err: &io::Error, ctx: &mut Context) -> CloseReason {
        ctx.counters.errors += 1;
        let reason = CloseReason::from_io(err);
        if reason == CloseReason::Error {
            log::warn!("{}: write failed: {err}", self.label);
        }
        self.peer_gone = true;
        self.out.clear();
        reason
    }
}
