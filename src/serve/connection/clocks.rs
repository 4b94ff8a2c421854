//! A connection's side of the loop's clocks: whether its line-timeout clock
//! must start or stop, and what it does when its time is up (the loop keeps
//! the deadlines themselves, see `event_loop/clocks.rs`).

use std::ops::ControlFlow;

use super::{Connection, State};
use crate::serve::close::CloseReason;
use crate::serve::context::Context;

/// `timed_line` when no line-timeout clock runs (a line number, kept
/// modulo this, never reaches it).
pub(super) const NO_TIMED_LINE: u32 = u32::MAX;

/// How the reactor's line-timeout list must change after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineTimer {
    /// Nothing changed.
    Unchanged,
    /// A new unfinished line began: its clock starts now.
    Start,
    /// No unfinished line any more.
    Stop,
}

impl Connection {
    /// Whether an unfinished line began or ended since the last call: the
    /// reactor starts or stops this connection's line-timeout clock.
    pub(crate) fn line_timer(&mut self) -> LineTimer {
        // While the server holds the client back, it is not the client
        // that is slow: the clock stops, and starts afresh on resuming.
        let held = self.lines.as_ref().filter(|lines| lines.pending() > 0);
        let now = if let Some(lines) = held
            && self.state != State::HeldBack
        {
            // Two calls never see counts four billion lines apart, so the
            // count modulo 2^32 - 1 tells lines apart as well as the count.
            (lines.completed() % u64::from(NO_TIMED_LINE)) as u32
        } else {
            NO_TIMED_LINE
        };
        if now == self.timed_line {
            return LineTimer::Unchanged;
        }
        self.timed_line = now;
        if now != NO_TIMED_LINE {
            LineTimer::Start
        } else {
            LineTimer::Stop
        }
    }

    /// The unfinished line took too long (a slowloris trickling bytes):
    /// what arrived of it is still printed, then the connection closes.
    pub(crate) fn on_line_timeout(&mut self, ctx: &mut Context) -> CloseReason {
        log::info!("{}: line not finished in time", self.label);
        self.print_unfinished_line(ctx);
        CloseReason::LineTimeout
    }

    /// Nothing moved for the idle time-out. Usually the client was silent
    /// (the notes' `if not inp: break`). But while the server holds it back
    /// (backpressure) the server is the one not reading, so the client may
    /// be sending all along: what it failed to do is read its replies, and
    /// the clock (restarted by every byte written to it) timed the output
    /// that made no progress. What it sent of an unfinished line is still
    /// printed: nothing already received is lost.
    pub(crate) fn on_idle_timeout(&mut self, ctx: &mut Context) -> CloseReason {
        if self.awaits_proxy_header() {
            return self.on_proxy_header_late();
        }
        if self.awaits_handshake() {
            return self.on_handshake_late(ctx);
        }
        self.print_unfinished_line(ctx);
        if self.state == State::HeldBack {
            log::info!(
                "{}: {} bytes of replies unread for the idle time-out",
                self.label,
                self.out.len()
            );
            CloseReason::WriteTimeout
        } else {
            CloseReason::Idle
        }
    }

    /// Prints an unfinished line as it stands, when the connection ends
    /// without a clean EOF (a time-out, a reset, a failed write). It is not
    /// acted on (no command, no echo): unlike a last line at EOF, the client
    /// never finished it.
    pub(super) fn print_unfinished_line(&mut self, ctx: &mut Context) {
        let label = &self.label;
        let Some(lines) = &mut self.lines else {
            return;
        };
        let _ = lines.finish(|line| {
            ctx.counters.lines += 1;
            ctx.output.line(label, line.text);
            ControlFlow::Continue(())
        });
        if lines.is_idle() {
            self.lines = None;
        }
    }
}
