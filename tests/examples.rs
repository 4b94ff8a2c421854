//! The examples (`examples/`), run as processes: the blocking ports of the
//! notes' programs, and the notes' server on `select(2)` and on `poll(2)`.
//!
//! `cargo test` builds the examples before it runs the tests; a run that
//! did not (`cargo test --test examples` alone) builds them here, once
//! (`common::examples`): these tests never pass without running.
//!
//! Everything is on loopback, on ports the kernel picks; every wait is
//! bounded; time is only ever bounded from below.

mod common;

use common::examples::example;

use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Captured, ServerProcess, capture, connect, cpu_ticks, read_exactly, read_to_end, skip,
    wait_exit, wait_until,
};

/// The notes' separator line.
const SEPARATOR: &str = "----------------\n";

/// The two readiness loops, which serve `selectd serve`'s protocol.
const LOOPS: [&str; 2] = ["select_server", "poll_server"];

/// A process with its stdout and stderr collected as they arrive.
struct Spawned {
    child: Child,
    stdout: Captured,
    stderr: Captured,
}

impl Spawned {
    fn start(program: &PathBuf, args: &[&str]) -> Spawned {
        Spawned::spawn(Command::new(program).args(args))
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()))
    }

    fn spawn(command: &mut Command) -> std::io::Result<Spawned> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        Ok(Spawned {
            child,
            stdout,
            stderr,
        })
    }

    fn stdout(&self) -> String {
        self.stdout.text()
    }

    fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits for a stderr line starting with `prefix`; returns the rest of it.
    fn wait_for_stderr_line(&self, prefix: &str) -> String {
        let mut found = None;
        wait_until(&format!("{prefix:?} on stderr"), || {
            found = self
                .stderr()
                .lines()
                .find_map(|line| line.strip_prefix(prefix).map(str::to_string));
            found.is_some()
        });
        found.expect("found")
    }

    fn wait_for_stdout(&self, needle: &str) {
        wait_until(&format!("{needle:?} on stdout"), || {
            self.stdout().contains(needle)
        });
    }

    /// Waits for the process to exit, and for its pipes to reach EOF.
    fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child);
        self.stdout.wait_eof();
        self.stderr.wait_eof();
        status
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `blocking_server` on an ephemeral loopback port, and that port.
fn blocking_server(extra: &[&str]) -> (Spawned, String) {
    let program = example("blocking_server");
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Spawned::start(&program, &args);
    let addr = server.wait_for_stderr_line("listening on tcp://");
    (server, addr)
}

/// Sends `stop\r\n` as its own chunk and checks the server exits 0.
fn stop(server: &mut Spawned, addr: &str) {
    let mut stopper = connect(addr);
    stopper.write_all(b"stop\r\n").unwrap();
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}; stderr: {}", server.stderr());
    assert_eq!(read_to_end(&mut stopper), b"", "closed after stop");
}

// ---- blocking_server: the notes' server ----

/// Each chunk a client sends is printed stripped; `disconnect` ends that
/// client, which is followed by the separator; `stop` ends the server with
/// exit status 0, after one more separator.
#[test]
fn blocking_server_prints_chunks_and_obeys_disconnect_and_stop() {
    let (mut server, addr) = blocking_server(&[]);
    let mut client = connect(&addr);
    client.write_all(b"  merhaba d\xc3\xbcnya \r\n").unwrap();
    // A chunk is a message: wait until this one is read before sending the
    // next, or both might arrive in one recv and be printed as one.
    server.wait_for_stdout("merhaba dünya\n");
    client.write_all(b"disconnect\r\n").unwrap();
    assert_eq!(read_to_end(&mut client), b"", "the server closed");
    server.wait_for_stdout(&format!("merhaba dünya\n{SEPARATOR}"));

    stop(&mut server, &addr);
    assert_eq!(
        server.stdout(),
        format!("merhaba dünya\n{SEPARATOR}{SEPARATOR}")
    );
}

/// A client silent for the time-out (the notes' `select(.., TIMEOUT)`
/// returning nothing) is dropped: not before the time-out has passed.
#[test]
fn blocking_server_drops_idle_client_after_timeout() {
    let (mut server, addr) = blocking_server(&["--timeout", "500ms"]);
    let start = Instant::now();
    let mut idle = connect(&addr);
    assert_eq!(read_to_end(&mut idle), b"", "the server closed");
    assert!(start.elapsed() >= Duration::from_millis(500));
    server.wait_for_stdout(SEPARATOR);
    // stderr is read by its own thread: wait for it rather than race it.
    wait_until("the idle message on stderr", || {
        server.stderr().contains("silent for 500ms")
    });

    stop(&mut server, &addr);
}

/// A client that closes without `disconnect` ends that client, and the
/// server goes back to waiting in `accept`, using no CPU. The notes' server spun
/// here, printing blank lines forever.
#[test]
fn blocking_server_does_not_spin_at_eof() {
    let (mut server, addr) = blocking_server(&[]);
    let mut leaving = connect(&addr);
    leaving.write_all(b"bye\r\n").unwrap();
    server.wait_for_stdout("bye\n");
    leaving.shutdown(Shutdown::Write).unwrap();
    server.wait_for_stdout(&format!("bye\n{SEPARATOR}"));
    assert_eq!(read_to_end(&mut leaving), b"");

    let pid = server.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    // A spinning process uses about 100 ticks a second; a blocked one none.
    assert!(used < 20, "used {used} clock ticks in 1 s while idle");
    assert_eq!(
        server.stdout(),
        format!("bye\n{SEPARATOR}"),
        "no blank lines"
    );

    // And it still serves the next client.
    let mut next = connect(&addr);
    next.write_all(b"next\r\n").unwrap();
    server.wait_for_stdout("next\n");
    drop(next);
    stop(&mut server, &addr);
}

/// One client at a time: a second client's chunk waits in the backlog
/// until the first client leaves (the notes' limitation, kept on purpose).
#[test]
fn blocking_server_serves_one_client_at_a_time() {
    let (mut server, addr) = blocking_server(&[]);
    let mut first = connect(&addr);
    first.write_all(b"first\r\n").unwrap();
    server.wait_for_stdout("first\n");
    let mut second = connect(&addr); // Completes: the kernel queues it.
    second.write_all(b"second\r\n").unwrap();
    first.write_all(b"still first\r\n").unwrap();
    server.wait_for_stdout("still first\n");
    assert!(!server.stdout().contains("second\n"), "{}", server.stdout());

    first.write_all(b"disconnect\r\n").unwrap();
    server.wait_for_stdout(&format!("still first\n{SEPARATOR}second\n"));
    drop(first);
    second.write_all(b"disconnect\r\n").unwrap();
    assert_eq!(read_to_end(&mut second), b"");
    stop(&mut server, &addr);
}

// ---- blocking_client: the notes' client ----

/// Against `selectd serve --echo`, the client's request comes back byte for
/// byte, fixed (`HTTP/1.0`, CRLF), and the half-close makes selectd finish
/// and close, so the client reads to EOF and exits 0.
#[test]
fn blocking_client_reads_selectd_echo_to_eof() {
    let client = example("blocking_client");
    let server = ServerProcess::start(&["--echo"]);
    let mut fetch = Spawned::start(&client, &[&server.addr, "/sayfa"]);
    let status = fetch.wait_exit();
    assert!(status.success(), "{status:?}: {}", fetch.stderr());
    assert_eq!(fetch.stdout(), "GET /sayfa HTTP/1.0\r\n\r\n");
    server.wait_for_output("] close: eof\n");
    assert!(server.stdout().contains("] GET /sayfa HTTP/1.0\n"));
}

/// Against Python's own `http.server`, the fixed request is a valid HTTP
/// request: the page comes back, headers and body.
#[test]
fn blocking_client_fetches_a_page_from_python_http_server() {
    let client = example("blocking_client");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sayfa.txt"), "merhaba dünya\n").unwrap();
    let python = Spawned::spawn(
        Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.path()),
    );
    let http = match python {
        Ok(http) => http,
        Err(err) => return skip(&format!("cannot run python3: {err}")),
    };
    // "Serving HTTP on 127.0.0.1 port 43617 (http://127.0.0.1:43617/) ..."
    let mut port = None;
    wait_until("python's serving line", || {
        port = http.stdout().lines().find_map(|line| {
            let rest = line.strip_prefix("Serving HTTP on 127.0.0.1 port ")?;
            rest.split_whitespace().next().map(str::to_string)
        });
        port.is_some()
    });
    let addr = format!("127.0.0.1:{}", port.expect("port"));

    let mut fetch = Spawned::start(&client, &[&addr, "/sayfa.txt"]);
    let status = fetch.wait_exit();
    assert!(status.success(), "{status:?}: {}", fetch.stderr());
    let page = fetch.stdout();
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
    assert!(page.ends_with("\r\n\r\nmerhaba dünya\n"), "{page}");
}

/// The two ports talk to each other: the server prints the request as one
/// chunk, and the client's half-close is EOF to it (no spin), so it closes
/// and the client exits 0 with nothing printed.
#[test]
fn blocking_client_against_blocking_server() {
    let client = example("blocking_client");
    let (mut server, addr) = blocking_server(&[]);
    let mut fetch = Spawned::start(&client, &[&addr]);
    let status = fetch.wait_exit();
    assert!(status.success(), "{status:?}: {}", fetch.stderr());
    assert_eq!(fetch.stdout(), "");
    server.wait_for_stdout(&format!("GET / HTTP/1.0\n{SEPARATOR}"));
    stop(&mut server, &addr);
}

/// A refused connection is reported as the notes' client would have seen it:
/// `socket.error`, with the `io::ErrorKind`, and exit status 1.
#[test]
fn blocking_client_names_the_python_exception() {
    let client = example("blocking_client");
    // A port that was free a moment ago: nothing listens there now.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut fetch = Spawned::start(&client, &[&addr]);
    let status = fetch.wait_exit();
    assert_eq!(status.code(), Some(1));
    let stderr = fetch.stderr();
    assert!(stderr.starts_with(&format!("blocking_client: cannot connect to {addr}: ")));
    assert!(
        stderr.contains("(socket.error, io::ErrorKind::ConnectionRefused)"),
        "{stderr}"
    );
}

// ---- select_server and poll_server: every client at once ----

/// `name` (one of [`LOOPS`]) on an ephemeral loopback port, and that port.
fn readiness_server(name: &str, extra: &[&str]) -> (Spawned, String) {
    let program = example(name);
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Spawned::start(&program, &args);
    let addr = server.wait_for_stderr_line("listening on tcp://");
    (server, addr)
}

/// Sends `stop` from a new client; the server closes everyone and exits 0.
fn stop_loop(server: &mut Spawned, addr: &str) {
    let mut stopper = connect(addr);
    stopper.write_all(b"stop\n").unwrap();
    assert_eq!(read_to_end(&mut stopper), b"", "closed after stop");
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}; stderr: {}", server.stderr());
}

/// The local address of `stream` as the server prints its peer.
fn peer_of(stream: &std::net::TcpStream) -> String {
    stream.local_addr().unwrap().to_string()
}

/// Many clients are served at once by one thread: each line is printed
/// with its sender (`[PEER] line`) and echoed back, while every client
/// stays connected; `stop` then closes each of them (`close: stop`).
#[test]
fn readiness_loops_serve_many_clients_at_once() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &["--echo"]);
        let mut clients: Vec<_> = (0..50).map(|_| connect(&addr)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .write_all(format!("merhaba {i}\n").as_bytes())
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let line = format!("merhaba {i}\n");
            assert_eq!(read_exactly(client, line.len()), line.as_bytes(), "{name}");
            server.wait_for_stdout(&format!("[{}] merhaba {i}\n", peer_of(client)));
        }
        stop_loop(&mut server, &addr);
        let stdout = server.stdout();
        for client in &clients {
            let peer = peer_of(client);
            assert!(
                stdout.contains(&format!("* [{peer}] open\n")),
                "{name}: {stdout}"
            );
            assert!(
                stdout.contains(&format!("* [{peer}] close: stop\n")),
                "{name}: {stdout}"
            );
        }
    }
}

/// `disconnect` closes only the client that sent it, and nothing it sent
/// after it is acted on; the others go on being served.
#[test]
fn readiness_loops_disconnect_closes_only_that_client() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &[]);
        let mut staying = connect(&addr);
        let mut leaving = connect(&addr);
        leaving
            .write_all(b"bye\r\n  disconnect \r\nafter\n")
            .unwrap();
        assert_eq!(read_to_end(&mut leaving), b"", "{name}: closed");
        let gone = peer_of(&leaving);
        server.wait_for_stdout(&format!("* [{gone}] close: disconnect\n"));
        staying.write_all(b"still here\n").unwrap();
        server.wait_for_stdout(&format!("[{}] still here\n", peer_of(&staying)));
        stop_loop(&mut server, &addr);
        let stdout = server.stdout();
        assert!(
            stdout.contains(&format!("[{gone}] bye\n")),
            "{name}: {stdout}"
        );
        assert!(!stdout.contains("after"), "{name}: {stdout}");
    }
}

/// A line split across reads is framed whole, and two lines in one read
/// are two lines: the notes' chunk-as-message fault is gone.
#[test]
fn readiness_loops_frame_lines_across_reads() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &[]);
        let mut split = connect(&addr);
        split.write_all(b"hel").unwrap();
        // Once another client's line is printed, a turn has run after "hel"
        // reached the server: level-triggered, that turn read it.
        let mut other = connect(&addr);
        other.write_all(b"marker\n").unwrap();
        server.wait_for_stdout(&format!("[{}] marker\n", peer_of(&other)));
        split.write_all(b"lo\nsecond\nstop").unwrap();
        let peer = peer_of(&split);
        server.wait_for_stdout(&format!("[{peer}] hello\n[{peer}] second\n"));
        // "stop" without its newline is not a command yet.
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "{name} stopped early"
        );
        split.write_all(b"\n").unwrap();
        let status = server.wait_exit();
        assert!(status.success(), "{name}: {status:?}");
    }
}

/// A client silent for the idle time-out (the notes' `select(.., TIMEOUT)`
/// returning nothing) is closed (`close: idle`), not before the time-out;
/// an active client is kept meanwhile.
#[test]
fn readiness_loops_close_idle_clients_after_the_timeout() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &["--idle-timeout", "500ms"]);
        let start = Instant::now();
        let mut idle = connect(&addr);
        assert_eq!(read_to_end(&mut idle), b"", "{name}: closed");
        assert!(start.elapsed() >= Duration::from_millis(500), "{name}");
        server.wait_for_stdout(&format!("* [{}] close: idle\n", peer_of(&idle)));
        stop_loop(&mut server, &addr);
    }
}

/// A client that closes without `disconnect` has its unfinished last line
/// printed and is closed (`close: eof`); the server then sleeps in its
/// wait, using no CPU. The notes' server spun here forever.
#[test]
fn readiness_loops_close_at_eof_without_spinning() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &["--idle-timeout", "off"]);
        let mut leaving = connect(&addr);
        leaving.write_all(b"last words").unwrap();
        leaving.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut leaving), b"", "{name}");
        let peer = peer_of(&leaving);
        server.wait_for_stdout(&format!("[{peer}] last words\n* [{peer}] close: eof\n"));
        let pid = server.child.id();
        let before = cpu_ticks(pid);
        thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(pid) - before;
        assert!(
            used < 20,
            "{name} used {used} clock ticks in 1 s while idle"
        );
        stop_loop(&mut server, &addr);
    }
}

/// The FD_SETSIZE wall: with 1015 descriptors held, clients soon get
/// descriptor 1024, which no `fd_set` can hold. select_server refuses that
/// client (`error: server full`, and a line on stderr naming the
/// descriptor) and keeps serving those it has.
#[test]
fn select_server_refuses_descriptors_past_fd_setsize_and_serves_the_rest() {
    let (mut server, addr) = readiness_server("select_server", &["--echo", "--hold-fds", "1015"]);
    let mut served = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        // Nothing is sent before the verdict: closing a socket with unread
        // bytes resets it, and the message could be lost.
        let mut client = connect(&addr);
        let peer = peer_of(&client);
        let opened = format!("* [{peer}] open\n");
        let refusal = format!("select_server: refusing {peer}: ");
        wait_until("the client opened or refused", || {
            server.stdout().contains(&opened) || server.stderr().contains(&refusal)
        });
        if server.stdout().contains(&opened) {
            served.push(client);
        } else {
            assert_eq!(read_to_end(&mut client), selectd::serve::SERVER_FULL);
            refused = Some(client);
            break;
        }
    }
    assert!(
        refused.is_some(),
        "no client was refused; stderr: {}",
        server.stderr()
    );
    assert!(!served.is_empty(), "the wall came before any client");
    let stderr = server.stderr();
    assert!(
        stderr
            .contains("its descriptor 1024 is past FD_SETSIZE (1024), the most select() can watch"),
        "{stderr}"
    );
    // Those below the wall are still served.
    for client in &mut served {
        client.write_all(b"still\n").unwrap();
        assert_eq!(read_exactly(client, 6), b"still\n");
    }
    // A new stopper would meet the wall too: one of those served stops it.
    served[0].write_all(b"stop\n").unwrap();
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
}

/// poll has no such wall: clients whose descriptors are past 1024 are
/// served like any other.
#[test]
fn poll_server_serves_descriptors_past_fd_setsize() {
    let (mut server, addr) = readiness_server("poll_server", &["--echo", "--hold-fds", "1100"]);
    let mut clients: Vec<_> = (0..5).map(|_| connect(&addr)).collect();
    for client in &mut clients {
        client.write_all(b"ping\n").unwrap();
        assert_eq!(read_exactly(client, 5), b"ping\n");
    }
    stop_loop(&mut server, &addr);
    assert!(!server.stderr().contains("refusing"), "{}", server.stderr());
}

/// Only whole lines are commands: `stop` inside a longer line, or a
/// `disconnect` that is only part of one, is printed.
#[test]
fn readiness_loops_print_lines_that_only_contain_commands() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &[]);
        let mut client = connect(&addr);
        client.write_all(b"stopping\nno disconnect\n").unwrap();
        let peer = peer_of(&client);
        server.wait_for_stdout(&format!("[{peer}] stopping\n[{peer}] no disconnect\n"));
        stop_loop(&mut server, &addr);
    }
}

/// With `--echo`, a client that sends 1.6 MB in one go gets every byte
/// back, in order, however the loop's reads, partial writes and
/// backpressure (no reading past 1 MiB of unsent echo) cut the stream.
#[test]
fn readiness_loops_echo_a_flood_byte_for_byte() {
    for name in LOOPS {
        let (mut server, addr) = readiness_server(name, &["--echo", "--format", "none"]);
        let client = connect(&addr);
        let sent: Vec<u8> = (0..60_000)
            .flat_map(|i| format!("line {i:>10} of the flood\n").into_bytes())
            .collect();
        let mut writer = client.try_clone().unwrap();
        let to_send = sent.clone();
        let writing = thread::spawn(move || writer.write_all(&to_send));
        let mut reader = client;
        let echoed = read_exactly(&mut reader, sent.len());
        writing.join().unwrap().unwrap();
        assert!(
            echoed == sent,
            "{name}: the echo differs from what was sent"
        );
        stop_loop(&mut server, &addr);
    }
}
