//! `selectd bench` as a black box: the binary against small servers written
//! here, on 127.0.0.1:0. Every run is short (`--duration 1s` or less) and
//! bounded by a kill after `RUN_LIMIT`; no test asserts a speed.

mod bench_common;
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use bench_common::{bench, error_line, json};

/// What an in-test server does with each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Writes back every byte as it comes.
    Echo,
    /// Echoes, but flips the byte at this stream offset.
    CorruptAt(u64),
    /// Reads one chunk, then closes without answering.
    CloseAfterFirstRead,
    /// Reads and drops everything.
    Sink,
    /// Holds the connection, reading nothing... until the client leaves.
    Hold,
    /// Closes every odd-numbered connection right after accepting it.
    CloseOdd,
    /// Accepts and never reads: only the socket buffers take bytes.
    Deaf,
}

/// Starts a server on 127.0.0.1:0 in background threads; returns its address.
fn server(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr").to_string();
    thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve(stream, behaviour, index));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, index: usize) {
    let mut buf = [0u8; 16 * 1024];
    let mut offset = 0u64;
    match behaviour {
        Behaviour::CloseOdd if index % 2 == 1 => {}
        // Holds the connection, unread, for longer than any run may last.
        Behaviour::Deaf => thread::sleep(bench_common::RUN_LIMIT),
        Behaviour::Hold | Behaviour::CloseOdd => {
            // Blocks until the client closes (read returns 0) or resets.
            let _ = stream.read(&mut buf);
        }
        Behaviour::CloseAfterFirstRead => {
            let _ = stream.read(&mut buf);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Behaviour::Sink => while let Ok(1..) = stream.read(&mut buf) {},
        Behaviour::Echo | Behaviour::CorruptAt(_) => {
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                if let Behaviour::CorruptAt(at) = behaviour
                    && (offset..offset + n as u64).contains(&at)
                {
                    buf[(at - offset) as usize] ^= 0x20;
                }
                offset += n as u64;
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

const KEYS: [&str; 14] = [
    "mode",
    "conns",
    "size",
    "pipeline",
    "duration_s",
    "msgs",
    "msgs_per_sec",
    "bytes_per_sec",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "errors",
];

/// `--json` prints exactly one object with every promised key; an honest
/// echo server gives messages, latencies and no errors.
#[test]
fn echo_json_has_every_key_and_counts_messages() {
    let addr = server(Behaviour::Echo);
    let output = bench(&[
        &addr,
        "--conns",
        "4",
        "--duration",
        "1s",
        "--pipeline",
        "4",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    for key in KEYS {
        assert!(report.get(key).is_some(), "missing key {key}: {report}");
    }
    assert_eq!(report["mode"], "echo");
    assert_eq!(report["conns"], 4);
    assert_eq!(report["size"], 64);
    assert_eq!(report["pipeline"], 4);
    assert_eq!(report["errors"], 0);
    assert!(report["msgs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["p50_us"].as_u64().unwrap() <= report["p99_us"].as_u64().unwrap());
    assert!(report["p99_us"].as_u64().unwrap() <= report["max_us"].as_u64().unwrap());
}

/// Without `--json`, stdout holds the readable table.
#[test]
fn echo_table_names_every_measure() {
    let addr = server(Behaviour::Echo);
    let output = bench(&[&addr, "--duration", "300ms", "--size", "1KiB"]);
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    for measure in [
        "msgs/s",
        "MB/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "errors",
    ] {
        assert!(table.contains(measure), "no {measure} in {table}");
    }
}

/// One flipped byte anywhere in the echo fails the run and names the byte.
#[test]
fn corrupted_echo_byte_fails_the_run() {
    let addr = server(Behaviour::CorruptAt(1000));
    let output = bench(&[&addr, "--duration", "1s", "--json"]);
    assert!(!output.status.success());
    let line = error_line(&output);
    assert!(line.contains("echoed byte 1000"), "{line}");
    assert!(output.stdout.is_empty(), "no report after a failure");
}

/// A server that hangs up mid-run is an error, not a short run.
#[test]
fn early_close_fails_the_run() {
    let addr = server(Behaviour::CloseAfterFirstRead);
    let output = bench(&[&addr, "--duration", "1s"]);
    assert!(!output.status.success());
    let line = error_line(&output);
    assert!(line.contains("closed by the server"), "{line}");
}

/// Nobody listening: a non-zero exit and one line naming the address.
#[test]
fn refused_address_is_one_error_line() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let output = bench(&[&addr, "--duration", "1s", "--conns", "3"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot connect to tcp://{addr}")),
        "{stderr}"
    );
}

/// Bad flags are refused before any connection: exit 2 and one line
/// naming the flag.
#[test]
fn bad_flags_name_themselves() {
    let addr = server(Behaviour::Echo);
    for (args, culprit) in [
        (
            vec![addr.as_str(), "--duration", "1s", "--mode", "bogus"],
            "--mode",
        ),
        (vec![addr.as_str(), "--duration", "soon"], "--duration"),
        (
            vec![addr.as_str(), "--duration", "1s", "--size", "0"],
            "--size",
        ),
        (vec!["nowhere", "--duration", "1s"], "nowhere"),
        (
            vec!["udp://127.0.0.1:9", "--duration", "1s"],
            "stream sockets",
        ),
        (vec![addr.as_str(), "--conns", "0"], "--conns"),
        (vec![addr.as_str(), "--rate", "-5"], "--rate"),
        // A rate that would print as 0 and outlast any run.
        (vec![addr.as_str(), "--rate", "1e-300"], "--rate"),
        (
            vec![addr.as_str(), "--rate", "100", "--mode", "ingest"],
            "--rate",
        ),
        (vec![addr.as_str(), "--threads", "x"], "--threads"),
        // TLS flags on a plain address would be ignored: refused.
        (
            vec![addr.as_str(), "--tls-ca", "/nonexistent/ca.pem"],
            "--tls-ca /nonexistent/ca.pem: the --tls-* flags need a tls:// address",
        ),
        (vec![addr.as_str(), "--tls-insecure"], "--tls-insecure"),
    ] {
        let output = bench(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let line = error_line(&output);
        assert!(line.contains(culprit), "{args:?}: {line}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

/// Latency files that cannot be made are refused before the run (exit 2,
/// one line naming the file): a `--plot` named for another format than the
/// SVG drawn, a plot or `.hgrm` of a mode that times nothing, an earlier
/// run's `--plot-with` file that is missing or is no `.hgrm`, a file in a
/// directory that does not exist or a directory for a file. No
/// connection is made and no file written.
#[test]
fn latency_files_that_cannot_be_made_are_refused_before_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (png, svg, hgrm) = (file("out.png"), file("out.svg"), file("out.hgrm"));
    let missing = format!("ref={}", file("missing.hgrm"));
    let not_hgrm = file("not.hgrm");
    std::fs::write(&not_hgrm, "Value Percentile\n\nnothing here\n").unwrap();
    let not_hgrm = format!("ref={not_hgrm}");
    let nowhere = file("missing/out.hgrm");
    let directory = dir.path().to_str().unwrap().to_string();
    for (args, culprit) in [
        (vec!["--plot", &png], png.as_str()),
        (vec!["--plot", &svg, "--mode", "ingest"], svg.as_str()),
        (vec!["--plot", &svg, "--mode", "idle"], svg.as_str()),
        (vec!["--hgrm", &hgrm, "--mode", "ingest"], hgrm.as_str()),
        (vec!["--plot", &svg, "--plot-with", &missing], &missing),
        (vec!["--plot", &svg, "--plot-with", &not_hgrm], &not_hgrm),
        (vec!["--hgrm", &nowhere], nowhere.as_str()),
        (vec!["--plot", &directory], directory.as_str()),
    ] {
        let mut all = vec![addr.as_str(), "--duration", "1s"];
        all.extend(&args);
        let output = bench(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let line = error_line(&output);
        assert!(line.contains(culprit), "{args:?}: {line}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: no report");
        // A connection made would wait in the listener's backlog.
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{args:?}: bench connected before refusing: {accepted:?}"
        );
        for made in [&png, &svg, &hgrm] {
            assert!(!std::path::Path::new(made).exists(), "{args:?}: {made}");
        }
    }
}

/// Ingest writes lines without waiting for replies and counts them.
#[test]
fn ingest_counts_lines_written() {
    let addr = server(Behaviour::Sink);
    let output = bench(&[
        &addr,
        "--mode",
        "ingest",
        "--conns",
        "2",
        "--duration",
        "1s",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["mode"], "ingest");
    assert_eq!(report["errors"], 0);
    assert!(report["msgs"].as_u64().unwrap() > 0, "{report}");
    let bytes = report["bytes_per_sec"].as_f64().unwrap();
    let msgs = report["msgs_per_sec"].as_f64().unwrap();
    assert!((bytes - msgs * 64.0).abs() < 1.0, "{report}");
}

/// Ingest against a server that accepts and never reads: once the socket
/// buffers are full nothing more goes out, and the run fails as echo mode
/// fails against a server that never answers (exit 1, one line, no
/// report), instead of reporting the buffered lines as a rate.
#[test]
fn ingest_fails_when_the_server_takes_nothing() {
    let addr = server(Behaviour::Deaf);
    let output = bench(&[
        &addr,
        "--mode",
        "ingest",
        "--conns",
        "2",
        "--duration",
        "2s",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = error_line(&output);
    assert!(
        line.contains("no progress within 1s: is the server reading?"),
        "{line}"
    );
    assert!(output.stdout.is_empty(), "no report of buffered lines");
}

/// Idle opens every connection and still holds them all at the end.
#[test]
fn idle_holds_every_connection() {
    let addr = server(Behaviour::Hold);
    let output = bench(&[
        &addr,
        "--mode",
        "idle",
        "--conns",
        "50",
        "--duration",
        "500ms",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["mode"], "idle");
    assert_eq!(report["established"], 50);
    assert_eq!(report["held"], 50);
    assert_eq!(report["errors"], 0);
}

/// Connections the server closes are reported, and the run fails after the report.
#[test]
fn idle_reports_connections_the_server_closed() {
    let addr = server(Behaviour::CloseOdd);
    let output = bench(&[
        &addr,
        "--mode",
        "idle",
        "--conns",
        "10",
        "--duration",
        "500ms",
        "--json",
    ]);
    assert!(!output.status.success());
    let report = json(&output);
    assert_eq!(report["established"], 10);
    assert_eq!(report["held"], 5);
    assert_eq!(report["errors"], 5);
    let line = error_line(&output);
    assert!(line.contains("5 of 10 connections held"), "{line}");
}

/// `--hgrm` writes HdrHistogram's percentile text: header, rows of four
/// numbers with percentiles rising to 1, a last row of three, the footer.
#[test]
fn hgrm_file_is_the_standard_percentile_format() {
    let addr = server(Behaviour::Echo);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtt.hgrm");
    let output = bench(&[
        &addr,
        "--duration",
        "500ms",
        "--hgrm",
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("       Value     Percentile TotalCount 1/(1-Percentile)")
    );
    assert_eq!(lines.next(), Some(""));
    let rows: Vec<Vec<f64>> = lines
        .clone()
        .take_while(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 2, "{text}");
    let (last, body) = rows.split_last().unwrap();
    assert!(body.iter().all(|r| r.len() == 4), "{text}");
    assert_eq!(last.len(), 3);
    assert_eq!(last[1], 1.0);
    assert!(
        rows.windows(2)
            .all(|w| w[0][1] <= w[1][1] && w[0][0] <= w[1][0])
    );
    let footer: Vec<&str> = lines.filter(|l| l.starts_with('#')).collect();
    assert_eq!(footer.len(), 3, "{text}");
    assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains(", StdDeviation   = "));
    assert!(footer[1].starts_with("#[Max     = ") && footer[1].contains(", Total count    = "));
    assert!(footer[2].starts_with("#[Buckets = ") && footer[2].contains(", SubBuckets     = "));
}

/// Counts and sizes beyond what can be allocated are refused up front with
/// exit 2 and one line naming the flag, never a panic or an abort.
#[test]
fn impossible_sizes_are_usage_errors_not_crashes() {
    let addr = server(Behaviour::Echo);
    for (args, culprit) in [
        (
            vec![addr.as_str(), "--conns", "18446744073709551615"],
            "--conns",
        ),
        (vec![addr.as_str(), "--conns", "1000000000"], "--conns"),
        (
            vec![addr.as_str(), "--pipeline", "1000000000"],
            "--pipeline",
        ),
        (
            vec![
                addr.as_str(),
                "--size",
                "16MiB",
                "--pipeline",
                "1000000",
                "--conns",
                "1000",
            ],
            "--pipeline",
        ),
        (vec![addr.as_str(), "--size", "1GiB"], "--size"),
    ] {
        let output = bench(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let line = error_line(&output);
        assert!(line.contains(culprit), "{args:?}: {line}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// A server that reads but never answers (`serve` without `--echo`): the
/// run fails, says what is likely wrong, and prints no 0 µs percentiles.
#[test]
fn silent_server_fails_with_a_hint_about_echo() {
    let server = common::ServerProcess::start(&["--format", "none"]);
    let output = bench(&[&server.addr, "--duration", "1s", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = error_line(&output);
    assert!(
        line.contains("no reply within 1s: is the server running with --echo?"),
        "{line}"
    );
    assert!(output.stdout.is_empty(), "no report without samples");
}

/// Ingest has no latency samples: its percentiles are null, not 0.
#[test]
fn percentiles_without_samples_are_null() {
    let addr = server(Behaviour::Sink);
    let output = bench(&[&addr, "--mode", "ingest", "--duration", "1s", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    for key in ["p50_us", "p99_us", "max_us", "uncorrected_p99_us"] {
        assert!(report[key].is_null(), "{key}: {report}");
    }
}

/// Without `--duration` a run lasts 10 s, as wrk's does.
#[test]
fn duration_defaults_to_ten_seconds() {
    let output = bench(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    let after = help.split("--duration <DUR>").nth(1).unwrap_or_default();
    let line = after.split("\n      --").next().unwrap_or_default();
    assert!(line.contains("[default: 10s]"), "{help}");
}

/// A report that cannot be written (stdout on a full disk) fails the run,
/// exit 1 with one line; a reader that stops early (`| head`) does not.
#[test]
fn a_report_that_cannot_be_written_fails_the_run() {
    use std::process::{Command, Stdio};
    let addr = server(Behaviour::Echo);
    let run = |stdout: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_selectd"))
            .args(["bench", &addr, "--duration", "300ms", "--json"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .expect("run selectd bench")
    };
    let full = run(std::fs::File::create("/dev/full")
        .expect("/dev/full")
        .into());
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot write standard output: No space left on device"),
        "{stderr}"
    );
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let closed = run(writer.into());
    assert_eq!(
        closed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
}
