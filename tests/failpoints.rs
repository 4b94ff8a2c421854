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
use selectd::{Config, Error, MemorySink, Server};

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
    let mut config = Config::listening_on("127.0.0.1:0".parse().expect("address"));
    config.reactors = reactors;
    config.idle_timeout = None;
    let output = MemorySink::new();
    let server = Server::bind(config)
        .expect("bind")
        .with_output(output.clone());
    let addr = server.local_addrs()[0]
        .to_string()
        .trim_start_matches("tcp://")
        .to_string();
    let handle = server.handle();
    let thread = thread::spawn(move || server.run());
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
