//! `selectd serve`: the notes' server's job, for every client at once.
//!
//! Each test states the rule it pins. Clients speak raw bytes over loopback
//! to a server on an ephemeral port; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Every client is served at once: none waits for another to leave (the
/// notes' server served one at a time while the rest queued in the backlog).
#[test]
fn many_clients_are_served_at_once() {
    let server = InProcess::start(|_| {});
    let mut clients: Vec<_> = (0..50).map(|_| server.connect()).collect();
    // Interleave: every client sends a line before any of them leaves.
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("hello from {i}\n").as_bytes())
            .unwrap();
    }
    for i in 0..50 {
        server.wait_for_output(&format!("] hello from {i}\n"));
    }
    let output = server.stop();
    assert_eq!(output.matches("] open\n").count(), 50);
}

/// A line split into one-byte reads is still one line, and a command split
/// that way is still obeyed.
#[test]
fn line_split_byte_by_byte() {
    let server = InProcess::start(|_| {});
    let mut client = server.connect();
    for (sent, byte) in (1..).zip(b"merhaba d\xc3\xbcnya\r\ndisconnect\n") {
        client.write_all(&[*byte]).unwrap();
        // Each byte is read on its own before the next is sent.
        server.wait_bytes_in(sent);
    }
    assert_eq!(read_to_end(&mut client), b"");
    let output = server.stop();
    assert!(output.contains("] merhaba dünya\n"), "{output}");
    assert!(output.contains("] close: disconnect\n"), "{output}");
    assert!(!output.contains("disconnect\n["), "{output}");
}

/// Thousands of lines in one write are each printed, in order.
#[test]
fn thousands_of_lines_in_one_write() {
    let server = InProcess::start(|_| {});
    let mut client = server.connect();
    let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    send_and_shutdown(&mut client, text.as_bytes());
    server.wait_for_output("] close: eof\n");
    let output = server.stop();
    let printed: Vec<&str> = output
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, t)| t))
        .filter(|t| t.starts_with("line "))
        .collect();
    let expected: Vec<String> = (0..5000).map(|i| format!("line {i}")).collect();
    assert_eq!(printed, expected);
}

/// CRLF and LF both end a line; the `\r` is not part of it.
#[test]
fn crlf_and_lf_lines() {
    let server = InProcess::start(|_| {});
    let mut client = server.connect();
    send_and_shutdown(&mut client, b"one\r\ntwo\nthree\r\n");
    server.wait_for_output("] close: eof\n");
    let output = server.stop();
    for word in ["one", "two", "three"] {
        assert!(output.contains(&format!("] {word}\n")), "{output}");
    }
    assert!(!output.contains("\\r"), "{output}");
}

/// `disconnect` closes that client only; the others carry on.
#[test]
fn disconnect_closes_only_that_client() {
    let server = InProcess::start(|_| {});
    let mut leaving = server.connect();
    let mut staying = server.connect();
    leaving
        .write_all(b"bye now\n  disconnect \r\nnever acted on\n")
        .unwrap();
    assert_eq!(
        read_to_end(&mut leaving),
        b"",
        "server closed the connection"
    );
    staying.write_all(b"still here\n").unwrap();
    server.wait_for_output("] still here\n");
    let output = server.stop();
    assert!(output.contains("] bye now\n"));
    assert!(!output.contains("never acted on"), "{output}");
    assert_eq!(output.matches("close: disconnect").count(), 1);
}

/// `stop` stops the server gracefully: lines other clients already sent are
/// printed (a partial one too), everyone is closed, and the server exits 0.
#[test]
fn stop_with_other_clients_mid_stream() {
    let mut server = ServerProcess::start(&[]);
    let mut busy = server.connect();
    busy.write_all(b"first\nsecond\nunfinished").unwrap();
    server.wait_for_output("] second\n");
    let mut stopper = server.connect();
    stopper.write_all(b"stop\n").unwrap();
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    let output = server.stdout();
    assert!(output.contains("] unfinished\n"), "{output}");
    assert_eq!(output.matches("] close: stop\n").count(), 2, "{output}");
    assert_eq!(read_to_end(&mut busy), b"");
}

/// The idle time-out closes a silent client, and only after the time-out;
/// a client that keeps talking stays.
#[test]
fn idle_client_closed_after_deadline_chatty_client_kept() {
    let server = InProcess::start(|c| c.idle_timeout = Some(Duration::from_millis(600)));
    let start = Instant::now();
    let mut idle = server.connect();
    let mut chatty = server.connect();
    idle.set_nonblocking(true).unwrap();
    // The chatty client talks again as soon as the server has read its last
    // line, so it never leaves the server a silence to time out (however
    // slowly a busy machine runs the two), until the idle client is closed.
    let mut tick = 0;
    let eof_at = loop {
        chatty
            .write_all(format!("tick {tick}\n").as_bytes())
            .unwrap();
        server.wait_for_output(&format!("] tick {tick}\n"));
        tick += 1;
        let mut byte = [0u8; 1];
        match idle.read(&mut byte) {
            Ok(0) => break start.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the idle client got {other:?}"),
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the idle client was never closed"
        );
    };
    assert!(
        eof_at >= Duration::from_millis(600),
        "closed early: {eof_at:?}"
    );
    chatty.write_all(b"still talking\n").unwrap();
    server.wait_for_output("] still talking\n");
    let output = server.stop();
    assert_eq!(output.matches("close: idle").count(), 1, "{output}");
}

/// `--idle-timeout off` means never: a client silent for longer than the
/// default time-out (5 s, which is also what a flag that failed to take
/// effect would leave) is still connected, and still served.
#[test]
fn idle_timeout_off_keeps_a_silent_client() {
    const DEFAULT_IDLE: Duration = Duration::from_secs(5);
    let server = ServerProcess::start(&["--idle-timeout", "off"]);
    let mut client = server.connect();
    client.write_all(b"before the silence\n").unwrap();
    server.wait_for_output("] before the silence\n");
    // The silence under test: past the default time-out, with a margin for
    // the server to have closed and said so if it were counting.
    thread::sleep(DEFAULT_IDLE + Duration::from_secs(1));
    assert!(!server.stdout().contains("close:"), "{}", server.stdout());
    // A closed connection would take this write and print nothing.
    client.write_all(b"after the silence\n").unwrap();
    server.wait_for_output("] after the silence\n");
    assert!(!server.stdout().contains("close:"), "{}", server.stdout());
}

/// At EOF an unterminated last line is printed; the connection is closed
/// and the server does not spin (the notes' server printed blank lines forever).
#[test]
fn eof_tail_is_printed_and_nothing_spins() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    send_and_shutdown(&mut client, b"no newline at the end");
    server.wait_for_output("] close: eof\n");
    assert_eq!(read_to_end(&mut client), b"");
    let before = server.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let used = server.cpu_ticks() - before;
    assert!(used <= 5, "server used {used} ticks after EOF");
    assert!(server.stdout().contains("] no newline at the end\n"));
}

/// A reset mid-line loses nothing received: the partial line is printed,
/// the close says `reset`, and the server serves the next client.
#[test]
fn reset_mid_line_keeps_what_was_received() {
    let server = InProcess::start(|_| {});
    let mut client = server.connect();
    client.write_all(b"half a li").unwrap();
    server.wait_bytes_in(9);
    reset(client);
    server.wait_for_output("close: reset\n");
    let mut next = server.connect();
    next.write_all(b"next\n").unwrap();
    server.wait_for_output("] next\n");
    let output = server.stop();
    assert!(output.contains("] half a li\n"), "{output}");
}

/// Bytes a client chose cannot act on the operator's terminal; printable
/// UTF-8 (Turkish) is kept as written, invalid bytes shown as `\xNN`.
#[test]
fn terminal_escapes_are_made_visible() {
    let server = InProcess::start(|_| {});
    let mut client = server.connect();
    send_and_shutdown(
        &mut client,
        "çalışıyor\n\x1b[2J\x07bell\n\u{202e}evil\nbad \u{0}\n".as_bytes(),
    );
    let mut invalid = server.connect();
    send_and_shutdown(&mut invalid, b"\xff\xfe ok\n");
    server.wait_for_output("] \\xff\\xfe ok\n");
    server.wait_for_output("] bad \\0\n");
    let output = server.stop();
    assert!(output.contains("] çalışıyor\n"), "{output}");
    assert!(output.contains("] \\u{1b}[2J\\u{7}bell\n"), "{output}");
    assert!(output.contains("] \\u{202e}evil\n"), "{output}");
    assert!(!output.contains('\x1b') && !output.contains('\u{202e}'));
}

/// A line over `--max-line` gets `error: line too long` and the client is
/// closed; lines before it are kept and other clients are unaffected.
#[test]
fn line_too_long_closes_that_client() {
    let server = InProcess::start(|c| c.max_line = 16);
    let mut other = server.connect();
    let mut client = server.connect();
    client.write_all(b"short\n").unwrap();
    client.write_all(&[b'x'; 100]).unwrap();
    let reply = read_to_end(&mut client);
    assert_eq!(reply, b"error: line too long\r\n");
    other.write_all(b"unaffected\n").unwrap();
    server.wait_for_output("] unaffected\n");
    let output = server.stop();
    assert!(output.contains("] short\n"));
    assert!(output.contains("close: line-too-long\n"), "{output}");
    assert!(!output.contains("xxxx"));
}

fn exchange(format: &str) -> String {
    let mut server = ServerProcess::start(&["--format", format]);
    let mut client = server.connect();
    let peer = client.local_addr().unwrap().to_string();
    client.write_all(b"  hello \"world\"\r\n").unwrap();
    client.write_all(b"disconnect\n").unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    let mut stopper = server.connect();
    let stopper_peer = stopper.local_addr().unwrap().to_string();
    stopper.write_all(b"stop\n").unwrap();
    assert!(server.wait_exit().success());
    server
        .stdout()
        .replace(&peer, "PEER")
        .replace(&stopper_peer, "STOPPER")
}

/// `--format tagged` (the default): each line with its peer, plus events.
#[test]
fn format_tagged_exact() {
    assert_eq!(
        exchange("tagged"),
        "* [PEER] open\n[PEER]   hello \"world\"\n* [PEER] close: disconnect\n\
         * [STOPPER] open\n* [STOPPER] close: stop\n"
    );
}

/// `--format plain`: exactly what the notes' server prints: stripped lines, and the
/// separator after each client.
#[test]
fn format_plain_exact() {
    assert_eq!(
        exchange("plain"),
        "hello \"world\"\n----------------\n----------------\n"
    );
}

/// `--format json`: one object per line, with the events and reasons named.
#[test]
fn format_json_exact() {
    assert_eq!(
        exchange("json"),
        concat!(
            "{\"event\":\"open\",\"peer\":\"PEER\"}\n",
            "{\"event\":\"line\",\"peer\":\"PEER\",\"line\":\"  hello \\\"world\\\"\"}\n",
            "{\"event\":\"close\",\"peer\":\"PEER\",\"reason\":\"disconnect\"}\n",
            "{\"event\":\"open\",\"peer\":\"STOPPER\"}\n",
            "{\"event\":\"close\",\"peer\":\"STOPPER\",\"reason\":\"stop\"}\n",
        )
    );
}

/// `--format none` prints nothing.
#[test]
fn format_none_prints_nothing() {
    assert_eq!(exchange("none"), "");
}

/// SIGTERM (and SIGINT) stop the server like `stop`: what was sent is
/// printed, and the exit status is 0.
#[test]
fn sigterm_and_sigint_stop_gracefully() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut server = ServerProcess::start(&[]);
        let mut client = server.connect();
        client.write_all(b"before the signal\nhalf").unwrap();
        server.wait_for_output("] before the signal\n");
        server.signal(signal);
        let status = server.wait_exit();
        assert!(status.success(), "signal {signal}: {status:?}");
        let output = server.stdout();
        assert!(output.contains("] half\n"), "{output}");
        assert!(output.contains("] close: stop\n"), "{output}");
    }
}

/// The server logs to stderr, never to stdout, and `listening on` names
/// the real port.
#[test]
fn listening_line_names_the_real_port() {
    let server = ServerProcess::start(&[]);
    let line = &server.listening[0];
    assert!(line.starts_with("tcp://127.0.0.1:"), "{line}");
    assert_ne!(line, "tcp://127.0.0.1:0");
    assert_eq!(server.stdout(), "");
}

/// A port in use: non-zero exit, one line naming the address and the reason.
#[test]
fn port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
        .args(["serve", "--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!("error: cannot listen on {addr}: Address already in use\n")
    );
}

/// Bad flags and addresses: non-zero exit, one line naming the culprit.
#[test]
fn bad_values_are_named() {
    for (args, culprit) in [
        (vec!["--listen", "127.0.0.1:70000"], "127.0.0.1:70000"),
        (vec!["--listen", "nope"], "nope"),
        (vec!["--idle-timeout", "soon"], "soon"),
        (vec!["--format", "xml"], "xml"),
        (vec!["--max-line", "lots"], "lots"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
            .arg("serve")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(culprit),
            "{stderr}"
        );
    }
}

/// An idle server, with or without idle clients, uses no CPU: `poll`
/// sleeps until the nearest deadline, and with none, forever.
#[test]
fn idle_server_uses_no_cpu() {
    for timeout in ["off", "1h"] {
        let server = ServerProcess::start(&["--idle-timeout", timeout]);
        let clients: Vec<_> = (0..20).map(|_| server.connect()).collect();
        wait_until("20 clients accepted", || {
            server.stdout().matches("] open\n").count() == 20
        });
        let before = server.cpu_ticks();
        thread::sleep(Duration::from_secs(2));
        let used = server.cpu_ticks() - before;
        // One tick is 10 ms; a spinning loop would use ~200 in 2 s.
        assert!(
            used <= 2,
            "idle server used {used} ticks with --idle-timeout {timeout}"
        );
        drop(clients);
    }
}

/// `--trace-loop` narrates each turn on stderr in `select()` terms: the
/// poll time-out, the events, and what was done. stdout is unchanged.
#[test]
fn trace_loop_narrates_each_turn() {
    let server = ServerProcess::start(&["--trace-loop", "--idle-timeout", "300ms"]);
    let mut client = server.connect();
    client.write_all(b"hello\n").unwrap();
    server.wait_for_output("] hello\n");
    wait_until("the idle close in the trace", || {
        server.stderr().contains(": closed: idle")
    });
    let trace = server.stderr();
    let listener = &server.listening[0];
    assert!(
        trace.contains(&format!(
            "poll(timeout=forever) -> 1 event: [listener {listener} readable]"
        )),
        "{trace}"
    );
    assert!(trace.contains("  accepted conn 0 127.0.0.1:"), "{trace}");
    assert!(trace.contains(": read 6 bytes, 1 line\n"), "{trace}");
    // After the read, the poll sleeps only until the idle deadline: about
    // the 300 ms time-out (less, however long the turn took), never forever.
    // Deadlines are kept in whole milliseconds, rounded up, and poll's
    // time-out may have been worked out up to a millisecond earlier: at
    // most 2 ms more (see `DeadlineList` and `Countdown`).
    let after_read = trace
        .split(": read 6 bytes, 1 line\n")
        .nth(1)
        .unwrap_or_default();
    let next_poll = after_read
        .lines()
        .find_map(|line| line.strip_prefix("poll(timeout="))
        .unwrap_or_else(|| panic!("no poll after the read: {trace}"));
    let slept: f64 = next_poll
        .split_once("s)")
        .and_then(|(seconds, _)| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no finite time-out: {next_poll}"));
    assert!(
        slept <= 0.302,
        "slept {slept}s, past the idle deadline: {trace}"
    );
    assert!(!server.stdout().contains("poll("));
}

/// A server with nothing to do never wakes, from its very first `poll`:
/// nothing is due (no clients, no deadlines, no counter left unpublished),
/// so that `poll` sleeps without a bound until the first client arrives.
#[test]
fn a_new_idle_server_sleeps_until_its_first_client() {
    let server = ServerProcess::start(&["--trace-loop"]);
    // Time for a wrongly bounded first poll to return (a few milliseconds
    // would do): a slow machine can only hide such a wake-up, never make
    // one up.
    thread::sleep(Duration::from_millis(200));
    let _client = server.connect();
    wait_until("the client's accept in the trace", || {
        server.stderr().contains("  accepted conn 0 ")
    });
    let trace = server.stderr();
    let first_poll = trace
        .lines()
        .find(|line| line.starts_with("poll("))
        .unwrap_or_default();
    assert_eq!(
        first_poll,
        format!(
            "poll(timeout=forever) -> 1 event: [listener {} readable]",
            server.listening[0]
        ),
        "{trace}"
    );
}

/// An idle close loses nothing either: the unfinished last line is printed
/// before the connection closes.
#[test]
fn idle_close_prints_the_unfinished_line() {
    let server = InProcess::start(|c| c.idle_timeout = Some(Duration::from_millis(300)));
    let mut client = server.connect();
    client.write_all(b"complete\nunfinished-partial").unwrap();
    assert_eq!(read_to_end(&mut client), b"", "closed for idleness");
    server.wait_for_output("close: idle");
    let output = server.stop();
    assert!(output.contains("] complete\n"), "{output}");
    assert!(output.contains("] unfinished-partial\n"), "{output}");
}

/// Under a flood, a connection is read at most once per loop turn: from its
/// event or from the "ready again" list, never both, never twice.
#[test]
fn a_flooding_connection_is_read_once_per_turn() {
    let server =
        ServerProcess::start(&["--format", "none", "--trace-loop", "--idle-timeout", "off"]);
    let mut flooder = server.connect();
    let chunk = vec![b'x'; 64 * 1024];
    let mut line = chunk.clone();
    line.push(b'\n');
    // Flood in rounds of about 1 MiB until a turn has found more than one
    // budget waiting ("ready again"). Bounded in bytes, not in time: the
    // trace stays far below what stderr's queue holds, so no record of it
    // is dropped however slowly the test reads it.
    for round in 0.. {
        assert!(round < 200, "the flood never exceeded one budget");
        for _ in 0..32 {
            flooder.write_all(&chunk[..1000]).unwrap();
            flooder.write_all(b"\n").unwrap();
            flooder.write_all(&line[..32 * 1024]).unwrap();
            flooder.write_all(b"\n").unwrap();
        }
        if server.stderr().contains("ready again") {
            break;
        }
    }
    // Read in order after the flood: once its close is traced, every read
    // of the flood is in the trace.
    flooder.write_all(b"disconnect\n").unwrap();
    wait_until("the flood to be read", || {
        server.stderr().contains(": closed: disconnect")
    });
    let trace = server.stderr();
    assert!(
        !trace.contains("stderr was full"),
        "records dropped: {trace}"
    );
    let mut reads_this_turn = 0;
    let mut worst = 0;
    for line in trace.lines() {
        if line.starts_with("poll(") {
            reads_this_turn = 0;
        } else if line.starts_with("  conn 0 ") && line.contains("read ") {
            reads_this_turn += 1;
            worst = worst.max(reads_this_turn);
        }
    }
    assert!(
        trace.contains("ready again"),
        "the flood never exceeded one budget"
    );
    assert_eq!(worst, 1, "a turn read the same connection {worst} times");
}
