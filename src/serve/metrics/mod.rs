//! `--metrics`: Prometheus metrics and a health check, served by the loop.
//!
//! An operator watches a daemon through Prometheus, and a load balancer
//! asks it over HTTP whether it is healthy. Both are HTTP GETs, and an HTTP
//! GET is just another client of the reactor: a socket that becomes
//! readable, bytes to frame (a request head instead of a line), an answer
//! to write. So the first event loop serves them itself, beside its line
//! clients, with no thread of its own and no lock on any counter: a scrape
//! reads the counters the loops already keep, as a `stats` line does.
//!
//! The metrics port has its own listener, its own slab of HTTP clients and
//! its own range of tokens (`slots`), so that its clients are never line
//! clients: never printed, never counted in `selectd_connections_*`, never
//! held against `--max-conns`, and left out when a stop waits for clients
//! to finish. They are bounded instead by their own rules:
//!
//! - at most [`MAX_CLIENTS`] at once: a newcomer beyond that takes the place
//!   of the longest idle keep-alive client, or is answered 503 and closed;
//! - a request head of at most 8 KiB (431 beyond), one answer at a time (see
//!   `client`);
//! - [`REQUEST_TIME`] from a connection's start, or from a request's first
//!   byte, to that request answered; [`KEEP_ALIVE`] between requests.
//!
//! `GET /healthz` answers `200 ok` while serving and `503 stopping` from the
//! moment a stop begins: the metrics port stays open while the loop drains
//! its clients, so a load balancer sees the server leave before it is gone.
//!
//! This module owns the sockets and the clocks; `client` one connection's
//! life; `http` the protocol; `exposition` the metrics; `process` the
//! `process_*` metrics from `/proc`.

mod client;
mod exposition;
mod http;
mod process;

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::net::addr::Address;
use crate::net::stream::Stream;
use crate::serve::deadline_list::DeadlineList;
use crate::serve::error::Error;
use crate::serve::linger::Lingering;
use crate::serve::shared::Shared;
use crate::serve::stats::Counters;
use crate::serve::tokens::{self, MetricsSlot};
use client::{Answer, HttpClient, Progress};
use exposition::{Format, Snapshot};
use http::{Method, Request, Resource, Response, Status};

/// The most HTTP clients connected to the metrics port at once. A scraper
/// or two and a load balancer's checks need a handful.
pub(crate) const MAX_CLIENTS: usize = 64;

/// From a connection's start, or a request's first byte, to that request
/// answered in full: past this, the connection is closed (slowloris).
pub(crate) const REQUEST_TIME: Duration = Duration::from_secs(5);

/// How long a connection may wait, idle, for its next request. Longer than
/// Prometheus' default scrape interval (15 s), so a scraper keeps its
/// connection from one scrape to the next.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Connections accepted per readiness event of the listener; the rest wait
/// for the next turn.
const ACCEPTS_PER_EVENT: usize = 16;

/// The `listen()` backlog of the metrics port.
const BACKLOG: i32 = 128;

/// What the loop lends the metrics server for one event.
pub(crate) struct Lent<'a> {
    pub registry: &'a Registry,
    /// Where a connection that ends on purpose is closed gently.
    pub lingering: &'a mut Lingering,
    /// What a scrape reads.
    pub view: View<'a>,
}

/// What a scrape reads from the loop that serves it.
pub(crate) struct View<'a> {
    pub shared: &'a Shared,
    /// This loop's index and its live counters (the others' are read as
    /// they last published them).
    pub reactor: usize,
    pub counters: &'a Counters,
    /// This loop is not reading clients now (the output is full).
    pub reading_paused: bool,
    /// Printed output not yet written.
    pub output_pending: usize,
}

/// The metrics port of one server: its listeners and HTTP clients.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    listeners: Vec<TcpListener>,
    addrs: Vec<SocketAddr>,
    clients: Slab<HttpClient>,
    /// Clients in the middle of a request (or a new connection's first).
    requests: DeadlineList,
    /// Clients idle between requests.
    idle: DeadlineList,
    answers: Answers,
}

impl MetricsServer {
    /// Binds every address `address` resolves to; a non-loopback one is
    /// served with a warning, as `--listen` does.
    pub fn bind(address: &Address) -> Result<MetricsServer, Error> {
        let resolved = address.resolve().map_err(|source| Error::Resolve {
            address: address.to_string(),
            source,
        })?;
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for addr in resolved {
            if !tokens::is_metrics_listener_index(listeners.len()) {
                break;
            }
            let listener = bind_one(addr).map_err(|err| Error::Listen {
                address: format!("http://{addr} (--metrics)"),
                reason: err.into(),
            })?;
            let bound = listener.local_addr().unwrap_or(addr);
            if !bound.ip().is_loopback() {
                log::warn!(
                    "metrics on http://{bound}: the metrics port is reachable from the network"
                );
            }
            addrs.push(bound);
            listeners.push(listener);
        }
        Ok(MetricsServer {
            listeners,
            addrs,
            clients: Slab::new(),
            requests: DeadlineList::new(REQUEST_TIME),
            idle: DeadlineList::new(KEEP_ALIVE),
            answers: Answers {
                body: String::new(),
                requests: [0; Status::ALL.len()],
                process: process::Constants::read(),
            },
        })
    }

    /// Where the metrics port listens, with real ports.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Registers the listeners with the loop that will serve them.
    pub fn register(&mut self, registry: &Registry) -> Result<(), Error> {
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            registry
                .register(
                    listener,
                    tokens::metrics_listener_token(index),
                    Interest::READABLE,
                )
                .map_err(|err| Error::Setup("register the metrics listener", err))?;
        }
        Ok(())
    }

    /// A readiness event for one of the metrics port's sockets.
    pub fn on_event(&mut self, slot: MetricsSlot, lent: Lent<'_>, now: Instant) {
        match slot {
            MetricsSlot::Listener(index) => self.accept(index, lent, now),
            MetricsSlot::Client(key) => self.serve(key, lent, now),
        }
    }

    /// When the nearest request or keep-alive deadline falls.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.requests.next_deadline(), self.idle.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Closes the clients whose request took too long, or whose keep-alive
    /// ran out.
    pub fn expire(&mut self, now: Instant, registry: &Registry) {
        while let Some(key) = self.requests.pop_expired(now) {
            if let Some(client) = self.clients.get(key) {
                log::debug!(
                    "metrics client {}: request not answered within {REQUEST_TIME:?}",
                    client.peer()
                );
            }
            self.close(key, registry);
        }
        while let Some(key) = self.idle.pop_expired(now) {
            self.close(key, registry);
        }
    }

    /// Accepts what the listener holds, within this event's budget.
    fn accept(&mut self, index: usize, lent: Lent<'_>, now: Instant) {
        let Lent {
            registry,
            lingering,
            ..
        } = lent;
        for _ in 0..ACCEPTS_PER_EVENT {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, registry, lingering, now),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // Out of descriptors, say: the queued connections wait
                    // for the next connection's event.
                    log::warn!("metrics port: accept failed: {err}");
                    return;
                }
            }
        }
        // Budget spent with connections perhaps still queued: registering
        // again re-arms the edge, so the next turn accepts the rest.
        if let Some(listener) = self.listeners.get_mut(index) {
            let _ = registry.reregister(
                listener,
                tokens::metrics_listener_token(index),
                Interest::READABLE,
            );
        }
    }

    /// Takes a new client in, making room if needed.
    fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        registry: &Registry,
        lingering: &mut Lingering,
        now: Instant,
    ) {
        if self.clients.len() >= MAX_CLIENTS {
            // The client idle longest makes room (every idle deadline falls
            // before `now + KEEP_ALIVE`, so this pops the earliest).
            match self.idle.pop_expired(now + KEEP_ALIVE) {
                Some(key) => self.close(key, registry),
                None => return self.refuse(stream, peer, registry, lingering, now),
            }
        }
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if !tokens::is_metrics_client_key(key) {
            return; // Dropped: closed.
        }
        match HttpClient::new(stream, peer, tokens::metrics_client_token(key), registry) {
            Ok(client) => {
                entry.insert(client);
                self.requests.touch(key, now);
            }
            Err(err) => log::debug!("metrics client {peer}: cannot register: {err}"),
        }
    }

    /// Too many clients are busy: say so, and close.
    fn refuse(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        registry: &Registry,
        lingering: &mut Lingering,
        now: Instant,
    ) {
        log::debug!("metrics client {peer}: refused, {MAX_CLIENTS} clients busy");
        let mut out = Vec::new();
        Response {
            close: true,
            ..Response::text(Status::Unavailable, "too many clients\n")
        }
        .write_to(&mut out);
        self.answers.count(Status::Unavailable);
        // A fresh socket's send buffer is empty: this short write fits.
        let _ = stream.write(&out);
        lingering.start(Stream::Tcp(stream), registry, now);
    }

    /// Serves client `key` after an event, and moves it between clocks.
    fn serve(&mut self, key: usize, lent: Lent<'_>, now: Instant) {
        let open = self.clients.len();
        let Some(client) = self.clients.get_mut(key) else {
            return; // Closed earlier in this batch.
        };
        let was_busy = self.requests.contains(key);
        let mut answering = Answering {
            answers: &mut self.answers,
            view: &lent.view,
            open,
        };
        match client.serve(&mut answering, lent.registry) {
            Progress::Open {
                busy: true,
                answered,
            } => {
                if !was_busy || answered > 0 {
                    // A new request began: its own 5 s.
                    self.idle.remove(key);
                    self.requests.touch(key, now);
                }
            }
            Progress::Open {
                busy: false,
                answered,
            } => {
                if was_busy || answered > 0 {
                    self.requests.remove(key);
                    self.idle.touch(key, now);
                }
            }
            Progress::Finished => {
                if let Some(stream) = self.remove(key, lent.registry) {
                    lent.lingering
                        .start(Stream::Tcp(stream), lent.registry, now);
                }
            }
            Progress::Gone => self.close(key, lent.registry),
        }
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        // Dropping the stream closes it.
        let _ = self.remove(key, registry);
    }

    fn remove(&mut self, key: usize, registry: &Registry) -> Option<TcpStream> {
        self.requests.remove(key);
        self.idle.remove(key);
        let client = self.clients.try_remove(key)?;
        Some(client.into_stream(registry))
    }
}

/// A metrics listener: `SO_REUSEADDR` (a restarted server binds while old
/// scrapes linger in `TIME_WAIT`), IPv6 only for IPv6, non-blocking.
fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// What the metrics port keeps between requests: the reused body buffer and
/// its own counters.
#[derive(Debug)]
struct Answers {
    /// The last `/metrics` body; reused, so a scrape allocates nothing once
    /// the buffer has grown to the usual size.
    body: String,
    /// Requests answered, by [`Status::index`].
    requests: [u64; Status::ALL.len()],
    process: process::Constants,
}

impl Answers {
    fn count(&mut self, status: Status) {
        self.requests[status.index()] += 1;
    }
}

/// Answers for one event: the metrics port's state and the loop's view.
struct Answering<'a, 'b> {
    answers: &'a mut Answers,
    view: &'a View<'b>,
    /// HTTP clients connected now.
    open: usize,
}

impl Answering<'_, '_> {
    fn snapshot(&self) -> Snapshot {
        let view = self.view;
        let mut loops = view.shared.by_loop(Some((view.reactor, view.counters)));
        if let Some(this) = loops.get_mut(view.reactor) {
            this.reading_paused = u64::from(view.reading_paused);
        }
        Snapshot {
            loops,
            max_conns: view.shared.max_conns,
            output_pending: view.output_pending,
            stopping: view.shared.stop_requested(),
            http_requests: self.answers.requests,
            http_open: self.open,
            process: process::read(&self.answers.process),
        }
    }
}

impl Answer for Answering<'_, '_> {
    fn answer(&mut self, request: &Request, out: &mut Vec<u8>) -> bool {
        let close = !request.keep_alive || request.has_body;
        let response = match (request.resource, request.method) {
            (Resource::Unknown, _) => Response::text(Status::NotFound, "not found\n"),
            (_, Method::Other) => Response::text(Status::MethodNotAllowed, "method not allowed\n"),
            (Resource::Health, _) if self.view.shared.stop_requested() => {
                Response::text(Status::Unavailable, "stopping\n")
            }
            (Resource::Health, _) => Response::text(Status::Ok, "ok\n"),
            (Resource::Metrics, _) => {
                let format = Format::negotiate(&request.accept);
                let snapshot = self.snapshot();
                exposition::render(snapshot, format, &mut self.answers.body);
                Response {
                    status: Status::Ok,
                    content_type: format.content_type(),
                    body: self.answers.body.as_bytes(),
                    head_only: false,
                    close: false,
                }
            }
        };
        let status = response.status;
        Response {
            head_only: request.method == Method::Head,
            close,
            ..response
        }
        .write_to(out);
        self.answers.count(status);
        close
    }

    fn refused(&mut self, status: Status) {
        self.answers.count(status);
    }
}
