//! Soak: thousands of connections with random behaviour against one
//! `selectd serve --echo` process listening on TCP and on a Unix socket,
//! then a check that nothing leaked and nothing was lost, doubled or cut.
//!
//! Client threads open and close connections, picking at random (see
//! `clients::Kind`): complete lines then a half-close (the echo is read to
//! EOF and compared), echo read back slowly in small pieces, resets
//! mid-line (`SO_LINGER` 0) including an unfinished `stop`, resets right
//! after sending, idle clients left to the server's time-out, unterminated
//! last lines, connections that close or reset at once, Unix clients that
//! pass file descriptors (`SCM_RIGHTS`), and clients that send without
//! reading until the server holds them back. Each thread starts with one
//! connection of every kind in its mix, so even a short run covers them all.
//!
//! Afterwards the server must still be running, must have closed every
//! connection it opened, its file descriptors must be back to the baseline
//! taken after warm-up (no socket and no passed descriptor leaked), its
//! resident memory near it, and every line it printed must be accounted
//! for (see `ledger`).
//!
//! Bounded: about 3 s by default; `SELECTD_SOAK_SECS=20` (as CI runs it) or
//! `600` for longer. The random seed is printed; `SELECTD_SOAK_SEED=N`
//! replays one. Loopback and a temporary directory only; speed is never
//! asserted.

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod ledger;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use clients::{IDLE_TIMEOUT, Kind, Rng, Target};
use common::*;
use ledger::Ledger;

const CLIENT_THREADS: usize = 8;
/// A generous margin for memory: the allocator keeps what it likes. File
/// descriptors get none: one leaked socket in thousands must fail the test.
const RSS_SLACK_KIB: u64 = 16 * 1024;
/// Warm-up connections, over TCP and over the Unix socket.
const WARM_TCP: usize = 32;
const WARM_UNIX: usize = 4;

/// Thousands of random connections of every kind (TCP and Unix clients,
/// descriptors passed with lines queued behind them, resets in the middle
/// of a line or of `stop`, clients held back by backpressure) leave no fd,
/// no memory and no line behind: fds return to the baseline, RSS stays near
/// it, every line known to have arrived is printed exactly once, no line a
/// client finished is printed cut short, and nothing nobody sent.
#[test]
fn random_connections_leak_nothing_and_lose_no_line() {
    soak(|_| true, false);
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
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

/// Waits until every connection the server opened is closed; returns its
/// stdout then.
fn wait_all_closed(server: &ServerProcess) -> String {
    let mut open = 0;
    let all_closed = wait_for(PATIENCE, || {
        let (opened, closed) = server.with_stdout(open_and_closed);
        open = opened - closed;
        open == 0
    });
    assert!(all_closed, "server still has {open} connections open");
    server.stdout()
}

/// The kinds in a mix, in order.
fn mix(wanted: impl Fn(Kind) -> bool) -> Vec<(Kind, usize)> {
    Kind::WEIGHTS
        .into_iter()
        .filter(|(kind, _)| wanted(*kind))
        .collect()
}

/// Connection `conn` of thread `t`: first one of each kind (each thread
/// starting at a different one), then by weight.
fn pick(mix: &[(Kind, usize)], t: usize, conn: usize, rng: &mut Rng) -> Kind {
    if conn < mix.len() {
        return mix[(t + conn) % mix.len()].0;
    }
    let total: usize = mix.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    for (kind, weight) in mix {
        if roll < *weight {
            return *kind;
        }
        roll -= weight;
    }
    unreachable!("the roll is below the total")
}

/// One soak with the kinds `wanted`; see [`Ledger::check_output`] for
/// `cut_lines_tolerated`.
fn soak(wanted: impl Fn(Kind) -> bool, cut_lines_tolerated: bool) {
    let secs = env_number("SELECTD_SOAK_SECS").unwrap_or(3);
    let soak = Duration::from_secs(secs);
    // At least a few hundred connections per thread in a long run.
    let min_conns = (secs as usize * 15).max(40);
    let hard_limit = soak * 3 + Duration::from_secs(60);
    let seed = env_number("SELECTD_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    eprintln!("soak: {soak:?}, seed {seed} (SELECTD_SOAK_SEED={seed} replays it)");
    let mix = mix(wanted);

    let dir = tempfile::tempdir().expect("temporary directory");
    let unix = dir.path().join("soak.sock");
    let unix_arg = format!("unix:{}", unix.display());
    let idle = format!("{}ms", IDLE_TIMEOUT.as_millis());
    let mut server = ServerProcess::start(&[
        "--echo",
        "--idle-timeout",
        &idle,
        "--format",
        "tagged",
        // Small watermarks: a client that does not read is held back soon.
        "--high-watermark",
        "64KiB",
        "--low-watermark",
        "16KiB",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix_arg,
    ]);
    let pid = server.pid();
    let target = Target {
        tcp: server.addr.clone(),
        unix,
    };

    // Warm-up: let the server allocate what steady state needs (slab,
    // buffers, output), then take the baseline with no client connected.
    let mut warm = Vec::new();
    for i in 0..WARM_TCP {
        let mut client = server.connect();
        let line = format!("warm {i}\n");
        client.write_all(line.as_bytes()).unwrap();
        assert_eq!(read_exactly(&mut client, line.len()), line.as_bytes());
        warm.push(client);
    }
    let mut warm_unix = Vec::new();
    for i in 0..WARM_UNIX {
        let mut client = UnixStream::connect(&target.unix).expect("connect unix");
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let line = format!("warm unix {i}\n");
        client.write_all(line.as_bytes()).unwrap();
        let mut echo = vec![0; line.len()];
        std::io::Read::read_exact(&mut client, &mut echo).unwrap();
        assert_eq!(echo, line.as_bytes());
        warm_unix.push(client);
    }
    // Every warm-up client is accepted (it got its echo) and holds one fd
    // of the server's: without them, the server has this many.
    let base_fds = fd_count(pid) - (WARM_TCP + WARM_UNIX);
    drop(warm);
    drop(warm_unix);
    wait_all_closed(&server);
    // A close event is printed just before the fd is closed: wait for the
    // fds themselves, not for a moment.
    wait_until("the warm-up clients' fds released", || {
        fd_count(pid) == base_fds
    });
    let base_rss = server.rss_kib();

    let passable = clients::passable_fd();
    let fd = passable.as_raw_fd();
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let target = target.clone();
            let mix = mix.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t as u64).wrapping_mul(0x1000_0000_01b3));
                let mut ledger = Ledger::default();
                for conn in 0.. {
                    let elapsed = started.elapsed();
                    let enough = elapsed >= soak && conn >= min_conns;
                    if enough || elapsed >= hard_limit {
                        break;
                    }
                    let kind = pick(&mix, t, conn, &mut rng);
                    clients::one_connection(&target, fd, kind, (t, conn), &mut rng, &mut ledger);
                }
                ledger
            })
        })
        .collect();
    let mut ledger = Ledger::default();
    let mut failures = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(part) => ledger.merge(part),
            Err(panic) => failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        }
    }
    let ran = started.elapsed();
    drop(passable);
    let exited = server.child.try_wait().expect("try_wait");
    assert!(
        failures.is_empty() && exited.is_none(),
        "client threads failed: {failures:#?}; server {}; its stderr:\n{}",
        exited.map_or("still running".to_string(), |s| format!("exited: {s}")),
        server.stderr()
    );

    let stdout = wait_all_closed(&server);
    assert!(
        !server.stderr().contains("panicked"),
        "server panicked: {}",
        server.stderr()
    );
    // The fds of closed sockets are released when `close` returns; the
    // last close event is printed just before that, so wait for them.
    let fds_back = wait_for(PATIENCE, || fd_count(pid) == base_fds);
    let fds = fd_count(pid);
    let rss = server.rss_kib();
    let peak = peak_rss_kib(pid);
    let (opened, closed) = open_and_closed(&stdout);
    eprintln!(
        "soak: {} connections in {ran:.1?} ({opened} opened by the server), {} lines \
         certain, {} uncertain, {} unfinished, {} cut short by the idle time-out; fds \
         {base_fds} -> {fds}, RSS {base_rss} -> {rss} KiB (peak {peak}); by kind: {:?}",
        ledger.connections,
        ledger.must.len(),
        ledger.maybe.len(),
        ledger.fragments.len(),
        ledger.interrupted.len(),
        ledger.by_kind
    );

    assert_eq!(opened, closed);
    // Every connection is accepted, even one reset while in the backlog.
    let warm = WARM_TCP + WARM_UNIX;
    assert_eq!(
        opened,
        warm + ledger.connections,
        "opens for {warm} warm-up and {} soak connections",
        ledger.connections
    );
    assert!(
        fds_back,
        "fds: {base_fds} at baseline, {fds} after the soak"
    );
    assert!(
        rss < base_rss + RSS_SLACK_KIB,
        "RSS: {base_rss} KiB at baseline, {rss} KiB after the soak"
    );
    ledger.check_output(&stdout, "warm ", cut_lines_tolerated);
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the server exited during the soak"
    );
}
