//! Stopping within the same limits as running: clients still in the accept
//! backlog are served like the others, memory stays within the watermarks,
//! and the grace period reports only what it really gave up on.

mod common;

use std::io::Write;

use common::*;

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
    assert!(server.wait_exit().success());
    let stderr = server.stderr();
    assert!(!stderr.contains("closing 0 clients"), "{stderr}");
    drop(quiet);
}
