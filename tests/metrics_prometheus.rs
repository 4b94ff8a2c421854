//! `--metrics` against the real Prometheus tools (Debian's `prometheus`
//! package, installed by `.ci/run`): `promtool` accepts what selectd
//! exposes, in both formats; a Prometheus server, configured from
//! `contrib/prometheus.yml` with `contrib/prometheus-alerts.yml`, scrapes
//! selectd while clients run and its HTTP API reports what the clients
//! did; and every query of `contrib/grafana-selectd.json` names metrics
//! that selectd exposes.

mod common;
mod deploy_support;
mod metrics_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{PATIENCE, wait_until};
use deploy_support::{Reaped, free_port, program};
use metrics_support::{LineProbe, MetricsServer};

const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,\
    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

/// A server with two loops, some traffic and some closes, so that every
/// kind of series (per loop, per reason, the histogram) has values.
fn busy_server() -> MetricsServer {
    let metrics = MetricsServer::start(&["--echo", "--reactors", "2", "--idle-timeout", "60s"]);
    for _ in 0..4 {
        let mut probe = LineProbe::connect(&metrics.server);
        probe.round_trip();
    }
    metrics.wait_sample("selectd_connections_closed_total{reason=\"eof\"}", 4.0);
    metrics
}

/// `promtool check metrics` lints the text format 0.0.4 (names, types,
/// help, units, suffixes) and finds nothing to say. It has no OpenMetrics
/// parser (prometheus/prometheus#8932), so the OpenMetrics answer goes
/// through the one Prometheus scrapes with, in `promtool tsdb
/// create-blocks-from openmetrics`, which requires a timestamp on every
/// sample (added here, nothing else changed) and a final `# EOF`.
#[test]
fn promtool_accepts_both_formats() {
    let Some(promtool) = program("promtool", "prometheus") else {
        return;
    };
    let metrics = busy_server();

    let text = metrics.get("/metrics").text();
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&checked.stdout).into_owned()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(
        checked.status.success(),
        "promtool check metrics: {said}\n{text}"
    );
    assert_eq!(said.trim(), "", "promtool check metrics had remarks");

    let open = metrics
        .request(&format!(
            "GET /metrics HTTP/1.1\r\nHost: selectd\r\nAccept: {OPENMETRICS_ACCEPT}\r\n\r\n"
        ))
        .text();
    assert!(open.ends_with("# EOF\n"));
    let stamped: String = open
        .lines()
        .map(|line| {
            if line.starts_with('#') {
                format!("{line}\n")
            } else {
                format!("{line} 1796000000\n")
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scrape.om");
    std::fs::write(&input, &stamped).unwrap();
    let blocks = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir.path().join("blocks"))
        .output()
        .expect("run promtool tsdb");
    let said = String::from_utf8_lossy(&blocks.stdout).into_owned()
        + &String::from_utf8_lossy(&blocks.stderr);
    assert!(
        blocks.status.success(),
        "OpenMetrics refused: {said}\n{open}"
    );
    let series = open.lines().filter(|line| !line.starts_with('#')).count();
    assert!(
        said.contains(&format!(" {series} ")),
        "not every one of the {series} samples was read: {said}"
    );
}

/// The contrib files are valid for the real tools: the scrape config for
/// `promtool check config`, the alerting rules for `promtool check rules`.
#[test]
fn promtool_accepts_the_contrib_config_and_rules() {
    let Some(promtool) = program("promtool", "prometheus") else {
        return;
    };
    for (what, file) in [
        ("config", "prometheus.yml"),
        ("rules", "prometheus-alerts.yml"),
    ] {
        let checked = Command::new(&promtool)
            .args(["check", what])
            .arg(contrib(file))
            .output()
            .expect("run promtool");
        assert!(
            checked.status.success(),
            "promtool check {what} {file}: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

/// Every metric the Grafana dashboard and the alerting rules query is one
/// selectd exposes (or Prometheus' own `up`): a renamed metric cannot leave
/// a panel empty unnoticed.
#[test]
fn dashboard_and_alerts_query_only_exposed_metrics() {
    let metrics = busy_server();
    let exposed = metrics.get("/metrics").text();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(contrib("grafana-selectd.json")).unwrap())
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 15, "only {} queries", queries.len());
    let alerts = std::fs::read_to_string(contrib("prometheus-alerts.yml")).unwrap();
    queries.extend(
        alerts
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .map(str::to_string),
    );
    let mut named = 0;
    for query in &queries {
        for name in metric_names(query) {
            named += 1;
            assert!(
                exposed.contains(&format!("\n{name}{{"))
                    || exposed.contains(&format!("\n{name} "))
                    || name == "up",
                "{name} (in {query:?}) is not exposed"
            );
        }
    }
    assert!(named >= 20, "only {named} metric names found");
}

/// Every `"expr"` string in a Grafana dashboard, at any depth.
fn collect_exprs(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(expr) if key == "expr" => into.push(expr.clone()),
                    _ => collect_exprs(value, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, into)),
        _ => {}
    }
}

/// The metric names in a PromQL text: `selectd_*` and `process_*` words,
/// and `up`.
fn metric_names(query: &str) -> Vec<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            word.starts_with("selectd_") || word.starts_with("process_") || *word == "up"
        })
        .map(str::to_string)
        .collect()
}

/// A Prometheus server, run from `contrib/prometheus.yml` (scraping every
/// 200 ms instead of 15 s) with its alerting rules, storing in a
/// temporary directory and listening on loopback.
struct Prometheus {
    _child: Reaped,
    web: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Prometheus {
        let config = std::fs::read_to_string(contrib("prometheus.yml")).unwrap();
        for expected in [
            "scrape_interval: 15s",
            "evaluation_interval: 15s",
            "'127.0.0.1:10002'",
        ] {
            assert!(
                config.contains(expected),
                "contrib/prometheus.yml lacks {expected}"
            );
        }
        let config = config
            .replace("scrape_interval: 15s", "scrape_interval: 200ms")
            .replace("evaluation_interval: 15s", "evaluation_interval: 200ms")
            .replace("'127.0.0.1:10002'", &format!("'{target}'"));
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("prometheus.yml"), &config).unwrap();
            std::fs::copy(
                contrib("prometheus-alerts.yml"),
                dir.path().join("prometheus-alerts.yml"),
            )
            .unwrap();
            let web = format!("127.0.0.1:{}", free_port());
            let mut child = Reaped(
                Command::new(binary)
                    .arg(format!(
                        "--config.file={}",
                        dir.path().join("prometheus.yml").display()
                    ))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join("data").display()
                    ))
                    .arg(format!("--web.listen-address={web}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start prometheus"),
            );
            let stderr = common::collect(child.0.stderr.take().unwrap());
            let ready = common::wait_for(PATIENCE, || {
                stderr.lock().unwrap().contains("Server is ready")
                    || child.0.try_wait().unwrap().is_some()
            });
            let said = stderr.lock().unwrap().clone();
            if ready && said.contains("Server is ready") {
                return Prometheus {
                    _child: child,
                    web,
                    stderr,
                    _dir: dir,
                };
            }
            assert!(
                said.contains("address already in use"),
                "prometheus did not start: {said}"
            );
        }
        panic!("no free port for prometheus after 5 tries");
    }

    /// `GET /api/v1/...` on Prometheus' HTTP API: the `data` of a success.
    fn api(&self, path: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(&self.web).expect("connect to prometheus");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.web).unwrap();
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the answer");
        let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["status"], "success", "{path}: {json}");
        json["data"].clone()
    }

    /// The value of an instant query, if it has exactly one series.
    fn query(&self, promql: &str) -> Option<f64> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(promql)));
        let result = data["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus scrapes selectd while clients come and go: its API
/// finds as many accepted connections as the clients opened and as many
/// lines as they sent, summed over both loops; the target is healthy (the
/// OpenMetrics it asked for parsed) and every alerting rule evaluates.
#[test]
fn prometheus_counts_what_the_clients_did() {
    const CLIENTS: usize = 7;
    let Some(binary) = program("prometheus", "prometheus") else {
        return;
    };
    let metrics = MetricsServer::start(&["--echo", "--reactors", "2", "--idle-timeout", "60s"]);
    let prometheus = Prometheus::start(&binary, &metrics.metrics.to_string());
    wait_until("Prometheus to scrape selectd", || {
        prometheus.query("up{job=\"selectd\"}") == Some(1.0)
    });

    let mut probes: Vec<_> = (0..CLIENTS)
        .map(|_| LineProbe::connect(&metrics.server))
        .collect();
    let mut lines = 0;
    for (index, probe) in probes.iter_mut().enumerate() {
        for _ in 0..=index {
            probe.round_trip();
            lines += 1;
        }
    }
    let accepted = "selectd_connections_accepted_total{job=\"selectd\"}";
    let received = "selectd_lines_total{job=\"selectd\"}";
    let open = "sum(selectd_connections_open{job=\"selectd\"})";
    wait_until("Prometheus to see every client and line", || {
        prometheus.query(accepted) == Some(CLIENTS as f64)
            && prometheus.query(received) == Some(lines as f64)
            && prometheus.query(open) == Some(CLIENTS as f64)
    });
    drop(probes);
    wait_until("Prometheus to see them close", || {
        prometheus.query("selectd_connections_closed_total{reason=\"eof\"}") == Some(CLIENTS as f64)
    });
    assert!(
        prometheus
            .query("count(selectd_loop_turn_seconds_count)")
            .is_some_and(|loops| loops == 2.0),
        "a turn histogram per loop"
    );

    let targets = prometheus.api("/api/v1/targets");
    let target = &targets["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    wait_until("every alerting rule to be evaluated", || {
        let rules = prometheus.api("/api/v1/rules");
        let all: Vec<&serde_json::Value> = rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().into_iter().flatten())
            .collect();
        all.len() == 8
            && all.iter().all(|rule| {
                rule["health"] == "ok" && rule["lastError"].as_str().unwrap_or("").is_empty()
            })
    });
    let said = prometheus.stderr.lock().unwrap().clone();
    assert!(!said.contains("level=error"), "{said}");
    // The scrapes are HTTP clients of the metrics port, not line clients.
    assert_eq!(
        prometheus.query(accepted),
        Some(CLIENTS as f64),
        "scrapes counted as clients"
    );
}
