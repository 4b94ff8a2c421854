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

use crate::net::limits;
use crate::net::stream::{Peer, Stream};
use crate::serve::close::CloseReason;
use crate::serve::config::Config;
use crate::serve::connection::{Connection, Context, LineTimer, Status};
use crate::serve::datagram::{self, DatagramState};
use crate::serve::deadline::DeadlineList;
use crate::serve::error::Error;
use crate::serve::listen::{BoundAddr, ListenOptions, Listener};
use crate::serve::output::Output;
use crate::serve::slots::{self, Slot};
use crate::serve::stats::{Counters, SharedCounters};
use crate::serve::trace;

/// Sent to a client beyond `--max-conns` before it is closed.
pub const SERVER_FULL: &[u8] = b"error: server full\r\n";

/// Events fetched per `poll` call; more simply wait for the next turn.
const EVENTS_PER_TURN: usize = 1024;

/// Size of the one read buffer shared by every connection.
const SCRATCH_SIZE: usize = 64 * 1024;

/// Back-off after `accept` fails for lack of file descriptors: start here,
/// double on each failure, never beyond the maximum.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a connection handler borrows from the server for one event. A
/// macro, not a method, so that the borrow of `self.connections` (the
/// connection being served) stays apart from the borrows of these fields.
macro_rules! context {
    ($server:ident) => {
        Context {
            registry: $server.poll.registry(),
            output: &mut $server.output,
            config: &$server.config,
            stop_requested: &mut $server.stop_requested,
            counters: &mut $server.counters,
        }
    };
}

/// A bound server, ready to [`run`](Server::run).
///
/// ```
/// use std::io::{Read, Write};
/// use selectd::{Config, MemorySink, Server};
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
    /// Deadlines of unfinished lines (`--line-timeout`), by connection key.
    line_deadlines: Option<DeadlineList>,
    /// `--max-conns`, or the default derived from the file descriptor limit.
    max_conns: usize,
    counters: Counters,
    published: SharedCounters,
    /// When to log the counters next (`--stats DUR`).
    next_stats: Option<Instant>,
    /// Refusals not yet logged, and when the last log line was written: a
    /// flood of refused clients is reported at most once a second.
    refusals_unlogged: u64,
    last_refusal_log: Option<Instant>,
    /// Sockets to read again next turn (their budget ran out with data
    /// still queued), and a spare list to swap with.
    ready_again: Vec<Token>,
    ready_spare: Vec<Token>,
    datagrams: DatagramState,
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
    /// Loop turns so far: a connection is read at most once per turn.
    turn: u64,
    accept_backoff: Duration,
}

/// Stops a running server from another thread.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    waker: Arc<Waker>,
    stop_flag: Arc<AtomicBool>,
    counters: SharedCounters,
}

impl ServerHandle {
    /// Asks the server to stop gracefully, exactly as a `stop` line does.
    pub fn stop(&self) {
        self.stop_flag.store(true, Ordering::SeqCst);
        if let Err(err) = self.waker.wake() {
            log::error!("cannot wake the server to stop it: {err}");
        }
    }

    /// The server's counters, as of its last loop turn.
    pub fn stats(&self) -> Counters {
        self.counters.snapshot()
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
        let max_conns = config.max_conns.unwrap_or_else(limits::default_max_conns);
        log::debug!("serving at most {max_conns} connections");
        Ok(Server {
            poll,
            idle: config.idle_timeout.map(DeadlineList::new),
            line_deadlines: config.line_timeout.map(DeadlineList::new),
            max_conns,
            counters: Counters::default(),
            published: SharedCounters::default(),
            next_stats: config.stats_interval.map(|every| Instant::now() + every),
            refusals_unlogged: 0,
            last_refusal_log: None,
            output: Output::new(config.format, Box::new(io::stdout())),
            config,
            listeners,
            connections: Slab::new(),
            ready_again: Vec::new(),
            ready_spare: Vec::new(),
            datagrams: DatagramState::default(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            waker,
            stop_flag: Arc::new(AtomicBool::new(false)),
            signals,
            stop_requested: false,
            stop_now: false,
            grace_deadline: None,
            accept_paused_until: None,
            turn: 0,
            accept_backoff: ACCEPT_BACKOFF_MIN,
        })
    }

    /// Prints to `sink` instead of stdout (e.g. a [`MemorySink`](crate::serve::output::MemorySink)).
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
            counters: self.published.clone(),
        }
    }

    /// Runs until stopped (by a `stop` line, a [`ServerHandle`], or a signal),
    /// then returns once every client is closed and all output is flushed.
    pub fn run(mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        loop {
            self.turn += 1;
            let now = Instant::now();
            self.on_deadlines(now);
            // A deadline may have closed a client whose unfinished last line
            // was `stop`: act on it now, not after some future event.
            if self.stop_requested && self.grace_deadline.is_none() {
                self.begin_stop(now);
            }
            if self.grace_deadline.is_some() && self.connections.is_empty() {
                break;
            }
            let timeout = self.poll_timeout(now);
            self.output.flush();
            self.published.publish(&self.counters);
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Reactor(err));
            }
            let now = Instant::now();
            if self.config.trace_loop {
                self.trace_turn(timeout, &events);
            }
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
        self.published.publish(&self.counters);
        log::info!("stopped: {}", self.counters);
        Ok(())
    }

    /// How long `poll` may sleep: until the nearest deadline, not at all if
    /// a connection is waiting to be read again, forever if nothing is due.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready_again.is_empty() {
            return Some(Duration::ZERO);
        }
        let idle = self.idle.as_ref().and_then(DeadlineList::next_deadline);
        let line = self
            .line_deadlines
            .as_ref()
            .and_then(DeadlineList::next_deadline);
        [
            idle,
            line,
            self.grace_deadline,
            self.accept_paused_until,
            self.next_stats,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn on_deadlines(&mut self, now: Instant) {
        while let Some(key) = self.idle.as_mut().and_then(|idle| idle.pop_expired(now)) {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut ctx = context!(self);
            let reason = connection.on_idle_timeout(&mut ctx);
            self.close(key, reason);
        }
        while let Some(key) = self
            .line_deadlines
            .as_mut()
            .and_then(|l| l.pop_expired(now))
        {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let mut ctx = context!(self);
            let reason = connection.on_line_timeout(&mut ctx);
            self.close(key, reason);
        }
        if let Some(due) = self.next_stats
            && due <= now
        {
            log::info!(target: "selectd::stats", "{}", self.counters);
            let every = self.config.stats_interval.unwrap_or(Duration::from_secs(1));
            self.next_stats = Some(now + every);
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
            Slot::Listener(index) => self.on_listener(index, now),
            Slot::Waker => {
                if self.stop_flag.load(Ordering::SeqCst) {
                    self.stop_requested = true;
                }
            }
            Slot::Signals => self.on_signals(),
        }
    }

    fn on_connection_event(&mut self, key: usize, event: &mio::event::Event, now: Instant) {
        let before = self.config.trace_loop.then_some(self.counters);
        let Some(connection) = self.connections.get_mut(key) else {
            return; // Closed earlier in this batch.
        };
        let mut ctx = context!(self);
        // Read before write, as redis does: the reply to what we read may
        // go out in the same turn.
        let mut status = Status::Open {
            active: false,
            again: false,
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() || event.is_priority()
        {
            connection.served_in_turn = self.turn;
            let drain_fully = event.is_read_closed() || event.is_priority();
            status = connection.on_readable(&mut ctx, &mut self.scratch, drain_fully);
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
        if let Some(before) = before {
            let label = self.connection_label(key);
            trace::emit(format_args!(
                "  {label}: {}",
                trace::work(&before, &self.counters)
            ));
        }
        self.settle(key, status, now);
    }

    /// `conn 7 127.0.0.1:50312`: how `--trace-loop` names a connection.
    fn connection_label(&self, key: usize) -> String {
        match self.connections.get(key) {
            Some(connection) => format!("conn {key} {}", connection.label()),
            None => format!("conn {key}"),
        }
    }

    /// `--trace-loop`: one line per turn, in the notes' `select()` terms.
    fn trace_turn(&self, timeout: Option<Duration>, events: &Events) {
        let described: Vec<String> = events
            .iter()
            .map(|event| {
                let what = match Slot::of(event.token()) {
                    Slot::Connection(key) => self.connection_label(key),
                    Slot::Listener(index) => match self.listeners.get(index) {
                        Some(listener) => format!("listener {}", listener.bound_addr()),
                        None => format!("listener {index}"),
                    },
                    Slot::Waker => "waker".into(),
                    Slot::Signals => "signal".into(),
                };
                format!("{what} {}", trace::readiness(event))
            })
            .collect();
        trace::emit(format_args!("{}", trace::turn(timeout, &described)));
    }

    /// Serves the sockets that had more to read when their budget ran
    /// out, in the order they were queued.
    fn serve_ready_again(&mut self, now: Instant) {
        if self.ready_again.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.ready_spare);
        std::mem::swap(&mut batch, &mut self.ready_again);
        for &token in &batch {
            match Slot::of(token) {
                Slot::Connection(key) => {
                    let before = self.config.trace_loop.then_some(self.counters);
                    let Some(connection) = self.connections.get_mut(key) else {
                        continue;
                    };
                    connection.queued_again = false;
                    if connection.served_in_turn == self.turn {
                        // An event already read it this turn: once is
                        // enough. If that read left data behind, next turn.
                        if connection.more_to_read {
                            connection.queued_again = true;
                            self.ready_again.push(token);
                        }
                        continue;
                    }
                    connection.served_in_turn = self.turn;
                    let mut ctx = context!(self);
                    let status = connection.on_readable(&mut ctx, &mut self.scratch, false);
                    if let Some(before) = before {
                        let label = self.connection_label(key);
                        let work = trace::work(&before, &self.counters);
                        trace::emit(format_args!("  {label}: ready again: {work}"));
                    }
                    self.settle(key, status, now);
                }
                Slot::Listener(index) => self.on_listener(index, now),
                Slot::Waker | Slot::Signals => {}
            }
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
                if let (Some(lines), Some(connection)) =
                    (&mut self.line_deadlines, self.connections.get_mut(key))
                {
                    match connection.line_timer() {
                        LineTimer::Unchanged => {}
                        LineTimer::Start => lines.touch(key, now),
                        LineTimer::Stop => lines.remove(key),
                    }
                }
                if let Some(connection) = self.connections.get_mut(key) {
                    connection.more_to_read = again;
                    if again && !connection.queued_again {
                        connection.queued_again = true;
                        self.ready_again.push(Token(key));
                    }
                }
            }
            Status::Closed(reason) => self.close(key, reason),
        }
    }

    /// A listener is readable: new connections to accept, or datagrams.
    fn on_listener(&mut self, index: usize, now: Instant) {
        let Some(Listener::Udp(socket)) = self.listeners.get(index) else {
            return self.accept_from(index, now);
        };
        let before = self.config.trace_loop.then_some(self.counters);
        let more = datagram::on_readable(
            socket,
            &mut self.scratch,
            &mut self.output,
            &self.config,
            &mut self.datagrams,
            &mut self.counters,
        );
        if let (Some(before), Some(listener)) = (before, self.listeners.get(index)) {
            let work = trace::work(&before, &self.counters);
            let datagrams = self.counters.datagrams - before.datagrams;
            trace::emit(format_args!(
                "  listener {}: {datagrams} datagrams, {work}",
                listener.bound_addr()
            ));
        }
        let token = slots::listener_token(index);
        if more && !self.ready_again.contains(&token) {
            self.ready_again.push(token);
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
                Ok((stream, peer)) if self.connections.len() >= self.max_conns => {
                    self.refuse(stream, &peer, now);
                }
                Ok((stream, peer)) => self.open(stream, peer, now),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // The client gave up while queued: nothing to serve.
                Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(err) => {
                    // EMFILE/ENFILE (out of file descriptors) and anything
                    // unexpected: retrying at once would spin, so pause.
                    self.counters.errors += 1;
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

    /// `--max-conns` are open: tell the client and close it at once. The
    /// accept itself is what keeps the backlog from filling with clients
    /// that would wait for nothing.
    fn refuse(&mut self, mut stream: Stream, peer: &Peer, now: Instant) {
        self.counters.refused_full += 1;
        // A fresh socket's send buffer is empty: this short write fits.
        let _ = stream.write(SERVER_FULL);
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
                self.counters.accepted += 1;
                self.counters.open += 1;
                if self.config.trace_loop {
                    let label = self.connection_label(key);
                    trace::emit(format_args!("  accepted {label}"));
                }
                if let Some(idle) = &mut self.idle {
                    idle.touch(key, now);
                }
            }
            Err(err) => log::warn!("cannot register a new connection: {err}"),
        }
    }

    fn close(&mut self, key: usize, reason: CloseReason) {
        if self.config.trace_loop {
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
        self.counters.count_close(reason);
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
            let mut ctx = context!(self);
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
