//! Stopping within the same limits as running: clients still in the accept
//! backlog are served like the others, memory stays within the watermarks,
//! and the grace period reports only what it really gave up on.

mod common;

use std::io::Write;
use std::net::TcpStream;

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
