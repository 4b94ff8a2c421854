//! `selectd bench` against a real `selectd serve --echo`: churn, Unix
//! socket targets in every mode, the SVG plot and the progress line.

mod bench_common;
mod common;

use bench_common::{bench, error_line, json, num};
use common::ServerProcess;

/// Churn against `serve --echo`: thousands of whole visits (connect, line,
/// echo, close) in a few seconds, none failing: the client's TIME_WAIT
/// sockets, spread over many loopback source addresses, never run out.
#[test]
fn churn_against_serve_echo_completes_thousands_without_errors() {
    let server = ServerProcess::start(&["--echo", "--format", "none", "--idle-timeout", "off"]);
    let output = bench(&[
        &server.addr,
        "--mode",
        "churn",
        "--conns",
        "8",
        "--duration",
        "3s",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["mode"], "churn");
    assert!(num(&report, "msgs") >= 1000.0, "{report}");
    assert!(num(&report, "conns_per_sec") > 0.0, "{report}");
    assert_eq!(num(&report, "errors"), 0.0, "{report}");
    assert!(report["connect_p50_us"].as_u64().is_some(), "{report}");
    assert!(
        num(&report, "connect_p50_us") <= num(&report, "connect_p99_us"),
        "{report}"
    );
    assert!(report["p99_us"].as_u64().is_some(), "{report}");
}

/// Churn with `--rate`: new connections per second on a schedule.
#[test]
fn churn_with_a_rate_opens_that_many_connections_per_second() {
    let server = ServerProcess::start(&["--echo", "--format", "none"]);
    let output = bench(&[
        &server.addr,
        "--mode",
        "churn",
        "--rate",
        "200",
        "--conns",
        "4",
        "--duration",
        "2s",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert!(
        (190.0..=210.0).contains(&num(&report, "conns_per_sec")),
        "{report}"
    );
}

/// Churn against a port nobody listens on: every failure is counted under
/// its kind, the report is printed, and the run ends with one error line
/// and a non-zero exit (nothing completed).
#[test]
fn churn_against_a_refused_port_counts_errors_by_kind() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let output = bench(&[
        &addr,
        "--mode",
        "churn",
        "--conns",
        "2",
        "--duration",
        "500ms",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json(&output);
    let refused = report["errors_by_kind"]["refused"].as_u64().unwrap();
    assert!(refused > 0, "{report}");
    assert_eq!(report["errors"].as_u64().unwrap(), refused, "{report}");
    assert!(report["p50_us"].is_null(), "{report}");
    let line = error_line(&output);
    assert!(
        line.contains("nothing completed") && line.contains("refused"),
        "{line}"
    );
}

/// Churn against a `unix:` path where no socket exists: the failures are
/// counted as `not_found`, a kind of their own, not as `other`.
#[test]
fn churn_against_a_missing_unix_path_counts_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!("unix:{}", dir.path().join("missing.sock").display());
    let output = bench(&[
        &target,
        "--mode",
        "churn",
        "--conns",
        "2",
        "--duration",
        "500ms",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json(&output);
    let kinds = &report["errors_by_kind"];
    let not_found = kinds["not_found"].as_u64().unwrap();
    assert!(not_found > 0, "{report}");
    assert_eq!(kinds["other"].as_u64(), Some(0), "{report}");
    assert_eq!(report["errors"].as_u64(), Some(not_found), "{report}");
    let line = error_line(&output);
    assert!(line.contains("errors: not_found "), "{line}");
}

/// `unix:PATH` works in every mode, the open loop included.
#[test]
fn unix_targets_work_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listen = format!("unix:{}", path.display());
    let _server = ServerProcess::start(&["--listen", &listen, "--echo", "--format", "none"]);
    for extra in [
        vec!["--mode", "echo", "--pipeline", "4"],
        vec!["--mode", "echo", "--rate", "500"],
        vec!["--mode", "ingest"],
        vec!["--mode", "idle"],
        vec!["--mode", "churn"],
    ] {
        let mut args = vec![
            listen.as_str(),
            "--conns",
            "3",
            "--duration",
            "500ms",
            "--json",
        ];
        args.extend(&extra);
        let output = bench(&args);
        assert!(output.status.success(), "{extra:?}: {output:?}");
        let report = json(&output);
        assert_eq!(report["addr"], listen.as_str(), "{report}");
        assert_eq!(num(&report, "errors"), 0.0, "{extra:?}: {report}");
        if extra[1] == "idle" {
            assert_eq!(num(&report, "held"), 3.0, "{report}");
        } else {
            assert!(num(&report, "msgs") > 0.0, "{extra:?}: {report}");
        }
    }
}

/// `--plot` writes an SVG document with both curves, labelled, and the
/// run's settings in its title.
#[test]
fn plot_is_an_svg_with_both_curves_and_the_settings() {
    let server = ServerProcess::start(&["--echo", "--format", "none"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latency.svg");
    let output = bench(&[
        &server.addr,
        "--rate",
        "300",
        "--duration",
        "1s",
        "--plot",
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let svg = roxmltree::Document::parse(&text).expect("the plot is well-formed XML");
    assert_eq!(svg.root_element().tag_name().name(), "svg");
    let lines = svg
        .descendants()
        .filter(|n| n.tag_name().name() == "polyline")
        .filter(|n| {
            n.attribute("points")
                .is_some_and(|p| p.split_whitespace().count() > 5)
        })
        .count();
    assert!(lines >= 2, "two curves: {text}");
    let texts: Vec<&str> = svg
        .descendants()
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    assert!(texts.contains(&"corrected"), "{texts:?}");
    assert!(texts.contains(&"uncorrected"), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("rate 300/s")), "{texts:?}");
    assert!(texts.contains(&"99%"), "{texts:?}");
}

/// `--progress` writes its lines on stderr only: stdout stays one JSON object.
#[test]
fn progress_goes_to_stderr_never_stdout() {
    let server = ServerProcess::start(&["--echo", "--format", "none"]);
    let output = bench(&[&server.addr, "--duration", "2500ms", "--json", "--progress"]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert!(num(&report, "msgs") > 0.0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().filter(|l| l.starts_with("bench: ")).count() >= 2,
        "{stderr}"
    );
    assert!(stderr.contains("msgs/s"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("bench:"), "{stdout}");
}

/// Without `--progress`, and with stderr not a terminal, nothing but the
/// report is printed.
#[test]
fn no_progress_unless_asked_when_not_a_terminal() {
    let server = ServerProcess::start(&["--echo", "--format", "none"]);
    let output = bench(&[&server.addr, "--duration", "1500ms", "--json"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
