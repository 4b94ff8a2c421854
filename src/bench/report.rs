//! The result of a run and its spellings: a table for people, one JSON
//! object for scripts (and `.hgrm` text and an SVG plot, elsewhere).
//!
//! The JSON is written by hand: every value is a number, `null`, or a
//! string from a fixed set or escaped here, and `serde_json` would be a
//! dependency (plus `serde`'s derive) for one `format!`. A percentile with
//! no sample behind it is `null` (and `-` in the table), never 0.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::config::Mode;
use super::plan::Plan;
use super::record::{ErrorCounts, Measured};
use super::worker::Outcome;

/// Below this share of `--rate` achieved, the run is reported saturated.
const SATURATED_BELOW: f64 = 0.95;

/// What a benchmark run measured. Latencies are in µs, `None` without samples.
#[derive(Debug, Clone)]
pub struct Report {
    /// `echo`, `ingest`, `idle` or `churn`.
    pub mode: Mode,
    /// The server: `tcp://127.0.0.1:7000` or `unix:/run/s.sock`.
    pub addr: String,
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
    /// Open loop: the lines (churn: connections) per second asked for.
    pub rate: Option<f64>,
    /// What was achieved: `msgs / duration_s`.
    pub achieved_rate: f64,
    /// Open loop: achieved below 95% of `rate`.
    pub saturated: bool,
    /// Messages completed in the window (echoed back, written for ingest,
    /// whole visits for churn).
    pub msgs: u64,
    /// `msgs / duration_s`.
    pub msgs_per_sec: f64,
    /// Payload bytes per second, one direction: `msgs * size / duration_s`.
    pub bytes_per_sec: f64,
    /// Median latency (corrected for coordinated omission in the open loop).
    pub p50_us: Option<u64>,
    /// 90th percentile.
    pub p90_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// 99.9th percentile.
    pub p999_us: Option<u64>,
    /// Slowest.
    pub max_us: Option<u64>,
    /// Mean.
    pub mean_us: Option<f64>,
    /// 99th percentile measured from when each line actually went out.
    pub uncorrected_p99_us: Option<u64>,
    /// Slowest, measured from when each line actually went out.
    pub uncorrected_max_us: Option<u64>,
    /// Churn: whole visits (connect, line, echo, close) per second.
    pub conns_per_sec: Option<f64>,
    /// Churn: median connect time.
    pub connect_p50_us: Option<u64>,
    /// Churn: 99th percentile connect time.
    pub connect_p99_us: Option<u64>,
    /// Failures: idle connections that failed or were closed, churn visits
    /// that failed (echo and ingest abort on the first failure instead).
    pub errors: u64,
    /// Churn: failures by kind.
    pub errors_by_kind: ErrorCounts,
    /// Connections that were established.
    pub established: usize,
    /// Connections still open at the end.
    pub held: usize,
    /// The first failure, if any, as text.
    pub first_failure: Option<String>,
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
}

fn quantile(histogram: &Histogram<u64>, q: f64) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(q))
}

fn max(histogram: &Histogram<u64>) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.max())
}

impl Report {
    pub(crate) fn new(plan: &Plan, measured: &Measured, outcomes: &[Outcome]) -> Report {
        let config = &plan.config;
        let msgs: u64 = outcomes.iter().map(|o| o.msgs).sum();
        let duration_s = config.duration.as_secs_f64();
        let achieved_rate = msgs as f64 / duration_s;
        let latency = &measured.corrected;
        let churn = config.mode == Mode::Churn;
        let errors = measured.errors.total() + outcomes.iter().map(|o| o.errors).sum::<u64>();
        Report {
            mode: config.mode,
            addr: plan.target.to_string(),
            conns: config.conns,
            size: config.size,
            pipeline: config.pipeline,
            threads: config.threads,
            warmup_s: config.warmup.as_secs_f64(),
            duration_s,
            rate: config.rate,
            achieved_rate,
            saturated: config
                .rate
                .is_some_and(|rate| achieved_rate < rate * SATURATED_BELOW),
            msgs,
            msgs_per_sec: achieved_rate,
            bytes_per_sec: (msgs as f64 * config.size as f64) / duration_s,
            p50_us: quantile(latency, 0.5),
            p90_us: quantile(latency, 0.9),
            p99_us: quantile(latency, 0.99),
            p999_us: quantile(latency, 0.999),
            max_us: max(latency),
            mean_us: (!latency.is_empty()).then(|| latency.mean()),
            uncorrected_p99_us: quantile(&measured.uncorrected, 0.99),
            uncorrected_max_us: max(&measured.uncorrected),
            conns_per_sec: churn.then_some(achieved_rate),
            connect_p50_us: quantile(&measured.connect, 0.5),
            connect_p99_us: quantile(&measured.connect, 0.99),
            errors,
            errors_by_kind: measured.errors,
            established: outcomes.iter().map(|o| o.established).sum(),
            held: outcomes.iter().map(|o| o.held).sum(),
            first_failure: outcomes.iter().find_map(|o| o.first_failure.clone()),
            corrected: latency.clone(),
            uncorrected: measured.uncorrected.clone(),
        }
    }

    /// The latency histogram (µs) of the measured window, corrected for
    /// coordinated omission in the open loop.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.corrected
    }

    /// The same latencies measured from when each line actually went out.
    pub fn uncorrected_histogram(&self) -> &Histogram<u64> {
        &self.uncorrected
    }

    /// One line naming the run's settings: the table's heading, the plot's title.
    pub fn settings(&self) -> String {
        let mut out = format!("{} {}, {} conns", self.mode, self.addr, self.conns);
        if let Some(rate) = self.rate {
            let _ = write!(out, ", rate {rate}/s");
        }
        if self.mode != Mode::Idle {
            let _ = write!(out, ", {} B lines", self.size);
        }
        if matches!(self.mode, Mode::Echo) {
            let _ = write!(out, ", pipeline {}", self.pipeline);
        }
        let _ = write!(
            out,
            ", {:.1}s (+{:.1}s warm-up), {} thread{}",
            self.duration_s,
            self.warmup_s,
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        out
    }

    /// The table printed without `--json`.
    pub fn to_table(&self) -> String {
        let mut out = format!("selectd bench: {}\n", self.settings());
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<18}{value:>14}");
        };
        let us = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        match self.mode {
            Mode::Idle => {
                row("established", self.established.to_string());
                row("held", self.held.to_string());
            }
            Mode::Echo | Mode::Ingest | Mode::Churn => {
                row("msgs", self.msgs.to_string());
                row("msgs/s", format!("{:.0}", self.msgs_per_sec));
                row("MB/s", format!("{:.2}", self.bytes_per_sec / 1e6));
            }
        }
        if let Some(rate) = self.rate {
            row("rate asked", format!("{rate:.0}"));
            let saturated = if self.saturated { " (saturated)" } else { "" };
            row(
                "rate achieved",
                format!("{:.0}{saturated}", self.achieved_rate),
            );
        }
        if self.mode == Mode::Churn {
            row("conns/s", format!("{:.0}", self.achieved_rate));
            row("connect p50 µs", us(self.connect_p50_us));
            row("connect p99 µs", us(self.connect_p99_us));
        }
        if self.mode.echoes() {
            row("p50 µs", us(self.p50_us));
            row("p90 µs", us(self.p90_us));
            row("p99 µs", us(self.p99_us));
            row("p99.9 µs", us(self.p999_us));
            row("max µs", us(self.max_us));
            if self.rate.is_some() {
                row("uncorrected p99 µs", us(self.uncorrected_p99_us));
                row("uncorrected max µs", us(self.uncorrected_max_us));
            }
        }
        row("errors", self.errors.to_string());
        for (kind, count) in self.errors_by_kind.by_kind().filter(|&(_, n)| n > 0) {
            row(&format!("  {kind}"), count.to_string());
        }
        out
    }

    /// Exactly one JSON object, on one line, without a trailing newline.
    ///
    /// Keys: `mode, addr, conns, size, pipeline, threads, warmup_s,
    /// duration_s, rate, achieved_rate, saturated, msgs, msgs_per_sec,
    /// bytes_per_sec, p50_us, p90_us, p99_us, p999_us, max_us, mean_us,
    /// uncorrected_p99_us, uncorrected_max_us, conns_per_sec, connect_p50_us,
    /// connect_p99_us, errors, errors_by_kind, established, held`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        let mut key = |name: &str, value: String| {
            if out.len() > 1 {
                out.push(',');
            }
            let _ = write!(out, "\"{name}\":{value}");
        };
        let int = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
        let float = |v: Option<f64>| v.map_or_else(|| "null".to_string(), json_number);
        key("mode", format!("\"{}\"", self.mode));
        key("addr", json_string(&self.addr));
        key("conns", self.conns.to_string());
        key("size", self.size.to_string());
        key("pipeline", self.pipeline.to_string());
        key("threads", self.threads.to_string());
        key("warmup_s", json_number(self.warmup_s));
        key("duration_s", json_number(self.duration_s));
        key("rate", float(self.rate));
        key("achieved_rate", json_number(self.achieved_rate));
        key("saturated", self.saturated.to_string());
        key("msgs", self.msgs.to_string());
        key("msgs_per_sec", json_number(self.msgs_per_sec));
        key("bytes_per_sec", json_number(self.bytes_per_sec));
        key("p50_us", int(self.p50_us));
        key("p90_us", int(self.p90_us));
        key("p99_us", int(self.p99_us));
        key("p999_us", int(self.p999_us));
        key("max_us", int(self.max_us));
        key("mean_us", float(self.mean_us));
        key("uncorrected_p99_us", int(self.uncorrected_p99_us));
        key("uncorrected_max_us", int(self.uncorrected_max_us));
        key("conns_per_sec", float(self.conns_per_sec));
        key("connect_p50_us", int(self.connect_p50_us));
        key("connect_p99_us", int(self.connect_p99_us));
        key("errors", self.errors.to_string());
        let kinds: Vec<String> = self
            .errors_by_kind
            .by_kind()
            .map(|(kind, count)| format!("\"{kind}\":{count}"))
            .collect();
        key("errors_by_kind", format!("{{{}}}", kinds.join(",")));
        key("established", self.established.to_string());
        key("held", self.held.to_string());
        out.push('}');
        out
    }

    /// The distribution in HdrHistogram's percentile text format (values in µs).
    pub fn to_hgrm(&self) -> String {
        super::hgrm(&self.corrected)
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

/// A JSON string: quotes, backslashes and control characters escaped (a
/// Unix socket path may hold any of them).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every latency row of the table names its unit, the uncorrected ones too.
    #[test]
    fn every_latency_row_names_its_unit() {
        let plan = Plan {
            config: super::super::BenchConfig {
                duration: std::time::Duration::from_secs(1),
                rate: Some(100.0),
                ..super::super::BenchConfig::new(crate::net::addr::Address::Unix("/s".into()))
            },
            target: super::super::config::Target::Unix("/s".into()),
            start: std::time::Instant::now(),
        };
        let mut measured = Measured::new().unwrap();
        let now = std::time::Instant::now();
        measured.round_trip(super::super::record::Sent::now(now), now);
        let table = Report::new(&plan, &measured, &[]).to_table();
        let latency_rows: Vec<&str> = table
            .lines()
            .filter(|l| ["p50", "p90", "p99", "max"].iter().any(|w| l.contains(w)))
            .collect();
        assert!(latency_rows.len() >= 7, "{table}");
        for row in latency_rows {
            assert!(row.contains(" µs "), "{row}");
        }
    }

    #[test]
    fn json_strings_escape_what_json_forbids() {
        assert_eq!(json_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000ad\"");
    }
}
