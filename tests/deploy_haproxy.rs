//! selectd behind a real HAProxy (Debian's `haproxy`) in TCP mode, which
//! opens every connection with a PROXY header (`send-proxy` for v1,
//! `send-proxy-v2` for v2): clients on 127.0.0.2 and 127.0.0.3 connect
//! through HAProxy on 127.0.0.1 and are printed with their own addresses,
//! and HAProxy's health checks (`check-send-proxy`) find the server up.

mod common;
mod deploy_support;
mod haproxy_support;

use std::io::Write;

use common::{ServerProcess, wait_until};
use deploy_support::{connect_from, program};
use haproxy_support::Haproxy;

/// HAProxy in front of `backend`, sending `send` (`send-proxy` or
/// `send-proxy-v2`) and checking the server with a header too.
fn haproxy(binary: &std::path::Path, backend: &str, send: &str) -> Haproxy {
    Haproxy::start(
        binary,
        &format!(
            "server selectd {backend} {send} check check-send-proxy inter 200ms rise 1 fall 3"
        ),
    )
}

/// The whole scenario, for one flavour of the header.
fn clients_through_haproxy_keep_their_addresses(send: &str) {
    let Some(binary) = program("haproxy", "haproxy") else {
        return;
    };
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--proxy-protocol",
        "127.0.0.1/32",
        "--idle-timeout",
        "60s",
    ]);
    let haproxy = haproxy(&binary, &server.addr, send);
    wait_until("HAProxy's health checks to find selectd up", || {
        haproxy.status().starts_with("UP")
    });

    let mut two = connect_from("127.0.0.2", haproxy.front);
    let mut three = connect_from("127.0.0.3", haproxy.front);
    let (two_addr, three_addr) = (two.local_addr().unwrap(), three.local_addr().unwrap());
    two.write_all(b"hello from two\n").unwrap();
    three.write_all(b"hello from three\n").unwrap();
    server.wait_for_output(&format!("[{two_addr}] hello from two\n"));
    server.wait_for_output(&format!("[{three_addr}] hello from three\n"));
    drop(three);
    server.wait_for_output(&format!("* [{three_addr}] close: eof\n"));

    // 127.0.0.2 is on this machine: the carried address decides, so it may
    // stop the server through the proxy.
    two.write_all(b"stop\n").unwrap();
    assert!(server.wait_exit().success());
    let stdout = server.stdout();
    assert!(
        stdout.contains(&format!("* [{two_addr}] open\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("* [{two_addr}] close: stop\n")),
        "{stdout}"
    );
    // Health checks came with a header too: none was refused.
    assert!(!stdout.contains("proxy-header"), "{stdout}");
    // No client line was printed with HAProxy's own address.
    for line in stdout.lines().filter(|l| l.contains("hello")) {
        assert!(!line.starts_with("[127.0.0.1:"), "{line}");
    }
}

/// HAProxy `send-proxy` (the v1 text header).
#[test]
fn haproxy_send_proxy_v1_clients_keep_their_addresses() {
    clients_through_haproxy_keep_their_addresses("send-proxy");
}

/// HAProxy `send-proxy-v2` (the binary header; health checks send LOCAL).
#[test]
fn haproxy_send_proxy_v2_clients_keep_their_addresses() {
    clients_through_haproxy_keep_their_addresses("send-proxy-v2");
}

/// Without `--proxy-protocol`, the same HAProxy's clients all look like
/// HAProxy (127.0.0.1), and its header is printed as a line: the reason the
/// flag exists.
#[test]
fn without_the_flag_clients_look_like_haproxy() {
    let Some(binary) = program("haproxy", "haproxy") else {
        return;
    };
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--idle-timeout", "60s"]);
    let haproxy = haproxy(&binary, &server.addr, "send-proxy");
    let mut two = connect_from("127.0.0.2", haproxy.front);
    let two_addr = two.local_addr().unwrap();
    two.write_all(b"hello from two\n").unwrap();
    server.wait_for_output("] hello from two\n");
    let stdout = server.stdout();
    let line = stdout
        .lines()
        .find(|l| l.ends_with("] hello from two"))
        .unwrap();
    assert!(line.starts_with("[127.0.0.1:"), "{line}");
    assert!(
        stdout.contains(&format!("] PROXY TCP4 {} ", two_addr.ip())),
        "{stdout}"
    );
}
