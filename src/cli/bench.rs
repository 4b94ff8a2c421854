//! `selectd bench` flags, typed as clap parses them.
//!
//! Every flag that has a range is checked here, by clap, so a bad value is
//! refused before any socket is opened and the message names the flag
//! (`invalid value '0' for '--conns <N>'`). What needs more than one flag or
//! the machine (the target's family, memory, descriptors) is checked when
//! the flags become a [`BenchConfig`](crate::bench::BenchConfig).

use std::path::PathBuf;
use std::time::Duration;

use super::values;
use crate::bench::Mode;
use crate::net::addr::Address;

/// Most connections one run may ask for (the descriptor limit usually binds first).
pub const MAX_CONNS: u32 = 1_000_000;
/// Most lines in flight per connection.
pub const MAX_PIPELINE: u32 = 1_000_000;
/// Most load-generator threads.
pub const MAX_THREADS: u32 = 1024;
/// Largest `--size`: far beyond any server's line limit.
pub const MAX_SIZE: usize = 16 << 20;
/// Highest `--rate`, in lines (or connections) per second.
pub const MAX_RATE: f64 = 1e9;

/// The flags of `selectd bench`, as typed: validated further by
/// [`BenchConfig::from_args`](crate::bench::BenchConfig::from_args).
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
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNS)))]
    pub conns: u32,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 1m)
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = values::positive_duration)]
    pub duration: Duration,
    /// Bytes per line, the trailing newline included (1 to 16MiB)
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_size)]
    pub size: usize,
    /// Lines in flight per connection (echo mode)
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PIPELINE)))]
    pub pipeline: u32,
    /// What to measure
    #[arg(long, value_name = "MODE", value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Open loop: send R lines per second in all (churn: R new connections
    /// per second), on a fixed schedule, whatever the server answers
    #[arg(long, value_name = "R", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Load applied before measuring starts, excluded from the results
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = values::duration)]
    pub warmup: Duration,
    /// Load generator threads, one mio reactor each
    #[arg(long, value_name = "T", default_value_t = 1,
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

fn parse_address(text: &str) -> Result<Address, String> {
    match values::stream_address(text) {
        Ok(Address::Tcp { port: 0, .. } | Address::Tls { port: 0, .. }) => Err(format!(
            "invalid address '{text}': port 0 cannot be connected to"
        )),
        Ok(address) => Ok(address),
        Err(err) => Err(err.to_string().replace("send ", "bench ")),
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
        Ok(rate) if rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!(
            "invalid rate '{text}' (lines per second, above 0 and at most 1e9)"
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
