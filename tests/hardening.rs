//! Limits and hostile clients: too many clients, too few file descriptors,
//! slowloris, cross-protocol requests, huge lines, reset storms; and the
//! counters that report them.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Asks a local client's question `stats` and returns the reply line.
fn stats(addr: &str) -> String {
    let mut client = connect(addr);
    client.write_all(b"stats\n").unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        assert_eq!(
            client.read(&mut byte).unwrap(),
            1,
            "stats reply ended early"
        );
        reply.push(byte[0]);
    }
    String::from_utf8(reply).unwrap()
}

/// Reads `key=value` from a stats line.
fn stat(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .trim()
        .parse()
        .unwrap()
}

/// `--max-conns 3`: the fourth client gets `error: server full` and EOF;
/// once one leaves, a new client is served.
#[test]
fn fourth_client_is_refused_until_a_slot_frees() {
    let server = ServerProcess::start(&["--max-conns", "3", "--echo"]);
    let mut first = server.connect();
    let mut others: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for client in others.iter_mut().chain([&mut first]) {
        client.write_all(b"in\n").unwrap();
        assert_eq!(read_exactly(client, 3), b"in\n");
    }
    let mut fourth = server.connect();
    assert_eq!(read_to_end(&mut fourth), b"error: server full\r\n");
    first.write_all(b"disconnect\n").unwrap();
    assert_eq!(read_to_end(&mut first), b"");
    let mut fifth = None;
    wait_until("a freed slot", || {
        let mut client = server.connect();
        client.write_all(b"hello\n").unwrap();
        let mut buf = [0u8; 6];
        let ok = client.read_exact(&mut buf).is_ok() && &buf == b"hello\n";
        if ok {
            fifth = Some(client);
        }
        ok
    });
    wait_until("the refusal log", || {
        server.stderr().contains("server full")
    });
}

/// With fewer file descriptors than clients, the server keeps serving the
/// ones it has, uses no CPU while stuck on `EMFILE`, and accepts the
/// waiting clients once descriptors free up.
#[test]
fn fd_exhaustion_pauses_without_spinning_and_recovers() {
    let server = ServerProcess::start_with(
        &["--echo", "--max-conns", "1000", "--idle-timeout", "off"],
        |command| {
            // SAFETY: only async-signal-safe setrlimit between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 48,
                        rlim_max: 48,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    // More clients than the server has descriptors for; the kernel queues
    // the excess in the listen backlog.
    let mut clients: Vec<TcpStream> = (0..70).map(|_| server.connect()).collect();
    wait_until("accept to fail", || {
        server.stderr().contains("pausing new connections")
    });
    // Those it has are still served.
    clients[0].write_all(b"served\n").unwrap();
    assert_eq!(read_exactly(&mut clients[0], 7), b"served\n");
    // Stuck, but not spinning.
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(2));
    let used = server.cpu_ticks() - before;
    assert!(
        used <= 10,
        "server used {used} ticks while out of descriptors"
    );
    // Free descriptors: the queued clients are accepted and served.
    for client in clients.drain(..45) {
        client.shutdown(Shutdown::Both).unwrap();
    }
    let last = clients.last_mut().unwrap();
    last.write_all(b"finally\n").unwrap();
    assert_eq!(read_exactly(last, 8), b"finally\n");
}

/// A client that trickles a line one byte at a time (slowloris) is closed
/// when the line passes `--line-timeout`; a client sending whole lines
/// slowly is not.
#[test]
fn slowloris_is_closed_by_the_line_timeout() {
    let server = InProcess::start(|c| {
        c.line_timeout = Some(Duration::from_millis(600));
        c.idle_timeout = Some(Duration::from_secs(60));
    });
    let start = Instant::now();
    let mut slow = server.connect();
    let mut polite = server.connect();
    let mut closed_at = None;
    // Trickle until the slowloris is closed, however late a busy machine
    // lets that happen; the polite client talks all along.
    for i in 0.. {
        if closed_at.is_some() {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "the slowloris was never closed");
        if slow.write_all(b"x").is_err() {
            closed_at = Some(start.elapsed());
        }
        polite.write_all(format!("line {i}\n").as_bytes()).unwrap();
        if server.output().contains("close: line-timeout") && closed_at.is_none() {
            closed_at = Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let closed_at = closed_at.expect("slowloris closed");
    assert!(
        closed_at >= Duration::from_millis(600),
        "closed early: {closed_at:?}"
    );
    polite.write_all(b"still here\n").unwrap();
    server.wait_for_output("] still here\n");
    let output = server.stop();
    assert_eq!(output.matches("close: line-timeout").count(), 1, "{output}");
    assert!(
        output.contains("] xxxx"),
        "what arrived is printed: {output}"
    );
}

/// HTTP sent to the line server (a browser tricked by a web page) closes
/// the connection at once, and nothing after it is acted on: the `stop` in
/// the body does not stop the server.
#[test]
fn cross_protocol_requests_are_closed() {
    let server = InProcess::start(|_| {});
    for request in [
        &b"POST / HTTP/1.1\r\nHost: 127.0.0.1:10001\r\nContent-Length: 5\r\n\r\nstop\n"[..],
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:10001\r\n\r\nstop\n",
    ] {
        let mut client = server.connect();
        client.write_all(request).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest); // EOF or reset: closed either way
        server.wait_for_output("close: cross-protocol");
    }
    let mut after = server.connect();
    after.write_all(b"alive\n").unwrap();
    server.wait_for_output("] alive\n");
    let output = server.stop();
    assert_eq!(
        output.matches("close: cross-protocol").count(),
        2,
        "{output}"
    );
    assert!(!output.contains("] stop"), "{output}");
    assert!(!output.contains("close: stop\n* [") || output.contains("] alive"));
}

/// A 64 MiB line is refused after `--max-line` with bounded memory.
#[test]
fn huge_line_is_refused_with_bounded_memory() {
    let server = ServerProcess::start(&["--format", "none"]);
    let baseline = server.rss_kib();
    let mut client = server.connect();
    let mut writer = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            if writer.write_all(&chunk).is_err() {
                return false; // the server closed on us: expected
            }
        }
        true
    });
    let mut reply = Vec::new();
    let _ = client.read_to_end(&mut reply);
    assert!(reply.starts_with(b"error: line too long\r\n"), "{reply:?}");
    let _ = sender.join();
    let grown = server.rss_kib().saturating_sub(baseline);
    assert!(grown < 8 * 1024, "server grew by {grown} KiB");
}

/// Thousands of clients that reset mid-line: each is closed as `reset`, the
/// server carries on, and its counters add up.
#[test]
fn reset_storm_leaves_the_server_serving() {
    let server = ServerProcess::start(&["--format", "none"]);
    let total = 2000;
    for batch in 0..(total / 200) {
        let clients: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
        for (i, mut client) in clients.into_iter().enumerate() {
            client
                .write_all(format!("partial {batch} {i}").as_bytes())
                .unwrap();
            reset(client);
        }
    }
    let mut line = String::new();
    wait_until("every reset counted", || {
        line = stats(&server.addr);
        stat(&line, "closed_reset") >= total
    });
    assert!(line.starts_with("stats accepted="), "{line}");
    assert_eq!(stat(&line, "closed_reset"), total, "{line}");
    assert!(stat(&line, "accepted") > total, "{line}");
    assert!(stat(&line, "errors") >= total, "{line}");
}

/// `stats` answers a local client with one line of counters; it is not
/// printed; `--stats DUR` logs the same counters on stderr.
#[test]
fn stats_line_and_periodic_log() {
    let server = ServerProcess::start(&["--stats", "200ms"]);
    let mut client = server.connect();
    client.write_all(b"one\ntwo\n").unwrap();
    server.wait_for_output("] two\n");
    let line = stats(&server.addr);
    assert!(
        line.ends_with("\r\n") && line.lines().count() == 1,
        "{line:?}"
    );
    assert!(stat(&line, "lines") >= 3, "{line}");
    assert!(stat(&line, "open") >= 2, "{line}");
    assert!(stat(&line, "bytes_in") >= 8, "{line}");
    wait_until("a periodic stats log", || {
        server.stderr().contains("accepted=")
    });
    assert!(!server.stdout().contains("] stats"));
}

/// Counters asked for with `--stats` are printed whatever `RUST_LOG` says:
/// a log filter that does not mention them does not hide them.
#[test]
fn stats_print_whatever_the_log_filter() {
    for filter in ["warn", "error", "off"] {
        let server = ServerProcess::start_with(&["--stats", "200ms"], |command| {
            command.env("RUST_LOG", filter);
        });
        wait_until("a periodic stats line", || {
            server.stderr().contains("accepted=0 open=0")
        });
    }
}

/// The counters are readable through the library API as well.
#[test]
fn counters_through_the_handle() {
    let server = InProcess::start(|c| c.echo = true);
    let mut client = server.connect();
    client.write_all(b"abc\n").unwrap();
    assert_eq!(read_exactly(&mut client, 4), b"abc\n");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    wait_until("the close to be published", || {
        server.handle.stats().closed_total() == 1
    });
    let counters = server.handle.stats();
    assert_eq!(counters.accepted, 1);
    assert_eq!(counters.closed_for(selectd::CloseReason::Eof), 1);
    assert_eq!(counters.lines, 1);
    assert_eq!(counters.bytes_in, 4);
    assert_eq!(counters.bytes_out, 4);
    assert_eq!(counters.open, 0);
}

/// A line the client never finished is printed when a deadline gives up on
/// it, but not obeyed: an unfinished `stop` does not stop the server.
#[test]
fn an_unfinished_line_closed_by_a_deadline_is_printed_not_obeyed() {
    for args in [
        ["--idle-timeout", "off", "--line-timeout", "400ms"],
        ["--idle-timeout", "400ms", "--line-timeout", "off"],
    ] {
        let server = ServerProcess::start(&args);
        let mut client = server.connect();
        client.write_all(b"stop").unwrap();
        assert_eq!(read_to_end(&mut client), b"");
        server.wait_for_output("] stop\n");
        let mut next = server.connect();
        next.write_all(b"still serving\n").unwrap();
        server.wait_for_output("] still serving\n");
    }
}
