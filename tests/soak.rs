//! Soak: thousands of connections with random behaviour against one
//! `selectd serve --echo` process, then a check that nothing leaked and
//! nothing was lost or doubled.
//!
//! Eight client threads each open and close connections, picking at random:
//! complete lines then a half-close (the echo is read to EOF and compared),
//! echo read back slowly in small pieces, resets mid-line (`SO_LINGER` 0),
//! resets right after sending, idle clients left to the server's time-out,
//! unterminated last lines, and connections that close or reset at once.
//! Bytes are written in random pieces so lines cross reads.
//!
//! Afterwards the server must have closed every connection it opened, its
//! file descriptors must be back to the baseline taken after warm-up, its
//! resident memory near it, and every line it printed must be accounted for:
//! a line known to have arrived (its echo came back, or it ended a stream
//! that was then half-closed) exactly once; a line that may have died with
//! a reset at most once; nothing else.
//!
//! Bounded: about 20 s by default (`SELECTD_SOAK_SECS=600` for ten minutes),
//! at least a few thousand connections unless a hard time limit is hit.
//! The random seed is printed; `SELECTD_SOAK_SEED=N` replays one. Loopback
//! only; speed is never asserted.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The server's idle time-out, and how long an idle client stays silent.
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
const CLIENT_THREADS: usize = 8;
/// Connections each thread makes at least (8 × 300 = 2,400 in all), unless
/// the hard limit below is reached first.
const MIN_CONNS_PER_THREAD: usize = 300;
/// A generous margin for memory: the allocator keeps what it likes. File
/// descriptors get none: one leaked socket in thousands must fail the test.
const RSS_SLACK_KIB: u64 = 16 * 1024;

/// A tiny xorshift64* generator: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Never zero (xorshift would stay at zero), and well mixed.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0), near enough for a test.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What one thread learned about the lines it sent.
#[derive(Default)]
struct Ledger {
    /// Lines that certainly reached the server: printed exactly once.
    must: Vec<String>,
    /// Lines that may have been lost with a reset: printed at most once.
    maybe: Vec<String>,
    /// Peers whose connection ended early (the server's idle time-out
    /// overtook a stalled client thread): the server must say `idle`.
    interrupted: Vec<String>,
    connections: usize,
    by_kind: HashMap<&'static str, usize>,
}

/// One connection's lines, in the order sent.
struct Script {
    /// Each line's text (without terminator) and its bytes on the wire.
    lines: Vec<(String, Vec<u8>)>,
}

impl Script {
    /// `least + 0..more` complete lines `soak T C N`, each ending in `\n`
    /// or `\r\n`.
    fn complete(rng: &mut Rng, thread: usize, conn: usize, least: usize, more: usize) -> Script {
        let count = least + rng.below(more);
        let lines = (0..count)
            .map(|n| {
                let text = format!("soak {thread} {conn} {n}");
                let end: &[u8] = if rng.chance(30) { b"\r\n" } else { b"\n" };
                let wire = [text.as_bytes(), end].concat();
                (text, wire)
            })
            .collect();
        Script { lines }
    }

    fn bytes(&self) -> Vec<u8> {
        self.lines.iter().flat_map(|(_, w)| w.clone()).collect()
    }
}

/// The longest silence of a client: the most time between connecting or
/// sending and sending again. Only a client silent for the idle time-out
/// may be cut short by it; any other early close is the server's fault.
struct Pace {
    last: Instant,
    longest: Duration,
}

impl Pace {
    fn start() -> Pace {
        Pace {
            last: Instant::now(),
            longest: Duration::ZERO,
        }
    }

    /// About to send (bytes or a FIN).
    fn send(&mut self) {
        let now = Instant::now();
        self.longest = self.longest.max(now - self.last);
        self.last = now;
    }

    /// Whether the client fell silent long enough for the idle time-out
    /// (its thread stalled on this busy machine). A tenth is allowed for
    /// bytes sent just as the deadline passed, read only after it.
    fn stalled(&self) -> bool {
        self.longest >= IDLE_TIMEOUT * 9 / 10
    }
}

/// Writes `bytes` in random pieces (so lines cross the server's reads),
/// now and then pausing for a moment.
fn write_pieces(
    stream: &mut TcpStream,
    bytes: &[u8],
    rng: &mut Rng,
    pace: &mut Pace,
) -> std::io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let take = if rng.chance(40) {
            rest.len()
        } else {
            (1 + rng.below(12)).min(rest.len())
        };
        pace.send();
        stream.write_all(&rest[..take])?;
        rest = &rest[take..];
        if rng.chance(10) {
            thread::sleep(Duration::from_micros(200 + rng.below(800) as u64));
        }
    }
    Ok(())
}

/// Reads exactly `want` bytes in small pieces with short sleeps between;
/// returns what arrived before EOF or an error.
fn read_slowly(stream: &mut TcpStream, want: usize, rng: &mut Rng) -> Vec<u8> {
    let mut got = Vec::with_capacity(want);
    let mut buf = [0u8; 16];
    while got.len() < want {
        let size = (1 + rng.below(buf.len())).min(want - got.len());
        match stream.read(&mut buf[..size]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if rng.chance(30) {
            thread::sleep(Duration::from_micros(100 + rng.below(1500) as u64));
        }
    }
    got
}

/// Reads to EOF (or an error); returns what arrived.
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    got
}

impl Ledger {
    /// Files each line of `script` by how much of its echo came back: whole
    /// lines inside `echoed` certainly arrived, the rest may not have.
    fn settle(&mut self, script: &Script, echoed: &[u8]) {
        let mut at = 0;
        for (text, wire) in &script.lines {
            if echoed.len() >= at + wire.len() && echoed[at..at + wire.len()] == wire[..] {
                self.must.push(text.clone());
            } else {
                self.maybe.push(text.clone());
            }
            at += wire.len();
        }
    }

    /// Echo that is not exactly what was sent: it must at least be a prefix
    /// (the echo is in order); then the connection was cut short.
    fn check_echo(&mut self, peer: &str, script: &Script, echoed: &[u8], pace: &Pace) {
        let sent = script.bytes();
        assert!(
            sent.starts_with(echoed),
            "{peer}: echo {:?} is not a prefix of what was sent {:?}",
            String::from_utf8_lossy(echoed),
            String::from_utf8_lossy(&sent)
        );
        if echoed.len() < sent.len() {
            self.cut_short(
                peer,
                pace,
                &format!("after {} of {} bytes of echo", echoed.len(), sent.len()),
            );
        }
        self.settle(script, echoed);
    }

    /// A connection ended early: legitimate only if the client fell silent
    /// for the idle time-out, and then the server must say `close: idle`.
    fn cut_short(&mut self, peer: &str, pace: &Pace, what: &str) {
        assert!(
            pace.stalled(),
            "{peer}: cut short {what}, yet never silent for {IDLE_TIMEOUT:?} \
             (longest silence {:?})",
            pace.longest
        );
        eprintln!(
            "soak: {peer}: cut short {what} after a client stall of {:?}",
            pace.longest
        );
        self.interrupted.push(peer.to_string());
    }
}

/// One connection with a randomly chosen behaviour.
fn one_connection(addr: &str, thread: usize, conn: usize, rng: &mut Rng, ledger: &mut Ledger) {
    let mut stream = connect(addr);
    let mut pace = Pace::start();
    let peer = stream.local_addr().expect("local addr").to_string();
    ledger.connections += 1;
    let roll = rng.below(100);
    let kind = match roll {
        // Complete lines, maybe an unterminated last line, then a
        // half-close: the whole echo comes back, then EOF.
        0..=29 => {
            let mut script = Script::complete(rng, thread, conn, 0, 7);
            if rng.chance(50) {
                let text = format!("tail {thread} {conn}");
                let wire = if rng.chance(20) {
                    format!("{text}\r") // a lone `\r` at EOF is not text
                } else {
                    text.clone()
                };
                script.lines.push((text, wire.into_bytes()));
            }
            let sent = script.bytes();
            let ok = write_pieces(&mut stream, &sent, rng, &mut pace).is_ok() && {
                pace.send();
                stream.shutdown(Shutdown::Write).is_ok()
            };
            let echoed = if rng.chance(30) {
                read_slowly(&mut stream, sent.len() + 1, rng)
            } else {
                read_all(&mut stream)
            };
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if !ok {
                ledger.cut_short(&peer, &pace, "while sending");
            }
            "half-close"
        }
        // Line by line, each echo read back slowly; then leave by FIN or
        // by `disconnect`.
        30..=49 => {
            let script = Script::complete(rng, thread, conn, 1, 6);
            let mut echoed = Vec::new();
            for (_, wire) in &script.lines {
                if write_pieces(&mut stream, wire, rng, &mut pace).is_err() {
                    break;
                }
                let got = read_slowly(&mut stream, wire.len(), rng);
                let complete = got.len() == wire.len();
                echoed.extend_from_slice(&got);
                if !complete {
                    break;
                }
            }
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if rng.chance(50) {
                if stream.write_all(b"disconnect\n").is_ok() {
                    let rest = read_all(&mut stream);
                    assert!(rest.is_empty(), "{peer}: bytes after disconnect: {rest:?}");
                }
                "slow-echo, disconnect"
            } else {
                "slow-echo, close"
            }
        }
        // Lines, some echoes read (those lines arrived), then half a line
        // and a reset.
        50..=64 => {
            let script = Script::complete(rng, thread, conn, 0, 5);
            let sent = script.bytes();
            let mut echoed = Vec::new();
            if write_pieces(&mut stream, &sent, rng, &mut pace).is_ok() {
                let confirm: usize = script.lines[..rng.below(script.lines.len() + 1)]
                    .iter()
                    .map(|(_, w)| w.len())
                    .sum();
                echoed = read_slowly(&mut stream, confirm, rng);
                let partial = format!("partial {thread} {conn}");
                if rng.chance(80) && stream.write_all(partial.as_bytes()).is_ok() {
                    ledger.maybe.push(partial);
                    if rng.chance(50) {
                        thread::sleep(Duration::from_micros(rng.below(2000) as u64));
                    }
                }
            }
            ledger.settle(&script, &echoed);
            reset(stream);
            "reset mid-line"
        }
        // Lines and an immediate reset: none is known to have arrived.
        65..=74 => {
            let script = Script::complete(rng, thread, conn, 1, 4);
            let _ = write_pieces(&mut stream, &script.bytes(), rng, &mut pace);
            ledger.settle(&script, &[]);
            reset(stream);
            "reset after lines"
        }
        // One line, its echo, maybe half a line, then silence: the server
        // closes at its idle time-out (an unfinished line is not printed
        // then, but may be in future: at most once).
        75..=78 => {
            let script = Script::complete(rng, thread, conn, 1, 1);
            let sent = script.bytes();
            let _ = write_pieces(&mut stream, &sent, rng, &mut pace);
            let echoed = read_slowly(&mut stream, sent.len(), rng);
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if rng.chance(50) {
                let partial = format!("idle {thread} {conn}");
                if stream.write_all(partial.as_bytes()).is_ok() {
                    ledger.maybe.push(partial);
                }
            }
            let silent = Instant::now();
            let rest = read_all(&mut stream);
            assert!(
                rest.is_empty(),
                "{peer}: unexpected bytes while idle: {rest:?}"
            );
            assert!(
                silent.elapsed() < PATIENCE,
                "{peer}: idle client not closed"
            );
            "idle"
        }
        // Only an unterminated line, then a half-close: printed and echoed.
        79..=88 => {
            let text = format!("tail {thread} {conn}");
            let script = Script {
                lines: vec![(text.clone(), text.into_bytes())],
            };
            let ok = write_pieces(&mut stream, &script.bytes(), rng, &mut pace).is_ok() && {
                pace.send();
                stream.shutdown(Shutdown::Write).is_ok()
            };
            let echoed = read_all(&mut stream);
            ledger.check_echo(&peer, &script, &echoed, &pace);
            if !ok {
                ledger.cut_short(&peer, &pace, "while sending");
            }
            "unterminated"
        }
        // Connect and leave at once, politely or not.
        89..=94 => {
            drop(stream);
            "close at once"
        }
        _ => {
            reset(stream);
            "reset at once"
        }
    };
    *ledger.by_kind.entry(kind).or_default() += 1;
}

/// The open file descriptors of a process, from `/proc`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// The most resident memory a process has had, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// (`open` events, `close` events) printed so far.
fn open_and_closed(stdout: &str) -> (usize, usize) {
    let mut opened = 0;
    let mut closed = 0;
    for line in stdout.lines().filter(|l| l.starts_with("* [")) {
        if line.ends_with("] open") {
            opened += 1;
        } else if line.contains("] close: ") {
            closed += 1;
        }
    }
    (opened, closed)
}

/// Polls (every 100 ms, at most `PATIENCE`) until every connection the
/// server opened is closed; returns its stdout then.
fn wait_all_closed(server: &ServerProcess) -> String {
    let start = Instant::now();
    loop {
        let stdout = server.stdout();
        let (opened, closed) = open_and_closed(&stdout);
        if opened == closed {
            return stdout;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "server still has {} connections open",
            opened - closed
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

/// Thousands of random connections leave no fd, no memory and no line
/// behind: fds return to the baseline, RSS stays near it, every line known
/// to have arrived is printed exactly once and no line twice.
#[test]
fn random_connections_leak_nothing_and_lose_no_line() {
    let soak = Duration::from_secs(env_number("SELECTD_SOAK_SECS").unwrap_or(20));
    let hard_limit = soak * 3 + Duration::from_secs(60);
    let seed = env_number("SELECTD_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    eprintln!("soak: {soak:?}, seed {seed} (SELECTD_SOAK_SEED={seed} replays it)");

    let idle = format!("{}ms", IDLE_TIMEOUT.as_millis());
    let mut server =
        ServerProcess::start(&["--echo", "--idle-timeout", &idle, "--format", "tagged"]);
    let pid = server.pid();

    // Warm-up: let the server allocate what steady state needs (slab,
    // buffers, output), then take the baseline with no client connected.
    let mut warm = Vec::new();
    for i in 0..32 {
        let mut client = server.connect();
        let line = format!("warm {i}\n");
        client.write_all(line.as_bytes()).unwrap();
        assert_eq!(read_exactly(&mut client, line.len()), line.as_bytes());
        warm.push(client);
    }
    drop(warm);
    wait_all_closed(&server);
    let base_fds = fd_count(pid);
    let base_rss = server.rss_kib();

    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let addr = server.addr.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(0x1000_0000_01b3));
                let mut ledger = Ledger::default();
                for conn in 0.. {
                    let elapsed = started.elapsed();
                    let enough = elapsed >= soak && conn >= MIN_CONNS_PER_THREAD;
                    if enough || elapsed >= hard_limit {
                        break;
                    }
                    one_connection(&addr, t, conn, &mut rng, &mut ledger);
                }
                ledger
            })
        })
        .collect();
    let mut ledger = Ledger::default();
    for worker in workers {
        let part = worker.join().expect("client thread");
        ledger.must.extend(part.must);
        ledger.maybe.extend(part.maybe);
        ledger.interrupted.extend(part.interrupted);
        ledger.connections += part.connections;
        for (kind, n) in part.by_kind {
            *ledger.by_kind.entry(kind).or_default() += n;
        }
    }
    let ran = started.elapsed();

    let stdout = wait_all_closed(&server);
    assert!(
        server.stderr().find("panicked").is_none(),
        "server panicked: {}",
        server.stderr()
    );
    // The fds of closed sockets are released when `close` returns; the
    // last close event is printed just before that, so allow a moment.
    let mut fds = fd_count(pid);
    let settle = Instant::now();
    while fds != base_fds && settle.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(50));
        fds = fd_count(pid);
    }
    let rss = server.rss_kib();
    let peak = peak_rss_kib(pid);
    let (opened, closed) = open_and_closed(&stdout);

    // Every printed soak line, counted.
    let mut printed: HashMap<&str, usize> = HashMap::new();
    let mut idle_closes: HashMap<&str, usize> = HashMap::new();
    for line in stdout.lines() {
        if let Some(event) = line.strip_prefix("* [") {
            if let Some((peer, reason)) = event.split_once("] close: ")
                && reason == "idle"
            {
                *idle_closes.entry(peer).or_default() += 1;
            }
            continue;
        }
        let Some((_, text)) = line.split_once("] ") else {
            continue;
        };
        if !text.starts_with("warm ") {
            *printed.entry(text).or_default() += 1;
        }
    }

    eprintln!(
        "soak: {} connections in {ran:.1?} ({opened} opened by the server), {} lines \
         certain, {} uncertain, {} cut short by the idle time-out; fds {base_fds} -> {fds}, \
         RSS {base_rss} -> {rss} KiB (peak {peak}); by kind: {:?}",
        ledger.connections,
        ledger.must.len(),
        ledger.maybe.len(),
        ledger.interrupted.len(),
        ledger.by_kind
    );

    assert_eq!(opened, closed);
    // Every connection is accepted, even one reset while in the backlog.
    assert_eq!(
        opened,
        32 + ledger.connections,
        "opens for 32 warm-up and {} soak connections",
        ledger.connections
    );
    assert_eq!(fds, base_fds, "fds at baseline, and after the soak");
    assert!(
        rss < base_rss + RSS_SLACK_KIB,
        "RSS: {base_rss} KiB at baseline, {rss} KiB after the soak"
    );
    for text in &ledger.must {
        let times = printed.remove(text.as_str()).unwrap_or(0);
        assert_eq!(times, 1, "line {text:?} printed {times} times");
    }
    for text in &ledger.maybe {
        let times = printed.remove(text.as_str()).unwrap_or(0);
        assert!(times <= 1, "line {text:?} printed {times} times");
    }
    assert!(
        printed.is_empty(),
        "lines printed that no client sent: {:?}",
        printed.keys().take(10).collect::<Vec<_>>()
    );
    for peer in &ledger.interrupted {
        assert!(
            idle_closes.contains_key(peer.as_str()),
            "{peer}: cut short, but not by the idle time-out"
        );
    }
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the server exited during the soak"
    );
}
