//! `--metrics`: the HTTP side of the first event loop. `/healthz` and
//! `/metrics` answer as a scraper and a load balancer expect; everything
//! else is refused with the status HTTP has for it; bad input (slowloris,
//! a flood of requests, a 1 MiB header, binary garbage) is bounded in time
//! and memory while the line clients keep being served.

mod common;
mod metrics_support;

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{PATIENCE, wait_until};
use metrics_support::{
    LineProbe, MetricsServer, closed_by_server, hold_back, read_head, read_response,
};

const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// ---- what is served -------------------------------------------------------

/// `GET /healthz` is `200 ok` while the server serves.
#[test]
fn healthz_is_ok_while_serving() {
    let metrics = MetricsServer::start(&[]);
    let response = metrics.get("/healthz");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok\n");
}

/// `/metrics` is the Prometheus text format 0.0.4 by default, and
/// OpenMetrics (ending in `# EOF`) when `Accept` prefers it, as Prometheus'
/// own scrapes do.
#[test]
fn metrics_are_text_0_0_4_unless_openmetrics_is_preferred() {
    let metrics = MetricsServer::start(&[]);
    let plain = metrics.get("/metrics");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some(TEXT_0_0_4));
    let text = plain.text();
    assert!(text.contains("# TYPE selectd_connections_accepted_total counter\n"));
    assert!(!text.contains("# EOF"));

    let prometheus_accept = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,\
        text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let open = metrics.request(&format!(
        "GET /metrics HTTP/1.1\r\nHost: selectd\r\nAccept: {prometheus_accept}\r\n\r\n"
    ));
    assert_eq!(open.status, 200);
    assert_eq!(open.header("content-type"), Some(OPENMETRICS));
    let text = open.text();
    assert!(text.contains("# TYPE selectd_connections_accepted counter\n"));
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// The counters follow the line clients, and the metrics port's own HTTP
/// clients are not among them: never counted, never printed.
#[test]
fn counters_count_line_clients_and_not_scrapes() {
    let metrics = MetricsServer::start(&["--idle-timeout", "60s"]);
    let mut clients: Vec<_> = (0..3).map(|_| metrics.server.connect()).collect();
    for (index, client) in clients.iter_mut().enumerate() {
        for line in 0..=index {
            writeln!(client, "client {index} line {line}").unwrap();
        }
    }
    metrics.wait_sample("selectd_lines_total", 6.0);
    metrics.wait_sample("selectd_connections_open{reactor=\"1\"}", 3.0);
    for _ in 0..20 {
        assert_eq!(metrics.get("/healthz").status, 200);
    }
    let text = metrics.get("/metrics").text();
    let value = |series| metrics_support::sample(&text, series);
    assert_eq!(value("selectd_connections_accepted_total"), Some(3.0));
    assert_eq!(value("selectd_lines_total"), Some(6.0));
    assert!(value("selectd_http_requests_total{code=\"200\"}").is_some_and(|n| n >= 20.0));
    drop(clients);
    metrics.wait_sample("selectd_connections_closed_total{reason=\"eof\"}", 3.0);
    let stdout = metrics.server.stdout();
    assert!(!stdout.contains("GET"), "HTTP printed as lines: {stdout}");
}

/// A trusted proxy's connection that does not open with a PROXY header is
/// counted as a header failure (and as a close for that reason).
#[test]
fn proxy_header_failures_are_counted() {
    let metrics = MetricsServer::start(&["--proxy-protocol", "127.0.0.1/32"]);
    let mut client = metrics.server.connect();
    client.write_all(b"no header here\n").unwrap();
    assert!(closed_by_server(&mut client));
    metrics.wait_sample("selectd_proxy_header_failures_total", 1.0);
    metrics.wait_sample(
        "selectd_connections_closed_total{reason=\"proxy-header\"}",
        1.0,
    );
}

/// An idle server sleeps between scrapes: a scrape is a few turns of the
/// first loop (accept, read and answer, the close), and measuring those
/// turns never wakes the loop again by itself.
#[test]
fn an_idle_loop_sleeps_between_scrapes() {
    let metrics = MetricsServer::start(&["--reactors", "2"]);
    let wakeups = || {
        metrics
            .sample("selectd_loop_wakeups_total{reactor=\"1\"}")
            .unwrap()
    };
    let before = wakeups();
    // Time is what this test is about: a loop that woke itself would
    // count hundreds of wake-ups in this half second.
    thread::sleep(Duration::from_millis(500));
    let after = wakeups();
    assert!(
        after - before <= 10.0,
        "{} wake-ups for one scrape",
        after - before
    );
}

/// One keep-alive connection serves request after request; `HEAD` gets the
/// headers alone; `Connection: close` ends it after the answer.
#[test]
fn keep_alive_serves_requests_in_turn() {
    let metrics = MetricsServer::start(&[]);
    let mut stream = metrics.connect();
    for _ in 0..3 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: selectd\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream).expect("a response");
        assert_eq!((response.status, response.text().as_str()), (200, "ok\n"));
    }
    stream
        .write_all(b"HEAD /metrics HTTP/1.1\r\nHost: selectd\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream).expect("a HEAD response");
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some_and(|n| n != "0"));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = read_response(&mut stream).expect("the last response");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(closed_by_server(&mut stream));
}

/// HTTP/1.0 (as HAProxy's `option httpchk` sends) is answered, then closed.
#[test]
fn http10_is_answered_then_closed() {
    let metrics = MetricsServer::start(&[]);
    let mut stream = metrics.connect();
    stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut stream).expect("a response");
    assert_eq!(response.status, 200);
    assert!(closed_by_server(&mut stream));
}

// ---- what is refused ------------------------------------------------------

/// Unknown paths are 404; other methods on known paths 405 with `Allow`,
/// and a request with a body is answered and the connection closed.
#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let metrics = MetricsServer::start(&[]);
    for path in ["/", "/metrics/", "/healthz/x", "/favicon.ico"] {
        assert_eq!(metrics.get(path).status, 404, "{path}");
    }
    let mut stream = metrics.connect();
    stream
        .write_all(b"DELETE /healthz HTTP/1.1\r\nHost: selectd\r\n\r\n")
        .unwrap();
    let refused = read_response(&mut stream).expect("a response");
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    // Still open: a refused method is no reason to close.
    stream
        .write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd")
        .unwrap();
    let post = read_response(&mut stream).expect("a response");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("connection"), Some("close"));
    assert!(closed_by_server(&mut stream));
}

/// Bytes that are not HTTP get 400 and the connection is closed; the line
/// clients and the next scrape are served as before.
#[test]
fn binary_garbage_is_400_and_closed() {
    let metrics = MetricsServer::start(&["--echo", "--idle-timeout", "60s"]);
    let mut probe = LineProbe::connect(&metrics.server);
    let mut seed: u32 = 0x9e37_79b9;
    for _ in 0..20 {
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed >> 24) as u8
            })
            .collect();
        let mut stream = metrics.connect();
        // The server may answer and close before it has read it all.
        let _ = stream.write_all(&garbage);
        let response = read_response(&mut stream).expect("a response");
        assert_eq!(response.status, 400);
        assert!(closed_by_server(&mut stream));
        probe.round_trip();
    }
    assert_eq!(metrics.get("/healthz").status, 200);
    metrics.wait_sample("selectd_http_requests_total{code=\"400\"}", 20.0);
    metrics.wait_sample("selectd_connections_accepted_total", 1.0);
}

/// A request head over 8 KiB (here a 1 MiB header) is answered 431 and
/// closed after reading at most a bounded amount: memory does not follow
/// what the client sends, and line clients are served meanwhile.
#[test]
fn a_1_mib_header_is_431_and_memory_stays_bounded() {
    let metrics = MetricsServer::start(&["--echo", "--idle-timeout", "60s"]);
    let mut probe = LineProbe::connect(&metrics.server);
    probe.round_trip();
    let before = metrics.server.rss_kib();
    for _ in 0..10 {
        let mut stream = metrics.connect();
        let mut writer = stream.try_clone().unwrap();
        let sending = thread::spawn(move || {
            let mut request = b"GET /metrics HTTP/1.1\r\nX-Huge: ".to_vec();
            request.resize(1024 * 1024, b'a');
            // The server stops reading after 8 KiB: this write may fail.
            let _ = writer.write_all(&request);
        });
        let response = read_response(&mut stream).expect("a response");
        assert_eq!(response.status, 431);
        assert!(closed_by_server(&mut stream));
        sending.join().unwrap();
        probe.round_trip();
    }
    let after = metrics.server.rss_kib();
    eprintln!("RSS {before} KiB before, {after} KiB after ten 1 MiB headers");
    assert!(
        after < before + 4 * 1024,
        "memory grew from {before} to {after} KiB"
    );
    metrics.wait_sample("selectd_http_requests_total{code=\"431\"}", 10.0);
}

/// Slowloris: connections that send their request a byte at a time, or
/// nothing at all, are closed once 5 s have passed since they began; the
/// line clients and other scrapes are served all along.
#[test]
fn a_request_not_finished_in_5_s_is_closed() {
    let metrics = MetricsServer::start(&["--echo", "--idle-timeout", "60s"]);
    let mut probe = LineProbe::connect(&metrics.server);
    let started = Instant::now();
    let silent: Vec<_> = (0..10).map(|_| metrics.connect()).collect();
    let mut dripping: Vec<_> = (0..10).map(|_| metrics.connect()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let drippers: Vec<_> = dripping
        .iter()
        .map(|stream| {
            let mut writer = stream.try_clone().unwrap();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for &byte in b"GET /metrics HTTP/1.1\r\nX-Slow: "
                    .iter()
                    .chain([b'a'; 64].iter())
                {
                    if stop.load(Ordering::Relaxed) || writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    // Meanwhile everyone else is served.
    for _ in 0..10 {
        probe.round_trip();
        assert_eq!(metrics.get("/healthz").status, 200);
    }
    for mut stream in silent.into_iter().chain(dripping.drain(..)) {
        assert!(
            closed_by_server(&mut stream),
            "still open after {PATIENCE:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_secs(5),
            "closed after {:?}, before 5 s",
            started.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for dripper in drippers {
        dripper.join().unwrap();
    }
    probe.round_trip();
    metrics.wait_sample("selectd_http_connections_open", 1.0);
}

/// A metrics connection that says nothing is closed 5 s after it opened,
/// even when nothing else happens: its deadline alone wakes the loop.
#[test]
fn a_silent_connection_alone_is_closed_after_5_s() {
    let metrics = MetricsServer::start(&[]);
    let started = Instant::now();
    let mut silent = metrics.connect();
    assert!(
        closed_by_server(&mut silent),
        "still open after {PATIENCE:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
}

/// 10,000 requests pipelined on one keep-alive connection are all answered,
/// in order, with memory bounded (one request head and one answer at a
/// time) and the line clients served meanwhile.
#[test]
fn ten_thousand_requests_on_one_connection() {
    const REQUESTS: usize = 10_000;
    let metrics = MetricsServer::start(&["--echo", "--idle-timeout", "60s"]);
    let mut probe = LineProbe::connect(&metrics.server);
    probe.round_trip();
    let before = metrics.server.rss_kib();
    let stream = metrics.connect();
    let mut writer = stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let request = b"GET /healthz HTTP/1.1\r\nHost: selectd\r\n\r\n";
        for _ in 0..REQUESTS {
            writer.write_all(request).expect("send a request");
        }
    });
    let mut reader = std::io::BufReader::new(stream);
    for answered in 0..REQUESTS {
        let response =
            read_response(&mut reader).unwrap_or_else(|| panic!("closed after {answered} answers"));
        assert_eq!(response.status, 200);
        if answered % 1000 == 0 {
            probe.round_trip();
        }
    }
    sending.join().unwrap();
    let after = metrics.server.rss_kib();
    eprintln!("RSS {before} KiB before, {after} KiB after {REQUESTS} requests");
    assert!(
        after < before + 4 * 1024,
        "memory grew from {before} to {after} KiB"
    );
    metrics.wait_sample(
        "selectd_http_requests_total{code=\"200\"}",
        REQUESTS as f64 + 1.0,
    );
}

/// A client that sends requests but never reads the answers gets no more
/// answered than the socket buffers hold: the server stops reading from it,
/// and closes it 5 s after the answer it could not deliver.
#[test]
fn a_client_that_never_reads_is_bounded_and_closed() {
    let metrics = MetricsServer::start(&["--echo", "--idle-timeout", "60s"]);
    let mut probe = LineProbe::connect(&metrics.server);
    let before = metrics.server.rss_kib();
    let stream = metrics.connect();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let sending = thread::spawn(move || {
        let request = b"GET /metrics HTTP/1.1\r\nHost: selectd\r\n\r\n";
        // Until the kernel's buffers fill up behind a server that stopped
        // reading (the write then times out) or the server closes.
        for _ in 0..1_000_000 {
            if writer.write_all(request).is_err() {
                return;
            }
        }
        panic!("a million requests were taken in without being answered");
    });
    sending.join().unwrap();
    probe.round_trip();
    let after = metrics.server.rss_kib();
    assert!(
        after < before + 4 * 1024,
        "memory grew from {before} to {after} KiB"
    );
    let mut stream = stream;
    stream.shutdown(Shutdown::Write).ok();
    assert!(closed_by_server(&mut stream));
}

/// At most 64 HTTP clients at once: a newcomer replaces the client idle
/// longest, and when every client is busy it gets 503 and is closed.
#[test]
fn too_many_clients_make_room_or_get_503() {
    let metrics = MetricsServer::start(&[]);
    // 64 idle keep-alive clients.
    let mut idle: Vec<_> = (0..64)
        .map(|_| {
            let mut stream = metrics.connect();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: selectd\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut stream).unwrap().status, 200);
            stream
        })
        .collect();
    // A newcomer is served: the oldest idle client made room.
    assert_eq!(metrics.get("/healthz").status, 200);
    assert!(closed_by_server(&mut idle[0]));
    // 64 busy clients (a request begun), replacing the idle ones.
    let busy: Vec<_> = (0..64)
        .map(|_| {
            let mut stream = metrics.connect();
            stream.write_all(b"GET /metr").unwrap();
            stream
        })
        .collect();
    // Accepted in order: by the time this one is, those 64 took the idle
    // clients' places, and none is idle.
    let refused = metrics.get("/healthz");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.text(), "too many clients\n");
    drop(busy);
    drop(idle);
}

// ---- stopping -------------------------------------------------------------

/// From the moment a stop begins, `/healthz` answers `503 stopping` while
/// the server drains its line clients (here one held back for not reading
/// its echoes, which keeps the stop in its grace period).
#[test]
fn healthz_is_503_once_stopping() {
    let metrics = MetricsServer::start_with(
        &[
            "--echo",
            "--grace",
            "60s",
            "--idle-timeout",
            "off",
            "--high-watermark",
            "64KiB",
            "--low-watermark",
            "16KiB",
        ],
        |command| {
            command.env("RUST_LOG", "warn,selectd::serve::connection=debug");
        },
    );
    let holder = hold_back(&metrics.server);
    assert_eq!(metrics.get("/healthz").status, 200);
    metrics.server.signal(libc::SIGTERM);
    wait_until("/healthz to say stopping", || {
        metrics.get("/healthz").status == 503
    });
    let stopping = metrics.get("/healthz");
    assert_eq!(stopping.text(), "stopping\n");
    metrics.wait_sample("selectd_stopping", 1.0);
    drop(holder);
    let mut server = metrics.server;
    assert!(server.wait_exit().success());
}

// ---- the flag -------------------------------------------------------------

/// `--metrics` takes a TCP address: a Unix or UDP one is a usage error that
/// names the flag; a port in use is an error that names the address.
#[test]
fn the_metrics_flag_wants_a_free_tcp_address() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run selectd")
    };
    let unix = run(&["--metrics", "unix:/tmp/selectd-metrics.sock"]);
    assert_eq!(unix.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&unix.stderr),
        "error: --metrics takes a TCP address, HOST:PORT (got 'unix:/tmp/selectd-metrics.sock')\n"
    );
    // A URL is told what the flag takes, not the forms --listen takes.
    let url = run(&["--metrics", "http://127.0.0.1:0"]);
    assert_eq!(url.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&url.stderr),
        "error: --metrics: invalid address 'http://127.0.0.1:0': --metrics takes a TCP address, HOST:PORT\n"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = run(&["--metrics", &format!("127.0.0.1:{port}")]);
    assert_eq!(in_use.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&in_use.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot listen on http://127.0.0.1:{port} (--metrics): "
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

// ---- the guide ------------------------------------------------------------

/// `docs/metrics.md` links to the code it explains, with the item's name as
/// the link's text: each link points at a file that exists, and every part
/// of a code name (`MetricsServer::bind`) appears in that file (a
/// lower-case last part as `fn NAME`).
#[test]
fn the_metrics_guide_names_code_that_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let has_word = |text: &str, word: &str| {
        text.match_indices(word).any(|(at, _)| {
            !text[..at].chars().next_back().is_some_and(is_ident)
                && !text[at + word.len()..].chars().next().is_some_and(is_ident)
        })
    };
    let mut checked = 0;
    let mut rest = guide.as_str();
    while let Some(at) = rest.find("](") {
        let (before, after) = (&rest[..at], &rest[at + 2..]);
        rest = after;
        let (Some(open), Some(close)) = (before.rfind('['), after.find(')')) else {
            continue;
        };
        let target = after[..close].split('#').next().unwrap_or_default();
        if target.is_empty() || target.contains("://") {
            continue;
        }
        let path = root.join("docs").join(target);
        assert!(path.exists(), "docs/metrics.md links to missing {target}");
        let name = before[open + 1..].trim_matches('`');
        if name.contains(['/', '.', ' ']) || !path.is_file() {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let parts: Vec<&str> = name.split("::").collect();
        let last = parts[parts.len() - 1];
        assert!(
            parts.iter().all(|part| has_word(&source, part))
                && (!last.starts_with(char::is_lowercase)
                    || has_word(&source, &format!("fn {last}"))),
            "docs/metrics.md names `{name}`, which is not in {target}"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} code links checked");
}
