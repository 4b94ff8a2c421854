//! Clients in and out: `accept`, hand-off between loops, and the one exit.
//!
//! A listener's event means one or more clients wait in the backlog; they
//! are accepted up to a budget per turn (the rest next turn, through the
//! ready queue). With several loops, a client of a listener that only this
//! loop has is handed to the loops in turn. Every connection, whatever ends
//! it, leaves through [`EventLoop::close`].

use std::time::Instant;

use mio::Token;

use super::EventLoop;
use crate::net::stream::{Peer, Stream};
use crate::serve::accept::{ACCEPTS_PER_TURN, Accepted};
use crate::serve::close::CloseReason;
use crate::serve::connection::Connection;
use crate::serve::tokens;
use crate::serve::trace;

impl EventLoop {
    /// The notes' `accept()`, until the backlog is empty or this turn's
    /// budget is spent (then again next turn).
    pub(super) fn accept_from(&mut self, index: usize, now: Instant) {
        if self.lifecycle.is_stopping() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let shared = &self.ctx.shared;
            match self
                .accept
                .accept_one(index, || shared.try_open(), now, &mut self.ctx.counters)
            {
                Accepted::Client(stream, peer) => {
                    // It counts against `--max-conns` from here on.
                    let kept = match self.hand_off_to(index) {
                        Some(to) => self.ctx.shared.hand_off(to, stream, peer).err(),
                        None => Some((stream, peer)),
                    };
                    // Not handed (or that loop takes no more): served here.
                    if let Some((stream, peer)) = kept {
                        self.open(stream, peer, now);
                    }
                }
                Accepted::Refused(stream) => {
                    self.lingering.start(stream, &self.ctx.registry, now);
                    self.wake_stale = true;
                }
                Accepted::Skipped => {}
                Accepted::Done => {
                    // Out of descriptors, accepting may have paused: a
                    // deadline to end the pause.
                    self.wake_stale |= self.accept.paused_until().is_some();
                    self.ready.served(tokens::listener_token(index), false);
                    return;
                }
            }
        }
        self.ready.served(tokens::listener_token(index), true);
    }

    /// With several loops, a client accepted from a listener that only this
    /// loop has (a Unix socket, an inherited socket) goes to the loops in
    /// turn: which one, if not this.
    /// Once the server is stopping, clients are kept: the others may be
    /// closing their last connections, and a client served here at once is
    /// served within the grace period all the same.
    pub(super) fn hand_off_to(&mut self, index: usize) -> Option<usize> {
        let loops = self.ctx.shared.loops();
        if loops < 2
            || !self.accept.is_shared(index)
            || self.ctx.stop_requested
            || self.ctx.shared.stop_requested()
        {
            return None;
        }
        let to = self.next_hand_off % loops;
        self.next_hand_off = self.next_hand_off.wrapping_add(1);
        (to != self.ctx.reactor).then_some(to)
    }

    /// Opens the clients another loop accepted and handed to this one.
    /// They connected before any stop reached this loop: while stopping,
    /// each is served as every client is at a stop (what it already sent is
    /// read and acted on), never dropped.
    pub(super) fn open_handed(&mut self, now: Instant) {
        let mut handed = std::mem::take(&mut self.handed);
        self.ctx.shared.take_handed(self.ctx.reactor, &mut handed);
        for (stream, peer) in handed.drain(..) {
            let Some(key) = self.open(stream, peer, now) else {
                continue;
            };
            if self.lifecycle.is_stopping() {
                let may_read = self.may_read();
                if let Some(connection) = self.connections.get_mut(key) {
                    let status = connection.on_stop(&mut self.ctx, &mut self.scratch, may_read);
                    self.settle(key, status, false, now);
                }
            }
        }
        self.handed = handed;
    }

    /// A new client: a connection in this loop's slab, with its token (its
    /// key, returned). It already counts in the server's open connections.
    pub(super) fn open(&mut self, stream: Stream, peer: Peer, now: Instant) -> Option<usize> {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if !tokens::is_connection_key(key) {
            log::error!("{peer}: no token left for a new connection");
            self.ctx.shared.closed();
            return None;
        }
        match Connection::new(Token(key), stream, peer, &mut self.ctx) {
            Ok(connection) => {
                if let Some(headers) = &mut self.proxy_headers
                    && connection.awaits_proxy_header()
                {
                    self.wake_stale |= headers.touch(key, now);
                }
                if connection.awaits_handshake() {
                    self.wake_stale |= self.handshakes.touch(key, now);
                }
                entry.insert(connection);
                self.ctx.counters.accepted += 1;
                self.ctx.counters.open += 1;
                if self.ctx.config.trace_loop {
                    let label = self.connection_label(key);
                    trace::emit(format_args!("  accepted {label}"));
                }
                if let Some(idle) = &mut self.idle {
                    self.wake_stale |= idle.touch(key, now);
                }
                Some(key)
            }
            Err(err) => {
                log::warn!("cannot register a new connection: {err}");
                self.ctx.shared.closed();
                None
            }
        }
    }

    /// The single exit, for every reason: forget the connection's deadlines
    /// and queue entry, count the reason, and let it close itself.
    pub(super) fn close(&mut self, key: usize, reason: CloseReason) {
        if self.ctx.config.trace_loop {
            let label = self.connection_label(key);
            trace::emit(format_args!("  {label}: closed: {reason}"));
        }
        let Some(connection) = self.connections.try_remove(key) else {
            return;
        };
        if let Some(idle) = &mut self.idle {
            idle.remove(key);
        }
        if let Some(lines) = &mut self.line_deadlines {
            lines.remove(key);
        }
        if let Some(headers) = &mut self.proxy_headers {
            headers.remove(key);
        }
        self.handshakes.remove(key);
        self.ready.forget(Token(key));
        self.ctx.shared.closed();
        self.ctx.counters.count_close(reason);
        if let Some(stream) = connection.close(reason, &mut self.ctx) {
            self.lingering
                .start(stream, &self.ctx.registry, Instant::now());
            self.wake_stale = true;
        }
    }

    pub(super) fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, reason);
        }
    }
}
