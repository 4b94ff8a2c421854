//! Where two features meet, each keeps its promise: limits with several
//! loops, stop behind a stalled output, clients handed between loops at
//! stop, and one consistent `stats` reply.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::*;

/// `--max-conns` bounds the server, not each loop: with eight loops
/// accepting at once, storm after storm of connects never gets more than
/// N clients in. (A check of the open count followed by a separate
/// increment let two loops both admit the last place.)
#[test]
fn max_conns_holds_under_connect_storms_on_many_loops() {
    const MAX: u64 = 16;
    const STORM: u64 = 300;
    let server = InProcess::start(|config| {
        config.reactors = 8;
        config.max_conns = Some(MAX as usize);
        config.idle_timeout = None;
    });
    for round in 0..25 {
        let before = server.stats();
        let addr = server.addr.clone();
        let storms: Vec<_> = (0..4)
            .map(|_| {
                let addr = addr.clone();
                thread::spawn(move || {
                    (0..STORM / 4)
                        .map(|_| TcpStream::connect(&addr).expect("connect"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let clients: Vec<TcpStream> = storms
            .into_iter()
            .flat_map(|storm| storm.join().expect("storm"))
            .collect();
        let mut after = server.stats();
        wait_until("every client of the storm admitted or refused", || {
            after = server.stats();
            (after.accepted - before.accepted) + (after.refused_full - before.refused_full) == STORM
        });
        let admitted = after.accepted - before.accepted;
        assert!(
            admitted <= MAX,
            "round {round}: {admitted} clients admitted with --max-conns {MAX}"
        );
        drop(clients);
        wait_until("every client closed", || server.stats().open == 0);
    }
}

/// Reads what the server sends until EOF or `limit` bytes.
#[allow(dead_code)]
fn read_some(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.take(limit as u64).read_to_end(&mut got);
    got
}

#[allow(dead_code)]
const SHORT: Duration = Duration::from_millis(100);

/// One `stats` reply is one snapshot: under churn on three loops, the open
/// total always equals the sum of the per-loop figures beside it.
#[test]
fn a_stats_reply_agrees_with_itself_under_churn() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = InProcess::start(|config| {
        config.reactors = 3;
        config.idle_timeout = None;
    });
    let done = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let (addr, done) = (server.addr.clone(), Arc::clone(&done));
            thread::spawn(move || {
                let mut held = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    held.push(TcpStream::connect(&addr).expect("connect"));
                    if held.len() > 20 {
                        held.drain(..10);
                    }
                }
            })
        })
        .collect();
    let mut disagreements = Vec::new();
    for _ in 0..1500 {
        let mut client = connect(&server.addr);
        client.write_all(b"stats\n").expect("ask");
        let mut reply = String::new();
        BufReader::new(&client)
            .read_line(&mut reply)
            .expect("reply");
        let field = |name: &str| -> String {
            reply
                .split_whitespace()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
                .to_string()
        };
        let open: u64 = field("open").parse().expect("open");
        let by_loop: u64 = field("open_by_reactor")
            .split(',')
            .map(|n| n.parse::<u64>().expect("a count"))
            .sum();
        if open != by_loop {
            disagreements.push(reply.trim().to_string());
        }
    }
    done.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.join().expect("churner");
    }
    assert!(
        disagreements.is_empty(),
        "{} replies disagree, e.g. {:?}",
        disagreements.len(),
        disagreements.first()
    );
}

/// With several loops, a Unix client is handed from the loop that accepts
/// it to another. A stop (here SIGTERM) must not lose the clients on their way: every line
/// a client finished before the stop is printed, and the exit status is 0.
#[test]
fn unix_clients_on_their_way_to_a_loop_at_stop_are_served() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    const CLIENTS: usize = 200;
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.sock");
        let unix = format!("unix:{}", path.display());
        let mut server = ServerProcess::start(&[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
            "--reactors",
            "3",
            "--idle-timeout",
            "off",
            "--format",
            "plain",
        ]);
        // Frozen, the server lets the clients queue in the backlog: the
        // stop then finds them there, not yet accepted.
        server.freeze();
        let clients: Vec<UnixStream> = (0..CLIENTS)
            .map(|n| {
                let mut client = UnixStream::connect(&path).expect("connect");
                client
                    .write_all(format!("line {n}\n").as_bytes())
                    .expect("send");
                client
            })
            .collect();
        // The stop comes from outside the Unix listener (a TCP client,
        // served by any loop), so Unix clients may still be in its backlog
        // or in a loop's inbox.
        let mut stopper = server.connect();
        stopper.write_all(b"stop\n").expect("stop");
        server.thaw();
        let status = server.wait_exit();
        let printed = server.stdout();
        let missing: Vec<usize> = (0..CLIENTS)
            .filter(|n| !printed.contains(&format!("line {n}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {CLIENTS} lines missing (e.g. line {}); stderr: {}",
            missing.len(),
            missing[0],
            server.stderr()
        );
        assert!(status.success(), "{status:?}: {}", server.stderr());
        drop(clients);
    }
}
