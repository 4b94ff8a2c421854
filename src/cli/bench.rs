//! `selectd bench` flags, typed as clap parses them, and the
//! [`BenchConfig`] they make.
//!
//! Every flag that has a range is checked here, by clap, so a bad value is
//! refused before any socket is opened and the message names the flag
//! (`invalid value '0' for '--conns <N>'`). What needs more than one flag is
//! checked when the flags become a [`BenchConfig`] ([`BenchConfig::check`]);
//! what needs the machine (resolving ADDR, memory, descriptors), when
//! [`bench::run`](crate::bench::run) starts. As for `serve` and `send`, the
//! config is built here and the subcommand only ever sees the config: bench
//! does not know clap's flag types, so the two modules do not depend on each
//! other in a circle.

use std::path::PathBuf;
use std::time::Duration;

use super::values::{self, HTTP_HINT};
#[cfg(feature = "tls")]
use crate::bench::BenchTls;
use crate::bench::{BenchConfig, BenchError, MAX_RATE, MIN_RATE, Mode};
use crate::net::addr::Address;

/// Most connections one run may ask for (the descriptor limit usually binds first).
pub const MAX_CONNS: u32 = 1_000_000;
/// Most lines in flight per connection.
pub const MAX_PIPELINE: u32 = 1_000_000;
/// Most load-generator threads.
pub const MAX_THREADS: u32 = 1024;
/// Largest `--size`: far beyond any server's line limit.
pub const MAX_SIZE: usize = 16 << 20;

/// The flags of `selectd bench`, as typed: validated further by
/// [`BenchArgs::into_config`].
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server to load: `HOST:PORT`, `tcp://HOST:PORT`, `[V6]:PORT`, `tls://HOST:PORT` or `unix:PATH`.
    // Help text spelled out: in the doc comment, rustdoc reads `[V6]` as a link.
    #[arg(
        value_name = "ADDR",
        value_parser = parse_address,
        help = "Server to load: HOST:PORT, tcp://HOST:PORT, [V6]:PORT, tls://HOST:PORT or unix:PATH"
    )]
    pub addr: Address,
    /// Concurrent connections (churn: connections open at once)
    #[arg(long, value_name = "N", default_value_t = 1, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNS)))]
    pub conns: u32,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 1m)
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = values::positive_duration, allow_hyphen_values = true)]
    pub duration: Duration,
    /// Bytes per line, the trailing newline included (1 to 16MiB)
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_size, allow_hyphen_values = true)]
    pub size: usize,
    /// Lines in flight per connection (echo mode)
    #[arg(long, value_name = "K", default_value_t = 1, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PIPELINE)))]
    pub pipeline: u32,
    /// What to measure
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Open loop: send R lines per second in all (churn: R new connections
    /// per second), on a fixed schedule, whatever the server answers
    #[arg(long, value_name = "R", value_parser = parse_rate, allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Load applied before measuring starts, excluded from the results
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = values::duration, allow_hyphen_values = true)]
    pub warmup: Duration,
    /// Load generator threads, one mio reactor each
    #[arg(long, value_name = "T", default_value_t = 1, allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS)))]
    pub threads: u32,
    /// Print exactly one JSON object on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// Print progress on stderr once a second even when stderr is not a terminal
    #[arg(long)]
    pub progress: bool,
    /// Also write the latency distribution to FILE in HdrHistogram's .hgrm
    /// text format (echo and churn modes)
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Also draw the latency percentile spectrum to FILE, an SVG (echo and
    /// churn modes)
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// With --plot: also draw the curve of an earlier run's --hgrm FILE,
    /// labelled NAME (repeatable), e.g. --plot-with tokio=tokio.hgrm
    #[arg(long, value_name = "NAME=FILE", value_parser = parse_curve, requires = "plot")]
    pub plot_with: Vec<(String, PathBuf)>,
    /// tls://: trust the CAs in FILE (PEM) instead of the system's
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// tls://: the name to send (SNI) and check the certificate against; default: the address's host
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// tls://: do not verify the server's certificate
    #[cfg(feature = "tls")]
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
}

impl BenchArgs {
    /// The run's settings; an error names the flag that the others (the
    /// mode, most often) rule out.
    ///
    /// ```
    /// use clap::Parser;
    /// use selectd::bench::Mode;
    /// use selectd::cli::BenchArgs;
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     bench: BenchArgs,
    /// }
    /// let cli = Cli::try_parse_from(["bench", "127.0.0.1:7000", "--duration", "2s"])?;
    /// let config = cli.bench.into_config()?;
    /// assert_eq!(config.mode, Mode::Echo);
    /// assert_eq!(config.size, 64);
    ///
    /// let cli = Cli::try_parse_from(["bench", "127.0.0.1:7000", "--mode", "idle", "--hgrm", "x.hgrm"])?;
    /// let refused = cli.bench.into_config().unwrap_err();
    /// assert_eq!(
    ///     refused.to_string(),
    ///     "--hgrm x.hgrm: idle mode has no latencies to write (echo and churn have)"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_config(self) -> Result<BenchConfig, BenchError> {
        let config = BenchConfig {
            addr: self.addr,
            conns: self.conns as usize,
            duration: self.duration,
            size: self.size,
            pipeline: self.pipeline as usize,
            mode: self.mode,
            rate: self.rate,
            warmup: self.warmup,
            threads: self.threads as usize,
            json: self.json,
            progress: self.progress,
            hgrm: self.hgrm,
            plot: self.plot,
            plot_with: self.plot_with,
            #[cfg(feature = "tls")]
            tls: BenchTls {
                ca: self.tls_ca,
                server_name: self.tls_server_name,
                insecure: self.tls_insecure,
            },
        };
        config.check()?;
        Ok(config)
    }
}

fn parse_address(text: &str) -> Result<Address, String> {
    match values::stream_address(text) {
        Ok(Address::Tcp { port: 0, .. } | Address::Tls { port: 0, .. }) => Err(format!(
            "invalid address '{text}': port 0 cannot be connected to"
        )),
        Ok(address) => Ok(address),
        // `send`'s message, with `send`'s own hint (`--http`) left out:
        // bench has no such flag.
        Err(err) => Err(err
            .to_string()
            .replace(HTTP_HINT, "")
            .replace("send ", "bench ")),
    }
}

fn parse_size(text: &str) -> Result<usize, String> {
    let size = values::size(text).map_err(|e| e.to_string())?;
    if size > MAX_SIZE {
        return Err(format!("invalid size '{text}' (at most 16MiB)"));
    }
    Ok(size)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "invalid rate '{text}' (lines per second, from 0.001 to 1e9)"
        )),
    }
}

fn parse_curve(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("invalid curve '{text}' (expected NAME=FILE)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::bench::BenchConfig;
    use crate::cli::{Cli, Command};

    /// The flags' defaults are written twice, in clap's attributes (for
    /// `--help` and the man page) and in `BenchConfig::new` (for library
    /// users); they must say the same.
    #[test]
    fn the_flags_defaults_are_the_configs() {
        let Ok(Cli {
            command: Command::Bench(args),
            ..
        }) = Cli::try_parse_from(["selectd", "bench", "127.0.0.1:7000"])
        else {
            panic!("selectd bench ADDR parses");
        };
        let parsed = args.into_config().expect("a valid configuration");
        let default = BenchConfig::new("127.0.0.1:7000".parse().expect("an address"));
        assert_eq!(format!("{parsed:#?}"), format!("{default:#?}"));
    }
}
