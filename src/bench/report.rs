//! The result of a run and its three spellings: a table for people, one JSON
//! object for scripts, and HdrHistogram's `.hgrm` text for plotters.
//!
//! The JSON is written by hand: every value is a number or a mode name from
//! a fixed set, so there is nothing to escape, and `serde_json` would be a
//! dependency (plus `serde`'s derive) for one `format!`.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::load::Outcome;
use super::{BenchConfig, Mode};

/// What a benchmark run measured. Latencies are round trips in µs (echo mode
/// only; zero otherwise).
#[derive(Debug, Clone)]
pub struct Report {
    /// `echo`, `ingest` or `idle`.
    pub mode: Mode,
    /// The server, as connected to.
    pub addr: std::net::SocketAddr,
    /// Connections asked for.
    pub conns: usize,
    /// Bytes per line, `\n` included.
    pub size: usize,
    /// Lines in flight per connection.
    pub pipeline: usize,
    /// Reactor threads used.
    pub threads: usize,
    /// The warm-up before the window, in seconds.
    pub warmup_s: f64,
    /// The measured window, in seconds.
    pub duration_s: f64,
    /// Messages completed in the window (echoed back, or written for ingest).
    pub msgs: u64,
    /// `msgs / duration_s`.
    pub msgs_per_sec: f64,
    /// Payload bytes per second, one direction: `msgs * size / duration_s`.
    pub bytes_per_sec: f64,
    /// Median round trip.
    pub p50_us: u64,
    /// 90th percentile round trip.
    pub p90_us: u64,
    /// 99th percentile round trip.
    pub p99_us: u64,
    /// 99.9th percentile round trip.
    pub p999_us: u64,
    /// Slowest round trip.
    pub max_us: u64,
    /// Mean round trip.
    pub mean_us: f64,
    /// Failures: connections that failed or were closed (idle mode; in the
    /// other modes any failure aborts the run instead, so this is 0).
    pub errors: u64,
    /// Connections that were established.
    pub established: usize,
    /// Connections still open at the end.
    pub held: usize,
    /// The first failure, if any, as text.
    pub first_failure: Option<String>,
    histogram: Histogram<u64>,
}

impl Report {
    pub(crate) fn new(
        config: &BenchConfig,
        histogram: &Histogram<u64>,
        outcomes: &[Outcome],
    ) -> Report {
        let msgs: u64 = outcomes.iter().map(|o| o.msgs).sum();
        let duration_s = config.duration.as_secs_f64();
        let quantile = |q: f64| {
            if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(q)
            }
        };
        Report {
            mode: config.mode,
            addr: config.addr,
            conns: config.conns,
            size: config.size,
            pipeline: config.pipeline,
            threads: config.threads,
            warmup_s: config.warmup.as_secs_f64(),
            duration_s,
            msgs,
            msgs_per_sec: msgs as f64 / duration_s,
            bytes_per_sec: (msgs as f64 * config.size as f64) / duration_s,
            p50_us: quantile(0.5),
            p90_us: quantile(0.9),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us: if histogram.is_empty() {
                0
            } else {
                histogram.max()
            },
            mean_us: if histogram.is_empty() {
                0.0
            } else {
                histogram.mean()
            },
            errors: outcomes.iter().map(|o| o.errors).sum(),
            established: outcomes.iter().map(|o| o.established).sum(),
            held: outcomes.iter().map(|o| o.held).sum(),
            first_failure: outcomes.iter().find_map(|o| o.first_failure.clone()),
            histogram: histogram.clone(),
        }
    }

    /// The round-trip histogram (µs) of the measured window.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// The table printed without `--json`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let threads = if self.threads == 1 {
            "thread"
        } else {
            "threads"
        };
        let _ = writeln!(
            out,
            "selectd bench: {} tcp://{}, {} conns, {} B lines, pipeline {}, {:.1}s (+{:.1}s warm-up), {} {threads}",
            self.mode,
            self.addr,
            self.conns,
            self.size,
            self.pipeline,
            self.duration_s,
            self.warmup_s,
            self.threads
        );
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<14}{value:>14}");
        };
        match self.mode {
            Mode::Idle => {
                row("established", self.established.to_string());
                row("held", self.held.to_string());
            }
            Mode::Echo | Mode::Ingest => {
                row("msgs", self.msgs.to_string());
                row("msgs/s", format!("{:.0}", self.msgs_per_sec));
                row("MB/s", format!("{:.2}", self.bytes_per_sec / 1e6));
            }
        }
        if self.mode == Mode::Echo {
            row("p50 µs", self.p50_us.to_string());
            row("p90 µs", self.p90_us.to_string());
            row("p99 µs", self.p99_us.to_string());
            row("p99.9 µs", self.p999_us.to_string());
            row("max µs", self.max_us.to_string());
        }
        row("errors", self.errors.to_string());
        out
    }

    /// Exactly one JSON object, on one line, without a trailing newline.
    ///
    /// Keys: `mode, addr, conns, size, pipeline, threads, warmup_s,
    /// duration_s, msgs, msgs_per_sec, bytes_per_sec, p50_us, p90_us, p99_us,
    /// p999_us, max_us, mean_us, errors, established, held`.
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"mode\":\"{}\",\"addr\":\"{}\",\"conns\":{},\"size\":{},\"pipeline\":{},",
                "\"threads\":{},\"warmup_s\":{},\"duration_s\":{},\"msgs\":{},",
                "\"msgs_per_sec\":{},\"bytes_per_sec\":{},\"p50_us\":{},\"p90_us\":{},",
                "\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{},\"errors\":{},",
                "\"established\":{},\"held\":{}}}"
            ),
            self.mode,
            self.addr,
            self.conns,
            self.size,
            self.pipeline,
            self.threads,
            json_number(self.warmup_s),
            json_number(self.duration_s),
            self.msgs,
            json_number(self.msgs_per_sec),
            json_number(self.bytes_per_sec),
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            json_number(self.mean_us),
            self.errors,
            self.established,
            self.held,
        )
    }

    /// The distribution in HdrHistogram's percentile text format (values in µs).
    pub fn to_hgrm(&self) -> String {
        hgrm(&self.histogram)
    }
}

/// A finite float with 3 decimals; JSON has no NaN or infinity, so those are 0.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "0".to_string()
    }
}

/// HdrHistogram's percentile distribution text, as Java's
/// `Histogram.outputPercentileDistribution(out, 5, 1.0)` prints it and as
/// HdrHistogram's plotter and `hdr-plot` read it: a header, one row per
/// percentile step (5 ticks per half distance), the last row (100%) without
/// the `1/(1-Percentile)` column, and a `#[...]` footer.
///
/// ```
/// use selectd::bench::hgrm;
/// let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1_000_000, 3)?;
/// for v in 1..=100 { h.record(v)?; }
/// let text = hgrm(&h);
/// assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
/// assert!(text.contains("#[Max     =      100.000, Total count    =          100]"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let digits = histogram.sigfig() as usize;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !histogram.is_empty() {
        for step in histogram.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let quantile = step.quantile_iterated_to();
            let value = step.value_iterated_to() as f64;
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {quantile:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {quantile:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (histogram.mean(), histogram.stdev(), histogram.max() as f64)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_buckets(histogram.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for a precision: the power of two that
/// holds `2 * 10^sigfig` (2048 for 3 digits). The crate does not expose it.
fn sub_buckets(sigfig: u8) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(u32::from(sigfig));
    largest_single_unit.next_power_of_two()
}
