//! `--reactors N`: several event loops, one server. Connections spread over
//! the loops; limits, stop, signals, counters and output stay the server's.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::thread;

use common::*;

/// Sends `stats` on a fresh local client and returns the reply's pairs.
fn stats(addr: &str) -> HashMap<String, String> {
    let mut client = connect(addr);
    client.write_all(b"stats\n").unwrap();
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix("stats ")
        .unwrap_or_else(|| panic!("not a stats reply: {line:?}"))
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Open connections by reactor, from `stats` (the asking client included).
fn open_by_reactor(addr: &str) -> Vec<u64> {
    stats(addr)["open_by_reactor"]
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Waits until `open_by_reactor` adds up to `total` (each loop publishes
/// its count once per turn), and returns it.
fn settled_spread(addr: &str, total: u64) -> Vec<u64> {
    let mut spread = Vec::new();
    wait_until(&format!("{total} connections counted"), || {
        spread = open_by_reactor(addr);
        spread.iter().sum::<u64>() == total
    });
    spread
}

fn assert_even(spread: &[u64]) {
    let mean = spread.iter().sum::<u64>() as f64 / spread.len() as f64;
    for &held in spread {
        assert!(
            (held as f64) <= 1.5 * mean,
            "a reactor holds {held}, more than 1.5x the mean {mean:.1}: {spread:?}"
        );
    }
}

/// With N reactors and 100·N TCP clients, the kernel (SO_REUSEPORT) spreads
/// them: no reactor holds more than 1.5x the mean.
#[test]
fn tcp_clients_spread_over_the_reactors() {
    let server = ServerProcess::start(&["--reactors", "2", "--idle-timeout", "off"]);
    let clients: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    let spread = settled_spread(&server.addr, 201);
    assert_eq!(spread.len(), 2);
    assert_even(&spread);
    drop(clients);
}

/// Unix clients cannot be spread by the kernel: the first reactor accepts
/// them and hands them round.
#[test]
fn unix_clients_are_handed_round() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sock");
    let unix = format!("unix:{}", path.display());
    let server = ServerProcess::start(&[
        "--reactors",
        "3",
        "--idle-timeout",
        "off",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix,
    ]);
    let clients: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let spread = settled_spread(&server.addr, 301);
    assert_eq!(spread.len(), 3);
    assert_even(&spread);
    drop(clients);
}

/// `--max-conns` bounds the server, not each reactor.
#[test]
fn max_conns_is_global() {
    let server = ServerProcess::start(&[
        "--reactors",
        "2",
        "--max-conns",
        "10",
        "--idle-timeout",
        "off",
    ]);
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        // Each client asks for `stats` and waits for an answer: a kept
        // client gets the counters, a refused one the refusal (or its
        // close, or the reset of a close with `stats` unread). The server
        // has decided on this client before the next one connects.
        let client = server.connect();
        (&client).write_all(b"stats\n").unwrap();
        let mut reply = String::new();
        match BufReader::new(&client).read_line(&mut reply) {
            Ok(_) if reply.starts_with("stats ") => kept.push(client),
            Ok(_) if reply.is_empty() || reply.starts_with("error: server full") => refused += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => refused += 1,
            other => panic!("neither kept nor refused: {other:?} {reply:?}"),
        }
    }
    assert_eq!(kept.len(), 10, "{refused} refused");
    assert_eq!(refused, 20);
}

/// `stop` from a client of any reactor stops them all: every client's
/// lines are printed, each client is closed with `stop`, exit 0.
#[test]
fn stop_from_any_reactor_stops_all() {
    for stopper in [0, 7, 15] {
        let mut server = ServerProcess::start(&["--reactors", "2", "--idle-timeout", "off"]);
        let mut clients: Vec<TcpStream> = (0..16).map(|_| server.connect()).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .write_all(format!("line of {i}\n").as_bytes())
                .unwrap();
        }
        wait_until("every line printed", || {
            server.with_stdout(|out| out.matches("] line of ").count() == 16)
        });
        clients[stopper].write_all(b"stop\n").unwrap();
        let status = server.wait_exit();
        assert!(status.success(), "{}", server.stderr());
        let out = server.stdout();
        assert_eq!(out.matches("close: stop").count(), 16, "{out}");
    }
}

/// SIGTERM reaches one reactor and stops every one.
#[test]
fn a_signal_stops_every_reactor() {
    let mut server = ServerProcess::start(&["--reactors", "2", "--idle-timeout", "off"]);
    let clients: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    settled_spread(&server.addr, 21);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{}", server.stderr());
    // Each of the 20 is closed by the stop (the last `stats` client may be
    // too, if its EOF was not read yet: it is not counted).
    let out = server.stdout();
    for client in &clients {
        let peer = client.local_addr().unwrap();
        assert!(
            out.contains(&format!("* [{peer}] close: stop")),
            "{peer}: {out}"
        );
    }
    drop(clients);
}

/// Each client's lines print in the order it sent them, whole, whichever
/// reactor serves it; lines of different clients may interleave.
#[test]
fn per_client_order_holds_across_reactors() {
    let mut server = ServerProcess::start(&["--reactors", "2", "--idle-timeout", "off"]);
    let addr = server.addr.clone();
    let senders: Vec<_> = (0..20)
        .map(|id| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut client = connect(&addr);
                let mut batch = String::new();
                for i in 0..1000 {
                    batch.push_str(&format!("client{id} {i:05}\n"));
                }
                client.write_all(batch.as_bytes()).unwrap();
                send_and_shutdown(&mut client, b"");
                read_to_end(&mut client);
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    wait_until("every close", || {
        server.with_stdout(|out| out.matches("close: eof").count() == 20)
    });
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
    let mut by_client: HashMap<String, Vec<u32>> = HashMap::new();
    for line in server.stdout().lines() {
        let Some((_, text)) = line.split_once("] ") else {
            continue;
        };
        if line.starts_with('[') {
            let (client, n) = text.split_once(' ').expect("client and number");
            by_client
                .entry(client.to_string())
                .or_default()
                .push(n.parse().expect("a whole number: no torn line"));
        }
    }
    assert_eq!(by_client.len(), 20);
    for (client, numbers) in by_client {
        assert_eq!(numbers, (0..1000).collect::<Vec<_>>(), "{client}");
    }
}

/// The counters are the server's: `stats` and `--stats` sum every reactor.
#[test]
fn counters_are_summed_over_reactors() {
    let server = ServerProcess::start(&["--reactors", "2", "--idle-timeout", "off"]);
    let clients: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut client = server.connect();
            client
                .write_all(format!("counted {i}\n").as_bytes())
                .unwrap();
            client
        })
        .collect();
    wait_until("40 lines printed", || {
        server.with_stdout(|out| out.matches("] counted ").count() == 40)
    });
    // Each `stats` asked is a client and a line more; earlier askers may
    // take a turn to be closed, and each loop publishes once per turn.
    let mut pairs = HashMap::new();
    let mut asked = 0;
    wait_until("every reactor published", || {
        pairs = stats(&server.addr);
        asked += 1;
        pairs["lines"] == (40 + asked).to_string() && pairs["open"] == "41"
    });
    assert_eq!(pairs["accepted"], (40 + asked).to_string());
    assert_eq!(pairs["reactors"], "2");
    let spread: Vec<u64> = pairs["open_by_reactor"]
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        spread.iter().all(|&n| n > 0),
        "both reactors serve: {spread:?}"
    );
    drop(clients);
}

/// The library handle stops every reactor and sums their counters.
#[test]
fn the_handle_stops_and_counts_every_reactor() {
    let server = InProcess::start(|config| {
        config.reactors = 3;
        config.idle_timeout = None;
    });
    let mut clients: Vec<TcpStream> = (0..30).map(|_| server.connect()).collect();
    for client in &mut clients {
        client.write_all(b"hello\n").unwrap();
    }
    wait_until("30 lines counted", || server.stats().lines == 30);
    assert_eq!(server.stats().open, 30);
    let output = server.stop();
    assert_eq!(output.matches("close: stop").count(), 30, "{output}");
}

/// Every family is served with several reactors: TCP over IPv4 and IPv6,
/// Unix, UDP.
#[test]
fn every_family_is_served_by_several_reactors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.sock");
    let unix = format!("unix:{}", path.display());
    let mut server = ServerProcess::start(&[
        "--reactors",
        "2",
        "--echo",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--listen",
        &unix,
        "--listen",
        "udp://127.0.0.1:0",
    ]);
    let v6 = server.listening[1].trim_start_matches("tcp://").to_string();
    let udp = server.listening[3].trim_start_matches("udp://").to_string();
    for addr in [server.addr.clone(), v6] {
        let mut client = connect(&addr);
        client.write_all(b"over tcp\n").unwrap();
        assert_eq!(read_exactly(&mut client, 9), b"over tcp\n");
    }
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(b"over unix\n").unwrap();
    let mut echoed = [0u8; 10];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"over unix\n");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket.send_to(b"over udp\n", &udp).unwrap();
    let mut datagram = [0u8; 64];
    let (n, _) = socket.recv_from(&mut datagram).unwrap();
    assert_eq!(&datagram[..n], b"over udp\n");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}: {}", server.stderr());
    assert!(!path.exists(), "the Unix socket file is removed");
}

/// `--trace-loop` says which reactor each line is from.
#[test]
fn trace_lines_name_their_reactor() {
    let server = ServerProcess::start(&["--reactors", "2", "--trace-loop"]);
    let clients: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    wait_until("both reactors tracing", || {
        let err = server.stderr();
        err.lines().any(|l| l.starts_with("r1 poll("))
            && err.lines().any(|l| l.starts_with("r2 poll("))
    });
    drop(clients);
}

/// Out-of-range counts are refused with one line naming the flag.
#[test]
fn absurd_reactor_counts_are_refused() {
    for bad in ["0", "-1", "100000", "many"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--reactors", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--reactors {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--reactors"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
