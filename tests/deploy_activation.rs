//! Socket activation with the real `systemd-socket-activate` (Debian's
//! `systemd` package): it binds the sockets, waits for the first client,
//! then starts `selectd serve` with them as fds 3, 4, ... (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`). A Unix datagram socket the test binds
//! stands in for systemd's `NOTIFY_SOCKET`.

mod common;
mod deploy_support;

use std::io::Write;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{PATIENCE, collect, connect, wait_until};
use deploy_support::{Reaped, free_port, program};

const SELECTD: &str = env!("CARGO_BIN_EXE_selectd");

/// `systemd-socket-activate` holding the sockets, and later selectd in its
/// place (it execs, keeping the pid).
struct Activator {
    child: Reaped,
    port: u16,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Activator {
    /// `systemd-socket-activate [-d] -l 127.0.0.1:PORT EXTRA... selectd serve ARGS`,
    /// once it listens (retrying if the chosen port was taken meanwhile).
    fn start(binary: &Path, datagram: bool, extra: &[String], serve: &[&str]) -> Activator {
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new(binary);
            if datagram {
                command.arg("--datagram");
            }
            command
                .arg(format!("--listen=127.0.0.1:{port}"))
                .args(extra)
                .arg(SELECTD)
                .arg("serve")
                .args(serve)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = Reaped(command.spawn().expect("start systemd-socket-activate"));
            let stdout = collect(child.0.stdout.take().unwrap());
            let stderr = collect(child.0.stderr.take().unwrap());
            let expected = 1 + extra.iter().filter(|a| a.starts_with("--listen")).count();
            let start = Instant::now();
            loop {
                let said = stderr.lock().unwrap().clone();
                if said.matches("Listening on ").count() >= expected {
                    return Activator {
                        child,
                        port,
                        stdout,
                        stderr,
                    };
                }
                if child.0.try_wait().unwrap().is_some() {
                    assert!(said.contains("in use"), "did not start: {said}");
                    break;
                }
                assert!(start.elapsed() < PATIENCE, "no listening line: {said}");
                thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("no free port after 5 tries");
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_stderr(&self, needle: &str) {
        wait_until(&format!("{needle:?} on stderr"), || {
            self.stderr().contains(needle)
        });
    }

    fn wait_for_stdout(&self, needle: &str) {
        wait_until(&format!("{needle:?} on stdout"), || {
            self.stdout().contains(needle)
        });
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(start.elapsed() < PATIENCE, "selectd did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A stand-in for systemd's notification socket.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    (socket, path)
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// TCP and Unix sockets handed over with names: each gets its `listening on`
/// line with its name, and no default listener is added; clients through
/// both are served; `READY=1` comes once listening and `STOPPING=1` at
/// stop; two Unix clients (two processes) print apart; the Unix socket file,
/// which systemd-socket-activate made, is left in place.
#[test]
fn tcp_and_unix_sockets_are_served_by_name() {
    let Some(binary) = program("systemd-socket-activate", "systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unix = dir.path().join("selectd.sock");
    let (notify, notify_path) = notify_socket(dir.path());
    let extra = [
        format!("--listen={}", unix.display()),
        "--fdname=web:local".to_string(),
        format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()),
    ];
    let mut activator = Activator::start(&binary, false, &extra, &["--idle-timeout", "60s"]);

    // The first client starts the server.
    let mut tcp = connect(&format!("127.0.0.1:{}", activator.port));
    tcp.write_all(b"hi over tcp\n").unwrap();
    let port = activator.port;
    activator.wait_for_stderr(&format!("listening on tcp://127.0.0.1:{port} (web)\n"));
    activator.wait_for_stderr(&format!("listening on unix:{} (local)\n", unix.display()));
    assert_eq!(receive(&notify), "READY=1\n");
    let tcp_addr = tcp.local_addr().unwrap();
    activator.wait_for_stdout(&format!("[{tcp_addr}] hi over tcp\n"));

    let mut near = UnixStream::connect(&unix).unwrap();
    near.write_all(b"hi from the test\n").unwrap();
    let other = Command::new(SELECTD)
        .args(["send", &format!("unix:{}", unix.display())])
        .args(["--data", "hi from another process\\n"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let other_pid = other.id();
    let status = Reaped(other).0.wait().unwrap();
    assert!(status.success());
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let path = unix.display();
    let me = std::process::id();
    activator.wait_for_stdout(&format!(
        "[unix:{path}#pid={me},uid={uid}] hi from the test\n"
    ));
    activator.wait_for_stdout(&format!(
        "[unix:{path}#pid={other_pid},uid={uid}] hi from another process\n"
    ));

    tcp.write_all(b"stop\n").unwrap();
    assert!(activator.wait_exit().success(), "{}", activator.stderr());
    assert_eq!(receive(&notify), "STOPPING=1\n");
    let stderr = activator.stderr();
    assert_eq!(stderr.matches("listening on ").count(), 2, "{stderr}");
    assert!(
        unix.exists(),
        "the socket file belongs to systemd-socket-activate"
    );
    drop(near);
}

/// A UDP socket handed over (`--datagram`) is served beside a `--listen`:
/// the datagram that started the server is printed, and the `--listen`
/// address gets its own, unnamed, `listening on` line.
#[test]
fn a_udp_socket_is_served_beside_a_listen_address() {
    let Some(binary) = program("systemd-socket-activate", "systemd") else {
        return;
    };
    let extra = ["--fdname=datagrams".to_string()];
    let mut activator = Activator::start(
        &binary,
        true,
        &extra,
        &["--listen", "127.0.0.1:0", "--idle-timeout", "60s"],
    );
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = activator.port;
    client
        .send_to(b"hi over udp\n", ("127.0.0.1", port))
        .unwrap();
    activator.wait_for_stderr(&format!(
        "listening on udp://127.0.0.1:{port} (datagrams)\n"
    ));
    let own = client.local_addr().unwrap();
    activator.wait_for_stdout(&format!("[{own}] hi over udp\n"));

    let stderr = activator.stderr();
    let tcp = stderr
        .lines()
        .find_map(|line| line.strip_prefix("listening on tcp://"))
        .expect("the --listen address")
        .to_string();
    assert!(!tcp.contains('('), "an unnamed address: {tcp}");
    let mut stopper = connect(&tcp);
    stopper.write_all(b"stop\n").unwrap();
    assert!(activator.wait_exit().success());
}

/// A socket's name comes from outside (the unit file, the environment):
/// escape sequences in it are shown escaped, never sent to the terminal.
#[test]
fn a_socket_name_is_escaped_on_stderr() {
    let Some(binary) = program("systemd-socket-activate", "systemd") else {
        return;
    };
    let extra = ["--fdname=we\x1b[31mb".to_string()];
    let mut activator = Activator::start(&binary, false, &extra, &[]);
    let mut tcp = connect(&format!("127.0.0.1:{}", activator.port));
    let port = activator.port;
    activator.wait_for_stderr(&format!(
        "listening on tcp://127.0.0.1:{port} (we\\u{{1b}}[31mb)\n"
    ));
    tcp.write_all(b"stop\n").unwrap();
    assert!(activator.wait_exit().success(), "{}", activator.stderr());
    assert!(
        !activator.stderr().contains('\x1b'),
        "{}",
        activator.stderr()
    );
}
