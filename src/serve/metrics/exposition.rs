//! The counters, as Prometheus reads them.
//!
//! A scrape is a [`Snapshot`]: the loops' counters (this loop's live, the
//! others' as last published), the output queue, the process. It is encoded
//! by `prometheus-client`, the official Rust client, as a collector: the
//! values already exist as plain integers owned by each loop, so nothing is
//! registered ahead or updated twice; the crate writes the names, types,
//! help, label escaping and histogram lines of whichever format the scraper
//! asked for ([`Format::negotiate`]):
//!
//! - the Prometheus text format 0.0.4, what `curl` and older scrapers get;
//! - OpenMetrics 1.0, when `Accept` prefers `application/openmetrics-text`
//!   (as Prometheus itself does).
//!
//! The metric names are a contract with dashboards and alerts: they change
//! only with a note in the README.

use std::fmt::{self, Write as _};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::http::Status;
use super::process::ProcessStats;
use crate::serve::close::CloseReason;
use crate::serve::stats::{Counters, TURN_BOUNDS_NANOS};

/// Which text format a scrape is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics when it weighs
    /// `application/openmetrics-text` above the plain text format (by
    /// `q`, then by order), the plain text format otherwise, as Prometheus'
    /// own client libraries decide.
    pub fn negotiate(accept: &[u8]) -> Format {
        let accept = String::from_utf8_lossy(accept);
        let mut openmetrics: Option<f32> = None;
        let mut text: Option<f32> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut quality = 1.0_f32;
            let mut version = None;
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=') {
                    let value = value.trim().trim_matches('"');
                    match name.trim().to_ascii_lowercase().as_str() {
                        "q" => quality = value.parse().unwrap_or(0.0),
                        "version" => version = Some(value.to_string()),
                        _ => {}
                    }
                }
            }
            let slot = match media.as_str() {
                // Versions we can write: 1.0.0 (and 0.0.1, its draft, which
                // parses the same), or none named.
                "application/openmetrics-text"
                    if version
                        .as_deref()
                        .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
                {
                    &mut openmetrics
                }
                "text/plain" | "text/*" | "*/*" => &mut text,
                _ => continue,
            };
            if slot.is_none_or(|q| quality > q) {
                *slot = Some(quality);
            }
        }
        match (openmetrics, text) {
            (Some(om), Some(plain)) if om >= plain && om > 0.0 => Format::OpenMetrics,
            (Some(om), None) if om > 0.0 => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Everything one scrape shows, read at once.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// Each loop's counters, by loop index.
    pub loops: Vec<Counters>,
    /// `--max-conns` for the whole server.
    pub max_conns: usize,
    /// Printed output not yet written.
    pub output_pending: usize,
    /// A stop has begun.
    pub stopping: bool,
    /// Requests the metrics port answered, by [`Status::index`].
    pub http_requests: [u64; Status::ALL.len()],
    /// HTTP clients of the metrics port connected now.
    pub http_open: usize,
    /// `None` where `/proc` cannot be read.
    pub process: Option<ProcessStats>,
}

impl Snapshot {
    /// Writes the snapshot to `into` in `format`.
    pub fn encode(self, format: Format, into: &mut String) -> fmt::Result {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(into, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(into, &registry),
        }
    }

    fn totals(&self) -> Counters {
        let mut total = Counters::default();
        for counters in &self.loops {
            total.add(counters);
        }
        total
    }
}

/// The reactor label: loops are numbered from 1, as in thread names and
/// `--trace-loop`.
fn reactor(index: usize) -> [(&'static str, String); 1] {
    [("reactor", (index + 1).to_string())]
}

/// One metric with a single unlabelled value.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    single(encoder, name, help, &ConstCounter::new(value))
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    single(
        encoder,
        name,
        help,
        &ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
    )
}

/// One metric with a value per label set.
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: EncodeMetric,
{
    let mut metric_encoder = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, metric) in series {
        metric.encode(metric_encoder.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let total = self.totals();
        let e = &mut encoder;

        // Connections.
        counter(
            e,
            "selectd_connections_accepted",
            "Connections accepted and served.",
            total.accepted,
        )?;
        family(
            e,
            "selectd_connections_open",
            "Connections open now, per event loop.",
            MetricType::Gauge,
            self.loops
                .iter()
                .enumerate()
                .map(|(index, counters)| (reactor(index), ConstGauge::new(to_i64(counters.open)))),
        )?;
        gauge(
            e,
            "selectd_connections_max",
            "The most connections served at once (--max-conns); more are refused.",
            self.max_conns as u64,
        )?;
        family(
            e,
            "selectd_connections_closed",
            "Connections closed, by reason.",
            MetricType::Counter,
            CloseReason::ALL.iter().map(|reason| {
                (
                    [("reason", reason.as_str())],
                    ConstCounter::new(total.closed_for(*reason)),
                )
            }),
        )?;
        family(
            e,
            "selectd_connections_refused",
            "Connections refused at accept, by reason (full: --max-conns were open).",
            MetricType::Counter,
            [([("reason", "full")], ConstCounter::new(total.refused_full))],
        )?;

        // Traffic.
        counter(
            e,
            "selectd_lines",
            "Lines received (printed, or obeyed as commands).",
            total.lines,
        )?;
        counter(
            e,
            "selectd_bytes_received",
            "Bytes read from clients, streams and datagrams.",
            total.bytes_in,
        )?;
        counter(
            e,
            "selectd_bytes_sent",
            "Bytes written to clients.",
            total.bytes_out,
        )?;
        counter(
            e,
            "selectd_lines_dropped",
            "Lines not printed because the output was full (--output-full drop).",
            total.lines_dropped,
        )?;
        counter(
            e,
            "selectd_datagrams_received",
            "UDP datagrams received.",
            total.datagrams,
        )?;
        counter(
            e,
            "selectd_datagram_replies_dropped",
            "UDP echo replies dropped because the socket's send buffer was full.",
            total.datagram_replies_dropped,
        )?;
        counter(
            e,
            "selectd_socket_errors",
            "Failed reads, writes (resets included) and accepts.",
            total.errors,
        )?;

        counter(
            e,
            "selectd_proxy_header_failures",
            "Connections from trusted proxies closed for a missing, malformed or late PROXY \
             header (--proxy-protocol); also in selectd_connections_closed_total{reason=\"proxy-header\"}.",
            total.closed_for(CloseReason::ProxyHeader),
        )?;
        counter(
            e,
            "selectd_tls_handshakes",
            "TLS handshakes completed on tls:// listeners.",
            total.tls_handshakes,
        )?;
        counter(
            e,
            "selectd_tls_handshake_failures",
            "TLS handshakes that failed or did not finish within --tls-handshake-timeout.",
            total.tls_handshake_failures,
        )?;

        // Backpressure.
        gauge(
            e,
            "selectd_output_pending_bytes",
            "Printed output waiting to be written (see --output-buffer).",
            self.output_pending as u64,
        )?;
        family(
            e,
            "selectd_reading_paused",
            "1 while an event loop reads no client because the output is full.",
            MetricType::Gauge,
            self.loops.iter().enumerate().map(|(index, counters)| {
                (
                    reactor(index),
                    ConstGauge::new(to_i64(counters.reading_paused)),
                )
            }),
        )?;

        // The loops themselves.
        {
            let mut metric_encoder = e.encode_descriptor(
                "selectd_loop_turn_seconds",
                "Duration of one turn of an event loop, from poll returning to the next poll: \
                 how long every client of that loop may wait.",
                None,
                MetricType::Histogram,
            )?;
            for (index, counters) in self.loops.iter().enumerate() {
                let turns = &counters.turns;
                let buckets: Vec<(f64, u64)> = TURN_BOUNDS_NANOS
                    .iter()
                    .map(|&nanos| nanos as f64 / 1e9)
                    .chain([f64::INFINITY])
                    .zip(turns.buckets)
                    .collect();
                metric_encoder
                    .encode_family(&reactor(index))?
                    .encode_histogram::<NoLabelSet>(
                        turns.sum_nanos as f64 / 1e9,
                        turns.count(),
                        &buckets,
                        None,
                    )?;
            }
        }
        family(
            e,
            "selectd_loop_wakeups",
            "Times an event loop's poll returned (events, a deadline, a signal).",
            MetricType::Counter,
            self.loops
                .iter()
                .enumerate()
                .map(|(index, counters)| (reactor(index), ConstCounter::new(counters.wakeups))),
        )?;
        gauge(
            e,
            "selectd_stopping",
            "1 once a stop has begun (GET /healthz answers 503).",
            u64::from(self.stopping),
        )?;

        // The metrics port itself.
        family(
            e,
            "selectd_http_requests",
            "Requests answered on the metrics port, by status code.",
            MetricType::Counter,
            Status::ALL.iter().map(|status| {
                (
                    [("code", status.code().to_string())],
                    ConstCounter::new(self.http_requests[status.index()]),
                )
            }),
        )?;
        gauge(
            e,
            "selectd_http_connections_open",
            "HTTP clients of the metrics port connected now (not line clients).",
            self.http_open as u64,
        )?;
        // A gauge of 1 with the version as a label, as `go_info` is (an
        // OpenMetrics `info` would not parse as the 0.0.4 text format).
        family(
            e,
            "selectd_build_info",
            "The running version, as a label.",
            MetricType::Gauge,
            [(
                [("version", env!("CARGO_PKG_VERSION"))],
                ConstGauge::new(1_i64),
            )],
        )?;

        if let Some(process) = &self.process {
            encode_process(e, process)?;
        }
        Ok(())
    }
}

/// The names every Prometheus client library uses for its process.
fn encode_process(e: &mut DescriptorEncoder, process: &ProcessStats) -> fmt::Result {
    single(
        e,
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        &ConstCounter::new(process.cpu_seconds),
    )?;
    gauge(
        e,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        process.resident_bytes,
    )?;
    gauge(
        e,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        process.virtual_bytes,
    )?;
    if let Some(open) = process.open_fds {
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            open,
        )?;
    }
    if let Some(max) = process.max_fds {
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        )?;
    }
    single(
        e,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &ConstGauge::new(process.start_time_seconds),
    )?;
    gauge(
        e,
        "process_threads",
        "Number of OS threads in the process.",
        process.threads,
    )
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Writes `snapshot` in `format` into `body` (cleared first); on the
/// encoder's error (never expected: the target is a `String`), says so in
/// the body instead.
pub(super) fn render(snapshot: Snapshot, format: Format, body: &mut String) {
    body.clear();
    if snapshot.encode(format, body).is_err() {
        body.clear();
        let _ = writeln!(body, "# cannot encode the metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(loops: usize) -> Snapshot {
        let mut first = Counters {
            accepted: 3,
            open: 2,
            lines: 10,
            ..Counters::default()
        };
        first.count_close(CloseReason::Eof);
        first.turns.record(std::time::Duration::from_micros(70));
        first.wakeups = 1;
        let mut all = vec![first];
        all.resize(loops, Counters::default());
        Snapshot {
            loops: all,
            max_conns: 1000,
            output_pending: 0,
            stopping: false,
            http_requests: [0; Status::ALL.len()],
            http_open: 1,
            process: None,
        }
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Format::negotiate(prometheus.as_bytes()),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(b""), Format::Prometheus);
        assert_eq!(Format::negotiate(b"*/*"), Format::Prometheus);
        assert_eq!(
            Format::negotiate(b"text/plain;version=0.0.4"),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(b"application/openmetrics-text"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(b"text/plain, application/openmetrics-text;q=0.5"),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(b"application/openmetrics-text; version=2.0.0"),
            Format::Prometheus,
            "a version we cannot write"
        );
        assert_eq!(
            Format::negotiate(b"application/openmetrics-text;q=0"),
            Format::Prometheus
        );
    }

    #[test]
    fn text_format_names_counters_with_total() {
        let mut body = String::new();
        render(snapshot(2), Format::Prometheus, &mut body);
        for line in [
            "# TYPE selectd_connections_accepted_total counter\n",
            "selectd_connections_accepted_total 3\n",
            "selectd_connections_open{reactor=\"1\"} 1\n",
            "selectd_connections_open{reactor=\"2\"} 0\n",
            "selectd_connections_closed_total{reason=\"eof\"} 1\n",
            "selectd_connections_closed_total{reason=\"idle\"} 0\n",
            "selectd_connections_refused_total{reason=\"full\"} 0\n",
            "selectd_lines_total 10\n",
            "selectd_loop_turn_seconds_bucket{reactor=\"1\",le=\"5e-05\"} 0\n",
            "selectd_loop_turn_seconds_bucket{reactor=\"1\",le=\"0.0001\"} 1\n",
            "selectd_loop_turn_seconds_bucket{reactor=\"1\",le=\"+Inf\"} 1\n",
            "selectd_loop_turn_seconds_count{reactor=\"1\"} 1\n",
            "selectd_loop_wakeups_total{reactor=\"1\"} 1\n",
        ] {
            assert!(body.contains(line), "{line:?} missing from\n{body}");
        }
        assert!(!body.contains("# EOF"));
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let mut body = String::new();
        render(snapshot(1), Format::OpenMetrics, &mut body);
        assert!(body.contains("# TYPE selectd_connections_accepted counter\n"));
        assert!(body.contains("selectd_connections_accepted_total 3\n"));
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn process_metrics_use_the_standard_names() {
        let mut with_process = snapshot(1);
        with_process.process = Some(ProcessStats {
            cpu_seconds: 1.5,
            resident_bytes: 4096,
            virtual_bytes: 8192,
            threads: 2,
            start_time_seconds: 1_796_395_140.25,
            open_fds: Some(7),
            max_fds: Some(1024),
        });
        let mut body = String::new();
        render(with_process, Format::Prometheus, &mut body);
        for line in [
            "process_cpu_seconds_total 1.5\n",
            "process_resident_memory_bytes 4096\n",
            "process_open_fds 7\n",
            "process_max_fds 1024\n",
            "process_start_time_seconds 1796395140.25\n",
        ] {
            assert!(body.contains(line), "{line:?} missing from\n{body}");
        }
    }
}
