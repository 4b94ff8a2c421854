//! `selectd serve` flags, and the [`Config`] they make.
//!
//! Values arrive typed (clap runs the parsers in [`values`](super::values)),
//! so what is left here is what involves more than one flag, which
//! [`Config::validate`] checks, and the help text that tells a user what
//! clients can say and how the process ends.

use std::time::Duration;

use clap::Args;

use super::values::{self, Timeout};
use crate::net::addr::Address;
use crate::serve::{Config, Format, OutputFull, OutputTarget, TrustedProxies};

/// What `serve --help` (and the man page) says after the flags: the line
/// commands, the signals and the exit codes, none of which is a flag.
pub const SERVE_AFTER_HELP: &str = "\
Line commands (a client sends one of these alone on a line):
  stop        stop the server: stop reading, flush replies (see --grace), exit 0
  disconnect  close this client only
  stats       reply with the counters, one line
  stop and stats are obeyed only from this machine (loopback or a Unix
  socket) unless --allow-remote-stop is given; other lines are printed.

Signals:
  SIGINT, SIGTERM  stop as `stop` does; a second one stops at once, without
                   waiting for replies or output to flush
  SIGHUP           reopen the --output FILE (log rotation); read the TLS
                   certificate, key and client CA again (new connections
                   use them; a bad file keeps the old ones)

Exit codes:
  0  stopped (by `stop` or a signal), all output written
  1  cannot run (an address cannot be bound, the event loop failed), or
     stopped with output unwritten or its reader gone (EPIPE)
  2  usage: a bad flag or value";

/// `selectd serve` flags.
///
/// Numbers, sizes and durations may start with `-` (`--grace -1s`), so that
/// such a value reaches its parser and is refused there, naming the flag,
/// rather than being taken for an unknown flag. Names and paths may not: a
/// forgotten value (`--output --echo`) is an error, not a file named
/// `--echo`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (repeatable): HOST:PORT, tcp://HOST:PORT,
    /// `[V6]:PORT`, unix:PATH, udp://HOST:PORT, tls://HOST:PORT (with
    /// --tls-cert and --tls-key). Port 0 picks a free port.
    /// Default: 127.0.0.1:10001, unless a service manager passes sockets
    /// (socket activation), which are served beside any --listen.
    #[arg(long, value_name = "ADDR", value_parser = values::listen_address)]
    pub listen: Vec<Address>,
    /// Close a client silent this long: 250ms, 5s, 2m; 0 or off disables.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "DUR",
        default_value = "5s"
    )]
    pub idle_timeout: Timeout,
    /// Output format.
    #[arg(long, value_name = "FORMAT", default_value = "tagged")]
    pub format: Format,
    /// Where to print: - (stdout) or a FILE, appended to (created with mode
    /// 0640) and reopened on SIGHUP, for log rotation.
    #[arg(long, value_name = "FILE", default_value = "-", value_parser = values::output_target)]
    pub output: OutputTarget,
    /// At most this much printed output waits to be written; then
    /// --output-full says what happens.
    #[arg(long, allow_hyphen_values = true, value_name = "BYTES", default_value = "16MiB", value_parser = values::size)]
    pub output_buffer: usize,
    /// When the output buffer is full: block (stop reading from clients
    /// until half of it is written; nothing is lost) or drop (keep serving,
    /// drop whole records and count them as lines_dropped and
    /// events_dropped).
    #[arg(long, value_name = "POLICY", default_value = "block")]
    pub output_full: OutputFull,
    /// Longest accepted line (bytes, or 64KiB, 1MiB); longer lines close the
    /// client. off: no limit, for raw echo of binary data.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "BYTES",
        default_value = "64KiB",
        value_parser = values::line_limit
    )]
    pub max_line: usize,
    /// Write every line back to its sender.
    #[arg(long)]
    pub echo: bool,
    /// Stop reading from a client while this much output waits for it.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "BYTES",
        default_value = "1MiB",
        value_parser = values::size_or_zero
    )]
    pub high_watermark: usize,
    /// Resume reading once its waiting output falls to this.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "BYTES",
        default_value = "256KiB",
        value_parser = values::size_or_zero
    )]
    pub low_watermark: usize,
    /// At stop, how long to keep flushing replies before closing anyway.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "DUR",
        default_value = "5s",
        value_parser = values::duration
    )]
    pub grace: Duration,
    /// listen() backlog: connections queued by the kernel before accept.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "N",
        default_value = "1024",
        value_parser = values::backlog
    )]
    pub backlog: i32,
    /// Permission bits (octal) of Unix socket files.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "MODE",
        default_value = "600",
        value_parser = values::unix_mode
    )]
    pub unix_mode: u32,
    /// Obey `stop` and `stats` from clients that are not on this machine.
    #[arg(long)]
    pub allow_remote_stop: bool,
    /// Serve at most N clients at once; more get `error: server full`.
    /// Default: the file descriptor limit (raised to the hard limit) minus 32.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "N",
        value_parser = values::positive_count
    )]
    pub max_conns: Option<usize>,
    /// Close a client whose line is unfinished this long after its first
    /// byte (slowloris); 0 or off disables.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "DUR",
        default_value = "30s"
    )]
    pub line_timeout: Timeout,
    /// Log the counters (accepted, closed by reason, bytes, ...) every DUR.
    #[arg(long, allow_hyphen_values = true, value_name = "DUR")]
    pub stats: Option<Timeout>,
    /// Print each reactor turn on stderr, in select() terms (for learning).
    #[arg(long)]
    pub trace_loop: bool,
    /// Event loops, each on its own thread with its own connections: a
    /// number, or auto (one per CPU this process may run on). 1 is the
    /// notes' single select() loop.
    #[arg(long, allow_hyphen_values = true, value_name = "N", default_value = "1", value_parser = values::reactors)]
    pub reactors: usize,
    /// Trusted proxies (e.g. 127.0.0.1/32,10.0.0.0/8): their connections
    /// must open with a PROXY protocol header (v1 or v2) within 5s, and the
    /// client it names is the peer.
    #[arg(long, value_name = "CIDR[,CIDR...]")]
    pub proxy_protocol: Option<TrustedProxies>,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET
    /// /healthz: 200 while serving, 503 once stopping) over HTTP on this
    /// TCP address, e.g. 127.0.0.1:9100; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", value_parser = values::metrics_address)]
    pub metrics: Option<Address>,
    /// TLS listeners: the certificate chain (PEM, the server's certificate
    /// first). Re-read on SIGHUP.
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS listeners: the private key (PEM: PKCS#8, RSA or EC). Re-read on
    /// SIGHUP.
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// TLS listeners: require a client certificate signed by a CA in FILE
    /// (PEM); the peer prints with its common name (ADDR#cn=NAME).
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Close a TLS client that has not finished its handshake this long
    /// after connecting (close reason tls).
    #[cfg(feature = "tls")]
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "DUR",
        default_value = "10s",
        value_parser = values::positive_duration
    )]
    pub tls_handshake_timeout: Duration,
}

impl ServeArgs {
    /// The server's settings; an error says which flags disagree.
    pub fn into_config(self) -> Result<Config, String> {
        let config = Config {
            listen: self.listen,
            idle_timeout: self.idle_timeout.0,
            format: self.format,
            output: self.output,
            output_buffer: self.output_buffer,
            output_full: self.output_full,
            max_line: self.max_line,
            echo: self.echo,
            high_watermark: self.high_watermark,
            low_watermark: self.low_watermark,
            grace: self.grace,
            backlog: self.backlog,
            unix_mode: self.unix_mode,
            allow_remote_stop: self.allow_remote_stop,
            max_conns: self.max_conns,
            line_timeout: self.line_timeout.0,
            stats_interval: self.stats.and_then(|every| every.0),
            trace_loop: self.trace_loop,
            reactors: self.reactors,
            handle_signals: true,
            proxy_protocol: self.proxy_protocol.unwrap_or_default(),
            notify: true,
            metrics: self.metrics,
            #[cfg(feature = "tls")]
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(crate::net::tls::ServerFiles {
                    cert,
                    key,
                    client_ca: self.tls_client_ca,
                }),
                _ => None,
            },
            #[cfg(feature = "tls")]
            tls_handshake_timeout: self.tls_handshake_timeout,
            #[cfg(not(feature = "tls"))]
            tls_handshake_timeout: Duration::from_secs(10),
        };
        config.validate().map_err(|err| err.to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::serve::Config;

    /// The flags' defaults are written twice, in clap's attributes (for
    /// `--help` and the man page) and in `Config::default()` (for library
    /// users); they must say the same. `selectd serve` with no flag is the
    /// default configuration, field by field (but those only the binary
    /// sets: signals, service-manager notification, and the listening
    /// address, which `main` takes from `Config::default()` itself when no
    /// socket is inherited).
    #[test]
    fn the_flags_defaults_are_the_configs() {
        let Ok(Cli {
            command: Command::Serve(args),
            ..
        }) = Cli::try_parse_from(["selectd", "serve"])
        else {
            panic!("selectd serve parses");
        };
        let mut parsed = args.into_config().expect("a valid configuration");
        let default = Config::default();
        parsed.handle_signals = default.handle_signals;
        parsed.notify = default.notify;
        assert!(
            parsed.listen.is_empty(),
            "no flag, no address: main adds the default"
        );
        parsed.listen = default.listen.clone();
        assert_eq!(format!("{parsed:#?}"), format!("{default:#?}"));
    }
}
