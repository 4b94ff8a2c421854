//! `selectd send` as a black box: the built binary against real servers on
//! loopback, raw bytes in and out, exit codes and one-line errors checked.

#[path = "common/client_support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use support::{Input, Outcome, send};

// ---- talking to servers --------------------------------------------------

/// `--http PATH` sends a real GET to a real HTTP server (Python's) and prints
/// the whole response: status line, headers and the file's bytes.
#[test]
fn http_get_prints_status_and_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let body = "hello from the notes\nsecond line\n";
    std::fs::write(root.path().join("page.txt"), body).expect("write page");
    let server = support::HttpServer::start(root.path());
    if !support::available("python3", server.is_some()) {
        return;
    }
    let Some(server) = server else { return };
    let out = send(&[&server.addr, "--http", "/page.txt"], Input::Null);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.0 200 "), "{text}");
    assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// A missing page is still a successful conversation: the 404 is printed.
#[test]
fn http_missing_page_prints_404_and_succeeds() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = support::HttpServer::start(root.path());
    if !support::available("python3", server.is_some()) {
        return;
    }
    let Some(server) = server else { return };
    let out = send(&[&server.addr, "--http", "/nope"], Input::Null);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with(b"HTTP/1.0 404 "), "{out:?}");
}

/// Lines on standard input go through an echo server and come back unchanged.
#[test]
fn stdin_lines_come_back_unchanged() {
    let addr = support::tcp_echo_server();
    let lines = b"hello\r\nworld\nno newline at the end".to_vec();
    let out = send(&[&addr], Input::Bytes(lines.clone()));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, lines);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// Empty input: the write side is shut at once, and the echo server's EOF
/// ends the client with nothing printed.
#[test]
fn empty_input_ends_cleanly() {
    let addr = support::tcp_echo_server();
    let out = send(&[&addr], Input::Null);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
}

/// 48 MiB through an echo server that stops reading while its output is
/// unread: only a client that reads while it writes gets to the end.
#[test]
fn tens_of_mib_through_echo_do_not_deadlock() {
    let addr = support::tcp_echo_server();
    let data = support::numbered_lines(48 << 20);
    let out = send(&[&addr], Input::Bytes(data.clone()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "echoed bytes differ");
}

/// `--data` understands escapes and sends exactly the bytes they name.
#[test]
fn data_escapes_are_sent_as_bytes() {
    let addr = support::tcp_echo_server();
    let out = send(&[&addr, "--data", r"stop\r\nA\tB\x21\\n"], Input::Null);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"stop\r\nA\tB!\\n");
}

/// A Unix socket peer works like a TCP one.
#[test]
fn unix_socket_peer_echoes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("echo.sock");
    support::unix_echo_server(&path);
    let addr = format!("unix:{}", path.display());
    let out = send(&[&addr], Input::Bytes(b"over a unix socket\n".to_vec()));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"over a unix socket\n");
}

/// A bracketed IPv6 address connects over `::1` (skipped without IPv6).
#[test]
fn ipv6_loopback_echoes() {
    let echo = support::tcp_echo_server_on("[::1]:0");
    if !support::available("IPv6 loopback", echo.is_ok()) {
        return;
    }
    let Ok(addr) = echo else { return };
    let out = send(&[&addr, "--data", "six"], Input::Null);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"six");
}

/// By default the write side is shut down after the input (the seed's
/// `shutdown(1)`); `--no-shutdown` leaves it open. The server reports which
/// it saw, then closes, which ends the client either way.
#[test]
fn no_shutdown_leaves_write_side_open() {
    let addr = support::tcp_server(|mut stream| {
        let mut got = Vec::new();
        let mut buf = [0; 64];
        while !got.ends_with(b"ping\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("set_read_timeout");
        let answer: &[u8] = match stream.read(&mut buf) {
            Ok(0) => b"shutdown",
            Ok(_) => b"more data",
            Err(_) => b"open",
        };
        let _ = stream.write_all(answer);
    });
    let closed = send(&[&addr, "--data", r"ping\n"], Input::Null);
    assert_eq!(closed.code, Some(0), "{closed:?}");
    assert_eq!(closed.stdout, b"shutdown");
    let open = send(&[&addr, "--data", r"ping\n", "--no-shutdown"], Input::Null);
    assert_eq!(open.code, Some(0), "{open:?}");
    assert_eq!(open.stdout, b"open");
}

/// A server that talks without pause until it reads `stop` still gets our
/// input: reading never starves writing.
#[test]
fn nonstop_talker_still_hears_us() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let heard = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&heard);
    let addr = support::tcp_server(move |mut stream| {
        let mut reader = stream.try_clone().expect("clone");
        let seen = Arc::clone(&flag);
        let listener = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0; 64];
            while !got.ends_with(b"stop\n") {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            seen.store(true, Ordering::SeqCst);
        });
        let chunk = vec![b'.'; 64 * 1024];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = listener.join();
    });
    let out = send(&[&addr, "--data", r"stop\n"], Input::Null);
    assert!(heard.load(Ordering::SeqCst), "server never read stop");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.iter().all(|&b| b == b'.'));
}

/// When whoever reads our output goes away (`| head -c 1`), the client stops
/// quietly with success, as `cat` under a shell would be expected to.
#[test]
fn closed_stdout_is_not_an_error() {
    let addr = support::tcp_server(|mut stream| {
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..256 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let mut child = support::selectd(&["send", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn selectd");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut first = [0; 1];
    stdout.read_exact(&mut first).expect("one byte");
    drop(stdout);
    let code = support::wait_bounded(&mut child, support::RUN_LIMIT);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

// ---- against the real `selectd serve --echo` -----------------------------

/// Lines on standard input go through `selectd serve --echo` and come back
/// unchanged, CRLF and a last line without newline included.
#[test]
fn stdin_lines_come_back_from_selectd_echo() {
    let server = support::EchoServe::start("127.0.0.1:0");
    let lines = b"hello\r\nworld\n\nlast".to_vec();
    let out = send(&[&server.addr], Input::Bytes(lines.clone()));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, lines);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// 64 MiB through `selectd serve --echo`, which stops reading from a client
/// while its replies are unread: no deadlock, every byte back in order.
#[test]
fn tens_of_mib_through_selectd_echo_do_not_deadlock() {
    let server = support::EchoServe::start("127.0.0.1:0");
    let data = support::numbered_lines(64 << 20);
    let out = send(&[&server.addr], Input::Bytes(data.clone()));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "echoed bytes differ");
}

/// The same conversation over a Unix socket served by selectd.
#[test]
fn unix_socket_through_selectd_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("unix:{}", dir.path().join("selectd.sock").display());
    let server = support::EchoServe::start(&listen);
    let out = send(&[&server.addr, "--data", r"one\ntwo\n"], Input::Null);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
}

// ---- errors: the notes' four exceptions ---------------------------------

/// `error` (refused): nothing listens on the port; exit code 4.
#[test]
fn refused_connection_exits_4() {
    let addr = support::closed_port();
    let out = send(&[&addr, "--data", "x"], Input::Null);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert_eq!(out.stderr, format!("error: connection to {addr} refused\n"));
    assert!(out.stdout.is_empty());
}

/// A time-out too long to add to the clock is a usage error naming the
/// flag, not a panic.
#[test]
fn huge_timeout_is_no_panic() {
    let addr = support::closed_port();
    let out = send(
        &[&addr, "--data", "x", "--timeout", "9999999999999999999s"],
        Input::Null,
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.starts_with("error: --timeout: "),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// `gaierror`: a `.invalid` name never resolves; exit code 3.
#[test]
fn unresolvable_host_exits_3() {
    let out = send(&["nope.invalid:80", "--data", "x"], Input::Null);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: cannot resolve nope.invalid:80: "),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// `timeout`: exit code 5, the message naming the address, and not before
/// the 500 ms time-out has passed.
fn assert_timed_out_after_500ms(out: &Outcome, addr: &str) {
    assert_eq!(out.code, Some(5), "{out:?}");
    assert_eq!(
        out.stderr,
        format!("error: timed out after 500ms waiting for {addr}\n")
    );
    assert!(
        out.elapsed >= Duration::from_millis(500),
        "{:?}",
        out.elapsed
    );
}

/// `timeout`: a listener that never accepts or answers ends the client
/// after `--timeout`, not before; exit code 5.
#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr").to_string();
    let out = send(
        &[&addr, "--data", "hello", "--timeout", "500ms"],
        Input::Null,
    );
    assert_timed_out_after_500ms(&out, &addr);
    drop(listener);
}

/// The progress time-out also ends a client whose input is still open but
/// idle while the server says nothing: the socket made no progress.
#[test]
fn idle_stdin_and_silent_server_time_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr").to_string();
    let mut child = support::selectd(&["send", &addr, "--timeout", "300ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn selectd");
    let stdin = child.stdin.take();
    let code = support::wait_bounded(&mut child, support::RUN_LIMIT);
    drop(stdin);
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut stderr);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("timed out after 300ms"), "{stderr}");
    drop(listener);
}

/// A connect that never completes (the listener's queue is full, so the
/// kernel drops our SYN) is bounded by `--timeout` too; exit code 5.
#[test]
fn connect_to_full_backlog_times_out() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen");
    let local = listener
        .local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("inet");
    // Fill the accept queue; later SYNs are dropped. Failures are fine here.
    let fillers: Vec<_> = (0..3)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&local, Duration::from_millis(200)).ok()
        })
        .collect();
    let addr = local.to_string();
    let out = send(&[&addr, "--data", "x", "--timeout", "500ms"], Input::Null);
    assert_timed_out_after_500ms(&out, &addr);
    drop(fillers);
}

/// A Unix socket whose listen backlog is full makes a client wait, as a
/// full TCP backlog does: `--timeout` bounds the wait, exit code 5, and the
/// message names the path (never a `POLLHUP` riddle).
#[test]
fn unix_connect_to_full_backlog_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("full.sock");
    let listener =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("socket");
    listener
        .bind(&socket2::SockAddr::unix(&path).expect("path"))
        .expect("bind");
    // Backlog 0: one connection waits in the queue, the next finds it full.
    listener.listen(0).expect("listen");
    let filler = std::os::unix::net::UnixStream::connect(&path).expect("first connect");
    let addr = format!("unix:{}", path.display());
    let out = send(&[&addr, "--data", "x", "--timeout", "500ms"], Input::Null);
    assert_timed_out_after_500ms(&out, &addr);
    drop(filler);
}

/// A Unix socket path longer than the kernel takes (107 bytes) is a usage
/// error, exit 2, before any connect.
#[test]
fn unix_path_too_long_is_a_usage_error() {
    let addr = format!("unix:/tmp/{}", "x".repeat(120));
    let out = send(&[&addr, "--data", "x"], Input::Null);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("the limit is 107"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// `error` (reset): the server aborts the connection with RST after reading
/// the request; exit code 6 and the message says so.
#[test]
fn reset_by_peer_exits_6() {
    let addr = support::tcp_server(|mut stream| {
        let mut buf = [0; 16];
        let _ = stream.read(&mut buf);
        // SO_LINGER 0: close sends RST instead of FIN.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    });
    let out = send(&[&addr, "--data", "hi"], Input::Null);
    assert_eq!(out.code, Some(6), "{out:?}");
    assert_eq!(
        out.stderr,
        format!("error: connection to {addr} reset by peer\n")
    );
}

/// A Unix path where nothing listens is another socket error, named.
#[test]
fn missing_unix_socket_exits_6() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("unix:{}", dir.path().join("none.sock").display());
    let out = send(&[&addr, "--data", "x"], Input::Null);
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(
        out.stderr
            .starts_with(&format!("error: cannot connect to {addr}: ")),
        "{}",
        out.stderr
    );
}

// ---- usage ----------------------------------------------------------------

/// Mistakes on the command line exit 2 with one line naming the value,
/// before any traffic.
#[test]
fn usage_errors_exit_2_in_one_line() {
    for (args, says) in [
        (
            &["udp://127.0.0.1:9", "--data", "x"][..],
            "udp://127.0.0.1:9",
        ),
        (&["127.0.0.1", "--data", "x"], "invalid address '127.0.0.1'"),
        (&["127.0.0.1:9", "--timeout", "soon"], "--timeout"),
        (&["127.0.0.1:9", "--timeout", "0"], "--timeout"),
        (&["127.0.0.1:9", "--http", "/a b"], "--http"),
    ] {
        let out = send(args, Input::Null);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// `--data` and `--http` are two payloads; clap refuses both at once.
#[test]
fn data_and_http_conflict() {
    let out = send(&["127.0.0.1:9", "--data", "x", "--http", "/"], Input::Null);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
}
