//! selectd behind a real HAProxy (Debian's `haproxy`) in TCP mode, which
//! opens every connection with a PROXY header (`send-proxy` for v1,
//! `send-proxy-v2` for v2): clients on 127.0.0.2 and 127.0.0.3 connect
//! through HAProxy on 127.0.0.1 and are printed with their own addresses,
//! and HAProxy's health checks (`check-send-proxy`) find the server up.

mod common;
mod deploy_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{PATIENCE, ServerProcess, wait_until};
use deploy_support::{Reaped, connect_from, free_port, program};

/// A running HAProxy and where to reach it.
struct Haproxy {
    _child: Reaped,
    front: SocketAddr,
    admin: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `backend` with `send` (`send-proxy` or
    /// `send-proxy-v2`), retrying if the chosen front port was taken.
    fn start(binary: &Path, backend: &str, send: &str) -> Haproxy {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin = dir.path().join("admin.sock");
            let config = format!(
                "global\n\
                 \x20   nbthread 1\n\
                 \x20   stats socket {admin} level admin\n\
                 defaults\n\
                 \x20   mode tcp\n\
                 \x20   timeout connect 5s\n\
                 \x20   timeout client 60s\n\
                 \x20   timeout server 60s\n\
                 frontend front\n\
                 \x20   bind {front}\n\
                 \x20   default_backend back\n\
                 backend back\n\
                 \x20   server selectd {backend} {send} check check-send-proxy inter 200ms rise 1 fall 3\n",
                admin = admin.display(),
            );
            let config_path = dir.path().join("haproxy.cfg");
            std::fs::write(&config_path, config).unwrap();
            let mut child = Reaped(
                Command::new(binary)
                    .arg("-db")
                    .arg("-f")
                    .arg(&config_path)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start haproxy"),
            );
            let stderr = common::collect(child.0.stderr.take().unwrap());
            let start = Instant::now();
            while !admin.exists() && start.elapsed() < PATIENCE {
                if child.0.try_wait().unwrap().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if admin.exists() {
                return Haproxy {
                    _child: child,
                    front,
                    admin,
                    _dir: dir,
                };
            }
            let said = stderr.lock().unwrap().clone();
            assert!(
                said.contains("in use") || said.contains("cannot bind"),
                "haproxy did not start: {said}"
            );
        }
        panic!("no free port for haproxy after 5 tries");
    }

    /// The backend server's status as HAProxy's health checks see it
    /// (`UP`, `DOWN`, ...), from `show stat` on the admin socket.
    fn server_status(&self) -> String {
        let Ok(mut admin) = UnixStream::connect(&self.admin) else {
            return String::new();
        };
        admin.set_read_timeout(Some(PATIENCE)).unwrap();
        admin.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        let _ = admin.read_to_string(&mut csv);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let Some(column) = header.iter().position(|name| *name == "status") else {
            return String::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"back") && fields.get(1) == Some(&"selectd"))
            .and_then(|fields| fields.get(column).map(|s| s.to_string()))
            .unwrap_or_default()
    }
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
    let haproxy = Haproxy::start(&binary, &server.addr, send);
    wait_until("HAProxy's health checks to find selectd up", || {
        haproxy.server_status().starts_with("UP")
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
    let haproxy = Haproxy::start(&binary, &server.addr, "send-proxy");
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
