//! TLS: the handshake, a step before a connection reads lines.
//!
//! A client of a `tls://` listener arrives as a TLS stream
//! (`serve::tls`). Until its handshake completes nothing is framed and
//! `open` is not printed, so that every event names the client as the
//! handshake revealed it (with a client certificate, `#cn=NAME`). The
//! handshake is driven by the same readiness events as everything else:
//! a readable socket moves it on (it may yield no plaintext at all), a
//! writable one sends what the socket did not take. From a trusted proxy
//! a PROXY header comes first, in clear; it is read here and what follows
//! it handed to the session.
//!
//! Once the handshake is done, the stream reads and writes plaintext and
//! the rest of the connection does not know it is TLS. A handshake that
//! fails or never finishes (`--tls-handshake-timeout`, or the idle
//! time-out if that is shorter) closes with reason `tls`, counted, and
//! logged at debug level with rustls's reason (the alert).

#[cfg(feature = "tls")]
use std::io::{self, Read};

use super::Connection;
#[cfg(feature = "tls")]
use super::State;
#[cfg(feature = "tls")]
use crate::net::stream::Stream;
use crate::serve::close::CloseReason;
use crate::serve::context::Context;
#[cfg(feature = "tls")]
use crate::serve::trace;

/// Without TLS built in, no stream is ever handshaking.
#[cfg(not(feature = "tls"))]
impl Connection {
    pub(super) fn drive_handshake(
        &mut self,
        _ctx: &mut Context,
        _scratch: &mut [u8],
    ) -> Result<bool, CloseReason> {
        Ok(false)
    }
}

impl Connection {
    /// Whether the TLS handshake (or the PROXY header before it) is due.
    pub(crate) fn awaits_handshake(&self) -> bool {
        self.stream.is_handshaking()
    }

    /// The handshake did not finish in time.
    pub(crate) fn on_handshake_late(&mut self, ctx: &mut Context) -> CloseReason {
        ctx.counters.tls_handshake_failures += 1;
        log::debug!("{}: TLS handshake not finished in time", self.label);
        CloseReason::Tls
    }

    /// Moves the handshake on as far as the socket allows; `Ok(true)` if
    /// bytes moved. Reads a PROXY header first when one is due (`scratch`
    /// empty: not now). Once done, the peer is named and `open` printed.
    #[cfg(feature = "tls")]
    pub(super) fn drive_handshake(
        &mut self,
        ctx: &mut Context,
        scratch: &mut [u8],
    ) -> Result<bool, CloseReason> {
        let mut moved = false;
        while let Stream::Tls(session) = &mut self.stream
            && session.is_cleartext()
            && !scratch.is_empty()
        {
            let chunk = match session.read(scratch) {
                Ok(0) => None,
                Ok(n) => Some(&scratch[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.handshake_failed(&err, ctx)),
            };
            moved = true;
            if let Some(rest) = self.take_proxy_header(chunk, ctx)?
                && let Stream::Tls(session) = &mut self.stream
                && let Err(err) = session.begin(rest)
            {
                return Err(self.handshake_failed(&err, ctx));
            }
        }
        let Stream::Tls(session) = &mut self.stream else {
            return Ok(moved);
        };
        if session.is_cleartext() {
            return Ok(moved);
        }
        let progress = match session.handshake() {
            Ok(progress) => progress,
            Err(err) => return Err(self.handshake_failed(&err, ctx)),
        };
        moved |= progress.read + progress.written > 0;
        if ctx.config.trace_loop && (progress.read + progress.written > 0 || progress.done) {
            trace::emit(format_args!(
                "  conn {} {}: tls handshake: read {} bytes, wrote {} bytes{}",
                self.key,
                self.label,
                progress.read,
                progress.written,
                if progress.done {
                    ", done"
                } else {
                    ", waiting for the peer"
                }
            ));
        }
        if progress.done {
            let (name, described) = (session.peer_common_name(), session.describe());
            // The address part is already rendered for the format (and an
            // IP address renders as itself); the name is escaped here, then
            // the whole rendered again, which leaves what is escaped as is.
            let named = crate::serve::tls::label_with_name(&self.label, name.as_deref());
            self.label = ctx.output.label(&named);
            ctx.counters.tls_handshakes += 1;
            log::debug!("{}: TLS handshake done: {described}", self.label);
            if ctx.config.trace_loop {
                trace::emit(format_args!(
                    "  conn {} {}: tls established: {described}",
                    self.key, self.label
                ));
            }
            ctx.output.open(&self.label);
            self.set_state(State::Reading, ctx.config.trace_loop);
        }
        Ok(moved)
    }

    #[cfg(feature = "tls")]
    fn handshake_failed(&mut self, err: &io::Error, ctx: &mut Context) -> CloseReason {
        ctx.counters.tls_handshake_failures += 1;
        log::debug!("{}: TLS handshake failed: {err}", self.label);
        if ctx.config.trace_loop {
            trace::emit(format_args!(
                "  conn {} {}: tls handshake failed: {err}",
                self.key, self.label
            ));
        }
        self.peer_gone = true;
        CloseReason::Tls
    }
}
