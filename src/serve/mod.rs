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
//! Beside that path: `datagram` serves UDP; `stats` counts; `metrics`
//! serves the counters over HTTP to Prometheus (`--metrics`); `trace` narrates
//! each turn for `--trace-loop`; `standby` keeps answering signals while
//! the last loops finish; `config` and `error` hold the settings and the
//! failures that stop the server.

mod accept;
mod activation;
mod close;
mod config;
mod connection;
mod context;
pub(crate) mod deadline_list;
mod error;
mod event_loop;
mod linger;
mod listen;
mod metrics;
mod notify;
pub(crate) mod output;
mod proxy;
mod send_queue;
mod shared;
mod standby;
mod stats;
#[cfg(feature = "tls")]
mod tls;
mod tokens;
mod trace;

use std::io::Write;
use std::sync::Arc;

use mio::{Interest, Poll, Waker};

pub use accept::SERVER_FULL;
pub use activation::{Activated, take_activated_sockets};
pub use close::CloseReason;
pub use config::{Config, MAX_REACTORS};
pub use connection::{LINE_TOO_LONG, STATS_NOT_LOCAL, STOP_NOT_LOCAL};
pub use error::Error;
pub use listen::BoundAddr;
pub use output::diagnostics::{Stderr, finish as flush_stderr, line as stderr_line};
pub use output::{Format, MemorySink, OutputFull, OutputTarget};
pub use proxy::TrustedProxies;
pub use stats::{Counters, TURN_BOUNDS_NANOS, TurnHistogram};

use crate::net::limits;
use context::Context;
use event_loop::{EventLoop, Parts, Signals};
use listen::{Bound, ListenOptions};
use output::Output;
use shared::{Shared, SharedRef};
use standby::Standby;

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
    /// One or more (`--reactors`); the first runs on the caller's thread.
    loops: Vec<EventLoop>,
    addrs: Vec<BoundAddr>,
    /// Each address's name, when a service manager named it.
    names: Vec<Option<String>>,
    /// Where the metrics port listens (`--metrics`), if anywhere.
    metrics_addrs: Vec<std::net::SocketAddr>,
    handle: ServerHandle,
}

/// Stops a running server from another thread, and reads its counters.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    shared: SharedRef,
}

impl ServerHandle {
    /// Asks the server to stop gracefully, exactly as a `stop` line does.
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// The server's counters (every loop's, summed), as of each loop's last
    /// turn.
    pub fn stats(&self) -> Counters {
        self.shared.totals(None)
    }
}

impl Server {
    /// Creates the `Poll` and binds every listener, so that addresses are
    /// known (and errors reported) before anything runs. Output goes to
    /// stdout unless [`with_output`](Server::with_output) says otherwise.
    pub fn bind(config: Config) -> Result<Server, Error> {
        Server::bind_with(config, Vec::new())
    }

    /// As [`bind`](Server::bind), serving `activated` (sockets a service
    /// manager handed over, from [`take_activated_sockets`]) first and
    /// beside `config.listen`, which may then be empty.
    pub fn bind_with(config: Config, activated: Vec<Activated>) -> Result<Server, Error> {
        config.validate().map_err(Error::Config)?;
        output::diagnostics::prepare();
        if config.listen.is_empty() && activated.is_empty() {
            return Err(Error::Config(error::ConfigError::NoListener));
        }
        let loops = config.reactors;
        let options = ListenOptions {
            backlog: config.backlog,
            unix_mode: config.unix_mode,
            reuse_port: loops > 1,
        };
        let mut bound = Bound::default();
        let mut names = Vec::new();
        for socket in activated {
            // An inherited socket named `tls` (`FileDescriptorName=tls`)
            // is served as TLS.
            let tls = socket.name() == Some("tls");
            names.push(socket.name().map(str::to_string));
            bound.adopt(socket.socket, tls);
        }
        for address in &config.listen {
            // A `tls://` address an inherited socket is bound to: that
            // socket, served as TLS.
            if matches!(address, crate::net::addr::Address::Tls { .. })
                && bound.serve_inherited_as_tls(address)
            {
                continue;
            }
            bound.bind(address, options)?;
        }
        let terminator = tls_terminator(&config, &bound)?;
        names.resize(bound.addrs.len(), None);
        let addrs = bound.addrs.clone();
        let mut metrics = config
            .metrics
            .as_ref()
            .map(metrics::MetricsServer::bind)
            .transpose()?;
        let metrics_addrs = metrics
            .as_ref()
            .map(metrics::MetricsServer::local_addrs)
            .unwrap_or_default();
        // The first loop has every socket; each other loop its own TCP and
        // UDP sockets on the same ports.
        let mut per_loop = Vec::with_capacity(loops);
        for _ in 1..loops {
            per_loop.push(bound.replicate(options)?);
        }
        per_loop.insert(0, bound);
        let polls = (0..loops)
            .map(|_| Poll::new().map_err(|err| Error::Setup("create the poll instance", err)))
            .collect::<Result<Vec<_>, _>>()?;
        let wakers = polls
            .iter()
            .map(|poll| {
                Waker::new(poll.registry(), tokens::WAKER)
                    .map(Arc::new)
                    .map_err(|err| Error::Setup("create the waker", err))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_conns = config.max_conns.unwrap_or_else(limits::default_max_conns);
        log::debug!("serving at most {max_conns} connections with {loops} event loops");
        // With several loops, the first hands the clients of the listeners
        // only it has (Unix, inherited) to the others.
        let handing =
            usize::from(loops > 1 && per_loop[0].unshared_listeners().iter().any(|&only| only));
        let shared: SharedRef = Arc::new(Shared::new(wakers.clone(), max_conns, handing));
        let output = Output::start(
            config.format,
            &config.output,
            config.output_buffer,
            config.output_full,
        )
        .map_err(|source| Error::Output {
            path: match &config.output {
                OutputTarget::Stdout => "-".into(),
                OutputTarget::File(path) => path.display().to_string(),
            },
            source,
        })?;
        let mut event_loops = Vec::with_capacity(loops);
        for (id, ((poll, bound), waker)) in polls.into_iter().zip(per_loop).zip(wakers).enumerate()
        {
            // Signals reach the first loop, which tells the others.
            let signals = config.handle_signals && id == 0;
            let ctx = Context {
                registry: poll
                    .registry()
                    .try_clone()
                    .map_err(|err| Error::Setup("share the poll registry", err))?,
                output: output.share(),
                config: config.clone(),
                stop_requested: false,
                counters: Counters::default(),
                shared: Arc::clone(&shared),
                reactor: id,
            };
            // The first loop serves the metrics port too.
            let metrics = if id == 0 { metrics.take() } else { None };
            event_loops.push(EventLoop::new(loop_parts(
                poll,
                ctx,
                bound,
                signals,
                waker,
                metrics,
                terminator.clone(),
            )?));
        }
        drop(output);
        Ok(Server {
            loops: event_loops,
            addrs,
            names,
            metrics_addrs,
            handle: ServerHandle { shared },
        })
    }

    /// Prints to `sink` instead of stdout (e.g. a [`MemorySink`]), through
    /// the same bounded queue and writer thread.
    pub fn with_output(mut self, sink: impl Write + Send + 'static) -> Self {
        let Some(first) = self.loops.first() else {
            return self;
        };
        let config = first.config();
        match Output::to_writer(
            config.format,
            Box::new(sink),
            config.output_buffer,
            config.output_full,
        ) {
            Ok(output) => {
                for event_loop in &mut self.loops {
                    event_loop.set_output(output.share());
                }
            }
            Err(err) => log::error!("cannot start the output writer, keeping the old: {err}"),
        }
        self
    }

    /// Where the server listens, with real ports: `tcp://127.0.0.1:43617`.
    pub fn local_addrs(&self) -> Vec<BoundAddr> {
        self.addrs.clone()
    }

    /// Where the metrics port (`--metrics`) listens, with real ports; empty
    /// without one.
    pub fn metrics_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.metrics_addrs.clone()
    }

    /// What to print in `listening on ...` lines: each address with its
    /// name when a service manager gave one, `tcp://127.0.0.1:10001 (web)`.
    pub fn listening(&self) -> Vec<String> {
        self.addrs
            .iter()
            .zip(&self.names)
            .map(|(addr, name)| match name {
                Some(name) => format!("{addr} ({})", activation::shown(name)),
                None => addr.to_string(),
            })
            .collect()
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Runs until stopped (by a `stop` line, a [`ServerHandle`], or a signal),
    /// then returns once every client is closed and all output is flushed.
    ///
    /// With several loops, each runs on a thread of its own (the first on
    /// the caller's); this returns when all are done, with the first error
    /// any of them met.
    pub fn run(self) -> Result<(), Error> {
        let mut loops = self.loops.into_iter();
        let Some(first) = loops.next() else {
            return Ok(());
        };
        // Signals reach the first loop only; should it end before the
        // others, this thread stands by with them (see `standby`).
        let standby = if first.handles_signals() && loops.len() > 0 {
            match Standby::new() {
                Ok(standby) => Some(standby),
                Err(err) => return Err(Error::Setup("watch for signals", err)),
            }
        } else {
            None
        };
        if first.config().notify {
            notify::ready();
        }
        let mut threads = Vec::new();
        for (index, event_loop) in loops.enumerate() {
            let end = standby.as_ref().map(Standby::loop_end);
            let thread = std::thread::Builder::new()
                .name(format!("selectd-reactor-{}", index + 2))
                .spawn(move || {
                    let _end = end;
                    event_loop.run()
                });
            match thread {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    // Those already running must not run alone forever.
                    self.handle.stop();
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(Error::Setup("start an event loop thread", err));
                }
            }
        }
        let (mut result, signals, output) = first.run_handing_back();
        if result.is_err() {
            // A loop that failed must not leave the others serving alone.
            self.handle.stop();
        }
        if let Some(standby) = standby {
            standby.wait(threads.len(), signals, output, &self.handle.shared);
        }
        for (index, thread) in threads.into_iter().enumerate() {
            // A loop catches its own panics (see `EventLoop::fail`); this is
            // for one that could not even do that.
            let outcome = thread.join().unwrap_or_else(|_| {
                self.handle.stop();
                Err(Error::LoopFailed {
                    reactor: index + 2,
                    reason: "panicked while failing".into(),
                })
            });
            // The first error wins, but a failed loop says most.
            let failed = matches!(outcome, Err(Error::LoopFailed { .. }));
            if result.is_ok() || (failed && !matches!(result, Err(Error::LoopFailed { .. }))) {
                result = outcome;
            }
        }
        result
    }
}

/// What one loop needs besides its context: its `Poll` with its sockets
/// registered, and the signals when it is the loop that handles them.
fn loop_parts(
    poll: Poll,
    ctx: Context,
    mut bound: Bound,
    signals: bool,
    waker: Arc<Waker>,
    mut metrics: Option<metrics::MetricsServer>,
    terminator: Terminator,
) -> Result<Parts, Error> {
    let registry = poll.registry();
    if let Some(metrics) = &mut metrics {
        metrics.register(registry)?;
    }
    for (index, listener) in bound.listeners.iter_mut().enumerate() {
        registry
            .register(
                listener.source(),
                tokens::listener_token(index),
                Interest::READABLE,
            )
            .map_err(|err| Error::Setup("register a listener", err))?;
    }
    for (index, socket) in bound.datagrams.iter_mut().enumerate() {
        registry
            .register(socket, tokens::datagram_token(index), Interest::READABLE)
            .map_err(|err| Error::Setup("register a UDP socket", err))?;
    }
    let signals = if signals {
        Some(register_signals(registry)?)
    } else {
        None
    };
    let unshared = bound.unshared_listeners();
    let max_conns = ctx.shared.max_conns;
    let accept = accept::Acceptor::new(bound.listeners, unshared, max_conns);
    #[cfg(feature = "tls")]
    let accept = match terminator {
        Some(terminator) => accept.with_tls(terminator),
        None => accept,
    };
    #[cfg(not(feature = "tls"))]
    let NoTls = terminator;
    Ok(Parts {
        poll,
        ctx,
        accept,
        datagrams: bound.datagrams,
        signals,
        waker,
        metrics,
    })
}

/// What turns TLS listeners' clients into TLS streams, shared by every loop.
#[cfg(feature = "tls")]
type Terminator = Option<Arc<tls::Terminator>>;
#[cfg(not(feature = "tls"))]
type Terminator = NoTls;

/// Without the `tls` feature there is nothing to terminate TLS with.
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
struct NoTls;

/// Reads the TLS files when some listener speaks TLS; an error names the
/// file (or the missing flag).
#[cfg(feature = "tls")]
fn tls_terminator(config: &Config, bound: &Bound) -> Result<Terminator, Error> {
    if !bound.has_tls() {
        // Known only now: an inherited socket may be named for TLS.
        if config.tls.is_some() {
            return Err(Error::Config(error::ConfigError::TlsWithoutListener));
        }
        return Ok(None);
    }
    let Some(files) = &config.tls else {
        return Err(Error::Config(error::ConfigError::TlsWithoutCertificate));
    };
    let terminator = tls::Terminator::load(files, &config.proxy_protocol).map_err(Error::Tls)?;
    Ok(Some(Arc::new(terminator)))
}

#[cfg(not(feature = "tls"))]
fn tls_terminator(_config: &Config, bound: &Bound) -> Result<Terminator, Error> {
    if bound.has_tls() {
        return Err(Error::Config(error::ConfigError::TlsNotBuilt));
    }
    Ok(NoTls)
}

/// SIGINT and SIGTERM (stop), and SIGHUP (reopen the output file, reload TLS),
/// delivered through the loop's `Poll`.
fn register_signals(registry: &mio::Registry) -> Result<Signals, Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|err| Error::Setup("handle SIGINT, SIGTERM and SIGHUP", err))?;
    registry
        .register(&mut signals, tokens::SIGNALS, Interest::READABLE)
        .map_err(|err| Error::Setup("register the signal handler", err))?;
    Ok(signals)
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.addrs)
            .field(
                "connections",
                &self
                    .loops
                    .iter()
                    .map(EventLoop::open_connections)
                    .sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}
