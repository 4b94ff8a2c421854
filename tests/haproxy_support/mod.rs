//! A real HAProxy (Debian's `haproxy`, installed by `.ci/run`) in TCP mode
//! in front of one selectd, for the tests that deploy behind it: PROXY
//! headers (`deploy_haproxy.rs`, `tls.rs`) and health checks against
//! `/healthz` (`metrics_haproxy.rs`). Each test writes only its `backend`
//! section; the rest of the configuration, the start-up and the admin
//! socket that tells what HAProxy's checks think are here.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{self, PATIENCE};
use crate::deploy_support::{Reaped, free_port};

/// A running HAProxy and where to reach it; killed when dropped.
pub struct Haproxy {
    _child: Reaped,
    /// Where clients connect (a free port on 127.0.0.1).
    pub front: SocketAddr,
    admin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts `binary` with a frontend on a free loopback port forwarding
    /// to a backend whose lines are `backend` (one `server selectd ...`
    /// line, and options), and returns once HAProxy answers on its admin
    /// socket, which it serves only after every listener is bound. Retries
    /// with another port if the chosen one was taken meanwhile.
    pub fn start(binary: &Path, backend: &str) -> Haproxy {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin = dir.path().join("admin.sock");
            let backend: String = backend
                .lines()
                .map(|line| format!("    {}\n", line.trim()))
                .collect();
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
                 {backend}",
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
            let mut exited = false;
            let answered = common::wait_for(PATIENCE, || {
                exited = child.0.try_wait().unwrap().is_some();
                exited || !show_stat(&admin, "status").is_empty()
            });
            if answered && !exited {
                return Haproxy {
                    _child: child,
                    front,
                    admin,
                    _dir: dir,
                };
            }
            let said = stderr.lock().unwrap().clone();
            assert!(
                exited && (said.contains("in use") || said.contains("cannot bind")),
                "haproxy did not start: {said}"
            );
        }
        panic!("no free port for haproxy after 5 tries");
    }

    /// The server's status as the health checks see it (`UP`, `DOWN`,
    /// `no check`, ...).
    pub fn status(&self) -> String {
        self.stat("status")
    }

    /// A column of `show stat` for the backend's server: `status`,
    /// `check_status` (`L7OK`, `L7STS`: a wrong HTTP status, ...),
    /// `check_code` (the HTTP status of the last check). Empty if HAProxy
    /// does not answer (yet).
    pub fn stat(&self, name: &str) -> String {
        show_stat(&self.admin, name)
    }
}

/// `show stat` through the admin socket at `admin`: the column `name` of
/// the row for the backend's server, or empty.
fn show_stat(admin: &Path, name: &str) -> String {
    let Ok(mut admin) = UnixStream::connect(admin) else {
        return String::new();
    };
    admin.set_read_timeout(Some(PATIENCE)).unwrap();
    if admin.write_all(b"show stat\n").is_err() {
        return String::new();
    }
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
