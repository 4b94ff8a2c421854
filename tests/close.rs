//! How a connection ends: what an unfinished last line means at each kind
//! of close, which reason the close gives, and that a client the server
//! closes on purpose reads everything it was told before the end.

mod common;

use std::io::{Read, Write};

use common::*;

/// Only a clean EOF finishes an unterminated last line. A client that
/// resets after `hello\nstop` (no newline) has its `stop` printed, not
/// obeyed: with `--echo` too, where the echo of `hello` may fail first.
/// Both orders are tried: the reset arriving with the bytes, and after the
/// server already holds `stop` as an unfinished line.
#[test]
fn a_reset_after_an_unfinished_stop_prints_it_and_keeps_serving() {
    for args in [&[][..], &["--echo"][..]] {
        for held_first in [false, true] {
            let server = ServerProcess::start(args);
            let mut client = server.connect();
            client.write_all(b"hello\nstop").unwrap();
            if held_first {
                // One small write is one segment, read whole: once `hello`
                // is printed, the server holds `stop` as an unfinished line.
                server.wait_for_output("] hello\n");
            }
            reset(client);
            server.wait_for_output("] stop\n");
            let mut next = server.connect();
            next.write_all(b"still serving\n").unwrap();
            server.wait_for_output("] still serving\n");
            let output = server.stdout();
            assert!(
                !output.contains("close: stop"),
                "{args:?} held first: {held_first} {output}"
            );
        }
    }
}

/// The client that sends `stop` is closed with reason `stop`, even when it
/// half-closes right after (its EOF may be read before the server stops),
/// and `--trace-loop` shows that a stop was received.
#[test]
fn the_client_that_stops_the_server_closes_with_reason_stop() {
    for round in 0..5 {
        let mut server = ServerProcess::start(&["--trace-loop"]);
        let mut client = server.connect();
        send_and_shutdown(&mut client, b"stop\n");
        assert!(server.wait_exit().success());
        let output = server.stdout();
        assert!(
            output.contains("] close: stop\n"),
            "round {round}: {output}"
        );
        assert!(!output.contains("close: eof"), "round {round}: {output}");
        let trace = server.stderr();
        assert!(
            trace.contains(": stop requested\n"),
            "round {round}: {trace}"
        );
    }
}

/// `closed_stop` counts the stopping client as well.
#[test]
fn the_stopping_client_is_counted_as_closed_by_stop() {
    let mut server = InProcess::start(|_| {});
    let mut client = server.connect();
    send_and_shutdown(&mut client, b"stop\n");
    server.join();
    let counters = server.handle.stats();
    assert_eq!(counters.closed_for(selectd::CloseReason::Stop), 1);
    assert_eq!(counters.closed_for(selectd::CloseReason::Eof), 0);
}

/// Reads until EOF; a reset is returned as the error it is.
fn read_all(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => Ok(all),
        Err(err) => Err(std::io::Error::new(
            err.kind(),
            format!("{err} after reading {:?}", String::from_utf8_lossy(&all)),
        )),
    }
}

/// A client beyond `--max-conns` always reads `error: server full` and then
/// a clean EOF, though it sent a line the server never reads: the server
/// shuts down its side and drains what the client sends before it closes
/// (a bounded lingering close), so the kernel never answers with a reset.
#[test]
fn a_refused_client_always_reads_server_full() {
    let server = ServerProcess::start(&["--max-conns", "1", "--idle-timeout", "off"]);
    let mut holder = server.connect();
    holder.write_all(b"here first\n").unwrap();
    server.wait_for_output("] here first\n");
    for round in 0..50 {
        let mut client = server.connect();
        client.write_all(b"hello, anyone?\n").unwrap();
        // Like `selectd send`: more input while the answer is on its way.
        let _ = client.write_all(b"more input\n");
        let got = read_all(&mut client).unwrap_or_else(|err| panic!("round {round}: {err}"));
        assert_eq!(got, selectd::serve::SERVER_FULL, "round {round}");
    }
}

/// After `disconnect`, the client reads every reply owed to it and a clean
/// EOF, even while it is still sending: the server lingers the same way.
#[test]
fn after_disconnect_the_client_reads_its_replies_and_a_clean_eof() {
    let server = ServerProcess::start(&["--echo"]);
    for round in 0..50 {
        let mut client = server.connect();
        client.write_all(b"reply\ndisconnect\n").unwrap();
        for _ in 0..20 {
            if let Err(err) = client.write_all(b"more after disconnect\n") {
                panic!("round {round}: writing after disconnect: {err}");
            }
        }
        let got = read_all(&mut client).unwrap_or_else(|err| panic!("round {round}: {err}"));
        assert_eq!(got, b"reply\n", "round {round}");
    }
}
