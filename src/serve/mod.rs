//! `selectd serve`: the notes' server, every client at once.
//!
//! The notes' server is one loop: accept a client, `select()` on it until it
//! goes quiet, print what it sends, close it, accept the next. Here the
//! process (this module: bind, signals, stop, published counters) is kept
//! apart from the event loop that one thread runs, as redis keeps `ae.c`
//! apart from `server.c`: the loop owns one `Poll` and everything that poll
//! serves; the process owns what outlives any one loop.
//!
//! Follow one connection by reading, in order:
//!
//! 1. `listen`: `socket`, `SO_REUSEADDR`, `bind`, `listen`, before the loop
//!    starts; `slots` gives each listener its token.
//! 2. `event_loop`: one `poll` for every socket; its time-out is the nearest
//!    deadline (`deadline`). A listener's token means clients to accept.
//! 3. `accept`: the notes' `accept()`, a bounded number per turn, refusing
//!    clients beyond `--max-conns`.
//! 4. `connection`: one client's life: read until the kernel has no more,
//!    frame lines (`proto`), print (`output`), reply through its
//!    `send_queue`, obey commands.
//! 5. `ready`: a connection that spent its read budget with data left is
//!    served again next turn, once.
//! 6. `close`: why it ended, printed, logged and counted.
//!
//! Beside that path: `datagram` serves UDP; `stats` counts; `trace` narrates
//! each turn for `--trace-loop`; `config` and `error` hold the settings and
//! the failures that stop the server.

mod accept;
mod close;
mod config;
mod connection;
mod datagram;
pub(crate) mod deadline;
mod error;
mod event_loop;
mod listen;
pub(crate) mod output;
mod ready;
mod send_queue;
mod slots;
mod stats;
mod trace;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::{Interest, Poll, Waker};

pub use accept::SERVER_FULL;
pub use close::CloseReason;
pub use config::Config;
pub use connection::{LINE_TOO_LONG, STATS_NOT_LOCAL, STOP_NOT_LOCAL};
pub use error::Error;
pub use listen::BoundAddr;
pub use output::{Format, MemorySink};
pub use stats::Counters;

use crate::net::limits;
use connection::Context;
use event_loop::{EventLoop, Parts, Signals};
use listen::{Bound, ListenOptions};
use output::Output;
use stats::SharedCounters;

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
    event_loop: EventLoop,
    addrs: Vec<BoundAddr>,
    handle: ServerHandle,
}

/// Stops a running server from another thread, and reads its counters.
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
        let options = ListenOptions {
            backlog: config.backlog,
            unix_mode: config.unix_mode,
        };
        let mut bound = Bound::default();
        for address in &config.listen {
            bound.bind(address, options)?;
        }
        let poll = Poll::new().map_err(|err| Error::Setup("create the poll instance", err))?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(|err| Error::Setup("share the poll registry", err))?;
        for (index, listener) in bound.listeners.iter_mut().enumerate() {
            registry
                .register(
                    listener.source(),
                    slots::listener_token(index),
                    Interest::READABLE,
                )
                .map_err(|err| Error::Setup("register a listener", err))?;
        }
        for (index, socket) in bound.datagrams.iter_mut().enumerate() {
            registry
                .register(socket, slots::datagram_token(index), Interest::READABLE)
                .map_err(|err| Error::Setup("register a UDP socket", err))?;
        }
        let waker = Waker::new(&registry, slots::WAKER)
            .map_err(|err| Error::Setup("create the waker", err))?;
        let signals = if config.handle_signals {
            Some(register_signals(&registry)?)
        } else {
            None
        };
        let max_conns = config.max_conns.unwrap_or_else(limits::default_max_conns);
        log::debug!("serving at most {max_conns} connections");
        let handle = ServerHandle {
            waker: Arc::new(waker),
            stop_flag: Arc::new(AtomicBool::new(false)),
            counters: SharedCounters::default(),
        };
        let ctx = Context {
            registry,
            output: Output::new(config.format, Box::new(std::io::stdout())),
            config,
            stop_requested: false,
            counters: Counters::default(),
        };
        let event_loop = EventLoop::new(Parts {
            poll,
            ctx,
            accept: accept::Acceptor::new(bound.listeners, max_conns),
            datagrams: bound.datagrams,
            published: handle.counters.clone(),
            stop_flag: Arc::clone(&handle.stop_flag),
            signals,
        });
        Ok(Server {
            event_loop,
            addrs: bound.addrs,
            handle,
        })
    }

    /// Prints to `sink` instead of stdout (e.g. a [`MemorySink`]).
    pub fn with_output(mut self, sink: impl Write + Send + 'static) -> Self {
        let ctx = self.event_loop.ctx_mut();
        ctx.output = Output::new(ctx.config.format, Box::new(sink));
        self
    }

    /// Where the server listens, with real ports: `tcp://127.0.0.1:43617`.
    pub fn local_addrs(&self) -> Vec<BoundAddr> {
        self.addrs.clone()
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Runs until stopped (by a `stop` line, a [`ServerHandle`], or a signal),
    /// then returns once every client is closed and all output is flushed.
    pub fn run(self) -> Result<(), Error> {
        self.event_loop.run()
    }
}

/// SIGINT and SIGTERM, delivered through the loop's `Poll`.
fn register_signals(registry: &mio::Registry) -> Result<Signals, Error> {
    let mut signals = Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|err| Error::Setup("handle SIGINT and SIGTERM", err))?;
    registry
        .register(&mut signals, slots::SIGNALS, Interest::READABLE)
        .map_err(|err| Error::Setup("register the signal handler", err))?;
    Ok(signals)
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.addrs)
            .field("connections", &self.event_loop.open_connections())
            .finish_non_exhaustive()
    }
}
