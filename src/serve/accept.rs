//! The notes' `accept()`, for a server that must stay responsive while
//! clients pour in.
//!
//! The notes accept one client and serve it until it leaves. Here a
//! listener's readiness means "one or more clients are queued in the
//! backlog", and they are taken one `accept` at a time, each becoming a
//! connection, with three bounds the notes never needed:
//!
//! - **A budget per turn** (redis's `MAX_ACCEPTS_PER_CALL`): a connect storm
//!   must not keep the loop accepting while connected clients wait. A
//!   listener that spends its budget is served again next turn through the
//!   ready queue, like a connection that spent its read budget.
//! - **`--max-conns`**: a client beyond it is accepted (so it does not wait
//!   in the backlog for nothing), told `error: server full`, and closed with
//!   a linger (see `linger`), so that it reads why.
//!   Refusals are logged at most once a second, so a flood cannot flood the
//!   log too.
//! - **Out of file descriptors** (`EMFILE`/`ENFILE`): retrying at once would
//!   spin (the backlog stays readable), so accepting pauses with a growing
//!   back-off on the loop's deadline machinery, and resumes explicitly (no
//!   new edge will announce the clients queued meanwhile).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::net::stream::{Peer, Stream};
use crate::serve::listen::Listener;
use crate::serve::stats::Counters;

/// Sent to a client beyond `--max-conns` before it is closed.
pub const SERVER_FULL: &[u8] = b"error: server full\r\n";

/// At most this many clients are accepted from one listener per turn (as
/// redis's `MAX_ACCEPTS_PER_CALL`).
pub(crate) const ACCEPTS_PER_TURN: usize = 1000;

/// Back-off after `accept` fails for lack of file descriptors: start here,
/// double on each failure, never beyond the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One step of accepting from a listener.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// A client to serve.
    Client(Stream, Peer),
    /// A client was refused (server full) and told so: close it with a
    /// linger, so that it reads why.
    Refused(Stream),
    /// A client gave up while queued: go on.
    Skipped,
    /// Nothing more to accept now (the backlog is empty, or accepting is
    /// paused): stop until the next event or the end of the pause.
    Done,
}

/// The listeners, and the state of accepting from them.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listeners: Vec<Listener>,
    /// By listener: whether this loop alone has it, so that with several
    /// loops its clients are handed round to all (a Unix socket, a socket
    /// inherited from a service manager).
    shared: Vec<bool>,
    max_conns: usize,
    /// Set while accepting is paused after running out of file descriptors.
    paused_until: Option<Instant>,
    backoff: Duration,
    /// Refusals not yet logged, and when the last log line was written.
    refusals_unlogged: u64,
    last_refusal_log: Option<Instant>,
    /// TLS: what turns a TLS listener's clients into TLS streams.
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<crate::serve::tls::Terminator>>,
}

impl Acceptor {
    pub fn new(listeners: Vec<Listener>, shared: Vec<bool>, max_conns: usize) -> Self {
        Acceptor {
            listeners,
            shared,
            max_conns,
            paused_until: None,
            backoff: BACKOFF_MIN,
            refusals_unlogged: 0,
            last_refusal_log: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS listeners' clients become TLS streams through `terminator`.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, terminator: std::sync::Arc<crate::serve::tls::Terminator>) -> Self {
        self.tls = Some(terminator);
        self
    }

    /// `SIGHUP`: the TLS certificate, key and client CA are read again;
    /// `false` if there is no TLS to reload.
    pub fn reload_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.reload();
            return true;
        }
        false
    }

    /// Whether listener `index` is this loop's alone (see `shared`).
    pub fn is_shared(&self, index: usize) -> bool {
        self.shared.get(index).copied().unwrap_or(false)
    }

    /// Whether any listener is this loop's alone, so that its clients are
    /// handed to the other loops.
    pub fn hands_off(&self) -> bool {
        self.shared.iter().any(|&only| only)
    }

    pub fn listener(&self, index: usize) -> Option<&Listener> {
        self.listeners.get(index)
    }

    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// When a pause for lack of file descriptors ends, if one is on.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Ends a pause that is due; `true` if the listeners should be tried
    /// again now.
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
            return true;
        }
        false
    }

    /// Stops accepting for good (the server is stopping): the listeners are
    /// handed back to be deregistered and dropped.
    pub fn close_all(&mut self) -> Vec<Listener> {
        std::mem::take(&mut self.listeners)
    }

    /// Accepts one client from listener `index`; `admit` counts it among
    /// the open connections if `--max-conns` allows, in one atomic step
    /// (`Shared::try_open`), and says whether it did.
    pub fn accept_one(
        &mut self,
        index: usize,
        admit: impl FnOnce() -> bool,
        now: Instant,
        counters: &mut Counters,
    ) -> Accepted {
        if self.paused_until.is_some() {
            return Accepted::Done;
        }
        let Some(listener) = self.listeners.get(index) else {
            return Accepted::Done;
        };
        loop {
            let tls = listener.is_tls();
            return match listener.accept() {
                Ok((stream, peer)) => {
                    self.backoff = BACKOFF_MIN;
                    if !admit() {
                        return Accepted::Refused(self.refuse(stream, &peer, tls, now, counters));
                    }
                    // TLS: a TLS listener's client becomes a TLS stream.
                    #[cfg(feature = "tls")]
                    if let Some(terminator) = self.tls.as_ref().filter(|_| tls) {
                        return match terminator.wrap(stream, &peer) {
                            Ok(stream) => Accepted::Client(stream, peer),
                            Err(err) => {
                                log::warn!("{peer}: cannot start a TLS session: {err}");
                                counters.errors += 1;
                                Accepted::Skipped
                            }
                        };
                    }
                    Accepted::Client(stream, peer)
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => Accepted::Done,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up while queued: nothing to serve.
                Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => Accepted::Skipped,
                Err(err) => {
                    // EMFILE/ENFILE (out of file descriptors) and anything
                    // unexpected: retrying at once would spin, so pause.
                    counters.errors += 1;
                    self.pause(&err, now);
                    Accepted::Done
                }
            };
        }
    }

    fn pause(&mut self, err: &io::Error, now: Instant) {
        log::warn!(
            "accept failed: {err}; pausing new connections for {:?}",
            self.backoff
        );
        self.paused_until = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// `--max-conns` are open: tell the client and close it at once.
    fn refuse(
        &mut self,
        mut stream: Stream,
        peer: &Peer,
        tls: bool,
        now: Instant,
        counters: &mut Counters,
    ) -> Stream {
        counters.refused_full += 1;
        // A fresh socket's send buffer is empty: this short write fits.
        // (A TLS client could not read it before a handshake: it is just
        // closed.)
        if !tls {
            let _ = stream.write(SERVER_FULL);
        }
        self.refusals_unlogged += 1;
        if self
            .last_refusal_log
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1))
        {
            log::warn!(
                "server full ({} connections): refused {} (latest {peer})",
                self.max_conns,
                self.refusals_unlogged
            );
            self.refusals_unlogged = 0;
            self.last_refusal_log = Some(now);
        }
        stream
    }
}
