//! The event loop: one thread, one `mio::Poll`, every client at once.
//!
//! The seed server waits in `select([conn], [], [], TIMEOUT)` for one client
//! while the others queue in the backlog. Here one `poll` waits for every
//! socket at once (listeners, clients, the waker, signals) and returns the
//! ones that are ready; the loop serves each and waits again.
//!
//! One turn of the loop:
//!
//! 1. Close clients whose idle deadline has passed (the seed's
//!    `if not inp: break`), and act on other deadlines that fell due.
//! 2. Flush printed output, once per turn, just before sleeping.
//! 3. `poll` until an event or the nearest deadline. With no deadline at
//!    all, `poll` waits forever: an idle server makes no system calls.
//! 4. Dispatch each event by token. A connection closed earlier in the same
//!    batch is skipped (as redis's `ae.c` checks "if the event is still
//!    valid"); a stale event for a reused slot is harmless, because every
//!    handler tolerates spurious readiness.
//! 5. Serve connections left "ready again" (budget spent with data still
//!    queued), so one busy client cannot starve the others.
//! 6. If someone asked to stop, stop gracefully.
//!
//! # Readiness rules
//!
//! mio is edge-triggered: an event says readiness *changed*, once. So a
//! listener accepts until `WouldBlock`, a connection reads until `WouldBlock`
//! (or a short read, or its budget), and anything left behind must be
//! remembered here, because the kernel will not mention it again.
//! `Interrupted` (EINTR) is retried, from `poll` and from every call, never
//! treated as a failure. Events may be spurious: a handler that finds
//! nothing to do does nothing.
//!
//! # Errors
//!
//! One client's error closes that client only. The loop itself fails only if
//! `poll` does, which means the process is in trouble.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::Config;
use crate::connection::{CloseReason, Connection, Context, Status};
use crate::deadline::DeadlineList;
use crate::error::Error;
use crate::listen::{BoundAddr, ListenOptions, Listener};
use crate::output::Output;
use crate::slots::{self, Slot};
use crate::stream::{Peer, Stream};

/// Events fetched per `poll` call; more simply wait for the next turn.
const EVENTS_PER_TURN: usize = 1024;

/// Size of the one read buffer shared by every connection.
const SCRATCH_SIZE: usize = 64 * 1024;

/// Back-off after `accept` fails for lack of file descriptors: start here,
/// double on each failure, never beyond the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A bound server, ready to [`run`](Server::run).
///
/// ```
/// use std::io::{Read, Write};
/// use selectd::{Config, Server, output::MemorySink};
///
/// let sink = MemorySink::new();
/// let server = Server::bind(Config::listening_on("127.0.0.1:0".parse()?))?
///     .with_output(sink.clone());
/// let addr = server.local_addrs()[0].to_string(); // tcp://127.0.0.1:PORT
/// let running = std::thread::spawn(move || server.run());
///
/// let mut client = std::net::TcpStream::connect(addr.trim_start_matches("tcp://"))?;
/// client.write_all(b"merhaba\nstop\n")?;
/// running.join().expect("server thread")?;
/// assert!(sink.contents().contains("] merhaba\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    poll: Poll,
    config: Config,
    listeners: Vec<Listener>,
    connections: Slab<Connection>,
    /// Idle deadlines by connection key; `None` when `--idle-timeout off`.
    idle: Option<DeadlineList>,
    /// Keys to read again next turn, and a spare list to swap with.
    ready_again: Vec<usize>,
    ready_spare: Vec<usize>,
    output: Output,
    scratch: Box<[u8]>,
    waker: Arc<Waker>,
    stop_flag: Arc<AtomicBool>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// A client, the handle or a signal asked to stop; acted on after the batch.
    stop_requested: bool,
    /// A second signal: stop without waiting for output to drain.
    stop_now: bool,
    /// Set once stopping: when to give up flushing and close everyone.
    grace_deadline: Option<Instant>,
    /// Set while accepting is paused after running out of file descriptors.
    accept_paused_until: Option<Instant>,
    accept_backoff: Duration,
}

/// Stops a running server from another thread.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    waker: Arc<Waker>,
    stop_flag: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Asks the server to stop gracefully, exactly as a `stop` line does.
    pub fn stop(&self) {
        self.stop_flag.store(true, Ordering::SeqCst);
        if let Err(err) = self.waker.wake() {
            log::error!("cannot wake the server to stop it: {err}");
        }
    }
}

impl Server {
    /// Creates the `Poll` and binds every listener, so that addresses are
    /// known (and errors reported) before anything runs. Output goes to
    /// stdout unless [`with_output`](Server::with_output) says otherwise.
    pub fn bind(config: Config) -> Result<Server, Error> {
        config.validate().map_err(Error::Config)?;
        let poll = Poll::new()?;
        let options = ListenOptions {
            backlog: config.backlog,
            unix_mode: config.unix_mode,
        };
        let mut listeners = Vec::new();
        for address in &config.listen {
            listeners.extend(Listener::bind_all(address, options)?);
        }
        for (index, listener) in listeners.iter_mut().enumerate() {
            poll.registry().register(
                listener.source(),
                slots::listener_token(index),
                Interest::READABLE,
            )?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), slots::WAKER)?);
        let signals = if config.handle_signals {
            let mut signals = signal_hook_mio::v1_0::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
            ])?;
            poll.registry()
                .register(&mut signals, slots::SIGNALS, Interest::READABLE)?;
            Some(signals)
        } else {
            None
        };
        Ok(Server {
            poll,
            idle: config.idle_timeout.map(DeadlineList::new),
            output: Output::new(config.format, Box::new(io::stdout())),
            config,
            listeners,
            connections: Slab::new(),
            ready_again: Vec::new(),
            ready_spare: Vec::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            waker,
            stop_flag: Arc::new(AtomicBool::new(false)),
            signals,
            stop_requested: false,
            stop_now: false,
            grace_deadline: None,
            accept_paused_until: None,
            accept_backoff: ACCEPT_BACKOFF_MIN,
        })
    }

    /// Prints to `sink` instead of stdout (e.g. a [`MemorySink`](crate::output::MemorySink)).
    pub fn with_output(mut self, sink: impl Write + Send + 'static) -> Self {
        self.output = Output::new(self.config.format, Box::new(sink));
        self
    }

    /// Where the server listens, with real ports: `tcp://127.0.0.1:43617`.
    pub fn local_addrs(&self) -> Vec<BoundAddr> {
        self.listeners.iter().map(Listener::bound_addr).collect()
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            waker: Arc::clone(&self.waker),
            stop_flag: Arc::clone(&self.stop_flag),
        }
    }

    /// Runs until stopped (by a `stop` line, a [`ServerHandle`], or a signal),
    /// then returns once every client is closed and all output is flushed.
    pub fn run(mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        loop {
            let now = Instant::now();
            self.on_deadlines(now);
            if self.grace_deadline.is_some() && self.connections.is_empty() {
                break;
            }
            let timeout = self.poll_timeout(now);
            self.output.flush();
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Reactor(err));
            }
            let now = Instant::now();
            for event in events.iter() {
                self.on_event(event, now);
            }
            self.serve_ready_again(now);
            if self.stop_requested && self.grace_deadline.is_none() {
                self.begin_stop(now);
            }
            if self.stop_now {
                self.close_all(CloseReason::Stop);
            }
        }
        self.output.flush();
        log::info!("stopped");
        Ok(())
    }

    /// How long `poll` may sleep: until the nearest deadline, not at all if
    /// a connection is waiting to be read again, forever if nothing is due.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let idle = self.idle.as_ref().and_then(DeadlineList::next_deadline);
        [idle, self.grace_deadline, self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn on_deadlines(&mut self, now: Instant) {
        while let Some(key) = self.idle.as_mut().and_then(|idle| idle.pop_expired(now)) {
            self.close(key, CloseReason::Idle);
        }
        if self.grace_deadline.is_some_and(|deadline| deadline <= now) {
            log::warn!(
                "grace period over: closing {} clients with output unsent",
                self.connections.len()
            );
            self.close_all(CloseReason::Stop);
        }
        if self.accept_paused_until.is_some_and(|until| until <= now) {
            self.accept_paused_until = None;
            // Connections already queued in the backlog raised their edge
            // while we were paused: no new event will come for them.
            for index in 0..self.listeners.len() {
                self.accept_from(index, now);
            }
        }
    }

    fn on_event(&mut self, event: &mio::event::Event, now: Instant) {
        match Slot::of(event.token()) {
            Slot::Connection(key) => self.on_connection_event(key, event, now),
            Slot::Listener(index) => self.accept_from(index, now),
            Slot::Waker => {
                if self.stop_flag.load(Ordering::SeqCst) {
                    self.stop_requested = true;
                }
            }
            Slot::Signals => self.on_signals(),
        }
    }

    fn on_connection_event(&mut self, key: usize, event: &mio::event::Event, now: Instant) {
        let Some(connection) = self.connections.get_mut(key) else {
            return; // Closed earlier in this batch.
        };
        let mut ctx = Context {
            registry: self.poll.registry(),
            output: &mut self.output,
            config: &self.config,
            stop_requested: &mut self.stop_requested,
        };
        // Read before write, as redis does: the reply to what we read may
        // go out in the same turn.
        let mut status = Status::Open {
            active: false,
            again: false,
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            status = connection.on_readable(&mut ctx, &mut self.scratch, event.is_read_closed());
        }
        if let Status::Open { active, again } = status
            && (event.is_writable() || event.is_write_closed() || event.is_error())
            && connection.pending_output() > 0
        {
            status = match connection.on_writable(&mut ctx) {
                Status::Open {
                    active: wrote,
                    again: resumed,
                } => Status::Open {
                    active: active || wrote,
                    again: again || resumed,
                },
                closed => closed,
            };
        }
        self.settle(key, status, now);
    }

    /// Serves the connections that had more to read when their budget ran
    /// out, in the order they were queued.
    fn serve_ready_again(&mut self, now: Instant) {
        if self.ready_again.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.ready_spare);
        std::mem::swap(&mut batch, &mut self.ready_again);
        for &key in &batch {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut ctx = Context {
                registry: self.poll.registry(),
                output: &mut self.output,
                config: &self.config,
                stop_requested: &mut self.stop_requested,
            };
            let status = connection.on_readable(&mut ctx, &mut self.scratch, false);
            self.settle(key, status, now);
        }
        batch.clear();
        self.ready_spare = batch;
    }

    /// Records what a connection's handler reported.
    fn settle(&mut self, key: usize, status: Status, now: Instant) {
        match status {
            Status::Open { active, again } => {
                if active && let Some(idle) = &mut self.idle {
                    idle.touch(key, now);
                }
                if again {
                    self.ready_again.push(key);
                }
            }
            Status::Closed(reason) => self.close(key, reason),
        }
    }

    /// The notes' `accept()`, until the backlog is empty.
    fn accept_from(&mut self, index: usize, now: Instant) {
        if self.grace_deadline.is_some() || self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.open(stream, peer, now),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up while queued: nothing to serve.
                Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(err) => {
                    // EMFILE/ENFILE (out of file descriptors) and anything
                    // unexpected: retrying at once would spin, so pause.
                    self.pause_accepting(&err, now);
                    return;
                }
            }
        }
    }

    fn pause_accepting(&mut self, err: &io::Error, now: Instant) {
        log::warn!(
            "accept failed: {err}; pausing new connections for {:?}",
            self.accept_backoff
        );
        self.accept_paused_until = Some(now + self.accept_backoff);
        self.accept_backoff = (self.accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
    }

    fn open(&mut self, stream: Stream, peer: Peer, now: Instant) {
        self.accept_backoff = ACCEPT_BACKOFF_MIN;
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if !slots::is_connection_key(key) {
            log::error!("{peer}: no token left for a new connection");
            return;
        }
        match Connection::new(
            Token(key),
            stream,
            peer,
            self.poll.registry(),
            &self.config,
            &mut self.output,
        ) {
            Ok(connection) => {
                entry.insert(connection);
                if let Some(idle) = &mut self.idle {
                    idle.touch(key, now);
                }
            }
            Err(err) => log::warn!("cannot register a new connection: {err}"),
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(connection) = self.connections.try_remove(key) else {
            return;
        };
        if let Some(idle) = &mut self.idle {
            idle.remove(key);
        }
        connection.close(reason, self.poll.registry(), &mut self.output);
    }

    fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, reason);
        }
    }

    fn on_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        for signal in signals.pending() {
            if self.stop_requested {
                log::warn!("signal {signal} again: stopping now");
                self.stop_now = true;
            } else {
                log::info!("signal {signal}: stopping");
                self.stop_requested = true;
            }
        }
    }

    /// Stop gracefully: no new clients; every client's already-sent bytes
    /// are read and acted on; replies are flushed within the grace period.
    fn begin_stop(&mut self, now: Instant) {
        log::info!("stopping: {} clients connected", self.connections.len());
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(listener.source());
            // Dropping closes the socket; a Unix listener removes its file.
        }
        self.grace_deadline = Some(now + self.config.grace);
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut ctx = Context {
                registry: self.poll.registry(),
                output: &mut self.output,
                config: &self.config,
                stop_requested: &mut self.stop_requested,
            };
            let status = connection.on_stop(&mut ctx, &mut self.scratch);
            self.settle(key, status, now);
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.local_addrs())
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}
