//! A load balancer takes selectd out while it stops: HAProxy (Debian's
//! `haproxy`, installed by `.ci/run`) forwards line clients in TCP mode and
//! checks the server with `option httpchk GET /healthz` on the metrics
//! port. It finds the server up while it serves, and down as soon as a stop
//! begins, while the server is still draining its clients.

mod common;
mod deploy_support;
mod metrics_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{PATIENCE, wait_until};
use deploy_support::{Reaped, free_port, program};
use metrics_support::{MetricsServer, hold_back};

/// HAProxy in front of one selectd, health-checked over HTTP.
struct Haproxy {
    _child: Reaped,
    front: SocketAddr,
    admin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Forwards to `backend`, checking `GET /healthz` on `check_port`.
    fn start(binary: &Path, backend: &str, check_port: u16) -> Haproxy {
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
                 \x20   timeout check 2s\n\
                 \x20   timeout client 60s\n\
                 \x20   timeout server 60s\n\
                 frontend front\n\
                 \x20   bind {front}\n\
                 \x20   default_backend back\n\
                 backend back\n\
                 \x20   option httpchk GET /healthz\n\
                 \x20   http-check expect status 200\n\
                 \x20   server selectd {backend} check port {check_port} inter 200ms rise 1 fall 1\n",
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
            let started = common::wait_for(PATIENCE, || {
                admin.exists() || child.0.try_wait().unwrap().is_some()
            });
            if started && admin.exists() {
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

    /// The server's status as the health checks see it (`UP`, `DOWN`, ...).
    fn status(&self) -> String {
        self.stat("status")
    }

    /// A column of `show stat` for the server: `status`, `check_status`
    /// (`L7OK`, `L7STS`: a wrong HTTP status, ...), `check_code` (the HTTP
    /// status of the last check).
    fn stat(&self, name: &str) -> String {
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
        let Some(column) = header.iter().position(|column| *column == name) else {
            return String::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"back") && fields.get(1) == Some(&"selectd"))
            .and_then(|fields| fields.get(column).map(|s| s.to_string()))
            .unwrap_or_default()
    }
}

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
    let haproxy = Haproxy::start(&binary, &metrics.server.addr, metrics.metrics.port());
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
