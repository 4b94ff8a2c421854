//! The event loop: one thread, one `mio::Poll`, every client at once.
//!
//! The notes' server waits in `select([conn], [], [], TIMEOUT)` for one
//! client while the others queue in the backlog. Here one `poll` waits for
//! every socket this loop owns (listeners, clients, UDP sockets, the waker,
//! signals) and returns the ones that are ready; the loop serves each and
//! waits again. Everything in [`EventLoop`] belongs to the one thread that
//! runs it: no locks on the way from a socket to a printed line.
//!
//! One turn of the loop:
//!
//! 1. Act on deadlines that fell due: close idle clients (the notes'
//!    `if not inp: break`) and slow lines, log the counters, end a pause in
//!    accepting, end the grace period of a stop.
//! 2. Flush printed output, once per turn, just before sleeping.
//! 3. `poll` until an event or the nearest deadline ([`poll_timeout`]).
//!    With no deadline at all, `poll` waits forever: an idle server makes no
//!    system calls.
//! 4. Dispatch each event by token. A connection closed earlier in the same
//!    batch is skipped (as redis's `ae.c` checks "if the event is still
//!    valid"); a stale event for a reused slot is harmless, because every
//!    handler tolerates spurious readiness.
//! 5. Serve the sockets left in the [`ReadyQueue`] (a budget spent with
//!    work left), so one busy client cannot starve the others.
//! 6. If someone asked to stop, stop gracefully.
//!
//! # Readiness rules
//!
//! mio is edge-triggered: an event says readiness *changed*, once. So a
//! listener accepts until `WouldBlock` (or its budget), a connection reads
//! until `WouldBlock` (or a short TCP read, where the kernel guarantees that
//! it emptied the queue, or its budget), and anything left behind must be
//! remembered, because the kernel will not mention it again: that is the
//! ready queue's job. `Interrupted` (EINTR) is retried, from `poll` and from
//! every call, never treated as a failure. Events may be spurious: a handler
//! that finds nothing to do does nothing.
//!
//! # Errors
//!
//! One client's error closes that client only. The loop itself fails only if
//! `poll` does, which means the process is in trouble.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::net::stream::{Peer, Stream};
use crate::serve::accept::{ACCEPTS_PER_TURN, Accepted, Acceptor};
use crate::serve::close::CloseReason;
use crate::serve::connection::{Connection, Context, LineTimer, Status};
use crate::serve::datagram::{self, DatagramState};
use crate::serve::deadline::DeadlineList;
use crate::serve::error::Error;
use crate::serve::linger::Lingering;
use crate::serve::output::Output;
use crate::serve::output::diagnostics;
use crate::serve::output::queue::Closed;
use crate::serve::ready::ReadyQueue;
use crate::serve::slots::{self, Slot};
use crate::serve::stats;
use crate::serve::trace;
use crate::serve::{notify, proxy};

/// Events fetched per `poll` call; more simply wait for the next turn.
const EVENTS_PER_TURN: usize = 1024;

/// Size of the one read buffer shared by every connection.
const SCRATCH_SIZE: usize = 64 * 1024;

/// SIGINT and SIGTERM, read through the loop's own `Poll`.
pub(crate) type Signals = signal_hook_mio::v1_0::Signals;

/// Everything one thread's loop owns.
pub(crate) struct EventLoop {
    poll: Poll,
    /// What every connection shares: registry, output, config, counters.
    ctx: Context,
    connections: Slab<Connection>,
    /// Idle deadlines by connection key; `None` when `--idle-timeout off`.
    idle: Option<DeadlineList>,
    /// Deadlines of unfinished lines (`--line-timeout`), by connection key.
    line_deadlines: Option<DeadlineList>,
    /// Deadlines of PROXY headers still due from trusted proxies; `None`
    /// without `--proxy-protocol`.
    proxy_headers: Option<DeadlineList>,
    ready: ReadyQueue,
    /// Sockets closed on purpose, lingering so the client reads why.
    lingering: Lingering,
    accept: Acceptor,
    datagrams: Vec<mio::net::UdpSocket>,
    datagram_state: DatagramState,
    scratch: Box<[u8]>,
    /// When to log the counters next (`--stats DUR`).
    next_stats: Option<Instant>,
    signals: Option<Signals>,
    /// A second signal: stop without waiting for output to drain.
    stop_now: bool,
    /// Set once stopping: when to give up flushing and close everyone.
    grace_deadline: Option<Instant>,
    /// This loop's waker: the handle, and the output queue when it has room
    /// again, empties or closes.
    waker: Arc<Waker>,
    /// The output queue is full: no client is read until it has room (and
    /// no client's idle or line clock runs meanwhile, since it is the server,
    /// not the client, that is not reading).
    reading_paused: bool,
    /// The output's reader went away: the loop stops, and says so.
    output_closed: bool,
    /// Which loop gets the next client handed off (round-robin).
    next_hand_off: usize,
    /// Clients handed over by another loop, being opened (kept to reuse).
    handed: Vec<(Stream, Peer)>,
}

/// What the process hands a loop to run.
pub(crate) struct Parts {
    pub poll: Poll,
    pub ctx: Context,
    pub accept: Acceptor,
    pub datagrams: Vec<mio::net::UdpSocket>,
    pub signals: Option<Signals>,
    pub waker: Arc<Waker>,
}

impl EventLoop {
    /// A loop over sockets already registered with `parts.poll`.
    pub fn new(parts: Parts) -> Self {
        let config = &parts.ctx.config;
        parts.ctx.output.add_waker(Arc::clone(&parts.waker));
        EventLoop {
            idle: config.idle_timeout.map(DeadlineList::new),
            line_deadlines: config.line_timeout.map(DeadlineList::new),
            proxy_headers: (!config.proxy_protocol.is_empty())
                .then(|| DeadlineList::new(proxy::HEADER_TIMEOUT)),
            // One loop logs the counters of all.
            next_stats: config
                .stats_interval
                .filter(|_| parts.ctx.reactor == 0)
                .map(|every| Instant::now() + every),
            poll: parts.poll,
            ctx: parts.ctx,
            connections: Slab::new(),
            ready: ReadyQueue::default(),
            lingering: Lingering::default(),
            accept: parts.accept,
            datagrams: parts.datagrams,
            datagram_state: DatagramState::default(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            signals: parts.signals,
            stop_now: false,
            grace_deadline: None,
            waker: parts.waker,
            reading_paused: false,
            output_closed: false,
            next_hand_off: 0,
            handed: Vec::new(),
        }
    }

    /// Prints through `output` instead (tests and embedding programs
    /// replace stdout).
    pub fn set_output(&mut self, output: Output) {
        output.add_waker(Arc::clone(&self.waker));
        self.ctx.output = output;
    }

    /// The settings this loop runs with.
    pub fn config(&self) -> &crate::serve::Config {
        &self.ctx.config
    }

    /// Runs until stopped, then returns once every client is closed and all
    /// output is flushed.
    pub fn run(mut self) -> Result<(), Error> {
        if self.ctx.shared.loops() > 1 {
            trace::set_reactor(self.ctx.reactor);
        }
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        loop {
            self.ready.begin_turn();
            let now = Instant::now();
            self.on_deadlines(now);
            // A deadline may have closed a client whose unfinished last line
            // was `stop`: act on it now, not after some future event.
            self.stop_if_requested(now);
            if self.grace_deadline.is_some()
                && self.connections.is_empty()
                && self.output_settled(now)
            {
                break;
            }
            let ready_idle = self.ready.is_empty() || self.reading_paused;
            let timeout = poll_timeout(now, ready_idle, self.deadlines());
            self.ctx.output.flush();
            self.ctx.output.report_drops();
            self.ctx.counters.lines_dropped = self.ctx.output.dropped();
            self.ctx
                .shared
                .publish(self.ctx.reactor, &self.ctx.counters);
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Reactor(err));
            }
            let now = Instant::now();
            if self.ctx.config.trace_loop {
                self.trace_turn(timeout, &events);
            }
            for event in events.iter() {
                self.on_event(event, now);
            }
            self.serve_ready_queue(now);
            self.stop_if_requested(now);
            if self.stop_now {
                self.close_all(CloseReason::Stop);
            }
        }
        self.ctx.output.flush();
        self.ctx.counters.lines_dropped = self.ctx.output.dropped();
        self.ctx
            .shared
            .publish(self.ctx.reactor, &self.ctx.counters);
        log::info!("stopped: {}", self.ctx.counters);
        if self.output_closed {
            return Err(Error::OutputClosed);
        }
        match self.ctx.output.pending() {
            0 => Ok(()),
            bytes => Err(Error::OutputUnwritten { bytes }),
        }
    }

    /// Stopping, with every client closed: whether the printed output is
    /// written (or can never be, or the grace period is over, or a second
    /// signal said not to wait). If not, the output queue wakes us once it is.
    fn output_settled(&mut self, now: Instant) -> bool {
        self.stop_now
            || self.grace_deadline.is_some_and(|deadline| deadline <= now)
            || self.ctx.output.want_drained()
    }

    /// Every deadline this loop keeps, nearest or not. While reading is
    /// paused for output, clients' clocks do not run.
    fn deadlines(&self) -> [Option<Instant>; 7] {
        let clients = !self.reading_paused;
        [
            self.proxy_headers
                .as_ref()
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.idle
                .as_ref()
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.line_deadlines
                .as_ref()
                .filter(|_| clients)
                .and_then(DeadlineList::next_deadline),
            self.grace_deadline,
            self.accept.paused_until(),
            self.next_stats,
            self.lingering.next_deadline(),
        ]
    }

    fn on_deadlines(&mut self, now: Instant) {
        if !self.reading_paused {
            self.on_client_deadlines(now);
        }
        self.on_loop_deadlines(now);
    }

    /// Clients silent for the idle time-out (the notes' `if not inp:
    /// break`), and lines unfinished for the line time-out.
    fn on_client_deadlines(&mut self, now: Instant) {
        while let Some(key) = self.idle.as_mut().and_then(|idle| idle.pop_expired(now)) {
            if let Some(connection) = self.connections.get_mut(key) {
                let reason = connection.on_idle_timeout(&mut self.ctx);
                self.close(key, reason);
            }
        }
        while let Some(key) = self
            .line_deadlines
            .as_mut()
            .and_then(|lines| lines.pop_expired(now))
        {
            if let Some(connection) = self.connections.get_mut(key) {
                let reason = connection.on_line_timeout(&mut self.ctx);
                self.close(key, reason);
            }
        }
        while let Some(key) = self
            .proxy_headers
            .as_mut()
            .and_then(|headers| headers.pop_expired(now))
        {
            if let Some(connection) = self.connections.get_mut(key)
                && connection.awaits_proxy_header()
            {
                let reason = connection.on_proxy_header_late();
                self.close(key, reason);
            }
        }
    }

    /// Other deadlines: counters to log, the end of a stop's grace period,
    /// the end of a pause in accepting.
    fn on_loop_deadlines(&mut self, now: Instant) {
        self.lingering.expire(now, &self.ctx.registry);
        if let Some(due) = self.next_stats
            && due <= now
        {
            self.ctx.counters.lines_dropped = self.ctx.output.dropped();
            let totals = self
                .ctx
                .shared
                .totals(Some((self.ctx.reactor, &self.ctx.counters)));
            stats::report(&totals);
            let every = self
                .ctx
                .config
                .stats_interval
                .unwrap_or(Duration::from_secs(1));
            self.next_stats = Some(now + every);
        }
        if self.grace_deadline.is_some_and(|deadline| deadline <= now) {
            let unsent = self
                .connections
                .iter()
                .filter(|(_, connection)| connection.pending_output() > 0)
                .count();
            if unsent > 0 {
                log::warn!("grace period over: closing {unsent} clients with output unsent");
            }
            self.close_all(CloseReason::Stop);
        }
        if self.accept.resume_if_due(now) {
            // Clients queued in the backlog while we were paused raised
            // their edge then: no new event will come for them.
            for index in 0..self.accept.len() {
                self.accept_from(index, now);
            }
        }
    }

    fn on_event(&mut self, event: &Event, now: Instant) {
        match Slot::of(event.token()) {
            Slot::Connection(key) => self.on_connection_event(key, event, now),
            Slot::Listener(index) => self.accept_from(index, now),
            Slot::Datagram(index) => self.on_datagrams(index),
            Slot::Waker => self.on_wake(now),
            Slot::Signals => self.on_signals(),
            Slot::Lingering(key) => {
                self.lingering
                    .on_readable(key, &mut self.scratch, &self.ctx.registry);
            }
        }
    }

    /// Another thread woke us: the handle asked to stop, or the output queue
    /// has room again, has emptied, or was closed by its reader.
    fn on_wake(&mut self, now: Instant) {
        if self.ctx.shared.stop_requested() {
            self.ctx.stop_requested = true;
        }
        if self.ctx.shared.stop_now_requested() {
            self.stop_now = true;
        }
        self.open_handed(now);
        if self.ctx.output.closed() == Some(Closed::BrokenPipe) && !self.output_closed {
            self.output_closed = true;
            diagnostics::line(format_args!("error: output closed (Broken pipe): stopping"));
            self.ctx.stop_requested = true;
        }
        if self.reading_paused && self.ctx.output.has_room() {
            self.resume_reading(now);
        }
    }

    /// Whether clients may be read now. Not while the output queue is full
    /// (`--output-full block`): what they send waits in the kernel, and TCP
    /// flow control slows them down, until the writer has made room.
    fn may_read(&mut self) -> bool {
        if self.reading_paused {
            return false;
        }
        if self.ctx.output.is_full() && self.ctx.output.pause_producers() {
            self.reading_paused = true;
            log::debug!(
                "output full ({} bytes waiting): not reading from clients",
                self.ctx.output.pending()
            );
            if self.ctx.config.trace_loop {
                trace::emit(format_args!("  output full: reading paused"));
            }
            return false;
        }
        true
    }

    /// The output has room again: every client and UDP socket may have
    /// bytes that arrived meanwhile (and whose edge was spent), so each is
    /// served again; the clients' clocks restart, since it was the server,
    /// not they, that was silent.
    fn resume_reading(&mut self, now: Instant) {
        self.reading_paused = false;
        if self.ctx.config.trace_loop {
            trace::emit(format_args!("  output has room: reading resumed"));
        }
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
        }
        for index in 0..self.datagrams.len() {
            self.ready.wake(slots::datagram_token(index));
        }
    }

    fn on_connection_event(&mut self, key: usize, event: &Event, now: Instant) {
        let before = self.ctx.config.trace_loop.then_some(self.ctx.counters);
        if !self.connections.contains(key) {
            return; // Closed earlier in this batch.
        }
        let readable = event.is_readable()
            || event.is_read_closed()
            || event.is_error()
            || event.is_priority();
        let may_read = readable && self.may_read();
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if readable && !may_read {
            // Remember what the event said; the read waits for room.
            connection.defer_read(event.is_read_closed() || event.is_priority());
        }
        // Read before write, as redis does: the reply to what we read may
        // go out in the same turn.
        let mut status = Status::Open {
            active: false,
            again: false,
        };
        if may_read {
            let drain_fully = event.is_read_closed() || event.is_priority();
            status = connection.on_readable(&mut self.ctx, &mut self.scratch, drain_fully);
        }
        if let Status::Open { active, again } = status
            && (event.is_writable() || event.is_write_closed() || event.is_error())
            && connection.pending_output() > 0
        {
            status = match connection.on_writable(&mut self.ctx) {
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
            let work = trace::work(&before, &self.ctx.counters);
            trace::emit(format_args!("  {label}: {work}"));
        }
        self.settle(key, status, may_read, now);
    }

    /// Serves the sockets that had more to do when their budget ran out, in
    /// the order they were queued, each at most once per turn.
    fn serve_ready_queue(&mut self, now: Instant) {
        if self.ready.is_empty() || self.reading_paused {
            return;
        }
        let batch = self.ready.take();
        for (at, &token) in batch.iter().enumerate() {
            if !self.may_read() {
                // Reading paused for output: the rest wait (every client is
                // served again when it resumes, but keep the queue exact).
                for &rest in &batch[at..] {
                    if self.ready.claim(rest) {
                        self.ready.wake(rest);
                    }
                }
                break;
            }
            if !self.ready.claim(token) {
                continue;
            }
            match Slot::of(token) {
                Slot::Connection(key) => {
                    let before = self.ctx.config.trace_loop.then_some(self.ctx.counters);
                    let Some(connection) = self.connections.get_mut(key) else {
                        continue;
                    };
                    let status = connection.on_readable(&mut self.ctx, &mut self.scratch, false);
                    if let Some(before) = before {
                        let label = self.connection_label(key);
                        let work = trace::work(&before, &self.ctx.counters);
                        trace::emit(format_args!("  {label}: ready again: {work}"));
                    }
                    self.settle(key, status, true, now);
                }
                Slot::Listener(index) => self.accept_from(index, now),
                Slot::Datagram(index) => self.on_datagrams(index),
                Slot::Waker | Slot::Signals | Slot::Lingering(_) => {}
            }
        }
        self.ready.finish(batch);
    }

    /// Records what a connection's handler reported; `read` says whether it
    /// was read this turn (so the ready queue's once-per-turn rule applies).
    fn settle(&mut self, key: usize, status: Status, read: bool, now: Instant) {
        let (active, again) = match status {
            Status::Open { active, again } => (active, again),
            Status::Closed(reason) => return self.close(key, reason),
        };
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
        if let (Some(headers), Some(connection)) =
            (&mut self.proxy_headers, self.connections.get(key))
            && !connection.awaits_proxy_header()
        {
            headers.remove(key);
        }
        if read {
            self.ready.served(Token(key), again);
        } else if again {
            self.ready.wake(Token(key));
        }
    }

    /// A UDP socket is readable: datagrams, each read whole.
    fn on_datagrams(&mut self, index: usize) {
        if !self.may_read() {
            return; // Served again when reading resumes.
        }
        let Some(socket) = self.datagrams.get(index) else {
            return;
        };
        let before = self.ctx.config.trace_loop.then_some(self.ctx.counters);
        let more = datagram::on_readable(
            socket,
            &mut self.scratch,
            &mut self.ctx,
            &mut self.datagram_state,
        );
        if let Some(before) = before {
            let work = trace::work(&before, &self.ctx.counters);
            let count = self.ctx.counters.datagrams - before.datagrams;
            let addr = socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            trace::emit(format_args!("  udp://{addr}: {count} datagrams, {work}"));
        }
        self.ready.served(slots::datagram_token(index), more);
    }

    /// The notes' `accept()`, until the backlog is empty or this turn's
    /// budget is spent (then again next turn).
    fn accept_from(&mut self, index: usize, now: Instant) {
        if self.grace_deadline.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let open = self.ctx.shared.open();
            match self
                .accept
                .accept_one(index, open, now, &mut self.ctx.counters)
            {
                Accepted::Client(stream, peer) => {
                    self.ctx.shared.opened();
                    match self.hand_off_to(index) {
                        Some(to) => self.ctx.shared.hand_off(to, stream, peer),
                        None => self.open(stream, peer, now),
                    }
                }
                Accepted::Refused(stream) => {
                    self.lingering.start(stream, &self.ctx.registry, now);
                }
                Accepted::Skipped => {}
                Accepted::Done => {
                    self.ready.served(slots::listener_token(index), false);
                    return;
                }
            }
        }
        self.ready.served(slots::listener_token(index), true);
    }

    /// With several loops, a client accepted from a listener that only this
    /// loop has (a Unix socket, an inherited socket) goes to the loops in
    /// turn: which one, if not this.
    fn hand_off_to(&mut self, index: usize) -> Option<usize> {
        let loops = self.ctx.shared.loops();
        if loops < 2 || !self.accept.is_shared(index) {
            return None;
        }
        let to = self.next_hand_off % loops;
        self.next_hand_off = self.next_hand_off.wrapping_add(1);
        (to != self.ctx.reactor).then_some(to)
    }

    /// Opens the clients another loop accepted and handed to this one.
    fn open_handed(&mut self, now: Instant) {
        let mut handed = std::mem::take(&mut self.handed);
        self.ctx.shared.take_handed(self.ctx.reactor, &mut handed);
        for (stream, peer) in handed.drain(..) {
            if self.grace_deadline.is_some() {
                // Stopping: too late to serve it.
                self.ctx.shared.closed();
                continue;
            }
            self.open(stream, peer, now);
        }
        self.handed = handed;
    }

    /// A new client: a connection in this loop's slab, with its token.
    /// (It already counts in the server's open connections.)
    fn open(&mut self, stream: Stream, peer: Peer, now: Instant) {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if !slots::is_connection_key(key) {
            log::error!("{peer}: no token left for a new connection");
            self.ctx.shared.closed();
            return;
        }
        match Connection::new(Token(key), stream, peer, &mut self.ctx) {
            Ok(connection) => {
                if let Some(headers) = &mut self.proxy_headers
                    && connection.awaits_proxy_header()
                {
                    headers.touch(key, now);
                }
                entry.insert(connection);
                self.ctx.counters.accepted += 1;
                self.ctx.counters.open += 1;
                if self.ctx.config.trace_loop {
                    let label = self.connection_label(key);
                    trace::emit(format_args!("  accepted {label}"));
                }
                if let Some(idle) = &mut self.idle {
                    idle.touch(key, now);
                }
            }
            Err(err) => {
                log::warn!("cannot register a new connection: {err}");
                self.ctx.shared.closed();
            }
        }
    }

    /// The single exit, for every reason: forget the connection's deadlines
    /// and queue entry, count the reason, and let it close itself.
    fn close(&mut self, key: usize, reason: CloseReason) {
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
        self.ready.forget(Token(key));
        self.ctx.shared.closed();
        self.ctx.counters.count_close(reason);
        if let Some(stream) = connection.close(reason, &mut self.ctx) {
            self.lingering
                .start(stream, &self.ctx.registry, Instant::now());
        }
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
            if signal == signal_hook::consts::SIGHUP {
                if self.ctx.output.reopen() {
                    log::info!("SIGHUP: reopening the output file");
                } else {
                    log::info!("SIGHUP ignored: the output is not a file");
                }
                continue;
            }
            if self.ctx.stop_requested {
                log::warn!("signal {signal} again: stopping now");
                self.stop_now = true;
                self.ctx.shared.request_stop_now();
            } else {
                log::info!("signal {signal}: stopping");
                self.ctx.stop_requested = true;
                self.ctx.shared.request_stop();
            }
        }
    }

    fn stop_if_requested(&mut self, now: Instant) {
        if self.ctx.stop_requested && self.grace_deadline.is_none() {
            // Whoever asked (a client of this loop, a signal, the handle),
            // every loop stops.
            self.ctx.shared.request_stop();
            self.begin_stop(now);
        }
    }

    /// Stop gracefully: no new clients (those already in the backlog are
    /// taken); every client's already-sent bytes are read and acted on;
    /// replies are flushed within the grace period.
    fn begin_stop(&mut self, now: Instant) {
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
        for mut socket in self.datagrams.drain(..) {
            let _ = self.ctx.registry.deregister(&mut socket);
        }
        self.grace_deadline = Some(now + self.ctx.config.grace);
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            // With the output full, what clients sent stays unread (it was
            // never received): memory stays within the output bound.
            let may_read = self.may_read();
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            let status = connection.on_stop(&mut self.ctx, &mut self.scratch, may_read);
            self.settle(key, status, false, now);
        }
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
                    Slot::Listener(index) => match self.accept.listener(index) {
                        Some(listener) => format!("listener {}", listener.bound_addr()),
                        None => format!("listener {index}"),
                    },
                    Slot::Datagram(index) => match self.datagrams.get(index) {
                        Some(socket) => match socket.local_addr() {
                            Ok(addr) => format!("listener udp://{addr}"),
                            Err(_) => format!("udp {index}"),
                        },
                        None => format!("udp {index}"),
                    },
                    Slot::Waker => "waker".into(),
                    Slot::Signals => "signal".into(),
                    Slot::Lingering(key) => format!("lingering close {key}"),
                };
                format!("{what} {}", trace::readiness(event))
            })
            .collect();
        trace::emit(format_args!("{}", trace::turn(timeout, &described)));
    }

    /// How many connections are open (for `Debug`).
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }
}

/// How long `poll` may sleep: not at all while the ready queue holds work,
/// until the nearest deadline otherwise, forever if nothing is due.
fn poll_timeout(
    now: Instant,
    ready_queue_empty: bool,
    deadlines: impl IntoIterator<Item = Option<Instant>>,
) -> Option<Duration> {
    if !ready_queue_empty {
        return Some(Duration::ZERO);
    }
    deadlines
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_deadline_sleeps_forever() {
        assert_eq!(poll_timeout(Instant::now(), true, [None, None]), None);
    }

    #[test]
    fn the_nearest_deadline_bounds_the_sleep() {
        let now = Instant::now();
        let near = now + Duration::from_millis(250);
        let far = now + Duration::from_secs(5);
        assert_eq!(
            poll_timeout(now, true, [Some(far), None, Some(near)]),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn a_past_deadline_means_no_sleep() {
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(poll_timeout(now, true, [Some(past)]), Some(Duration::ZERO));
    }

    #[test]
    fn work_in_the_ready_queue_means_no_sleep() {
        let now = Instant::now();
        let far = now + Duration::from_secs(5);
        assert_eq!(poll_timeout(now, false, [Some(far)]), Some(Duration::ZERO));
        assert_eq!(poll_timeout(now, false, [None]), Some(Duration::ZERO));
    }
}
