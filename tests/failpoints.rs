//! Faults injected on purpose (`--features failpoints`): whatever part of
//! the server dies, the server as a whole stops, says why, and fails.
//!
//! `fail`'s configuration is global to the process: each test holds a
//! `FailScenario`, which also serialises them.
#![cfg(feature = "failpoints")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::*;
use selectd::{Error, MemorySink};

/// A server with `reactors` loops printing into memory, running on a
/// thread; `clients` connected and spread so that every loop has some.
struct Running {
    addr: String,
    output: MemorySink,
    handle: selectd::ServerHandle,
    thread: thread::JoinHandle<Result<(), Error>>,
    clients: Vec<TcpStream>,
}

fn start(reactors: usize) -> Running {
    let mut server = InProcess::start(|config| {
        config.reactors = reactors;
        config.idle_timeout = None;
    });
    let thread = server.take_run();
    let (addr, output, handle) = (
        server.addr.clone(),
        server.output.clone(),
        server.handle.clone(),
    );
    // Clients until every loop holds at least two (the kernel spreads them).
    let mut clients = Vec::new();
    wait_until("every loop to hold clients", || {
        for _ in 0..10 {
            clients.push(connect(&addr));
        }
        let by_loop = open_by_reactor(&addr);
        by_loop.iter().all(|&open| open >= 2)
    });
    // Every client accepted (and each `stats` asker closed), so that the
    // fault finds them all in a loop, not in a backlog.
    let expected = clients.len();
    wait_until("every client accepted", || {
        handle.stats().open == expected as u64
    });
    Running {
        addr,
        output,
        handle,
        thread,
        clients,
    }
}

/// Open connections by loop, from a `stats` reply (the asker included).
fn open_by_reactor(addr: &str) -> Vec<u64> {
    let mut client = connect(addr);
    client.write_all(b"stats\n").expect("ask");
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).expect("reply");
    let pairs: HashMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    pairs
        .get("open_by_reactor")
        .map(|spread| {
            spread
                .split(',')
                .map(|n| n.parse().expect("count"))
                .collect()
        })
        .unwrap_or_default()
}

impl Running {
    /// Every client says something, so that every loop takes a turn.
    fn poke(&mut self) {
        for client in &mut self.clients {
            let _ = client.write_all(b"poke\n");
        }
    }

    /// Waits for `run` to return, and returns what it returned.
    fn outcome(self) -> (Result<(), Error>, String, Vec<TcpStream>) {
        let thread = self.thread;
        wait_until("the server to stop", || thread.is_finished());
        let result = thread.join().expect("run returns instead of panicking");
        (result, self.output.contents(), self.clients)
    }
}

/// Every client reads its end of stream: the server closed it.
fn assert_every_client_closed(clients: Vec<TcpStream>) {
    for mut client in clients {
        client
            .set_read_timeout(Some(PATIENCE))
            .expect("read time-out");
        let mut rest = Vec::new();
        match client.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("a client was left open: {err}"),
        }
    }
}

/// The loop failed is named, with why; the whole server stopped.
fn assert_failed(result: Result<(), Error>, reactor: usize, why: &str) {
    match result {
        Err(Error::LoopFailed {
            reactor: failed,
            reason,
        }) => {
            assert_eq!(failed, reactor, "{reason}");
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("expected loop {reactor} to fail, got {other:?}"),
    }
}

/// A loop other than the first panics: the server stops as a whole (the
/// others close their clients as at a stop), `run` says which loop failed
/// and why, every client of every loop is closed with a close event, and
/// the open count comes back to zero (no capacity leaks).
#[test]
fn a_second_loop_that_panics_stops_the_whole_server() {
    let scenario = fail::FailScenario::setup();
    let mut server = start(3);
    let opened = server.clients.len();
    fail::cfg("loop-2-turn", "panic(injected)").expect("failpoint");
    server.poke();
    let handle = server.handle.clone();
    let (result, output, clients) = server.outcome();
    fail::remove("loop-2-turn");
    assert_failed(result, 2, "panicked: injected");
    assert_every_client_closed(clients);
    // Every client of the test, and the stats askers, opened and closed.
    let opens = output.matches("] open\n").count();
    let closes = output.matches("] close: ").count();
    assert!(opens >= opened, "{opens} opens for {opened} clients");
    assert_eq!(opens, closes, "every open client has its close event");
    assert!(output.contains("close: error"), "the failed loop's clients");
    assert!(output.contains("close: stop"), "the other loops' clients");
    assert_eq!(handle.stats().open, 0, "{:?}", handle.stats());
    scenario.teardown();
}

/// The first loop (on the caller's thread, with the signals) panics: `run`
/// returns the failure instead of unwinding into the caller, and the other
/// loops do not serve on.
#[test]
fn a_first_loop_that_panics_does_not_leave_the_others_serving() {
    let scenario = fail::FailScenario::setup();
    let mut server = start(2);
    fail::cfg("loop-1-turn", "panic(first)").expect("failpoint");
    server.poke();
    let addr = server.addr.clone();
    let (result, output, clients) = server.outcome();
    fail::remove("loop-1-turn");
    assert_failed(result, 1, "panicked: first");
    assert_every_client_closed(clients);
    assert_eq!(
        output.matches("] open\n").count(),
        output.matches("] close: ").count()
    );
    assert!(
        TcpStream::connect(&addr).is_err(),
        "nothing listens any more"
    );
    scenario.teardown();
}

/// A loop whose `poll` fails ends the server the same way.
#[test]
fn a_loop_whose_poll_fails_stops_the_whole_server() {
    let scenario = fail::FailScenario::setup();
    let mut server = start(3);
    fail::cfg("loop-3-turn", "return").expect("failpoint");
    server.poke();
    let (result, _, clients) = server.outcome();
    fail::remove("loop-3-turn");
    assert_failed(result, 3, "injected failure");
    assert_every_client_closed(clients);
    scenario.teardown();
}

/// The binary: a client's line makes its loop panic (`FAILPOINTS`); the
/// process exits 1 with one line naming the loop and the reason, and every
/// other client is closed, TCP and Unix (handed between loops) alike.
#[test]
fn the_server_exits_1_naming_the_loop_that_failed() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sock");
    let unix = format!("unix:{}", path.display());
    let mut server = ServerProcess::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
            "--reactors",
            "2",
            "--idle-timeout",
            "off",
        ],
        |command| {
            command.env("FAILPOINTS", "client-line=panic(boom)");
        },
    );
    let tcp: Vec<TcpStream> = (0..10).map(|_| server.connect()).collect();
    let local: Vec<UnixStream> = (0..10)
        .map(|_| UnixStream::connect(&path).expect("connect"))
        .collect();
    wait_until("every client open", || {
        server.stdout().matches("] open\n").count() == 20
    });
    let mut culprit = server.connect();
    culprit.write_all(b"failpoint\n").expect("send");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", server.stderr());
    let stderr = server.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: event loop ") && last.ends_with(" failed: panicked: boom"),
        "{stderr}"
    );
    assert_every_client_closed(tcp);
    for mut client in local {
        let mut rest = Vec::new();
        client
            .set_read_timeout(Some(PATIENCE))
            .expect("read time-out");
        let _ = client.read_to_end(&mut rest);
    }
    let stdout = server.stdout();
    assert_eq!(
        stdout.matches("] open\n").count(),
        stdout.matches("] close: ").count(),
        "{stdout}"
    );
    let _ = Duration::ZERO;
}

// ---------------------------------------------------------------------------
// The output writer: writes that fail, a writer that dies, handles dropped
// on several loops at once.
// ---------------------------------------------------------------------------

mod output_faults {
    use std::io::{self, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread;
    use std::time::Duration;

    use selectd::serve::OutputTarget;
    use selectd::{Config, Error, MemorySink, Server};

    use super::common::{PATIENCE, connect, wait_until};

    fn tcp(server: &Server) -> String {
        server.local_addrs()[0]
            .to_string()
            .trim_start_matches("tcp://")
            .to_string()
    }

    /// Rename + `SIGHUP` while every write to the file fails (a full disk:
    /// `ENOSPC`; a failing one: `EIO`): the writer switches to the new file
    /// although it is in the middle of retrying, and what waited goes there.
    /// (The failure ends when the file is reopened, as deleting a full log
    /// frees the disk.)
    #[test]
    fn output_rotation_switches_files_while_writes_fail() {
        let _scenario = fail::FailScenario::setup();
        for errno in ["ENOSPC", "EIO"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out.log");
            let rotated = dir.path().join("out.log.1");
            let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
            config.output = OutputTarget::File(path.clone());
            config.handle_signals = true;
            let server = Server::bind(config).unwrap();
            let addr = tcp(&server);
            let handle = server.handle();
            let running = thread::spawn(move || server.run());

            static RETRYING: AtomicBool = AtomicBool::new(false);
            RETRYING.store(false, Ordering::SeqCst);
            fail::cfg("output-write", &format!("return({errno})")).unwrap();
            fail::cfg_callback("output-retry", || RETRYING.store(true, Ordering::SeqCst)).unwrap();
            // The new file is writable: the failure ends with the reopen.
            fail::cfg_callback("output-reopen", || fail::remove("output-write")).unwrap();

            let mut client = connect(&addr);
            client.write_all(b"waiting line\n").unwrap();
            wait_until("a failed write being retried", || {
                RETRYING.load(Ordering::SeqCst)
            });
            std::fs::rename(&path, &rotated).unwrap();
            // SAFETY: kill(2) on our own process; the server handles SIGHUP.
            assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
            wait_until(
                &format!("{errno}: the waiting line in the new file"),
                || std::fs::read_to_string(&path).is_ok_and(|t| t.contains("] waiting line\n")),
            );
            client.write_all(b"after the rotation\n").unwrap();
            wait_until("the next line in the new file", || {
                std::fs::read_to_string(&path).is_ok_and(|t| t.contains("] after the rotation\n"))
            });
            handle.stop();
            running.join().unwrap().unwrap();
            let old = std::fs::read_to_string(&rotated).unwrap();
            let new = std::fs::read_to_string(&path).unwrap();
            assert!(!old.contains("waiting line"), "{errno}: old file: {old:?}");
            assert_eq!(new.matches("] waiting line\n").count(), 1, "{new:?}");
            fail::remove("output-retry");
            fail::remove("output-reopen");
        }
    }

    /// The writer thread panics: the server stops by itself (nobody asks it
    /// to, a client is still connected) and `run` fails, rather than every
    /// loop waiting for room that never comes.
    #[test]
    fn output_writer_death_stops_the_server_with_an_error() {
        let _scenario = fail::FailScenario::setup();
        fail::cfg("output-writer", "panic(injected writer fault)").unwrap();
        let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
        config.reactors = 2;
        config.grace = Duration::from_secs(1);
        let server = Server::bind(config).unwrap().with_output(MemorySink::new());
        let addr = tcp(&server);
        let running = thread::spawn(move || server.run());
        let mut client = connect(&addr);
        client.write_all(b"the writer dies on this\n").unwrap();
        wait_until("the server to stop by itself", || running.is_finished());
        let result = running.join().expect("run returns, it does not panic");
        assert!(
            matches!(result, Err(Error::OutputClosed)),
            "{:?}",
            result.map_err(|e| e.to_string())
        );
        // The client was closed, not left hanging.
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        let _ = io::Read::read_to_end(&mut client, &mut rest);
    }

    /// A sink that says when it is dropped, which happens when its writer
    /// thread ends.
    struct Watched {
        dropped: Arc<AtomicBool>,
        written: Arc<AtomicUsize>,
    }

    impl Write for Watched {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.fetch_add(buf.len(), Ordering::SeqCst);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    /// Two loops drop their handles on the output at the same moment (made
    /// to meet at the point where a handle decides whether it is the last):
    /// one of them is the last, so the writer ends and its sink is closed.
    #[test]
    fn output_writer_ends_when_two_loops_drop_their_handles_at_once() {
        let _scenario = fail::FailScenario::setup();
        let dropped = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
        config.reactors = 2;
        let server = Server::bind(config).unwrap().with_output(Watched {
            dropped: Arc::clone(&dropped),
            written: Arc::clone(&written),
        });
        let addr = tcp(&server);
        let handle = server.handle();
        // Both loops' handles meet at the decision point (bounded: a loop
        // that never arrives lets the other go on after PATIENCE).
        let meeting = Arc::new((Mutex::new(0usize), Condvar::new()));
        fail::cfg_callback("output-queue-drop", move || {
            let name = thread::current().name().map(str::to_string);
            if !matches!(name.as_deref(), Some("first-loop" | "selectd-reactor-2")) {
                return;
            }
            let (count, arrived) = &*meeting;
            let mut count = count.lock().unwrap();
            *count += 1;
            arrived.notify_all();
            let _ = arrived.wait_timeout_while(count, PATIENCE, |count| *count < 2);
        })
        .unwrap();
        let running = thread::Builder::new()
            .name("first-loop".into())
            .spawn(move || server.run())
            .unwrap();
        let mut client = connect(&addr);
        client.write_all(b"start the writer\n").unwrap();
        wait_until("the line written", || written.load(Ordering::SeqCst) > 0);
        handle.stop();
        running.join().unwrap().unwrap();
        wait_until("the writer to end and close its sink", || {
            dropped.load(Ordering::SeqCst)
        });
    }
}

/// The `selectd` binary whose output writer dies: one line says so, the
/// server stops by itself and exits 1 (the client still connected is
/// closed, not left hanging).
#[test]
fn output_writer_death_is_reported_once_and_exits_1() {
    let mut server = ServerProcess::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--reactors",
            "3",
            "--grace",
            "1s",
        ],
        |command| {
            command.env("FAILPOINTS", "output-writer=panic(injected writer fault)");
        },
    );
    let mut client = server.connect();
    client
        .write_all(b"the writer dies on this\n")
        .expect("send");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", server.stderr());
    let stderr = server.stderr();
    assert_eq!(
        stderr
            .matches("error: the output writer failed (injected writer fault): stopping")
            .count(),
        1,
        "{stderr}"
    );
    client
        .set_read_timeout(Some(PATIENCE))
        .expect("read time-out");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
}
