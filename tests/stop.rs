//! Stopping within the same limits as running: clients still in the accept
//! backlog are served like the others, memory stays within the watermarks,
//! and the grace period reports only what it really gave up on.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

/// Raises this process's soft limit on open files to `want` (or the hard
/// limit, if lower); returns the limit in force.
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_cur.max(want.min(limit.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// Peak resident memory (`VmHWM`) in KiB, or `None` once the process has
/// exited (a zombie has no memory to report).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clients that connected and sent a line before the stop, but were still
/// in the accept backlog when the stop was acted on, are accepted and served
/// like the others: their lines are printed, never lost to a reset. Here
/// the backlog holds more than one turn's accept budget (1000) when `stop`
/// arrives, so some clients are certainly still queued at that moment.
#[test]
fn clients_in_the_backlog_at_stop_are_served() {
    const LATE: usize = 1100;
    if raise_fd_limit(LATE as u64 + 200) < LATE as u64 + 200 {
        assert!(std::env::var_os("CI").is_none(), "fd limit too low in CI");
        eprintln!("skipping: the open-file limit is below {}", LATE + 200);
        return;
    }
    let mut server = ServerProcess::start(&["--backlog", "4096", "--idle-timeout", "off"]);
    let mut stopper = server.connect();
    stopper.write_all(b"first\n").unwrap();
    server.wait_for_output("] first\n");
    // Everything below happens while the server cannot accept.
    server.freeze();
    let late: Vec<TcpStream> = (0..LATE)
        .map(|i| {
            let mut client = connect(&server.addr);
            client
                .write_all(format!("queued {i}\n").as_bytes())
                .unwrap();
            client
        })
        .collect();
    stopper.write_all(b"stop\n").unwrap();
    server.thaw();
    assert!(server.wait_exit().success());
    let output = server.stdout();
    let missing: Vec<usize> = (0..LATE)
        .filter(|i| !output.contains(&format!("] queued {i}\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lines lost: {missing:?}",
        missing.len()
    );
    drop(late);
}

/// At stop the watermarks still hold: a client held back because it does
/// not read its echoes keeps its unread bytes in the kernel (they were never
/// received), so peak memory during the stop stays within the bound of
/// normal running, and no client has more than a watermark's worth unsent.
#[test]
fn stop_keeps_memory_within_the_watermarks() {
    const CLIENTS: usize = 40;
    let mut server = ServerProcess::start_with(
        &[
            "--echo",
            "--format",
            "none",
            "--idle-timeout",
            "off",
            "--grace",
            "3s",
        ],
        |command| {
            command.env("RUST_LOG", "warn,selectd::serve::connection=debug");
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    // Raised by the test once every read is paused; each writer then says
    // when a write of its own would block after that (`blocked`).
    let paused = Arc::new(AtomicBool::new(false));
    let blocked = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = connect(&server.addr);
        let mut writer = client.try_clone().unwrap();
        writer.set_nonblocking(true).unwrap();
        let (done, paused, blocked) =
            (Arc::clone(&done), Arc::clone(&paused), Arc::clone(&blocked));
        writers.push(thread::spawn(move || {
            let chunk = [b"flooding, never reading\n".as_slice(); 2730].concat();
            let mut counted = false;
            while !done.load(Ordering::Relaxed) {
                match writer.write(&chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if !counted && paused.load(Ordering::Relaxed) {
                            counted = true;
                            blocked.fetch_add(1, Ordering::Relaxed);
                        }
                        // Nothing to do until the server reads: do not spin.
                        thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => return,
                }
            }
        }));
        clients.push(client);
    }
    wait_until("every client to be held back", || {
        server.stderr().matches("pausing reads").count() >= CLIENTS
    });
    // The kernel queues behind the paused reads are full once a write of
    // every client would block.
    paused.store(true, Ordering::Relaxed);
    wait_until("every client's kernel queue to fill", || {
        blocked.load(Ordering::Relaxed) == CLIENTS
    });
    let running = server.peak_rss_kib();
    server.signal(libc::SIGTERM);
    // The peak over the whole stop, read until the exit (the grace runs
    // out, as nobody reads an echo); the kernel updates `VmHWM` lazily, so
    // the highest reading counts.
    let mut stopping = None;
    let exited = wait_for(PATIENCE, || match peak_rss_kib(server.pid()) {
        Some(peak) => {
            stopping = stopping.max(Some(peak));
            false
        }
        None => true,
    });
    if !exited {
        let pid = server.pid();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .flatten()
                    .map(|task| {
                        let path = task.path();
                        let read = |name: &str| {
                            std::fs::read_to_string(path.join(name)).unwrap_or_default()
                        };
                        format!("{} {}", read("stat").trim(), read("wchan"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let stderr = server.stderr();
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        panic!(
            "the server did not exit within {PATIENCE:?} of SIGTERM with --grace 3s\n\
             threads:\n{threads}\nlast stderr lines (newest first):\n{}",
            tail.join("\n")
        );
    }
    let stopping = stopping.expect("a reading during the stop");
    // Reaped, and its stderr read to the end for the checks below.
    server.wait_exit();
    done.store(true, Ordering::Relaxed);
    eprintln!("peak RSS: {running} KiB while running, {stopping} KiB during stop");
    let growth = stopping.saturating_sub(running);
    assert!(
        growth < 16 * 1024,
        "peak memory grew by {growth} KiB during stop ({running} -> {stopping} KiB)"
    );
    drop(clients);
    for writer in writers {
        writer.join().unwrap();
    }
    let stderr = server.stderr();
    for line in stderr
        .lines()
        .filter(|l| l.contains("bytes of output unsent"))
    {
        let unsent: u64 = line
            .split(" with ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unparsable: {line}"));
        assert!(unsent <= (1024 + 64) * 1024, "{line}");
    }
}

/// `--grace 0` closes at once, and does not claim output was unsent when
/// none was.
#[test]
fn grace_zero_reports_no_unsent_output_when_there_was_none() {
    let mut server = ServerProcess::start(&["--grace", "0"]);
    let mut quiet = server.connect();
    quiet.write_all(b"hello\n").unwrap();
    server.wait_for_output("] hello\n");
    let mut stopper = server.connect();
    stopper.write_all(b"stop\n").unwrap();
    server.wait_exit();
    let stderr = server.stderr();
    assert!(!stderr.contains("closing 0 clients"), "{stderr}");
    drop(quiet);
}

/// A connect storm does not keep the loop accepting: one turn accepts at
/// most 1000 clients from a listener (redis's `MAX_ACCEPTS_PER_CALL`), and
/// the rest wait for the next turn, while connected clients are served in
/// between. The storm is queued while the server is frozen, so that the
/// first turn after it finds all 1500 in the backlog.
#[test]
fn one_turn_accepts_at_most_a_thousand_clients() {
    const STORM: usize = 1500;
    if raise_fd_limit(STORM as u64 + 200) < STORM as u64 + 200 {
        assert!(std::env::var_os("CI").is_none(), "fd limit too low in CI");
        eprintln!("skipping: the open-file limit is below {}", STORM + 200);
        return;
    }
    let server = ServerProcess::start(&[
        "--backlog",
        "4096",
        "--idle-timeout",
        "off",
        "--trace-loop",
        "--format",
        "none",
    ]);
    server.freeze();
    let storm: Vec<TcpStream> = (0..STORM).map(|_| connect(&server.addr)).collect();
    server.thaw();
    wait_until("every client accepted", || {
        server.stderr().matches("  accepted conn").count() == STORM
    });
    // Accepts per turn: the `accepted` lines between two `poll(` lines.
    let mut per_turn = Vec::new();
    for line in server.stderr().lines() {
        if line.starts_with("poll(") {
            per_turn.push(0);
        } else if line.starts_with("  accepted conn")
            && let Some(count) = per_turn.last_mut()
        {
            *count += 1;
        }
    }
    let most = per_turn.iter().copied().max().unwrap_or(0);
    assert_eq!(most, 1000, "accepts per turn: {per_turn:?}");
    drop(storm);
}
