//! The validated settings a [`Server`](crate::Server) runs with.
//!
//! The command line (`cli.rs`) is one way to make a `Config`; a test, a bench
//! or another program makes one directly, starting from [`Config::default`],
//! which holds the notes' choices where the notes made one (port 10001, a 5 s
//! time-out) and safe bounds where it did not.

use std::time::Duration;

use crate::net::addr::Address;
use crate::serve::error::ConfigError;
use crate::serve::output::{Format, OutputFull, OutputTarget};
use crate::serve::proxy::TrustedProxies;

/// The most event loops a server runs (`--reactors`).
pub const MAX_REACTORS: usize = 256;

/// How a server listens, prints, and bounds its clients.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; each address may bind several sockets. May be empty
    /// when sockets are handed over instead (see
    /// [`Server::bind_with`](crate::Server::bind_with)).
    pub listen: Vec<Address>,
    /// Close a client silent this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// How lines and events are printed.
    pub format: Format,
    /// Where they are printed (`--output`).
    pub output: OutputTarget,
    /// At most this many bytes of printed output wait to be written
    /// (`--output-buffer`).
    pub output_buffer: usize,
    /// What happens when that much waits (`--output-full`).
    pub output_full: OutputFull,
    /// The longest line accepted, in bytes, without its terminator;
    /// `usize::MAX` for no limit (longer lines are then handed on in
    /// pieces of 64 KiB: see [`proto::line`](crate::proto::line)).
    pub max_line: usize,
    /// Write every line back to its sender.
    pub echo: bool,
    /// Stop reading from a client once this much output waits for it.
    pub high_watermark: usize,
    /// Resume reading once its waiting output falls to this.
    pub low_watermark: usize,
    /// At `stop`, how long to keep flushing replies before closing anyway.
    pub grace: Duration,
    /// The `listen()` backlog.
    pub backlog: i32,
    /// Permission bits for Unix socket files.
    pub unix_mode: u32,
    /// Accept `stop` from clients that are not on this machine.
    pub allow_remote_stop: bool,
    /// Serve at most this many connections at once; `None` derives it from
    /// the file descriptor limit (see [`limits::default_max_conns`](crate::net::limits::default_max_conns)).
    pub max_conns: Option<usize>,
    /// Close a client whose unfinished line is older than this (`None`: never).
    pub line_timeout: Option<Duration>,
    /// Log the counters this often (`None`: never).
    pub stats_interval: Option<Duration>,
    /// Narrate every loop turn on stderr (`--trace-loop`).
    pub trace_loop: bool,
    /// Stop gracefully on SIGINT and SIGTERM (a second one stops at once).
    /// The binary turns this on; embedding programs usually keep their own.
    pub handle_signals: bool,
    /// Proxies whose connections must open with a PROXY protocol header,
    /// whose client address then stands for the peer (`--proxy-protocol`).
    /// Empty: no header is expected from anyone.
    pub proxy_protocol: TrustedProxies,
    /// Event loops, each on its own thread with its own `Poll` and
    /// connections (`--reactors`); 1 is the notes' single `select()` loop.
    pub reactors: usize,
    /// Tell a service manager (`NOTIFY_SOCKET`) `READY=1` once listening and
    /// `STOPPING=1` at stop. The binary turns this on.
    pub notify: bool,
    /// Serve Prometheus metrics (`GET /metrics`) and a health check
    /// (`GET /healthz`) over HTTP on this TCP address (`--metrics`), from
    /// the first event loop. `None`: no metrics port.
    pub metrics: Option<Address>,
    /// The certificate, key and client CA of `tls://` listeners
    /// (`--tls-cert`, `--tls-key`, `--tls-client-ca`); re-read on `SIGHUP`.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::net::tls::ServerFiles>,
    /// A TLS client that has not finished its handshake this long after
    /// accept is closed (`tls`) (`--tls-handshake-timeout`).
    pub tls_handshake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![Address::Tcp {
                host: "127.0.0.1".into(),
                port: 10001,
            }],
            idle_timeout: Some(Duration::from_secs(5)),
            format: Format::Tagged,
            output: OutputTarget::Stdout,
            output_buffer: 16 * 1024 * 1024,
            output_full: OutputFull::Block,
            max_line: 64 * 1024,
            echo: false,
            high_watermark: 1024 * 1024,
            low_watermark: 256 * 1024,
            grace: Duration::from_secs(5),
            backlog: 1024,
            unix_mode: 0o600,
            allow_remote_stop: false,
            max_conns: None,
            line_timeout: Some(Duration::from_secs(30)),
            stats_interval: None,
            trace_loop: false,
            handle_signals: false,
            proxy_protocol: TrustedProxies::default(),
            notify: false,
            reactors: 1,
            metrics: None,
            #[cfg(feature = "tls")]
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// A config listening on one address, defaults elsewhere.
    ///
    /// ```
    /// let config = selectd::Config::listening_on("127.0.0.1:0".parse()?);
    /// assert_eq!(config.listen.len(), 1);
    /// # Ok::<(), selectd::net::addr::AddressError>(())
    /// ```
    pub fn listening_on(address: Address) -> Self {
        Config {
            listen: vec![address],
            ..Config::default()
        }
    }

    /// Checks that the settings make sense together. (An empty `listen` is
    /// checked at bind, where handed-over sockets are known.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("idle time-out", self.idle_timeout),
            ("line time-out", self.line_timeout),
            ("stats interval", self.stats_interval),
            ("grace period", Some(self.grace)),
            ("TLS handshake time-out", Some(self.tls_handshake_timeout)),
        ];
        for (what, duration) in durations {
            if duration.is_some_and(|d| d > crate::net::units::MAX_DURATION) {
                return Err(ConfigError::TooLong(what));
            }
        }
        if self.max_conns == Some(0) {
            return Err(ConfigError::NoConnections);
        }
        if !(1..=MAX_REACTORS).contains(&self.reactors) {
            return Err(ConfigError::Reactors {
                got: self.reactors,
                max: MAX_REACTORS,
            });
        }
        if self.output_buffer == 0 {
            return Err(ConfigError::NoOutputBuffer);
        }
        if self.max_line == 0 {
            return Err(ConfigError::EmptyLines);
        }
        if let Some(address) = &self.metrics
            && !matches!(address, Address::Tcp { .. })
        {
            return Err(ConfigError::MetricsNotTcp(address.to_string()));
        }
        let tls_listener = self
            .listen
            .iter()
            .any(|address| matches!(address, Address::Tls { .. }));
        #[cfg(feature = "tls")]
        if tls_listener && self.tls.is_none() {
            return Err(ConfigError::TlsWithoutCertificate);
        }
        #[cfg(not(feature = "tls"))]
        if tls_listener {
            return Err(ConfigError::TlsNotBuilt);
        }
        if self.low_watermark > self.high_watermark {
            return Err(ConfigError::Watermarks {
                low: self.low_watermark,
                high: self.high_watermark,
            });
        }
        Ok(())
    }
}
