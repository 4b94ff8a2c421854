//! `serve` on a `tls://` listener, against the real `openssl s_client`:
//! lines, echo, `stop`, TLS 1.2 and 1.3, client certificates, and what a
//! client that does not speak TLS properly gets (close reason `tls`).
//! Certificates are made at test time by the `openssl` command.

mod common;
mod deploy_support;
mod haproxy_support;
mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{PATIENCE, ServerProcess, wait_until};
use tls_support::{Certs, SClient, rustls_client};

/// A server on a TLS listener with `certs` and `extra` flags, and its
/// address as `HOST:PORT`.
fn serve(certs: &Certs, extra: &[&str]) -> (ServerProcess, String) {
    serve_logging(certs, extra, "warn")
}

/// As [`serve`], with `RUST_LOG` set to `log`.
fn serve_logging(certs: &Certs, extra: &[&str], log: &str) -> (ServerProcess, String) {
    let mut args = certs.serve_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start_with(&args, |command| {
        command.env("RUST_LOG", log);
    });
    let addr = server.listening[0]
        .strip_prefix("tls://")
        .expect("a tls:// listener")
        .to_string();
    (server, addr)
}

/// Lines sent over TLS by `s_client` are printed as over TCP, echoed back
/// through the session, and `stop` from loopback stops the server.
fn lines_echo_and_stop(version: &str) {
    let Some(certs) = Certs::make() else { return };
    let (mut server, addr) = serve(&certs, &["--echo", "--idle-timeout", "60s"]);
    let mut client = SClient::start(&addr, &certs.ca, &[version]);
    client.wait_connected();
    client.send(b"merhaba\nd\xc3\xbcnya\n");
    wait_until("the echo through s_client", || {
        client.out.text().contains("merhaba\ndünya\n")
    });
    client.send(b"stop\n");
    assert!(server.wait_exit().success());
    let stdout = server.stdout();
    let peer = stdout
        .lines()
        .find_map(|l| l.strip_prefix("* [")?.strip_suffix("] open"))
        .unwrap_or_else(|| panic!("no open event: {stdout}"))
        .to_string();
    assert!(stdout.contains(&format!("[{peer}] merhaba\n")), "{stdout}");
    assert!(stdout.contains(&format!("[{peer}] dünya\n")), "{stdout}");
    assert!(
        stdout.contains(&format!("* [{peer}] close: stop\n")),
        "{stdout}"
    );
}

#[test]
fn s_client_tls13_lines_are_printed_echoed_and_stop_obeyed() {
    lines_echo_and_stop("-tls1_3");
}

#[test]
fn s_client_tls12_lines_are_printed_echoed_and_stop_obeyed() {
    lines_echo_and_stop("-tls1_2");
}

/// `s_client` ending its input sends `close_notify` then FIN: a clean end
/// of stream, so the unterminated last line is a line (and closes `eof`).
#[test]
fn close_notify_is_a_clean_end_of_stream() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &[]);
    let mut client = SClient::start(&addr, &certs.ca, &[]);
    client.wait_connected();
    client.send(b"first\nlast without newline");
    client.finish();
    let (code, said) = client.wait();
    assert_eq!(code, Some(0), "{said}");
    server.wait_for_output("] close: eof\n");
    let stdout = server.stdout();
    assert!(stdout.contains("] last without newline\n"), "{stdout}");
}

/// With `--tls-client-ca`, a client without a certificate is refused
/// (close reason `tls`, counted), and one with a certificate from that CA
/// prints as its address followed by `#cn=` and the certificate's name.
#[test]
fn client_certificates_are_required_and_name_the_peer() {
    let Some(certs) = Certs::make() else { return };
    let ca = certs.ca.display().to_string();
    let (mut server, addr) = serve(&certs, &["--tls-client-ca", &ca, "--idle-timeout", "60s"]);

    let mut anonymous = SClient::start(&addr, &certs.ca, &[]);
    anonymous.send(b"let me in\n");
    // In TLS 1.3 the client may think itself connected before the server's
    // `certificate_required` alert arrives: what counts is the server side.
    server.wait_for_output("] close: tls\n");
    drop(anonymous);

    let cert = certs.alice_cert.display().to_string();
    let key = certs.alice_key.display().to_string();
    let mut alice = SClient::start(&addr, &certs.ca, &["-cert", &cert, "-key", &key]);
    alice.wait_connected();
    alice.send(b"hello\nstats\n");
    wait_until("the stats reply", || {
        alice.out.text().contains("stats accepted=")
    });
    let stats = alice.out.text();
    assert!(stats.contains(" tls_handshakes=1 "), "{stats}");
    assert!(stats.contains(" tls_handshake_failures=1"), "{stats}");
    assert!(stats.contains(" closed_tls=1 "), "{stats}");
    alice.send(b"stop\n");
    assert!(server.wait_exit().success());
    let stdout = server.stdout();
    let line = stdout
        .lines()
        .find(|l| l.ends_with("] hello"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with("[127.0.0.1:") && line.contains("#cn=alice] "),
        "{line}"
    );
    assert!(!stdout.contains("let me in"), "{stdout}");
}

/// A plaintext line sent to a TLS port is not a handshake: the connection
/// closes with `tls`, and the line is never printed as one.
#[test]
fn a_plaintext_line_to_a_tls_port_closes_with_tls() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &[]);
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.write_all(b"stop\n").unwrap();
    let mut answer = Vec::new();
    // The server sends an alert (or nothing) and closes.
    let _ = plain.read_to_end(&mut answer);
    server.wait_for_output("] close: tls\n");
    let stdout = server.stdout();
    assert!(!stdout.contains("] stop"), "{stdout}");
    assert!(!answer.starts_with(b"error"), "{answer:?}");
}

/// The first bytes of a real ClientHello, then the end: a truncated
/// handshake closes with `tls`.
#[test]
fn a_truncated_handshake_closes_with_tls() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &[]);
    let hello = client_hello();
    let mut cut = TcpStream::connect(&addr).unwrap();
    cut.write_all(&hello[..hello.len() / 2]).unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    server.wait_for_output("] close: tls\n");
}

/// A client that stops mid-handshake is closed when the handshake time-out
/// passes (`tls`), even with the idle time-out longer.
#[test]
fn a_client_stalled_mid_handshake_closes_with_tls() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(
        &certs,
        &["--tls-handshake-timeout", "1s", "--idle-timeout", "60s"],
    );
    let started = std::time::Instant::now();
    let hello = client_hello();
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(&hello).unwrap();
    // It never answers the server's flight.
    server.wait_for_output("] close: tls\n");
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(stalled);
}

/// A ClientHello as rustls writes it (whole, in one record).
fn client_hello() -> Vec<u8> {
    let Some(certs) = Certs::make() else {
        unreachable!("made by the caller already")
    };
    let files = selectd::net::tls::ClientFiles {
        ca: Some(certs.ca.clone()),
        ..Default::default()
    };
    let config = selectd::net::tls::client_config(&files).unwrap();
    let name = selectd::net::tls::server_name("localhost").unwrap();
    let mut session = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    hello
}

/// A TLS 1.2 client asking to renegotiate (`s_client`'s `R` command) is
/// refused by rustls without harm: the server goes on serving it or closes
/// it with `tls`, and serves others either way.
#[test]
fn a_renegotiation_attempt_does_no_harm() {
    let Some(certs) = Certs::make() else { return };
    let (mut server, addr) = serve(&certs, &["--echo", "--idle-timeout", "60s"]);
    let mut client = SClient::start(&addr, &certs.ca, &["-tls1_2"]);
    client.wait_connected();
    client.send(b"before\n");
    wait_until("the echo", || client.out.text().contains("before\n"));
    // `R` alone in one read is s_client's command to renegotiate.
    client.send(b"R\n");
    wait_until("s_client to renegotiate", || {
        client.out.text().contains("RENEGOTIATING") || client.err.text().contains("RENEGOTIATING")
    });
    // OpenSSL gives up when rustls answers `no_renegotiation`.
    let (_, said) = client.wait();
    server.wait_for_output("] close: ");
    let stdout = server.stdout();
    assert!(
        stdout.contains("] close: tls\n") || stdout.contains("] close: eof\n"),
        "{stdout}\n{said}"
    );
    let mut other = SClient::start(&addr, &certs.ca, &[]);
    other.wait_connected();
    other.send(b"after\nstop\n");
    assert!(server.wait_exit().success());
    let stdout = server.stdout();
    assert!(stdout.contains("] after\n"), "{stdout}");
    assert!(!stdout.contains("] R\n"), "{stdout}");
}

/// A client that floods 16 KiB records to an echo server and never reads
/// the replies is held back by the watermarks: the server's memory stays
/// bounded and it keeps serving others.
#[test]
fn a_record_flood_whose_replies_are_unread_is_held_by_the_watermarks() {
    let Some(certs) = Certs::make() else { return };
    let (mut server, addr) = serve(
        &certs,
        &[
            "--echo",
            "--max-line",
            "off",
            "--format",
            "none",
            // Its replies are never read: do not wait the default 5 s at stop.
            "--high-watermark",
            "256KiB",
            "--low-watermark",
            "64KiB",
            "--grace",
            "500ms",
            "--idle-timeout",
            "60s",
        ],
    );
    let baseline = server.rss_kib();
    // Small client buffers: the push-back comes sooner.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    let target: std::net::SocketAddr = addr.parse().unwrap();
    socket.connect(&target.into()).unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut flood = rustls_client(tcp, &certs.ca, None);
    // 16 KiB records of 1 KiB lines.
    let record: Vec<u8> = (0..16 * 1024)
        .map(|i| if i % 1024 == 1023 { b'\n' } else { b'x' })
        .collect();
    let mut sent = 0usize;
    // Until the socket stays full: the server stopped reading.
    while sent < 256 * 1024 * 1024 {
        match flood.write_all(&record) {
            Ok(()) => sent += record.len(),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(err) => panic!("flood failed after {sent} bytes: {err}"),
        }
    }
    assert!(sent < 256 * 1024 * 1024, "the server never pushed back");
    let grown = server.rss_kib().saturating_sub(baseline);
    assert!(grown < 16 * 1024, "grew by {grown} KiB after {sent} bytes");
    let mut other = SClient::start(&addr, &certs.ca, &[]);
    other.wait_connected();
    other.send(b"stop\n");
    assert!(server.wait_exit().success());
}

/// `SIGHUP` reads certificate and key again: new connections get the new
/// certificate, an open connection keeps its session, and a bad file
/// keeps the configuration in use, with one error naming the file.
#[test]
fn sighup_rotates_the_certificate_for_new_connections_only() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve_logging(&certs, &["--echo", "--idle-timeout", "60s"], "info");
    let mut old = SClient::start(&addr, &certs.ca, &[]);
    old.wait_connected();

    let (cert2, key2) = certs.other_server();
    std::fs::copy(&cert2, &certs.server_cert).unwrap();
    std::fs::copy(&key2, &certs.server_key).unwrap();
    server.signal(libc::SIGHUP);
    wait_until("the reload", || server.stderr().contains("reloaded"));

    // New connections: the other CA's certificate, refused by the old CA.
    let mut refused = SClient::start(&addr, &certs.ca, &[]);
    let (code, said) = refused.wait();
    assert_ne!(code, Some(0), "{said}");
    let mut renewed = SClient::start(&addr, &certs.other_ca, &[]);
    renewed.wait_connected();
    renewed.send(b"new\n");
    wait_until("the new session's echo", || {
        renewed.out.text().contains("new\n")
    });

    // The open connection kept its session.
    old.send(b"old\n");
    wait_until("the old session's echo", || {
        old.out.text().contains("old\n")
    });

    // A bad file: the configuration in use stays.
    std::fs::write(&certs.server_cert, b"not a certificate\n").unwrap();
    server.signal(libc::SIGHUP);
    let cert_path = certs.server_cert.display().to_string();
    wait_until("the reload error", || {
        server
            .stderr()
            .lines()
            .any(|l| l.contains("SIGHUP") && l.contains(&cert_path) && l.contains("ERROR"))
    });
    let mut still = SClient::start(&addr, &certs.other_ca, &[]);
    still.wait_connected();
    still.send(b"stop\n");
    let mut server = server;
    assert!(server.wait_exit().success());
    let errors = server
        .stderr()
        .lines()
        .filter(|l| l.contains(&cert_path) && l.contains("ERROR"))
        .count();
    assert_eq!(errors, 1, "{}", server.stderr());
}

/// HAProxy in TCP mode with `send-proxy-v2` in front of a `tls://`
/// listener: the PROXY header comes in clear before the client's TLS
/// handshake, and the client prints with its own address.
#[test]
fn haproxy_send_proxy_v2_before_the_handshake() {
    let Some(certs) = Certs::make() else { return };
    let Some(haproxy) = deploy_support::program("haproxy", "haproxy") else {
        return;
    };
    let (mut server, addr) = serve(
        &certs,
        &["--proxy-protocol", "127.0.0.1/32", "--idle-timeout", "60s"],
    );
    let haproxy =
        haproxy_support::Haproxy::start(&haproxy, &format!("server selectd {addr} send-proxy-v2"));
    let tcp = deploy_support::connect_from("127.0.0.2", haproxy.front);
    let source = tcp.local_addr().unwrap();
    let mut client = rustls_client(tcp, &certs.ca, None);
    client.write_all(b"hello through haproxy\nstop\n").unwrap();
    client.flush().unwrap();
    assert!(server.wait_exit().success());
    let stdout = server.stdout();
    assert!(
        stdout.contains(&format!("[{source}] hello through haproxy\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("* [{source}] close: stop\n")),
        "{stdout}"
    );
}

/// With several loops, TLS clients are served by all of them, and
/// `--max-conns` still bounds the server: a TLS client beyond it is closed
/// before any handshake (it could not read a plaintext refusal).
#[test]
fn reactors_and_max_conns_hold_for_tls() {
    let Some(certs) = Certs::make() else { return };
    let (mut server, addr) = serve(
        &certs,
        &[
            "--reactors",
            "2",
            "--max-conns",
            "3",
            "--idle-timeout",
            "60s",
        ],
    );
    let mut clients: Vec<SClient> = (0..3)
        .map(|_| SClient::start(&addr, &certs.ca, &[]))
        .collect();
    for client in &clients {
        client.wait_connected();
    }
    for (index, client) in clients.iter_mut().enumerate() {
        client.send(format!("client {index}\n").as_bytes());
    }
    for index in 0..3 {
        server.wait_for_output(&format!("] client {index}\n"));
    }
    let mut refused = SClient::start(&addr, &certs.ca, &[]);
    let (code, said) = refused.wait();
    assert_ne!(code, Some(0), "{said}");
    assert!(!said.contains("server full"), "{said}");
    clients[0].send(b"stop\n");
    assert!(server.wait_exit().success());
}

/// Half-close over TLS: the client's `close_notify` then FIN is a clean
/// end of stream; every echo arrives, then the server's own
/// `close_notify` (a clean end, not a cut) and FIN.
#[test]
fn half_close_gets_every_echo_then_close_notify() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &["--echo"]);
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut client = rustls_client(tcp, &certs.ca, None);
    let mut sent = Vec::new();
    for n in 0..2000 {
        sent.extend_from_slice(format!("line {n}\n").as_bytes());
    }
    client.write_all(&sent).unwrap();
    client.conn.send_close_notify();
    client.flush().unwrap();
    client.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    // `read_to_end` ends with Ok only at the server's close_notify: a FIN
    // without it would be an `UnexpectedEof` error.
    client.read_to_end(&mut back).unwrap();
    assert!(back == sent, "{} of {} bytes back", back.len(), sent.len());
    server.wait_for_output("] close: eof\n");
}

/// Idle and line time-outs hold over TLS as over TCP.
#[test]
fn idle_and_line_timeouts_hold_over_tls() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &["--idle-timeout", "1s", "--line-timeout", "60s"]);
    let silent = SClient::start(&addr, &certs.ca, &[]);
    silent.wait_connected();
    server.wait_for_output("] close: idle\n");
    drop(silent);
    let (server, addr) = serve(&certs, &["--idle-timeout", "60s", "--line-timeout", "1s"]);
    let mut slow = SClient::start(&addr, &certs.ca, &[]);
    slow.wait_connected();
    slow.send(b"never finished");
    server.wait_for_output("] close: line-timeout\n");
    assert!(
        server.stdout().contains("] never finished\n"),
        "{}",
        server.stdout()
    );
}

/// Socket activation: an inherited socket named `tls`
/// (`FileDescriptorName=tls`) is served as TLS.
#[test]
fn an_inherited_socket_named_tls_is_served_as_tls() {
    served_as_tls_when_inherited(true);
}

/// Socket activation: an inherited socket that a `--listen tls://` address
/// names is served as TLS (and not bound a second time).
#[test]
fn an_inherited_socket_named_by_listen_tls_is_served_as_tls() {
    served_as_tls_when_inherited(false);
}

fn served_as_tls_when_inherited(by_name: bool) {
    let Some(certs) = Certs::make() else { return };
    let Some(activate) = deploy_support::program("systemd-socket-activate", "systemd") else {
        return;
    };
    for _ in 0..5 {
        let port = deploy_support::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut command = std::process::Command::new(&activate);
        command.arg(format!("--listen={addr}"));
        if by_name {
            command.arg("--fdname=tls");
        }
        command
            .arg(env!("CARGO_BIN_EXE_selectd"))
            .args(["serve", "--tls-cert"])
            .arg(&certs.server_cert)
            .arg("--tls-key")
            .arg(&certs.server_key);
        if !by_name {
            command.args(["--listen", &format!("tls://{addr}")]);
        }
        let mut child = deploy_support::Reaped(
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start systemd-socket-activate"),
        );
        let stdout = common::capture(child.0.stdout.take().unwrap());
        let stderr = common::capture(child.0.stderr.take().unwrap());
        wait_until("systemd-socket-activate to listen or fail", || {
            stderr.text().contains("Listening on") || child.0.try_wait().unwrap().is_some()
        });
        if !stderr.text().contains("Listening on") {
            assert!(stderr.text().contains("in use"), "{}", stderr.text());
            continue;
        }
        let mut client = SClient::start(&addr, &certs.ca, &[]);
        client.wait_connected();
        client.send(b"activated\nstop\n");
        wait_until("selectd to stop", || child.0.try_wait().unwrap().is_some());
        let (out, err) = (stdout.text(), stderr.text());
        assert!(err.contains(&format!("listening on tls://{addr}")), "{err}");
        assert_eq!(err.matches("listening on ").count(), 1, "{err}");
        assert!(out.contains("] activated\n"), "{out}");
        return;
    }
    panic!("no free port after 5 tries");
}

/// `--trace-loop` narrates the handshake: its steps, the session agreed,
/// and the connection's move from `tls-handshake` to `reading`.
#[test]
fn trace_loop_narrates_the_handshake() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &["--trace-loop"]);
    let mut client = SClient::start(&addr, &certs.ca, &["-tls1_2"]);
    client.wait_connected();
    client.send(b"traced\n");
    server.wait_for_output("] traced\n");
    // The trace goes to stderr through a writer of its own, which may
    // still be writing when the line reaches stdout.
    let expected = [
        ": tls handshake: read ",
        ": tls established: TLSv1.2 ",
        ": tls-handshake -> reading\n",
    ];
    wait_until("the handshake in the trace", || {
        expected.iter().all(|text| server.stderr().contains(text))
    });
}

/// A TLS listener without its files is a usage error (exit 2); a file that
/// cannot be used stops the server at start, exit 1, with one line naming
/// it; a key that is not the certificate's is named with both files; files
/// with no TLS listener to use them stop it too.
#[test]
fn unusable_tls_files_are_named_at_start() {
    let Some(certs) = Certs::make() else { return };
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
            .arg("serve")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--listen", "tls://127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "error: a tls:// listener needs --tls-cert FILE and --tls-key FILE\n"
    );
    let key = certs.server_key.display().to_string();
    let (code, err) = run(&[
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        &key,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        "error: cannot use TLS certificate /nonexistent/cert.pem: No such file or directory\n"
    );
    let (cert, other_key) = (
        certs.alice_cert.display().to_string(),
        certs.server_key.display().to_string(),
    );
    let (code, err) = run(&[
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &other_key,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot use TLS certificate {cert} with key {other_key}: "
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Files and no TLS listener: they would be ignored, and every client
    // served in the clear.
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        "error: --tls-cert, --tls-key and --tls-client-ca need a tls:// listener (--listen tls://HOST:PORT)\n"
    );
}

/// The server's own last words travel inside the session: the echo before
/// `disconnect`, and `error: line too long`, reach the client in plaintext
/// before the server's `close_notify` (a lingering close, as over TCP).
#[test]
fn last_words_reach_the_client_through_the_session() {
    let Some(certs) = Certs::make() else { return };
    let (server, addr) = serve(&certs, &["--echo", "--max-line", "16"]);
    let mut polite = SClient::start(&addr, &certs.ca, &[]);
    polite.wait_connected();
    polite.send(b"goodbye\ndisconnect\n");
    // (Ending s_client's input would make it leave before reading.)
    wait_until("the echo before disconnect", || {
        polite.out.text().contains("goodbye\n")
    });
    server.wait_for_output("] close: disconnect\n");
    let mut long = SClient::start(&addr, &certs.ca, &[]);
    long.wait_connected();
    long.send(b"this line is longer than sixteen bytes\n");
    wait_until("the refusal", || {
        long.out.text().contains("error: line too long")
    });
    server.wait_for_output("] close: line-too-long\n");
}
