//! The load generator's reactor: one `Poll` per thread, many clients each.
//!
//! The same readiness rules as the server apply, and for the same reasons:
//! every socket is non-blocking and registered once, edge-triggered, for
//! both readable and writable; on each event we read until `WouldBlock`,
//! then write until `WouldBlock` (read first: a reply that completes a
//! message lets the next message go out in the same turn). `WouldBlock` and
//! `Interrupted` are control flow, never errors.
//!
//! A connection's life: `Connecting` (a non-blocking `connect` returned
//! `EINPROGRESS`), `Open` after the first event shows it has a peer (mio's
//! rule: `take_error`, then `peer_addr`), `Closed` in idle mode when the
//! server hangs up. In echo and ingest modes any failure ends the run.
//!
//! Echo keeps one buffer per connection holding every byte sent but not yet
//! echoed; bytes that come back are compared with its front, so verifying is
//! a `memcmp` and costs no bookkeeping per message beyond one timestamp.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{BenchConfig, BenchError, Mode};

/// Largest round trip the histogram holds, in µs (one hour); longer ones
/// are clamped, which a benchmark of seconds never sees.
const MAX_RTT_US: u64 = 3_600_000_000;

/// A new, empty latency histogram: µs, 3 significant digits (0.1% error).
#[allow(clippy::expect_used)] // constant, valid bounds: this cannot fail
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_RTT_US, 3).expect("bounds are constant and valid")
}

/// What the reactors share with the progress line and with each other.
pub(crate) struct Shared {
    /// Set by the first reactor that fails, so the others stop too.
    stop: AtomicBool,
    /// The first failure, kept for the error message.
    error: Mutex<Option<BenchError>>,
    /// Messages completed inside the measured window so far.
    pub(crate) msgs: AtomicU64,
    /// Messages completed so far, warm-up included: for the progress line.
    pub(crate) progress: AtomicU64,
    /// Idle mode: connections established so far.
    pub(crate) established: AtomicUsize,
    /// Idle mode: connections open now.
    pub(crate) held: AtomicUsize,
    /// Round trips of the measured window, merged from every reactor.
    histogram: Mutex<Histogram<u64>>,
    /// Connections whose connect has neither succeeded nor failed yet.
    unresolved: AtomicUsize,
    /// When `unresolved` reached 0, in ns after `Plan::start` (`u64::MAX`: not yet).
    connected_at_ns: AtomicU64,
}

impl Shared {
    pub(crate) fn new(conns: usize) -> Shared {
        Shared {
            unresolved: AtomicUsize::new(conns),
            connected_at_ns: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            msgs: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            established: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            histogram: Mutex::new(new_histogram()),
        }
    }

    /// Counts `count` connects as finished (either way); the call that
    /// finishes the last one starts the clock of the warm-up and the window.
    fn resolve(&self, count: usize, plan: &Plan) {
        if count > 0 && self.unresolved.fetch_sub(count, Ordering::AcqRel) == count {
            let ns = plan.start.elapsed().as_nanos() as u64;
            self.connected_at_ns.store(ns, Ordering::Release);
        }
    }

    /// When every connect had finished, if they all have.
    pub(crate) fn connected_at(&self, plan: &Plan) -> Option<Instant> {
        match self.connected_at_ns.load(Ordering::Acquire) {
            u64::MAX => None,
            ns => Some(plan.start + Duration::from_nanos(ns)),
        }
    }

    /// Connects still in progress.
    pub(crate) fn unresolved(&self) -> usize {
        self.unresolved.load(Ordering::Relaxed)
    }

    fn fail(&self, error: BenchError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_error(&self) -> Option<BenchError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn p99_so_far(&self) -> u64 {
        let histogram = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        histogram.value_at_quantile(0.99)
    }

    pub(crate) fn histogram(&self) -> Histogram<u64> {
        self.histogram
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn merge(&self, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        let mut shared = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        // Same bounds on both sides, so adding cannot fail.
        let _ = shared.add(&*local);
        local.reset();
    }
}

/// When the run began and how long each phase lasts; the same for every reactor.
///
/// Phases: connecting (until every connect has finished, at most
/// [`CONNECT_TIMEOUT`]), then `--warmup`, then the `--duration` window.
/// Connections start their load as soon as they are connected, but nothing
/// counts before the window: a run with 1,000 connections measures 1,000
/// connections, not the ones that happened to connect first.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) config: BenchConfig,
    /// When the first connect started.
    pub(crate) start: Instant,
}

/// How long every connection may take to connect. Lost SYNs (a full accept
/// queue) are retried by the kernel after 1 s, 3 s, 7 s...: 30 s allows a few.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The measured window, once known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// From here on, messages count.
    pub(crate) measure_start: Instant,
    /// End of the run.
    pub(crate) end: Instant,
}

impl Window {
    /// Before every connection is up: nothing counts, and the run ends at
    /// the connect deadline.
    fn connecting(plan: &Plan) -> Window {
        Window {
            measure_start: plan.start + Duration::from_secs(100 * 365 * 24 * 3600),
            end: plan.start + CONNECT_TIMEOUT,
        }
    }

    pub(crate) fn after(plan: &Plan, connected_at: Instant) -> Window {
        let measure_start = connected_at + plan.config.warmup;
        Window {
            measure_start,
            end: measure_start + plan.config.duration,
        }
    }

    fn counts(&self, now: Instant) -> bool {
        now >= self.measure_start && now < self.end
    }
}

/// Which source address each connection binds before connecting.
///
/// One source IP reaches one server address through at most as many
/// connections as there are ephemeral ports (`ip_local_port_range`, about
/// 28,000 by default). Beyond that, connections to a loopback server are
/// spread over `127.0.0.2`, `127.0.0.3`, ...: every `127/8` address is local.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    /// Connections per source address; `None` means never bind.
    per_source: Option<usize>,
}

impl SourcePlan {
    pub(crate) fn for_run(server: SocketAddr, conns: usize) -> SourcePlan {
        let ports = ephemeral_ports().saturating_sub(1000).max(1);
        let loopback_v4 = matches!(server.ip(), IpAddr::V4(ip) if ip.is_loopback());
        SourcePlan {
            per_source: (loopback_v4 && conns > ports).then_some(ports),
        }
    }

    /// The address connection `conn` binds to, if any: `None` for the first
    /// `per_source` (the kernel picks 127.0.0.1), then 127.0.0.2, ...
    fn source_for(&self, conn: usize) -> Option<IpAddr> {
        let per_source = self.per_source?;
        let block = conn / per_source;
        if block == 0 {
            return None;
        }
        let host = 1 + block as u32;
        Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | host)))
    }
}

/// The size of the kernel's ephemeral port range, or the Linux default.
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<usize>());
            match (parts.next(), parts.next()) {
                (Some(Ok(low)), Some(Ok(high))) if high >= low => Some(high - low + 1),
                _ => None,
            }
        })
        .unwrap_or(60999 - 32768 + 1)
}

/// What one reactor reports when the run ends normally.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Messages completed inside the measured window.
    pub(crate) msgs: u64,
    /// Idle mode: connections that failed or were closed by the server.
    pub(crate) errors: u64,
    /// Connections that became established.
    pub(crate) established: usize,
    /// Connections still open at the end.
    pub(crate) held: usize,
    /// Idle mode: the first failure, as text.
    pub(crate) first_failure: Option<String>,
}

/// Messages completed: inside the measured window, and in all.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    in_window: u64,
    all: u64,
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, other: Count) {
        self.in_window += other.in_window;
        self.all += other.all;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    Closed,
}

/// One client connection of the load generator.
struct Conn {
    /// Global connection number (for messages), not the token.
    id: usize,
    stream: TcpStream,
    state: State,
    /// Echo: bytes sent or queued and not yet echoed. `buf[..verified]` came
    /// back already, `buf[..written]` went out; compacted as it drains.
    buf: Vec<u8>,
    written: usize,
    verified: usize,
    /// Echo: total bytes verified on this connection (stream offset).
    echoed: u64,
    /// Echo: send time of each message in flight, oldest first.
    sent_at: VecDeque<Instant>,
    /// Echo: sequence number of the next message, written into its payload.
    next_seq: u64,
    /// Ingest: total bytes written; offset into the shared block is this
    /// modulo the block's length.
    ingested: u64,
}

/// Bytes one ingest connection writes per turn before letting the others go.
const INGEST_TURN: usize = 256 * 1024;

/// How often a reactor adds its histogram to the shared one (and checks `stop`).
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Runs one reactor over the connections numbered `conn_ids` until the plan's
/// end, a failure in any reactor, or (idle) the last connection closing.
pub(crate) fn run_worker(
    plan: &Plan,
    sources: &SourcePlan,
    conn_ids: &[usize],
    shared: &Shared,
) -> Result<Outcome, BenchError> {
    match work(plan, sources, conn_ids, shared) {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            shared.fail(error);
            // The error is reported once, from `Shared`.
            Ok(Outcome::default())
        }
    }
}

fn work(
    plan: &Plan,
    sources: &SourcePlan,
    conn_ids: &[usize],
    shared: &Shared,
) -> Result<Outcome, BenchError> {
    let config = &plan.config;
    let mut poll = Poll::new().map_err(BenchError::Reactor)?;
    let mut outcome = Outcome::default();
    let mut conns: Vec<Conn> = Vec::with_capacity(conn_ids.len());
    for &id in conn_ids {
        match connect(config.addr, sources.source_for(id)) {
            Ok(mut stream) => {
                let token = Token(conns.len());
                poll.registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .map_err(BenchError::Reactor)?;
                conns.push(Conn {
                    id,
                    stream,
                    state: State::Connecting,
                    buf: Vec::new(),
                    written: 0,
                    verified: 0,
                    echoed: 0,
                    sent_at: VecDeque::new(),
                    next_seq: 0,
                    ingested: 0,
                });
            }
            // Idle mode reports how far it got; the others need every connection.
            Err(error) if config.mode == Mode::Idle => {
                outcome.errors += 1;
                outcome.first_failure.get_or_insert(error.to_string());
                shared.resolve(1, plan);
            }
            Err(error) => return Err(error),
        }
    }
    let mut window = Window::connecting(plan);
    let mut connected = false;

    let block = ingest_block(config.size);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut local = new_histogram();
    let mut local_msgs = 0u64;
    // Ingest connections that used their turn without reaching `WouldBlock`:
    // edge-triggered, they get no new event, so they are resumed from here.
    let mut ready: Vec<usize> = Vec::new();
    let mut next_flush = Instant::now() + FLUSH_EVERY;

    loop {
        let now = Instant::now();
        if !connected {
            if let Some(at) = shared.connected_at(plan) {
                connected = true;
                window = Window::after(plan, at);
            } else if now >= window.end {
                // The connect deadline passed: what is still connecting failed.
                let late = conns.iter().filter(|c| c.state == State::Connecting);
                if config.mode != Mode::Idle && late.clone().next().is_some() {
                    return Err(BenchError::ConnectTimeout {
                        addr: config.addr,
                        pending: shared.unresolved(),
                    });
                }
                let late = late.count();
                for conn in conns.iter_mut().filter(|c| c.state == State::Connecting) {
                    conn.state = State::Closed;
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
                if late > 0 {
                    outcome.errors += late as u64;
                    outcome.first_failure.get_or_insert(format!(
                        "{late} connects still pending after {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ));
                    shared.resolve(late, plan);
                }
                // Wait for the other reactors' stragglers, which time out too.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        if now >= window.end || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if now >= next_flush {
            shared.merge(&mut local);
            next_flush = now + FLUSH_EVERY;
        }
        let timeout = if ready.is_empty() {
            // Round up to the next millisecond so the loop never wakes early and spins.
            let wait = (window.end - now).min(next_flush.saturating_duration_since(now));
            Duration::from_millis(wait.as_millis() as u64 + 1)
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::Reactor(e)),
        }

        // Messages completed in this turn: (inside the window, in all).
        let mut turn = Count::default();
        let resumed = std::mem::take(&mut ready);
        let tokens = events.iter().map(|event| event.token().0).chain(resumed);
        for index in tokens {
            let Some(conn) = conns.get_mut(index) else {
                continue;
            };
            if conn.state == State::Connecting {
                match finish_connect(conn, config.addr, sources) {
                    Ok(false) => continue,
                    Ok(true) => {
                        shared.resolve(1, plan);
                        conn.state = State::Open;
                        outcome.established += 1;
                        shared.established.fetch_add(1, Ordering::Relaxed);
                        shared.held.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) if config.mode == Mode::Idle => {
                        shared.resolve(1, plan);
                        conn.state = State::Closed;
                        outcome.errors += 1;
                        outcome.first_failure.get_or_insert(error.to_string());
                        let _ = poll.registry().deregister(&mut conn.stream);
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            if conn.state != State::Open {
                continue;
            }
            match config.mode {
                Mode::Echo => {
                    turn += echo_turn(conn, config, &window, &mut scratch, &mut local)?;
                }
                Mode::Ingest => {
                    let (lines, more) = ingest_turn(conn, config, &window, &block, &mut scratch)?;
                    turn += lines;
                    if more {
                        ready.push(index);
                    }
                }
                Mode::Idle => {
                    if let Some(why) = idle_turn(conn, &mut scratch) {
                        conn.state = State::Closed;
                        outcome.errors += 1;
                        outcome.first_failure.get_or_insert(why);
                        shared.held.fetch_sub(1, Ordering::Relaxed);
                        let _ = poll.registry().deregister(&mut conn.stream);
                    }
                }
            }
        }
        ready.sort_unstable();
        ready.dedup();
        if turn.all > 0 {
            local_msgs += turn.in_window;
            shared.msgs.fetch_add(turn.in_window, Ordering::Relaxed);
            shared.progress.fetch_add(turn.all, Ordering::Relaxed);
        }
    }
    shared.merge(&mut local);
    outcome.msgs = local_msgs;
    outcome.held = conns.iter().filter(|c| c.state == State::Open).count();
    Ok(outcome)
}

/// Starts a non-blocking connect, bound to `source` first if given.
fn connect(server: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, BenchError> {
    let error = |e: io::Error| BenchError::Connect {
        addr: server,
        source_ip: source,
        source: e,
    };
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(error)?;
    socket.set_nonblocking(true).map_err(error)?;
    // Lines are small and latency is what we measure: no Nagle delay.
    socket.set_tcp_nodelay(true).map_err(error)?;
    if let Some(ip) = source {
        socket
            .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(error)?;
    }
    match socket.connect(&SockAddr::from(server)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(error(e)),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// After an event on a connecting socket: `Ok(true)` once connected,
/// `Ok(false)` if the event was spurious and the connect still runs.
fn finish_connect(
    conn: &mut Conn,
    server: SocketAddr,
    sources: &SourcePlan,
) -> Result<bool, BenchError> {
    let error = |e: io::Error| BenchError::Connect {
        addr: server,
        source_ip: sources.source_for(conn.id),
        source: e,
    };
    match conn.stream.take_error() {
        Ok(Some(e)) | Err(e) => return Err(error(e)),
        Ok(None) => {}
    }
    match conn.stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(error(e)),
    }
}

/// Writes message `seq` of connection `conn` (`size` bytes, `\n` last) to `out`.
///
/// The sequence number comes first, least significant hex digit first, so
/// even a 2-byte line differs from its neighbour and a reordered, dropped or
/// duplicated line fails the byte comparison. The rest is a letter pattern
/// shifted by the connection number.
pub(crate) fn push_message(out: &mut Vec<u8>, conn: usize, seq: u64, size: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let body = size - 1;
    let start = out.len();
    let mut digits = seq;
    for i in 0..body {
        let byte = if i < 16 {
            let d = HEX[(digits & 0xf) as usize];
            digits >>= 4;
            d
        } else if i == 16 {
            b' '
        } else {
            b'a' + ((i + conn) % 26) as u8
        };
        out.push(byte);
    }
    out.push(b'\n');
    debug_assert_eq!(out.len() - start, size);
}

/// One turn of an echo connection: read and verify, record completed round
/// trips, top the pipeline up, write. Returns messages completed in the window.
fn echo_turn(
    conn: &mut Conn,
    config: &BenchConfig,
    window: &Window,
    scratch: &mut [u8],
    histogram: &mut Histogram<u64>,
) -> Result<Count, BenchError> {
    let size = config.size as u64;
    let mut completed = Count::default();
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => {
                return Err(BenchError::Closed {
                    conn: conn.id,
                    received: conn.echoed,
                });
            }
            Ok(n) => {
                let got = &scratch[..n];
                let outstanding = conn.written - conn.verified;
                let expected = &conn.buf[conn.verified..conn.written];
                let common = n.min(outstanding);
                let first_difference = got[..common]
                    .iter()
                    .zip(&expected[..common])
                    .position(|(got, sent)| got != sent);
                if let Some(at) = first_difference {
                    return Err(BenchError::Mismatch {
                        conn: conn.id,
                        offset: conn.echoed + at as u64,
                        expected: expected[at],
                        got: got[at],
                    });
                }
                if n > outstanding {
                    return Err(BenchError::Unexpected {
                        conn: conn.id,
                        offset: conn.echoed + outstanding as u64,
                    });
                }
                let before = conn.echoed / size;
                conn.verified += n;
                conn.echoed += n as u64;
                let done = conn.echoed / size - before;
                if done > 0 {
                    let now = Instant::now();
                    for _ in 0..done {
                        // Every completed message was sent, so this always pops.
                        let Some(sent) = conn.sent_at.pop_front() else {
                            break;
                        };
                        if window.counts(now) {
                            let micros = now.duration_since(sent).as_micros() as u64;
                            histogram.saturating_record(micros.max(1));
                            completed.in_window += 1;
                        }
                        completed.all += 1;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BenchError::Io {
                    conn: conn.id,
                    op: "read",
                    source: e,
                });
            }
        }
    }

    // Drop what came back; keep the buffer from growing without bound.
    if conn.verified == conn.buf.len() {
        conn.buf.clear();
        conn.written = 0;
        conn.verified = 0;
    } else if conn.verified >= 16 * 1024 {
        conn.buf.drain(..conn.verified);
        conn.written -= conn.verified;
        conn.verified = 0;
    }

    // Closed loop: a new message for each one that completed.
    if conn.sent_at.len() < config.pipeline {
        let now = Instant::now();
        while conn.sent_at.len() < config.pipeline {
            push_message(&mut conn.buf, conn.id, conn.next_seq, config.size);
            conn.next_seq += 1;
            conn.sent_at.push_back(now);
        }
    }

    while conn.written < conn.buf.len() {
        match conn.stream.write(&conn.buf[conn.written..]) {
            Ok(0) => {
                return Err(BenchError::Closed {
                    conn: conn.id,
                    received: conn.echoed,
                });
            }
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BenchError::Io {
                    conn: conn.id,
                    op: "write",
                    source: e,
                });
            }
        }
    }
    Ok(completed)
}

/// The lines every ingest connection writes, over and over: about 64 KiB of
/// whole lines (at least one), each with its own sequence number.
fn ingest_block(size: usize) -> Vec<u8> {
    let lines = (64 * 1024 / size).max(1);
    let mut block = Vec::with_capacity(lines * size);
    for seq in 0..lines {
        push_message(&mut block, 0, seq as u64, size);
    }
    block
}

/// One turn of an ingest connection: drop whatever the server sent, then
/// write up to [`INGEST_TURN`] bytes. Returns lines completed in the window
/// and whether the turn ended before `WouldBlock` (so it must be resumed).
fn ingest_turn(
    conn: &mut Conn,
    config: &BenchConfig,
    window: &Window,
    block: &[u8],
    scratch: &mut [u8],
) -> Result<(Count, bool), BenchError> {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => {
                return Err(BenchError::Closed {
                    conn: conn.id,
                    received: 0,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BenchError::Io {
                    conn: conn.id,
                    op: "read",
                    source: e,
                });
            }
        }
    }
    let size = config.size as u64;
    let before = conn.ingested;
    let mut budget = INGEST_TURN;
    let mut more = false;
    while budget > 0 {
        let at = (conn.ingested % block.len() as u64) as usize;
        let chunk = &block[at..(at + budget).min(block.len())];
        match conn.stream.write(chunk) {
            Ok(0) => {
                return Err(BenchError::Closed {
                    conn: conn.id,
                    received: 0,
                });
            }
            Ok(n) => {
                conn.ingested += n as u64;
                budget -= n;
                more = budget == 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BenchError::Io {
                    conn: conn.id,
                    op: "write",
                    source: e,
                });
            }
        }
    }
    let now = Instant::now();
    let all = conn.ingested / size - before / size;
    let lines = Count {
        all,
        in_window: if window.counts(now) { all } else { 0 },
    };
    Ok((lines, more))
}

/// An event on an idle connection: drain it; `Some(reason)` if the server
/// closed it or it failed.
fn idle_turn(conn: &mut Conn, scratch: &mut [u8]) -> Option<String> {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return Some(format!("connection {} closed by the server", conn.id)),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Some(format!("connection {}: read: {e}", conn.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_size_and_one_newline() {
        for size in [1, 2, 17, 18, 64, 1024] {
            let mut out = Vec::new();
            push_message(&mut out, 3, 0x1234, size);
            assert_eq!(out.len(), size);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(out.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn neighbouring_messages_differ_even_when_short() {
        for size in [2, 8, 64] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            push_message(&mut a, 0, 41, size);
            push_message(&mut b, 0, 42, size);
            assert_ne!(a, b);
        }
    }

    #[test]
    fn sources_spread_only_beyond_one_address_worth_of_ports() {
        let server: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let few = SourcePlan::for_run(server, 100);
        assert_eq!(few.source_for(99), None);
        let many = SourcePlan {
            per_source: Some(10),
        };
        assert_eq!(many.source_for(9), None);
        assert_eq!(many.source_for(10), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(many.source_for(25), Some("127.0.0.3".parse().unwrap()));
    }

    #[test]
    fn ingest_block_is_whole_lines() {
        for size in [1, 64, 100_000] {
            let block = ingest_block(size);
            assert_eq!(block.len() % size, 0);
            assert!(!block.is_empty());
        }
    }
}
