//! Every socket family in the notes (`AF_INET`, `AF_INET6`, `AF_UNIX`,
//! `SOCK_STREAM`, `SOCK_DGRAM`) served at once by one reactor, and who may
//! stop it.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;

use common::*;

fn unix_client(path: &std::path::Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect unix");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn udp_client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// IPv4, IPv6, Unix and UDP listeners in one process, with clients of each
/// family talking at the same time.
#[test]
fn all_families_in_one_reactor() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("selectd.sock");
    let unix_arg = format!("unix:{}", sock.display());
    let mut server = ServerProcess::start(&[
        "--echo",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--listen",
        &unix_arg,
        "--listen",
        "udp://127.0.0.1:0",
    ]);
    let listening = server.listening.clone();
    assert!(
        listening[0].starts_with("tcp://127.0.0.1:"),
        "{listening:?}"
    );
    assert!(listening[1].starts_with("tcp://[::1]:"), "{listening:?}");
    assert_eq!(listening[2], unix_arg);
    assert!(
        listening[3].starts_with("udp://127.0.0.1:"),
        "{listening:?}"
    );

    let mut v4 = server.connect();
    let mut v6 = connect(listening[1].trim_start_matches("tcp://"));
    let mut unix = unix_client(&sock);
    let udp = udp_client();
    let udp_addr = listening[3].trim_start_matches("udp://");
    for round in 0..20 {
        v4.write_all(format!("v4 {round}\n").as_bytes()).unwrap();
        v6.write_all(format!("v6 {round}\n").as_bytes()).unwrap();
        unix.write_all(format!("unix {round}\n").as_bytes())
            .unwrap();
        udp.send_to(format!("udp {round}\n").as_bytes(), udp_addr)
            .unwrap();
        let mut reply = [0u8; 64];
        let (n, _) = udp.recv_from(&mut reply).unwrap();
        assert_eq!(&reply[..n], format!("udp {round}\n").as_bytes());
    }
    server.wait_for_output("] unix 19\n");
    server.wait_for_output("] v6 19\n");
    server.wait_for_output("] v4 19\n");
    let output = server.stdout();
    let udp_peer = udp.local_addr().unwrap().to_string();
    assert!(
        output.contains(&format!("[{udp_peer}] udp 19\n")),
        "{output}"
    );
    assert!(
        // A Unix client prints as the socket's path and its process.
        output.contains(&format!(
            "[{unix_arg}#pid={},uid={}] unix 0\n",
            std::process::id(),
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }
        )),
        "{output}"
    );
    assert!(output.contains("[[::1]:"), "{output}");
    unix.write_all(b"stop\n").unwrap();
    assert!(server.wait_exit().success());
    assert!(!sock.exists(), "socket file removed at stop");
}

/// A socket file left by a crashed server (nobody listening) is replaced.
#[test]
fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("stale.sock");
    drop(UnixListener::bind(&sock).unwrap()); // leaves the file behind
    assert!(sock.exists());
    let server = ServerProcess::start(&["--listen", &format!("unix:{}", sock.display())]);
    let mut client = unix_client(&sock);
    client.write_all(b"fresh\n").unwrap();
    server.wait_for_output("] fresh\n");
}

/// A socket someone is listening on is never taken over.
#[test]
fn live_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("live.sock");
    let _owner = UnixListener::bind(&sock).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_selectd"))
        .args(["serve", "--listen", &format!("unix:{}", sock.display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&sock.display().to_string()), "{stderr}");
    assert!(stderr.contains("another server is listening"), "{stderr}");
    assert!(sock.exists());
}

/// A regular file (or a directory) at the path is refused and left alone.
#[test]
fn regular_file_and_directory_are_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("precious.txt");
    std::fs::write(&file, "keep me").unwrap();
    for path in [file.clone(), dir.path().to_path_buf()] {
        let out = Command::new(env!("CARGO_BIN_EXE_selectd"))
            .args(["serve", "--listen", &format!("unix:{}", path.display())])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a socket"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

/// The socket file is created with `--unix-mode` (default 0600) and removed
/// when the server exits on SIGTERM.
#[test]
fn socket_file_mode_and_removal_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    for (args, mode) in [(vec![], 0o600), (vec!["--unix-mode", "660"], 0o660)] {
        let sock = dir.path().join("mode.sock");
        let mut all = vec!["--listen".to_string(), format!("unix:{}", sock.display())];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut server = ServerProcess::start(&all);
        let actual = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode);
        server.signal(libc::SIGTERM);
        assert!(server.wait_exit().success());
        assert!(!sock.exists(), "socket file removed after SIGTERM");
    }
}

/// UDP: several senders, each gets its own datagrams back; `stop` over UDP
/// is ignored (a source address can be forged).
#[test]
fn udp_echo_with_several_senders() {
    let server = ServerProcess::start(&["--echo", "--listen", "udp://127.0.0.1:0"]);
    let addr = server.listening[0].trim_start_matches("udp://").to_string();
    let senders: Vec<_> = (0..5).map(|_| udp_client()).collect();
    for round in 0..10 {
        for (i, sender) in senders.iter().enumerate() {
            sender
                .send_to(format!("from {i} round {round}\n").as_bytes(), &addr)
                .unwrap();
        }
        for (i, sender) in senders.iter().enumerate() {
            let mut buf = [0u8; 128];
            let (n, from) = sender.recv_from(&mut buf).unwrap();
            assert_eq!(from.to_string(), addr);
            assert_eq!(&buf[..n], format!("from {i} round {round}\n").as_bytes());
        }
    }
    senders[0].send_to(b"stop\n", &addr).unwrap();
    senders[0].send_to(b"after stop\n", &addr).unwrap();
    server.wait_for_output("] after stop\n");
    wait_until("the UDP warning", || {
        server.stderr().contains("ignored over UDP")
    });
}

/// A 64 KiB datagram (the largest IPv4 allows) comes back whole.
#[test]
fn largest_udp_datagram_round_trips() {
    let server = ServerProcess::start(&[
        "--echo",
        "--format",
        "none",
        "--listen",
        "udp://127.0.0.1:0",
    ]);
    let addr = server.listening[0].trim_start_matches("udp://").to_string();
    let client = udp_client();
    let mut datagram = Vec::with_capacity(65507);
    while datagram.len() < 65507 {
        datagram.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcde\n");
    }
    datagram.truncate(65507);
    client.send_to(&datagram, &addr).unwrap();
    let mut buf = vec![0u8; 70000];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(n, 65507);
    assert!(buf[..n] == datagram[..]);
}

/// A host name binds every address it resolves to.
#[test]
fn host_names_are_resolved() {
    let server = ServerProcess::start(&["--listen", "localhost:0"]);
    assert!(
        server
            .listening
            .iter()
            .any(|l| l.starts_with("tcp://127.0.0.1:")),
        "{:?}",
        server.listening
    );
}

/// Malformed addresses are rejected before anything binds, naming the address.
#[test]
fn bad_addresses_are_rejected_with_their_name() {
    for bad in [
        "unix:",
        "udp://nope",
        "[::1",
        "127.0.0.1:70000",
        "tcp://[::1]:x",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_selectd"))
            .args(["serve", "--listen", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("'{bad}'")), "{stderr}");
    }
}

/// A test host in its own network namespace, joined to this one by a veth
/// pair; removed on drop. `None` where the machine does not allow it (not
/// root, no `ip`): the test is then skipped with the reason printed, and
/// fails under CI, which runs as root with `iproute2` installed.
struct RemoteHost {
    namespace: String,
    host_link: String,
    pub server_ip: String,
}

impl RemoteHost {
    fn create() -> Option<RemoteHost> {
        let id = std::process::id() % 10_000;
        let octet = std::process::id() % 250 + 1;
        let namespace = format!("selectd-t{id}");
        let host_link = format!("sdh{id}");
        let peer_link = format!("sdn{id}");
        let server_ip = format!("10.251.{octet}.1");
        let host = RemoteHost {
            namespace: namespace.clone(),
            host_link: host_link.clone(),
            server_ip: server_ip.clone(),
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns", "add", &namespace],
            vec![
                "link", "add", &host_link, "type", "veth", "peer", "name", &peer_link,
            ],
            vec!["link", "set", &peer_link, "netns", &namespace],
            vec!["addr", "add", &format!("{server_ip}/30"), "dev", &host_link],
            vec!["link", "set", &host_link, "up"],
            vec![
                "netns",
                "exec",
                &namespace,
                "ip",
                "addr",
                "add",
                &format!("10.251.{octet}.2/30"),
                "dev",
                &peer_link,
            ],
            vec![
                "netns", "exec", &namespace, "ip", "link", "set", &peer_link, "up",
            ],
        ]
        .into_iter()
        .map(|step| step.into_iter().map(String::from).collect())
        .collect();
        for step in steps {
            let out = Command::new("ip").args(&step).output();
            match out {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    skip(&format!(
                        "cannot build a test host (ip {}): {}",
                        step.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                    return None;
                }
                Err(err) => {
                    skip(&format!("cannot run ip: {err}"));
                    return None;
                }
            }
        }
        Some(host)
    }

    /// Runs a Python client inside the namespace: connect, send `command`,
    /// print what comes back (one line, as a Python bytes literal), then
    /// send `hello from afar`.
    fn ask(&self, port: &str, command: &str) -> String {
        let script = format!(
            "import socket\n\
             s = socket.create_connection(('{ip}', {port}), timeout=20)\n\
             s.sendall(b'{command}\\n')\n\
             data = b''\n\
             while not data.endswith(b'\\n'):\n\
             \x20   chunk = s.recv(100)\n\
             \x20   if not chunk: break\n\
             \x20   data += chunk\n\
             print(repr(data))\n\
             try:\n\
             \x20   s.sendall(b'hello from afar\\n')\n\
             except OSError:\n\
             \x20   pass\n\
             s.close()\n",
            ip = self.server_ip
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.namespace, "python3", "-c", &script])
            .output()
            .expect("run client in namespace");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
    }
}

/// `stop` and `stats` from a client on another host are refused with a
/// message (the client stays connected) unless `--allow-remote-stop` is
/// given, which allows both.
#[test]
fn stop_and_stats_only_from_local_clients_unless_allowed() {
    let Some(host) = RemoteHost::create() else {
        return;
    };
    let listen = format!("{}:0", host.server_ip);
    let mut server = ServerProcess::start(&["--listen", &listen]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        host.ask(&port, "stats"),
        r"b'error: stats is only accepted from local clients\r\n'"
    );
    assert_eq!(
        host.ask(&port, "stop"),
        r"b'error: stop is only accepted from local clients\r\n'"
    );
    wait_until("both clients' next lines", || {
        server.stdout().matches("] hello from afar\n").count() == 2
    });
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "server still running"
    );
    wait_until("the refusal log", || {
        server
            .stderr()
            .contains("refused stop from a remote client")
    });
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());

    let mut allowed = ServerProcess::start(&["--listen", &listen, "--allow-remote-stop"]);
    let port = allowed.addr.rsplit(':').next().unwrap().to_string();
    let stats = host.ask(&port, "stats");
    assert!(stats.starts_with("b'stats accepted=1 "), "{stats}");
    assert_eq!(host.ask(&port, "stop"), "b''");
    assert!(allowed.wait_exit().success());
}

/// A client of the Unix socket is local: it may stop the server.
#[test]
fn unix_clients_may_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("stop.sock");
    let mut server = ServerProcess::start(&["--listen", &format!("unix:{}", sock.display())]);
    let mut client = unix_client(&sock);
    client.write_all(b"stop\n").unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(server.wait_exit().success());
    assert!(!sock.exists(), "socket file removed at stop");
}
