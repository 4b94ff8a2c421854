//! Stopping: signals, `stop` from a client or the handle, and the grace
//! period.
//!
//! The notes' server stops when a client says `stop`, dropping whatever the
//! others were saying. Here a stop closes the listeners (after taking the
//! clients already in their backlog), reads what every client had already
//! sent, flushes replies and printed output within `--grace`, and only then
//! lets the loop end. A second signal stops at once.

use std::time::Instant;

use super::EventLoop;
use crate::serve::notify;
use crate::serve::trace;

impl EventLoop {
    pub(super) fn on_signals(&mut self, now: Instant) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        for signal in signals.pending() {
            if signal == signal_hook::consts::SIGHUP {
                // TLS: certificate, key and client CA are read again.
                let reloaded = self.accept.reload_tls();
                if self.ctx.output.reopen() {
                    log::info!("SIGHUP: reopening the output file");
                } else if !reloaded {
                    log::info!("SIGHUP ignored: the output is not a file");
                }
                continue;
            }
            if self.ctx.stop_requested {
                log::warn!("signal {signal} again: stopping now");
                self.ctx.shared.request_stop_now();
                // Stopping now is stopping first: listeners closed, and so on.
                self.stop_if_requested(now);
                self.set_lifecycle(super::Lifecycle::StoppingNow);
            } else {
                log::info!("signal {signal}: stopping");
                self.ctx.stop_requested = true;
                self.ctx.shared.request_stop();
            }
        }
    }

    /// Checked twice a turn: the check is inline, the stop itself not.
    #[inline]
    pub(super) fn stop_if_requested(&mut self, now: Instant) {
        if self.ctx.stop_requested && !self.lifecycle.is_stopping() {
            self.stop_requested_now(now);
        }
    }

    #[cold]
    fn stop_requested_now(&mut self, now: Instant) {
        // Whoever asked (a client of this loop, a signal, the handle),
        // every loop stops.
        self.ctx.shared.request_stop();
        self.begin_stop(now);
    }

    /// Stop gracefully: no new clients (those already in the backlog are
    /// taken); every client's already-sent bytes are read and acted on;
    /// replies are flushed within the grace period.
    pub(super) fn begin_stop(&mut self, now: Instant) {
        log::info!("stopping: {} clients connected", self.connections.len());
        if self.ctx.config.notify {
            notify::stopping();
        }
        if self.ctx.config.trace_loop {
            let open = self.connections.len();
            trace::emit(format_args!("  stopping: {open} clients connected"));
        }
        // Clients already queued in the backlog connected before the stop:
        // accept them (one turn's budget per listener) and serve them like
        // the others, rather than reset them by closing the listener.
        for index in 0..self.accept.len() {
            self.accept_from(index, now);
        }
        for mut listener in self.accept.close_all() {
            let _ = self.ctx.registry.deregister(listener.source());
            // Dropping closes the socket; a Unix listener removes its file.
        }
        self.done_handing();
        for mut socket in self.datagrams.drain(..) {
            let _ = self.ctx.registry.deregister(&mut socket);
        }
        self.set_lifecycle(super::Lifecycle::Stopping {
            grace_until: now + self.ctx.config.grace,
        });
        self.wake_stale = true;
        self.stop_each_client(now);
    }

    /// Asks every client to finish (see `Connection::on_stop`): at the
    /// stop, and again each time a full output has room while stopping,
    /// since clients are read only while the output has room.
    pub(super) fn stop_each_client(&mut self, now: Instant) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            let may_read = self.may_read();
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let status = connection.on_stop(&mut self.ctx, &mut self.scratch, may_read);
            self.settle(key, status, false, now);
        }
    }

    /// This loop hands no more clients to the others (its listeners are
    /// closed, or it failed): said once.
    pub(super) fn done_handing(&mut self) {
        if std::mem::take(&mut self.hands_off) {
            self.ctx.shared.done_handing();
        }
    }

    /// Whether this loop may end: stopping, every client closed (those
    /// still on their way from another loop included), and the output
    /// settled (see `output_settled`).
    pub(super) fn may_end(&mut self, now: Instant) -> bool {
        if !self.lifecycle.is_stopping() {
            return false;
        }
        self.open_handed(now);
        self.connections.is_empty() && !self.ctx.shared.handing() && self.output_settled(now)
    }

    /// Stopping, with every client closed: whether the printed output is
    /// written (or can never be, or the grace period is over, or a second
    /// signal said not to wait). If not, the output queue wakes us once it is.
    pub(super) fn output_settled(&mut self, now: Instant) -> bool {
        match self.lifecycle {
            super::Lifecycle::StoppingNow | super::Lifecycle::Done => true,
            super::Lifecycle::Stopping { grace_until } if grace_until <= now => true,
            _ => self.ctx.output.want_drained(),
        }
    }
}
