//! `selectd serve --echo`: the write path under everything a network does:
//! partial writes, slow and absent readers, floods, half-closes and resets.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;

/// Lines `0..n`, each `line NNNNNNNN` + padding + `\n`, `size` bytes long.
fn numbered_lines(n: usize, size: usize) -> Vec<u8> {
    let mut all = Vec::with_capacity(n * size);
    for i in 0..n {
        let start = all.len();
        write!(all, "line {i:08} ").unwrap();
        all.resize(start + size - 1, b'.');
        all.push(b'\n');
    }
    all
}

/// Writes `bytes` on a thread (so the test can read at the same time), then
/// half-closes; returns the thread.
fn write_in_background(stream: &TcpStream, bytes: Vec<u8>) -> thread::JoinHandle<()> {
    let mut writer = stream.try_clone().unwrap();
    thread::spawn(move || {
        writer.write_all(&bytes).expect("write all");
        writer.shutdown(Shutdown::Write).unwrap();
    })
}

/// 20,000 pipelined lines come back byte for byte, in order; after the
/// client's half-close every byte is still delivered, then EOF.
#[test]
fn pipelined_lines_echoed_in_order_then_eof() {
    let server = ServerProcess::start(&["--echo", "--format", "none"]);
    let mut client = server.connect();
    let sent = numbered_lines(20_000, 48);
    let writer = write_in_background(&client, sent.clone());
    let received = read_to_end(&mut client);
    writer.join().unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "echo differs from what was sent");
}

/// Commands act and are not echoed; an unterminated tail at EOF is echoed.
#[test]
fn commands_are_not_echoed_and_the_tail_is() {
    let server = InProcess::start(|c| c.echo = true);
    let mut client = server.connect();
    send_and_shutdown(&mut client, b"one\r\ntwo\nlast");
    assert_eq!(read_to_end(&mut client), b"one\r\ntwo\nlast");
    let mut leaving = server.connect();
    leaving.write_all(b"a\ndisconnect\nb\n").unwrap();
    assert_eq!(read_to_end(&mut leaving), b"a\n");
}

/// A client with a tiny receive buffer sends megabytes and reads only once
/// the server holds it back: backpressure keeps the rest in the kernel, and
/// every byte arrives in order.
#[test]
fn tiny_receive_buffer_gets_every_byte_after_backpressure() {
    const HIGH_WATERMARK: usize = 64 * 1024;
    let server = InProcess::start(|c| {
        c.echo = true;
        c.idle_timeout = None;
        c.high_watermark = HIGH_WATERMARK;
        c.low_watermark = HIGH_WATERMARK / 4;
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut client: TcpStream = socket.into();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // 8 MB: more than the kernel's buffers (a few MB on loopback) and the
    // high watermark together.
    let sent = numbered_lines(100_000, 80);
    let writer = write_in_background(&client, sent.clone());
    // Not reading: the server's unsent output grows past the high
    // watermark, where it stops reading from this client.
    wait_until("the server to hold the client back", || {
        let stats = server.stats();
        stats.bytes_in.saturating_sub(stats.bytes_out) > HIGH_WATERMARK as u64
    });
    let received = read_to_end(&mut client);
    writer.join().unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent);
}

/// A client that sends without ever reading holds bounded server memory,
/// and meanwhile a second client is served promptly.
#[test]
fn never_reading_client_is_bounded_and_others_are_served() {
    let server = ServerProcess::start(&["--echo", "--format", "none", "--idle-timeout", "off"]);
    let baseline_kib = server.rss_kib();
    let hog = server.connect();
    hog.set_nonblocking(true).unwrap();
    let line = [b'x'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let mut accepted = 0usize;
    let start = Instant::now();
    let mut quiet = server.connect();
    let mut round_trips = 0;
    // Until the server has stopped reading the hog: 20 round trips of the
    // quiet client in a row during which the hog could not send a byte.
    let mut stuck = 0;
    while stuck < 20 {
        assert!(
            start.elapsed() < PATIENCE,
            "the hog was never held back ({accepted} bytes taken)"
        );
        // Push as much as the kernel takes from the hog...
        let before = accepted;
        for _ in 0..256 {
            match (&hog).write(&line) {
                Ok(n) => accepted += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("hog write failed: {e}"),
            }
        }
        stuck = if accepted == before { stuck + 1 } else { 0 };
        // ...while the quiet client keeps getting answers (a starved one
        // would wait for them until `PATIENCE`).
        quiet.write_all(b"ping\n").unwrap();
        assert_eq!(read_exactly(&mut quiet, 5), b"ping\n");
        round_trips += 1;
    }
    assert!(
        round_trips > 10,
        "quiet client starved: {round_trips} round trips"
    );
    let grown_kib = server.rss_kib().saturating_sub(baseline_kib);
    // 1 MiB high watermark + one 64 KiB read + allocator slack.
    assert!(grown_kib < 8 * 1024, "server grew by {grown_kib} KiB");
    // The hog could only fill the kernel buffers and the watermark.
    assert!(accepted < 64 << 20, "hog pushed {accepted} bytes");
}

/// A flood on one connection does not starve a quiet one: its round trips
/// keep completing while megabytes pour in beside it.
#[test]
fn flooder_does_not_starve_a_quiet_client() {
    let server = ServerProcess::start(&["--echo", "--format", "none", "--idle-timeout", "off"]);
    let flooder = server.connect();
    let mut drain = flooder.try_clone().unwrap();
    let drainer = thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0usize;
        while let Ok(n) = drain.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    // The flood pours until the quiet client is done: a starved client,
    // which would wait for the whole flood, would wait forever (and fail
    // when its read times out), however fast or slow the machine.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writer = flooder.try_clone().unwrap();
    let pouring = std::sync::Arc::clone(&done);
    let flood = thread::spawn(move || {
        let chunk = numbered_lines(16_000, 64); // 1 MB
        let mut sent = 0;
        while !pouring.load(std::sync::atomic::Ordering::Relaxed) {
            writer.write_all(&chunk).expect("flood");
            sent += chunk.len();
        }
        writer.shutdown(Shutdown::Write).unwrap();
        sent
    });
    let mut quiet = server.connect();
    for i in 0..50 {
        let msg = format!("quiet {i}\n");
        quiet.write_all(msg.as_bytes()).unwrap();
        assert_eq!(read_exactly(&mut quiet, msg.len()), msg.as_bytes());
    }
    assert!(!flood.is_finished(), "the flood stopped on its own");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_eq!(drainer.join().unwrap(), sent);
}

/// A client that resets while the server still has output for it is closed
/// (`reset` or `broken-pipe`) and the server carries on.
#[test]
fn write_to_a_reset_client_closes_only_it() {
    let mut high_watermark = 0;
    let server = InProcess::start(|c| {
        c.echo = true;
        c.idle_timeout = None;
        high_watermark = c.high_watermark as u64;
    });
    let client = server.connect();
    client.set_nonblocking(true).unwrap();
    let chunk = numbered_lines(1000, 64);
    let start = Instant::now();
    // Fill everything: our receive buffer, the server's output buffer, until
    // the server holds output it cannot send (more than its high watermark).
    loop {
        let stats = server.stats();
        if stats.bytes_in.saturating_sub(stats.bytes_out) > high_watermark {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "the server never held output");
        match (&client).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Nothing to do until the server reads: do not spin.
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
    reset(client);
    wait_until("the reset client closed", || {
        let out = server.output();
        out.contains("close: reset") || out.contains("close: broken-pipe")
    });
    let mut next = server.connect();
    next.write_all(b"after\n").unwrap();
    assert_eq!(read_exactly(&mut next, 6), b"after\n");
}

/// At `stop`, output still waiting for a slow reader is flushed before the
/// server exits.
#[test]
fn stop_flushes_pending_output() {
    let mut server = ServerProcess::start(&["--echo", "--idle-timeout", "off"]);
    let mut slow = server.connect();
    let sent = numbered_lines(8000, 64); // 512 KB: below the high watermark
    slow.write_all(&sent).unwrap();
    server.wait_for_output("] line 00007999");
    let mut stopper = server.connect();
    stopper.write_all(b"stop\n").unwrap();
    let received = read_to_end(&mut slow);
    assert!(
        received == sent,
        "got {} of {} bytes",
        received.len(),
        sent.len()
    );
    assert!(server.wait_exit().success());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// However a byte stream is cut into writes, the server prints the same
    /// lines and echoes exactly the bytes of the non-command lines.
    #[test]
    fn any_split_prints_and_echoes_the_same(
        lines in proptest::collection::vec("[a-z çğ]{0,12}(\r)?", 1..30),
        cuts in proptest::collection::vec(1usize..40, 0..15),
    ) {
        let server = InProcess::start(|c| c.echo = true);
        let mut input = Vec::new();
        for line in &lines {
            input.extend_from_slice(line.as_bytes());
            input.push(b'\n');
        }
        let mut client = server.connect();
        let mut at = 0;
        for cut in cuts {
            let end = (at + cut).min(input.len());
            client.write_all(&input[at..end]).unwrap();
            at = end;
            // This piece is read before the next is sent: a cut is a read.
            server.wait_bytes_in(at as u64);
        }
        client.write_all(&input[at..]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let echoed = read_to_end(&mut client);
        server.wait_for_output("close: eof");
        let printed: Vec<String> = server
            .output()
            .lines()
            .filter(|l| l.starts_with('['))
            .map(|l| l.split_once("] ").unwrap().1.to_string())
            .collect();
        let expected_echo: Vec<u8> = input.clone();
        let expected_print: Vec<String> = lines.iter().map(|l| l.trim_end_matches('\r').to_string()).collect();
        prop_assert_eq!(echoed, expected_echo);
        prop_assert_eq!(printed, expected_print);
    }
}

/// Fills the server's output for `client`: sends lines without reading
/// until the server says it holds the client back (`pausing reads`, logged
/// at debug level by `selectd::serve::connection`: start the server with
/// [`HELD_BACK_LOG`] in `RUST_LOG`).
fn fill_without_reading(client: &TcpStream, server: &ServerProcess) {
    client.set_nonblocking(true).unwrap();
    let chunk = numbered_lines(1000, 64);
    let start = Instant::now();
    while !server.stderr().contains("pausing reads") {
        assert!(start.elapsed() < PATIENCE, "the server never held output");
        match (&*client).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Nothing to do until the server reads: do not spin.
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The log directive under which the server says it holds a client back.
const HELD_BACK_LOG: &str = "selectd::serve::connection=debug";

/// At `stop`, a client that never reads cannot hold the server: after the
/// grace period it is closed anyway, and the server exits 0.
#[test]
fn stop_gives_up_on_a_non_reader_after_the_grace_period() {
    let args = [
        "--echo",
        "--format",
        "none",
        "--idle-timeout",
        "off",
        "--grace",
        "700ms",
    ];
    let mut server = ServerProcess::start_with(&args, |command| {
        command.env("RUST_LOG", format!("warn,{HELD_BACK_LOG}"));
    });
    let hog = server.connect();
    fill_without_reading(&hog, &server);
    let stopped_at = Instant::now();
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "exited before the grace period: {took:?}"
    );
    assert!(
        server.stderr().contains("grace period over"),
        "{}",
        server.stderr()
    );
}

/// A second SIGTERM (or SIGINT) stops at once, without waiting for the
/// grace period.
#[test]
fn second_signal_stops_at_once() {
    let args = [
        "--echo",
        "--format",
        "none",
        "--idle-timeout",
        "off",
        "--grace",
        "60s",
    ];
    let mut server = ServerProcess::start_with(&args, |command| {
        command.env("RUST_LOG", format!("info,{HELD_BACK_LOG}"));
    });
    let hog = server.connect();
    fill_without_reading(&hog, &server);
    server.signal(libc::SIGTERM);
    wait_until("the first signal's stop", || {
        server.stderr().contains("stopping")
    });
    assert!(server.child.try_wait().unwrap().is_none(), "still flushing");
    server.signal(libc::SIGINT);
    assert!(server.wait_exit().success());
    assert!(server.stderr().contains("stopping now"));
}

/// A reply that fails (the client reset) does not cost the lines already
/// received: every line of the read, and the unfinished one, is printed.
#[test]
fn a_failed_reply_loses_no_received_line() {
    for _ in 0..5 {
        let server = InProcess::start(|c| c.echo = true);
        let mut client = server.connect();
        client.write_all(b"hel").unwrap();
        // "hel" is held as an unfinished line before the rest arrives.
        server.wait_bytes_in(3);
        client.write_all(b"lo\nworld\nfoo\npartial").unwrap();
        reset(client);
        server.wait_for_output("close: reset");
        let output = server.output();
        for line in ["hello", "world", "foo", "partial"] {
            assert!(
                output.contains(&format!("] {line}\n")),
                "{line} lost: {output}"
            );
        }
    }
}

/// TCP urgent data (`MSG_OOB`) cuts a read short at its mark: the bytes
/// queued behind it are still read and echoed, the urgent byte included.
#[test]
fn urgent_data_does_not_strand_the_rest() {
    use std::os::fd::AsRawFd;
    let server = InProcess::start(|c| c.echo = true);
    for _ in 0..10 {
        let mut client = server.connect();
        let urgent = b"a\nbX";
        // SAFETY: send(2) on a connected socket we own, from a live buffer.
        let sent = unsafe {
            libc::send(
                client.as_raw_fd(),
                urgent.as_ptr().cast(),
                urgent.len(),
                libc::MSG_OOB,
            )
        };
        assert_eq!(sent, urgent.len() as isize);
        client.write_all(b"c\nd\n").unwrap();
        assert_eq!(read_exactly(&mut client, 8), b"a\nbXc\nd\n");
    }
}

/// Bytes sent on `stream` that the peer's kernel has not acknowledged yet
/// (`SIOCOUTQ`).
fn unacknowledged(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through a pointer to a live one.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    assert_eq!(
        rc,
        0,
        "ioctl(TIOCOUTQ): {}",
        std::io::Error::last_os_error()
    );
    queued as usize
}

/// A reply that fails because the client reset does not cut a line the
/// client finished: the bytes the server's kernel received before the
/// reset are still read, so every line is printed whole, and no fragment
/// of one is printed as a line of its own.
///
/// The server is paused (SIGSTOP) while the client sends 7-byte lines (no
/// read of a power-of-two size ends between two of them), waits until the
/// server's kernel holds them all, and resets; once resumed, the server's
/// first read ends mid-line and the echo of that read fails.
#[test]
fn a_failed_reply_does_not_cut_a_finished_line() {
    let mut server = ServerProcess::start(&["--echo", "--idle-timeout", "off"]);
    let client = server.connect();
    let peer = client.local_addr().unwrap().to_string();
    // 84 KB: more than one read, less than a fresh connection's window.
    let lines: Vec<String> = (0..12_000).map(|i| format!("{i:06}")).collect();
    let bytes: String = lines.iter().map(|l| format!("{l}\n")).collect();
    server.signal(libc::SIGSTOP);
    let sent = (&client).write_all(bytes.as_bytes());
    let delivered = wait_for(PATIENCE, || unacknowledged(&client) == 0);
    reset(client);
    server.signal(libc::SIGCONT);
    sent.expect("send to the paused server");
    assert!(delivered, "the paused server's kernel did not take 84 KB");
    server.wait_for_output(&format!("* [{peer}] close: "));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
    let output = server.stdout();
    let printed: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("[{peer}] ")))
        .collect();
    let cut: Vec<&&str> = printed.iter().filter(|l| l.len() != 6).collect();
    assert!(cut.is_empty(), "lines cut short: {cut:?}");
    assert!(
        printed == lines,
        "{} of {} lines printed",
        printed.len(),
        lines.len()
    );
}

/// `--max-line off` makes raw echo work for binary files, whose "lines" may
/// be any length: a file with a 1 MiB run of zeros comes back byte for byte
/// through `selectd send ADDR < FILE` (the README's example), while the
/// server's memory stays bounded by the watermarks, not by the line.
#[test]
fn raw_echo_of_a_binary_file_with_max_line_off() {
    let server = ServerProcess::start(&["--echo", "--max-line", "off", "--format", "none"]);
    let mut file = b"a text line first\n".to_vec();
    // A line of a MiB of zeros whose last bytes read `stop`: the tail of a
    // long line is never a command.
    file.extend(vec![0u8; 1 << 20]);
    file.extend(b"stop\n");
    file.extend((0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    file.extend(vec![0u8; 1 << 20]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &file).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
        .args(["send", &server.addr])
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).unwrap();
        all
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < PATIENCE, "send did not finish");
        thread::sleep(Duration::from_millis(10));
    };
    let echoed = reader.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        echoed == file,
        "echo differs ({} of {} bytes)",
        echoed.len(),
        file.len()
    );
    // The server did not take the tail of the long line for `stop`.
    let mut next = server.connect();
    next.write_all(b"still serving\n").unwrap();
    assert_eq!(read_exactly(&mut next, 14), b"still serving\n");
}

/// With `--max-line off`, a single 48 MiB line is echoed whole while the
/// server's peak memory stays far below the line's size: a line is handed
/// on in pieces, never held, and the echo is bounded by the watermarks.
#[test]
fn a_line_with_no_limit_is_never_held_whole() {
    let server = ServerProcess::start(&["--echo", "--max-line", "off", "--format", "none"]);
    let mut client = server.connect();
    const SIZE: usize = 48 << 20;
    let mut line = vec![b'z'; SIZE];
    line.push(b'\n');
    let writer = write_in_background(&client, line);
    let mut echoed = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match client.read(&mut buf).expect("echo") {
            0 => break,
            n => echoed += n,
        }
    }
    writer.join().unwrap();
    assert_eq!(echoed, SIZE + 1);
    let peak_kib = server.peak_rss_kib();
    assert!(
        peak_kib < 24 * 1024,
        "peak RSS {peak_kib} KiB for a 48 MiB line"
    );
}
