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
