//! A connection's life is a handful of explicit states, and `--trace-loop`
//! names every change: `client 7: reading -> held-back`.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

/// A client that sends and does not read its echoes is held back once its
/// replies pass the high watermark, reads again once they drain, and closes
/// through `closing`: each change is one trace line, in order.
#[test]
fn trace_loop_narrates_each_state_change() {
    let server = ServerProcess::start(&[
        "--echo",
        "--trace-loop",
        "--format",
        "none",
        "--idle-timeout",
        "off",
        "--high-watermark",
        "64KiB",
        "--low-watermark",
        "16KiB",
    ]);
    let mut client = server.connect();
    let line = [b'x'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    // Send until the server holds this client back (its replies unread).
    client
        .set_write_timeout(Some(Duration::from_millis(50)))
        .expect("time-out");
    let mut sent = 0usize;
    wait_until("the client held back", || {
        for _ in 0..64 {
            match client.write(&line) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        server.stderr().contains(": reading -> held-back")
    });
    // Read every echo back: the server reads from it again.
    client.set_read_timeout(Some(PATIENCE)).expect("time-out");
    client.set_write_timeout(Some(PATIENCE)).expect("time-out");
    let mut echoed = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    wait_until("reading again", || {
        if let Ok(n) = client.read(&mut echoed) {
            got += n;
        }
        server.stderr().contains(": held-back -> reading")
    });
    client.write_all(b"disconnect\n").expect("disconnect");
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    got += rest.len();
    assert!(got <= sent, "{got} echoed of {sent}");
    wait_until("the close", || {
        server
            .stderr()
            .contains(": reading -> closing (disconnect)")
    });
    let trace = server.stderr();
    let held = trace.find(": reading -> held-back").expect("held back");
    let resumed = trace.find(": held-back -> reading").expect("resumed");
    let closing = trace
        .find(": reading -> closing (disconnect)")
        .expect("closing");
    assert!(held < resumed && resumed < closing, "{trace}");
}
