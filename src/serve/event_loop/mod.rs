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
//! 1. Act on deadlines that fell due, if any may have (the earliest is
//!    kept, not searched for every turn): close idle clients (the notes'
//!    `if not inp: break`) and slow lines, log the counters, end a pause in
//!    accepting, end the grace period of a stop.
//! 2. Hand printed output to the writer thread: at once after a quiet
//!    moment, otherwise at most once a millisecond (the loop then sleeps no
//!    longer than that).
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
//! # What is where
//!
//! The loop's own parts, used by nothing else: [`clients`] (accept,
//! hand-off between loops, close), [`clocks`] (every deadline the loop
//! keeps, and `poll`'s time-out), [`ready`] (the ready queue), [`datagram`]
//! (UDP), [`wake`] (the waker's handler, and pausing reading while the
//! output is full), [`lifecycle`] (the loop's two state machines),
//! [`stop`], [`failure`] and [`narrate`] (`--trace-loop`). What the loop
//! shares with the metrics port (the token layout, the deadline list,
//! lingering closes) lives beside it in `serve`.
//!
//! # Errors
//!
//! One client's error closes that client only. The loop itself fails only if
//! `poll` does, which means the process is in trouble.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::net::stream::{Peer, Stream};
use crate::serve::accept::Acceptor;
use crate::serve::close::CloseReason;
use crate::serve::connection::{Connection, LineTimer, Status};
use crate::serve::context::Context;
use crate::serve::deadline_list::DeadlineList;
use crate::serve::error::Error;
use crate::serve::linger::Lingering;
use crate::serve::metrics::{self, MetricsServer};
use crate::serve::output::Output;
use crate::serve::proxy;
use crate::serve::tokens::{MetricsSlot, Slot};
use crate::serve::trace;

mod clients;
mod clocks;
mod datagram;
mod failure;
mod lifecycle;
mod narrate;
mod ready;
mod stop;
mod wake;

use clocks::{Countdown, poll_timeout};
use datagram::DatagramState;
use failure::panic_message;
use lifecycle::{Lifecycle, Reading};
use ready::ReadyQueue;

/// Events fetched per `poll` call; more simply wait for the next turn.
const EVENTS_PER_TURN: usize = 1024;

/// After the last client is closed, how long printed output that is still
/// being written may take before what is left counts as unwritten.
const FINAL_FLUSH: Duration = Duration::from_millis(200);

/// A busy loop publishes its counters at most this often (see
/// `publish_lazily`); an idle one as soon as they change.
const PUBLISH_EVERY: Duration = Duration::from_millis(5);

// A turn's sleep is bounded by the output's hand-off before the counters'.
const _: () = assert!(crate::serve::output::HAND_OVER_EVERY.as_nanos() <= PUBLISH_EVERY.as_nanos());

/// Size of the one read buffer shared by every connection.
const SCRATCH_SIZE: usize = 64 * 1024;

/// Room for this loop's share of `--max-conns` (at most this many) is
/// reserved in the slab at start: address space only, since a page costs
/// memory once a client is written into it. The slab then never moves its
/// clients to a larger allocation, which would leave the old one's pages
/// behind in the heap; past its share (Unix clients handed to it, a loop
/// that gets more than its part) it grows as usual. 5 MiB of address space
/// at most per loop, so that a system that commits memory strictly does
/// not refuse it.
const SLAB_RESERVED: usize = 1 << 16;

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
    /// TLS: deadlines of handshakes not finished (`--tls-handshake-timeout`).
    handshakes: DeadlineList,
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
    /// Serving, stopping (until when), stopping now, done.
    lifecycle: Lifecycle,
    /// This loop's waker: the handle, and the output queue when it has room
    /// again, empties or closes.
    waker: Arc<Waker>,
    /// Whether clients are read, or reading is paused because the output
    /// is full (see `lifecycle`).
    reading: Reading,
    /// The output's reader went away: the loop stops, and says so.
    output_closed: bool,
    /// Which loop gets the next client handed off (round-robin).
    next_hand_off: usize,
    /// Clients handed over by another loop, being opened (kept to reuse).
    handed: Vec<(Stream, Peer)>,
    /// The earliest instant a deadline may fall due: never later than the
    /// truth, possibly earlier (a deadline that moved later, or went, is
    /// found out by waking, at most once). Computed again only when
    /// `wake_stale` says a deadline may have come forward.
    next_wake: Option<Instant>,
    /// The time to `next_wake`, worked out at most once a millisecond.
    countdown: Countdown,
    /// Some deadline may now be earlier than `next_wake`: a list that was
    /// empty got an entry, the grace period or a pause in accepting began,
    /// reading paused or resumed, or deadlines were just acted on.
    wake_stale: bool,
    /// The wake-up count when the counters were last published, and when
    /// to publish next (see `publish_lazily`).
    published_at_wakeup: u64,
    publish_due: Instant,
    /// This loop hands clients of its own listeners to the others, and has
    /// not yet said it is done (see `Shared::done_handing`).
    hands_off: bool,
    /// The metrics port (`--metrics`), on the first loop only: HTTP
    /// clients beside the line clients, never counted among them.
    metrics: Option<MetricsServer>,
}

/// What the process hands a loop to run.
pub(crate) struct Parts {
    pub poll: Poll,
    pub ctx: Context,
    pub accept: Acceptor,
    pub datagrams: Vec<mio::net::UdpSocket>,
    pub signals: Option<Signals>,
    pub waker: Arc<Waker>,
    pub metrics: Option<MetricsServer>,
}

impl EventLoop {
    /// A loop over sockets already registered with `parts.poll`.
    pub fn new(parts: Parts) -> Self {
        let config = &parts.ctx.config;
        parts.ctx.output.add_waker(Arc::clone(&parts.waker));
        let shared = &parts.ctx.shared;
        let reserved = shared
            .max_conns
            .div_ceil(shared.loops().max(1))
            .min(SLAB_RESERVED);
        let hands_off = parts.ctx.shared.loops() > 1 && parts.accept.hands_off();
        EventLoop {
            hands_off,
            next_wake: None,
            countdown: Countdown::default(),
            wake_stale: true,
            // Published at the first turn: nothing has been yet.
            published_at_wakeup: u64::MAX,
            publish_due: Instant::now() + PUBLISH_EVERY,
            idle: config.idle_timeout.map(DeadlineList::new),
            line_deadlines: config.line_timeout.map(DeadlineList::new),
            proxy_headers: (!config.proxy_protocol.is_empty())
                .then(|| DeadlineList::new(proxy::HEADER_TIMEOUT)),
            handshakes: DeadlineList::new(config.tls_handshake_timeout),
            // One loop logs the counters of all.
            next_stats: config
                .stats_interval
                .filter(|_| parts.ctx.reactor == 0)
                .map(|every| Instant::now() + every),
            poll: parts.poll,
            ctx: parts.ctx,
            connections: Slab::with_capacity(reserved),
            ready: ReadyQueue::default(),
            lingering: Lingering::default(),
            accept: parts.accept,
            datagrams: parts.datagrams,
            datagram_state: DatagramState::default(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            signals: parts.signals,
            lifecycle: Lifecycle::Serving,
            waker: parts.waker,
            reading: Reading::Open,
            output_closed: false,
            next_hand_off: 0,
            handed: Vec::new(),
            metrics: parts.metrics,
        }
    }

    /// Prints through `output` instead (tests and embedding programs
    /// replace stdout).
    pub fn set_output(&mut self, output: Output) {
        output.add_waker(Arc::clone(&self.waker));
        self.ctx.output = output;
    }

    /// Whether signals reach this loop (the first one does).
    pub fn handles_signals(&self) -> bool {
        self.signals.is_some()
    }

    /// The settings this loop runs with.
    pub fn config(&self) -> &crate::serve::Config {
        &self.ctx.config
    }

    /// Runs until stopped, then returns once every client is closed and all
    /// output is flushed.
    ///
    /// If the loop fails (its `poll` fails) or panics, the whole server
    /// stops: see [`fail`](Self::fail).
    pub fn run(mut self) -> Result<(), Error> {
        self.run_to_end()
    }

    /// Runs as [`run`](Self::run) does, then hands back what outlives the
    /// loop: its signals (if it handled them) and its output, for the
    /// caller's thread to stand by with while other loops finish (see
    /// [`standby`](crate::serve::standby)).
    pub fn run_handing_back(mut self) -> (Result<(), Error>, Option<Signals>, Output) {
        let result = self.run_to_end();
        let signals = self.signals.take().and_then(|mut signals| {
            // Out of this loop's poll, to be registered in another.
            match self.poll.registry().deregister(&mut signals) {
                Ok(()) => Some(signals),
                Err(err) => {
                    log::warn!("cannot hand over the signal handler: {err}");
                    None
                }
            }
        });
        (result, signals, self.ctx.output)
    }

    fn run_to_end(&mut self) -> Result<(), Error> {
        if self.ctx.shared.loops() > 1 {
            trace::set_reactor(self.ctx.reactor);
        }
        let served = panic::catch_unwind(AssertUnwindSafe(|| self.serve()));
        let reason = match served {
            Ok(Ok(())) => return self.finish(),
            Ok(Err(err)) => err.to_string(),
            Err(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
        };
        Err(self.fail(reason))
    }

    /// The turns of the loop, until it has stopped.
    ///
    /// The clock is read once per turn, when `poll` returns: that instant
    /// serves the events, the ready queue and the deadlines that follow.
    fn serve(&mut self) -> Result<(), Error> {
        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        let mut now = Instant::now();
        // When `poll` last returned: a turn lasts from there to the next
        // `poll` (`selectd_loop_turn_seconds`). Timed only for `--metrics`,
        // the one place turns are shown: a second clock read and a
        // histogram cost about a hundred instructions per turn.
        let time_turns = self.ctx.config.metrics.is_some();
        let mut woke: Option<Instant> = None;
        // Whatever was counted while the loop was built is published now,
        // so a loop with nothing to do sleeps in its first `poll` without a
        // bound (the lazy publication below would otherwise wake it once).
        self.publish(now);
        loop {
            self.ready.begin_turn();
            if self.next_wake.is_some_and(|wake| wake <= now) {
                self.on_deadlines(now);
                self.wake_stale = true;
            }
            // A deadline may have closed a client whose unfinished last line
            // was `stop`: act on it now, not after some future event.
            self.stop_if_requested(now);
            if self.may_end(now) {
                return Ok(());
            }
            if std::mem::take(&mut self.wake_stale) {
                self.next_wake = self.deadlines().into_iter().flatten().min();
            }
            let ready_idle = self.ready.is_empty() || self.reading_paused();
            if let Some(woke) = woke.take() {
                self.ctx.counters.turns.record(woke.elapsed());
            }
            // Counters and printed output go out lazily, each at most once
            // every few milliseconds; what they hold back bounds the sleep.
            let publish_due = self.publish_lazily(now);
            let output_due = self.ctx.output.end_turn(ready_idle, now);
            // The output's bound is the shorter (checked below): no
            // comparison needed.
            let at_most = output_due.or(publish_due);
            let timeout = poll_timeout(
                now,
                ready_idle,
                self.next_wake,
                at_most,
                &mut self.countdown,
            );
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    // A wake-up all the same (see `publish_lazily`).
                    self.ctx.counters.wakeups += 1;
                    continue;
                }
                return Err(Error::Reactor(err));
            }
            crate::failpoint::failpoint!(&format!("loop-{}-turn", self.ctx.reactor + 1), |_| {
                Err(Error::Reactor(io::Error::other("injected failure")))
            });
            now = Instant::now();
            if time_turns {
                woke = Some(now);
            }
            self.ctx.counters.wakeups += 1;
            if self.ctx.config.trace_loop {
                self.trace_turn(timeout, &events);
            }
            for event in events.iter() {
                self.on_event(event, now);
            }
            self.serve_ready_queue(now);
            self.stop_if_requested(now);
            if self.lifecycle.is_stopping() && self.ctx.shared.stop_now_requested() {
                self.set_lifecycle(Lifecycle::StoppingNow);
            }
            if self.lifecycle == Lifecycle::StoppingNow {
                self.close_all(CloseReason::Stop);
            }
        }
    }

    /// After the last turn: the output written (or given up on), the
    /// counters published, and whether anything was left unwritten.
    fn finish(&mut self) -> Result<(), Error> {
        // Nobody is handed a client for this loop any more (none can be:
        // see `may_end`).
        for (stream, peer) in self.ctx.shared.close_inbox(self.ctx.reactor) {
            log::warn!("{peer}: handed over after the loop ended; closing it");
            drop(stream);
            self.ctx.shared.closed();
        }
        self.ctx.output.flush();
        let stopped_now = self.lifecycle == Lifecycle::StoppingNow;
        self.set_lifecycle(Lifecycle::Done);
        if !stopped_now && !self.output_closed {
            // Output that is flowing gets a moment even after the grace
            // period (`--grace 0`): only stalled output counts as unwritten.
            self.ctx.output.wait_written(FINAL_FLUSH);
        }
        self.publish(Instant::now());
        log::info!("stopped: {}", self.ctx.counters);
        if self.output_closed {
            return Err(Error::OutputClosed);
        }
        match self.ctx.output.unwritten() {
            0 => Ok(()),
            bytes => Err(Error::OutputUnwritten {
                bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
            }),
        }
    }

    /// Publishes this loop's counters for the others and the handle, when
    /// they changed: at once if the last time was `PUBLISH_EVERY` ago;
    /// otherwise not now, and the loop must not sleep longer than
    /// `PUBLISH_EVERY` (returned), or a count would stay unseen while it is
    /// idle. A busy loop thus takes the lock a few hundred times a second,
    /// not once per turn (and computes no time for it: the sleep it bounds
    /// is a constant).
    fn publish_lazily(&mut self, now: Instant) -> Option<Duration> {
        self.ctx.output.count_drops(&mut self.ctx.counters);
        // Every return from `poll` counts a wake-up (an interrupted one
        // too), and counters change only after one: so one field tells
        // whether they changed since they were published, with no copy of
        // them kept to compare.
        if self.ctx.counters.wakeups == self.published_at_wakeup {
            return None;
        }
        if now < self.publish_due {
            return Some(PUBLISH_EVERY);
        }
        self.publish(now);
        None
    }

    /// Publishes this loop's counters now.
    fn publish(&mut self, now: Instant) {
        self.ctx.output.count_drops(&mut self.ctx.counters);
        self.ctx
            .shared
            .publish(self.ctx.reactor, &self.ctx.counters);
        self.published_at_wakeup = self.ctx.counters.wakeups;
        self.publish_due = now + PUBLISH_EVERY;
    }

    fn on_event(&mut self, event: &Event, now: Instant) {
        match Slot::of(event.token()) {
            Slot::Connection(key) => self.on_connection_event(key, event, now),
            Slot::Listener(index) => self.accept_from(index, now),
            Slot::Datagram(index) => self.on_datagrams(index),
            Slot::Waker => self.on_wake(now),
            Slot::Signals => self.on_signals(now),
            Slot::Metrics(slot) => self.on_metrics(slot, now),
            Slot::Lingering(key) => {
                self.lingering
                    .on_readable(key, &mut self.scratch, &self.ctx.registry);
            }
        }
    }

    /// The metrics port: its own clients, lent what a scrape reads.
    fn on_metrics(&mut self, slot: MetricsSlot, now: Instant) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let lent = metrics::Lent {
            registry: &self.ctx.registry,
            lingering: &mut self.lingering,
            view: metrics::View {
                shared: &self.ctx.shared,
                reactor: self.ctx.reactor,
                counters: &self.ctx.counters,
                reading_paused: self.reading == Reading::PausedForOutput,
                output_pending: self.ctx.output.pending(),
            },
        };
        metrics.on_event(slot, lent, now);
        // Its request and keep-alive deadlines may have come forward.
        self.wake_stale = true;
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
            // Remember what the event said; the read waits for room. But a
            // `stop` must not wait for it: look for one, without reading.
            connection.defer_read(event.is_read_closed() || event.is_priority());
            if !self.ctx.stop_requested
                && connection.stop_waiting_unread(&self.ctx, &mut self.scratch)
            {
                log::info!(
                    "{}: stop sent while the output is full: stopping",
                    connection.label()
                );
                self.ctx.stop_requested = true;
            }
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
            && connection.wants_write()
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
        if self.ready.is_empty() || self.reading_paused() {
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
                Slot::Waker | Slot::Signals | Slot::Metrics(_) | Slot::Lingering(_) => {}
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
            self.wake_stale |= idle.touch(key, now);
        }
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if let Some(lines) = &mut self.line_deadlines {
            match connection.line_timer() {
                LineTimer::Unchanged => {}
                LineTimer::Start => self.wake_stale |= lines.touch(key, now),
                LineTimer::Stop => lines.remove(key),
            }
        }
        // A PROXY header or TLS handshake that is over takes its clock with
        // it; a client past both (almost every read) skips this.
        if connection.setting_up() {
            let header = connection.awaits_proxy_header();
            let handshake = connection.awaits_handshake();
            if let Some(headers) = &mut self.proxy_headers
                && !header
            {
                headers.remove(key);
            }
            if !handshake {
                self.handshakes.remove(key);
            }
            if !header && !handshake {
                connection.set_up();
            }
        }
        if read {
            self.ready.served(Token(key), again);
        } else if again {
            self.ready.wake(Token(key));
        }
    }

    /// How many connections are open (for `Debug`).
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }
}
