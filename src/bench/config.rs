//! The run as asked for, and what it needs from the machine.
//!
//! [`BenchConfig`] is plain data, as `serve`'s `Config` and `send`'s
//! `SendConfig` are: the command line builds one (`cli/bench.rs`, where clap
//! has already checked each flag on its own), and so may a program using the
//! library. Nothing here knows the flags' clap types (only [`Mode`] derives
//! clap's `ValueEnum`, so that `--mode` can list its values): the command
//! line depends on bench, never the other way round.
//!
//! [`BenchConfig::check`] refuses what the flags ask for together (a rate in
//! a mode that is not paced, a plot of latencies that are not measured).
//! What is left needs the machine, and [`run`](super::run) does it first,
//! before any socket is opened: resolving ADDR, and bounding what the flags
//! multiply into (`--size` × `--pipeline` × `--conns` bytes of buffers,
//! `--conns` descriptors) by what this process can have, so an impossible
//! run is refused with one line and exit 2 instead of aborting on a failed
//! allocation halfway through.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::BenchError;
use crate::net::addr::Address;
use crate::net::limits::{FD_RESERVE, raise_fd_limit};
use crate::net::units::MAX_DURATION;

/// What the load generator does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Send lines, expect each back byte for byte, time the round trip.
    Echo,
    /// Send lines as fast as the server reads them; expect nothing back.
    Ingest,
    /// Connect and hold the connection open without sending.
    Idle,
    /// Connect, send one line, read its echo, close; again and again.
    Churn,
}

impl Mode {
    /// The flag spelling: `echo`, `ingest`, `idle`, `churn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Ingest => "ingest",
            Mode::Idle => "idle",
            Mode::Churn => "churn",
        }
    }

    /// Whether every message must come back, byte for byte.
    pub(crate) fn echoes(self) -> bool {
        matches!(self, Mode::Echo | Mode::Churn)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server, resolved: a TCP socket address or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The first address the host resolved to.
    Tcp(SocketAddr),
    /// A Unix stream socket.
    Unix(PathBuf),
    /// TLS over TCP: the first address, and how to verify the server.
    #[cfg(feature = "tls")]
    Tls(SocketAddr, TlsClient),
}

/// How bench's connections speak TLS: one client configuration for all,
/// without session resumption, so that every churn visit is a full
/// handshake.
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub(crate) struct TlsClient {
    /// The rustls client configuration.
    pub(crate) config: std::sync::Arc<rustls::ClientConfig>,
    /// The name sent as SNI and checked against the certificate.
    pub(crate) name: rustls::pki_types::ServerName<'static>,
}

#[cfg(feature = "tls")]
impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.config, &other.config) && self.name == other.name
    }
}

#[cfg(feature = "tls")]
impl Eq for TlsClient {}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "tcp://{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            #[cfg(feature = "tls")]
            Target::Tls(addr, _) => write!(f, "tls://{addr}"),
        }
    }
}

/// A `selectd bench` run: where, how hard, what to measure and what to write.
///
/// ```
/// use std::time::Duration;
/// use selectd::bench::{BenchConfig, Mode};
///
/// let mut config = BenchConfig::new("127.0.0.1:7000".parse()?);
/// config.duration = Duration::from_secs(2);
/// config.check()?;
/// config.mode = Mode::Ingest;
/// config.rate = Some(1000.0);
/// let refused = config.check().unwrap_err();
/// assert!(refused.is_usage());
/// assert_eq!(
///     refused.to_string(),
///     "--rate 1000: paces lines or connections: echo and churn only, not ingest"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server: a TCP, TLS or Unix stream address, resolved when the run
    /// starts.
    pub addr: Address,
    /// Concurrent connections, at least 1.
    pub conns: usize,
    /// The measured window.
    pub duration: Duration,
    /// Bytes per line including the `\n`, at least 1.
    pub size: usize,
    /// Lines in flight per connection, at least 1 (churn: always 1).
    pub pipeline: usize,
    /// What to measure.
    pub mode: Mode,
    /// Open loop: lines (churn: connections) per second over all connections.
    pub rate: Option<f64>,
    /// Load before the measured window.
    pub warmup: Duration,
    /// Reactor threads, at least 1 (no more than `conns` are started).
    pub threads: usize,
    /// One JSON object on stdout instead of the table.
    pub json: bool,
    /// Progress on stderr even when it is not a terminal.
    pub progress: bool,
    /// Where to write the `.hgrm` distribution, if anywhere.
    pub hgrm: Option<PathBuf>,
    /// Where to draw the percentile spectrum, if anywhere.
    pub plot: Option<PathBuf>,
    /// Curves of earlier runs to draw with it: `(legend, .hgrm file)`.
    pub plot_with: Vec<(String, PathBuf)>,
    /// How a `tls://` server is verified (ignored for other addresses).
    #[cfg(feature = "tls")]
    pub tls: BenchTls,
}

/// How bench verifies a `tls://` server: the `--tls-*` flags.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchTls {
    /// Trust the CAs in this PEM file instead of the system's.
    pub ca: Option<PathBuf>,
    /// The name to send (SNI) and check the certificate against; the
    /// address's host when `None`.
    pub server_name: Option<String>,
    /// Do not verify the server's certificate.
    pub insecure: bool,
}

/// Highest `--rate`, in lines (or connections) per second.
pub const MAX_RATE: f64 = 1e9;
/// Lowest `--rate`: a line every 1,000 s. Below it, a rate would print as
/// 0 (the report keeps three decimals) and outlast any run.
pub const MIN_RATE: f64 = 0.001;

/// Bytes a connection costs besides its lines: the struct, its timestamps,
/// the kernel's side is not ours to count.
const PER_CONN_BYTES: u64 = 512;
/// Bytes each line in flight costs besides itself: its two timestamps.
const PER_LINE_BYTES: u64 = 32;

impl BenchConfig {
    /// The defaults of `selectd bench ADDR`: one connection echoing 64-byte
    /// lines for 10 s, one at a time, closed loop, no warm-up, one thread.
    pub fn new(addr: Address) -> BenchConfig {
        BenchConfig {
            addr,
            conns: 1,
            duration: Duration::from_secs(10),
            size: 64,
            pipeline: 1,
            mode: Mode::Echo,
            rate: None,
            warmup: Duration::ZERO,
            threads: 1,
            json: false,
            progress: false,
            hgrm: None,
            plot: None,
            plot_with: Vec::new(),
            #[cfg(feature = "tls")]
            tls: BenchTls::default(),
        }
    }

    /// Checks what the settings ask for together; the first problem is the
    /// error, naming its flag (a usage error, exit code 2). Only the paths
    /// of `--hgrm` and `--plot` are looked at on disk: [`run`](super::run)
    /// resolves ADDR and checks memory and descriptors when it starts.
    pub fn check(&self) -> Result<(), BenchError> {
        self.check_counts()?;
        if let Some(rate) = self.rate
            && !(MIN_RATE..=MAX_RATE).contains(&rate)
        {
            return Err(BenchError::flag(
                "--rate",
                rate,
                "lines per second, from 0.001 to 1e9".into(),
            ));
        }
        if let (Some(rate), Mode::Ingest | Mode::Idle) = (self.rate, self.mode) {
            return Err(BenchError::flag(
                "--rate",
                rate,
                format!(
                    "paces lines or connections: echo and churn only, not {}",
                    self.mode
                ),
            ));
        }
        #[cfg(feature = "tls")]
        if self.tls != BenchTls::default() && !matches!(self.addr, Address::Tls { .. }) {
            // As `send` says: the flags would be ignored, and a run over
            // plain TCP measured where TLS was meant.
            let (flag, value) = match (&self.tls.ca, &self.tls.server_name) {
                (Some(ca), _) => ("--tls-ca", ca.display().to_string()),
                (None, Some(name)) => ("--tls-server-name", name.clone()),
                (None, None) => ("--tls-insecure", "true".to_string()),
            };
            return Err(BenchError::flag(
                flag,
                value,
                format!("the --tls-* flags need a tls:// address, not {}", self.addr),
            ));
        }
        self.check_latency_files()
    }

    /// What clap's ranges already refuse on the command line, for a config
    /// built field by field: a zero here would divide by zero or start no
    /// load at all.
    fn check_counts(&self) -> Result<(), BenchError> {
        let counts = [
            ("--conns", self.conns),
            ("--size", self.size),
            ("--pipeline", self.pipeline),
            ("--threads", self.threads),
        ];
        for (flag, value) in counts {
            if value == 0 {
                return Err(BenchError::flag(flag, value, "must be at least 1".into()));
            }
        }
        if self.duration.is_zero() {
            return Err(BenchError::flag(
                "--duration",
                "0s",
                "must be greater than zero".into(),
            ));
        }
        if let Some(rate) = self.rate
            && !(rate > 0.0 && rate.is_finite())
        {
            return Err(BenchError::flag(
                "--rate",
                rate,
                "must be above 0 and finite".into(),
            ));
        }
        Ok(())
    }

    /// Resolves ADDR (and configures its TLS client), settles what the
    /// settings imply (churn keeps one line in flight; more reactors than
    /// connections would only idle; phases longer than [`MAX_DURATION`]
    /// count as that, so no deadline overflows), and refuses buffers this
    /// machine cannot hold. The first problem is the error.
    pub(crate) fn into_run(mut self) -> Result<(BenchConfig, Target), BenchError> {
        let target = resolve(&self.addr)?;
        #[cfg(feature = "tls")]
        let target = tls_target(target, &self.addr, &self.tls)?;
        if self.mode == Mode::Churn {
            self.pipeline = 1;
        }
        self.threads = self.threads.min(self.conns);
        self.duration = self.duration.min(MAX_DURATION);
        self.warmup = self.warmup.min(MAX_DURATION);
        self.check_memory(memory_available())?;
        Ok((self, target))
    }

    /// Refuses `--plot` and `--hgrm` where they would hold nothing (ingest and
    /// idle time no line), and a `--plot` name that promises another format
    /// than the SVG drawn into it (`out.png`). A name without an extension is
    /// taken as it is.
    fn check_latency_files(&self) -> Result<(), BenchError> {
        let files = [
            ("--plot", "draw", &self.plot),
            ("--hgrm", "write", &self.hgrm),
        ];
        for (flag, verb, path) in files {
            let Some(path) = path else { continue };
            if !self.mode.echoes() {
                return Err(BenchError::flag(
                    flag,
                    path.display(),
                    format!(
                        "{} mode has no latencies to {verb} (echo and churn have)",
                        self.mode
                    ),
                ));
            }
            // What the file system will refuse at the end, refused now,
            // before the run rather than after it.
            if let Some(reason) = unwritable(path) {
                return Err(BenchError::flag(flag, path.display(), reason.into()));
            }
        }
        if let Some(path) = &self.plot
            && let Some(extension) = path.extension()
            && !extension.eq_ignore_ascii_case("svg")
        {
            return Err(BenchError::flag(
                "--plot",
                path.display(),
                format!(
                    "only SVG can be drawn, not .{}: name the file .svg",
                    extension.to_string_lossy()
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a run whose buffers could not all be allocated.
    pub(crate) fn check_memory(&self, available: u64) -> Result<(), BenchError> {
        let lines = match self.mode {
            Mode::Echo | Mode::Churn => self.pipeline as u64,
            Mode::Ingest | Mode::Idle => 0,
        };
        let needed = (self.conns as u64).saturating_mul(
            lines
                .saturating_mul(self.size as u64 + PER_LINE_BYTES)
                .saturating_add(PER_CONN_BYTES),
        );
        if needed > available {
            return Err(BenchError::flag(
                "--conns",
                self.conns,
                format!(
                    "{} connections × --pipeline {} × --size {} B need {} of buffers, more than the {} available",
                    self.conns,
                    self.pipeline,
                    self.size,
                    mebibytes(needed),
                    mebibytes(available)
                ),
            ));
        }
        Ok(())
    }

    /// Raises the descriptor limit and refuses a run that needs more
    /// descriptors than it allows (idle mode reports how far it got instead).
    pub(crate) fn check_descriptors(&self) -> Result<(), BenchError> {
        let limit = raise_fd_limit().unwrap_or(1024);
        let needed = (self.conns as u64).saturating_add(FD_RESERVE);
        if self.mode != Mode::Idle && needed > limit {
            return Err(BenchError::flag(
                "--conns",
                self.conns,
                format!(
                    "more connections than RLIMIT_NOFILE ({limit}) allows (raise the hard limit)"
                ),
            ));
        }
        Ok(())
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Memory this process may still take: `MemAvailable` from `/proc/meminfo`,
/// or 1 GiB where that cannot be read.
fn memory_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024))
        })
        .unwrap_or(1 << 30)
}

/// A `tls://` address's target: its TCP address, and a client
/// configuration from the TLS flags (no resumption: churn measures full
/// handshakes).
#[cfg(feature = "tls")]
fn tls_target(target: Target, addr: &Address, tls: &BenchTls) -> Result<Target, BenchError> {
    let (Target::Tcp(addr), Address::Tls { host, .. }) = (&target, addr) else {
        return Ok(target);
    };
    let files = crate::net::tls::ClientFiles {
        ca: tls.ca.clone(),
        identity: None,
        insecure: tls.insecure,
    };
    let config = crate::net::tls::client_config(&files)
        .map_err(|err| BenchError::flag("--tls-ca", "FILE", err.to_string()))?;
    let mut config = std::sync::Arc::unwrap_or_clone(config);
    config.resumption = rustls::client::Resumption::disabled();
    let wanted = tls.server_name.as_deref().unwrap_or(host);
    let name = crate::net::tls::server_name(wanted)
        .map_err(|err| BenchError::flag("--tls-server-name", wanted, err))?;
    Ok(Target::Tls(
        *addr,
        TlsClient {
            config: std::sync::Arc::new(config),
            name,
        },
    ))
}

/// A TCP address to its first resolved socket address; a Unix path as is.
fn resolve(addr: &Address) -> Result<Target, BenchError> {
    match addr {
        Address::Unix(path) => Ok(Target::Unix(path.clone())),
        Address::Tcp { .. } | Address::Udp { .. } | Address::Tls { .. } => {
            let first = addr.resolve().and_then(|found| {
                found.into_iter().next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "name resolves to no address")
                })
            });
            first
                .map(Target::Tcp)
                .map_err(|source| BenchError::Resolve {
                    addr: addr.to_string(),
                    source,
                })
        }
    }
}

/// Why a file could not be written at `path`, as far as can be told
/// without writing it: a directory there, or no directory to put it in.
fn unwritable(path: &std::path::Path) -> Option<&'static str> {
    if path.is_dir() {
        return Some("is a directory");
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    match parent {
        Some(parent) if !parent.is_dir() => Some("its directory does not exist"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(conns: usize, pipeline: usize, size: usize) -> BenchConfig {
        BenchConfig {
            conns,
            duration: Duration::from_secs(1),
            size,
            pipeline,
            ..BenchConfig::new(Address::Unix(PathBuf::from("/nowhere")))
        }
    }

    #[test]
    fn buffers_beyond_memory_are_refused_naming_the_product() {
        let huge = config(1, 300, 16 << 20);
        let error = huge.check_memory(1 << 30).unwrap_err();
        assert!(error.is_usage());
        let text = error.to_string();
        assert!(text.contains("--pipeline 300"), "{text}");
        assert!(text.contains("more than the 1024.0MiB available"), "{text}");
    }

    #[test]
    fn products_that_overflow_are_refused_not_wrapped() {
        let huge = config(usize::MAX, usize::MAX, 16 << 20);
        assert!(huge.check_memory(u64::MAX - 1).is_err());
    }

    #[test]
    fn modest_runs_fit() {
        assert!(config(1000, 16, 64).check_memory(1 << 30).is_ok());
    }
}
