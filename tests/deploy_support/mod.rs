//! Shared set-up for the tests against real programs (HAProxy,
//! `systemd-socket-activate`): finding the program (skip with a reason, or
//! fail under `CI`, where `.ci/run` installs it), children that are always
//! killed, clients bound to a chosen loopback source address.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

/// Where `name` is installed, or `None` after printing why the test is
/// skipped. Under `CI` a missing program fails the test instead.
pub fn program(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required in CI: apt-get install {package}"
        );
        eprintln!("skipped: {name} not found (apt-get install {package})");
    }
    found
}

/// A child process killed and reaped when dropped, however the test ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now, for a program that cannot be told to
/// pick its own (`systemd-socket-activate`, HAProxy). Another process could
/// take it before the program binds it: callers retry on "in use".
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A TCP client whose source address is `source` (any 127/8 address: the
/// whole range is loopback), with generous time-outs.
pub fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{source}:0").parse().expect("source address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}
