//! The validated run: what the rest of bench sees instead of flags.
//!
//! clap has already checked each flag on its own (see `cli/bench.rs`).
//! What is left needs the machine: resolving ADDR, and bounding what the
//! flags multiply into (`--size` × `--pipeline` × `--conns` bytes of
//! buffers, `--conns` descriptors) by what this process can have, so an
//! impossible run is refused with one line and exit 2 instead of aborting
//! on a failed allocation halfway through.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::BenchError;
use crate::cli::BenchArgs;
use crate::net::addr::Address;
use crate::net::limits::{FD_RESERVE, raise_fd_limit};

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
pub enum Target {
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
pub struct TlsClient {
    /// The rustls client configuration.
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The name sent as SNI and checked against the certificate.
    pub name: rustls::pki_types::ServerName<'static>,
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

/// The validated run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server.
    pub target: Target,
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
    /// Open loop: lines (churn: connections) per second over all connections.
    pub rate: Option<f64>,
    /// Load before the measured window.
    pub warmup: Duration,
    /// Reactor threads, between 1 and `conns`.
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
}

/// Bytes a connection costs besides its lines: the struct, its timestamps,
/// the kernel's side is not ours to count.
const PER_CONN_BYTES: u64 = 512;
/// Bytes each line in flight costs besides itself: its two timestamps.
const PER_LINE_BYTES: u64 = 32;

impl BenchConfig {
    /// Resolves ADDR and checks what the flags add up to; the first
    /// problem is the error.
    ///
    /// ```
    /// use clap::Parser;
    /// use selectd::bench::{BenchConfig, Mode};
    /// use selectd::cli::BenchArgs;
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
        if let (Some(rate), Mode::Ingest | Mode::Idle) = (args.rate, args.mode) {
            return Err(BenchError::flag(
                "--rate",
                rate,
                format!(
                    "paces lines or connections: echo and churn only, not {}",
                    args.mode
                ),
            ));
        }
        check_latency_files(args)?;
        let target = resolve(&args.addr)?;
        #[cfg(feature = "tls")]
        let target = tls_target(target, args)?;
        let conns = args.conns as usize;
        let pipeline = if args.mode == Mode::Churn {
            1
        } else {
            args.pipeline as usize
        };
        let config = BenchConfig {
            target,
            conns,
            duration: args.duration,
            size: args.size,
            pipeline,
            mode: args.mode,
            rate: args.rate,
            warmup: args.warmup,
            // More reactors than connections would only idle.
            threads: (args.threads as usize).min(conns),
            json: args.json,
            progress: args.progress,
            hgrm: args.hgrm.clone(),
            plot: args.plot.clone(),
            plot_with: args.plot_with.clone(),
        };
        config.check_memory(memory_available())?;
        Ok(config)
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

/// Refuses `--plot` and `--hgrm` where they would hold nothing (ingest and
/// idle time no line), and a `--plot` name that promises another format
/// than the SVG drawn into it (`out.png`). A name without an extension is
/// taken as it is.
fn check_latency_files(args: &BenchArgs) -> Result<(), BenchError> {
    let files = [
        ("--plot", "draw", &args.plot),
        ("--hgrm", "write", &args.hgrm),
    ];
    for (flag, verb, path) in files {
        if let Some(path) = path
            && !args.mode.echoes()
        {
            return Err(BenchError::flag(
                flag,
                path.display(),
                format!(
                    "{} mode has no latencies to {verb} (echo and churn have)",
                    args.mode
                ),
            ));
        }
    }
    if let Some(path) = &args.plot
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
fn tls_target(target: Target, args: &BenchArgs) -> Result<Target, BenchError> {
    let (Target::Tcp(addr), Address::Tls { host, .. }) = (&target, &args.addr) else {
        return Ok(target);
    };
    let files = crate::net::tls::ClientFiles {
        ca: args.tls_ca.clone(),
        identity: None,
        insecure: args.tls_insecure,
    };
    let config = crate::net::tls::client_config(&files)
        .map_err(|err| BenchError::flag("--tls-ca", "FILE", err.to_string()))?;
    let mut config = std::sync::Arc::unwrap_or_clone(config);
    config.resumption = rustls::client::Resumption::disabled();
    let wanted = args.tls_server_name.as_deref().unwrap_or(host);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(conns: usize, pipeline: usize, size: usize) -> BenchConfig {
        BenchConfig {
            target: Target::Unix(PathBuf::from("/nowhere")),
            conns,
            duration: Duration::from_secs(1),
            size,
            pipeline,
            mode: Mode::Echo,
            rate: None,
            warmup: Duration::ZERO,
            threads: 1,
            json: false,
            progress: false,
            hgrm: None,
            plot: None,
            plot_with: Vec::new(),
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
