//! `selectd bench`: a load generator that is itself a mio reactor.
//!
//! The notes' client sends one request and reads the answer with `recv` in
//! a loop. A benchmark needs thousands of such clients at once, and a load
//! generator that is slower than the server it measures would only measure
//! itself. So each `--threads` thread runs the same pattern as the server: one
//! `Poll`, every connection non-blocking, `WouldBlock` as control flow (see
//! [`load`](self) for the loop).
//!
//! Three modes:
//!
//! - `echo` (default): each connection keeps `--pipeline` lines in flight,
//!   checks that every byte comes back in order, and records each round trip
//!   in an HDR histogram (µs). A wrong byte, extra bytes or an early close end
//!   the run with an error: a fast server that echoes wrong is not fast.
//! - `ingest`: lines are written as fast as the server takes them; anything
//!   the server sends back is read and dropped. Counts lines written.
//! - `idle`: connections are opened and held; counts how many were
//!   established and how many are still open at the end.
//!
//! The run is `--warmup` followed by `--duration`; only messages whose reply
//! (or, in `ingest`, whose last byte was written) falls inside the
//! `--duration` window are counted.
//!
//! This module owns the flags, their validation into a [`BenchConfig`], the
//! orchestration (threads, progress line, output) and the error type; the
//! reactor is in `load.rs`, the report formats in `report.rs`.

mod load;
mod report;

use crate::net::os_reason;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::net::addr::{Address, AddressError};
use crate::net::units::{UnitError, format_duration, parse_bytes, parse_duration};

pub use report::{Report, hgrm};

/// The flags of `selectd bench`, as typed: validated by [`BenchConfig::from_args`].
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server to load: HOST:PORT, or an IPv6 address in brackets and :PORT (TCP only)
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// Number of concurrent connections
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub conns: usize,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 1m)
    #[arg(long, value_name = "DUR")]
    pub duration: String,
    /// Bytes per line, the trailing newline included
    #[arg(long, value_name = "BYTES", default_value = "64")]
    pub size: String,
    /// Lines in flight per connection (echo mode)
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub pipeline: usize,
    /// What to measure: echo, ingest or idle
    #[arg(long, value_name = "MODE", default_value = "echo")]
    pub mode: String,
    /// Load applied before measuring starts, excluded from the results
    #[arg(long, value_name = "DUR", default_value = "0s")]
    pub warmup: String,
    /// Load generator threads, one mio reactor each
    #[arg(long, value_name = "T", default_value_t = 1)]
    pub threads: usize,
    /// Print exactly one JSON object on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also write the latency distribution to FILE in HdrHistogram's .hgrm text format
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
}

/// What the load generator does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send lines, expect each back byte for byte, time the round trip.
    Echo,
    /// Send lines as fast as the server reads them; expect nothing back.
    Ingest,
    /// Connect and hold the connection open without sending.
    Idle,
}

impl Mode {
    /// The flag spelling: `echo`, `ingest`, `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Ingest => "ingest",
            Mode::Idle => "idle",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated run: what the rest of the module sees instead of flags.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server, resolved (the first address its name resolves to).
    pub addr: SocketAddr,
    /// Concurrent connections, at least 1.
    pub conns: usize,
    /// The measured window.
    pub duration: Duration,
    /// Bytes per line including the `\n`, at least 1.
    pub size: usize,
    /// Lines in flight per connection, at least 1.
    pub pipeline: usize,
    /// What to measure.
    pub mode: Mode,
    /// Load before the measured window.
    pub warmup: Duration,
    /// Reactor threads, between 1 and `conns`.
    pub threads: usize,
    /// One JSON object on stdout instead of the table.
    pub json: bool,
    /// Where to write the `.hgrm` distribution, if anywhere.
    pub hgrm: Option<PathBuf>,
}

/// The largest `--size` accepted: far beyond any server's line limit, small
/// enough that `--pipeline` lines of it fit in memory per connection.
const MAX_SIZE: usize = 16 << 20;

impl BenchConfig {
    /// Checks every flag and resolves ADDR; the first bad flag is the error.
    ///
    /// ```
    /// use clap::Parser;
    /// use selectd::bench::{BenchArgs, BenchConfig, Mode};
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     bench: BenchArgs,
    /// }
    /// let cli = Cli::try_parse_from(["bench", "127.0.0.1:7000", "--duration", "2s"])?;
    /// let config = BenchConfig::from_args(&cli.bench)?;
    /// assert_eq!(config.mode, Mode::Echo);
    /// assert_eq!(config.size, 64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_args(args: &BenchArgs) -> Result<BenchConfig, BenchError> {
        let address: Address = args.addr.parse().map_err(BenchError::Address)?;
        let addr = match &address {
            Address::Tcp { .. } => address
                .resolve()
                .and_then(|found| {
                    found.into_iter().next().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "name resolves to no address")
                    })
                })
                .map_err(|source| BenchError::Resolve {
                    addr: args.addr.clone(),
                    source,
                })?,
            Address::Unix(_) | Address::Udp { .. } => {
                return Err(BenchError::flag(
                    "ADDR",
                    &args.addr,
                    "bench speaks TCP only (HOST:PORT or [V6]:PORT)",
                ));
            }
        };
        if addr.port() == 0 {
            return Err(BenchError::flag(
                "ADDR",
                &args.addr,
                "port 0 cannot be connected to",
            ));
        }
        let unit = |flag: &'static str| move |source| BenchError::Unit { flag, source };
        let duration = parse_duration(&args.duration).map_err(unit("--duration"))?;
        let warmup = parse_duration(&args.warmup).map_err(unit("--warmup"))?;
        let size = parse_bytes(&args.size).map_err(unit("--size"))?;
        let mode = match args.mode.as_str() {
            "echo" => Mode::Echo,
            "ingest" => Mode::Ingest,
            "idle" => Mode::Idle,
            other => {
                return Err(BenchError::flag(
                    "--mode",
                    other,
                    "expected echo, ingest or idle",
                ));
            }
        };
        if duration.is_zero() {
            return Err(BenchError::flag(
                "--duration",
                &args.duration,
                "must be more than 0",
            ));
        }
        if args.conns == 0 {
            return Err(BenchError::flag(
                "--conns",
                "0",
                "at least one connection is needed",
            ));
        }
        if size == 0 || size > MAX_SIZE {
            return Err(BenchError::flag(
                "--size",
                &args.size,
                "must be between 1 byte (just the newline) and 16MiB",
            ));
        }
        if args.pipeline == 0 {
            return Err(BenchError::flag(
                "--pipeline",
                "0",
                "at least one line must be in flight",
            ));
        }
        if args.threads == 0 {
            return Err(BenchError::flag(
                "--threads",
                "0",
                "at least one thread is needed",
            ));
        }
        Ok(BenchConfig {
            addr,
            conns: args.conns,
            duration,
            size,
            pipeline: args.pipeline,
            mode,
            warmup,
            // More reactors than connections would only idle.
            threads: args.threads.min(args.conns),
            json: args.json,
            hgrm: args.hgrm.clone(),
        })
    }
}

/// Why a benchmark run failed. Every variant names its culprit: the flag, the
/// address, the connection number and the byte offset.
#[derive(Debug)]
pub enum BenchError {
    /// ADDR is not an address.
    Address(AddressError),
    /// ADDR's host name did not resolve.
    Resolve {
        /// ADDR as typed.
        addr: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// A duration or size flag is not one.
    Unit {
        /// The flag, e.g. `--duration`.
        flag: &'static str,
        /// What was wrong with its value.
        source: UnitError,
    },
    /// A flag has a value outside what bench can do.
    Flag {
        /// The flag, e.g. `--conns`.
        flag: &'static str,
        /// Its value as typed.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A connection could not be made (refused, unreachable, out of ports...).
    Connect {
        /// The server.
        addr: SocketAddr,
        /// The source address bound, if one was.
        source_ip: Option<std::net::IpAddr>,
        /// What connect said.
        source: io::Error,
    },
    /// Some connects had not finished when the connect deadline passed.
    ConnectTimeout {
        /// The server.
        addr: SocketAddr,
        /// Connects still pending.
        pending: usize,
    },
    /// The server closed a connection that was still expected to work.
    Closed {
        /// Connection number, from 0.
        conn: usize,
        /// Bytes that had come back on it before the close.
        received: u64,
    },
    /// An echoed byte differs from the byte sent at the same offset.
    Mismatch {
        /// Connection number, from 0.
        conn: usize,
        /// Offset in the connection's byte stream, from 0.
        offset: u64,
        /// The byte that was sent.
        expected: u8,
        /// The byte that came back.
        got: u8,
    },
    /// The server sent back more bytes than were sent to it.
    Unexpected {
        /// Connection number, from 0.
        conn: usize,
        /// Offset in the connection's byte stream of the first extra byte.
        offset: u64,
    },
    /// A read or write on an established connection failed.
    Io {
        /// Connection number, from 0.
        conn: usize,
        /// The operation, `read` or `write`.
        op: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// The reactor itself failed (creating or waiting on the `Poll`).
    Reactor(io::Error),
    /// Writing the `.hgrm` file failed.
    Hgrm {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Idle mode: fewer connections held than asked for (the report was printed).
    Idle {
        /// Connections asked for.
        wanted: usize,
        /// Connections established at some point.
        established: usize,
        /// Connections still open at the end.
        held: usize,
        /// The first failure seen, as text.
        first_failure: Option<String>,
    },
    /// A load thread died; a bug, reported instead of a panic.
    Thread,
}

impl BenchError {
    /// True for errors in the flags themselves (exit code 2, like `serve`),
    /// false for failures of the run (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BenchError::Address(_) | BenchError::Unit { .. } | BenchError::Flag { .. }
        )
    }

    fn flag(flag: &'static str, value: &str, reason: &'static str) -> BenchError {
        BenchError::Flag {
            flag,
            value: value.to_string(),
            reason,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Address(e) => write!(f, "{e}"),
            BenchError::Resolve { addr, source } => {
                write!(f, "cannot resolve {addr}: {}", os_reason(source))
            }
            BenchError::Unit { flag, source } => write!(f, "{flag}: {source}"),
            BenchError::Flag {
                flag,
                value,
                reason,
            } => write!(f, "{flag} {value}: {reason}"),
            BenchError::Connect {
                addr,
                source_ip: Some(ip),
                source,
            } => write!(
                f,
                "cannot connect to {addr} from {ip}: {}",
                os_reason(source)
            ),
            BenchError::Connect { addr, source, .. } => {
                write!(f, "cannot connect to {addr}: {}", os_reason(source))
            }
            BenchError::ConnectTimeout { addr, pending } => write!(
                f,
                "cannot connect to {addr}: {pending} connects still pending after {}s",
                load::CONNECT_TIMEOUT.as_secs()
            ),
            BenchError::Closed { conn, received } => write!(
                f,
                "connection {conn} closed by the server after {received} bytes came back"
            ),
            BenchError::Mismatch {
                conn,
                offset,
                expected,
                got,
            } => write!(
                f,
                "connection {conn}: echoed byte {offset} is {got:#04x}, sent {expected:#04x}"
            ),
            BenchError::Unexpected { conn, offset } => write!(
                f,
                "connection {conn}: server sent more than it was sent (byte {offset} was never sent)"
            ),
            BenchError::Io { conn, op, source } => {
                write!(f, "connection {conn}: {op}: {}", os_reason(source))
            }
            BenchError::Reactor(e) => write!(f, "load generator reactor: {}", os_reason(e)),
            BenchError::Hgrm { path, source } => {
                write!(f, "cannot write {}: {}", path.display(), os_reason(source))
            }
            BenchError::Idle {
                wanted,
                established,
                held,
                first_failure,
            } => {
                write!(
                    f,
                    "idle: {held} of {wanted} connections held ({established} established)"
                )?;
                if let Some(why) = first_failure {
                    write!(f, "; first failure: {why}")?;
                }
                Ok(())
            }
            BenchError::Thread => write!(f, "a load generator thread panicked"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Address(e) => Some(e),
            BenchError::Unit { source, .. } => Some(source),
            BenchError::Resolve { source, .. }
            | BenchError::Connect { source, .. }
            | BenchError::Io { source, .. }
            | BenchError::Hgrm { source, .. }
            | BenchError::Reactor(source) => Some(source),
            _ => None,
        }
    }
}

/// Runs `selectd bench`: validates the flags, loads the server, prints the
/// table (or the JSON object) on stdout, writes `--hgrm`, and returns the
/// report. Progress goes to stderr once a second.
///
/// In idle mode the report is printed even when not every connection could
/// be held; the error that follows says how many were and why.
pub fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let config = BenchConfig::from_args(&args)?;
    let fd_limit = raise_fd_limit(config.conns);
    if config.mode != Mode::Idle && config.conns.saturating_add(FD_SLACK) as libc::rlim_t > fd_limit
    {
        return Err(BenchError::Flag {
            flag: "--conns",
            value: config.conns.to_string(),
            reason: "more connections than RLIMIT_NOFILE allows (raise the hard limit)",
        });
    }
    let report = measure(&config)?;
    let mut stdout = io::stdout().lock();
    let printed = if config.json {
        writeln!(stdout, "{}", report.to_json())
    } else {
        write!(stdout, "{}", report.to_table())
    };
    // A closed stdout (`| head`) is not a benchmark failure.
    drop(printed.and_then(|()| stdout.flush()));
    if let Some(path) = &config.hgrm {
        std::fs::write(path, report.to_hgrm()).map_err(|source| BenchError::Hgrm {
            path: path.clone(),
            source,
        })?;
    }
    if config.mode == Mode::Idle && report.held < config.conns {
        return Err(BenchError::Idle {
            wanted: config.conns,
            established: report.established,
            held: report.held,
            first_failure: report.first_failure.clone(),
        });
    }
    Ok(report)
}

/// File descriptors kept free for stdio, the poll fd and friends.
const FD_SLACK: usize = 32;

/// Raises `RLIMIT_NOFILE`: soft to hard, and hard itself when the process may
/// (root); returns the soft limit now in force.
fn raise_fd_limit(conns: usize) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    let wanted = (conns.saturating_add(FD_SLACK) as libc::rlim_t).max(limit.rlim_cur);
    if wanted > limit.rlim_max {
        // Only privileged processes may raise the hard limit; try, then fall back.
        let bigger = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &bigger) } == 0 {
            return wanted;
        }
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit.rlim_max
    } else {
        limit.rlim_cur
    }
}

/// Starts the reactors, prints progress until they finish, merges their results.
fn measure(config: &BenchConfig) -> Result<Report, BenchError> {
    let shared = Arc::new(load::Shared::new(config.conns));
    let plan = load::Plan {
        config: config.clone(),
        start: Instant::now(),
    };
    let sources = load::SourcePlan::for_run(config.addr, config.conns);
    let mut handles = Vec::with_capacity(config.threads);
    for thread_index in 0..config.threads {
        // Connection i belongs to thread i % threads: an even split.
        let conns: Vec<usize> = (thread_index..config.conns)
            .step_by(config.threads)
            .collect();
        let shared = Arc::clone(&shared);
        let plan = plan.clone();
        let sources = sources.clone();
        let handle = thread::Builder::new()
            .name(format!("bench-{thread_index}"))
            .spawn(move || load::run_worker(&plan, &sources, &conns, &shared))
            .map_err(BenchError::Reactor)?;
        handles.push(handle);
    }

    progress_until_done(config, &plan, &shared, &handles);

    let mut outcomes = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(BenchError::Thread);
            }
        }
    }
    // The first failing thread set `stop`; the others' results are moot.
    if let Some(e) = shared.take_error().or(first_error) {
        return Err(e);
    }
    let histogram = shared.histogram();
    Ok(Report::new(config, &histogram, &outcomes))
}

/// One progress line per second on stderr until every reactor has returned:
/// rewritten in place with `\r` on a terminal, one line each otherwise (logs).
///
/// A single `\r` line needs no progress-bar crate; `indicatif` would add a
/// dependency for the same output.
fn progress_until_done(
    config: &BenchConfig,
    plan: &load::Plan,
    shared: &load::Shared,
    handles: &[thread::JoinHandle<Result<load::Outcome, BenchError>>],
) {
    let tty = io::stderr().is_terminal();
    let total = config.warmup + config.duration;
    let mut next_tick = plan.start + Duration::from_secs(1);
    let mut last_msgs = 0u64;
    let mut last_time = Instant::now();
    let mut printed = false;
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if now < next_tick {
            continue;
        }
        next_tick += Duration::from_secs(1);
        let msgs = shared.progress.load(Ordering::Relaxed);
        let since = now.saturating_duration_since(last_time).as_secs_f64();
        let rate = if since > 0.0 {
            msgs.saturating_sub(last_msgs) as f64 / since
        } else {
            0.0
        };
        (last_msgs, last_time) = (msgs, now);
        let line = match shared.connected_at(plan) {
            None => format!(
                "bench: connecting, {}/{} done after {:.1}s",
                config.conns - shared.unresolved(),
                config.conns,
                (now - plan.start).as_secs_f64()
            ),
            Some(at) => {
                let window = load::Window::after(plan, at);
                let phase = if now < window.measure_start {
                    "warm-up"
                } else {
                    "measuring"
                };
                let elapsed = (now - at).min(total).as_secs_f64();
                let total = format_duration(total);
                match config.mode {
                    Mode::Idle => format!(
                        "bench: {elapsed:.1}s/{total} {phase}, established {}/{}, held {}",
                        shared.established.load(Ordering::Relaxed),
                        config.conns,
                        shared.held.load(Ordering::Relaxed),
                    ),
                    Mode::Ingest => {
                        format!("bench: {elapsed:.1}s/{total} {phase}, {rate:.0} msgs/s")
                    }
                    Mode::Echo => format!(
                        "bench: {elapsed:.1}s/{total} {phase}, {rate:.0} msgs/s, p99 {} us",
                        shared.p99_so_far()
                    ),
                }
            }
        };
        let mut stderr = io::stderr().lock();
        let _ = if tty {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
        printed = true;
    }
    if tty && printed {
        let _ = writeln!(io::stderr());
    }
}
