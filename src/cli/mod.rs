//! The command line: flags in, a validated [`Config`] out.
//!
//! This is the only module that knows flag names. Flags arrive as strings
//! and are checked here, so every bad value produces one line naming the flag
//! and the value (`error: --idle-timeout: invalid duration 'soon'`) instead
//! of a usage dump; the rest of the program sees only a `Config`.

use clap::{Args, Parser, Subcommand};

mod bench;
pub use bench::BenchArgs;

use crate::net::addr::Address;
use crate::net::units::{parse_bytes, parse_duration, parse_optional_duration};
use crate::serve::{Config, OutputTarget};

/// selectd: the select() line server from the socket notes, done right.
#[derive(Debug, Parser)]
#[command(name = "selectd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve line clients: print what they send (the notes' server).
    Serve(ServeArgs),
    /// Load a line server and measure it (echo, ingest, idle or churn).
    Bench(BenchArgs),
    /// Connect to ADDR, send standard input (or --data, or an HTTP GET), print what comes back.
    Send(crate::send::SendArgs),
}

/// `selectd serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (repeatable): HOST:PORT, tcp://HOST:PORT,
    /// `[V6]:PORT`, unix:PATH, udp://HOST:PORT. Port 0 picks a free port.
    /// Default: 127.0.0.1:10001, unless a service manager passes sockets
    /// (socket activation), which are served beside any --listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Close a client silent this long: 250ms, 5s, 2m; 0 or off disables.
    #[arg(long, value_name = "DUR", default_value = "5s")]
    pub idle_timeout: String,
    /// Output format: tagged, plain, json or none.
    #[arg(long, value_name = "FORMAT", default_value = "tagged")]
    pub format: String,
    /// Where to print: - (stdout) or a FILE, appended to (created with mode
    /// 0640) and reopened on SIGHUP, for log rotation.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub output: String,
    /// At most this much printed output waits to be written; then
    /// --output-full says what happens.
    #[arg(long, value_name = "BYTES", default_value = "16MiB")]
    pub output_buffer: String,
    /// When the output buffer is full: block (stop reading from clients
    /// until half of it is written; nothing is lost) or drop (keep serving,
    /// drop whole lines and count them as lines_dropped).
    #[arg(long, value_name = "POLICY", default_value = "block")]
    pub output_full: String,
    /// Longest accepted line (bytes, or 64KiB, 1MiB); longer lines close the client.
    #[arg(long, value_name = "BYTES", default_value = "64KiB")]
    pub max_line: String,
    /// Write every line back to its sender.
    #[arg(long)]
    pub echo: bool,
    /// Stop reading from a client while this much output waits for it.
    #[arg(long, value_name = "BYTES", default_value = "1MiB")]
    pub high_watermark: String,
    /// Resume reading once its waiting output falls to this.
    #[arg(long, value_name = "BYTES", default_value = "256KiB")]
    pub low_watermark: String,
    /// At stop, how long to keep flushing replies before closing anyway.
    #[arg(long, value_name = "DUR", default_value = "5s")]
    pub grace: String,
    /// listen() backlog: connections queued by the kernel before accept.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub backlog: i32,
    /// Permission bits (octal) of Unix socket files.
    #[arg(long, value_name = "MODE", default_value = "600")]
    pub unix_mode: String,
    /// Accept `stop` from clients that are not on this machine.
    #[arg(long)]
    pub allow_remote_stop: bool,
    /// Serve at most N clients at once; more get `error: server full`.
    /// Default: the file descriptor limit (raised to the hard limit) minus 32.
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Close a client whose line is unfinished this long after its first
    /// byte (slowloris); 0 or off disables.
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub line_timeout: String,
    /// Log the counters (accepted, closed by reason, bytes, ...) every DUR.
    #[arg(long, value_name = "DUR")]
    pub stats: Option<String>,
    /// Print each reactor turn on stderr, in select() terms (for learning).
    #[arg(long)]
    pub trace_loop: bool,
    /// Trusted proxies (e.g. 127.0.0.1/32,10.0.0.0/8): their connections
    /// must open with a PROXY protocol header (v1 or v2) within 5s, and the
    /// client it names is the peer.
    #[arg(long, value_name = "CIDR[,CIDR...]")]
    pub proxy_protocol: Option<String>,
}

impl ServeArgs {
    /// Checks every flag; the error names the flag and the value.
    pub fn into_config(self) -> Result<Config, String> {
        fn flag<T, E: std::fmt::Display>(name: &str, result: Result<T, E>) -> Result<T, String> {
            result.map_err(|err| format!("--{name}: {err}"))
        }
        let listen = self
            .listen
            .iter()
            .map(|text| text.parse::<Address>().map_err(|err| err.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config {
            listen,
            idle_timeout: flag("idle-timeout", parse_optional_duration(&self.idle_timeout))?,
            format: flag("format", self.format.parse())?,
            output: match self.output.as_str() {
                "-" => OutputTarget::Stdout,
                "" => return Err("--output: empty path (use - for stdout)".into()),
                path => OutputTarget::File(path.into()),
            },
            output_buffer: flag("output-buffer", parse_bytes(&self.output_buffer))?,
            output_full: flag("output-full", self.output_full.parse())?,
            max_line: flag("max-line", parse_bytes(&self.max_line))?,
            echo: self.echo,
            high_watermark: flag("high-watermark", parse_bytes(&self.high_watermark))?,
            low_watermark: flag("low-watermark", parse_bytes(&self.low_watermark))?,
            grace: flag("grace", parse_duration(&self.grace))?,
            backlog: self.backlog,
            unix_mode: flag(
                "unix-mode",
                u32::from_str_radix(&self.unix_mode, 8)
                    .ok()
                    .filter(|mode| *mode <= 0o777)
                    .ok_or_else(|| {
                        format!(
                            "invalid mode '{}' (expected octal, e.g. 600)",
                            self.unix_mode
                        )
                    }),
            )?,
            allow_remote_stop: self.allow_remote_stop,
            max_conns: self.max_conns,
            line_timeout: flag("line-timeout", parse_optional_duration(&self.line_timeout))?,
            stats_interval: match &self.stats {
                Some(every) => flag("stats", parse_optional_duration(every))?,
                None => None,
            },
            trace_loop: self.trace_loop,
            handle_signals: true,
            proxy_protocol: match &self.proxy_protocol {
                Some(trusted) => flag("proxy-protocol", trusted.parse())?,
                None => Default::default(),
            },
            notify: true,
        };
        config.validate().map_err(|err| err.to_string())?;
        Ok(config)
    }
}
