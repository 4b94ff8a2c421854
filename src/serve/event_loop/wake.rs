//! When the output is full: stop reading, and resume when it has room.
//!
//! This is backpressure for the whole loop, as `SendQueue`'s watermarks are
//! for one client: while the output queue is over `--output-buffer`, no
//! client is read (their bytes wait in the kernel, and TCP slows them down)
//! and no client's idle or line clock runs, since it is the server, not the
//! client, that is silent. The output's writer wakes the loop once half is
//! written.

use std::time::Instant;

use mio::Token;

use super::EventLoop;
use super::lifecycle::Reading;
use crate::serve::tokens;

impl EventLoop {
    /// Another thread woke us: the handle asked to stop, or the output queue
    /// has room again, has emptied, or was closed (by its reader, or by its
    /// writer's death).
    pub(super) fn on_wake(&mut self, now: Instant) {
        if self.ctx.shared.stop_requested() {
            self.ctx.stop_requested = true;
        }
        self.open_handed(now);
        if self.ctx.output.closed().is_some() && !self.output_closed {
            // The reader went away or the writer died: every loop stops, and
            // the first to notice says why.
            self.output_closed = true;
            self.ctx.output.report_closed();
            self.ctx.stop_requested = true;
        }
        if self.reading_paused() && self.ctx.output.has_room() {
            self.resume_reading(now);
        }
    }

    /// Whether clients may be read now. Not while the output queue is full
    /// (`--output-full block`): what they send waits in the kernel, and TCP
    /// flow control slows them down, until the writer has made room.
    #[inline]
    pub(super) fn may_read(&mut self) -> bool {
        if self.reading_paused() {
            return false;
        }
        if self.ctx.output.is_full() {
            return self.may_read_with_output_full();
        }
        true
    }

    /// The output is over its bound: pause reading, unless its policy is to
    /// drop lines instead.
    #[cold]
    fn may_read_with_output_full(&mut self) -> bool {
        if self.ctx.output.pause_producers() {
            self.set_reading(Reading::PausedForOutput);
            log::debug!(
                "output full ({} bytes waiting): not reading from clients",
                self.ctx.output.pending()
            );
            return false;
        }
        true
    }

    /// The output has room again: every client and UDP socket may have
    /// bytes that arrived meanwhile (and whose edge was spent), so each is
    /// served again; the clients' clocks (idle, line, handshake, PROXY
    /// header) restart, since it was the server, not they, that was silent.
    pub(super) fn resume_reading(&mut self, now: Instant) {
        self.set_reading(Reading::Open);
        log::debug!("output has room again: reading from clients");
        for (key, _) in self.connections.iter() {
            self.ready.wake(Token(key));
            if let Some(idle) = &mut self.idle {
                idle.touch(key, now);
            }
            if let Some(lines) = &mut self.line_deadlines
                && lines.contains(key)
            {
                lines.touch(key, now);
            }
            // A TLS handshake or a PROXY header could not be read either.
            if self.handshakes.contains(key) {
                self.handshakes.touch(key, now);
            }
            if let Some(headers) = &mut self.proxy_headers
                && headers.contains(key)
            {
                headers.touch(key, now);
            }
        }
        for index in 0..self.datagrams.len() {
            self.ready.wake(tokens::datagram_token(index));
        }
        if self.lifecycle.is_stopping() {
            // Stopping: the clients not read at the stop are read now.
            self.stop_each_client(now);
        }
    }
}
