//! A load balancer takes selectd out while it stops: HAProxy (Debian's
//! `haproxy`, installed by `.ci/run`) forwards line clients in TCP mode and
//! checks the server with `option httpchk GET /healthz` on the metrics
//! port. It finds the server up while it serves, and down as soon as a stop
//! begins, while the server is still draining its clients.

mod common;
mod deploy_support;
mod haproxy_support;
mod metrics_support;

use std::io::{Read, Write};

use common::wait_until;
use deploy_support::program;
use haproxy_support::Haproxy;
use metrics_support::{MetricsServer, hold_back};

/// HAProxy marks selectd up while it serves (a client through HAProxy is
/// echoed), and down once a stop begins, while selectd still runs: it is
/// draining a client held back by unread echoes, with a minute of grace.
#[test]
fn haproxy_marks_selectd_down_while_it_stops() {
    let Some(binary) = program("haproxy", "haproxy") else {
        return;
    };
    let metrics = MetricsServer::start_with(
        &[
            "--echo",
            "--grace",
            "60s",
            "--idle-timeout",
            "off",
            "--high-watermark",
            "64KiB",
            "--low-watermark",
            "16KiB",
        ],
        |command| {
            command.env("RUST_LOG", "warn,selectd::serve::connection=debug");
        },
    );
    let haproxy = Haproxy::start(
        &binary,
        &format!(
            "option httpchk GET /healthz
             http-check expect status 200
             server selectd {} check port {} inter 200ms rise 1 fall 1",
            metrics.server.addr,
            metrics.metrics.port()
        ),
    );
    // (A server is UP from the start; the first check's result follows.)
    wait_until("HAProxy's checks to find selectd up", || {
        haproxy.status().starts_with("UP") && haproxy.stat("check_status") == "L7OK"
    });

    let mut client = common::connect(&haproxy.front.to_string());
    client.write_all(b"through haproxy\n").unwrap();
    let mut echo = [0u8; 16];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"through haproxy\n");

    let holder = hold_back(&metrics.server);
    let mut server = metrics.server;
    server.signal(libc::SIGTERM);
    wait_until("HAProxy's checks to find selectd down", || {
        haproxy.status().starts_with("DOWN")
    });
    // Down because /healthz said so, not because nothing answered.
    assert_eq!(haproxy.stat("check_status"), "L7STS");
    assert_eq!(haproxy.stat("check_code"), "503");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "selectd should still be draining"
    );
    drop(holder);
    drop(client);
    assert!(server.wait_exit().success());
}
