//! When this loop itself fails: its `poll` fails, or it panics.
//!
//! One client's error closes that client; the loop's own failure must end
//! the whole server, loudly and without leaks, whichever loop it is: the
//! others must not serve on without it, nor wait for it for ever.

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use super::EventLoop;
use crate::serve::close::CloseReason;
use crate::serve::error::Error;

impl EventLoop {
    /// This loop failed (`reason`): the server must not serve on without
    /// it, nor hang waiting for it. So: say which loop failed and why; ask
    /// every loop to stop (the others drain their clients as at any stop);
    /// close this loop's listeners, so the kernel sends it no more clients;
    /// pass on the clients handed to it and not yet taken; close its own
    /// clients (each with a close event, counted, so the open count and
    /// `--max-conns` stay true). The error makes the server's exit status 1.
    pub(super) fn fail(&mut self, reason: String) -> Error {
        let reactor = self.ctx.reactor + 1;
        log::error!("event loop {reactor} failed: {reason}; stopping the server");
        self.ctx.stop_requested = true;
        self.ctx.shared.request_stop();
        let handed = self.ctx.shared.close_inbox(self.ctx.reactor);
        let loops = self.ctx.shared.loops();
        for (stream, peer) in handed {
            let others = (1..loops).map(|step| (self.ctx.reactor + step) % loops);
            let mut client = Some((stream, peer));
            for to in others {
                match client
                    .take()
                    .map(|(s, p)| self.ctx.shared.hand_off(to, s, p))
                {
                    Some(Err(back)) => client = Some(back),
                    _ => break,
                }
            }
            if client.is_some() {
                self.ctx.shared.closed(); // Dropped: no loop is left to serve it.
            }
        }
        self.done_handing();
        let cleaned = panic::catch_unwind(AssertUnwindSafe(|| self.abandon()));
        if cleaned.is_err() {
            // Cleaning up failed too: at least give back their places.
            for _ in 0..self.connections.len() {
                self.ctx.shared.closed();
            }
        }
        Error::LoopFailed { reactor, reason }
    }

    /// A failed loop lets go of everything it holds (see `fail`).
    fn abandon(&mut self) {
        for mut listener in self.accept.close_all() {
            let _ = self.ctx.registry.deregister(listener.source());
        }
        for mut socket in self.datagrams.drain(..) {
            let _ = self.ctx.registry.deregister(&mut socket);
        }
        self.close_all(CloseReason::Error);
        self.ctx.output.flush();
        self.publish(Instant::now());
    }
}

/// What a panic said, when it said it with a string (as `panic!` does).
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
