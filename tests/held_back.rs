//! A client the server holds back (backpressure: it does not read its
//! echoes, so the server stopped reading from it) is not idle and not slow:
//! the server is the one not reading. Neither clock runs while it is held
//! back; what bounds it is the write time-out on its pending output.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::*;

/// 35 MB sent to `--echo --idle-timeout 2s` by a client that never reads:
/// it is closed because its output made no progress (`write-timeout`),
/// never as `idle` while it is sending the whole time.
#[test]
fn a_non_reading_sender_is_closed_for_its_unread_output_not_as_idle() {
    let server = ServerProcess::start(&["--echo", "--idle-timeout", "2s"]);
    let client = server.connect();
    let mut writer = client.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let chunk = [b"thirty-five megabytes, never read back\n".as_slice(); 1000].concat();
        let mut sent = 0;
        while sent < 35_000_000 && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    });
    server.wait_for_output("] close: ");
    let output = server.stdout();
    assert!(
        output.contains("] close: write-timeout\n"),
        "{}",
        tail(&output)
    );
    assert!(!output.contains("close: idle"), "{}", tail(&output));
    drop(client);
    sending.join().unwrap();
}

/// The line clock does not run while the server holds a client back: a
/// client that sends long lines, and reads its echoes only after the server
/// has held it back for longer than `--line-timeout`, gets every byte back.
#[test]
fn the_line_clock_stops_while_the_server_holds_a_client_back() {
    let server = ServerProcess::start_with(
        &[
            "--echo",
            "--format",
            "none",
            "--line-timeout",
            "1s",
            "--idle-timeout",
            "20s",
        ],
        |command| {
            // The server says when it holds a client back.
            command.env("RUST_LOG", "warn,selectd::serve::connection=debug");
        },
    );
    let mut client = server.connect();
    let line = [vec![b'x'; 999], vec![b'\n']].concat();
    let all: Vec<u8> = line.repeat(8_000);
    let mut writer = client.try_clone().unwrap();
    let expected = all.len();
    let sending = thread::spawn(move || {
        // Chunks that do not end at line ends: the server is held back
        // with an unfinished line.
        for chunk in all.chunks(65_536) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    wait_until("the server to hold the client back", || {
        server.stderr().contains("pausing reads")
    });
    // Held back, its echoes unread: the pause under test, twice the line
    // time-out (longer on a busy machine, which only makes it harder).
    thread::sleep(Duration::from_secs(2));
    let mut echoed = Vec::new();
    client
        .read_to_end(&mut echoed)
        .expect("every echo, then EOF");
    assert_eq!(echoed.len(), expected);
    sending.join().unwrap();
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(2000)..]
}
